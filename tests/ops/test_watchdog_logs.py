"""Heartbeat ages from real stats blocks (a spinning worker vs a live one) and log files
reopened after a rotation."""
import logging
import os
import time

import multiprocess

from framework.master import logs
from framework.shm import StatsBlock
from framework.master.watchdog import heartbeat_age, stuck

CTX = multiprocess.get_context("fork")


def beating(runid, shard, spin_after):
    b = StatsBlock.attach(runid, shard)
    t0 = time.monotonic()
    while True:
        now = time.monotonic()
        if now - t0 > spin_after:
            while True:      # a handler stuck in a loop: no more heartbeats
                pass
        b.update({"pid": os.getpid(), "heartbeat_ms": int(now * 1000)})
        time.sleep(0.05)


def test_spinning_worker_is_found(runid):
    blocks = {k: StatsBlock.create(runid, k, ("pid", "heartbeat_ms")) for k in range(2)}
    procs = [CTX.Process(target=beating, args=(runid, k, 0.3 if k == 1 else 60), daemon=True)
             for k in range(2)]
    started = time.monotonic()
    try:
        for p in procs:
            p.start()
        info = [(k, p.pid, started, True) for k, p in enumerate(procs)]
        assert stuck(info, blocks, 0.5, time.monotonic()) == []
        time.sleep(1.2)
        found = stuck(info, blocks, 0.5, time.monotonic())
        assert [(s, pid) for s, pid, _ in found] == [(1, procs[1].pid)]
        assert 0.5 < found[0][2] < 2.0
        assert stuck(info, blocks, None, time.monotonic()) == []     # --timeout 0: off
        # a restarted worker that has not published yet: its age counts from its start
        snap = blocks[1].snapshot()
        assert heartbeat_age(snap, 12345, time.monotonic() - 0.2, time.monotonic()) < 0.3
    finally:
        for p in procs:
            p.kill()
            p.join(5)
        for b in blocks.values():
            b.close()


def test_log_lines_name_the_shard_and_files_reopen(tmp_path):
    path = tmp_path / "fw.log"
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.setup("info", shard=3, path=str(path))
        logging.getLogger("framework.test").info("first")
        os.rename(path, tmp_path / "fw.log.1")          # logrotate
        logging.getLogger("framework.test").info("lost?")  # still goes to the moved file
        assert logs.reopen() == 1
        logging.getLogger("framework.test").warning("second")
        for h in root.handlers:
            h.flush()
        old = (tmp_path / "fw.log.1").read_text()
        new = path.read_text()
        assert "[shard 3] INFO framework.test: first" in old and "lost?" in old
        assert new.strip().endswith("[shard 3] WARNING framework.test: second")
        assert "first" not in new
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


def kernel_worker(runid, ns, ready, spin_after):
    from framework.master import netns
    from framework.shard.kernelstack import KernelProvider
    from framework.shard.run import serve_shard
    from framework.web import App, RequestHandler
    netns.setns(ns)
    app = App()

    class Spin(RequestHandler):
        def get(self):
            while True:
                pass
    app.add_route("/spin", Spin)
    block = StatsBlock.attach(runid, 0)
    serve_shard(app, KernelProvider("127.0.0.1"), 8080, stats=block, ready=ready)


def test_kernel_loop_heartbeats(lab, runid):
    """An idle kernel-stack shard keeps its heartbeat fresh; a spinning handler lets it
    age."""
    import http.client
    from .conftest import in_netns
    ns = lab.netns()
    blocks = {0: StatsBlock.create(runid, 0, ("pid", "heartbeat_ms"))}
    ready = CTX.Event()
    p = CTX.Process(target=kernel_worker, args=(runid, ns, ready, None), daemon=True)
    started = time.monotonic()
    p.start()
    try:
        assert ready.wait(10)
        time.sleep(1.5)                     # idle: the loop still turns (and publishes)
        info = [(0, p.pid, started, True)]
        assert stuck(info, blocks, 1.2, time.monotonic()) == []
        assert blocks[0].snapshot()["pid"] == p.pid

        def poke():
            c = http.client.HTTPConnection("127.0.0.1", 8080, timeout=0.5)
            try:
                c.request("GET", "/spin")
                c.getresponse()
            except OSError:
                pass
        in_netns(ns, poke)
        time.sleep(1.6)
        found = stuck(info, blocks, 1.2, time.monotonic())
        assert [(s, pid) for s, pid, _ in found] == [(0, p.pid)]
    finally:
        p.kill()
        p.join(5)
        blocks[0].close()
