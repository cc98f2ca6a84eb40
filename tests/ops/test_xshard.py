"""Cross-shard calls between two real processes over shm rings."""
import os
import signal
import time

import multiprocess
import pytest

from framework.shard.xshard import Mesh

from . import xshard_funcs as F

CTX = multiprocess.get_context("fork")


class Run:
    """Plays the supervisor: owns the mesh, forks shards, marks them started/dead."""

    def __init__(self, runid, n=2):
        self.mesh = Mesh.create(runid, n, capacity=1 << 16)
        self.procs = {}

    def start(self, k, scenario=None, timeout=10.0, args=()):
        old = self.procs.get(k)
        if old is not None:   # one consumer per ring: the previous one must be gone
            old.join(10)
            assert not old.is_alive()
        a, b = CTX.Pipe()
        p = CTX.Process(target=F.shard_main, args=(self.mesh, k, scenario, b, timeout, args),
                        daemon=True)
        p.start()
        self.mesh.mark_started(k, p.pid)
        self.procs[k] = p
        return a

    def kill(self, k):
        p = self.procs.pop(k)
        os.kill(p.pid, signal.SIGKILL)
        p.join(5)
        self.mesh.mark_dead(k)

    def close(self):
        for p in self.procs.values():
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
            p.join(5)
        self.mesh.close()
        self.mesh.unlink()


@pytest.fixture
def run(runid):
    r = Run(runid)
    try:
        yield r
    finally:
        r.close()


def result(conn, timeout=20):
    assert conn.poll(timeout), "shard 0 did not report"
    return conn.recv()


def test_thousands_of_calls_are_batched(run):
    run.start(1)
    conn = run.start(0, F.many_puts, args=(3000,))
    status, (owners, vals), counters = result(conn)
    assert status == "ok"
    assert owners == 3000
    assert vals == list(range(0, 3000, 97))
    # batched per loop turn: far fewer ring pushes than calls
    assert counters["xshard.calls_out"] == 3000 + len(vals)
    assert counters["xshard.batches"] < counters["xshard.calls_out"] / 5, counters


def test_broadcast_map_reduce_local_and_async(run):
    run.start(1)
    status, (ids, total, local, doubled), _ = result(run.start(0, F.collectives))
    assert status == "ok"
    assert ids == [0, 1] and total == 30 and local == 0 and doubled == 42


def test_errors_come_back(run):
    run.start(1)
    status, out, _ = result(run.start(0, F.errors))
    assert status == "ok"
    assert out == [("KeyError", "nope"), ("RemoteError", True), ("TypeError", True)]


def test_dead_shard_fails_the_call_instead_of_hanging(run, tmp_path):
    run.start(1)
    mark = tmp_path / "in_flight"
    conn = run.start(0, F.call_stuck, args=(str(mark),))
    deadline = time.monotonic() + 10
    while not mark.exists():     # the call is in flight: shard 1 spins inside it
        assert time.monotonic() < deadline, "the call never reached shard 1"
        time.sleep(0.005)
    t_kill = time.monotonic()
    run.kill(1)
    name, waited, msg = result(conn)[1]
    assert name == "ShardUnavailable" and "shard 1 died" in msg, msg
    assert waited < 5        # long before the 10 s timeout
    # while it is dead, calls fail at once ...
    status, (name, msg), _ = result(run.start(0, F.call_then_report))
    assert name == "ShardUnavailable" and "not running" in msg
    # ... and after the restart they are answered again
    run.start(1)
    status, got, _ = result(run.start(0, F.call_then_report))
    assert got == ("ok", 1)
    assert time.monotonic() - t_kill < 10


def test_stuck_shard_times_out(run):
    run.start(1)
    t0 = time.monotonic()
    name, waited, msg = result(run.start(0, F.call_stuck, timeout=0.5))[1]
    assert name == "ShardTimeout" and "within 0.5 s" in msg
    assert 0.45 < waited < 3
