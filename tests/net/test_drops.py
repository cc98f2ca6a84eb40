"""One scapy-built frame per drop reason: each is counted under exactly its own reason,
nothing is sent, nothing reaches TCP, nothing raises."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from .conftest import IP as MYIP, MAC, PEER_IP, PEER_MAC, drops, frame, inject

ETH = Ether(dst=MAC, src=PEER_MAC)


def arp_req(**kw):
    f = dict(op=1, hwsrc=PEER_MAC, psrc=PEER_IP, pdst=MYIP)
    f.update(kw)
    return Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / ARP(**f)


def patched(pkt, off, value: bytes):
    """Bytes of pkt with the bytes at Ethernet offset ``off`` replaced."""
    b = bytearray(bytes(pkt))
    b[off:off + len(value)] = value
    return bytes(b)


def tcp_pkt(**ipkw):
    kw = dict(src=PEER_IP, dst=MYIP)
    kw.update(ipkw)
    return ETH / IP(**kw) / TCP(sport=1234, dport=80, flags="S")


CASES = {
    # --- Ethernet
    "eth.empty": ("drop.eth.short", b""),
    "eth.only_vnet_part": ("drop.eth.short", bytes(5)),
    "eth.vnet_only": ("drop.eth.short", bytes(10)),
    "eth.truncated_header": ("drop.eth.short", bytes(10) + bytes(ETH)[:13]),
    "eth.other_unicast_ipv4": ("drop.eth.not_for_us",
                               frame(Ether(dst="02:00:00:00:00:99", src=PEER_MAC) / IP(src=PEER_IP, dst=MYIP) / TCP())),
    "eth.other_unicast_arp": ("drop.eth.not_for_us",
                              frame(Ether(dst="02:00:00:00:00:99", src=PEER_MAC) /
                                    ARP(op=2, hwsrc=PEER_MAC, psrc=PEER_IP, pdst=MYIP))),
    "eth.ipv6": ("drop.eth.unknown_type", frame(Ether(dst="33:33:00:00:00:01", src=PEER_MAC) / IPv6() / UDP())),
    "eth.vlan": ("drop.eth.unknown_type", frame(ETH / Dot1Q(vlan=5) / IP(src=PEER_IP, dst=MYIP) / TCP())),
    "eth.unknown_short": ("drop.eth.unknown_type", frame(Ether(dst=MAC, src=PEER_MAC, type=0x88B5) / Raw(b"x"))),
    # --- ARP
    "arp.truncated": ("drop.arp.short", frame(arp_req())[:10 + 14 + 20]),
    "arp.hwtype": ("drop.arp.bad", frame(patched(arp_req(), 14, b"\x00\x06"))),
    "arp.ptype": ("drop.arp.bad", frame(patched(arp_req(), 16, b"\x86\xdd"))),
    "arp.hwlen": ("drop.arp.bad", frame(patched(arp_req(), 18, b"\x08"))),
    "arp.plen": ("drop.arp.bad", frame(patched(arp_req(), 19, b"\x10"))),
    "arp.op": ("drop.arp.bad_op", frame(arp_req(op=3))),
    "arp.op0": ("drop.arp.bad_op", frame(arp_req(op=0))),
    "arp.sender_broadcast_mac": ("drop.arp.bad_sender", frame(arp_req(hwsrc="ff:ff:ff:ff:ff:ff"))),
    "arp.sender_multicast_mac": ("drop.arp.bad_sender", frame(arp_req(hwsrc="01:00:5e:00:00:01"))),
    "arp.sender_zero_mac": ("drop.arp.bad_sender", frame(arp_req(hwsrc="00:00:00:00:00:00"))),
    "arp.sender_our_mac": ("drop.arp.bad_sender", frame(arp_req(hwsrc=MAC))),
    "arp.sender_multicast_ip": ("drop.arp.bad_sender", frame(arp_req(psrc="224.0.0.1"))),
    "arp.sender_loopback_ip": ("drop.arp.bad_sender", frame(arp_req(psrc="127.0.0.1"))),
    "arp.reply_from_zero_ip": ("drop.arp.bad_sender",
                               frame(ETH / ARP(op=2, hwsrc=PEER_MAC, psrc="0.0.0.0", hwdst=MAC, pdst=MYIP))),
    "arp.request_for_other": ("drop.arp.not_for_us", frame(arp_req(pdst="198.18.0.77"))),
    "arp.conflict": ("drop.arp.conflict", frame(arp_req(psrc=MYIP, pdst="198.18.0.77"))),
    # --- IPv4
    "ipv4.truncated_header": ("drop.ipv4.short", frame(ETH / IP(src=PEER_IP, dst=MYIP))[:10 + 14 + 12]),
    "ipv4.options_beyond_frame": ("drop.ipv4.short", frame(tcp_pkt(ihl=15))[:10 + 14 + 40]),
    "ipv4.version6": ("drop.ipv4.bad_version", frame(tcp_pkt(version=6))),
    "ipv4.version0": ("drop.ipv4.bad_version", frame(tcp_pkt(version=0))),
    "ipv4.ihl4": ("drop.ipv4.bad_ihl", frame(tcp_pkt(ihl=4))),
    "ipv4.ihl0": ("drop.ipv4.bad_ihl", frame(tcp_pkt(ihl=0))),
    "ipv4.len_beyond_frame": ("drop.ipv4.bad_length", frame(tcp_pkt(len=1000))),
    "ipv4.len_below_header": ("drop.ipv4.bad_length", frame(tcp_pkt(len=19))),
    "ipv4.len_below_options": ("drop.ipv4.bad_length", frame(tcp_pkt(ihl=6, len=20, options=[b"\x01\x01\x01\x01"]))),
    "ipv4.checksum": ("drop.ipv4.bad_checksum", frame(tcp_pkt(chksum=0x1234))),
    "ipv4.checksum_zero": ("drop.ipv4.bad_checksum", frame(tcp_pkt(chksum=0))),
    "ipv4.checksum_options": ("drop.ipv4.bad_checksum",
                              frame(tcp_pkt(chksum=0x1234, options=[b"\x01\x01\x01\x01"]))),
    # fragments (one frame each; overlaps, timeouts and limits: test_reassembly.py)
    "ipv4.frag_first_without_tcp_header": ("drop.ipv4.frag_short_first",
                                           frame(ETH / IP(src=PEER_IP, dst=MYIP, proto=6, id=101, flags="MF")
                                                 / Raw(b"x" * 16))),
    "ipv4.frag_beyond_64k": ("drop.ipv4.frag_too_big",
                             frame(ETH / IP(src=PEER_IP, dst=MYIP, proto=6, id=102, frag=8189) / Raw(b"x" * 40))),
    "ipv4.frag_not_multiple_of_8": ("drop.ipv4.frag_bad",
                                    frame(ETH / IP(src=PEER_IP, dst=MYIP, proto=6, id=103, flags="MF", frag=10)
                                          / Raw(b"x" * 13))),
    "ipv4.frag_for_other_host": ("drop.ipv4.not_for_us", frame(tcp_pkt(dst="198.18.0.9", flags="MF"))),
    "ipv4.frag_udp": ("drop.ipv4.unknown_proto",
                      frame(ETH / IP(src=PEER_IP, dst=MYIP, proto=17, id=104, flags="MF") / Raw(b"x" * 16))),
    "ipv4.other_host": ("drop.ipv4.not_for_us", frame(tcp_pkt(dst="198.18.0.9"))),
    "ipv4.other_net": ("drop.ipv4.not_for_us", frame(tcp_pkt(dst="198.19.0.2"))),
    "ipv4.limited_broadcast": ("drop.ipv4.broadcast",
                               frame(Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / IP(src=PEER_IP, dst="255.255.255.255") / ICMP())),
    "ipv4.subnet_broadcast": ("drop.ipv4.broadcast",
                              frame(Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / IP(src=PEER_IP, dst="198.18.0.255") / ICMP())),
    "ipv4.multicast": ("drop.ipv4.broadcast",
                       frame(Ether(dst="01:00:5e:00:00:01", src=PEER_MAC) / IP(src=PEER_IP, dst="224.0.0.1") / ICMP())),
    "ipv4.src_multicast": ("drop.ipv4.bad_src", frame(tcp_pkt(src="224.0.0.5"))),
    "ipv4.src_broadcast": ("drop.ipv4.bad_src", frame(tcp_pkt(src="255.255.255.255"))),
    "ipv4.src_subnet_broadcast": ("drop.ipv4.bad_src", frame(tcp_pkt(src="198.18.0.255"))),
    "ipv4.src_loopback": ("drop.ipv4.bad_src", frame(tcp_pkt(src="127.0.0.1"))),
    "ipv4.src_zero": ("drop.ipv4.bad_src", frame(tcp_pkt(src="0.0.0.0"))),
    "ipv4.src_ourselves": ("drop.ipv4.bad_src", frame(tcp_pkt(src=MYIP))),
    "ipv4.udp": ("drop.ipv4.unknown_proto", frame(ETH / IP(src=PEER_IP, dst=MYIP) / UDP(dport=53))),
    "ipv4.proto99": ("drop.ipv4.unknown_proto", frame(ETH / IP(src=PEER_IP, dst=MYIP, proto=99) / Raw(b"x" * 30))),
    # --- ICMP
    "icmp.truncated": ("drop.icmp.short", frame(ETH / IP(src=PEER_IP, dst=MYIP, proto=1) / Raw(b"\x08\x00\xf7\xff"))),
    "icmp.empty": ("drop.icmp.short", frame(ETH / IP(src=PEER_IP, dst=MYIP, proto=1))),
    "icmp.unreachable_short_quote": ("drop.icmp.bad_quote",
                                     frame(ETH / IP(src=PEER_IP, dst=MYIP) / ICMP(type=3, code=1) / (b"\x45" + bytes(19)))),
    "icmp.bad_checksum": ("drop.icmp.bad_checksum",
                          frame(ETH / IP(src=PEER_IP, dst=MYIP) / ICMP(type=8, id=1, seq=1, chksum=0x1111) / b"abc")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_drop_reason(stack, case):
    reason, f = CASES[case]
    out, d = inject(stack, f)
    assert drops(d) == {reason: 1}, d
    assert out == []
    assert stack.tcp.inputs == []
    assert stack.counters["drop.internal"] == 0


def test_every_input_drop_reason_has_a_case():
    """Every input-side drop counter the stack declares is exercised above (output-side
    ones have their own tests)."""
    from .conftest import make_stack
    output_side = {"drop.ipv4.no_route", "drop.ipv4.bad_dst", "drop.ipv4.too_big",
                   # several frames each: test_reassembly.py
                   "drop.ipv4.frag_overlap", "drop.ipv4.frag_timeout", "drop.ipv4.frag_limit",
                   "drop.arp.queue_full", "drop.arp.unresolved", "drop.arp.too_many_pending",
                   "drop.internal"}
    declared = {k for k in make_stack().counters if k.startswith("drop.") and not k.startswith("drop.tcp.")}
    covered = {reason for reason, _ in CASES.values()}
    assert declared - output_side == covered


def test_padded_bad_frames_still_counted_once(stack):
    """A batch of every bad frame at once: each counted, none stops the others."""
    frames = [f for _, f in CASES.values()]
    out, d = inject(stack, frames)
    expected = {}
    for reason, _ in CASES.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert drops(d) == expected
    assert d["rx.frames"] == len(frames)
