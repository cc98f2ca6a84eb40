"""Multi-queue TAP ports: frames both ways, per-flow queue stability, flow learning."""
import os
import select
import socket
import time

import pytest
from scapy.all import IP, TCP, UDP, Ether, raw

from framework.master import netns
from framework.net.wire import vnet
from framework.nic.nsenter import netns as in_netns
from framework.nic.tap import TapDevice

from .helpers import STACK_MAC, drain, flow_of

HOST_IP, STACK_IP = "198.18.78.1", "198.18.78.2"


@pytest.fixture
def tap(lab):
    ns = lab.netns("fwnt")
    name = "fwtap" + ns[-6:]
    with in_netns(ns):
        dev = TapDevice(name, 2, steering="kernel")
    ports = [dev.port(k) for k in range(2)]
    link_up(ns, name)
    mac = netns.ip("-o", "link", "show", name, netns=ns).split("link/ether ")[1].split()[0]
    yield ns, dev, ports, mac
    for p in ports:
        p.close()
    dev.close()


def link_up(ns, name):
    """The kernel's end of the TAP: our address, up, no IPv6 chatter, the stack's MAC."""
    netns.run_in(ns, ["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"], check=False)
    netns.ip("addr", "add", f"{HOST_IP}/24", "dev", name, netns=ns)
    netns.ip("link", "set", name, "up", netns=ns)
    netns.ip("neigh", "add", STACK_IP, "lladdr", STACK_MAC, "dev", name, netns=ns)


def kernel_syns(ns, n):
    """n kernel sockets connecting to the stack: n bare SYNs (and their retransmissions)."""
    with in_netns(ns):
        socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.setblocking(False)
        try:
            s.connect((STACK_IP, 80))
        except BlockingIOError:
            pass
    return socks


def kernel_udp(ns, n):
    with in_netns(ns):
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for s in socks:
        s.bind((HOST_IP, 0))
    return socks


def where(got):
    w = {}
    for q, frames in got.items():
        for f in frames:
            fl = flow_of(f)
            if fl:
                assert w.setdefault(fl, q) == q, f"{fl} on two queues"
    return w


def test_tap_flows_stay_on_one_queue_and_learn(tap):
    ns, dev, ports, mac = tap
    socks = kernel_udp(ns, 100)
    try:
        for r in range(3):
            for s in socks:
                s.sendto(b"r%d" % r, (STACK_IP, 9000))
        got = drain(ports, lambda g: sum(len(v) for v in g.values()) >= 300)
        w = where(got)
        nflow = sum(1 for v in got.values() for f in v if flow_of(f))
        assert len(w) == 100 and nflow == 300   # (IPv6/ARP chatter of the new link aside)
        assert 10 < sum(1 for q in w.values() if q == 0) < 90   # the kernel spreads flows
        # flow learning: a reply written into the *other* queue pulls the flow there
        for fl, q in w.items():
            _, (src, sport), (dst, dport) = fl
            reply = vnet.PLAIN + raw(Ether(src=STACK_MAC, dst=mac) /
                                     IP(src=STACK_IP, dst=HOST_IP) / UDP(sport=dport, dport=sport) / b"re")
            assert ports[1 - q].tx_burst([reply]) == 1
        for s in socks:
            assert s.recv(100) == b"re"
            s.sendto(b"again", (STACK_IP, 9000))
        got2 = drain(ports, lambda g: sum(len(v) for v in g.values()) >= 100)
        w2 = where(got2)
        assert len(w2) == 100
        moved = sum(1 for fl, q in w2.items() if q == 1 - w[fl])
        assert moved == 100, moved
    finally:
        for s in socks:
            s.close()


SIZES = [60, 64, 200, 1000, 1514]


