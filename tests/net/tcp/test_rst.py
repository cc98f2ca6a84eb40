"""RST and SYN acceptance in synchronized states (RFC 9293 §3.10.7.4, RFC 5961)."""
from framework.net.tcp import CLOSED, ESTABLISHED, EV_CLOSED, EV_RESET

from .harness import Harness

P = 1001


def test_rst_exact_sequence_resets():
    h = Harness()
    conn, iss = h.accept()
    h.send("R", seq=P)
    h.no_reply()
    assert conn.state == CLOSED and h.events() == [(EV_RESET, conn)]
    assert conn.error == "connection reset by peer"
    assert h.tcp.flows == {}


def test_rst_in_window_not_exact_gets_challenge_ack():
    h = Harness()
    conn, iss = h.accept()
    h.send("R", seq=P + 100)
    a = h.reply()
    assert a.flags == "A" and a.seq == iss + 1 and a.ack == P
    assert conn.state == ESTABLISHED and h.tcp.counters["tcp.challenge_acks"] == 1


def test_rst_out_of_window_ignored():
    h = Harness()
    conn, iss = h.accept()
    h.send("R", seq=P + 70000)
    h.send("R", seq=P - 1)
    h.no_reply()
    assert conn.state == ESTABLISHED


def test_syn_in_established_gets_challenge_ack():
    h = Harness()
    conn, iss = h.accept()
    h.send("S", seq=P + 10)
    a = h.reply()
    assert a.flags == "A" and a.ack == P
    assert conn.state == ESTABLISHED


def test_ack_of_unsent_data_is_acked_and_dropped():
    h = Harness()
    conn, iss = h.accept()
    h.send("PA", seq=P, ack=iss + 1000, data=b"bogus")
    a = h.reply()
    assert a.flags == "A" and a.ack == P               # the data was not taken
    assert conn.readable() == 0


def test_too_old_ack_dropped():
    h = Harness()
    conn, iss = h.accept(win=1000)
    h.send("PA", seq=P, ack=iss - 5000, data=b"old")
    a = h.reply()
    assert a.ack == P and conn.readable() == 0


def test_challenge_ack_rate_limit():
    h = Harness(challenge_ack_limit=3)
    conn, iss = h.accept()
    for i in range(10):
        h.send("R", seq=P + 10 + i)
    assert len(h.replies()) == 3
    h.now += 1.0
    h.send("R", seq=P + 10)
    assert len(h.replies()) == 1


def test_rst_in_last_ack_closes():
    h = Harness()
    conn, iss = h.accept()
    h.send("FA", seq=P, ack=iss + 1)
    conn.close()
    h.replies()
    h.send("R", seq=P + 1)
    assert [e for e, _ in h.events()] == [5, EV_CLOSED] and conn.state == CLOSED


def test_rst_in_time_wait_closes():
    h = Harness()
    conn, iss = h.accept()
    conn.close()
    h.reply()
    h.send("FA", seq=P, ack=iss + 2)
    h.reply()
    h.send("R", seq=P + 1)
    assert h.tcp.flows == {}
