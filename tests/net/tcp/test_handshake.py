"""Opening: passive, active, simultaneous; RST for closed ports; backlog; SYN retries."""
import pytest

from framework.net.tcp import (CLOSED, ESTABLISHED, EV_ACCEPT, EV_CONNECTED, EV_ERROR, EV_RESET,
                               SYN_RECEIVED, SYN_SENT, TcpConfig)

from .harness import REMOTE, Harness


def test_passive_open_synack_exact():
    h = Harness()
    h.send("S", seq=1000, win=8192, options=[("MSS", 1460)])
    sa = h.reply()
    assert sa.flags == "SA" and sa.ack == 1001 and sa.win == 65535
    assert sa.opts.mss == 1460 and sa.opts.wscale is None and sa.opts.tsval is None
    assert not sa.opts.sack_perm                 # the peer did not offer SACK
    assert h.tcp.flows[(REMOTE, 40000, 80)].state == SYN_RECEIVED
    assert h.events() == []
    h.send("A", seq=1001, ack=sa.seq + 1, win=8192)
    h.no_reply()
    (ev, conn), = h.events()
    assert ev == EV_ACCEPT and conn.state == ESTABLISHED
    assert conn.remote == (REMOTE, 40000) and conn.local[1] == 80
    assert conn.snd_wnd == 8192


def test_mss_from_mtu_and_peer_mss_honoured():
    h = Harness(mtu=9000)
    h.send("S", seq=1, options=[("MSS", 1200)])
    sa = h.reply()
    assert sa.opts.mss == 8960
    h.send("A", seq=2, ack=sa.seq + 1)
    conn = h.events()[0][1]
    assert conn.mss == 1200


def test_default_mss_536_without_option():
    h = Harness()
    h.send("S", seq=1)
    sa = h.reply()
    h.send("A", seq=2, ack=sa.seq + 1)
    assert h.events()[0][1].mss == 536


def test_rst_for_closed_port_syn():
    h = Harness()
    h.send("S", seq=77, dport=81)
    r = h.reply()
    assert r.flags == "RA" and r.seq == 0 and r.ack == 78
    assert h.tcp.counters["drop.tcp.no_listener"] == 1


def test_rst_for_closed_port_ack_and_data():
    h = Harness()
    h.send("A", seq=5, ack=1234, dport=81)
    r = h.reply()
    assert r.flags == "R" and r.seq == 1234
    h.send("PA", seq=5, ack=99, data=b"abc", dport=81)
    assert h.reply().seq == 99
    h.send("", seq=5, data=b"abc", dport=81)       # no ACK: RST|ACK acking the data
    r = h.reply()
    assert r.flags == "RA" and r.ack == 8


def test_no_rst_for_rst():
    h = Harness()
    h.send("R", seq=5, dport=81)
    h.send("RA", seq=5, ack=7, dport=81)
    h.no_reply()


def test_isn_differs_per_tuple_and_moves_with_clock():
    h = Harness()
    isns = set()
    for sport in range(40000, 40010):
        h.send("S", seq=1, sport=sport)
        isns.add(h.reply().seq)
    assert len(isns) == 10
    key = (REMOTE, 50000, 80)
    a, b = h.tcp._isn(key, 10.0), h.tcp._isn(key, 11.0)
    assert (b - a) & 0xFFFFFFFF == 250000     # RFC 6528: a 4 us clock plus the same keyed hash
    other = Harness().tcp._isn(key, 10.0)
    assert other != a                           # the key is random per layer


def test_duplicate_syn_retransmits_synack():
    h = Harness()
    h.send("S", seq=1000)
    sa = h.reply()
    h.send("S", seq=1000)
    sa2 = h.reply()
    assert sa2.flags == "SA" and sa2.seq == sa.seq and sa2.ack == 1001


def test_synack_retransmit_backoff_then_drop():
    h = Harness(synack_retries=2)
    h.send("S", seq=1000)
    sa = h.reply()
    h.advance(0.99)
    h.no_reply()
    h.advance(0.02)                               # initial RTO 1 s
    assert h.reply().seq == sa.seq
    h.advance(1.9)
    h.no_reply()
    h.advance(0.2)                                # doubled: 2 s
    assert h.reply().flags == "SA"
    h.advance(4.1)
    assert h.replies() == []
    assert h.tcp.flows == {} and h.tcp.listeners[80].syn_count == 0
    assert h.tcp.counters["drop.tcp.synack_timeout"] == 1
    assert h.events() == []


def test_bad_ack_in_syn_received_gets_rst():
    h = Harness()
    h.send("S", seq=1000)
    sa = h.reply()
    h.send("A", seq=1001, ack=sa.seq + 5)
    r = h.reply()
    assert r.flags == "R" and r.seq == sa.seq + 5
    assert h.tcp.flows[(REMOTE, 40000, 80)].state == SYN_RECEIVED


def test_rst_in_syn_received_returns_to_listen():
    h = Harness()
    h.send("S", seq=1000)
    h.reply()
    h.send("R", seq=1001)
    h.no_reply()
    assert h.tcp.flows == {} and h.events() == [] and h.tcp.listeners[80].syn_count == 0


