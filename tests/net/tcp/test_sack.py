"""SACK (RFC 2018): negotiation, the blocks we send for our out-of-order queue, and
SACK-driven loss recovery on the send side (RFC 6675 style)."""
from framework.net.wire.tcp import parse_options

from .harness import Harness

P = 1001
SACK_SYN = [("MSS", 1000), ("SAckOK", b"")]


def test_sack_permitted_negotiation():
    h = Harness()
    h.send("S", seq=1000, options=SACK_SYN)
    assert h.reply().opts.sack_perm
    h = Harness(sack=False)
    h.send("S", seq=1000, options=SACK_SYN)
    assert not h.reply().opts.sack_perm          # never advertise what is switched off
    h = Harness()
    h.send("S", seq=1000, options=[("MSS", 1000)])
    assert not h.reply().opts.sack_perm


def test_receiver_sack_blocks_latest_first_and_merged():
    h = Harness()
    conn, iss = h.accept(options=SACK_SYN)
    h.send("A", seq=P + 100, ack=iss + 1, data=b"b" * 100)
    a = h.reply()
    assert a.ack == P and a.opts.sack == [(P + 100, P + 200)]
    h.send("A", seq=P + 300, ack=iss + 1, data=b"d" * 100)
    assert h.reply().opts.sack == [(P + 300, P + 400), (P + 100, P + 200)]
    h.send("A", seq=P + 200, ack=iss + 1, data=b"c" * 100)       # joins both blocks
    assert h.reply().opts.sack == [(P + 100, P + 400)]
    h.send("A", seq=P, ack=iss + 1, data=b"a" * 100)              # gap filled: no SACK
    a = h.reply()
    assert a.ack == P + 400 and a.opts.sack is None
    assert conn.recv() == b"a" * 100 + b"b" * 100 + b"c" * 100 + b"d" * 100


def test_receiver_at_most_three_blocks_with_timestamps():
    h = Harness(timestamps=True)
    h.send("S", seq=1000, options=SACK_SYN + [("Timestamp", (1, 0))])
    sa = h.reply()
    ts = lambda v: [("NOP", None), ("NOP", None), ("Timestamp", (v, sa.opts.tsval))]
    h.send("A", seq=P, ack=sa.seq + 1, options=ts(2))
    for i in range(5):
        h.send("A", seq=P + 200 * (i + 1), ack=sa.seq + 1, data=b"x" * 100, options=ts(3 + i))
        a = h.reply()
    assert len(a.opts.sack) == 3 and a.opts.sack[0] == (P + 1000, P + 1100)
    assert len(a.raw) - 20 <= 40 + 20


def _flight(h, n=10, mss=1000):
    conn, iss = h.accept(options=SACK_SYN)
    conn.send(bytes(range(250)) * 4 * n)
    segs = h.replies()
    assert len(segs) == n and conn.bits & 0x4000
    return conn, iss, segs


def _sack(h, iss, ack, blocks):
    h.send("A", seq=P, ack=iss + 1 + ack,
           options=[("NOP", None), ("NOP", None),
                    ("SAck", tuple(x for s, e in blocks for x in (iss + 1 + s, iss + 1 + e)))])


def test_sack_recovery_retransmits_every_hole():
    h = Harness()
    conn, iss, segs = _flight(h)                 # 10 x 1000 bytes; segments 0 and 5 lost
    _sack(h, iss, 0, [(1000, 2000)])             # no RTT here, so no reordering window (RACK)
    r = h.replies()
    assert [(s.seq - iss - 1, len(s.payload)) for s in r] == [(0, 1000)]
    # PRR (RFC 6937): not cwnd = ssthresh at once; cwnd = pipe + what this ACK lets out
    assert conn.ssthresh == 5000 and conn.cwnd == conn._pipe() == 9000
    _sack(h, iss, 0, [(1000, 3000)])
    _sack(h, iss, 0, [(1000, 4000)])
    h.no_reply()                                 # nothing else is missing yet
    _sack(h, iss, 0, [(6000, 7000), (1000, 5000)])                # segment 5 now a hole too
    r = h.replies()
    assert [(s.seq - iss - 1, len(s.payload)) for s in r] == [(5000, 1000)]
    assert r[0].payload == segs[5].payload
    _sack(h, iss, 5000, [(6000, 10000)])                           # partial ACK: nothing new lost
    h.no_reply()
    h.send("A", seq=P, ack=iss + 1 + 10000)                        # full ACK
    assert not conn.bits & 0x100 and conn.scoreboard is None and conn.cwnd == conn.ssthresh
    assert h.tcp.counters["tcp.fast_retransmits"] == 1


