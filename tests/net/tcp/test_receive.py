"""Receive side: in-order delivery, delayed ACK, out-of-order reassembly, duplicates and
overlaps, the window following the buffer, window updates, zero window."""
from framework.net.tcp import EV_READABLE, TcpConfig, TcpLayer

from .harness import Harness

P = 1001   # first data byte from the peer (isn 1000)


def test_in_order_delivery_and_readable_event_once():
    h = Harness()
    conn, iss = h.accept()
    h.send("PA", seq=P, ack=iss + 1, data=b"abc")
    h.send("PA", seq=P + 3, ack=iss + 1, data=b"def")
    assert h.events() == [(EV_READABLE, conn)]     # one event until the app reads
    assert conn.recv(4) == b"abcd"
    assert conn.recv() == b"ef"
    assert conn.recv() == b""
    h.send("PA", seq=P + 6, ack=iss + 1, data=b"g")
    assert h.events() == [(EV_READABLE, conn)]


def test_delayed_ack_timer_40ms():
    h = Harness()
    conn, iss = h.accept()
    h.send("PA", seq=P, ack=iss + 1, data=b"x" * 100)
    h.no_reply()
    h.advance(0.039)
    h.no_reply()
    h.advance(0.002)
    a = h.reply()
    assert a.flags == "A" and a.ack == P + 100


def test_ack_every_second_full_segment():
    h = Harness()
    conn, iss = h.accept()
    h.send("A", seq=P, ack=iss + 1, data=b"x" * 1460)
    h.no_reply()
    h.send("A", seq=P + 1460, ack=iss + 1, data=b"y" * 1460)
    a = h.reply()
    assert a.ack == P + 2920
    assert a.win == 65535                        # capped: no window scaling negotiated


def test_ack_piggybacks_on_response():
    h = Harness()
    conn, iss = h.accept()
    h.send("PA", seq=P, ack=iss + 1, data=b"GET")
    conn.recv()
    conn.send(b"200")
    d = h.reply()
    assert d.payload == b"200" and d.ack == P + 3
    h.advance(0.1)
    h.no_reply()                                 # the delayed ACK was satisfied by the data


def test_out_of_order_gets_immediate_dupack_and_reassembles():
    h = Harness()
    conn, iss = h.accept()
    h.send("A", seq=P + 10, ack=iss + 1, data=b"KLMNO")
    a = h.reply()
    assert a.flags == "A" and a.ack == P
    h.send("A", seq=P + 20, ack=iss + 1, data=b"UVWXY")
    assert h.reply().ack == P
    assert h.events() == []
    h.send("A", seq=P, ack=iss + 1, data=b"ABCDEFGHIJ")
    a = h.reply()                                # gap filled: ACK at once
    assert a.ack == P + 15
    assert conn.recv() == b"ABCDEFGHIJKLMNO"
    h.send("A", seq=P + 15, ack=iss + 1, data=b"PQRST")
    assert h.reply().ack == P + 25
    assert conn.recv() == b"PQRSTUVWXY"


def test_overlapping_and_duplicate_segments_trimmed():
    h = Harness()
    conn, iss = h.accept()
    h.send("A", seq=P + 4, ack=iss + 1, data=b"EFGH")
    h.send("A", seq=P + 6, ack=iss + 1, data=b"GHIJKL")       # overlaps the queued block
    h.send("A", seq=P + 4, ack=iss + 1, data=b"EFGH")         # exact duplicate
    h.send("A", seq=P + 2, ack=iss + 1, data=b"CDEFGHIJ")     # covers and straddles
    h.replies()
    h.send("A", seq=P, ack=iss + 1, data=b"ABC")              # overlaps the head
    assert h.replies()[-1].ack == P + 12
    assert conn.recv() == b"ABCDEFGHIJKL"
    h.send("A", seq=P + 8, ack=iss + 1, data=b"IJKLMN")       # old + new bytes
    h.advance(0.05)
    assert h.replies()[-1].ack == P + 14
    assert conn.recv() == b"MN"


def test_old_duplicate_gets_immediate_ack():
    h = Harness()
    conn, iss = h.accept()
    h.send("A", seq=P, ack=iss + 1, data=b"abc")
    h.advance(0.05)
    h.replies()
    h.send("A", seq=P, ack=iss + 1, data=b"abc")
    a = h.reply()
    assert a.ack == P + 3
    assert h.tcp.counters["drop.tcp.unacceptable"] == 1


def test_out_of_order_fin():
    h = Harness()
    conn, iss = h.accept()
    h.send("FA", seq=P + 3, ack=iss + 1, data=b"def")
    assert h.reply().ack == P
    h.send("A", seq=P, ack=iss + 1, data=b"abc")
    assert h.reply().ack == P + 7
    assert conn.recv() == b"abcdef"
    assert [e for e, _ in h.events()] == [EV_READABLE, 5]


def test_window_follows_buffer_and_update_on_drain():
    h = Harness(rcvbuf=8192)
    conn, iss = h.accept()
    h.send("A", seq=P, ack=iss + 1, data=b"a" * 1460)
    h.send("A", seq=P + 1460, ack=iss + 1, data=b"b" * 1460)
    a = h.reply()
    assert a.win == 8192 - 2920
    for i in range(2, 5):
        h.send("A", seq=P + 1460 * i, ack=iss + 1, data=b"c" * 1460)
    h.advance(0.05)
    a = h.replies()[-1]
    assert a.ack == P + 5 * 1460 and a.win == 8192 - 5 * 1460
    conn.recv(100)
    h.no_reply()                                 # a 100-byte gain is not worth an update
    conn.recv()
    u = h.reply()
    assert u.flags == "A" and u.win == 8192 and u.ack == P + 5 * 1460


