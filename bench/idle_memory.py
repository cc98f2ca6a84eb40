"""Kernel-free: the Python heap one idle keep-alive connection costs in the worker.

    python -m bench.idle_memory [--connections 5000] [--batch 100] [--idle 5] [--top 25]
                                [--frames 1] [--json]

micro_stack's crafted-frame Client (Linux-like SYN options, timestamps on every segment)
drives connections through the ``memory`` port pair into the shard loop as the worker runs
it (``ShardLoop.run_turns``), serving ``apps.hello``. Each connection does what a browser's
keep-alive connection does before it falls silent:

    SYN -> SYN-ACK -> ACK, GET / (keep-alive) -> response -> ACK of the response

and then stays open. After the last batch the virtual clock moves on ``--idle`` seconds
(shorter than the HTTP idle timeout), so the timers a request leaves behind (delayed ACK,
retransmission, the timeout sweep) have fired and what is measured is the connection at
rest. Reported: the tracemalloc difference between a snapshot taken after a warm-up batch
and one taken after the ``--connections`` connections went idle, divided by their number,
and the top allocation sites per connection (``--frames K`` groups by the K innermost
frames instead of one line). The set and dict tables that grow with the number of
connections are included: their share per connection moves with N (a table doubles or
quadruples at a time).

Batches are at most the listen backlog (128), so the handshakes are the usual stateful
ones; ``--batch 250`` overflows the SYN queue and exercises SYN cookies instead.

With the compiled modules (framework/native.py) tracemalloc sees no line inside them and
charges their allocations to the nearest Python frame; ``FRAMEWORK_PURE_PYTHON=1`` names
the sites. The first line says which ran.
"""
import argparse
import gc
import json
import tracemalloc

from bench.micro_stack import (ACK, BODY, M32, PSH, REQUEST_KA, SYN, Client, Conn,
                               build_shard, segments_to)

PORTS_PER_CLIENT = 40000
FIRST_PORT = 20000


def open_batch(shard, cport, clock, clients, indices):
    """Open the connections numbered ``indices``, one keep-alive request each, and ACK the
    responses; returns how many got their response."""
    conns = {}
    pending = []
    for i in indices:
        if i < 0:       # -1 - k: client k's first connection, on a port of its own
            cl, port = clients[-1 - i], FIRST_PORT - 1
        else:
            cl, port = clients[i // PORTS_PER_CLIENT], FIRST_PORT + i % PORTS_PER_CLIENT
        c = Conn(port, (i * 7919 * 65536) & M32)
        conns[(cl.ip, c.sport)] = (cl, c)
        pending.append(cl.frame(c.sport, c.iss, 0, SYN, options=cl.syn_opt(), win=64240))
    ok = 0
    for _ in range(200):
        if pending:
            cport.tx_burst(pending)
        pending = []
        clock[0] += 10e-6
        shard.run_turns(1)
        for cl, c, _, _, seq, ack, flags, payload, tsval in segments_to(
                cport.rx_burst(1 << 16), clients, conns, pending):
            if c.state == "syn" and flags & (SYN | ACK) == SYN | ACK:
                c.rcv = (seq + 1) & M32
                c.state = "est"
                pending.append(cl.frame(c.sport, c.snd, c.rcv, ACK, options=cl.ts_opt(tsval)))
                pending.append(cl.frame(c.sport, c.snd, c.rcv, ACK | PSH, REQUEST_KA,
                                        options=cl.ts_opt(tsval)))
                c.snd = (c.snd + len(REQUEST_KA)) & M32
            elif payload and seq == c.rcv:
                c.resp += payload
                c.rcv = (c.rcv + len(payload)) & M32
                if not c.ok and c.resp.endswith(BODY):
                    c.ok = True
                    ok += 1
                    pending.append(cl.frame(c.sport, c.snd, c.rcv, ACK,
                                            options=cl.ts_opt(tsval)))
        if not pending and ok == len(conns):
            break
    return ok


def rest(shard, cport, clock, seconds, step=0.05):
    """Let the virtual clock run ``seconds`` with no traffic (timers fire)."""
    for _ in range(int(seconds / step)):
        clock[0] += step
        shard.run_turns(1)
        cport.rx_burst(1 << 16)      # nothing is expected; dropped if anything comes


def measure(n=5000, batch=100, idle=5.0, top=25, frames=1, offload=True):
    shard, cport, clock = build_shard(offload)
    clients = [Client(f"198.18.0.{10 + k}") for k in range(1 + (n + batch) // PORTS_PER_CLIENT)]
    # the stack learns each client's MAC first (its ARP queue holds only a few frames),
    # then a warm-up batch makes the first-use allocations
    warm = open_batch(shard, cport, clock, clients, range(-1, -1 - len(clients), -1))
    warm += open_batch(shard, cport, clock, clients, range(batch))
    rest(shard, cport, clock, idle)
    base = batch
    gc.collect()
    tracemalloc.start(frames)
    before = tracemalloc.take_snapshot()
    ok = 0
    for first in range(base, base + n, batch):
        ok += open_batch(shard, cport, clock, clients, range(first, min(first + batch, base + n)))
    rest(shard, cport, clock, idle)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    streams = shard.provider.streams
    still_open = streams.open - warm
    group = "lineno" if frames == 1 else "traceback"
    stats = after.compare_to(before, group)
    total = sum(st.size_diff for st in stats)
    per = max(ok, 1)
    try:
        from framework import native
        mode = native.MODE
    except ImportError:
        mode = "pure"
    lines = [f"[{mode} modules] {ok} of {n} connections answered, {still_open} still open after {idle:g} s idle; "
             f"Python heap +{total / per:,.0f} bytes per idle connection (tracemalloc, "
             f"{sum(st.count_diff for st in stats) / per:.1f} blocks); top allocation sites "
             f"per connection:"]
    for st in stats[:top]:
        where = " <- ".join(f"{'/'.join(fr.filename.split('/')[-2:])}:{fr.lineno}"
                            for fr in st.traceback)
        lines.append(f"{st.size_diff / per:8,.0f} B {st.count_diff / per:6.2f} blocks  {where}")
    return {"connections": ok, "still_open": still_open, "bytes_per_conn": total / per,
            "blocks_per_conn": sum(st.count_diff for st in stats) / per,
            "table": "\n".join(lines)}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.idle_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--batch", type=int, default=100, help="connections opened at once")
    p.add_argument("--idle", type=float, default=5.0, help="virtual seconds at rest")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--frames", type=int, default=1, help="group by this many frames")
    p.add_argument("--no-offload", action="store_true")
    p.add_argument("--json", action="store_true", help="one JSON line")
    a = p.parse_args(argv)
    r = measure(a.connections, a.batch, a.idle, a.top, a.frames, not a.no_offload)
    print(json.dumps(r) if a.json else r["table"])


if __name__ == "__main__":
    main()
