"""IPv4 reassembly (framework/net/reassembly.py) through Stack.process: scapy-made fragments
in order, reversed, shuffled, duplicated, overlapping (teardrop and kin), with a piece
missing until the timeout, and floods that try to exhaust its memory; big echo replies
fragmented on the way out."""
import random

import pytest
from scapy.layers.inet import ICMP, IP, TCP, defragment, fragment
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from framework.net.reassembly import OVERHEAD, Reassembler
from framework.net.stack import Stack
from framework.net.tcp import TcpConfig
from framework.net.wire import vnet
from framework.net.wire.ipv4 import FLAG_MF, header, ip_to_int

from .conftest import IP as MYIP, MAC, PEER_IP, PEER_MAC, drops, frame, inject, learn_peer, parse

ETH = Ether(dst=MAC, src=PEER_MAC)
ETH_BYTES = bytes(ETH / IP())[:14]            # ethertype 0x0800
ME = ip_to_int(MYIP)
PEER = ip_to_int(PEER_IP)
DATA = bytes(range(256)) * 16                   # 4096 bytes


def tcp_datagram(ident=1, data=DATA, **tcpkw):
    tcpkw.setdefault("sport", 40000)
    tcpkw.setdefault("dport", 80)
    tcpkw.setdefault("flags", "PA")
    return IP(src=PEER_IP, dst=MYIP, id=ident) / TCP(**tcpkw) / Raw(data)


def changed(pkt, **fields):
    """A copy of a fragment with header fields changed and its checksum recomputed."""
    p = IP(bytes(pkt))
    for k, v in fields.items():
        setattr(p, k, v)
    del p.chksum
    return IP(bytes(p))


def frames_of(pkts):
    return [frame(ETH / p) for p in pkts]


def frag_frame(src, ident, offset, more, payload, proto=1):
    """A fragment built by hand (fast, for floods): offset in bytes."""
    ff = (offset >> 3) | (FLAG_MF if more else 0)
    return vnet.PLAIN + ETH_BYTES + header(src, ME, proto, len(payload), ident, flags=ff) + payload


def check_one_segment(stack, dgram):
    """RecordingTcp got exactly the whole segment, once, checksum to be verified."""
    assert len(stack.tcp.inputs) == 1, stack.tcp.inputs
    f, src, dst, l4, end, trusted, now = stack.tcp.inputs[0]
    assert f[l4:end] == bytes(dgram[TCP])
    assert (src, dst, trusted) == (PEER, ME, False)
    assert f[:10] == bytes(10) and f[10:24] == ETH_BYTES


@pytest.mark.parametrize("order", ["in_order", "reversed", "shuffled", "last_first"])
def test_fragments_reassembled_in_any_order(stack, order):
    dg = tcp_datagram()
    frags = fragment(dg, 1480)
    assert len(frags) == 3
    if order == "reversed":
        frags = frags[::-1]
    elif order == "shuffled":
        random.Random(5).shuffle(frags)
    elif order == "last_first":
        frags = [frags[-1]] + frags[:-1]
    out, d = inject(stack, frames_of(frags))
    check_one_segment(stack, dg)
    assert d["ipv4.frag_rx"] == 3 and d["ipv4.reassembled"] == 1 and drops(d) == {}
    assert stack.ipv4.reasm.pending == 0 and stack.ipv4.reasm.bytes == 0


def test_small_fragments_and_one_per_batch(stack):
    dg = tcp_datagram(ident=9)
    frags = fragment(dg, 128)                   # 33 fragments of 128 bytes, the last shorter
    for i, f in enumerate(frames_of(frags)):
        stack.process([f], i * 0.01)
    check_one_segment(stack, dg)


def test_duplicates_tolerated_and_counted(stack):
    dg = tcp_datagram()
    frags = fragment(dg, 1480)
    twice = [frags[0], frags[0], frags[1], frags[0], frags[2]]
    out, d = inject(stack, frames_of(twice))
    check_one_segment(stack, dg)
    assert d["ipv4.frag_duplicate"] == 2 and drops(d) == {}
    # a copy arriving after completion starts a new datagram that never completes: harmless
    out, d = inject(stack, frames_of([frags[1]]), now=1.0)
    assert len(stack.tcp.inputs) == 1 and stack.ipv4.reasm.pending == 1


