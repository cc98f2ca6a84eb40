"""AF_PACKET TX: the batched TX ring (default) and the per-frame send() path, on a real
veth between two namespaces of the test's own."""
import socket

import pytest
from scapy.all import IP, TCP, UDP, Ether, raw

from framework.master import netns
from framework.net.wire import vnet
from framework.nic.afpacket import AfPacketPort, FanoutGroup

from .helpers import HOST_IP, STACK_IP, STACK_MAC, VethLink, drain, flow_of
from .test_afpacket import check_same, raw_peer, tcp_frame

MODES = ["ring", "send"]
BCAST = "ff:ff:ff:ff:ff:ff"


@pytest.fixture
def link(lab):
    return VethLink(lab)


def peer_mac(link):
    return netns.ip("-o", "link", "show", link.b, netns=link.C).split("link/ether ")[1].split()[0]


def udp_frame(seq, dmac=BCAST, size=100, dport=9, fill=None):
    """vnet(PLAIN) + a complete UDP frame whose payload starts with ``seq``."""
    body = seq.to_bytes(4, "big") + bytes([fill if fill is not None else seq & 0xFF]) * (size - 46)
    return vnet.PLAIN + raw(Ether(src=STACK_MAC, dst=dmac) / IP(src=STACK_IP, dst=HOST_IP) /
                            UDP(sport=5000, dport=dport) / body)


def seq_of(data, off=vnet.VNET_LEN + 42):
    """The sequence number in a frame made by udp_frame (``off=0``: in its UDP payload)."""
    return int.from_bytes(data[off:off + 4], "big")


def gso_frame(size, gso_size, dst=HOST_IP, dmac=BCAST, dport=80, seq=1):
    """A checksum-partial GSO TCP frame of ``size`` bytes (CONTRACTS 1)."""
    pay = bytes((i * 7) & 0xFF for i in range(size - 54))
    b = bytearray(raw(Ether(src=STACK_MAC, dst=dmac) / IP(src=STACK_IP, dst=dst) /
                      TCP(sport=40000, dport=dport, flags="P", seq=seq, chksum=0) / pay))
    s = sum(int.from_bytes(b[26 + i:28 + i], "big") for i in range(0, 8, 2)) + 6 + len(b) - 34
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    b[50:52] = s.to_bytes(2, "big")
    return vnet.gso_tcpv4_hdr(54, gso_size, 34) + bytes(b)


def tcp_segments(frames):
    return [Ether(f[10:])[TCP] for f in frames if (fl := flow_of(f)) and fl[0] == 6]


def big_rcvbuf(sock):
    sock.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)   # SO_RCVBUFFORCE: a burst of thousands


@pytest.fixture
def udp_sink(link):
    """A kernel UDP socket on the peer's side, HOST_IP:7777, room for a burst of thousands."""
    rx = link.client_socket(socket.AF_INET, socket.SOCK_DGRAM)
    big_rcvbuf(rx)
    rx.bind((HOST_IP, 7777))
    rx.settimeout(1)
    yield rx
    rx.close()


def send_all(port, frames, tries=1000):
    """Call tx_burst like the shard loop does: what it did not take goes again next turn."""
    rest = list(frames)
    for _ in range(tries):
        if not rest:
            return
        rest = rest[port.tx_burst(rest):]
    raise AssertionError(f"{len(rest)} frames never taken; stats {port.stats}")


def recv_frames(peer, n):
    out = []
    try:
        while len(out) < n:
            out.append(peer.recv(70000))
    except socket.timeout:
        pass
    return out


