"""Records/s between two processes: the shm ring against multiprocessing.Queue and os.pipe.

    python -m bench.shm_ring [--records N] [--rounds R] [--size 64] [--batch 32]

Every method moves N records of --size bytes (--batch distinct objects, cycled: pickle
would send an object repeated inside one batch only once) from a producer process to a
consumer process in batches of --batch, producer pinned to core 0 and consumer to core 1 (when
there are two cores). Methods, all in the same run, rounds interleaved, medians quoted:

  ring spin      Ring.push_many / pop_many, the consumer busy-polls (a busy shard)
  ring doorbell  the same, the consumer sleeps on the doorbell whenever the ring is empty
  mp.Queue       multiprocessing.Queue, one put() of a list of --batch records per batch
  os.pipe        one write() per batch of length-prefixed records, reads of 64 KiB + parse
  mp.Queue/rec   multiprocessing.Queue, one put() per record (how it is usually used)

Throughput is N / (consumer done - producer start), both on CLOCK_MONOTONIC.
CPU us/record comes from each process's own user+system time. Not part of the tests.
"""
import argparse
import multiprocessing
import os
import statistics
import struct
import sys
import time

from framework.shm import Ring, cleanup_run, new_runid

CTX = multiprocessing.get_context("fork")
_LEN = struct.Struct("<I")


def _pin(core):
    if len(os.sched_getaffinity(0)) > 1 and core < os.cpu_count():
        os.sched_setaffinity(0, {core})


def _cpu():
    t = os.times()
    return t.user + t.system


# -- producers (core 0) ---------------------------------------------------------
def _prod_ring(ring, n, batch, recs, go, out):
    _pin(0)
    go.wait()
    c0, t0 = _cpu(), time.monotonic()
    push_many = ring.push_many
    sent = 0
    while sent < n:
        todo = recs if n - sent >= batch else recs[:n - sent]
        k = push_many(todo)
        while k < len(todo):                    # full: wait for the consumer, keep order
            j = push_many(todo[k:])
            if not j:
                os.sched_yield()
            k += j
        sent += len(todo)
    out.send((t0, _cpu() - c0))


def _prod_queue(q, n, batch, recs, go, out):
    _pin(0)
    go.wait()
    c0, t0 = _cpu(), time.monotonic()
    sent = 0
    while sent < n:
        todo = recs if n - sent >= batch else recs[:n - sent]
        q.put(todo)
        sent += len(todo)
    q.close()
    q.join_thread()          # the feeder thread pickles and writes: count its CPU too
    out.send((t0, _cpu() - c0))


def _prod_queue_rec(q, n, batch, recs, go, out):
    _pin(0)
    go.wait()
    c0, t0 = _cpu(), time.monotonic()
    put = q.put
    for i in range(n):
        put(recs[i % batch])
    q.close()
    q.join_thread()
    out.send((t0, _cpu() - c0))


def _prod_pipe(fd, n, batch, recs, go, out):
    _pin(0)
    framed = [_LEN.pack(len(r)) + r for r in recs]
    go.wait()
    c0, t0 = _cpu(), time.monotonic()
    sent = 0
    write = os.write
    while sent < n:
        k = min(batch, n - sent)
        # one write per batch; the framing is built per batch, as a real sender would
        buf = b"".join(framed[:k])
        while buf:
            w = write(fd, buf)
            buf = buf[w:]
        sent += k
    out.send((t0, _cpu() - c0))


# -- consumers (core 1) ---------------------------------------------------------
def _cons_ring(ring, n, batch, use_bell, go, out):
    _pin(1)
    go.wait()
    c0 = _cpu()
    got = 0
    pop_many = ring.pop_many
    last = None
    while got < n:
        recs = pop_many(batch)
        if recs:
            got += len(recs)
            last = recs[-1]
        elif use_bell:
            ring.wait(1.0)
    out.send((time.monotonic(), _cpu() - c0, got, len(last)))


def _cons_queue(q, n, batch, per_record, go, out):
    _pin(1)
    go.wait()
    c0 = _cpu()
    got = 0
    get = q.get
    last = None
    while got < n:
        item = get()
        if per_record:
            got += 1
            last = item
        else:
            got += len(item)
            last = item[-1]
    out.send((time.monotonic(), _cpu() - c0, got, len(last)))


