"""AF_PACKET ports on a real veth between two namespaces."""
import os
import select
import signal
import socket
import time

import pytest
from scapy.all import IP, TCP, UDP, Ether, raw

from framework.net.wire import vnet
from framework.nic import afpacket, steer
from framework.nic.afpacket import AfPacketPort, FanoutGroup

from .helpers import HOST_IP, STACK_IP, STACK_MAC, VethLink, check_steering, drain, flow_of

N = 2


@pytest.fixture
def link(lab):
    return VethLink(lab)


def open_flows(link, n_udp=150, n_tcp=50):
    """Kernel sockets in the client namespace: UDP (ephemeral ports) and non-blocking
    TCP connects (SYNs, retransmitted by the kernel)."""
    udp = [link.client_socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n_udp)]
    for s in udp:
        s.bind((HOST_IP, 0))
    tcp = []
    for _ in range(n_tcp):
        s = link.client_socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        tcp.append(s)
    return udp, tcp


def send_udp(udp, rounds=3):
    for r in range(rounds):
        for s in udp:
            s.sendto(b"round%d" % r, (STACK_IP, 9000))


def start_tcp(tcp):
    for s in tcp:
        try:
            s.connect((STACK_IP, 80))
        except BlockingIOError:
            pass


def send_and_drain(ports, udp, tcp, rounds=3):
    """SYNs, then rounds of one datagram per UDP flow, draining in between (the rings
    hold 512 frames; a burst of everything at once would only test ring size)."""
    start_tcp(tcp)
    got = {p.queue: [] for p in ports}
    for r in range(rounds):
        send_udp(udp, rounds=1)
        want = len(udp) * (r + 1) + len(tcp)
        g = drain(ports, lambda g: sum(len(v) for v in got.values()) + sum(len(v) for v in g.values()) >= want,
                  quiet=0.05 if r < rounds - 1 else 0.15)
        for q in got:
            got[q] += g[q]
    return got


def close_all(socks):
    for s in socks:
        s.close()


def counts(got):
    per = {}
    for q, frames in got.items():
        for f in frames:
            fl = flow_of(f)
            if fl:
                per[fl] = per.get(fl, 0) + 1
    return per


@pytest.mark.parametrize("version", [2, 3])
def test_filter_steering_200_flows(link, version):
    ports = [AfPacketPort(link.a, q, N, netns=link.S, version=version) for q in range(N)]
    udp, tcp = open_flows(link)
    try:
        got = send_and_drain(ports, udp, tcp)
        where = check_steering(got, N)
        per = counts(got)
        assert len(where) == 200
        assert sum(1 for fl in per if fl[0] == 17 and per[fl] == 3) == 150   # no loss, no dup
        assert sum(1 for fl in per if fl[0] == 6) == 50
        share = sum(1 for q in where.values() if q == 0)
        assert 60 < share < 140, share
        # SYN retransmissions (1 s later) stay on the same shard
        got2 = drain(ports, lambda g: sum(1 for v in g.values() for f in v
                                          if (fl := flow_of(f)) and fl[0] == 6) >= 50, limit=3)
        where2 = check_steering(got2, N)
        assert sum(1 for fl in where2 if fl[0] == 6) == 50
        assert all(where[fl] == q for fl, q in where2.items())
    finally:
        close_all(udp + tcp)
        for p in ports:
            p.close()


def test_fanout_steering_200_flows(link):
    group = FanoutGroup(link.a, N, netns=link.S)
    ports = [group.port(q) for q in range(N)]
    udp, tcp = open_flows(link)
    try:
        got = send_and_drain(ports, udp, tcp)
        where = check_steering(got, N)
        assert len(where) == 200
        per = counts(got)
        assert sorted(n for fl, n in per.items() if fl[0] == 17) == [3] * 150
    finally:
        close_all(udp + tcp)
        for p in ports:
            p.close()
        group.close()


def child_reader(make_port, wfd):
    """In a forked child: read frames forever, report each flow's shard on a pipe."""
    try:
        port = make_port()
        os.write(wfd, b"R\n")
        while True:
            select.select([port.fileno()], [], [], 1.0)
            for f in port.rx_burst(256):
                fl = flow_of(f)
                if fl:
                    os.write(wfd, b"%d %d %d %d %d %d\n" % (port.queue, fl[0], *fl[1], *fl[2]))
    finally:
        os._exit(0)