def test_syn_queue_overflow_counted():
    h = Harness(listen=None, syncookies=False)
    h.tcp.listen(80, backlog=3)
    for i in range(5):
        h.send("S", seq=1, sport=41000 + i)
    assert len(h.replies()) == 3
    assert h.tcp.counters["drop.tcp.syn_queue_full"] == 2


def test_accept_queue_overflow_then_drained():
    h = Harness(listen=None)
    h.tcp.listen(80, backlog=2)
    for i in range(3):
        h.send("S", seq=1, sport=41000 + i)
        sa = h.reply()
        h.send("A", seq=2, ack=sa.seq + 1, sport=41000 + i)
    # two ACCEPTs wait undrained: the third handshake is refused and stays in SYN_RECEIVED
    assert h.tcp.counters["drop.tcp.accept_queue_full"] == 1
    assert h.tcp.flows[(REMOTE, 41002, 80)].state == SYN_RECEIVED
    evs = h.events()                               # the shard drains: the queue empties
    assert [e for e, _ in evs] == [EV_ACCEPT, EV_ACCEPT]
    h.send("A", seq=2, ack=sa.seq + 1, sport=41002)
    assert [e for e, _ in h.events()] == [EV_ACCEPT]
    assert h.tcp.listeners[80].syn_count == 0


def test_active_open():
    h = Harness(listen=None)
    conn = h.tcp.connect(REMOTE, 8080, h.now)
    assert conn.state == SYN_SENT
    syn = h.reply()
    assert syn.flags == "S" and syn.opts.mss == 1460 and syn.win == 65535
    assert syn.tcp.dport == 8080 and 32768 <= syn.tcp.sport <= 60999
    h.send("SA", seq=7000, ack=syn.seq + 1, win=4096, sport=8080, dport=syn.tcp.sport,
           options=[("MSS", 1000)])
    a = h.reply()
    assert a.flags == "A" and a.seq == syn.seq + 1 and a.ack == 7001
    assert h.events() == [(EV_CONNECTED, conn)]
    assert conn.state == ESTABLISHED and conn.mss == 1000 and conn.snd_wnd == 4096


def test_active_open_data_queued_before_established():
    h = Harness(listen=None)
    conn = h.tcp.connect(REMOTE, 8080, h.now)
    syn = h.reply()
    conn.send(b"early")
    h.no_reply()
    h.send("SA", seq=7000, ack=syn.seq + 1, sport=8080, dport=syn.tcp.sport,
           options=[("MSS", 1460)])
    d = h.reply()
    assert d.flags == "PA" and d.payload == b"early" and d.ack == 7001


def test_active_open_refused():
    h = Harness(listen=None)
    conn = h.tcp.connect(REMOTE, 8080, h.now)
    syn = h.reply()
    h.send("RA", seq=0, ack=syn.seq + 1, sport=8080, dport=syn.tcp.sport)
    assert h.events() == [(EV_RESET, conn)]
    assert conn.state == CLOSED and conn.error == "connection refused"
    assert h.tcp.flows == {}


def test_syn_sent_bad_ack_gets_rst_and_rst_without_ack_ignored():
    h = Harness(listen=None)
    conn = h.tcp.connect(REMOTE, 8080, h.now)
    syn = h.reply()
    h.send("SA", seq=1, ack=syn.seq + 10, sport=8080, dport=syn.tcp.sport)
    r = h.reply()
    assert r.flags == "R" and r.seq == syn.seq + 10
    h.send("R", seq=1, sport=8080, dport=syn.tcp.sport)
    h.no_reply()
    assert conn.state == SYN_SENT


def test_connect_syn_retries_then_error():
    h = Harness(listen=None, syn_retries=2)
    conn = h.tcp.connect(REMOTE, 8080, h.now)
    h.reply()
    times = []
    t0 = h.now
    for _ in range(40):
        h.advance(0.25)
        for s in h.replies():
            assert s.flags == "S"
            times.append(round(h.now - t0, 2))
    assert times == [1.0, 3.0]
    assert h.events() == [(EV_ERROR, conn)]
    assert conn.error == "connection timed out" and h.tcp.flows == {}


def test_simultaneous_open():
    h = Harness(listen=None)
    conn = h.tcp.connect(REMOTE, 8080, h.now, sport=9000)
    syn = h.reply()
    h.send("S", seq=500, sport=8080, dport=9000, options=[("MSS", 1460)])
    sa = h.reply()
    assert sa.flags == "SA" and sa.seq == syn.seq and sa.ack == 501
    assert conn.state == SYN_RECEIVED
    h.send("SA", seq=500, ack=syn.seq + 1, sport=8080, dport=9000, options=[("MSS", 1460)])
    assert conn.state == ESTABLISHED
    assert h.events() == [(EV_CONNECTED, conn)]
    conn.send(b"x")
    d = h.reply()
    assert d.seq == syn.seq + 1 and d.ack == 501 and d.payload == b"x"


def test_connect_port_in_use():
    h = Harness(listen=None)
    h.tcp.connect(REMOTE, 8080, h.now, sport=9000)
    with pytest.raises(OSError):
        h.tcp.connect(REMOTE, 8080, h.now, sport=9000)


def test_no_listener_syn_ack_combination():
    h = Harness()
    h.send("SA", seq=1, ack=9)                   # SYN+ACK to a listener: not a SYN, reset it
    r = h.reply()
    assert r.flags == "R" and r.seq == 9
