"""IPv4 input handoff to TCP (exact offsets, padding trimmed, options skipped) and
IPv4 output (header checked by scapy, on-link vs gateway, no route, too big)."""
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from framework.net.checksum import l4_checksum
from framework.net.wire.ipv4 import ip_to_int
from framework.net.wire import vnet

from .conftest import (FAR_IP, GW_IP, GW_MAC, IP as MYIP, MAC, PEER_IP, PEER_MAC, drops, frame, inject,
                       learn_peer, make_stack, parse)

ME = ip_to_int(MYIP)
PEER = ip_to_int(PEER_IP)
ETH = Ether(dst=MAC, src=PEER_MAC)


def test_tcp_handoff_exact(stack):
    seg = TCP(sport=40000, dport=80, flags="S", seq=1000)
    f = frame(ETH / IP(src=PEER_IP, dst=MYIP) / seg)
    out, d = inject(stack, f, now=3.25)
    assert out == [] and drops(d) == {}
    (fr, src, dst, off, end, trusted, now), = stack.tcp.inputs
    assert fr is f                         # no copy
    assert (src, dst, off, end, trusted, now) == (PEER, ME, 44, 44 + 20, False, 3.25)
    assert TCP(fr[off:end]).seq == 1000


def test_padding_trimmed(stack):
    """A bare ACK is 54 bytes; Ethernet pads it to 60: the segment still ends at 54."""
    f = frame(ETH / IP(src=PEER_IP, dst=MYIP) / TCP(flags="A")) + bytes(6)
    assert len(f) == 10 + 60
    inject(stack, f)
    (_, _, _, off, end, _, _), = stack.tcp.inputs
    assert (off, end) == (44, 64)


def test_padding_trimmed_with_payload(stack):
    f = frame(ETH / IP(src=PEER_IP, dst=MYIP) / TCP(flags="PA") / b"hi") + b"\xee" * 4
    inject(stack, f)
    (fr, _, _, off, end, _, _), = stack.tcp.inputs
    assert bytes(TCP(fr[off:end]).payload) == b"hi"


def test_options_skipped(stack):
    ip = IP(src=PEER_IP, dst=MYIP, options=[b"\x94\x04\x00\x00"])  # Router Alert, 4 bytes
    f = frame(ETH / ip / TCP(sport=1, dport=2))
    inject(stack, f)
    (fr, _, _, off, end, _, _), = stack.tcp.inputs
    assert (off, end) == (48, 68)
    assert TCP(fr[off:end]).sport == 1


@pytest.mark.parametrize("flags,trusted", [(0, False), (vnet.F_NEEDS_CSUM, True), (vnet.F_DATA_VALID, True)])
def test_csum_trusted_passed_from_vnet(stack, flags, trusted):
    hdr = vnet.VNET_HDR.pack(flags, 0, 0, 0, 0, 0)
    inject(stack, frame(ETH / IP(src=PEER_IP, dst=MYIP) / TCP(), hdr=hdr))
    assert stack.tcp.inputs[0][5] is trusted


def test_ttl_one_and_df_accepted(stack):
    """RFC 1122 3.2.1.7: a host must not drop a datagram for a TTL below 2."""
    inject(stack, frame(ETH / IP(src=PEER_IP, dst=MYIP, ttl=1, flags="DF") / TCP()))
    assert len(stack.tcp.inputs) == 1


def test_broadcast_mac_with_our_ip_accepted(stack):
    inject(stack, frame(Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / IP(src=PEER_IP, dst=MYIP) / TCP()))
    assert len(stack.tcp.inputs) == 1


def test_gso_sized_frame_handed_over(stack):
    payload = b"z" * 60000
    hdr = vnet.VNET_HDR.pack(vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, 54, 1448, 34, 16)
    inject(stack, frame(ETH / IP(src=PEER_IP, dst=MYIP) / TCP() / payload, hdr=hdr))
    (_, _, _, off, end, trusted, _), = stack.tcp.inputs
    assert end - off == 20 + 60000 and trusted


# --- output -----------------------------------------------------------------------------

def out_one(stack, dst, payload, proto=6, hdr=vnet.PLAIN, now=0.0):
    stack.process([], now)
    stack.ip_output(dst, proto, payload, hdr)
    out = stack.dispatch(now)
    assert len(out) == 1, out
    return out[0]


def check_ip(f, dst, payload, proto=6):
    p = parse(f)
    ip = p[IP]
    assert ip.version == 4 and ip.ihl == 5 and ip.tos == 0
    assert ip.len == 20 + len(payload)
    assert ip.flags == "DF" and ip.frag == 0 and ip.ttl == 64 and ip.proto == proto
    assert ip.src == MYIP and ip.dst == dst
    again = IP(bytes(ip))
    del again.chksum                                   # scapy recomputes it
    assert ip.chksum == IP(bytes(again)).chksum
    assert bytes(ip.payload) == payload
    assert p[Ether].src == MAC and p[Ether].type == 0x0800
    # byte for byte what scapy builds for the same datagram (our IP id is a counter)
    expected = (Ether(dst=p[Ether].dst, src=MAC) /
                IP(src=MYIP, dst=dst, id=ip.id, flags="DF", ttl=64, proto=proto) / Raw(payload))
    assert f[10:] == bytes(expected)
    return p


def test_output_on_link(stack):
    learn_peer(stack)
    seg = bytes(TCP(sport=80, dport=40000, flags="SA"))
    p = check_ip(out_one(stack, PEER, seg), PEER_IP, seg)
    assert p[Ether].dst == PEER_MAC


