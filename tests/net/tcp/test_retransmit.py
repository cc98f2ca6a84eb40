"""Retransmission: RTO per RFC 6298 (timing, backoff, Karn, minimum), giving up, fast
retransmit on three duplicate ACKs, NewReno partial and full ACKs (RFC 6582)."""
import pytest

from framework.net.tcp import CLOSED, EV_ERROR

from .harness import Harness

P = 1001


def _next(h):
    """Advance the fake clock to the next timer; return the gap."""
    h.step()
    t = h.tcp.poll_at()
    gap = t - h.now
    h.now = t
    return round(gap, 4)


def test_rto_initial_backoff_and_karn():
    # no RTT sample yet (handshake RTT sample only when the SYN-ACK was not retransmitted:
    # here the clock did not move, so the sample is 0 and the RTO is the 200 ms minimum)
    h = Harness()
    conn, iss = h.accept()
    assert conn.rto == pytest.approx(0.2)
    conn.send(b"hello")
    d = h.reply()
    gaps = []
    for _ in range(4):
        gaps.append(_next(h))
        r = h.reply()
        assert r.seq == d.seq and r.payload == b"hello"
    assert gaps == [0.2, 0.4, 0.8, 1.6]           # RFC 6298 §5.5: double each time
    assert h.tcp.counters["tcp.rto"] == 4
    h.send("A", seq=P, ack=iss + 6)               # ACK of a retransmitted segment
    assert conn.srtt == 0                         # Karn: no sample from it (srtt kept)
    assert conn.rto == pytest.approx(3.2)         # backed-off RTO kept until a fresh sample


def test_rtt_sample_sets_rto():
    h = Harness()
    conn, iss = h.accept()
    conn.send(b"a")
    h.reply()
    h.now += 0.5
    h.send("A", seq=P, ack=iss + 2)
    # second sample 0.5 after a first of 0: rttvar = 0.75*0 + 0.25*0.5, srtt = 0.0625
    assert conn.srtt == pytest.approx(0.0625)
    assert conn.rto == pytest.approx(0.0625 + 4 * 0.125)


def test_rto_min_200ms_max_60s():
    h = Harness(max_retries=30)
    conn, iss = h.accept()
    conn.send(b"x")
    h.reply()
    gaps = [_next(h) for _ in range(12)]
    assert gaps[0] == 0.2 and max(gaps) == 60.0


def test_retransmission_gives_up_with_error_and_rst():
    h = Harness(max_retries=3)
    conn, iss = h.accept()
    conn.send(b"x")
    h.reply()
    for _ in range(3):
        _next(h)
        assert h.reply().payload == b"x"
    _next(h)
    r = h.reply()
    assert r.flags == "RA"
    assert h.events() == [(EV_ERROR, conn)]
    assert conn.state == CLOSED and conn.error == "retransmission timed out"


def test_rto_retransmits_one_segment_then_slow_starts():
    h = Harness()
    conn, iss = h.accept(options=[("MSS", 1000)])
    conn.send(b"x" * 5000)
    assert len(h.replies()) == 5
    _next(h)
    segs = h.replies()
    assert [(s.seq, len(s.payload)) for s in segs] == [(iss + 1, 1000)]   # cwnd = 1 MSS
    assert conn.ssthresh == 2500 and conn.cwnd == 1000
    h.send("A", seq=P, ack=iss + 1001)
    segs = h.replies()
    assert [s.seq for s in segs] == [iss + 1001, iss + 2001]             # go-back-N, cwnd 2


def _flight(h, mss=1000, n=10):
    conn, iss = h.accept(options=[("MSS", mss)])
    conn.send(b"".join(bytes([65 + i]) * mss for i in range(n)))
    segs = h.replies()
    assert len(segs) == n
    return conn, iss, segs


def test_fast_retransmit_on_three_dupacks():
    h = Harness()
    conn, iss, segs = _flight(h)
    # segment 0 lost: the peer ACKs iss+1 for segments 1, 2, 3
    h.send("A", seq=P, ack=iss + 1)
    h.send("A", seq=P, ack=iss + 1)
    h.no_reply()
    h.send("A", seq=P, ack=iss + 1)
    r = h.replies()
    assert r[0].seq == iss + 1 and r[0].payload == b"A" * 1000
    assert h.tcp.counters["tcp.fast_retransmits"] == 1
    assert conn.ssthresh == 5000 and conn.cwnd == 8000     # ssthresh + 3 MSS


