"""SYN cookies: a full SYN queue answers statelessly; a good cookie ACK rebuilds the
connection (MSS from the cookie, WS/SACK from the timestamp echo); bad or stale ones get
the closed-port RST."""
from framework.net.tcp import ESTABLISHED, EV_ACCEPT, EV_READABLE

from .harness import REMOTE, Harness


def _full(h, **kw):
    """A listener with backlog 1 whose SYN queue holds one half-open connection."""
    h.tcp.listen(80, backlog=1)
    h.send("S", seq=1, sport=30000)
    h.reply()


def test_cookie_synack_keeps_no_state_and_ack_rebuilds():
    h = Harness(listen=None)
    _full(h)
    h.send("S", seq=5000, sport=30001, win=4000, options=[("MSS", 1400)])
    sa = h.reply()
    assert sa.flags == "SA" and sa.ack == 5001 and sa.opts.mss == 1460
    assert sa.opts.wscale is None and not sa.opts.sack_perm       # no timestamps to carry them
    assert (REMOTE, 30001, 80) not in h.tcp.flows
    assert h.tcp.counters["tcp.syncookies_sent"] == 1
    h.send("PA", seq=5001, ack=sa.seq + 1, win=4000, sport=30001, data=b"GET /")
    evs = h.events()
    assert [e for e, _ in evs] == [EV_ACCEPT, EV_READABLE]
    conn = evs[0][1]
    assert conn.state == ESTABLISHED and conn.mss == 1400 and conn.snd_wnd == 4000
    assert conn.recv() == b"GET /"
    conn.send(b"200")
    d = h.reply()
    assert d.seq == sa.seq + 1 and d.ack == 5006 and d.payload == b"200"
    assert h.tcp.counters["tcp.syncookies_ok"] == 1


def test_cookie_carries_wscale_and_sack_in_timestamps():
    h = Harness(listen=None, timestamps=True, window_scale=True)
    _full(h)
    h.send("S", seq=5000, sport=30001, options=[("MSS", 1460), ("SAckOK", b""),
                                                ("Timestamp", (777, 0)), ("WScale", 9)])
    sa = h.reply()
    assert sa.opts.wscale == 5 and sa.opts.sack_perm and sa.opts.tsecr == 777
    assert sa.opts.tsval & 0x3F == 0x10 | 9
    clock = (int(h.now * 1000) + h.tcp.ts_off) & 0xFFFFFFFF
    assert (clock - sa.opts.tsval) & 0xFFFFFFFF < 64      # never ahead of our TS clock (PAWS)
    h.send("A", seq=5001, ack=sa.seq + 1, win=100, sport=30001,
           options=[("NOP", None), ("NOP", None), ("Timestamp", (778, sa.opts.tsval))])
    (ev, conn), = h.events()
    assert conn.snd_ws == 9 and conn.snd_wnd == 100 << 9 and conn.rcv_ws == 5
    assert conn.bits & 0x4000 and conn.bits & 0x40                 # SACK, timestamps
    assert conn.mss == 1460 - 12 and conn.ts_recent == 778


def test_bad_or_stale_cookie_gets_rst():
    h = Harness(listen=None)
    _full(h)
    h.send("S", seq=5000, sport=30001)
    sa = h.reply()
    h.send("A", seq=5001, ack=sa.seq + 2, sport=30001)            # wrong cookie
    r = h.reply()
    assert r.flags == "R" and (REMOTE, 30001, 80) not in h.tcp.flows
    h.send("A", seq=5002, ack=sa.seq + 1, sport=30001)            # peer ISN does not match
    assert h.reply().flags == "R"
    h.now += 200                                                  # > 2 ticks of 64 s
    h.send("A", seq=5001, ack=sa.seq + 1, sport=30001)
    r, = [s for s in h.replies() if s.tcp.dport == 30001]
    assert r.flags == "R"
    assert h.tcp.counters["tcp.syncookies_ok"] == 0


def test_cookie_ack_with_fin():
    h = Harness(listen=None)
    _full(h)
    h.send("S", seq=5000, sport=30001)
    sa = h.reply()
    h.send("FPA", seq=5001, ack=sa.seq + 1, sport=30001, data=b"bye")
    a = h.reply()
    assert a.ack == 5005
    assert [e for e, _ in h.events()] == [EV_ACCEPT, EV_READABLE, 5]   # EOF
