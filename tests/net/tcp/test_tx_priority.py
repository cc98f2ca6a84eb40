"""The turn's TX batch (mTCP's TX manager): ACKs and FINs leave before data, short
responses before bulk senders, and data frames per flush are bounded so one bulk sender
cannot hold back the others; what the bound cuts goes out on the next flushes."""
from framework.net.tcp import TcpConfig

from .harness import Harness

P = 1001


def _harness(burst):
    return Harness(TcpConfig(timestamps=False, window_scale=False, tx_burst=burst))


IW = 14600      # what the initial window lets the bulk sender send (RFC 6928, MSS 1460)


def _three(h):
    bulk, bulk_iss = h.accept(sport=40001, win=65535)
    short, short_iss = h.accept(sport=40002)
    closing, _ = h.accept(sport=40003)
    return bulk, short, closing


def test_acks_and_short_responses_leave_before_a_bulk_sender():
    h = _harness(8)
    bulk, short, closing = _three(h)
    bulk.send(b"b" * 60000)       # queued first
    short.send(b"s" * 500)
    closing.close()
    segs = h.replies()
    ports = [s.tcp.dport for s in segs]
    assert ports[0] == 40003 and segs[0].flags == "FA"       # the FIN first
    assert ports[1] == 40002 and segs[1].payload == b"s" * 500
    assert set(ports[2:]) == {40001}


def test_data_frames_per_flush_are_bounded_and_the_rest_follows():
    h = _harness(8)
    bulk, short, closing = _three(h)
    bulk.send(b"b" * 60000)
    short.send(b"s" * 500)
    first = h.replies()
    assert sum(1 for s in first if s.tcp.dport == 40001) == 8    # the bound is for bulk
    assert sum(1 for s in first if s.tcp.dport == 40002) == 1
    assert h.tcp.output_pending() and h.tcp.poll_at() == h.now
    sent = sum(len(s.payload) for s in first if s.tcp.dport == 40001)
    while h.tcp.output_pending():
        more = h.replies()
        assert 0 < sum(1 for s in more if s.payload) <= 8
        sent += sum(len(s.payload) for s in more)
    assert sent == IW                                        # nothing lost


def test_a_deferred_bulk_sender_goes_after_the_next_turns_fresh_output():
    h = _harness(4)
    bulk, short, closing = _three(h)
    bulk.send(b"b" * 60000)
    assert all(s.tcp.dport == 40001 for s in h.replies())    # cut at 4 frames
    short.send(b"s" * 100)
    segs = h.replies()
    assert segs[0].tcp.dport == 40002                        # a short response first
    assert [s.tcp.dport for s in segs[1:]] == [40001] * 4


def test_burst_zero_keeps_the_queue_order_unbounded():
    h = _harness(0)
    bulk, short, closing = _three(h)
    bulk.send(b"b" * 60000)
    short.send(b"s" * 500)
    segs = h.replies()
    assert segs[0].tcp.dport == 40001
    assert sum(len(s.payload) for s in segs if s.tcp.dport == 40001) == IW
    assert not h.tcp.output_pending()


def test_a_connection_closed_while_deferred_is_dropped_from_the_queue():
    h = _harness(4)
    bulk, short, closing = _three(h)
    bulk.send(b"b" * 60000)
    h.replies()
    bulk.abort()
    segs = h.replies()
    assert all(s.tcp.dport != 40001 or "R" in s.flags for s in segs)
    assert not h.tcp.output_pending()


def test_bulk_senders_share_the_budget_round_robin():
    h = _harness(3)
    a, _ = h.accept(sport=40001)
    b, _ = h.accept(sport=40002)
    a.send(b"a" * 14600)
    b.send(b"b" * 14600)
    turns = []
    while h.tcp.output_pending():
        turns.append([s.tcp.dport for s in h.replies()])
    assert all(len(t) <= 3 for t in turns)
    first, second = turns[0][0], turns[1][0]
    assert first != second                                      # neither is starved
    assert turns[:3] == [[first] * 3, [second] * 3, [first] * 3]
    flat = [p for t in turns for p in t]
    assert flat.count(40001) == flat.count(40002) == 10