def test_zero_window_refuses_data_but_processes_ack():
    h = Harness(rcvbuf=2000)
    conn, iss = h.accept(options=[("MSS", 1000)])
    h.send("A", seq=P, ack=iss + 1, data=b"x" * 1000)
    h.send("A", seq=P + 1000, ack=iss + 1, data=b"y" * 1000)
    a = h.reply()
    assert a.win == 0 and a.ack == P + 2000
    conn.send(b"out")
    d = h.reply()
    h.send("A", seq=P + 2000, ack=iss + 4, data=b"z")          # beyond a zero window
    a = h.reply()
    assert a.ack == P + 2000 and a.win == 0
    assert conn.snd_una == d.seq + 3                           # but its ACK counted
    h.send("A", seq=P + 1999, ack=iss + 4)                     # a zero window probe (old seq)
    assert h.reply().win == 0
    conn.recv()
    u = h.reply()
    assert u.win == 2000


def test_window_scaled_when_negotiated():
    h = Harness(window_scale=True, rcvbuf=1 << 20)
    h.send("S", seq=1000, options=[("MSS", 1460), ("WScale", 7)])
    sa = h.reply()
    assert sa.opts.wscale == 5 and sa.win == 65535              # 1 MiB >> 5 fits in 16 bits
    h.send("A", seq=1001, ack=sa.seq + 1, win=100)
    conn = h.events()[0][1]
    assert conn.snd_wnd == 100 << 7
    h.send("PA", seq=1001, ack=sa.seq + 1, win=100, data=b"q")
    h.advance(0.05)
    assert h.reply().win == ((1 << 20) - 1) >> 5


def test_no_window_scale_when_peer_does_not_offer():
    h = Harness(window_scale=True, rcvbuf=1 << 20)
    h.send("S", seq=1000, options=[("MSS", 1460)])
    sa = h.reply()
    assert sa.opts.wscale is None
    h.send("A", seq=1001, ack=sa.seq + 1, win=100)
    conn = h.events()[0][1]
    assert conn.snd_wnd == 100 and conn.rcv_ws == 0


def test_partial_reads_across_chunks():
    h = Harness()
    conn, iss = h.accept()
    big = bytes(range(256)) * 12                   # 3072 bytes: kept as a view of the frame
    h.send("A", seq=P, ack=iss + 1, data=big)
    h.send("A", seq=P + len(big), ack=iss + 1, data=b"tail!")
    assert conn.readable() == len(big) + 5
    assert conn.recv(1000) == big[:1000]
    assert conn.recv(2070) == big[1000:3070]
    assert conn.recv(4) == big[3070:] + b"ta"
    assert conn.readable() == 3
    assert conn.recv() == b"il!"
    assert conn.recv() == b"" and conn.readable() == 0


class _IsnBelowWrap(TcpLayer):
    def _isn(self, key, now):
        return 0xFFFFFF00                               # our ISN just below 2**32


def test_sequence_wraparound_both_directions():
    h = Harness(layer_class=_IsnBelowWrap)
    isn = 0xFFFFFFC0                                    # theirs too
    conn, iss = h.accept(isn=isn)
    assert iss == 0xFFFFFF00
    data = bytes(range(200))
    h.send("PA", seq=isn + 1, ack=iss + 1, data=data)    # crosses 2**32
    h.advance(0.05)
    a = h.replies()[-1]
    assert a.ack == (isn + 1 + 200) & 0xFFFFFFFF
    assert conn.recv() == data
    conn.send(b"z" * 1000)                              # our data crosses 2**32 too
    d = h.reply()
    assert d.seq == iss + 1 and len(d.payload) == 1000
    h.send("A", seq=(isn + 201) & 0xFFFFFFFF, ack=(iss + 1001) & 0xFFFFFFFF)
    assert conn.snd_una - conn.iss == 1001 and conn.t_rtx is None
    h.send("FA", seq=(isn + 201) & 0xFFFFFFFF, ack=(iss + 1001) & 0xFFFFFFFF)
    assert h.reply().ack == (isn + 202) & 0xFFFFFFFF


def test_a_window_of_full_segments_past_a_hole_is_all_kept():
    # a 1 MB window holds ~700 full segments: a lost one must not make us drop what the
    # peer sends past it (each dropped segment is one more loss for the peer to repair)
    h = Harness(window_scale=True)
    conn, iss = h.accept(options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)])
    n = 600
    body = bytes(range(256)) * (1460 * (n + 1) // 256 + 1)
    for k in range(1, n + 1):                         # segment 0 is lost
        h.send("A", seq=P + 1460 * k, ack=iss + 1, data=body[1460 * k:1460 * (k + 1)])
    assert len(conn.ooo) == n and h.tcp.counters["drop.tcp.ooo_full"] == 0
    last = h.replies()[-1]
    assert last.opts.sack[0] == ((P + 1460) & 0xFFFFFFFF, (P + 1460 * (n + 1)) & 0xFFFFFFFF)
    h.send("A", seq=P, ack=iss + 1, data=body[:1460])
    assert conn.ooo is None and conn.recv() == body[:1460 * (n + 1)]
    assert h.reply().ack == (P + 1460 * (n + 1)) & 0xFFFFFFFF


def test_tiny_segments_past_a_hole_are_bounded():
    h = Harness(window_scale=True)
    conn, iss = h.accept(options=[("MSS", 1460), ("WScale", 7)])
    for k in range(1, 3000):
        h.send("A", seq=P + 2 * k, ack=iss + 1, data=b"x")   # 1-byte pieces with gaps
    assert len(conn.ooo) == 2048 and h.tcp.counters["drop.tcp.ooo_full"] == 3000 - 1 - 2048
