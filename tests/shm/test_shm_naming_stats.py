"""Segment names, run cleanup, stale-run cleanup, stats blocks across processes."""
import os
import time

import pytest

from framework.shm import (Doorbell, Ring, StatsBlock, cleanup_run, cleanup_stale, list_runs,
                           new_runid, run_files, runid_pid, shm_path)

from conftest import CTX, child
from isolation import run_isolated


def test_runid_encodes_the_pid():
    rid = new_runid()
    assert runid_pid(rid) == os.getpid()
    assert new_runid() != rid
    assert runid_pid(new_runid(pid=42)) == 42
    with pytest.raises(ValueError):
        runid_pid("abc")


def test_every_segment_of_a_run_is_named_from_the_runid_and_removed(runid):
    other = new_runid()
    try:
        ring = Ring.create(runid, "fwd.0.1", 4096)
        bell = Doorbell.create(runid, "bell.1")
        ring2 = Ring.create(runid, "fwd.1.0", 4096, bell)
        stats = StatsBlock.create(runid, 3, ["a"])
        mine = Ring.create(other, "fwd.0.1", 4096)
        files = [os.path.basename(p) for p in run_files(runid)]
        assert files == sorted([
            f"framework.{runid}.fwd.0.1", f"framework.{runid}.fwd.0.1.bell",
            f"framework.{runid}.fwd.0.1.bell.fifo", f"framework.{runid}.fwd.1.0",
            f"framework.{runid}.bell.1", f"framework.{runid}.bell.1.fifo",
            f"framework.{runid}.stats.3"])
        assert all(os.path.exists(shm_path(runid, p)) for p in ("fwd.0.1", "stats.3"))
        assert runid in list_runs() and other in list_runs()
        for obj in (ring, ring2, bell, stats):
            obj.close()
        removed = cleanup_run(runid)
        assert len(removed) == 7
        assert run_files(runid) == []
        assert not [f for f in os.listdir("/dev/shm") if runid in f]
        assert len(run_files(other)) == 3                  # another run is untouched
        # names are gone but a mapping still works until closed
        assert mine.push(b"still here") and mine.pop() == b"still here"
        mine.close()
    finally:
        cleanup_run(other)
    assert run_files(other) == []


# The two cleanup_stale tests run isolated (tests/isolation.py): a supervisor starting
# meanwhile (another test, another run on this machine) removes stale runs too, so the
# planted dead run could be gone before this test's cleanup_stale() finds it.
def test_cleanup_stale_removes_runs_of_dead_supervisors_only():
    run_isolated(dead_supervisors_scenario)


def dead_supervisors_scenario():
    runid = new_runid()
    p = CTX.Process(target=lambda: None)
    p.start()
    p.join()
    dead = new_runid(pid=p.pid)                            # a supervisor that is gone
    try:
        Ring.create(dead, "fwd.0.1", 4096).close()
        StatsBlock.create(dead, 0, ["x"]).close()
        Ring.create(runid, "live", 4096).close()           # ours: pid alive
        removed = cleanup_stale()
        assert dead in removed and len(removed[dead]) == 4
        assert runid not in removed
        assert run_files(dead) == []
        assert len(run_files(runid)) == 3
    finally:
        cleanup_run(dead)
        cleanup_run(runid)


def _counter_writer(runid, n, conn):
    st = StatsBlock.attach(runid, 1)
    conn.send("go")
    for i in range(n):
        st.add("rx", 3)
        st.set("last", i)
    st.update({"done": 1})
    st.close()


@pytest.mark.timeout(30)
def test_stats_block_written_by_one_process_read_by_another(runid):
    names = ["rx", "last", "done", "port.tx_drops"]
    st = StatsBlock.create(runid, 1, names)
    assert st.snapshot() == dict.fromkeys(names, 0)
    n = 200_000
    rx, tx = CTX.Pipe(duplex=False)
    reader = StatsBlock.attach(runid, 1)                   # finds the names in the block
    assert reader.names == tuple(names)
    seen_back = 0
    with child(_counter_writer, runid, n, tx) as p:
        assert rx.recv() == "go"
        prev = 0
        while not reader.get("done"):
            v = reader.snapshot()["rx"]
            if v < prev:                                   # a torn or zero-filled read
                seen_back += 1
            prev = v
        p.join(5)
        assert p.exitcode == 0
    assert seen_back == 0
    snap = reader.snapshot()
    assert snap == {"rx": 3 * n, "last": n - 1, "done": 1, "port.tx_drops": 0}
    assert list(StatsBlock.attach_all(runid)) == [1]
    st.set("port.tx_drops", 2 ** 64 + 5)                   # wraps like a u64 counter
    assert reader.get("port.tx_drops") == 5
    with pytest.raises(KeyError):
        st.add("nope")
    with pytest.raises(ValueError):
        StatsBlock.create(runid, 2, ["a", "a"])
    for b in StatsBlock.attach_all(runid).values():
        b.close()
    reader.close()
    st.close()


def test_cleanup_stale_sees_through_pid_reuse():
    run_isolated(pid_reuse_scenario)


def pid_reuse_scenario():
    # A run id whose pid is alive but belongs to a process younger than the
    # run's files (the supervisor died, its pid went to someone else).
    with child(time.sleep, 30) as p:
        reused = new_runid(pid=os.getpid())                # pid alive, but ...
        young = new_runid(pid=p.pid)
        try:
            Ring.create(reused, "x", 4096, doorbell=None).close()
            old = time.time() - 3600
            for f in run_files(reused):
                os.utime(f, (old, old))                    # ... files older than the process
            assert reused in cleanup_stale()
            assert run_files(reused) == []
            Ring.create(young, "y", 4096, doorbell=None).close()   # made after p started: live
            assert young not in cleanup_stale()
            assert len(run_files(young)) == 1
        finally:
            cleanup_run(reused)
            cleanup_run(young)


def test_each_object_can_remove_its_own_names(runid):
    ring = Ring.create(runid, "own", 4096)                 # + its doorbell and FIFO
    st = StatsBlock.create(runid, 0, ["a"])
    assert len(run_files(runid)) == 4
    ring.unlink()
    st.unlink()
    assert run_files(runid) == []
    assert ring.push(b"x") and ring.pop() == b"x"          # mappings outlive the names
    st.add("a")
    assert st.get("a") == 1
    ring.close()
    st.close()
    with pytest.raises(Exception):
        Ring.attach(runid, "own")