class Worker:
    def __init__(self, make_port):
        self.r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.r)
            child_reader(make_port, w)
        os.close(w)
        self.buf = b""
        self.pending = []
        lines = self.read_until(lambda lines: b"R" in lines, 5)
        assert b"R" in lines
        # frames already waiting are reported right after "R", maybe in the same read
        self.pending = lines[lines.index(b"R") + 1:]

    def read_until(self, cond, timeout):
        end = time.monotonic() + timeout
        lines, self.pending = self.pending, []
        if lines and cond(lines):
            return lines
        while time.monotonic() < end:
            r, _, _ = select.select([self.r], [], [], 0.05)
            if r:
                self.buf += os.read(self.r, 65536)
                *done, self.buf = self.buf.split(b"\n")
                lines += done
                if cond(lines):
                    return lines
        return lines

    def kill(self):
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.r)


def run_restart(link, make_port, expect_after):
    """Two forked workers read their shard; shard 0's worker is SIGKILLed, a round of
    traffic is sent while it is dead, it is restarted, one more round is sent.
    ``expect_after(before)`` is how many frames the workers report after the kill."""
    udp, _ = open_flows(link, n_udp=100, n_tcp=0)
    workers = [Worker(lambda q=q: make_port(q)) for q in range(N)]
    try:
        def collect(ws, want):
            seen = []
            end = time.monotonic() + 5
            while len(seen) < want and time.monotonic() < end:
                for w in ws:
                    seen += [l for l in w.read_until(lambda l: True, 0.02) if l and l != b"R"]
            return [tuple(map(int, l.split())) for l in seen]

        send_udp(udp, rounds=1)
        before = collect(workers, 100)
        assert len(before) == 100
        workers[0].kill()
        send_udp(udp, rounds=1)
        time.sleep(0.1)
        workers[0] = Worker(lambda: make_port(0))
        send_udp(udp, rounds=1)
        want = expect_after(before)
        after = collect(workers, want)
        time.sleep(0.1)
        for w in workers:   # and nothing more than expected arrives
            after += [tuple(map(int, l.split())) for l in w.read_until(lambda l: False, 0.1) if l]
        assert len(after) == want, (len(before), sum(1 for x in before if x[0] == 0),
                                    len(after), sum(1 for x in after if x[0] == 0))
        for q, proto, s, sp, d, dp in before + after:
            assert steer.shard_of(s, d, sp, dp, N) == q
        # the flows of each shard are the same ones as before the kill
        owner = {x[1:]: x[0] for x in before}
        assert all(owner[x[1:]] == x[0] for x in after)
        return before, after
    finally:
        for w in workers:
            try:
                w.kill()
            except (ProcessLookupError, ChildProcessError, OSError):
                pass
        close_all(udp)


def test_restart_filter_mode_keeps_steering(link):
    """Per-socket filters: a restarted worker opens a new socket and gets its flows back
    (frames sent while it was dead are lost for it; shard 1 is untouched)."""
    run_restart(link, lambda q: AfPacketPort(link.a, q, N, netns=link.S),
                lambda before: 100 + sum(1 for x in before if x[0] == 1))


@pytest.mark.parametrize("version", [2, 3])
def test_restart_fanout_mode_keeps_steering(link, version):
    """Fanout group held by the parent: the killed worker's member stays in the group,
    its frames wait in its ring and the restarted worker finds them: nothing lost."""
    group = FanoutGroup(link.a, N, netns=link.S, version=version)
    try:
        run_restart(link, lambda q: group.port(q), lambda before: 200)
    finally:
        group.close()


def test_fanout_member_leaving_would_reshuffle(link):
    """Why the group must outlive the workers: a closed member really leaves, and the
    kernel then puts every flow on the remaining member (join order lost)."""
    spec = afpacket.RingSpec(2, frames=64)
    socks = []
    for k in range(N):
        from framework.nic.nsenter import netns as in_netns
        with in_netns(link.S):
            s = afpacket.open_socket(link.a, spec)
        s.setsockopt(afpacket.SOL_PACKET, afpacket.PACKET_FANOUT, 4321 | (6 << 16))
        afpacket.set_fanout_program(s, steer.fanout_program(N))
        socks.append(s)
    socks[0].close()
    ports = [AfPacketPort(link.a, 1, N, fanout_group=4321, sock=socks[1], spec=spec,
                          netns=link.S)]
    udp, _ = open_flows(link, n_udp=20, n_tcp=0)
    try:
        send_udp(udp, rounds=1)
        got = drain(ports, lambda g: len(g[1]) >= 20)
        assert len([f for f in got[1] if flow_of(f)]) == 20   # shard 0's flows too
    finally:
        close_all(udp)
        ports[0].close()


def raw_peer(link):
    s = link.client_socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    s.setsockopt(afpacket.SOL_PACKET, afpacket.PACKET_VNET_HDR, 1)
    s.bind((link.b, 0x0800))
    s.settimeout(2)
    return s


