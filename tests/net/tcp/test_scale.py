"""10,000 connections in one layer: they work, and each costs about 2 KB or less."""
import gc
import tracemalloc

from framework.net.tcp import ESTABLISHED, EV_ACCEPT, EV_READABLE

from .harness import LOCAL, REMOTE, Harness

N = 10000


def test_ten_thousand_connections_memory_and_traffic():
    h = Harness(listen=None)
    h.tcp.listen(80, backlog=N)
    tcp = h.tcp
    # pre-build frames so scapy's allocations are not measured
    syns = [h.packet("S", seq=1000, sport=10000 + i, options=[("MSS", 1460)]) for i in range(N)]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for b in syns:
        tcp.input(b, REMOTE, LOCAL, 20, len(b), True, h.now)
    tcp.flush(h.now)
    synacks = h.out
    h.out = []
    # complete the handshakes with ACKs built by hand (no scapy inside the measurement)
    import struct
    for dst, raw, vh in synacks:
        dport, sport, seq = struct.unpack_from("!HHI", raw)
        ack = bytes(20) + struct.pack("!HHIIBBHHH", sport, dport, 1001, (seq + 1) & 0xFFFFFFFF,
                                      0x50, 0x10, 65535, 0, 0)
        tcp.input(ack, REMOTE, LOCAL, 20, 40, True, h.now)
    evs = tcp.take_events()
    del synacks
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(evs) == N and all(e == EV_ACCEPT for e, _ in evs)
    assert len(tcp.flows) == N
    per_conn = (used - N * 8) / N       # the events list holds one pointer per connection
    print(f"\n{N} established connections: {used / 1e6:.1f} MB, {per_conn:.0f} B per connection")
    assert per_conn < 2048
    # every one of them still works: one byte in each direction
    conns = [c for _, c in evs]
    for c in conns:
        assert c.state == ESTABLISHED
    c = conns[N // 2]
    h.send("PA", seq=1001, ack=c.snd_nxt, data=b"ping", sport=c.key[1])
    assert tcp.take_events() == [(EV_READABLE, c)] and c.recv() == b"ping"
    c.send(b"pong")
    assert h.reply().payload == b"pong"


def test_time_wait_entries_are_small():
    """10,000 connections closed by us sit in TIME_WAIT at a fraction of a Connection's cost."""
    import struct
    h = Harness(listen=None)
    tcp = h.tcp
    tcp.listen(80, backlog=N)
    n = 5000
    syns = [h.packet("S", seq=1000, sport=10000 + i, options=[("MSS", 1460)]) for i in range(n)]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for b in syns:
        tcp.input(b, REMOTE, LOCAL, 20, len(b), True, h.now)
    tcp.flush(h.now)
    out, h.out = h.out, []
    hdr = struct.Struct("!HHIIBBHHH")

    def seg(sport, dport, seq, ack, flags):
        return bytes(20) + hdr.pack(sport, dport, seq, ack & 0xFFFFFFFF, 0x50, flags, 65535, 0, 0)
    for dst, raw, vh in out:
        dport, sport, seq = struct.unpack_from("!HHI", raw)
        f = seg(sport, dport, 1001, seq + 1, 0x10)
        tcp.input(f, REMOTE, LOCAL, 20, 40, True, h.now)
    for ev, c in tcp.take_events():
        c.close()
    tcp.flush(h.now)
    out, h.out = h.out, []
    for dst, raw, vh in out:                    # the peer ACKs our FIN and sends its own
        dport, sport, seq = struct.unpack_from("!HHI", raw)
        f = seg(sport, dport, 1001, seq + 1, 0x11)
        tcp.input(f, REMOTE, LOCAL, 20, 40, True, h.now)
    tcp.take_events()
    tcp.flush(h.now)
    del out
    h.out = []
    # stale timer entries of the finished Connections pop within an RTO and free them
    h.now += 2.0
    tcp.poll(h.now)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert tcp.tw_count == n and len(tcp.flows) == n
    per = used / n
    print(f"\n{n} TIME_WAIT entries: {per:.0f} B each")
    assert per < 600
