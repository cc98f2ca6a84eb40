"""Closing: active/passive close, half-close, simultaneous close, TIME_WAIT expiry and reuse,
abort, close with unread data."""
import pytest

from framework.net.tcp import (CLOSE_WAIT, CLOSED, CLOSING, ESTABLISHED, EV_ACCEPT, EV_CLOSED,
                               EV_EOF, EV_READABLE, FIN_WAIT_1, FIN_WAIT_2, LAST_ACK, TIME_WAIT,
                               ConnectionClosed)

from .harness import REMOTE, Harness

KEY = (REMOTE, 40000, 80)


def test_passive_close():
    h = Harness()
    conn, iss = h.accept()
    h.send("FA", seq=1001, ack=iss + 1)
    a = h.reply()                                  # immediate ACK of the FIN
    assert a.flags == "A" and a.ack == 1002 and a.seq == iss + 1
    assert conn.state == CLOSE_WAIT and h.events() == [(EV_EOF, conn)]
    conn.close()
    f = h.reply()
    assert f.flags == "FA" and f.seq == iss + 1 and f.ack == 1002
    assert conn.state == LAST_ACK
    h.send("A", seq=1002, ack=iss + 2)
    assert conn.state == CLOSED and h.events() == [(EV_CLOSED, conn)]
    assert h.tcp.flows == {}


def test_eof_and_close_in_one_step_share_a_segment():
    h = Harness()
    conn, iss = h.accept()
    h.send("FA", seq=1001, ack=iss + 1)
    conn.close()                                   # app reacts before the layer flushes
    f = h.reply()
    assert f.flags == "FA" and f.ack == 1002


def test_active_close_to_time_wait_and_expiry():
    h = Harness(time_wait=5.0)
    conn, iss = h.accept()
    conn.close()
    f = h.reply()
    assert f.flags == "FA" and f.seq == iss + 1 and conn.state == FIN_WAIT_1
    h.send("A", seq=1001, ack=iss + 2)
    h.no_reply()
    assert conn.state == FIN_WAIT_2
    h.send("FA", seq=1001, ack=iss + 2)
    a = h.reply()
    assert a.flags == "A" and a.ack == 1002 and a.seq == iss + 2
    assert conn.state == TIME_WAIT and h.events() == [(EV_CLOSED, conn)]
    h.advance(4.9)
    assert KEY in h.tcp.flows
    h.advance(0.2)
    assert KEY not in h.tcp.flows and h.tcp.counters["tcp.time_wait_expired"] == 1
    assert h.events() == []


def test_time_wait_default_is_60s():
    h = Harness()
    conn, iss = h.accept()
    conn.close()
    h.reply()
    h.send("FA", seq=1001, ack=iss + 2)
    h.reply()
    h.advance(59.9)
    assert KEY in h.tcp.flows
    h.advance(0.2)
    assert KEY not in h.tcp.flows


def test_time_wait_reacks_retransmitted_fin_and_restarts_timer():
    h = Harness(time_wait=5.0)
    conn, iss = h.accept()
    conn.close()
    h.reply()
    h.send("FA", seq=1001, ack=iss + 2)
    h.reply()
    h.advance(4.0)
    h.send("FA", seq=1001, ack=iss + 2)
    a = h.reply()
    assert a.flags == "A" and a.ack == 1002
    h.advance(4.0)
    assert conn.state == TIME_WAIT
    h.advance(1.1)
    assert KEY not in h.tcp.flows


def test_fin_and_ack_together_from_fin_wait_1():
    h = Harness()
    conn, iss = h.accept()
    conn.close()
    h.reply()
    h.send("FA", seq=1001, ack=iss + 2)
    assert h.reply().ack == 1002
    assert conn.state == TIME_WAIT


def test_simultaneous_close():
    h = Harness(time_wait=1.0)
    conn, iss = h.accept()
    conn.close()
    h.reply()
    h.send("FA", seq=1001, ack=iss + 1)           # their FIN crosses ours
    a = h.reply()
    assert a.flags == "A" and a.ack == 1002 and a.seq == iss + 2
    assert conn.state == CLOSING
    h.send("A", seq=1002, ack=iss + 2)
    assert conn.state == TIME_WAIT
    h.advance(1.1)
    assert h.tcp.flows == {}


