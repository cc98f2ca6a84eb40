"""The AF_PACKET port's ring for bare SYNs (framework/nic/synring.py)."""
import select
import socket
import time

import pytest
from scapy.all import IP, TCP, UDP, Ether, raw

from framework.net.wire import vnet
from framework.nic import steer, synring
from framework.nic.afpacket import AfPacketPort
from framework.nic.nsenter import netns as in_netns

from .helpers import HOST_IP, STACK_IP, STACK_MAC, VethLink

CLIENT_MAC = "02:00:00:00:00:01"


def frames():
    """(name, frame, is a bare SYN) of the kinds the two filters must tell apart."""
    eth = Ether(dst=STACK_MAC, src=CLIENT_MAC)
    ip = IP(src=HOST_IP, dst=STACK_IP)
    out = []
    for sport in range(40000, 40040):
        out += [
            ("syn", eth / ip / TCP(sport=sport, dport=80, flags="S"), True),
            ("syn ece cwr", eth / ip / TCP(sport=sport, dport=80, flags="SEC"), True),
            ("syn with options", eth / ip / TCP(sport=sport, dport=80, flags="S", options=[
                ("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("WScale", 7)]), True),
            ("syn-ack", eth / ip / TCP(sport=sport, dport=80, flags="SA"), False),
            ("ack", eth / ip / TCP(sport=sport, dport=80, flags="A"), False),
            ("rst", eth / ip / TCP(sport=sport, dport=80, flags="R"), False),
            ("syn-fin", eth / ip / TCP(sport=sport, dport=80, flags="SF"), False),
            ("syn-rst", eth / ip / TCP(sport=sport, dport=80, flags="SR"), False),
            ("udp", eth / ip / UDP(sport=sport, dport=80), False),
            ("syn fragment", eth / IP(src=HOST_IP, dst=STACK_IP, flags="MF")
             / TCP(sport=sport, dport=80, flags="S"), False),
        ]
    out.append(("arp", Ether(dst="ff:ff:ff:ff:ff:ff", src=CLIENT_MAC, type=0x0806)
                / (b"\x00" * 28), False))
    return [(n, raw(f), syn) for n, f, syn in out]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_filters_split_each_shards_frames_between_the_two_rings(n):
    for name, f, syn in frames():
        for shard in range(n):
            plain = steer.run_program(steer.filter_program(n, shard), f) > 0
            to_syn = steer.run_program(synring.syn_filter(n, shard), f) > 0
            to_main = steer.run_program(synring.main_filter(n, shard), f) > 0
            # exactly the shard's frames, each in one ring: the SYN ring only bare SYNs
            assert (to_syn or to_main) == plain, (name, shard)
            assert not (to_syn and to_main), (name, shard)
            if plain:
                assert to_syn == syn, (name, shard)


@pytest.fixture
def link(lab):
    return VethLink(lab)


def _sender(link):
    with in_netns(link.C):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((link.b, 0))
    return s


def _syn(sport):
    return raw(Ether(dst=STACK_MAC, src=CLIENT_MAC) / IP(src=HOST_IP, dst=STACK_IP)
               / TCP(sport=sport, dport=80, flags="S"))


def _udp(sport):
    return raw(Ether(dst=STACK_MAC, src=CLIENT_MAC) / IP(src=HOST_IP, dst=STACK_IP)
               / UDP(sport=sport, dport=80) / b"x")


def test_a_syn_burst_larger_than_the_main_ring_is_kept_and_other_frames_go_first(link):
    port = AfPacketPort(link.a, netns=link.S)
    tx = _sender(link)
    try:
        assert port.spec.frames < 2000 <= synring.SLOTS
        for i in range(2000):
            tx.send(_syn(20000 + i))
        for i in range(20):
            tx.send(_udp(30000 + i))
        assert select.select([port.fileno()], [], [], 2)[0]
        time.sleep(0.2)                         # every frame through the veth's backlog
        first = port.rx_burst(64)
        assert len(first) == 20 + 64            # the main ring's 20, then a SYN share of 64
        assert all(f[vnet.VNET_LEN + 23] == 17 for f in first[:20])
        assert all(f[vnet.VNET_LEN + 23] == 6 for f in first[20:])
        got = len(first) - 20
        while True:
            b = port.rx_burst(64)
            assert len(b) <= 64
            if not b:
                break
            got += len(b)
        assert got == 2000
        port.kernel_stats()
        assert port.stats["rx_drops"] == 0 and port.stats["rx_syn"] == 2000
    finally:
        tx.close()
        port.close()


def test_the_port_polls_readable_for_a_lone_syn(link):
    port = AfPacketPort(link.a, netns=link.S)
    tx = _sender(link)
    try:
        assert not select.select([port.fileno()], [], [], 0.05)[0]
        tx.send(_syn(20000))
        assert select.select([port.fileno()], [], [], 2)[0]
        got = port.rx_burst(64)
        assert len(got) == 1 and got[0][vnet.VNET_LEN:] == _syn(20000)
    finally:
        tx.close()
        port.close()
