"""Send side: segmentation by MSS and window, IW10, Nagle, EV_WRITABLE, persist probes,
cwnd growth, restart after idle."""
from framework.net.tcp import EV_WRITABLE

from .harness import Harness

P = 1001


def test_segmentation_by_mss():
    h = Harness()
    conn, iss = h.accept(options=[("MSS", 1000)])
    assert conn.send(b"z" * 2500) == 2500
    segs = h.replies()
    assert [len(s.payload) for s in segs] == [1000, 1000, 500]
    assert [s.seq for s in segs] == [iss + 1, iss + 1001, iss + 2001]
    assert [s.flags for s in segs] == ["A", "A", "PA"]


def test_initial_window_10_segments():
    h = Harness()
    conn, iss = h.accept(options=[("MSS", 1460)])
    conn.send(b"z" * 30000)
    segs = h.replies()
    assert sum(len(s.payload) for s in segs) == 14600             # RFC 6928
    assert len(segs) == 10
    h.send("A", seq=P, ack=iss + 1 + 2920)                        # slow start: +2 MSS (ABC L=2)
    segs = h.replies()
    assert sum(len(s.payload) for s in segs) == 2920 + 2920


def test_peer_window_limits_sending():
    h = Harness()
    conn, iss = h.accept(options=[("MSS", 1000)], win=2500)
    conn.send(b"z" * 5000)
    segs = h.replies()
    assert [len(s.payload) for s in segs] == [1000, 1000]         # 500 left: SWS avoidance waits
    h.send("A", seq=P, ack=iss + 2001, win=2500)
    segs = h.replies()
    assert [len(s.payload) for s in segs] == [1000, 1000]
    assert segs[0].seq == iss + 2001


def test_nagle_off_by_default_and_configurable():
    h = Harness()
    conn, iss = h.accept()
    conn.send(b"a")
    h.reply()
    conn.send(b"b")
    assert h.reply().payload == b"b"              # no Nagle: small segment goes at once
    h2 = Harness(nagle=True)
    conn, iss = h2.accept()
    conn.send(b"a")
    h2.reply()
    conn.send(b"b")
    conn.send(b"c")
    h2.no_reply()                                  # waits for the ACK of "a"
    h2.send("A", seq=P, ack=iss + 2)
    assert h2.reply().payload == b"bc"
    conn.nagle = False
    conn.send(b"d")
    assert h2.reply().payload == b"d"


def test_send_buffer_full_and_writable_event():
    h = Harness(sndbuf=4000)
    conn, iss = h.accept(options=[("MSS", 1000)])
    assert conn.send(b"x" * 5000) == 4000
    assert conn.send(b"y") == 0
    h.replies()
    h.send("A", seq=P, ack=iss + 1001)
    h.replies()
    assert h.events() == []                        # 3000 buffered > lowat 2000
    h.send("A", seq=P, ack=iss + 2001)
    assert h.events() == [(EV_WRITABLE, conn)]


def test_zero_window_persist_probes_with_backoff():
    h = Harness()
    conn, iss = h.accept(win=0)
    conn.send(b"data")
    h.no_reply()
    gaps = []
    for _ in range(5):
        h.step()
        t = h.tcp.poll_at()
        gaps.append(round(t - h.now, 3))
        h.now = t
        s = h.reply()
        assert s.flags == "A" and s.seq == iss and s.payload == b""      # seq una-1, no data
        h.send("A", seq=P, ack=iss + 1, win=0)                           # answered: still closed
    # RTO (the 200 ms minimum after a sub-ms handshake RTT), doubling per probe
    assert gaps == [0.2, 0.4, 0.8, 1.6, 3.2]
    assert conn.retries == 0                       # answered probes never abort the connection
    h.send("A", seq=P, ack=iss + 1, win=1000)       # window opens
    d = h.reply()
    assert d.payload == b"data" and d.seq == iss + 1


def test_window_update_restarts_sending():
    h = Harness()
    conn, iss = h.accept(options=[("MSS", 1000)], win=1000)
    conn.send(b"x" * 3000)
    assert len(h.replies()) == 1
    h.send("A", seq=P, ack=iss + 1001, win=0)
    h.no_reply()
    h.send("A", seq=P, ack=iss + 1001, win=3000)
    assert [len(s.payload) for s in h.replies()] == [1000, 1000]


def test_cwnd_restart_after_idle():
    h = Harness()
    conn, iss = h.accept(options=[("MSS", 1000)])
    for _ in range(3):
        conn.send(b"x" * 20000)
        for s in h.replies():
            h.send("A", seq=P, ack=s.seq + len(s.payload))
        h.replies()
    assert conn.cwnd > 10000 * 2
    h.advance(5.0)                                 # idle for longer than the RTO
    h.replies()
    conn.send(b"y" * 50000)
    assert sum(len(s.payload) for s in h.replies()) == 10000      # back to IW


def test_congestion_avoidance_linear():
    h = Harness()
    conn, iss = h.accept(options=[("MSS", 1000)])
    conn.ssthresh = 10000
    conn.send(b"x" * 100000)
    segs = h.replies()
    assert len(segs) == 10
    for s in segs:
        h.send("A", seq=P, ack=s.seq + len(s.payload))
    assert conn.cwnd == 11000                     # +1 MSS per cwnd of ACKed data


def test_cwnd_not_grown_when_application_limited():
    h = Harness()
    conn, iss = h.accept(options=[("MSS", 1000)])
    iw = conn.cwnd
    seq = iss + 1
    for i in range(50):                           # request/response: tiny flights
        conn.send(b"r" * 100)
        h.reply()
        seq += 100
        h.send("A", seq=P, ack=seq)
    assert conn.cwnd == iw
    conn.send(b"b" * 30000)                       # bulk: cwnd-limited, so it grows
    for s in h.replies():
        h.send("A", seq=P, ack=s.seq + len(s.payload))
    assert conn.cwnd > iw
