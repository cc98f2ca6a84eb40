"""Kernel-free micro benchmark: complete short HTTP connections through the user stack.

    python -m bench.micro_stack [--connections 3000] [--concurrency 50] [--profile]

A crafted-frame client (Linux-like: MSS, SACK-permitted, timestamps, window scale on the
SYN; timestamps on every later segment) drives connections through the ``memory`` port
pair (framework/nic/memory.py) into the shard loop exactly as the worker runs it
(``ShardLoop.run_turns``: one asyncio iteration whose select is the shard's turn:
Stack.dispatch -> tx_burst, rx_burst -> Stack.process -> Streams -> apps.hello,
then asyncio's ready callbacks). Each connection is what ``wrk -H 'Connection: close'``
does:

    client SYN -> stack SYN-ACK -> client ACK, client GET / (Connection: close)
    -> stack response + FIN -> client FIN-ACK -> stack final ACK (stack in TIME_WAIT)

Only the shard's turns are timed (the client's crafting and parsing is not), with a fake
clock that advances 10 us per turn. ``--concurrency`` connections are in flight at once,
so a turn sees a batch of frames, like a loaded worker. Reported: stack time per
connection and per frame (frames in + frames out). ``--profile`` runs the same under
cProfile (enabled only during the shard's turns) and prints the top functions: this is
the profile the team optimises against.

By default the client's frames carry F_DATA_VALID in the vnet header (as frames from a
local veth peer do: the stack does not verify their TCP checksum) and the memory port
advertises checksum offload and GSO (as the afpacket port does). ``--verify-csum``:
plain frames, the stack verifies every checksum; ``--no-offload``: the stack computes
its own checksums.
"""
import argparse
import functools
import operator
import os
import cProfile
import io
import json
import pstats
import struct
import sys
import time

from framework.net import checksum
from framework.net.stack import Stack
from framework.net.wire import vnet
from framework.nic import memory
from framework.context import ShardContext
from framework.shard.loop import ShardLoop
from framework.shard.userstack import UserStackProvider

STACK_IP = "198.18.0.2"
STACK_MAC = bytes.fromhex("026600000002")
CLIENT_MAC = bytes.fromhex("020000000001")
HTTP_PORT = 8080
REQUEST = (b"GET / HTTP/1.1\r\nHost: 198.18.0.2:8080\r\nConnection: close\r\n\r\n")
REQUEST_KA = b"GET / HTTP/1.1\r\nHost: 198.18.0.2:8080\r\n\r\n"
BODY = b"Hello, World!"

ETH = struct.Struct("!6s6sH")
IP = struct.Struct("!BBHHHBBHII")
TCP = struct.Struct("!HHIIBBHHH")
SYN, ACK, FIN, PSH, RST = 0x02, 0x10, 0x01, 0x08, 0x04
M32 = 0xFFFFFFFF


def ip_int(s):
    a, b, c, d = map(int, s.split("."))
    return a << 24 | b << 16 | c << 8 | d


class Client:
    """Crafts the peer's frames; one instance per client address."""

    def __init__(self, ip, trusted=True):
        self.ip = ip_int(ip)
        self.sip = ip_int(STACK_IP)
        self.vh = vnet.VNET_HDR.pack(vnet.F_DATA_VALID, 0, 0, 0, 0, 0) if trusted else vnet.PLAIN
        self.ipid = 0
        self.ts = 1000

    def frame(self, sport, seq, ack, flags, payload=b"", options=b"", win=502):
        self.ipid = (self.ipid + 1) & 0xFFFF
        doff = (20 + len(options)) // 4
        tcp = TCP.pack(sport, HTTP_PORT, seq & M32, ack & M32, doff << 4, flags, win, 0, 0)
        seg = tcp + options + payload
        cs = checksum.l4_checksum(self.ip, self.sip, 6, seg)
        seg = seg[:16] + struct.pack("!H", cs) + seg[18:]
        total = 20 + len(seg)
        iph = IP.pack(0x45, 0, total, self.ipid, 0x4000, 64, 6, 0, self.ip, self.sip)
        iph = iph[:10] + struct.pack("!H", checksum.checksum(iph)) + iph[12:]
        return self.vh + ETH.pack(STACK_MAC, CLIENT_MAC, 0x0800) + iph + seg

    def ts_opt(self, ecr):
        self.ts = (self.ts + 1) & M32
        return struct.pack("!BBBBII", 1, 1, 8, 10, self.ts, ecr)

    def syn_opt(self):
        self.ts = (self.ts + 1) & M32
        # Linux: MSS, SACK_PERM, TS, NOP, WS 7
        return struct.pack("!BBHBBBBIIBBBB", 2, 4, 1460, 4, 2, 8, 10, self.ts, 0, 1, 3, 3, 7)

    def arp_reply(self, f):
        """Answer the stack's ARP request for our address (None if not one)."""
        if f[22:24] != b"\x08\x06" or f[30:32] != b"\x00\x01":
            return None
        tpa = int.from_bytes(f[48:52], "big")
        if tpa != self.ip:
            return None
        sha, spa = f[32:38], f[38:42]
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, CLIENT_MAC,
                          self.ip.to_bytes(4, "big"), sha, spa)
        return vnet.PLAIN + ETH.pack(sha, CLIENT_MAC, 0x0806) + arp


