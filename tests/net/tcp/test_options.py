"""Timestamps (RTTM, PAWS), option negotiation, keep-alive."""
import pytest

from framework.net.tcp import CLOSED, ESTABLISHED, EV_ERROR, TcpConfig

from .harness import REMOTE, Harness

P = 1001
TS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (5000, 0)), ("NOP", None), ("WScale", 7)]


def _ts(val, ecr):
    return [("NOP", None), ("NOP", None), ("Timestamp", (val, ecr))]


def _linux_like():
    h = Harness(timestamps=True, window_scale=True)
    h.send("S", seq=1000, options=TS)
    sa = h.reply()
    h.send("A", seq=P, ack=sa.seq + 1, options=_ts(5001, sa.opts.tsval))
    conn = h.events()[0][1]
    return h, conn, sa


def test_synack_options_mirror_the_peer():
    h, conn, sa = _linux_like()
    assert sa.opts.mss == 1460 and sa.opts.wscale == 5 and sa.opts.tsecr == 5000
    assert sa.opts.tsval is not None and sa.opts.sack_perm       # the peer offered SACK
    assert conn.mss == 1460 - 12 and conn.snd_ws == 7 and conn.rcv_ws == 5


def test_every_segment_carries_timestamps():
    h, conn, sa = _linux_like()
    h.now += 0.25
    conn.send(b"data")
    d = h.reply()
    assert d.opts.tsecr == 5001
    assert (d.opts.tsval - sa.opts.tsval) & 0xFFFFFFFF == 250     # 1 ms clock
    assert d.tcp.dataofs == 8


def test_rtt_from_timestamp_echo():
    h, conn, sa = _linux_like()
    conn.send(b"data")
    d = h.reply()
    h.now += 0.3
    h.send("A", seq=P, ack=d.seq + 4, options=_ts(5002, d.opts.tsval))
    assert conn.srtt is not None and conn.rto >= 0.2


def test_paws_drops_old_timestamp():
    h, conn, sa = _linux_like()
    h.send("PA", seq=P, ack=sa.seq + 1, data=b"new", options=_ts(6000, 0))
    h.advance(0.05)
    h.replies()
    conn.recv()
    h.send("PA", seq=P + 3, ack=sa.seq + 1, data=b"old", options=_ts(5998, 0))
    a = h.reply()
    assert a.flags == "A" and a.ack == P + 3 and a.opts.tsecr == 6000
    assert conn.readable() == 0 and h.tcp.counters["drop.tcp.paws"] == 1


def test_paws_lets_in_a_segment_one_tick_old():
    # reordered behind a segment sent a millisecond later (as Linux's TCP_PAWS_WINDOW):
    # accepted, and ts_recent does not move back
    h, conn, sa = _linux_like()
    h.send("PA", seq=P, ack=sa.seq + 1, data=b"new", options=_ts(6000, 0))
    h.advance(0.05)
    h.replies()
    conn.recv()
    h.send("PA", seq=P + 3, ack=sa.seq + 1, data=b"old", options=_ts(5999, 0))
    assert conn.recv() == b"old" and h.tcp.counters["drop.tcp.paws"] == 0
    h.advance(0.05)
    assert h.replies()[-1].opts.tsecr == 6000


def test_paws_handles_timestamp_wraparound():
    h = Harness(timestamps=True)
    h.send("S", seq=1000, options=[("MSS", 1460), ("Timestamp", (0xFFFFFFF0, 0))])
    sa = h.reply()
    h.send("A", seq=P, ack=sa.seq + 1, options=_ts(0xFFFFFFF8, sa.opts.tsval))
    conn = h.events()[0][1]
    h.send("PA", seq=P, ack=sa.seq + 1, data=b"wrapped", options=_ts(5, 0))   # newer, wrapped
    assert conn.recv() == b"wrapped"


def test_no_timestamps_when_peer_does_not_offer():
    h = Harness(timestamps=True)
    h.send("S", seq=1000, options=[("MSS", 1460)])
    sa = h.reply()
    assert sa.opts.tsval is None


def test_active_open_offers_ts_and_ws():
    h = Harness(timestamps=True, window_scale=True, listen=None)
    h.tcp.connect(REMOTE, 8080, h.now)
    syn = h.reply()
    assert syn.opts.mss == 1460 and syn.opts.wscale == 5 and syn.opts.tsecr == 0
    assert syn.opts.sack_perm


def test_keepalive_probes_and_timeout():
    h = Harness()
    conn, iss = h.accept()
    conn.set_keepalive(True, idle=10.0, intvl=2.0, cnt=3)
    h.advance(9.9)
    h.no_reply()
    h.advance(0.2)
    k = h.reply()
    assert k.flags == "A" and k.seq == iss and k.payload == b""   # una-1: elicits an ACK
    h.send("A", seq=P, ack=iss + 1)                                # peer alive: idle again
    h.advance(9.9)
    h.no_reply()
    for _ in range(3):
        h.advance(2.1)
        assert h.reply().seq == iss
    h.advance(2.1)
    assert h.reply().flags == "RA"
    assert h.events() == [(EV_ERROR, conn)] and conn.error == "keepalive timed out"


def test_keepalive_off_by_default():
    h = Harness()
    conn, iss = h.accept()
    h.advance(8000)
    h.no_reply()
    assert conn.state == ESTABLISHED


def test_synack_for_a_retransmitted_syn_echoes_its_timestamp():
    # else the peer's first RTT sample spans its SYN timeout and its RTO starts near 3 s
    h = Harness(timestamps=True)
    h.send("S", seq=1000, options=[("MSS", 1460), ("Timestamp", (100, 0))])
    assert h.reply().opts.tsecr == 100                  # lost
    h.now += 1.0
    h.send("S", seq=1000, options=[("MSS", 1460), ("Timestamp", (1100, 0))])
    sa = h.replies()[-1]
    assert sa.flags == "SA" and sa.opts.tsecr == 1100
