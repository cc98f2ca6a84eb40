"""Extra local addresses (--vip): the stack answers TCP and ICMP on them, from them, never
ARPs for them, and keeps their flows apart from the primary address's (CONTRACTS 3)."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import ARP, Ether

from framework.net.stack import Stack
from framework.net.tcp import EV_ACCEPT, TcpConfig

from .conftest import GW_IP, GW_MAC, IP as MYIP, MAC, frame, learn_peer, parse

VIP = "198.19.77.1"
CLIENT = "198.19.5.7"       # off-link: routed in through the gateway


def vip_stack(**kw):
    s = Stack(mac=MAC, ip=MYIP, prefix=24, gateway=GW_IP, csum_offload=False, vips=[VIP],
              tcp_config=TcpConfig(random_seed=b"\x01" * 32), **kw)
    learn_peer(s, GW_IP, GW_MAC)
    return s


def syn(dst, sport=40000, dport=8080, seq=1000):
    return frame(Ether(dst=MAC, src=GW_MAC) / IP(src=CLIENT, dst=dst)
                 / TCP(sport=sport, dport=dport, flags="S", seq=seq, window=65535))


def replies(s, now=0.0):
    return [parse(f) for f in s.dispatch(now)]


def checksums_ok(pkt):
    """The IPv4 and L4 checksums are what scapy computes afresh."""
    ip = IP(bytes(pkt[IP]))
    sent = (ip.chksum, ip.payload.chksum)
    del ip.chksum
    del ip.payload.chksum
    again = IP(bytes(ip))
    return (again.chksum, again.payload.chksum) == sent


def test_syn_to_vip_answered_from_vip_via_the_gateway():
    s = vip_stack()
    s.tcp.listen(8080)
    s.process([syn(VIP)], 0.0)
    out = replies(s)
    assert len(out) == 1
    p = out[0]
    assert p[Ether].dst == GW_MAC and p[IP].src == VIP and p[IP].dst == CLIENT
    assert p[TCP].flags == "SA" and p[TCP].ack == 1001
    assert checksums_ok(p)


def test_vip_connection_established_and_reported_with_its_local_address():
    s = vip_stack()
    s.tcp.listen(8080)
    s.process([syn(VIP)], 0.0)
    sa = replies(s)[0][TCP]
    ack = frame(Ether(dst=MAC, src=GW_MAC) / IP(src=CLIENT, dst=VIP)
                / TCP(sport=40000, dport=8080, flags="A", seq=1001, ack=sa.seq + 1, window=65535))
    s.process([ack], 0.1)
    evs = list(s.tcp.events)            # one event list for every address
    assert [e for e, _ in evs] == [EV_ACCEPT]
    conn = evs[0][1]
    assert conn.local == (s.vips[0], 8080)
    assert s.counters["tcp.passive_opens"] == 1   # one set of counters


def test_same_client_port_to_both_addresses_are_two_flows():
    s = vip_stack()
    s.tcp.listen(8080)
    s.process([syn(VIP, seq=1000), syn(MYIP, seq=5000)], 0.0)
    out = replies(s)
    assert sorted((p[IP].src, p[TCP].ack) for p in out) == [(MYIP, 5001), (VIP, 1001)]
    assert all(checksums_ok(p) for p in out)


def test_port_not_listening_on_vip_is_reset_from_vip():
    s = vip_stack()
    s.process([syn(VIP, dport=9)], 0.0)
    (p,) = replies(s)
    assert p[IP].src == VIP and "R" in str(p[TCP].flags)
    assert checksums_ok(p)


def test_ping_vip_answered_from_vip():
    s = vip_stack()
    s.process([frame(Ether(dst=MAC, src=GW_MAC) / IP(src=CLIENT, dst=VIP) / ICMP(id=7, seq=3)
                     / b"hello")], 0.0)
    (p,) = replies(s)
    assert p[IP].src == VIP and p[ICMP].type == 0 and p[ICMP].id == 7
    assert bytes(p[ICMP].payload) == b"hello"


def test_no_arp_answer_for_vip():
    s = vip_stack()
    s.process([frame(Ether(dst="ff:ff:ff:ff:ff:ff", src=GW_MAC)
                     / ARP(op=1, hwsrc=GW_MAC, psrc=GW_IP, pdst=VIP))], 0.0)
    assert replies(s) == []
    s.process([frame(Ether(dst="ff:ff:ff:ff:ff:ff", src=GW_MAC)
                     / ARP(op=1, hwsrc=GW_MAC, psrc=GW_IP, pdst=MYIP))], 0.0)
    (p,) = replies(s)
    assert p[ARP].op == 2 and p[ARP].psrc == MYIP


def test_reply_waiting_for_arp_keeps_the_vip_source():
    s = Stack(mac=MAC, ip=MYIP, prefix=24, gateway=GW_IP, csum_offload=False, vips=[VIP])
    s.tcp.listen(8080)
    s.process([syn(VIP)], 0.0)
    (req,) = replies(s)                 # the gateway is not known yet: an ARP request
    assert req[ARP].pdst == GW_IP
    s.process([frame(Ether(dst=MAC, src=GW_MAC)
                     / ARP(op=2, hwsrc=GW_MAC, psrc=GW_IP, hwdst=MAC, pdst=MYIP))], 0.1)
    (p,) = replies(s, 0.1)
    assert p[IP].src == VIP and p[TCP].flags == "SA"


def test_other_addresses_still_dropped():
    s = vip_stack()
    s.tcp.listen(8080)
    s.process([syn("198.19.77.2")], 0.0)
    assert replies(s) == [] and s.counters["drop.ipv4.not_for_us"] == 1


@pytest.mark.parametrize("vips", [[MYIP], [VIP, VIP]])
def test_bad_vip_lists(vips):
    with pytest.raises(ValueError):
        Stack(mac=MAC, ip=MYIP, vips=vips)
