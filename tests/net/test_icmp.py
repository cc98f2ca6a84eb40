"""ICMP echo: exact replies checked by scapy; other types counted."""
import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from framework.net.wire import vnet

from .conftest import IP as MYIP, MAC, PEER_IP, PEER_MAC, drops, frame, inject, learn_peer, parse

ETH = Ether(dst=MAC, src=PEER_MAC)


def echo(id_=0x1234, seq=7, data=b"ping payload", **ipkw):
    return ETH / IP(src=PEER_IP, dst=MYIP, **ipkw) / ICMP(type=8, id=id_, seq=seq) / data


def verified(pkt_cls, raw):
    """The checksum scapy computes for this header, given the wire bytes."""
    p = pkt_cls(raw)
    del p.chksum
    return pkt_cls(bytes(p)).chksum


@pytest.mark.parametrize("data", [b"", b"x", b"ping payload", bytes(range(256)) * 5 + b"odd"])
def test_echo_reply_exact(stack, data):
    learn_peer(stack)
    out, d = inject(stack, frame(echo(data=data)))
    assert len(out) == 1
    p = parse(out[0])
    assert p[Ether].dst == PEER_MAC and p[Ether].src == MAC
    ip, icmp = p[IP], p[ICMP]
    assert (ip.src, ip.dst, ip.proto, ip.ttl, ip.len) == (MYIP, PEER_IP, 1, 64, 20 + 8 + len(data))
    assert ip.chksum == verified(IP, bytes(ip))
    assert (icmp.type, icmp.code, icmp.id, icmp.seq) == (0, 0, 0x1234, 7)
    assert bytes(icmp.payload) == data
    assert icmp.chksum == verified(ICMP, bytes(icmp))
    assert d["icmp.rx_echo_request"] == 1 and d["icmp.tx_echo_reply"] == 1 and drops(d) == {}
    assert len(out[0]) == 10 + 14 + 20 + 8 + len(data)
    # byte for byte what scapy builds for the same reply (our IP id is a counter)
    expected = (Ether(dst=PEER_MAC, src=MAC) / IP(src=MYIP, dst=PEER_IP, id=ip.id, flags="DF", ttl=64)
                / ICMP(type=0, id=0x1234, seq=7) / data)
    assert out[0][10:] == bytes(expected)


def test_echo_reply_with_padding_and_options(stack):
    learn_peer(stack)
    f = frame(echo(data=b"", options=[b"\x01\x01\x01\x01"])) + bytes(8)   # padded to 60 bytes
    out, _ = inject(stack, f)
    icmp = parse(out[0])[ICMP]
    assert bytes(icmp.payload) == b"" and icmp.chksum == verified(ICMP, bytes(icmp))


def test_echo_from_unknown_neighbour_resolves_then_replies(stack):
    out, _ = inject(stack, frame(echo()))
    assert len(out) == 1 and parse(out[0])[Ether].type == 0x0806
    from scapy.layers.l2 import ARP
    out, _ = inject(stack, frame(ETH / ARP(op=2, hwsrc=PEER_MAC, psrc=PEER_IP, hwdst=MAC, pdst=MYIP)), now=0.01)
    assert len(out) == 1 and parse(out[0])[ICMP].type == 0


def test_checksum_partial_request_not_verified(stack):
    """With NEEDS_CSUM the field is not final: trust it, reply with a correct checksum."""
    learn_peer(stack)
    raw = bytearray(bytes(echo()))
    raw[14 + 20 + 2:14 + 20 + 4] = b"\x12\x34"
    hdr = vnet.VNET_HDR.pack(vnet.F_NEEDS_CSUM, 0, 0, 0, 34, 2)
    out, d = inject(stack, hdr + bytes(raw))
    icmp = parse(out[0])[ICMP]
    assert icmp.chksum == verified(ICMP, bytes(icmp)) and drops(d) == {}


@pytest.mark.parametrize("type_,code", [(0, 0), (4, 0), (11, 0), (12, 0), (13, 0)])
def test_other_types_counted(stack, type_, code):
    learn_peer(stack)
    out, d = inject(stack, frame(ETH / IP(src=PEER_IP, dst=MYIP) / ICMP(type=type_, code=code) / b"12345678"))
    assert out == [] and d["icmp.rx_other"] == 1 and drops(d) == {}


def test_many_pings_sequence(stack):
    learn_peer(stack)
    frames = [frame(echo(seq=i, data=b"%d" % i)) for i in range(20)]
    out, _ = inject(stack, frames)
    assert [parse(f)[ICMP].seq for f in out] == list(range(20))
    assert [bytes(parse(f)[ICMP].payload) for f in out] == [b"%d" % i for i in range(20)]


def test_unreachable_quoting_ours_counted_short_quote_dropped(stack):
    """Destination unreachable goes to TCP when it quotes a TCP segment of ours
    (tests/net/tcp/test_icmp_errors.py); a quote of something else is counted and ignored,
    a quote too short to name a flow is dropped."""
    learn_peer(stack)
    udp_quote = bytes(IP(src=MYIP, dst=PEER_IP, proto=17) / (b"\x00" * 8))
    out, d = inject(stack, frame(ETH / IP(src=PEER_IP, dst=MYIP) / ICMP(type=3, code=3) / udp_quote))
    assert out == [] and d["icmp.rx_unreachable"] == 1 and drops(d) == {}
    out, d = inject(stack, frame(ETH / IP(src=PEER_IP, dst=MYIP) / ICMP(type=3, code=3) / udp_quote[:27]))
    assert out == [] and drops(d) == {"drop.icmp.bad_quote": 1}