class Conn:
    __slots__ = ("sport", "state", "iss", "snd", "rcv", "tsecr", "resp", "done", "ok", "left",
                 "answered")

    def __init__(self, sport, iss):
        self.sport = sport
        self.state = "syn"
        self.iss = iss
        self.snd = iss + 1
        self.rcv = 0
        self.tsecr = 0
        self.resp = bytearray()
        self.done = False
        self.ok = False
        self.left = 1        # requests still to send
        self.answered = 0    # complete responses received


def parse(f):
    """(dport, seq, ack, flags, payload, tsval) of a TCP frame from the stack, or None."""
    if f[22:24] != b"\x08\x00" or f[33] != 6:
        return None
    ihl = (f[24] & 0x0F) * 4
    t = 24 + ihl
    sport, dport, seq, ack, off, flags, win, _, _ = TCP.unpack_from(f, t)
    hl = (off >> 4) * 4
    tsval = 0
    i, end = t + 20, t + hl
    while i < end:
        k = f[i]
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        ln = f[i + 1]
        if k == 8:
            tsval = int.from_bytes(f[i + 2:i + 6], "big")
        i += max(ln, 2)
    total = int.from_bytes(f[26:28], "big")
    payload = bytes(f[t + hl:24 + total])
    return dport, seq, ack, flags, payload, tsval


def build_shard(offload=True):
    from apps.hello import app
    cport, sport = memory.pair(csum_offload=offload, gso=offload)
    t = [100.0]

    # a C-level callable: a fake clock as cheap to read as time.monotonic
    clock = functools.partial(operator.getitem, t, 0)

    stack = Stack(mac=STACK_MAC, ip=STACK_IP, prefix=24, csum_offload=offload, gso=offload)
    loop = ShardLoop(clock=clock)
    ctx = ShardContext(loop, 0, 1)
    provider = UserStackProvider(sport, stack)
    loop.attach(provider, ctx)
    loop.run_until_complete(app.start_shard(ctx))
    for port, factory in app.listeners(HTTP_PORT).items():
        provider.listen(port, factory)
    return loop, cport, t


def _request(cl, c):
    """The connection's next request frame (the last one asks to close)."""
    c.left -= 1
    req = REQUEST if c.left == 0 else REQUEST_KA
    f = cl.frame(c.sport, c.snd, c.rcv, ACK | PSH, req, options=cl.ts_opt(c.tsecr))
    c.snd = (c.snd + len(req)) & M32
    return f


def segments_to(frames, clients, by_key, out):
    """What the stack sent the crafted clients: ARP requests are answered into ``out``;
    yields (client, conn, dst ip, dst port, seq, ack, flags, payload, tsval) for each TCP
    segment of a connection in ``by_key`` ({(client ip, port): (client, conn)})."""
    for f in frames:
        if f[22:24] == b"\x08\x06":
            for cl in clients:
                r = cl.arp_reply(f)
                if r:
                    out.append(r)
            continue
        p = parse(f)
        if p is None:
            continue
        dport, seq, ack, flags, payload, tsval = p
        dst = int.from_bytes(f[40:44], "big")
        entry = by_key.get((dst, dport))
        if entry is not None:
            yield entry[0], entry[1], dst, dport, seq, ack, flags, payload, tsval


