"""ARP: exact replies, learning, resolution before send with a queue, retries, give-up,
refresh and expiry, all with a fake clock."""
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from framework.net.wire.ipv4 import ip_to_int

from .conftest import (GW_IP, GW_MAC, IP as MYIP, MAC, PEER_IP, PEER_MAC, drops, frame, inject,
                       learn_peer, make_stack, parse)

PEER = ip_to_int(PEER_IP)
BCAST = "ff:ff:ff:ff:ff:ff"


def request(psrc=PEER_IP, hwsrc=PEER_MAC, pdst=MYIP, dst=BCAST):
    return frame(Ether(dst=dst, src=hwsrc) / ARP(op=1, hwsrc=hwsrc, psrc=psrc, pdst=pdst))


def reply(psrc=PEER_IP, hwsrc=PEER_MAC, pdst=MYIP, hwdst=MAC):
    return frame(Ether(dst=hwdst, src=hwsrc) / ARP(op=2, hwsrc=hwsrc, psrc=psrc, hwdst=hwdst, pdst=pdst))


def check_request(f, target, dst=BCAST):
    p = parse(f)
    assert p[Ether].dst == dst and p[Ether].src == MAC and p[Ether].type == 0x0806
    a = p[ARP]
    assert (a.hwtype, a.ptype, a.hwlen, a.plen, a.op) == (1, 0x0800, 6, 4, 1)
    assert (a.hwsrc, a.psrc, a.hwdst, a.pdst) == (MAC, MYIP, "00:00:00:00:00:00", target)
    assert len(f) == 10 + 42


def test_request_gets_exact_reply(stack):
    out, d = inject(stack, request())
    assert len(out) == 1
    expected = Ether(dst=PEER_MAC, src=MAC) / ARP(op=2, hwsrc=MAC, psrc=MYIP, hwdst=PEER_MAC, pdst=PEER_IP)
    assert out[0][10:] == bytes(expected)
    p = parse(out[0])
    assert p[ARP].op == 2 and p[ARP].hwsrc == MAC and p[ARP].psrc == MYIP
    assert p[ARP].hwdst == PEER_MAC and p[ARP].pdst == PEER_IP
    assert d == {"rx.frames": 1, "rx.arp": 1, "arp.rx_request": 1, "arp.tx_reply": 1,
                 "arp.learned": 1, "tx.frames": 1}


def test_unicast_request_answered(stack):
    out, _ = inject(stack, request(dst=MAC))
    assert len(out) == 1 and parse(out[0])[ARP].op == 2


def test_padded_request_answered(stack):
    """Ethernet pads a 42-byte ARP frame to 60 bytes: the padding is ignored."""
    out, d = inject(stack, request() + bytes(18))
    assert len(out) == 1 and drops(d) == {}


def test_request_teaches_sender(stack):
    inject(stack, request(), now=5.0)
    e = stack.arp.cache[PEER]
    assert e.mac == bytes.fromhex(PEER_MAC.replace(":", "")) and e.expires == 65.0


def test_reply_to_us_learned(stack):
    out, d = inject(stack, reply())
    assert out == [] and d["arp.learned"] == 1 and PEER in stack.arp.cache


def test_request_for_other_not_learned_when_unknown(stack):
    out, d = inject(stack, request(pdst="198.18.0.77"))
    assert out == [] and PEER not in stack.arp.cache
    assert drops(d) == {"drop.arp.not_for_us": 1}


def test_merge_updates_known_entry_even_when_not_for_us(stack):
    """RFC 826: a known sender's entry is refreshed by any ARP packet it sends."""
    learn_peer(stack, now=0.0)
    new_mac = "02:00:00:00:00:77"
    inject(stack, request(hwsrc=new_mac, pdst="198.18.0.77"), now=10.0)
    e = stack.arp.cache[PEER]
    assert e.mac == bytes.fromhex(new_mac.replace(":", "")) and e.expires == 70.0
    assert stack.counters["arp.changed"] == 1