def tcp_frame(size, src=HOST_IP, dst=STACK_IP, smac="02:00:00:00:00:01", dmac=STACK_MAC):
    """An Ethernet+IPv4+TCP frame of ``size`` bytes; beyond one MSS it is a GSO frame with
    a checksum-partial header (CONTRACTS 1), else complete with correct checksums."""
    pay = bytes((i * 7) & 0xFF for i in range(size - 54))
    if size <= 1514:
        return vnet.PLAIN + raw(Ether(src=smac, dst=dmac) / IP(src=src, dst=dst) /
                                TCP(sport=40000, dport=80, flags="A", seq=1) / pay)
    pkt = Ether(src=smac, dst=dmac) / IP(src=src, dst=dst) / TCP(sport=40000, dport=80,
                                                                  flags="A", seq=1, chksum=0) / pay
    b = bytearray(raw(pkt))
    # pseudo-header sum, folded, not inverted
    l4len = len(b) - 34
    s = sum(int.from_bytes(b[26 + i:28 + i], "big") for i in range(0, 8, 2)) + 6 + l4len
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    b[50:52] = s.to_bytes(2, "big")
    return vnet.gso_tcpv4_hdr(54, 1448, 34) + bytes(b)


SIZES = [60, 64, 128, 1000, 1514, 3000, 20000, 65535]   # send() takes Ethernet frames <= 65535 B


def check_same(sent, got):
    assert got[10:] == sent[10:]
    a, b = Ether(sent[10:]), Ether(got[10:])
    assert a[IP].src == b[IP].src and a[TCP].dport == b[TCP].dport
    assert bytes(a[TCP].payload) == bytes(b[TCP].payload)
    if len(sent) > 1524:
        h = vnet.VNET_HDR.unpack_from(got)
        assert h[1] == vnet.GSO_TCPV4 and h[3] == 1448, h


@pytest.mark.parametrize("version", [2, 3])
def test_frame_sizes_both_ways(link, version):
    port = AfPacketPort(link.a, 0, 1, netns=link.S, version=version)
    peer = raw_peer(link)
    try:
        # stack -> peer
        sent = [tcp_frame(n, src=STACK_IP, dst=HOST_IP, smac=STACK_MAC, dmac="ff:ff:ff:ff:ff:ff")
                for n in SIZES]
        assert port.tx_burst(sent) == len(sent)
        for f in sent:
            check_same(f, peer.recv(70000))
        # peer -> stack
        sent = [tcp_frame(n) for n in SIZES]
        for f in sent:
            peer.send(f)
        got = drain([port], lambda g: len(g[0]) >= len(sent))
        got = [f for f in got[0] if flow_of(f)]
        assert len(got) == len(sent)
        for s, g in zip(sent, got):
            check_same(s, g)
        assert port.stats["rx_truncated"] == 0
    finally:
        peer.close()
        port.close()


def test_kernel_accepts_our_frames(link):
    """Complete and checksum-partial UDP frames reach a kernel UDP socket intact."""
    port = AfPacketPort(link.a, 0, 1, netns=link.S)
    rx = link.client_socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((HOST_IP, 7777))
    rx.settimeout(0.5)
    try:
        from framework.master import netns as nsmod
        out = nsmod.ip("-o", "link", "show", link.b, netns=link.C)
        mac = out.split("link/ether ")[1].split()[0]
        payloads = [b"a" * 18, b"b" * 1000, b"c" * 1472]
        frames = []
        for i, p in enumerate(payloads):
            frames.append(vnet.PLAIN + raw(Ether(src=STACK_MAC, dst=mac) / IP(src=STACK_IP, dst=HOST_IP) /
                                           UDP(sport=5000 + i, dport=7777) / p))
        # checksum-partial: UDP checksum field = folded pseudo-header sum
        b = bytearray(raw(Ether(src=STACK_MAC, dst=mac) / IP(src=STACK_IP, dst=HOST_IP) /
                          UDP(sport=6000, dport=7777, chksum=0) / b"partial"))
        l4len = len(b) - 34
        s = sum(int.from_bytes(b[26 + i:28 + i], "big") for i in range(0, 8, 2)) + 17 + l4len
        s = (s & 0xFFFF) + (s >> 16)
        b[40:42] = s.to_bytes(2, "big")
        frames.append(vnet.csum_partial_hdr(34, 6) + bytes(b))
        # a corrupted complete frame must be dropped by the kernel (proves it verifies)
        bad = bytearray(frames[0])
        bad[-1] ^= 0xFF
        frames.append(bytes(bad))
        assert port.tx_burst(frames) == len(frames)
        got = set()
        try:
            while True:
                got.add(rx.recvfrom(4096)[0])
        except socket.timeout:
            pass
        assert got == set(payloads) | {b"partial"}
        # a 64 KiB GSO TCP segment (checksum-partial) to a closed port: the kernel's RST
        # acknowledges every payload byte, so it took the whole frame
        pay = bytes(i & 0xFF for i in range(65535 - 54))
        b = bytearray(raw(Ether(src=STACK_MAC, dst=mac) / IP(src=STACK_IP, dst=HOST_IP) /
                          TCP(sport=40001, dport=9, flags="P", seq=1000, chksum=0) / pay))
        s = sum(int.from_bytes(b[26 + i:28 + i], "big") for i in range(0, 8, 2)) + 6 + len(b) - 34
        while s > 0xFFFF:
            s = (s & 0xFFFF) + (s >> 16)
        b[50:52] = s.to_bytes(2, "big")
        assert port.tx_burst([vnet.gso_tcpv4_hdr(54, 1448, 34) + bytes(b)]) == 1
        got = drain([port], lambda g: any(flow_of(f) for f in g[0]))
        rst = [Ether(f[10:]) for f in got[0] if flow_of(f) and flow_of(f)[0] == 6]
        assert len(rst) == 1 and "R" in rst[0][TCP].flags and rst[0][TCP].ack == 1000 + len(pay)
    finally:
        rx.close()
        port.close()