def test_tap_frames_both_ways(tap):
    ns, dev, ports, mac = tap
    with in_netns(ns):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((HOST_IP, 7777))
    rx.settimeout(0.5)
    (tx,) = kernel_udp(ns, 1)
    try:
        # stack -> kernel: complete UDP frames of every size, one per queue alternately
        pays = [bytes([65 + i]) * (n - 42) for i, n in enumerate(SIZES)]
        for i, p in enumerate(pays):
            f = vnet.PLAIN + raw(Ether(src=STACK_MAC, dst=mac) / IP(src=STACK_IP, dst=HOST_IP) /
                                 UDP(sport=5000, dport=7777) / p)
            assert ports[i % 2].tx_burst([f]) == 1
        assert sorted(rx.recv(2000) for _ in pays) == sorted(pays)
        # stack -> kernel: a 64 KiB GSO TCP segment (checksum-partial) to a closed port; the
        # kernel's RST acknowledges every payload byte, so it took the whole frame
        pay = bytes(i & 0xFF for i in range(65535 - 14 - 40))
        b = bytearray(raw(Ether(src=STACK_MAC, dst=mac) / IP(src=STACK_IP, dst=HOST_IP) /
                          TCP(sport=40001, dport=9, flags="P", seq=1000, chksum=0) / pay))
        s = sum(int.from_bytes(b[26 + i:28 + i], "big") for i in range(0, 8, 2)) + 6 + len(b) - 34
        while s > 0xFFFF:
            s = (s & 0xFFFF) + (s >> 16)
        b[50:52] = s.to_bytes(2, "big")
        assert ports[0].tx_burst([vnet.gso_tcpv4_hdr(54, 1448, 34) + bytes(b)]) == 1
        got = drain(ports, lambda g: any(flow_of(f) and flow_of(f)[0] == 6 for v in g.values() for f in v))
        rst = [Ether(f[10:]) for v in got.values() for f in v if flow_of(f) and flow_of(f)[0] == 6]
        assert len(rst) == 1 and "R" in rst[0][TCP].flags
        assert rst[0][TCP].ack == 1000 + len(pay)
        # kernel -> stack: datagrams of every size up to one MTU, and a 30 kB one (fragments)
        for n in SIZES:
            tx.sendto(b"k" * (n - 42), (STACK_IP, 9001))
        tx.sendto(b"F" * 30000, (STACK_IP, 9001))
        got = drain(ports, lambda g: sum(len(v) for v in g.values()) >= len(SIZES) + 21)
        pkts = [Ether(f[10:]) for v in got.values() for f in v]
        pkts = [e for e in pkts if e.haslayer(IP) and e[IP].dst == STACK_IP and e[IP].proto == 17]
        whole = [e for e in pkts if e[IP].flags.MF == 0 and e[IP].frag == 0]
        assert sorted(len(e) for e in whole) == SIZES
        assert all(e[UDP].dport == 9001 and bytes(e[UDP].payload) == b"k" * (len(e) - 42) for e in whole)
        frags = [e for e in pkts if e[IP].flags.MF or e[IP].frag]
        assert len({e[IP].id for e in frags}) == 1
        assert sum(len(bytes(e[IP].payload)) for e in frags) == 30008   # UDP header + 30,000
    finally:
        rx.close()
        tx.close()


def test_tap_ebpf_steering_is_shard_of(lab):
    """TUNSETSTEERINGEBPF with our hand-translated program: the kernel's queue choice is
    steer.shard_of, for the flows the kernel opens too."""
    from .helpers import check_steering
    ns = lab.netns("fwnt")
    name = "fwtap" + ns[-6:]
    with in_netns(ns):
        dev = TapDevice(name, 2, steering="shard_of")
    ports = [dev.port(k) for k in range(2)]
    try:
        assert dev.steering == "shard_of"
        link_up(ns, name)
        socks = kernel_udp(ns, 100)
        tcp = kernel_syns(ns, 50)
        for r in range(2):
            for s in socks:
                s.sendto(b"r%d" % r, (STACK_IP, 9000))
        got = drain(ports, lambda g: sum(len(v) for v in g.values()) >= 250)
        w = check_steering(got, 2)
        assert len(w) == 150
        assert 40 < sum(1 for q in w.values() if q == 0) < 110
        for s in socks + tcp:
            s.close()
    finally:
        for p in ports:
            p.close()
        dev.close()