def test_overlap_drops_whole_datagram_including_later_fragments(stack):
    dg = tcp_datagram(ident=5)
    frags = fragment(dg, 1480)                  # offsets 0, 1480, 2960
    evil = changed(frags[1], frag=(1480 - 8) // 8)   # starts 8 bytes early: overlaps the first
    out, d = inject(stack, frames_of([frags[0], evil]))
    assert d["drop.ipv4.frag_overlap"] == 2     # the stored first fragment and this one
    out, d = inject(stack, frames_of([frags[1], frags[2]]))
    assert drops(d) == {"drop.ipv4.frag_overlap": 2}   # RFC 5722: the rest goes too
    assert stack.tcp.inputs == [] and stack.ipv4.reasm.bytes == OVERHEAD   # a tombstone
    # the tombstone lasts until the timeout; the same id is usable again afterwards
    inject(stack, [], now=31.0)
    assert stack.ipv4.reasm.pending == 0 and stack.ipv4.reasm.bytes == 0
    inject(stack, frames_of(frags), now=32.0)
    check_one_segment(stack, dg)


def _teardrop(kind):
    """Classic attacks by their tools' names: fragments overlapping in the ways that
    crashed stacks (negative lengths, contained fragments, a first fragment rewritten)."""
    tcp = bytes(TCP(sport=40000, dport=80, flags="PA") / Raw(b"A" * 60))
    base = dict(src=PEER_IP, dst=MYIP, id=77, proto=6)
    if kind == "teardrop":        # 2nd starts inside the 1st and ends before its end
        return [IP(flags="MF", frag=0, **base) / tcp[:40], IP(frag=3, **base) / tcp[24:28]]
    if kind == "bonk":            # 2nd entirely inside the 1st, the 1st not yet marked last
        return [IP(flags="MF", frag=0, **base) / tcp[:48], IP(frag=1, **base) / tcp[8:16]]
    if kind == "nestea":          # 3 fragments, the last overlapping back over both
        return [IP(flags="MF", frag=0, **base) / tcp[:24], IP(flags="MF", frag=3, **base) / tcp[24:48],
                IP(frag=1, **base) / tcp[8:80]]
    if kind == "rewrite_header":  # a 2nd "first" fragment with other bytes (IDS evasion)
        other = bytes(TCP(sport=40000, dport=22, flags="PA")) + b"B" * 4
        return [IP(flags="MF", frag=0, **base) / tcp[:24], IP(flags="MF", frag=0, **base) / other,
                IP(frag=3, **base) / tcp[24:]]
    if kind == "tiny_offset1":    # RFC 1858: offset 1 rewrites the TCP flags of the first
        return [IP(flags="MF", frag=0, **base) / tcp[:24], IP(frag=1, **base) / tcp[8:]]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["teardrop", "bonk", "nestea", "rewrite_header", "tiny_offset1"])
def test_teardrop_style_overlaps_dropped(stack, kind):
    frags = _teardrop(kind)
    out, d = inject(stack, frames_of(frags))
    assert stack.tcp.inputs == [] and out == []
    assert set(drops(d)) == {"drop.ipv4.frag_overlap"}
    assert d["drop.ipv4.frag_overlap"] == len(frags)
    assert stack.counters["drop.internal"] == 0
    if kind == "rewrite_header":
        return   # reversed, its 2nd and 3rd fragments make a whole datagram before the 1st comes
    # reversed order: still dropped, never reassembled
    out, d = inject(stack, frames_of([changed(f, id=78) for f in reversed(frags)]))
    assert stack.tcp.inputs == [] and d["drop.ipv4.frag_overlap"] == len(frags)


def test_short_first_fragment_drops_the_datagram(stack):
    """A first fragment that does not hold the TCP header (20 bytes): RFC 1858."""
    dg = tcp_datagram(ident=21)
    raw = bytes(dg[TCP])
    frags = [IP(src=PEER_IP, dst=MYIP, id=21, proto=6, flags="MF") / raw[:16],
             IP(src=PEER_IP, dst=MYIP, id=21, proto=6, frag=2) / raw[16:]]
    out, d = inject(stack, frames_of(frags))
    assert drops(d) == {"drop.ipv4.frag_short_first": 2} and stack.tcp.inputs == []


def test_datagram_beyond_65535_dropped(stack):
    ident = 33
    frames = [frag_frame(PEER, ident, off, True, bytes(1480), proto=6) for off in range(0, 65120, 1480)]
    frames.append(frag_frame(PEER, ident, 65120, False, bytes(1480), proto=6))   # ends at 66600
    out, d = inject(stack, frames)
    assert drops(d) == {"drop.ipv4.frag_too_big": len(frames)}    # the stored ones too
    assert stack.tcp.inputs == []
    # alone, beyond the limit at once: too big
    out, d = inject(stack, [frag_frame(PEER, 34, 65000, False, bytes(600), proto=6)])
    assert drops(d) == {"drop.ipv4.frag_too_big": 1}