def test_siblings_do_not_see_each_others_tx(link):
    """PACKET_IGNORE_OUTGOING: what shard 0 sends is not received by shard 1 (or 0)."""
    ports = [AfPacketPort(link.a, q, N, netns=link.S) for q in range(N)]
    peer = raw_peer(link)
    try:
        frames = [tcp_frame(100, src=STACK_IP, dst=HOST_IP, smac=STACK_MAC, dmac="ff:ff:ff:ff:ff:ff")
                  for _ in range(10)]
        assert ports[0].tx_burst(frames) == 10
        for f in frames:
            assert peer.recv(2000)[10:] == f[10:]
        time.sleep(0.05)
        assert not [f for p in ports for f in p.rx_burst() if flow_of(f)]
        assert ports[0].stats["tx"] == 10
    finally:
        peer.close()
        for p in ports:
            p.close()


def test_tx_burst_stops_on_full_queue_and_drops_bad_frames(link):
    import errno
    port = AfPacketPort(link.a, 0, 1, netns=link.S)
    try:
        calls = []

        def fake_send(f):
            calls.append(f)
            if f == b"full":
                raise OSError(errno.ENOBUFS, "No buffer space available")
            if f == b"bad":
                raise OSError(errno.EINVAL, "Invalid argument")
            return len(f)
        port._send = fake_send
        port.tx_burst = port._tx_send
        # a bad frame is consumed and counted; a full device queue ends the burst
        assert port.tx_burst([b"ok1", b"bad", b"ok2", b"full", b"ok3"]) == 3
        assert port.stats["tx"] == 2 and port.stats["tx_drops"] == 1 and port.stats["tx_busy"] == 1
        assert calls == [b"ok1", b"bad", b"ok2", b"full"]
    finally:
        port.close()
    # for real: a frame over 65,535 bytes is refused by the kernel and dropped, not retried
    port = AfPacketPort(link.a, 0, 1, netns=link.S)
    try:
        big = tcp_frame(65535)
        big = big[:10] + big[10:] + b"\0" * 10
        assert port.tx_burst([big, tcp_frame(60)]) == 2
        assert port.stats["tx_drops"] == 1 and port.stats["tx"] == 1
    finally:
        port.close()


@pytest.mark.parametrize("version", [2, 3])
def test_kernel_tcp_gso_frames_fit(link, version):
    """The kernel's own TCP (TSO on the veth) sends ~64 KiB GSO frames; every one fits a
    ring slot/block and 2 MB arrive intact."""
    import hashlib

    from framework.master import netns as nsmod

    from .helpers import kernel_download
    port = AfPacketPort(link.a, 0, 1, netns=link.S, version=version)
    mac = nsmod.ip("-o", "link", "show", link.b, netns=link.C).split("link/ether ")[1].split()[0]
    ls = link.client_socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind((HOST_IP, 8000))
    try:
        payload, data, frames = kernel_download(port, mac, ls, HOST_IP, STACK_IP, STACK_MAC)
        assert hashlib.sha256(data).digest() == hashlib.sha256(payload).digest()
        big = [f for f in frames if len(f) > 60000]
        assert big, max(len(f) for f in frames)
        h = vnet.VNET_HDR.unpack_from(big[0])
        assert h[1] == vnet.GSO_TCPV4 and vnet.csum_trusted(big[0])
        assert port.stats["rx_truncated"] == 0
    finally:
        port.close()
