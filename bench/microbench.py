"""Pure TcpLayer costs, no I/O (not a test):  python -m bench.microbench

rr:    one in-order 64-byte request in (fast path), recv, 64-byte response out, flush
conn:  a whole passive connection: SYN, ACK+data, echo, FIN, close, last ACK
Frames are pre-built with one Struct; checksums are trusted (as from a veth) and offloaded.
"""
import statistics
import struct
import time

from framework.net.tcp import EV_EOF, EV_READABLE, TcpConfig, TcpLayer

H = struct.Struct("!HHIIBBHHH")
LOCAL, REMOTE = 0xC6120002, 0xC6120001
SYNOPT = b"\x02\x04\x05\xb4\x04\x02\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x00\x01\x03\x03\x07"


def ts(v, e=0):
    return b"\x01\x01\x08\x0a" + struct.pack("!II", v, e)


def frame(sport, dport, seq, ack, flags, data=b"", opts=b""):
    return (bytes(20) + H.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                               (20 + len(opts)) << 2, flags, 64240, 0, 0) + opts + data)


def layer():
    sent = []
    tcp = TcpLayer(lambda dst, p, seg, vh: sent.append(seg), LOCAL, 1500, True, False, TcpConfig())
    return tcp, sent


def bench_rr(n=20000):
    tcp, sent = layer()
    tcp.listen(80)
    now = 100.0
    f = frame(40000, 80, 1000, 0, 0x02, opts=SYNOPT)
    tcp.input(f, REMOTE, LOCAL, 20, len(f), True, now)
    tcp.flush(now)
    iss = struct.unpack_from("!I", sent[-1], 4)[0]
    f = frame(40000, 80, 1001, iss + 1, 0x10, opts=ts(2))
    tcp.input(f, REMOTE, LOCAL, 20, len(f), True, now)
    tcp.take_events()
    body = b"x" * 64
    frames = [frame(40000, 80, 1001 + 64 * i, iss + 1 + 64 * i, 0x18, body, ts(3 + i))
              for i in range(n)]
    sent.clear()
    t0 = time.perf_counter()
    for f in frames:
        tcp.input(f, REMOTE, LOCAL, 20, len(f), True, now)
        for ev, c in tcp.take_events():
            c.send(c.recv())
        tcp.poll(now)
        tcp.flush(now)
        sent.clear()
    return (time.perf_counter() - t0) / n * 1e6


def bench_conn(n=5000):
    tcp, sent = layer()
    tcp.listen(7, backlog=n)
    msg = b"x" * 64
    now = 100.0
    t0 = time.perf_counter()
    for i in range(n):
        sport = 10000 + i
        f = frame(sport, 7, 1000, 0, 0x02, opts=SYNOPT)
        tcp.input(f, REMOTE, LOCAL, 20, len(f), True, now)
        iss = struct.unpack_from("!I", sent[-1], 4)[0]
        sent.clear()
        f = frame(sport, 7, 1001, iss + 1, 0x18, msg, ts(2))
        tcp.input(f, REMOTE, LOCAL, 20, len(f), True, now)
        for ev, c in tcp.take_events():
            if ev == EV_READABLE:
                c.send(c.recv())
        tcp.poll(now)
        tcp.flush(now)
        sent.clear()
        f = frame(sport, 7, 1065, iss + 65, 0x11, b"", ts(3))
        tcp.input(f, REMOTE, LOCAL, 20, len(f), True, now)
        for ev, c in tcp.take_events():
            if ev == EV_EOF:
                c.close()
        tcp.poll(now)
        tcp.flush(now)
        sent.clear()
        f = frame(sport, 7, 1066, iss + 66, 0x10, b"", ts(4))
        tcp.input(f, REMOTE, LOCAL, 20, len(f), True, now)
        tcp.take_events()
        now += 0.0001
    return (time.perf_counter() - t0) / n * 1e6


if __name__ == "__main__":
    rr = [bench_rr() for _ in range(5)]
    cn = [bench_conn() for _ in range(5)]
    print(f"rr:   {statistics.median(rr):.2f} us per request/response (min {min(rr):.2f})")
    print(f"conn: {statistics.median(cn):.1f} us per connection (min {min(cn):.1f})")