def test_probe_answered_not_learned(stack):
    """RFC 5227 probe (sender IP 0.0.0.0) for our address: we defend it, learn nothing."""
    out, d = inject(stack, request(psrc="0.0.0.0"))
    assert len(out) == 1
    a = parse(out[0])[ARP]
    assert a.op == 2 and a.hwdst == PEER_MAC and a.pdst == "0.0.0.0" and a.psrc == MYIP
    assert parse(out[0])[Ether].dst == PEER_MAC
    assert stack.arp.cache == {} and d["arp.probe"] == 1


def test_gratuitous_announce(stack):
    stack.announce()
    out = stack.dispatch(0.0)
    assert len(out) == 1
    p = parse(out[0])
    assert p[Ether].dst == BCAST and p[ARP].op == 1 and p[ARP].psrc == MYIP and p[ARP].pdst == MYIP


# --- resolution before send ------------------------------------------------------------

def test_send_to_unknown_neighbour_requests_first(stack):
    stack.process([], 1.0)
    stack.ip_output(PEER, 6, b"seg1")
    out = stack.dispatch(1.0)
    assert len(out) == 1
    check_request(out[0], PEER_IP)
    assert stack.poll_at() == 2.0


def test_queued_frames_leave_in_order_after_reply(stack):
    stack.process([], 0.0)
    for i in range(3):
        stack.ip_output(PEER, 6, b"seg%d" % i)
    out = stack.dispatch(0.0)
    assert len(out) == 1           # one request, not one per frame
    out, d = inject(stack, reply(), now=0.2)
    assert [bytes(parse(f)[IP].payload) for f in out] == [b"seg0", b"seg1", b"seg2"]
    for f in out:
        assert parse(f)[Ether].dst == PEER_MAC
    assert d["arp.resolved"] == 1
    assert stack.arp.pending == {} and stack.poll_at() is None


def test_queue_bounded_oldest_dropped(stack):
    stack = make_stack(arp_queue=2)
    stack.process([], 0.0)
    for i in range(5):
        stack.ip_output(PEER, 6, b"seg%d" % i)
    stack.dispatch(0.0)
    assert stack.counters["drop.arp.queue_full"] == 3
    out, _ = inject(stack, reply(), now=0.1)
    assert [bytes(parse(f)[IP].payload) for f in out] == [b"seg3", b"seg4"]


def test_retries_then_gives_up(stack):
    stack = make_stack(arp_retry=1.0, arp_tries=3)
    stack.process([], 0.0)
    stack.ip_output(PEER, 6, b"a")
    stack.ip_output(PEER, 6, b"b")
    assert len(stack.dispatch(0.0)) == 1
    assert stack.dispatch(0.5) == []               # not due yet
    assert stack.poll_at() == 1.0
    out = stack.dispatch(1.0)
    assert len(out) == 1
    check_request(out[0], PEER_IP)
    assert stack.poll_at() == 2.0
    assert len(stack.dispatch(2.0)) == 1           # third and last try
    assert stack.counters["arp.tx_request"] == 3
    assert stack.dispatch(2.9) == []
    assert stack.dispatch(3.0) == []               # gave up: nothing sent, frames dropped
    c = stack.counters
    assert c["drop.arp.unresolved"] == 2 and c["arp.failed"] == 1
    assert stack.arp.pending == {} and stack.poll_at() is None
    # a late reply is still learned, but nothing is left to send
    out, _ = inject(stack, reply(), now=3.5)
    assert out == []
    # the next send starts over
    stack.ip_output(PEER, 6, b"c")
    out = stack.dispatch(4.0)
    assert len(out) == 1 and parse(out[0])[Ether].dst == PEER_MAC


def test_resolution_restarts_after_give_up(stack):
    stack = make_stack(arp_tries=1)
    stack.process([], 0.0)
    stack.ip_output(PEER, 6, b"a")
    assert len(stack.dispatch(0.0)) == 1
    assert stack.dispatch(1.0) == [] and stack.counters["drop.arp.unresolved"] == 1
    stack.ip_output(PEER, 6, b"b")
    out = stack.dispatch(1.5)
    assert len(out) == 1
    check_request(out[0], PEER_IP)


