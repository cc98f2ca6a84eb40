"""RACK-TLP loss detection (RFC 8985), PRR (RFC 6937) and D-SACK undo (RFC 2883) on the send
side, on a path with a 10 ms round trip (the fake clock moves)."""
from .harness import Harness

P = 1001
RTT = 0.01
SACK_SYN = [("MSS", 1000), ("SAckOK", b"")]


def _conn(h, data_segments, rtt=RTT):
    """A passive connection whose handshake took rtt; data_segments x 1000 bytes written."""
    h.send("S", seq=1000, options=SACK_SYN)
    sa = h.reply()
    h.now += rtt
    h.send("A", seq=P, ack=sa.seq + 1)
    conn = h.tcp.take_events()[-1][1]
    conn.send(bytes(range(250)) * 4 * data_segments)
    return conn, sa.seq


def _ack(h, iss, ack, blocks=()):
    h.send("A", seq=P, ack=iss + 1 + ack,
           options=[("NOP", None), ("NOP", None),
                    ("SAck", tuple(x for s, e in blocks for x in (iss + 1 + s, iss + 1 + e)))]
           if blocks else ())


def _sent(h, iss):
    return [s.seq - iss - 1 for s in h.replies() if s.payload]


def test_rack_marks_a_lost_retransmission_lost_without_an_rto():
    h = Harness()
    conn, iss = _conn(h, 20)
    assert len(_sent(h, iss)) == 10                      # the initial window; 0 is lost
    h.now += RTT
    _ack(h, iss, 0, [(1000, 4000)])                      # three SACKed: 0 is lost
    sent = _sent(h, iss)
    assert sent[0] == 0 and h.tcp.counters["tcp.rack_losses"] == 1
    for k in range(4, 10):                               # the rest of the flight arrives
        h.now += 0.0005
        _ack(h, iss, 0, [(1000, k * 1000 + 1000)])
        sent += _sent(h, iss)
    sent = sent[1:]
    assert sent and min(sent) >= 10000                   # PRR let new data out after the retransmission
    # the retransmission of 0 is lost too; the new data sent after it is SACKed one RTT later
    h.now += RTT
    _ack(h, iss, 0, [(1000, sent[-1] + 1000)])
    assert 0 in _sent(h, iss)                            # resent at once, no timer
    assert h.tcp.counters["tcp.rto"] == 0 and h.tcp.counters["tcp.rack_losses"] == 2
    h.now += RTT
    _ack(h, iss, sent[-1] + 1000)
    assert conn.snd_una == iss + 1 + sent[-1] + 1000 and not conn.bits & 0x100


def test_reordering_within_the_reordering_window_is_not_loss():
    h = Harness()
    conn, iss = _conn(h, 10)
    _sent(h, iss)
    h.now += RTT
    _ack(h, iss, 0, [(1000, 2000)])                      # 0 is late (reordered), or lost
    assert _sent(h, iss) == []
    assert conn.t_reo is not None and conn.t_reo - h.now <= RTT / 4 + 1e-9
    h.now += RTT / 8                                     # within min_RTT / 4
    _ack(h, iss, 2000)                                   # there it is
    assert _sent(h, iss) == [] and conn.t_reo is None
    assert h.tcp.counters["tcp.rack_losses"] == 0 and h.tcp.counters["tcp.retransmits"] == 0
    assert conn.reo_seen                                 # delivered below the highest SACK


def test_the_reorder_timer_marks_what_stays_missing():
    h = Harness()
    conn, iss = _conn(h, 10)
    _sent(h, iss)
    h.now += RTT
    _ack(h, iss, 0, [(1000, 2000)])
    assert _sent(h, iss) == []
    h.now = h.tcp.poll_at()                              # the reorder timer, not the RTO
    assert h.now < 100 + 3 * RTT
    assert _sent(h, iss) == [0]
    assert h.tcp.counters["tcp.rack_losses"] == 1 and h.tcp.counters["tcp.rto"] == 0