def test_half_close_keeps_receiving():
    h = Harness()
    conn, iss = h.accept()
    conn.send(b"request")
    conn.shutdown()
    f = h.reply()
    assert f.flags == "FPA" and f.payload == b"request"
    with pytest.raises(ConnectionClosed):
        conn.send(b"more")
    h.send("A", seq=1001, ack=iss + 9)
    assert conn.state == FIN_WAIT_2
    h.send("PA", seq=1001, ack=iss + 9, data=b"response")
    assert h.events() == [(EV_READABLE, conn)]
    assert conn.recv() == b"response"
    h.send("FA", seq=1009, ack=iss + 9)
    assert h.reply().ack == 1010
    assert [e for e, _ in h.events()] == [EV_EOF, EV_CLOSED]
    assert conn.state == TIME_WAIT


def test_peer_half_close_we_keep_sending():
    h = Harness()
    conn, iss = h.accept()
    h.send("FA", seq=1001, ack=iss + 1)
    h.reply()
    conn.send(b"still talking")
    d = h.reply()
    assert d.payload == b"still talking" and d.ack == 1002
    h.send("A", seq=1002, ack=iss + 14)
    conn.shutdown()
    assert h.reply().flags == "FA"
    assert conn.state == LAST_ACK


def test_abort_sends_rst_no_event():
    h = Harness()
    conn, iss = h.accept()
    conn.abort()
    r = h.reply(step=False)
    assert r.flags == "RA" and r.seq == iss + 1 and r.ack == 1001
    assert conn.state == CLOSED and h.tcp.flows == {} and h.events() == []


def test_close_with_unread_data_resets():
    h = Harness()
    conn, iss = h.accept()
    h.send("PA", seq=1001, ack=iss + 1, data=b"unread")
    h.replies()
    conn.close()
    r = h.replies()[-1]
    assert r.flags == "RA" and r.ack == 1007


def test_send_after_close_raises():
    h = Harness()
    conn, iss = h.accept()
    conn.close()
    with pytest.raises(ConnectionClosed):
        conn.send(b"x")


def test_close_in_syn_sent():
    h = Harness(listen=None)
    conn = h.tcp.connect(REMOTE, 8080, h.now)
    h.reply()
    conn.close()
    assert conn.state == CLOSED and h.tcp.flows == {}
    h.advance(5)
    h.no_reply()


def test_data_after_close_is_discarded_but_acked():
    h = Harness()
    conn, iss = h.accept()
    conn.close()
    h.reply()
    h.send("PA", seq=1001, ack=iss + 2, data=b"late")
    h.advance(0.05)
    a = h.replies()[-1]
    assert a.ack == 1005
    assert h.events() == []


def test_orphaned_fin_wait_2_times_out():
    h = Harness(fin_wait2=3.0)
    conn, iss = h.accept()
    conn.close()
    h.reply()
    h.send("A", seq=1001, ack=iss + 2)
    assert conn.state == FIN_WAIT_2
    h.advance(3.1)
    assert conn.state == CLOSED and h.events() == [(EV_CLOSED, conn)]


def test_shutdown_keeps_fin_wait_2_open():
    h = Harness(fin_wait2=3.0)
    conn, iss = h.accept()
    conn.shutdown()
    h.reply()
    h.send("A", seq=1001, ack=iss + 2)
    h.advance(10)
    assert conn.state == FIN_WAIT_2


def _tw(h, isn=1000, ts=None):
    opts = [("MSS", 1460)] + ([("Timestamp", (ts, 0))] if ts is not None else [])
    conn, iss = h.accept(isn=isn, options=opts)
    conn.close()
    h.reply()
    tsopt = [("NOP", None), ("NOP", None), ("Timestamp", (ts + 1, 0))] if ts is not None else []
    h.send("FA", seq=isn + 1, ack=iss + 2, options=tsopt)
    h.reply()
    assert conn.state == TIME_WAIT
    h.events()
    return conn, iss


def test_time_wait_reuse_by_higher_seq_syn():
    h = Harness()
    _tw(h)
    h.send("S", seq=5000)                          # beyond the old rcv_nxt (1002)
    sa = h.reply()
    assert sa.flags == "SA" and sa.ack == 5001
    assert h.tcp.counters["tcp.tw_reuse"] == 1
    h.send("A", seq=5001, ack=sa.seq + 1)
    (ev, c), = h.events()
    assert ev == EV_ACCEPT and c.state == ESTABLISHED


