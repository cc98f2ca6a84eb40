"""The ring between two real processes (forked, as the supervisor does)."""
import bisect
import os
import random
import signal
import struct
import time
from array import array

import pytest

from framework.shm import Ring, StatsBlock

from conftest import CTX, child

POOL_SEED = 20261126
POOL = random.Random(POOL_SEED).randbytes(1 << 22)


def plan(seed, n, lo, hi):
    """Record i is POOL[offs[i]: offs[i] + lens[i]]: both sides rebuild the same plan."""
    rng = random.Random(seed)
    span = hi - lo + 1
    lens = [lo + x % span for x in array("I", rng.randbytes(4 * n))]
    offs = [x % (len(POOL) - hi) for x in array("I", rng.randbytes(4 * n))]
    return lens, offs


def produce(ring, lens, offs, batch, starts=None):
    """Push all records in batches; spins politely while the ring is full.

    ``starts``: a set that collects the data offset of every frame written.
    """
    pool = POOL
    i = 0
    stop = len(lens)
    cap = ring.capacity
    while i < stop:
        j = min(stop, i + batch)
        recs = [pool[o:o + ln] for o, ln in zip(offs[i:j], lens[i:j])]
        k = 0
        while k < len(recs):
            if starts is not None:
                head = ring.stats()["head"]
            t = ring.push_many(recs[k:] if k else recs)
            if not t:
                os.sched_yield()
            elif starts is not None:
                starts.add(head % cap)
            k += t
        i = j


def consume(ring, lens, offs, conn, batch=64, use_wait=True):
    """Pop everything, compare with the plan, report (count, first bad index)."""
    pool = POOL
    i = 0
    n = len(lens)
    bad = -1
    while i < n:
        recs = ring.pop_many(batch)
        if not recs:
            if use_wait:
                ring.wait(1.0)
            continue
        for r in recs:
            o = offs[i]
            if bad < 0 and r != pool[o:o + lens[i]]:
                bad = i
            i += 1
    conn.send((i, bad, ring.pop_many(1)))


def _consumer_main(ring, seed, n, lo, hi, conn):
    lens, offs = plan(seed, n, lo, hi)
    consume(ring, lens, offs, conn)


@pytest.mark.timeout(60)
def test_million_random_records_intact_and_in_order(runid):
    n, lo, hi = 1_000_000, 1, 2048
    ring = Ring.create(runid, "million", 1 << 18)        # 256 KiB: wraps ~4,000 times
    rx, tx = CTX.Pipe(duplex=False)
    lens, offs = plan(7, n, lo, hi)
    t0 = time.monotonic()
    with child(_consumer_main, ring, 7, n, lo, hi, tx) as p:
        produce(ring, lens, offs, batch=32)
        assert rx.poll(30), "consumer did not finish"
        count, bad, extra = rx.recv()
        p.join(5)
        assert p.exitcode == 0
    dt = time.monotonic() - t0
    assert count == n and bad == -1 and extra == []
    st = ring.stats()
    assert st["records_in"] == st["records_out"] == n
    assert st["head"] == st["tail"] == st["release"]
    frames = (st["head"] - sum(lens) - 4 * n) // 4        # each frame adds a 4-byte count
    assert frames * 4 == st["head"] - sum(lens) - 4 * n and n / 32 <= frames < n
    print(f"1M records, {st['head'] / 1e6:.0f} MB in {dt:.2f} s, {st['rings']} doorbell rings")
    ring.close()


@pytest.mark.timeout(60)
def test_wraparound_at_every_offset_between_processes(runid):
    cap = 256
    n, lo, hi = 150_000, 0, cap - 8
    ring = Ring.create(runid, "wrapx", cap)
    rx, tx = CTX.Pipe(duplex=False)
    lens, offs = plan(11, n, lo, hi)
    starts = set()
    with child(_consumer_main, ring, 11, n, lo, hi, tx) as p:
        produce(ring, lens, offs, batch=8, starts=starts)
        assert rx.poll(30)
        count, bad, extra = rx.recv()
        p.join(5)
    assert (count, bad, extra) == (n, -1, [])
    assert starts == set(range(cap))                       # frames began at every offset
    assert ring.stats()["full"] > 0                        # the producer really hit a full ring
    ring.close()


def _seq_consumer(runid, purpose, conn, attach):
    """Pops records carrying their sequence number; publishes progress in a stats block."""
    ring = Ring.attach(runid, purpose) if attach else _seq_consumer.ring
    stats = StatsBlock.attach(runid, 0)
    expect = None
    conn.send("ready")
    while True:
        recs = ring.pop_many(16)
        if not recs:
            ring.wait(0.5)
            continue
        for r in recs:
            seq = struct.unpack_from("<Q", r)[0]
            if expect is None:
                stats.set("first", seq)
            elif seq != expect:
                stats.set("bad", 1)
            expect = seq + 1
        stats.set("last", expect - 1)
        stats.add("seen", len(recs))


@pytest.mark.timeout(60)
def test_consumer_killed_and_restarted_continues_where_ring_left_off(runid):
    n = 200_000
    ring = Ring.create(runid, "restart", 1 << 16)
    stats = StatsBlock.create(runid, 0, ["first", "last", "seen", "bad"])
    rng = random.Random(5)
    recs = [struct.pack("<Q", i) + POOL[i:i + rng.randrange(0, 300)] for i in range(n)]
    frames = []                                            # (position, first record) per push

    def push(i):
        head = ring.stats()["head"]
        k = ring.push_many(recs[i:i + rng.randrange(1, 65)])
        if k:
            frames.append((head, i))
        return k

    rx, tx = CTX.Pipe(duplex=False)
    _seq_consumer.ring = ring
    i = 0
    with child(_seq_consumer, runid, "restart", tx, False) as c1:
        assert rx.recv() == "ready"
        # keep the ring busy until the consumer is well into the stream
        while stats.get("seen") < 50_000:
            i += push(i)
        while ring.free() > 1000:                           # kill it with work in the ring
            i += push(i)
        os.kill(c1.pid, signal.SIGKILL)
        c1.join(5)
        assert c1.exitcode == -signal.SIGKILL
    last1 = stats.get("last")
    assert stats.get("first") == 0 and stats.get("bad") == 0
    # Which record does the ring say comes next? tail is a frame start, the address
    # of length[j] inside a frame (j records of it taken), or the end of the data.
    st = ring.stats()
    tail = st["tail"]
    f = bisect.bisect_right([p for p, _ in frames], tail) - 1
    pos, first = frames[f]
    consumed = i if tail == st["head"] else first + (0 if tail == pos else (tail - pos - 4) // 4)
    assert last1 + 1 <= consumed <= last1 + 1 + 16         # at most one batch popped but not reported
    assert not ring.empty()
    stats.update({"first": 0, "last": 0, "seen": 0})
    with child(_seq_consumer, runid, "restart", tx, True) as c2:   # attaches by name
        assert rx.recv() == "ready"
        while i < n:
            k = push(i)
            if not k:
                os.sched_yield()
            i += k
        deadline = time.monotonic() + 20
        while stats.get("last") != n - 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert stats.get("first") == consumed                  # exactly where the ring left off
    assert stats.get("last") == n - 1
    assert stats.get("seen") == n - consumed
    assert stats.get("bad") == 0
    assert ring.empty()
    stats.close()
    ring.close()