def test_output_many_destinations_and_ids(stack):
    learn_peer(stack)
    other = "198.18.0.9"
    learn_peer(stack, ip=other, mac="02:00:00:00:00:09")
    stack.process([], 0.0)
    for i in range(300):
        stack.ip_output(PEER if i % 2 else ip_to_int(other), 6, bytes(i))
    out = stack.dispatch(0.0)
    ids = []
    for i, f in enumerate(out):
        p = check_ip(f, PEER_IP if i % 2 else other, bytes(i))
        assert p[Ether].dst == (PEER_MAC if i % 2 else "02:00:00:00:00:09")
        ids.append(p[IP].id)
    assert len(set(ids)) == 300                      # consecutive ids never repeat soon


def test_ip_id_wraps(stack):
    learn_peer(stack)
    stack.ipv4.ip_id = 0xFFFE
    stack.process([], 0.0)
    for _ in range(3):
        stack.ip_output(PEER, 6, b"x")
    out = stack.dispatch(0.0)
    assert [parse(f)[IP].id for f in out] == [0xFFFF, 0, 1]
    for f in out:
        check_ip(f, PEER_IP, b"x")


def test_output_via_gateway():
    stack = make_stack(gateway=GW_IP)
    learn_peer(stack, ip=GW_IP, mac=GW_MAC)
    p = check_ip(out_one(stack, ip_to_int(FAR_IP), b"payload"), FAR_IP, b"payload")
    assert p[Ether].dst == GW_MAC


def test_on_link_does_not_use_gateway():
    stack = make_stack(gateway=GW_IP)
    learn_peer(stack, ip=GW_IP, mac=GW_MAC)
    learn_peer(stack)
    p = check_ip(out_one(stack, PEER, b"x"), PEER_IP, b"x")
    assert p[Ether].dst == PEER_MAC


def test_prefix_decides_on_link():
    stack = make_stack(prefix=15)              # 198.18.0.0/15: 198.19.x is on-link
    learn_peer(stack, ip=FAR_IP, mac="02:00:00:00:00:44")
    p = check_ip(out_one(stack, ip_to_int(FAR_IP), b"x"), FAR_IP, b"x")
    assert p[Ether].dst == "02:00:00:00:00:44"


def test_no_gateway_off_link_dropped(stack):
    stack.process([], 0.0)
    stack.ip_output(ip_to_int(FAR_IP), 6, b"x")
    assert stack.dispatch(0.0) == []
    assert stack.counters["drop.ipv4.no_route"] == 1


@pytest.mark.parametrize("dst", [MYIP, "198.18.0.255", "255.255.255.255", "224.0.0.1", "0.0.0.0"])
def test_bad_destination_dropped(stack, dst):
    stack.process([], 0.0)
    stack.ip_output(ip_to_int(dst), 6, b"x")
    assert stack.dispatch(0.0) == []
    assert stack.counters["drop.ipv4.bad_dst"] == 1


def test_gateway_must_be_on_link():
    with pytest.raises(ValueError):
        make_stack(gateway="198.19.0.1")


def test_too_big_dropped_without_gso(stack):
    learn_peer(stack)
    stack.ip_output(PEER, 6, bytes(1481))         # 1501 > mtu 1500
    assert stack.dispatch(0.0) == []
    assert stack.counters["drop.ipv4.too_big"] == 1
    check_ip(out_one(stack, PEER, bytes(1480)), PEER_IP, bytes(1480))


def test_gso_frame_allowed_up_to_64k(stack):
    learn_peer(stack)
    hdr = vnet.gso_tcpv4_hdr(54, 1448, 34)
    payload = bytes(TCP()) + bytes(60000)
    f = out_one(stack, PEER, payload, hdr=hdr)
    assert f[:10] == hdr
    p = Ether(f[10:])
    assert p[IP].len == 20 + len(payload)
    stack.ip_output(PEER, 6, bytes(65536 - 20), hdr)   # beyond the IPv4 total length field
    assert stack.dispatch(0.0) == [] and stack.counters["drop.ipv4.too_big"] == 1


def test_vnet_header_passed_through_for_csum_offload(stack):
    """TCP's NEEDS_CSUM header reaches the port unchanged and lines up with the frame."""
    learn_peer(stack)
    src, dst = ME, PEER
    seg = bytearray(bytes(TCP(sport=80, dport=5555, flags="A")))
    full = l4_checksum(src, dst, 6, bytes(seg))
    hdr = vnet.csum_partial_hdr(34, 16)
    f = out_one(stack, PEER, bytes(seg), hdr=hdr)
    assert f[:10] == hdr
    # csum_start/csum_offset point at the TCP checksum field of the Ethernet frame
    eth = f[10:]
    assert eth[34 + 16:34 + 18] == b"\0\0"
    assert eth[34:] == bytes(seg)
    assert full == TCP(bytes(IP(src=MYIP, dst=PEER_IP) / TCP(sport=80, dport=5555, flags="A"))[20:]).chksum


def test_template_follows_time_and_arp(stack):
    """A cached header template never outlives its ARP entry."""
    stack = make_stack(arp_ttl=10.0)
    learn_peer(stack, now=0.0)
    check_ip(out_one(stack, PEER, b"a", now=1.0), PEER_IP, b"a")
    stack.process([], 11.0)
    stack.ip_output(PEER, 6, b"b")
    out = stack.dispatch(11.0)
    assert len(out) == 1 and parse(out[0])[Ether].type == 0x0806     # re-resolving, b queued


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_output_accepts_buffer_payloads(stack, kind):
    learn_peer(stack)
    check_ip(out_one(stack, PEER, kind(b"abcdef")), PEER_IP, b"abcdef")