@pytest.mark.parametrize("tx", MODES)
def test_frames_arrive_intact_and_in_order(link, tx):
    """Slot-sized frames and GSO frames (too big for a slot: sent apart) interleaved: the
    peer sees each one unchanged, in the order given, GSO frames whole with their header."""
    port = AfPacketPort(link.a, 0, 1, netns=link.S, tx=tx)
    peer = raw_peer(link)
    try:
        sizes = [60, 3000, 64, 1514, 65535, 128, 20000, 1000]
        sent = [tcp_frame(n, src=STACK_IP, dst=HOST_IP, smac=STACK_MAC, dmac=BCAST) for n in sizes]
        assert port.tx_burst(sent) == len(sent)
        for f in sent:
            check_same(f, peer.recv(70000))
        assert port.stats["tx"] == len(sent) and port.stats["tx_drops"] == 0
        # ring: one syscall per run of slotted frames, one per GSO frame between them
        assert port.stats["tx_syscalls"] == (7 if tx == "ring" else 8)
    finally:
        peer.close()
        port.close()


def test_one_syscall_for_a_batch(link):
    port = AfPacketPort(link.a, 0, 1, netns=link.S)
    peer = raw_peer(link)
    try:
        frames = [udp_frame(i) for i in range(64)]
        assert port.tx_burst(frames) == 64
        assert port.stats["tx_syscalls"] == 1 and port.stats["tx"] == 64
        got = recv_frames(peer, 64)
        assert [g[10:] for g in got] == [f[10:] for f in frames]
    finally:
        peer.close()
        port.close()


@pytest.mark.parametrize("tx", MODES)
def test_many_frames_arrive_complete_and_in_order(link, udp_sink, tx):
    """Several times the ring's slots in one burst, to a kernel UDP socket: every datagram,
    in order; the ring goes round (slots are reused) without a syscall per frame."""
    port = AfPacketPort(link.a, 0, 1, netns=link.S, tx=tx, tx_frames=256)
    rx = udp_sink
    try:
        mac = peer_mac(link)
        n = 2000
        frames = [udp_frame(i, dmac=mac, size=60 + (i * 37) % 1400, dport=7777) for i in range(n)]
        send_all(port, frames)
        got = []
        try:
            while len(got) < n:
                got.append(rx.recv(2048))
        except socket.timeout:
            pass
        assert len(got) == n
        assert [seq_of(g, 0) for g in got] == list(range(n))
        assert all(g == f[10 + 42:] for g, f in zip(got, frames))
        assert port.stats["tx"] == n
        if tx == "ring":
            assert port.stats["tx_syscalls"] < n // 20
    finally:
        port.close()


def test_slots_reused_before_the_receiver_reads(link, udp_sink):
    """The kernel may give a slot back while the receiver still holds the frame (its socket
    queue): writing the next frames into those slots must not change what it reads."""
    port = AfPacketPort(link.a, 0, 1, netns=link.S, tx_frames=4)
    rx = udp_sink
    try:
        mac = peer_mac(link)
        first = [udp_frame(i, dmac=mac, size=600, dport=7777, fill=0x41) for i in range(4)]
        second = [udp_frame(i + 4, dmac=mac, size=600, dport=7777, fill=0x42) for i in range(4)]
        send_all(port, first)
        send_all(port, second)
        got = [rx.recv(2048) for _ in range(8)]
        assert got == [f[10 + 42:] for f in first + second]
    finally:
        port.close()


@pytest.mark.parametrize("tx", MODES)
def test_gso_frames_reach_the_kernel(link, tx):
    """A 64 KiB GSO segment (sent apart from the ring) and one small enough for a slot
    (gso_size 500): the peer kernel's RST acknowledges every payload byte of each."""
    port = AfPacketPort(link.a, 0, 1, netns=link.S, tx=tx)
    try:
        mac = peer_mac(link)
        frames = [gso_frame(65535, 1448, dmac=mac, dport=9, seq=1000),
                  gso_frame(1514, 500, dmac=mac, dport=10, seq=5000)]
        assert len(frames[1]) <= 2016 < len(frames[0])
        assert port.tx_burst(frames) == 2
        got = drain([port], lambda g: len(tcp_segments(g[0])) >= 2)
        rst = {t.sport: t for t in tcp_segments(got[0])}
        assert "R" in rst[9].flags and rst[9].ack == 1000 + 65535 - 54
        assert "R" in rst[10].flags and rst[10].ack == 5000 + 1514 - 54
        assert port.stats["tx_drops"] == 0
    finally:
        port.close()