def run(connections=3000, concurrency=50, trusted=True, offload=True, profile=None,
        warmup=200, requests=1):
    shard, cport, clock = build_shard(offload)

    def run_once():     # one turn of the shard loop (asyncio iteration included)
        shard.run_turns(1)
    clients = [Client(f"198.18.0.{10 + k}", trusted) for k in range(1 + (connections + warmup) // 25000)]
    by_key = {}
    waiting = []
    started = finished = failed = 0
    frames_in = frames_out = 0
    stack_time = 0.0
    timed_from = warmup
    t_in = t_out = 0
    t_conn0 = 0
    total = connections + warmup
    turns = 0
    perf = time.thread_time   # CPU time of this thread: immune to preemption by other load
    while finished + failed < total:
        out = []
        while started < total and len(by_key) < concurrency:
            cl = clients[started // 25000]
            sport = 20000 + started % 25000
            c = Conn(sport, (started * 7919 * 65536) & M32)
            c.left = requests
            by_key[(cl.ip, sport)] = (cl, c)
            out.append(cl.frame(sport, c.iss, 0, SYN, options=cl.syn_opt(), win=64240))
            started += 1
        out += waiting
        waiting = []
        cport.tx_burst(out)
        frames_in += len(out)
        clock[0] += 10e-6
        if profile is not None and finished >= timed_from:
            profile.enable()
            t0 = perf()
            run_once()
            dt = perf() - t0
            profile.disable()
        else:
            t0 = perf()
            run_once()
            dt = perf() - t0
        turns += 1
        if finished + failed >= timed_from:
            if t_conn0 == 0 and timed_from:
                t_conn0 = finished + failed
                t_in, t_out = frames_in - len(out), frames_out
                stack_time = 0.0
            stack_time += dt
        got = cport.rx_burst(1 << 16)
        frames_out += len(got)
        for cl, c, dst, dport, seq, ack, flags, payload, tsval in segments_to(
                got, clients, by_key, waiting):
            c.tsecr = tsval
            if flags & RST:
                c.done = True
                failed += 1
                del by_key[(dst, dport)]
                continue
            if c.state == "syn":
                if flags & (SYN | ACK) == SYN | ACK and ack == c.snd:
                    c.rcv = (seq + 1) & M32
                    c.state = "est"
                    waiting.append(cl.frame(c.sport, c.snd, c.rcv, ACK, options=cl.ts_opt(tsval)))
                    waiting.append(_request(cl, c))
                continue
            if payload and seq == c.rcv:
                c.resp += payload
                c.rcv = (c.rcv + len(payload)) & M32
                if c.left and c.resp.endswith(BODY):
                    # a keep-alive response is complete: ACK it with the next request
                    c.answered += 1
                    c.resp.clear()
                    waiting.append(_request(cl, c))
                    continue
            if flags & FIN and c.state == "est":
                c.rcv = (c.rcv + 1) & M32
                c.state = "fin"
                c.ok = (c.resp.startswith(b"HTTP/1.1 200 OK") and c.resp.endswith(BODY)
                        and c.answered == requests - 1)
                waiting.append(cl.frame(c.sport, c.snd, c.rcv, FIN | ACK, options=cl.ts_opt(tsval)))
                c.snd = (c.snd + 1) & M32
                continue
            if c.state == "fin" and flags & ACK and ack == c.snd:
                del by_key[(dst, dport)]
                c.done = True
                if c.ok:
                    finished += 1
                else:
                    failed += 1
        if not got and not waiting and not out:
            # nothing moved: let the stack's timers run (delayed ACK etc.)
            clock[0] += 0.05
        if turns > 50 * total + 1000:
            raise RuntimeError(f"stalled: {finished} done, {failed} failed, {len(by_key)} open, "
                               f"counters {shard.provider.stack.counters}")
    n = finished + failed - t_conn0
    pk = (frames_in - t_in) + (frames_out - t_out)
    return {
        "connections": n, "failed": failed, "concurrency": concurrency,
        "requests_per_conn": requests, "us_per_request": stack_time * 1e6 / (n * requests),
        "us_per_conn": stack_time * 1e6 / n, "us_per_packet": stack_time * 1e6 / pk,
        "packets_per_conn": pk / n, "stack_seconds": stack_time, "turns": turns,
        "csum_verified": not trusted, "offload": offload,
    }


def profile_table(st, conns, top=30, sort="tottime"):
    """The top functions in per-connection units (under cProfile, whose overhead inflates
    every figure about 2-3x: compare shares, not absolute times)."""
    rows = []
    total = 0.0
    for (fn, line, name), (cc, nc, tt, ct, _callers) in st.stats.items():
        total += tt
        rows.append((tt, ct, nc, f"{fn}:{line}({name})"))
    key = 1 if sort == "cumtime" else 0
    rows.sort(key=lambda r: r[key], reverse=True)
    out = [f"top {top} by {sort}, per connection ({conns} connections; self time total "
           f"{total * 1e6 / conns:.1f} us/conn under cProfile)",
           f"{'calls/conn':>10} {'self us/conn':>12} {'self %':>7} {'cum us/conn':>11}  function"]
    for tt, ct, nc, where in rows[:top]:
        out.append(f"{nc / conns:10.2f} {tt * 1e6 / conns:12.2f} {tt / total:7.1%} "
                   f"{ct * 1e6 / conns:11.2f}  {where}")
    files = {}
    for tt, ct, nc, where in rows:
        f = where.split(":")[0] if not where.startswith("~") else "(builtins)"
        files[f] = files.get(f, 0.0) + tt
    out.append("self time by file: " + ", ".join(
        f"{f} {t / total:.0%}" for f, t in sorted(files.items(), key=lambda x: -x[1])[:10]))
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.micro_stack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--requests", type=int, default=1,
                   help="requests per connection (1: Connection: close; more: keep-alive, "
                        "the last one closes)")
    p.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    p.add_argument("--verify-csum", action="store_true")
    p.add_argument("--no-offload", action="store_true")
    p.add_argument("--profile", action="store_true", help="cProfile the shard's turns")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--sort", default="tottime", help="tottime | cumtime")
    p.add_argument("--raw", action="store_true", help="also pstats' own listing")
    p.add_argument("--json", action="store_true", help="one JSON line (for python -m bench)")
    a = p.parse_args(argv)
    kw = dict(connections=a.connections, concurrency=a.concurrency, trusted=not a.verify_csum,
              offload=not a.no_offload, requests=a.requests)
    if a.profile:
        prof = cProfile.Profile()
        r = run(profile=prof, **kw)
        st = pstats.Stats(prof).strip_dirs()
        if a.raw:
            s = io.StringIO()
            st.stream = s
            st.sort_stats(a.sort).print_stats(a.top)
            print(s.getvalue())
        print(profile_table(st, r["connections"], a.top, a.sort))
        print(f"(under cProfile) {r['us_per_conn']:.1f} us per connection "
              f"({r['requests_per_conn']} request(s), {r['us_per_request']:.1f} us per request), "
              f"{r['us_per_packet']:.2f} us per frame, {r['packets_per_conn']:.1f} frames "
              f"per connection, {r['connections']} connections, {r['failed']} failed")
        return
    runs = [run(**kw) for _ in range(a.repeat)]
    best = min(runs, key=lambda r: r["us_per_conn"])
    best["runs_us_per_conn"] = [round(r["us_per_conn"], 2) for r in runs]
    if a.json:
        print(json.dumps(best))
        return
    print(f"{best['connections']} connections (concurrency {best['concurrency']}), "
          f"{best['failed']} failed; {best['packets_per_conn']:.1f} frames per connection")
    print(f"stack time per connection: {best['us_per_conn']:.1f} us "
          f"(runs: {', '.join(map(str, best['runs_us_per_conn']))})")
    print(f"stack time per frame:      {best['us_per_packet']:.2f} us")
    if a.requests > 1:
        print(f"stack time per request:    {best['us_per_request']:.1f} us "
              f"({a.requests} per connection)")
    print(f"= {1e6 / best['us_per_conn']:,.0f} connections/s on one core (stack + app only)")


if __name__ == "__main__":
    main()
