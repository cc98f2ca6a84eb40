"""framework stats (table from live stats blocks, CPU% by psutil) and framework links
(listing and removing what dead runs left behind)."""
import os
import re
import subprocess
import sys
import time

import multiprocess

from framework.master import netns
from framework.shm import StatsBlock, cleanup_run, new_runid, run_files
from framework.master.stats_cli import find_leftovers
from isolation import run_isolated

CTX = multiprocess.get_context("fork")
NAMES = ("pid", "heartbeat_ms", "port.rx", "port.tx", "port.rx_bytes", "port.tx_bytes",
         "streams.open", "streams.accepted", "tcp.retransmits", "drop.tcp.no_listener")


def fake_supervisor():
    """A live process whose command line says framework (what the cleanup rules check)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                             "framework-test-owner"])


def worker(runid, shard, spin):
    b = StatsBlock.attach(runid, shard)
    b.set("pid", os.getpid())
    t_end = time.monotonic() + 30
    rx = 0
    while time.monotonic() < t_end:
        rx += 1000
        b.update({"heartbeat_ms": int(time.monotonic() * 1000), "port.rx": rx,
                  "port.tx": rx // 2, "port.rx_bytes": rx * 125, "streams.open": 3 + shard,
                  "streams.accepted": rx // 100, "drop.tcp.no_listener": 7})
        if spin:
            t = time.monotonic() + 0.01
            while time.monotonic() < t:
                pass
        else:
            time.sleep(0.01)


def test_stats_once_table():
    owner = fake_supervisor()
    runid = new_runid(owner.pid)
    blocks = {k: StatsBlock.create(runid, k, NAMES) for k in range(2)}
    procs = [CTX.Process(target=worker, args=(runid, k, k == 1), daemon=True) for k in range(2)]
    try:
        for p in procs:
            p.start()
        time.sleep(0.2)
        r = subprocess.run([sys.executable, "-m", "framework.master.stats_cli", "stats", "--pid",
                            str(owner.pid), "--once", "--interval", "1"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].startswith(f"run {runid}")
        head = re.split(r"\s{2,}", lines[1].strip())
        assert head[:5] == ["shard", "pid", "cpu%", "rx pkt/s", "tx pkt/s"]
        rows = {}
        for line in lines[2:5]:
            cells = line.split()
            rows[cells[0]] = dict(zip(["shard", "pid", "cpu", "rx", "tx", "rxmb", "txmb",
                                       "conns", "acc", "retr", "drops", "hb"], cells))
        assert set(rows) == {"0", "1", "all"}
        for k, p in enumerate(procs):
            row = rows[str(k)]
            assert int(row["pid"]) == p.pid
            rx = float(row["rx"])
            assert 20_000 < rx < 110_000, row           # 1000 per ~10 ms
            assert abs(float(row["tx"]) - rx / 2) < rx * 0.1
            assert abs(float(row["rxmb"]) - rx * 125 * 8e-6) < rx * 125 * 8e-6 * 0.1
            assert row["txmb"] == "0.00" and int(row["conns"]) == 3 + k
            assert int(row["drops"]) == 7
            assert float(row["hb"].rstrip("s")) < 1.0
        # the spinning worker vs the sleeping one (the machine may be busy: no absolute bar)
        assert float(rows["1"]["cpu"]) > max(15.0, 3 * float(rows["0"]["cpu"])), rows
        assert int(rows["all"]["conns"]) == 7 and int(rows["all"]["drops"]) == 14
        assert any("tcp.no_listener" in line and "shard 1: 7" in line for line in lines)
        # a wrong pid is a one-line error
        r = subprocess.run([sys.executable, "-m", "framework.master.stats_cli", "stats", "--pid", "1",
                            "--once"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "pid 1" in r.stderr
    finally:
        for p in procs:
            p.kill()
            p.join(5)
        for b in blocks.values():
            b.close()
        owner.kill()
        owner.wait()
        cleanup_run(runid)


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_links_lists_and_cleans_only_dead_runs():
    # isolated: a supervisor starting meanwhile (another test, another run on this
    # machine) would remove the planted dead run first, and --clean could remove the
    # leftovers another test planted
    run_isolated(links_scenario)


def links_scenario():
    owner = fake_supervisor()
    dead = dead_pid()
    made_ns, made_links, runs = [], [], []
    try:
        for pid in (dead, owner.pid):
            short = f"{pid:x}"
            ns, h, s = f"fw-{short}", f"fw{short}h", f"fw{short}s"
            assert not netns.netns_exists(ns) and not netns.link_exists(h)
            netns.add_netns(ns)
            made_ns.append(ns)
            netns.ip("link", "add", h, "type", "veth", "peer", "name", s)
            made_links.append(h)
            netns.ip("link", "set", "dev", h, "alias", f"framework run {pid}")
            netns.ip("link", "set", s, "netns", ns)
            rid = new_runid(pid)
            runs.append(rid)
            StatsBlock.create(rid, 0, ("pid",)).close()
        items = {(k, n.split()[0]): (pid, alive) for k, n, pid, alive in find_leftovers()}
        d, o = f"{dead:x}", f"{owner.pid:x}"
        assert items[("netns", f"fw-{d}")] == (dead, False)
        assert items[("link", f"fw{d}h")] == (dead, False)
        assert items[("shm", runs[0])] == (dead, False)
        assert items[("netns", f"fw-{o}")] == (owner.pid, True)
        assert items[("link", f"fw{o}h")] == (owner.pid, True)
        assert items[("shm", runs[1])] == (owner.pid, True)
        r = subprocess.run([sys.executable, "-m", "framework.master.stats_cli", "links", "--clean"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert f"fw{d}h" in r.stdout and "dead (stale)" in r.stdout and "removed:" in r.stdout
        assert not netns.netns_exists(f"fw-{d}") and not netns.link_exists(f"fw{d}h")
        assert run_files(runs[0]) == []
        # the live run's things are untouched
        assert netns.netns_exists(f"fw-{o}") and netns.link_exists(f"fw{o}h")
        assert run_files(runs[1]) != []
    finally:
        for h in made_links:
            netns.del_link(h)
        for ns in made_ns:
            netns.del_netns(ns)
        for rid in runs:
            cleanup_run(rid)
        owner.kill()
        owner.wait()
