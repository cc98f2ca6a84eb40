"""The Stack glue: TCP factory, dispatch order, poll_at, counters, robustness."""
import random

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import fuzz

from framework.net.stack import Stack
from framework.net.tcp import TcpLayer
from framework.net.wire.ipv4 import ip_to_int

from .conftest import IP as MYIP, MAC, PEER_IP, PEER_MAC, RecordingTcp, frame, inject, make_stack


def test_tcp_factory_gets_contract_arguments():
    s = make_stack(mtu=9000, csum_offload=False, gso=True, tcp_config={"x": 1})
    t = s.tcp
    assert isinstance(t, RecordingTcp)
    assert t.ip_output == s.ip_output and t.local_ip == ip_to_int(MYIP)
    assert (t.mtu, t.csum_offload, t.gso, t.config) == (9000, False, True, {"x": 1})


def test_default_tcp_is_tcp_layer():
    s = Stack(mac=MAC, ip=MYIP, mtu=9000, csum_offload=False, gso=True)
    assert type(s.tcp) is TcpLayer
    assert (s.tcp.mtu, s.tcp.csum_offload, s.tcp.gso) == (9000, False, True)


def test_dispatch_polls_then_flushes_tcp(stack):
    assert stack.dispatch(4.5) == []
    assert stack.tcp.calls == [("poll", 4.5), ("flush", 4.5)]


def test_frames_emitted_by_tcp_during_flush_leave_in_same_dispatch():
    class Emitting(RecordingTcp):
        def flush(self, now):
            self.ip_output(ip_to_int(PEER_IP), 6, b"segment")
    s = make_stack(tcp_factory=Emitting)
    s.process([frame(Ether(dst=MAC, src=PEER_MAC) / ARP(op=2, hwsrc=PEER_MAC, psrc=PEER_IP, hwdst=MAC, pdst=MYIP))], 0.0)
    out = s.dispatch(0.0)
    assert len(out) == 1 and bytes(Ether(out[0][10:])[IP].payload) == b"segment"
    assert s.counters["tx.frames"] == 1


def test_poll_at_is_earliest_of_arp_and_tcp(stack):
    assert stack.poll_at() is None
    stack.tcp.deadline = 7.0
    assert stack.poll_at() == 7.0
    stack.process([], 5.0)
    stack.ip_output(ip_to_int(PEER_IP), 6, b"x")
    stack.dispatch(5.0)
    assert stack.poll_at() == 6.0          # ARP retry first
    stack.tcp.deadline = 5.5
    assert stack.poll_at() == 5.5


def test_counters_merge_tcp(stack):
    inject(stack, frame(Ether(dst=MAC, src=PEER_MAC) / IP(src=PEER_IP, dst=MYIP) / TCP()))
    c = stack.counters
    assert c["tcp.rx"] == 1 and c["rx.frames"] == 1
    assert all(type(v) is int for v in c.values())


def test_internal_error_counted_never_raised():
    class Raising(RecordingTcp):
        def input(self, *a):
            raise ValueError("bug")
    s = make_stack(tcp_factory=Raising)
    ok = frame(Ether(dst=MAC, src=PEER_MAC) / IP(src=PEER_IP, dst=MYIP) / ICMP())
    bad = frame(Ether(dst=MAC, src=PEER_MAC) / IP(src=PEER_IP, dst=MYIP) / TCP())
    s.process([bad, ok, bad], 0.0)
    assert s.counters["drop.internal"] == 2
    assert s.counters["icmp.rx_echo_request"] == 1     # the good frame in between went through


def test_mac_and_ip_forms():
    s = Stack(mac=bytes.fromhex("020000000002"), ip=ip_to_int(MYIP), tcp_factory=RecordingTcp)
    assert s.mac == bytes.fromhex("020000000002") and s.ip == ip_to_int(MYIP)
    with pytest.raises(ValueError):
        Stack(mac="02:00", ip=MYIP, tcp_factory=RecordingTcp)
    with pytest.raises(ValueError):
        Stack(mac=MAC, ip=MYIP, mtu=60, tcp_factory=RecordingTcp)


def test_fuzzed_frames_never_raise(stack):
    """Seeded random garbage and scapy-fuzzed headers: all counted, none internal."""
    rnd = random.Random(1234)
    frames = []
    for _ in range(400):
        n = rnd.randrange(0, 120)
        frames.append(bytes(rnd.getrandbits(8) for _ in range(n)))
    # garbage behind a valid Ethernet header of each type we parse
    for et in (b"\x08\x00", b"\x08\x06"):
        for _ in range(300):
            n = rnd.randrange(0, 80)
            frames.append(bytes(10) + bytes.fromhex(MAC.replace(":", "")) + bytes(6) + et
                          + bytes(rnd.getrandbits(8) for _ in range(n)))
    random.seed(99)   # scapy's fuzz() draws from the global generator
    eth = Ether(dst=MAC, src=PEER_MAC)
    for _ in range(200):
        frames.append(frame(eth / fuzz(IP(dst=MYIP) / ICMP())))
        frames.append(frame(eth / IP(src=PEER_IP, dst=MYIP) / fuzz(ICMP())))
        frames.append(frame(eth / fuzz(ARP(pdst=MYIP))))
        frames.append(frame(eth / fuzz(IP(src=PEER_IP, dst=MYIP, proto=6)) / TCP()))
        frames.append(frame(eth / IP(src=PEER_IP, dst=MYIP) / fuzz(UDP())))
    stack.process(frames, 0.0)
    stack.dispatch(0.0)
    c = stack.counters
    assert c["drop.internal"] == 0
    assert c["rx.frames"] == len(frames)
    output_side = ("drop.arp.queue_full", "drop.arp.unresolved", "drop.arp.too_many_pending", "drop.ipv4.no_route",
                   "drop.ipv4.bad_dst", "drop.ipv4.too_big")
    # every frame ends in exactly one place: one drop reason or one consumer
    # (a fragment ends in reassembly: in one frag drop, as a duplicate, still waiting, or
    # in a reassembled datagram, which goes on as one frame)
    frag_drops = sum(v for k, v in c.items() if k.startswith("drop.ipv4.frag_"))
    ended = (sum(v for k, v in c.items() if k.startswith("drop.") and k not in output_side)
             - frag_drops + c["ipv4.frag_rx"] - c["ipv4.reassembled"]
             + c["tcp.rx"] + c["icmp.rx_echo_request"] + c["icmp.rx_other"]
             + c["icmp.rx_unreachable"] + c["arp.rx_request"] + c["arp.rx_reply"])
    assert ended == len(frames)
    assert c["drop.arp.bad"] > 0 and c["drop.ipv4.bad_version"] > 0 and c["drop.eth.short"] > 0