def test_small_gso_frame_in_a_slot_arrives_whole(link):
    port = AfPacketPort(link.a, 0, 1, netns=link.S)
    peer = raw_peer(link)
    try:
        f = gso_frame(1514, 500)
        assert port.tx_burst([f, udp_frame(1)]) == 2 and port.stats["tx_syscalls"] == 1
        got = peer.recv(70000)
        assert got[10:] == f[10:] and seq_of(peer.recv(70000)) == 1
        h = vnet.VNET_HDR.unpack_from(got)
        assert h[1] == vnet.GSO_TCPV4 and h[3] == 500
    finally:
        peer.close()
        port.close()


@pytest.mark.parametrize("tx", MODES)
def test_malformed_frames_dropped_the_rest_sent(link, tx):
    """A frame the kernel refuses (TP_STATUS_WRONG_FORMAT in the ring, EINVAL from send())
    is counted and dropped; the frames after it still go, in order, and the ring keeps
    working after going round."""
    port = AfPacketPort(link.a, 0, 1, netns=link.S, tx=tx, tx_frames=16)
    peer = raw_peer(link)
    big_rcvbuf(peer)
    try:
        short = vnet.PLAIN + bytes(8)                         # shorter than an Ethernet header
        bad_csum = bytearray(udp_frame(99))                   # checksum offset past the end
        bad_csum[0:10] = vnet.csum_partial_hdr(60000, 6)
        bad_gso = bytearray(udp_frame(98))                    # no such GSO type
        bad_gso[1] = 0x7F
        good = [udp_frame(i) for i in range(4)]
        frames = [good[0], short, good[1], bytes(bad_csum), b"bad", bytes(bad_gso), good[2],
                  good[3]]
        assert port.tx_burst(frames) == len(frames)
        assert port.stats["tx_drops"] == 4 and port.stats["tx"] == 4
        more = [udp_frame(i) for i in range(4, 60)]
        send_all(port, more)
        got = recv_frames(peer, 60)
        assert [g[10:] for g in got] == [f[10:] for f in good + more]
    finally:
        peer.close()
        port.close()


def hold_frames(link):
    """An htb qdisc with a tiny rate on the stack's veth: frames stay queued there, so the
    ring's slots stay TP_STATUS_SENDING (the port must run with qdisc_bypass=False)."""
    tc = ["tc", "qdisc", "add", "dev", link.a, "root", "handle", "1:", "htb", "default", "1"]
    netns.run_in(link.S, tc, check=True, capture_output=True)
    netns.run_in(link.S, ["tc", "class", "add", "dev", link.a, "parent", "1:", "classid", "1:1",
                          "htb", "rate", "8bit", "burst", "1", "cburst", "1"],
                 check=True, capture_output=True)


def release_frames(link):
    netns.run_in(link.S, ["tc", "qdisc", "del", "dev", link.a, "root"], check=True)


def test_full_ring_keeps_the_rest_for_the_caller(link):
    port = AfPacketPort(link.a, 0, 1, netns=link.S, tx_frames=8, qdisc_bypass=False)
    try:
        hold_frames(link)
        frames = [udp_frame(i) for i in range(20)]
        n = port.tx_burst(frames)
        # every slot is taken by a frame the qdisc holds; the rest is the caller's again
        assert 8 <= n < 20
        assert port.tx_in_flight() == 8 and port.stats["tx_ring_full"] == 1
        assert port.tx_burst(frames[n:]) == 0 and port.stats["tx_ring_full"] == 2
        assert port.stats["tx"] == n and port.stats["tx_drops"] == 0
        release_frames(link)
        peer = raw_peer(link)
        try:
            send_all(port, frames[n:])
            got = recv_frames(peer, 20 - n)
            assert [seq_of(g) for g in got] == list(range(n, 20))
        finally:
            peer.close()
        assert port.stats["tx"] == 20
    finally:
        port.close()