def _cons_pipe(fd, n, batch, go, out):
    _pin(1)
    go.wait()
    c0 = _cpu()
    got = 0
    buf = b""
    unpack = _LEN.unpack_from
    last = None
    while got < n:
        chunk = os.read(fd, 65536)
        buf = buf + chunk if buf else chunk
        off = 0
        end = len(buf)
        while off + 4 <= end:
            ln = unpack(buf, off)[0]
            if off + 4 + ln > end:
                break
            last = buf[off + 4:off + 4 + ln]
            off += 4 + ln
            got += 1
        buf = buf[off:]
    out.send((time.monotonic(), _cpu() - c0, got, len(last)))


# -- one run ----------------------------------------------------------------------
def run_one(method, n, batch, size):
    # distinct objects: pickle would send a record repeated in one batch only once
    recs = [bytes([65 + i % 26]) * size for i in range(batch)]
    go = CTX.Event()
    prx, ptx = CTX.Pipe(duplex=False)
    crx, ctx_ = CTX.Pipe(duplex=False)
    runid = None
    closers = []
    try:
        if method in ("ring spin", "ring doorbell"):
            runid = new_runid()
            ring = Ring.create(runid, "bench", 1 << 20)
            closers.append(ring.close)
            prod = CTX.Process(target=_prod_ring, args=(ring, n, batch, recs, go, ptx))
            cons = CTX.Process(target=_cons_ring,
                               args=(ring, n, batch, method == "ring doorbell", go, ctx_))
        elif method in ("mp.Queue", "mp.Queue/rec"):
            q = CTX.Queue()
            per = method == "mp.Queue/rec"
            prod = CTX.Process(target=_prod_queue_rec if per else _prod_queue,
                               args=(q, n, batch, recs, go, ptx))
            cons = CTX.Process(target=_cons_queue, args=(q, n, batch, per, go, ctx_))
        elif method == "os.pipe":
            r, w = os.pipe()
            closers += [lambda: os.close(r), lambda: os.close(w)]
            prod = CTX.Process(target=_prod_pipe, args=(w, n, batch, recs, go, ptx))
            cons = CTX.Process(target=_cons_pipe, args=(r, n, batch, go, ctx_))
        else:
            raise ValueError(method)
        cons.start()
        prod.start()
        time.sleep(0.1)                         # both pinned and waiting
        go.set()
        t0, pcpu = prx.recv()
        t1, ccpu, got, lastlen = crx.recv()
        prod.join()
        cons.join()
        assert got == n and lastlen == size, (method, got, lastlen)
        res = {"rate": n / (t1 - t0), "pcpu": pcpu / n * 1e6, "ccpu": ccpu / n * 1e6}
        if runid:
            st = ring.stats()
            res["full"] = st["full"]     # push_many calls that came back short
            res["rings"] = st["rings"]   # doorbell write()s
        return res
    finally:
        for c in closers:
            c()
        if runid:
            cleanup_run(runid)


METHODS = ("ring spin", "ring doorbell", "mp.Queue", "os.pipe", "mp.Queue/rec")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args(argv)
    counts = {m: a.records if m != "mp.Queue/rec" else max(1, a.records // 5) for m in METHODS}
    res = {m: [] for m in METHODS}
    load0 = os.getloadavg()[0]
    for r in range(a.rounds):
        order = METHODS[r % len(METHODS):] + METHODS[:r % len(METHODS)]
        for m in order:
            res[m].append(run_one(m, counts[m], a.batch, a.size))
            x = res[m][-1]
            extra = f"  (ring full {x['full']}x, doorbell rung {x['rings']}x)" if "full" in x else ""
            print(f"round {r + 1} {m:14s} {x['rate'] / 1e6:6.2f} M records/s{extra}",
                  file=sys.stderr, flush=True)
    med = {m: {k: statistics.median(x[k] for x in res[m]) for k in ("rate", "pcpu", "ccpu")}
           for m in METHODS}
    ring = med["ring spin"]["rate"]
    bell = med["ring doorbell"]["rate"]
    print(f"\n{a.size}-byte records, batches of {a.batch}, producer core 0 -> consumer core 1, "
          f"median of {a.rounds} (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f})\n")
    print("| method | records/s | min..max | ring spin / this | ring doorbell / this "
          "| producer CPU us/rec | consumer CPU us/rec |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for m in METHODS:
        rates = [x["rate"] for x in res[m]]
        print(f"| {m} | {med[m]['rate'] / 1e6:.2f} M | {min(rates) / 1e6:.2f}..{max(rates) / 1e6:.2f} M"
              f" | {ring / med[m]['rate']:.1f}x | {bell / med[m]['rate']:.1f}x"
              f" | {med[m]['pcpu']:.2f} | {med[m]['ccpu']:.2f} |")
    print("\nCPU us/record counts each process's own time; a spinning consumer's includes its"
          " empty polls.")
    return med


if __name__ == "__main__":
    main()