def test_prr_spreads_the_reduction_over_the_recovery():
    """RFC 6937 §6's example: one loss in a window of 20 segments. The first two SACKs let a
    new segment out each (the pipe shrank), the third starts recovery with the fast
    retransmit (ssthresh = half the 22 segments in flight); then one segment per two ACKs
    while pipe > ssthresh (the proportional part), then one per ACK holding pipe at
    ssthresh (the slow-start reduction bound); never a burst; at the end cwnd = ssthresh."""
    h = Harness()
    conn, iss = _conn(h, 60)
    conn.cwnd = 20000                                    # the example's window
    assert len(_sent(h, iss)) == 20                      # segment 0 is lost
    per_ack = []
    h.now += RTT
    for k in range(1, 20):                               # segments 1..19 SACKed, one per ACK
        h.now += 0.0001
        _ack(h, iss, 0, [(1000, k * 1000 + 1000)])
        per_ack.append(_sent(h, iss))
    assert per_ack[:3] == [[20000], [21000], [0]]
    assert conn.ssthresh == 11000
    assert [len(x) for x in per_ack[3:16]] == [0, 1] * 6 + [0]
    assert [len(x) for x in per_ack[17:]] == [1, 1] and conn._pipe() == conn.ssthresh
    h.now += RTT
    _ack(h, iss, conn.snd_max - iss - 1)                 # all acknowledged: the end of recovery
    assert not conn.bits & 0x100 and conn.cwnd == 11000


def test_dsack_undoes_a_spurious_recovery():
    h = Harness()
    conn, iss = _conn(h, 10)
    _sent(h, iss)
    cwnd, ssthresh = conn.cwnd, conn.ssthresh
    h.now += RTT
    _ack(h, iss, 0, [(1000, 4000)])                      # 0 looks lost: retransmitted
    assert _sent(h, iss) == [0] and conn.cwnd < cwnd and conn.bits & 0x100
    h.now += RTT
    # 0 was only late: the peer got it twice and says so (a D-SACK below the ACK)
    _ack(h, iss, 10000, [(0, 1000)])
    assert h.tcp.counters["tcp.dsack_rx"] == 1 and h.tcp.counters["tcp.dsack_undos"] == 1
    assert conn.cwnd >= cwnd and conn.ssthresh == ssthresh and not conn.bits & 0x100


def test_timestamps_undo_a_spurious_recovery():
    h = Harness(timestamps=True)
    h.send("S", seq=1000, options=SACK_SYN + [("Timestamp", (1, 0))])
    sa = h.reply()
    h.now += RTT
    ts = lambda v: [("NOP", None), ("NOP", None), ("Timestamp", (v, sa.opts.tsval + v))]
    h.send("A", seq=P, ack=sa.seq + 1, options=ts(0))
    conn = h.tcp.take_events()[-1][1]
    iss = sa.seq
    m = conn.mss                                         # 988: the timestamp option takes 12
    conn.send(bytes(m) * 10)
    first = h.replies()
    echo = first[0].opts.tsval                           # what the original of 0 carried
    cwnd, ssthresh = conn.cwnd, conn.ssthresh
    h.now += RTT
    h.send("A", seq=P, ack=iss + 1, options=ts(0)[:2] + [("Timestamp", (5, echo))] + [
        ("NOP", None), ("NOP", None), ("SAck", (iss + 1 + m, iss + 1 + 4 * m))])
    assert [s.seq - iss - 1 for s in h.replies() if s.payload] == [0]
    h.now += RTT
    # the full ACK echoes the original's timestamp: it was the original that arrived
    h.send("A", seq=P, ack=iss + 1 + 10 * m, options=[("NOP", None), ("NOP", None),
                                                      ("Timestamp", (6, echo))])
    assert h.tcp.counters["tcp.ts_undos"] == 1
    assert conn.cwnd >= cwnd and conn.ssthresh == ssthresh