def test_flush_stopped_halfway_keeps_the_rest(link):
    """The socket's send buffer fills while the qdisc holds frames: the kernel stops the
    flush (EAGAIN) with slots still TP_STATUS_SEND_REQUEST; those frames go back to the
    caller (tx_busy), and once the buffer drains they go out, none twice."""
    port = AfPacketPort(link.a, 0, 1, netns=link.S, tx_frames=16, qdisc_bypass=False)
    try:
        port._txr.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)   # the minimum
        hold_frames(link)
        frames = [udp_frame(i) for i in range(16)]
        n = port.tx_burst(frames)
        assert 0 < n < 16 and port.stats["tx_busy"] == 1 and port.stats["tx_ring_full"] == 0
        assert port.tx_in_flight() <= n        # the untaken slots were given back
        release_frames(link)
        peer = raw_peer(link)
        try:
            send_all(port, frames[n:])
            got = recv_frames(peer, 16 - n)
            assert [seq_of(g) for g in got] == list(range(n, 16))
            peer.settimeout(0.2)
            assert recv_frames(peer, 1) == []
        finally:
            peer.close()
        assert port.stats["tx"] == 16
    finally:
        port.close()


@pytest.mark.parametrize("tx", MODES)
def test_device_down_drops_and_counts(link, tx):
    port = AfPacketPort(link.a, 0, 1, netns=link.S, tx=tx)
    try:
        netns.ip("link", "set", link.a, "down", netns=link.S)
        frames = [udp_frame(i) for i in range(10)] + [tcp_frame(20000, src=STACK_IP, dst=HOST_IP)]
        assert port.tx_burst(frames) == len(frames)
        assert port.stats["tx_drops"] == len(frames) and port.stats["tx"] == 0
        netns.ip("link", "set", link.a, "up", netns=link.S)
        peer = raw_peer(link)
        peer.settimeout(0.1)
        try:
            for _ in range(50):     # the link comes back up in its own time
                port.tx_burst([udp_frame(1000)])
                if recv_frames(peer, 1):
                    break
            recv_frames(peer, 100)
            assert port.tx_burst(frames[:3]) == 3
            assert [seq_of(g) for g in recv_frames(peer, 3)] == [0, 1, 2]
        finally:
            peer.close()
    finally:
        port.close()


@pytest.mark.parametrize("tx", MODES)
def test_close(link, tx):
    """What was handed over before close() still arrives; after it the port takes frames
    without sending (counted as drops) and receives nothing; close() again is harmless."""
    port = AfPacketPort(link.a, 0, 1, netns=link.S, tx=tx)
    peer = raw_peer(link)
    try:
        frames = [udp_frame(i) for i in range(32)]
        assert port.tx_burst(frames) == 32
        port.close()
        assert [seq_of(g) for g in recv_frames(peer, 32)] == list(range(32))
        assert port.tx_burst(frames) == 32 and port.stats["tx_drops"] == 32
        assert port.rx_burst() == []
        port.close()
    finally:
        peer.close()
        port.close()


def test_fanout_port_has_its_own_tx_ring(link):
    """A FanoutGroup port (a worker's) opens its TX ring in the group's namespace."""
    group = FanoutGroup(link.a, 2, netns=link.S)
    ports = [group.port(k) for k in range(2)]
    peer = raw_peer(link)
    try:
        for k, p in enumerate(ports):
            assert p.tx_burst([udp_frame(k * 10 + i) for i in range(5)]) == 5
            assert p.stats["tx_syscalls"] == 1
        got = recv_frames(peer, 10)
        assert sorted(seq_of(g) for g in got) == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
    finally:
        peer.close()
        for p in ports:
            p.close()
        group.close()