def test_expiry_triggers_new_resolution(stack):
    stack = make_stack(arp_ttl=60.0)
    learn_peer(stack, now=0.0)
    stack.process([], 59.9)
    stack.ip_output(PEER, 6, b"a")
    out = stack.dispatch(59.9)
    # the entry is in its refresh window: the frame goes out AND one unicast refresh request
    kinds = sorted(parse(f)[Ether].type for f in out)
    assert kinds == [0x0800, 0x0806]
    req = [f for f in out if parse(f)[Ether].type == 0x0806][0]
    check_request(req, PEER_IP, dst=PEER_MAC)
    stack.process([], 60.0)
    stack.ip_output(PEER, 6, b"b")
    out = stack.dispatch(60.0)
    assert len(out) == 1
    check_request(out[0], PEER_IP)                  # broadcast again: the entry expired
    assert PEER not in stack.arp.cache and PEER in stack.arp.pending


def test_refresh_keeps_busy_neighbour_without_stall(stack):
    stack = make_stack(arp_ttl=60.0)
    learn_peer(stack, now=0.0)
    stack.process([], 56.0)                      # last 5 s: refresh window
    stack.ip_output(PEER, 6, b"a")
    stack.ip_output(PEER, 6, b"b")
    out = stack.dispatch(56.0)
    assert sum(parse(f)[Ether].type == 0x0806 for f in out) == 1     # one refresh only
    assert stack.counters["arp.refresh"] == 1
    inject(stack, reply(), now=56.1)              # the neighbour answers
    assert stack.arp.cache[PEER].expires == 116.1
    stack.process([], 100.0)
    stack.ip_output(PEER, 6, b"c")
    out = stack.dispatch(100.0)
    assert len(out) == 1 and parse(out[0])[IP].payload.load == b"c"


def test_mac_change_reaches_output(stack):
    learn_peer(stack)
    stack.ip_output(PEER, 6, b"a")
    assert parse(stack.dispatch(0.0)[0])[Ether].dst == PEER_MAC
    new_mac = "02:00:00:00:00:55"
    # a gratuitous ARP from the peer with its new MAC
    inject(stack, request(hwsrc=new_mac, pdst=PEER_IP), now=1.0)
    stack.ip_output(PEER, 6, b"b")
    assert parse(stack.dispatch(1.0)[0])[Ether].dst == new_mac


def test_gateway_resolved_once_for_many_destinations():
    stack = make_stack(gateway=GW_IP)
    stack.process([], 0.0)
    for i in range(3):
        stack.ip_output(ip_to_int("198.19.0.%d" % (i + 1)), 6, b"x")
    out = stack.dispatch(0.0)
    assert len(out) == 1
    check_request(out[0], GW_IP)
    out, _ = inject(stack, reply(psrc=GW_IP, hwsrc=GW_MAC), now=0.1)
    assert [parse(f)[IP].dst for f in out] == ["198.19.0.1", "198.19.0.2", "198.19.0.3"]
    assert all(parse(f)[Ether].dst == GW_MAC for f in out)


def test_tcp_frame_from_unknown_peer_does_not_teach_arp(stack):
    """Only ARP teaches the cache (a spoofed IPv4 source must not redirect our traffic)."""
    inject(stack, frame(Ether(dst=MAC, src=PEER_MAC) / IP(src=PEER_IP, dst=MYIP) / TCP()))
    assert stack.arp.cache == {}


def test_pending_neighbours_bounded():
    stack = make_stack(arp_max_pending=3)
    stack.process([], 0.0)
    for i in range(5):
        stack.ip_output(ip_to_int("198.18.0.%d" % (10 + i)), 6, b"x")
    out = stack.dispatch(0.0)
    assert len(out) == 3 and len(stack.arp.pending) == 3
    assert stack.counters["drop.arp.too_many_pending"] == 2