def test_receiver_reports_a_duplicate_with_a_dsack():
    h = Harness()
    h.send("S", seq=1000, options=SACK_SYN)
    sa = h.reply()
    h.send("A", seq=P, ack=sa.seq + 1)
    h.send("A", seq=P, ack=sa.seq + 1, data=b"a" * 100)
    h.replies()
    h.send("A", seq=P, ack=sa.seq + 1, data=b"a" * 100)   # the same again
    a = h.reply()
    assert a.ack == P + 100 and a.opts.sack == [(P, P + 100)]
    assert h.tcp.counters["tcp.dsack_tx"] == 1
    h.send("A", seq=P + 300, ack=sa.seq + 1, data=b"c" * 100)
    assert h.reply().opts.sack == [(P + 300, P + 400)]
    h.send("A", seq=P + 300, ack=sa.seq + 1, data=b"c" * 100)   # a duplicate above the ACK
    assert h.reply().opts.sack == [(P + 300, P + 400), (P + 300, P + 400)]


def test_a_lost_fin_after_the_peers_fin_is_probed_before_the_rto():
    # the peer closed first: in LAST_ACK it ACKs our FIN at once, so a lost FIN is resent at
    # the probe timeout (2 * SRTT), not after the 200 ms minimum RTO
    h = Harness()
    conn, iss = _conn(h, 1)
    assert _sent(h, iss) == [0]
    h.now += RTT
    _ack(h, iss, 1000)
    h.send("FA", seq=P, ack=iss + 1 + 1000)
    assert conn.state_name == "CLOSE_WAIT"
    h.replies()
    conn.close()
    fin = h.replies()
    assert [s.flags for s in fin] == ["FA"] and conn.state_name == "LAST_ACK"  # lost
    h.advance(2 * RTT + 0.001)
    probe = h.replies()
    assert [(s.flags, s.seq) for s in probe] == [("FA", fin[0].seq)]
    assert h.tcp.counters["tcp.tail_loss_probes"] == 1 and h.tcp.counters["tcp.rto"] == 0
    h.send("A", seq=P + 1, ack=fin[0].seq + 1)
    assert conn.state_name == "CLOSED"


def test_a_lone_segment_before_the_peers_fin_waits_for_the_rto():
    # ESTABLISHED: the peer may delay its ACK of one segment, so no probe
    h = Harness()
    conn, iss = _conn(h, 1)
    assert _sent(h, iss) == [0]
    h.advance(2 * RTT + 0.001)
    assert _sent(h, iss) == []
    h.advance(0.2)
    assert _sent(h, iss) == [0] and h.tcp.counters["tcp.rto"] == 1


def test_a_recovery_probe_resends_data_not_a_lone_fin():
    # a FIN is never SACKed, so a probe of it tells RACK nothing: the lost retransmission
    # below it is what the probe must resend
    h = Harness()
    conn, iss = _conn(h, 5)
    assert _sent(h, iss) == [0, 1000, 2000, 3000, 4000]
    conn.shutdown()
    fin = h.replies()
    assert [(s.flags, s.seq - iss - 1) for s in fin] == [("FA", 5000)]
    h.now += RTT
    _ack(h, iss, 0, [(1000, 5000)])                      # 0 is lost (and the FIN arrived)
    assert _sent(h, iss) == [0]                          # its retransmission is lost too
    h.advance(2 * conn.srtt + 0.001)
    probe = h.replies()
    assert [(s.seq - iss - 1, len(s.payload)) for s in probe] == [(0, 1000)]
    assert h.tcp.counters["tcp.recovery_probes"] == 1 and h.tcp.counters["tcp.rto"] == 0
    h.now += RTT
    h.send("A", seq=P, ack=iss + 1 + 5001)
    assert conn.state_name == "FIN_WAIT_2" and not conn.bits & 0x100