def test_missing_piece_times_out_after_30s(stack):
    dg = tcp_datagram(ident=44)
    frags = fragment(dg, 1480)
    inject(stack, frames_of([frags[0], frags[2]]), now=100.0)
    r = stack.ipv4.reasm
    assert r.pending == 1 and r.bytes > 2 * 1480
    out, d = inject(stack, [], now=129.9)
    assert r.pending == 1 and drops(d) == {}
    out, d = inject(stack, [], now=130.0)        # Stack.dispatch expires it
    assert drops(d) == {"drop.ipv4.frag_timeout": 2}
    assert r.pending == 0 and r.bytes == 0 and r.per_source == {}
    # the missing piece, late: waits alone (a new datagram), is never delivered
    out, d = inject(stack, frames_of([frags[1]]), now=131.0)
    assert stack.tcp.inputs == [] and r.pending == 1


def test_flood_from_one_source_stays_in_its_share(stack):
    """10,000 first fragments that never complete, from one source: memory stays within
    the per-source bound, and another host's fragmented datagrams still reassemble."""
    learn_peer(stack)
    r = stack.ipv4.reasm
    attacker = ip_to_int("198.18.0.66")
    flood = [frag_frame(attacker, i & 0xFFFF, 0, True, bytes(1480)) for i in range(10000)]
    for i in range(0, len(flood), 500):
        stack.process(flood[i:i + 500], 1.0)
        assert r.bytes <= r.max_bytes_per_source
        assert r.per_source[attacker][0] <= r.max_datagrams_per_source
    assert stack.counters["drop.ipv4.frag_limit"] >= 10000 - r.max_datagrams_per_source
    ping = IP(src=PEER_IP, dst=MYIP, id=999) / ICMP(type=8, id=3, seq=4) / Raw(DATA)
    out, d = inject(stack, frames_of(fragment(ping, 1480)), now=1.1)
    assert d["icmp.rx_echo_request"] == 1 and d["icmp.tx_echo_reply"] == 1


def test_flood_from_spoofed_sources_bounded_and_legit_still_reassembles(stack):
    """First fragments from 4000 spoofed sources fill the total bound; the oldest are
    evicted, memory never goes over it, and a legitimate datagram whose fragments come
    together (between flood frames) completes."""
    learn_peer(stack)
    r = stack.ipv4.reasm
    dg = tcp_datagram(ident=1234)
    legit = frames_of(fragment(dg, 1480))
    rnd = random.Random(7)
    total = 0
    for rnd_i in range(8):
        batch = [frag_frame(ip_to_int(f"198.19.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"),
                            rnd.randrange(65536), 0, True, bytes(1480)) for _ in range(500)]
        if rnd_i == 6:
            for k, f in enumerate(legit):        # spread over the batch: 20 flood frames apart
                batch.insert(1 + k * 21, f)
        stack.process(batch, 2.0 + rnd_i * 0.01)
        total += len(batch)
        assert r.bytes <= r.max_bytes and r.pending <= r.max_datagrams
        stored = sum(len(p[2]) + OVERHEAD for d in r.datagrams.values() for p in d.pieces)
        assert stored <= r.max_bytes
    assert stack.counters["drop.ipv4.frag_limit"] > 0
    check_one_segment(stack, dg)


def test_reassembled_segment_reaches_a_real_tcp_connection():
    """Through the real TcpLayer: the checksum of a reassembled segment is verified over
    the whole and its data is delivered."""
    s = Stack(mac=MAC, ip=MYIP, csum_offload=False,
              tcp_config=TcpConfig(timestamps=False, window_scale=False, random_seed=b"reasm"))
    learn_peer(s)
    s.tcp.listen(80)
    s.process([frame(ETH / IP(src=PEER_IP, dst=MYIP) / TCP(sport=40000, dport=80, flags="S", seq=100,
                                                             options=[("MSS", 1460)]))], 1.0)
    sa = parse(s.dispatch(1.0)[0])[TCP]
    ack = sa.seq + 1
    s.process([frame(ETH / IP(src=PEER_IP, dst=MYIP) / TCP(sport=40000, dport=80, flags="A", seq=101,
                                                             ack=ack))], 1.01)
    (ev, conn), = s.tcp.take_events()
    dg = tcp_datagram(ident=50, seq=101, ack=ack)
    s.process(frames_of(fragment(dg, 1480)[::-1]), 1.02)
    assert conn.recv() == DATA
    bad = IP(bytes(dg))
    bad[TCP].chksum ^= 0x5555
    bad.id = 51
    del bad.chksum
    before = s.counters["drop.tcp.bad_checksum"]
    s.process(frames_of(fragment(IP(bytes(bad)), 1480)), 1.03)
    assert s.counters["drop.tcp.bad_checksum"] == before + 1 and conn.recv() == b""


