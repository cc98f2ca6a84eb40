"""Doorbells: a sleeping consumer is woken; a busy pair makes no syscalls; no lost wakeups."""
import os
import select
import time

import pytest

from framework.shm import Doorbell, Ring

from conftest import CTX, child


def _sleeper(ring, conn):
    conn.send("ready")
    t0 = time.monotonic()
    got = ring.wait(10)
    conn.send((got, time.monotonic(), time.monotonic() - t0, ring.pop_many()))


@pytest.mark.timeout(30)
def test_doorbell_wakes_a_sleeping_consumer(runid):
    ring = Ring.create(runid, "wake", 4096)
    rx, tx = CTX.Pipe(duplex=False)
    with child(_sleeper, ring, tx) as p:
        assert rx.recv() == "ready"
        deadline = time.monotonic() + 5
        while not ring.bell.sleeping:                      # it announced sleep ...
            assert time.monotonic() < deadline
            time.sleep(0.001)
        time.sleep(0.2)                                    # ... and is blocked in poll()
        assert not rx.poll(0)
        t_push = time.monotonic()
        assert ring.push(b"wake up")
        assert rx.poll(5)
        got, t_wake, slept, recs = rx.recv()
        p.join(5)
    assert got is True and recs == [b"wake up"]
    assert slept >= 0.2                                    # it really slept
    assert t_wake - t_push < 0.5                           # and the bell, not the 10 s timeout, woke it
    assert ring.stats()["rings"] == 1
    assert not ring.bell.sleeping                          # awake again after the wait
    ring.close()


def _spinner(ring, n, conn):
    got = 0
    while got < n:
        got += len(ring.pop_many(64))                      # never announces sleep
    conn.send(got)


@pytest.mark.timeout(30)
def test_busy_pair_never_rings(runid):
    ring = Ring.create(runid, "busy", 1 << 16)
    rx, tx = CTX.Pipe(duplex=False)
    n = 200_000
    rec = b"x" * 64
    batch = [rec] * 32
    with child(_spinner, ring, n, tx):
        sent = 0
        while sent < n:
            k = ring.push_many(batch[:min(32, n - sent)])
            sent += k
            if not k:
                os.sched_yield()
        assert rx.poll(10) and rx.recv() == n
    st = ring.stats()
    assert st["records_out"] == n
    assert st["rings"] == 0                                # not one write() on the doorbell
    assert ring.bell.episodes == 0
    ring.close()


def _ponger(a, b, rounds, conn):
    timeouts = 0
    for i in range(rounds):
        while True:
            r = a.pop()
            if r is not None:
                break
            if not a.wait(2):
                timeouts += 1
        assert r == i.to_bytes(4, "little")
        b.push(r)
    conn.send((timeouts, a.bell.episodes))


@pytest.mark.timeout(60)
def test_ping_pong_sleeping_both_ways_loses_no_wakeup(runid):
    # Every round both sides go to sleep and must be woken by the other's push.
    # A lost wakeup would cost a 2 s timeout: counted, and the test time shows it.
    rounds = 3000
    a = Ring.create(runid, "ping", 4096)
    b = Ring.create(runid, "pong", 4096)
    rx, tx = CTX.Pipe(duplex=False)
    timeouts = 0
    t0 = time.monotonic()
    with child(_ponger, a, b, rounds, tx):
        for i in range(rounds):
            a.push(i.to_bytes(4, "little"))
            while True:
                r = b.pop()
                if r is not None:
                    break
                if not b.wait(2):
                    timeouts += 1
            assert r == i.to_bytes(4, "little")
        assert rx.poll(10)
        child_timeouts, child_sleeps = rx.recv()
    dt = time.monotonic() - t0
    assert timeouts == 0 and child_timeouts == 0
    assert child_sleeps > rounds // 2                      # the consumer really slept, mostly
    assert a.stats()["rings"] <= a.bell.episodes           # at most one ring per sleep
    assert dt < 20
    print(f"{rounds} round trips with sleeps in {dt:.2f} s ({dt / rounds * 1e6:.0f} us each), "
          f"{a.stats()['rings']} + {b.stats()['rings']} rings")
    a.close()
    b.close()


def _multi_waiter(bell, rings, conn):
    conn.send("ready")
    for _ in range(2):
        ok = bell.wait(10, rings)
        conn.send((ok, [r.pop_many() for r in rings]))


@pytest.mark.timeout(30)
def test_one_doorbell_shared_by_several_rings(runid):
    bell = Doorbell.create(runid, "shared.bell")
    r1 = Ring.create(runid, "in.1", 4096, bell)
    r2 = Ring.create(runid, "in.2", 4096, bell)
    rx, tx = CTX.Pipe(duplex=False)
    with child(_multi_waiter, bell, [r1, r2], tx):
        assert rx.recv() == "ready"
        for ring, expect in ((r2, [[], [b"two"]]), (r1, [[b"one"], []])):
            deadline = time.monotonic() + 5
            while not bell.sleeping:
                assert time.monotonic() < deadline
                time.sleep(0.001)
            ring.push(expect[0][0] if expect[0] else expect[1][0])
            assert rx.poll(5)
            assert rx.recv() == (True, expect)
    # an attached ring finds the shared doorbell by name
    r3 = Ring.attach(runid, "in.2")
    assert r3.bell.purpose == "shared.bell"
    r3.close()
    r1.close()
    r2.close()
    bell.close()


def test_fileno_is_pollable_and_rung_once_per_sleep(runid):
    ring = Ring.create(runid, "fd", 4096)
    bell = ring.bell
    fd = bell.fileno()

    def readable():
        return bool(select.select([fd], [], [], 0)[0])

    ring.push(b"a")                                        # consumer awake: no ring
    assert not readable() and ring.stats()["rings"] == 0
    ring.pop()
    bell.prepare_sleep()
    assert ring.empty()
    ring.push(b"b")
    ring.push(b"c")                                        # second push of the episode: no 2nd ring
    assert readable() and ring.stats()["rings"] == 1
    bell.drain()
    assert not readable()
    bell.awake()
    ring.push(b"d")
    assert not readable() and ring.stats()["rings"] == 1
    assert ring.pop_many() == [b"b", b"c", b"d"]
    assert ring.wait(0.05) is False                        # timeout with nothing to do
    ring.close()


@pytest.mark.timeout(30)
def test_consumer_killed_asleep_then_successor_is_woken(runid):
    # The state a consumer leaves when it is killed asleep after the producer rang
    # for its sleep: the flag still says "asleep", and the producer has already
    # rung for that very sleep. (Made here in one process, so it is exact.)
    ring = Ring.create(runid, "dead", 4096)
    ring.bell.prepare_sleep()                              # consumer: going to sleep ...
    assert ring.push(b"first") and ring.stats()["rings"] == 1   # producer rings for it
    ring.bell.drain()                                      # it woke and took the ring ...
    assert ring.pop() == b"first"
    assert ring.bell.sleeping                              # ... and died before awake()
    rx, tx = CTX.Pipe(duplex=False)
    successor = Ring.attach(runid, "dead")
    with child(_sleeper, successor, tx):                  # its successor
        assert rx.recv() == "ready"
        time.sleep(0.2)                                    # in poll()
        t_push = time.monotonic()
        ring.push(b"second")
        assert rx.poll(5)
        got, t_wake, slept, recs = rx.recv()
    successor.close()
    rx.close()
    tx.close()
    assert got and recs == [b"second"]
    assert t_wake - t_push < 0.5                           # rung, not the 10 s timeout
    assert ring.stats()["rings"] == 2
    ring.close()