def test_no_dupack_counting_for_window_updates_or_data():
    h = Harness()
    conn, iss, segs = _flight(h)
    h.send("A", seq=P, ack=iss + 1, win=30000)              # window change: not a dupack
    h.send("A", seq=P, ack=iss + 1, win=30000, data=b"d")   # carries data: not a dupack
    h.send("A", seq=P + 1, ack=iss + 1, win=30000)
    h.replies()
    assert h.tcp.counters["tcp.fast_retransmits"] == 0


def test_newreno_partial_and_full_ack():
    h = Harness()
    conn, iss, segs = _flight(h)                 # 10 x 1000 bytes; 0 and 5 lost
    for _ in range(3):
        h.send("A", seq=P, ack=iss + 1)
    r = h.replies()
    assert r[0].seq == iss + 1
    for _ in range(3):                           # more dupacks inflate cwnd by 1 MSS each
        h.send("A", seq=P, ack=iss + 1)
    assert conn.cwnd == 11000
    h.replies()
    # partial ACK up to the second hole: retransmit it at once, deflate
    h.send("A", seq=P, ack=iss + 5001)
    r = h.replies()
    assert r[0].seq == iss + 5001 and r[0].payload == b"F" * 1000
    assert conn.cwnd == 11000 - 5000 + 1000
    assert conn.bits & 0x100                     # still in recovery
    # full ACK (everything sent before recovery): leave recovery, cwnd = ssthresh-ish
    h.send("A", seq=P, ack=conn.recover)
    assert not conn.bits & 0x100
    assert conn.cwnd == min(conn.ssthresh, max(conn.snd_max - conn.snd_una, 1000) + 1000)
    assert h.tcp.counters["tcp.fast_retransmits"] == 1


def test_no_second_fast_retransmit_for_dupacks_after_rto():
    h = Harness()
    conn, iss, segs = _flight(h)
    _next(h)                                      # RTO: recover = snd_max
    h.replies()
    for _ in range(4):
        h.send("A", seq=P, ack=iss + 1)
    h.replies()
    assert h.tcp.counters["tcp.fast_retransmits"] == 0       # RFC 6582 §4.1


def test_fin_retransmitted():
    h = Harness()
    conn, iss = h.accept()
    conn.close()
    f = h.reply()
    _next(h)
    r = h.reply()
    assert r.flags == "FA" and r.seq == f.seq
    h.send("A", seq=P, ack=iss + 2)
    assert conn.state == 6                        # FIN_WAIT_2


def test_cubic_decrease_and_regrowth():
    h = Harness(cc="cubic")
    conn, iss, segs = _flight(h)                 # cwnd 10000 (10 x 1000)
    for _ in range(3):
        h.send("A", seq=P, ack=iss + 1)
    h.replies()
    assert conn.ssthresh == 7000                 # beta 0.7 of cwnd (RFC 9438 §4.6)
    assert conn.w_max == 10000
    h.send("A", seq=P, ack=conn.recover)         # full ACK: out of recovery
    assert conn.cwnd == 2000                     # min(ssthresh, flight + MSS) (RFC 6582 §3.2)
    # slow start back to ssthresh, then CUBIC: K = cbrt((10000 - 7000) / 1000 / 0.4) = 1.96 s,
    # so within the first rounds the window stays well below W_max...
    conn.send(b"y" * 200000)
    for _ in range(4):
        for s in h.replies():
            h.send("A", seq=P, ack=s.seq + len(s.payload))
    assert 7000 <= conn.cwnd < 9000
    h.now += 2.0                                 # ...and is back at W_max after about K
    for _ in range(6):
        for s in h.replies():
            h.send("A", seq=P, ack=s.seq + len(s.payload))
    assert conn.cwnd >= 10000


def test_timer_heap_drops_superseded_entries_and_keeps_live_ones():
    """Each short connection leaves its SYN-ACK's 1 s entry in the timer heap when an
    earlier deadline supersedes it; the heap is compacted, so it holds about what is
    live rather than a second's worth of connections, and live timers still fire."""
    from framework.net.tcp.consts import TIMER_HEAP_MIN
    h = Harness()
    live, iss = h.accept(sport=39999)
    live.send(b"x")                     # this one's retransmission timer must survive
    d = h.reply()
    for k in range(3 * TIMER_HEAP_MIN):
        conn, _ = h.accept(isn=1000 + k, sport=40000 + k)
        conn.abort()                    # gone: its entries are stale
        h.replies()
    assert len(h.tcp._timers) <= 2 * TIMER_HEAP_MIN
    assert live.heap_at is not None and any(e[2] is live for e in h.tcp._timers)
    h.now += 0.2
    r = [s for s in h.replies() if s.payload == b"x"]
    assert r and r[0].seq == d.seq      # retransmitted on time