def test_tap_kernel_tcp_gso_frames(lab):
    """With TUNSETOFFLOAD(csum|tso4) the kernel's TCP hands the queue ~64 KiB GSO frames;
    2 MB arrive intact."""
    import hashlib

    from .helpers import kernel_download
    ns = lab.netns("fwnt")
    name = "fwtap" + ns[-6:]
    with in_netns(ns):
        dev = TapDevice(name, 1)
    port = dev.port(0)
    link_up(ns, name)
    mac = netns.ip("-o", "link", "show", name, netns=ns).split("link/ether ")[1].split()[0]
    with in_netns(ns):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind((HOST_IP, 8000))
    try:
        payload, data, frames = kernel_download(port, mac, ls, HOST_IP, STACK_IP, STACK_MAC)
        assert hashlib.sha256(data).digest() == hashlib.sha256(payload).digest()
        big = [f for f in frames if len(f) > 60000]
        assert big, max(len(f) for f in frames)
        assert vnet.VNET_HDR.unpack_from(big[0])[1] == vnet.GSO_TCPV4
    finally:
        port.close()
        dev.close()


def test_tap_bare_syns_arrive_on_the_shards_syn_queue(lab):
    """With eBPF steering the device has 2n queues: the kernel's SYNs (connect) land on
    queue n + shard_of, its UDP and its other TCP segments on shard_of; a port reads
    both, its data queue first."""
    from framework.nic import steer
    from framework.nic.tap import TapPort
    ns = lab.netns("fwnt")
    name = "fwtap" + ns[-6:]
    with in_netns(ns):
        dev = TapDevice(name, 2, steering="shard_of")
    assert dev.steering == "shard_of" and len(dev.syn_fds) == 2
    queues = [TapPort(os.dup(fd), q) for q, fd in enumerate(dev.fds + dev.syn_fds)]
    try:
        link_up(ns, name)
        udp = kernel_udp(ns, 40)
        tcp = kernel_syns(ns, 40)
        for s in udp:
            s.sendto(b"x", (STACK_IP, 9000))
        got = drain(queues, lambda g: sum(len(v) for v in g.values()) >= 80)
        syns = data = 0
        for q, frames in got.items():
            for f in frames:
                if flow_of(f) is None:
                    continue
                assert steer.queue_of(f[vnet.VNET_LEN:], 2, True) == q, q
                syns += q >= 2
                data += q < 2
        assert syns >= 40 and data >= 40, (syns, data)
        assert {q for q, v in got.items() if v and q >= 2} == {2, 3}
        for s in udp + tcp:
            s.close()
    finally:
        for p in queues:
            p.close()
        dev.close()


def test_tap_port_reads_its_data_queue_before_its_syn_queue(lab):
    from framework.nic.tap import TXQUEUELEN
    ns = lab.netns("fwnt")
    name = "fwtap" + ns[-6:]
    with in_netns(ns):
        dev = TapDevice(name, 1)
    port = dev.port(0)
    try:
        assert port.fileno() not in (port.fd, port.syn_fd)     # an epoll fd over both
        assert f"qlen {TXQUEUELEN}" in netns.ip("link", "show", name, netns=ns)
        link_up(ns, name)
        with in_netns(ns):
            c = socket.socket()
        c.setblocking(False)
        try:
            c.connect((STACK_IP, 80))                   # the SYN first
        except BlockingIOError:
            pass
        (u,) = kernel_udp(ns, 1)
        u.sendto(b"x", (STACK_IP, 9000))                # then a datagram
        time.sleep(0.2)
        r, _, _ = select.select([port.fileno()], [], [], 1)
        assert r
        kinds = [flow_of(f)[0] for f in port.rx_burst(64) if flow_of(f)]
        assert kinds == [17, 6], kinds          # UDP, then the SYN
        assert port.stats["rx_syn"] == 1
        c.close()
        u.close()
    finally:
        port.close()
        dev.close()


def test_tap_kernel_steering_keeps_one_queue_set(lab):
    ns = lab.netns("fwnt")
    name = "fwtap" + ns[-6:]
    with in_netns(ns):
        dev = TapDevice(name, 2, steering="kernel")
    try:
        assert dev.syn_fds == [] and len(dev.fds) == 2
        port = dev.port(0)
        assert port.fileno() == port.fd and port.syn_fd == -1
        port.close()
    finally:
        dev.close()