def test_sack_detects_loss_without_three_dupacks():
    h = Harness()
    conn, iss, segs = _flight(h)
    _sack(h, iss, 0, [(1000, 4000)])             # one ACK SACKing three segments
    r = h.replies()
    assert [s.seq - iss - 1 for s in r] == [0]
    assert h.tcp.counters["tcp.fast_retransmits"] == 1


def test_second_hole_retransmitted_on_partial_ack():
    h = Harness()
    conn, iss, segs = _flight(h)                 # segments 0 and 2 lost
    _sack(h, iss, 0, [(1000, 2000), (3000, 6000)])
    r = h.replies()
    # pipe = 4000 beyond the highest SACK + 1000 retransmitted = cwnd (5000): one for now
    assert [s.seq - iss - 1 for s in r] == [0]
    _sack(h, iss, 2000, [(3000, 6000)])          # partial ACK: the next hole goes at once
    r = h.replies()
    assert [s.seq - iss - 1 for s in r] == [2000]


def test_bogus_sack_blocks_ignored():
    h = Harness()
    conn, iss, segs = _flight(h)
    _sack(h, iss, 0, [(20000, 30000)])           # beyond anything sent
    _sack(h, iss, 0, [(-5000, -1000)])           # below the cumulative ACK
    assert conn.scoreboard is None


def test_rto_forgets_the_scoreboard():
    h = Harness()
    conn, iss, segs = _flight(h)
    _sack(h, iss, 0, [(1000, 2000)])
    assert conn.scoreboard == [[iss + 1001, iss + 2001]]
    assert [s.seq - iss - 1 for s in h.replies()] == [0]           # RACK, no RTT: at once
    h.step()
    h.now = h.tcp.poll_at()
    assert [s.seq - iss - 1 for s in h.replies()] == [9000]        # the tail loss probe first
    h.step()
    h.now = h.tcp.poll_at()
    r = h.replies()
    assert [s.seq - iss - 1 for s in r] == [0] and conn.scoreboard is None
    assert h.tcp.counters["tcp.rto"] == 1


def test_tail_loss_probe_turns_a_tail_loss_into_fast_recovery():
    h = Harness()
    conn, iss, segs = _flight(h)                 # segments 7, 8, 9 (the tail) lost
    _sack(h, iss, 7000, [])                      # cumulative ACK of 0..6
    h.replies()
    h.step()
    t = h.tcp.poll_at()
    assert round(t - h.now, 3) == 0.01           # PTO = max(2*SRTT, 10 ms), SRTT ~ 0 here
    h.now = t
    p, = h.replies()
    assert (p.seq - iss - 1, len(p.payload)) == (9000, 1000)
    assert h.tcp.counters["tcp.tail_loss_probes"] == 1
    _sack(h, iss, 7000, [(9000, 10000)])         # the probe is SACKed: 7 and 8 are lost
    r = h.replies()
    assert [s.seq - iss - 1 for s in r][:1] == [7000]
    assert conn.bits & 0x100 and h.tcp.counters["tcp.rto"] == 0


def test_tail_loss_probe_repairs_a_single_tail_loss():
    h = Harness()
    conn, iss, segs = _flight(h)                 # segment 9 lost, 8 delayed
    _sack(h, iss, 8000, [])
    h.replies()
    h.step()
    h.now = h.tcp.poll_at()
    p, = h.replies()
    assert p.seq - iss - 1 == 9000
    _sack(h, iss, 10000, [])                     # the probe itself was the repair
    assert conn.snd_una == conn.snd_max and conn.t_rtx is None


def test_lost_retransmission_found_by_the_recovery_probe_not_the_rto():
    h = Harness()
    conn, iss, segs = _flight(h)                 # segment 0 lost, and then its retransmission
    _sack(h, iss, 0, [(1000, 4000)])
    r = h.replies()
    assert [s.seq - iss - 1 for s in r] == [0]
    h.step()
    t = h.tcp.poll_at()
    assert round(t - h.now, 3) == 0.01           # the probe timer, not the 200 ms RTO
    h.now = t
    r = h.replies()
    assert [s.seq - iss - 1 for s in r] == [9000]                  # the highest not SACKed
    assert h.tcp.counters["tcp.recovery_probes"] == 1
    h.now += 0.001
    _sack(h, iss, 0, [(9000, 10000), (1000, 4000)])   # the probe arrived, 0 still missing:
    r = h.replies()                                   # its retransmission was lost (RACK)
    assert [s.seq - iss - 1 for s in r][:1] == [0]
    assert h.tcp.counters["tcp.rto"] == 0 and h.tcp.counters["tcp.rack_losses"] >= 2