def test_time_wait_rejects_lower_seq_syn():
    h = Harness()
    old, iss = _tw(h, isn=100000)
    h.send("S", seq=50)
    h.no_reply()
    assert h.tcp.flows[KEY].state == TIME_WAIT and h.tcp.counters["drop.tcp.time_wait"] == 1


def test_time_wait_reuse_by_timestamp_rfc6191():
    h = Harness(timestamps=True)
    old, iss = _tw(h, isn=100000, ts=1000)
    h.send("S", seq=50, options=[("MSS", 1460), ("Timestamp", (2000, 0))])   # lower seq, newer TS
    sa = h.reply()
    assert sa.flags == "SA" and sa.ack == 51
    h2 = Harness(timestamps=True)
    _tw(h2, isn=50, ts=1000)
    h2.send("S", seq=100000, options=[("MSS", 1460), ("Timestamp", (999, 0))])  # older TS
    h2.no_reply()


def test_shutdown_during_syn_sent_sends_fin_after_handshake():
    h = Harness(listen=None)
    conn = h.tcp.connect(REMOTE, 8080, h.now)
    syn = h.reply()
    conn.send(b"req")
    conn.shutdown()
    h.no_reply()
    h.send("SA", seq=7000, ack=syn.seq + 1, sport=8080, dport=syn.tcp.sport,
           options=[("MSS", 1460)])
    f = h.reply()
    assert f.flags == "FPA" and f.payload == b"req" and f.ack == 7001
    assert conn.state == FIN_WAIT_1


def test_shutdown_in_syn_received_simultaneous_open():
    h = Harness(listen=None)
    conn = h.tcp.connect(REMOTE, 8080, h.now, sport=9000)
    syn = h.reply()
    h.send("S", seq=500, sport=8080, dport=9000, options=[("MSS", 1460)])
    h.reply()
    conn.shutdown()
    h.no_reply()                                   # no FIN before the handshake is done
    h.send("A", seq=501, ack=syn.seq + 1, sport=8080, dport=9000)
    f = h.reply()
    assert f.flags == "FA" and f.seq == syn.seq + 1
    assert conn.state == FIN_WAIT_1


def test_rst_in_close_wait_reports_reset():
    h = Harness()
    conn, iss = h.accept()
    h.send("FA", seq=1001, ack=iss + 1)
    h.reply()
    h.events()
    h.send("R", seq=1002)
    (ev, c), = h.events()
    assert ev == 7 and c.error == "connection reset by peer"    # EV_RESET


def test_every_connection_ends_with_one_final_event():
    h = Harness(time_wait=0.5)
    conn, iss = h.accept()
    conn.close()
    h.reply()
    h.send("FA", seq=1001, ack=iss + 2)
    h.reply()
    h.send("R", seq=1002)                          # RST in TIME_WAIT: no second event
    h.advance(1)
    evs = [e for e, _ in h.events()]
    assert evs.count(EV_CLOSED) == 1 and len(evs) == 1


def test_time_wait_is_a_small_object_and_answers_like_one():
    h = Harness(time_wait=5.0, listen=None)
    h.tcp.listen(80)
    conn, iss = h.accept()
    conn.close()
    h.reply()
    h.send("FA", seq=1001, ack=iss + 2)
    assert h.reply().ack == 1002                   # the Connection still ACKs the FIN
    tw = h.tcp.flows[KEY]
    assert type(tw).__name__ == "TimeWait" and tw.state == TIME_WAIT
    h.send("A", seq=1002, ack=iss + 2)             # stray ACK: ignored
    h.no_reply()
    h.send("PA", seq=1002, ack=iss + 2, data=b"late")   # data: ACK, nothing taken
    a = h.reply()
    assert a.flags == "A" and a.seq == iss + 2 and a.ack == 1002
    h.tcp.unlisten(80)
    h.send("S", seq=9999)                          # SYN, no listener: challenge ACK
    assert h.reply().ack == 1002
    assert h.tcp.tw_count == 1
    h.advance(5.1)
    assert h.tcp.flows == {} and h.tcp.tw_count == 0


def test_time_wait_cap():
    h = Harness(max_time_wait=2)
    for sport in (40001, 40002, 40003):
        conn, iss = h.accept(sport=sport)
        conn.close()
        h.reply()
        h.send("FA", seq=1001, ack=iss + 2, sport=sport)
        h.reply()
    assert h.tcp.tw_count == 2 and len(h.tcp.flows) == 2
    assert h.tcp.counters["drop.tcp.time_wait_overflow"] == 1