def test_big_echo_answered_in_fragments(stack):
    """An 8000-byte ping in 6 fragments: the reply (8008 bytes of ICMP) leaves in
    fragments of at most the MTU that reassemble into the exact echo reply."""
    learn_peer(stack)
    payload = bytes(random.Random(1).getrandbits(8) for _ in range(8000))
    ping = IP(src=PEER_IP, dst=MYIP, id=4321) / ICMP(type=8, id=0x77, seq=9) / Raw(payload)
    out, d = inject(stack, frames_of(fragment(ping, 1480)))
    assert d["icmp.tx_echo_reply"] == 1 and d["ipv4.frag_tx"] == len(out) == 6
    ips = [parse(f)[IP] for f in out]
    assert all(len(f) <= 10 + 14 + 1500 for f in out)
    assert len({ip.id for ip in ips}) == 1
    assert [ip.flags.MF for ip in ips] == [1] * 5 + [0] and not any(ip.flags.DF for ip in ips)
    for ip in ips:                              # every header checksum right
        h = ip.copy()
        del h.chksum
        assert IP(bytes(h)).chksum == ip.chksum
    whole = defragment(ips)[0]
    icmp = IP(bytes(whole))[ICMP]
    assert (icmp.type, icmp.id, icmp.seq, bytes(icmp.payload)) == (0, 0x77, 9, payload)
    cs = icmp.chksum
    del icmp.chksum
    assert ICMP(bytes(icmp)).chksum == cs


def test_reassembler_rules_directly():
    """The module alone: UDP's first-fragment rule, lengths that are not multiples of 8,
    a second different last fragment, the fragment cap, bounds that cannot hold a datagram."""
    c = {}
    r = Reassembler(c)
    assert r.add(1, 2, 17, 1, 0, True, 20, b"x" * 7, 0.0) is None
    assert c["drop.ipv4.frag_short_first"] == 1
    assert r.add(1, 2, 17, 2, 0, True, 20, b"x" * 12, 0.0) is None       # not a multiple of 8
    assert c["drop.ipv4.frag_bad"] == 1 and r.pending == 1         # the tombstone of id 1 only
    assert r.add(1, 2, 17, 3, 16, False, 20, b"y" * 4, 0.0) is None
    assert r.add(1, 2, 17, 3, 24, False, 20, b"z" * 4, 0.0) is None      # a second, different end
    assert c["drop.ipv4.frag_bad"] == 3                                 # both of id 3
    assert r.add(1, 2, 17, 4, 8, True, 20, b"b" * 8, 0.0) is None
    assert r.add(1, 2, 17, 4, 16, False, 20, b"c" * 3, 0.0) is None
    assert r.add(1, 2, 17, 4, 0, True, 20, b"a" * 8, 0.0) == b"a" * 8 + b"b" * 8 + b"ccc"
    for i in range(r.max_fragments + 1):
        r.add(1, 2, 1, 5, 8 + 8 * i, True, 20, b"q" * 8, 0.0)
    assert c["drop.ipv4.frag_limit"] == r.max_fragments + 1
    with pytest.raises(ValueError):
        Reassembler({}, max_bytes_per_source=60000)


def test_fragments_to_a_vip_reach_its_layers():
    """A VIP (an extra local address) reassembles too: a fragmented SYN (with data) gets
    its SYN-ACK from the VIP, and big echo replies leave in fragments from the VIP."""
    vip = "198.19.9.9"
    s = Stack(mac=MAC, ip=MYIP, csum_offload=False, vips=[vip],
              tcp_config=TcpConfig(random_seed=b"vip"))
    learn_peer(s)
    s.tcp.listen(80)
    syn = IP(src=PEER_IP, dst=vip, id=3) / TCP(sport=40000, dport=80, flags="S", seq=1) / Raw(DATA)
    out, d = inject(s, frames_of(fragment(syn, 1480)[::-1]))
    assert d["ipv4.reassembled"] == 1
    (sa,) = [parse(o) for o in out]
    assert sa[IP].src == vip and sa[TCP].flags == "SA" and sa[TCP].ack >= 2
    ping = IP(src=PEER_IP, dst=vip, id=4) / ICMP(type=8, id=1, seq=1) / Raw(DATA)
    out, d = inject(s, frames_of(fragment(ping, 1480)))
    assert d["icmp.tx_echo_reply"] == 1 and len(out) == 3
    assert {parse(o)[IP].src for o in out} == {vip}