def test_old_ack_with_sack_below_snd_una_does_not_stall_the_sender():
    """A reordered old ACK (below SND.UNA) whose SACK blocks cover data since acked
    cumulatively must not enter the scoreboard: those stale blocks started 'recovery' with
    nothing in flight, their bogus pipe kept cwnd closed, and with no ACK left to come the
    connection stalled for good (seen against Linux with loss and reordering)."""
    h = Harness()
    conn, iss, segs = _flight(h)                 # 10 x 1000 bytes in flight
    h.send("A", seq=P, ack=iss + 1 + 10000)      # all acked: nothing in flight
    assert conn.snd_una == conn.snd_max and not h.replies()
    # an old ACK arrives late: ack 4000, SACKing 5000-9000 (all below SND.UNA now)
    _sack(h, iss, 4000, [(5000, 9000)])
    assert conn.scoreboard is None and not conn.bits & 0x100      # no recovery
    conn.send(bytes(1000) * 30)                  # the app writes more
    sent = h.replies()
    assert sent, "the sender must go on sending"
    end = max(s.seq + len(s.payload) for s in sent) - iss - 1
    h.send("A", seq=P, ack=iss + 1 + end)
    assert h.replies()


def test_data_segments_with_sack_blocks_fit_the_peers_mss():
    # while we hold the peer's out-of-order data our segments carry SACK blocks: they take
    # room from the data (as Linux's tcp_current_mss), or the frames would exceed the MTU
    h = Harness(timestamps=True)
    ts = [("Timestamp", (1, 0))]
    conn, iss = h.accept(options=[("MSS", 1460), ("SAckOK", b"")] + ts)
    tsopt = [("NOP", None), ("NOP", None), ("Timestamp", (2, 0))]
    h.send("A", seq=P + 1000, ack=iss + 1, data=b"y" * 1000, options=tsopt)   # a hole
    h.replies()
    conn.send(b"x" * 20000)
    segs = [s for s in h.replies() if s.payload]
    assert segs and all(s.opts.sack for s in segs)
    budget = 1460                                         # payload + options, per the MSS
    assert all(len(s.raw) - 20 <= budget for s in segs)
    assert len(segs[0].payload) == 1448 - 28              # 3 blocks' worth (with timestamps)
    # the hole is filled: full segments again
    h.send("A", seq=P, ack=iss + 1, data=b"z" * 1000, options=tsopt)
    h.replies()
    h.send("A", seq=P + 2000, ack=iss + 1 + sum(len(s.payload) for s in segs), options=tsopt)
    more = [s for s in h.replies() if s.payload]
    assert more and len(more[0].payload) == 1448 and not more[0].opts.sack


def test_receiver_repeats_the_most_recently_reported_blocks():
    # RFC 2018 §4: after the block of the latest arrival, the blocks of the last ACK in
    # their order, so each block goes in up to three ACKs, whatever its place
    h = Harness(timestamps=True)
    h.send("S", seq=1000, options=SACK_SYN + [("Timestamp", (1, 0))])
    sa = h.reply()
    ts = lambda v: [("NOP", None), ("NOP", None), ("Timestamp", (v, sa.opts.tsval))]
    h.send("A", seq=P, ack=sa.seq + 1, options=ts(2))
    got = []
    for i, off in enumerate((7000, 5000, 3000, 1000)):              # holes between, high to low
        h.send("A", seq=P + off, ack=sa.seq + 1, data=b"x" * 100, options=ts(3 + i))
        got.append([s - P for s, e in h.reply().opts.sack])
    assert got == [[7000], [5000, 7000], [3000, 5000, 7000], [1000, 3000, 5000]]


def test_receiver_sacks_an_out_of_order_fin():
    """The FIN takes a sequence number: a block that ends before it would leave the
    sender's last segment unsacked (Linux then waits for its RTO instead of RACK)."""
    h = Harness()
    conn, iss = h.accept(options=SACK_SYN)
    h.send("FA", seq=P + 100, ack=iss + 1, data=b"b" * 100)
    a = h.reply()
    assert a.ack == P and a.opts.sack == [(P + 100, P + 201)]
    h = Harness()
    conn, iss = h.accept(options=SACK_SYN)
    h.send("A", seq=P + 100, ack=iss + 1, data=b"b" * 100)
    h.reply()
    h.send("FA", seq=P + 300, ack=iss + 1)                        # a bare FIN past a hole
    assert h.reply().opts.sack == [(P + 300, P + 301), (P + 100, P + 200)]
    h.send("A", seq=P + 200, ack=iss + 1, data=b"c" * 100)
    assert h.reply().opts.sack == [(P + 100, P + 301)]
    h.send("A", seq=P, ack=iss + 1, data=b"a" * 100)              # all in: FIN consumed
    a = h.reply()
    assert a.ack == P + 301 and a.opts.sack is None
    assert conn.recv() == b"a" * 100 + b"b" * 100 + b"c" * 100
