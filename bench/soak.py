"""Soak: hours of mixed traffic in minutes, and what a long run would leak.

    python -m bench.soak --minutes 10          # the committed run (bench/results/soak-*)
    python -m bench.soak --minutes 0.2 --scale 0.1 --warmup 2 --drain 5 --no-save

One ``framework serve bench.soak_app:app --cores 2`` on the user stack (AF_PACKET, its
own default link inside a client namespace, bench/lab.py) gets five wrk processes at
once (bench/soak.lua), one per traffic kind, each paced (a steady rate keeps the TIME_WAIT
population, and so the RSS, steady): keep-alive GET /, Connection: close GET / (most of
the connections: ~2,500-3,000 a second here, 1,700 needed for 1,000,000 in 10 min),
pipelined GET / (depth 16), 1 MiB uploads and 1 MiB downloads. One request in 100 is
malformed; it must get a 4xx (the server then closes that connection) and disturb no one
else. Every response's status and body length is checked.

Sampled every few seconds: each worker's RSS and the shards' stats blocks (framework/shm,
``framework stats``). After the load: wait (``--drain``) until the connections are gone,
then compare with the baseline taken before the load: descriptors of every worker
(/proc/<pid>/fd), each shard's timers (the stack's timer heap and TIME_WAIT queue,
asyncio's scheduled callbacks; bench/soak_app.py's /_soak route) and connections by
state, and after the stop: /dev/shm entries of the run. The report (Markdown + JSON in
bench/results/soak-<date>) says pass or fail for each.

``--tracemalloc``: the workers trace allocations (SOAK_TRACEMALLOC=1) and the report
lists the top growths between the end of warm-up and the end of the load.
"""
import argparse
import datetime
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import psutil

from bench import apt
from bench.lab import ROOT, Lab, Server, _child_setup

HERE = os.path.dirname(os.path.abspath(__file__))
SOAK_LUA = os.path.join(HERE, "soak.lua")
MALFORMED_EVERY = 100
TIME_WAIT = 60.0            # the stack's TIME_WAIT length (framework/net/tcp/config.py)
RSS_LIMIT = 0.05            # growth from the end of warm-up to the end of the load

# kind: (connections at --scale 1, ms each connection waits between requests/batches)
KINDS = {
    "keepalive": (16, 10),
    "close": (40, 10),
    "pipelined": (4, 20),
    "upload": (2, 100),
    "download": (2, 100),
}
PIPELINE_DEPTH = 16


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class SoakServer(Server):
    """framework serve with N workers (lab.Server runs one, pinned to core 0)."""

    def __init__(self, lab, workers=2, env=None):
        super().__init__(lab, "user-afpacket", app="bench.soak_app:app", rps=False)
        self.nworkers = workers
        self.env = env or {}

    def start(self):
        env = dict(os.environ, PYTHONPATH=ROOT, **self.env)
        cmd = [sys.executable, "-m", "framework", "serve", self.app, "--cores",
               str(self.nworkers), "--stack", "user", "--port-type", "afpacket",
               "--link-subnet", self.subnet, "--log-level", "warning"]
        ns = self.lab.client_ns
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=self.errlog, text=True,
                                     preexec_fn=lambda: _child_setup(ns))
        self.url = f"http://{self.ip}:{self.port}/"
        self._wait_banner()
        short = f"{self.proc.pid:x}"
        self.c_if = f"fw{short}h"
        self.server_ns, self.server_if = f"fw-{short}", f"fw{short}s"

    def workers(self):
        """{shard: psutil.Process} of the live workers."""
        deadline = time.monotonic() + 10
        while True:
            out = {}
            for p in psutil.Process(self.proc.pid).children():
                try:
                    m = re.match(r"fw-shard-(\d+)", p.name())
                    if m and p.status() != psutil.STATUS_ZOMBIE:
                        out[int(m.group(1))] = p
                except psutil.Error:
                    pass
            if len(out) == self.nworkers or time.monotonic() > deadline:
                return out
            time.sleep(0.1)

    def runid(self):
        names = glob.glob(f"/dev/shm/framework.{self.proc.pid}-*")
        ids = {os.path.basename(n).split(".")[1] for n in names}
        if len(ids) != 1:
            raise RuntimeError(f"run id of pid {self.proc.pid}: {sorted(ids)}")
        return ids.pop()


# ---- measurements ---------------------------------------------------------------------------

def fd_targets(pid):
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return sorted(out)


def _kind_of(target):
    """An fd's target without the parts that differ between two equal descriptors."""
    return re.sub(r"\[\d+\]", "[]", target)


def stats_totals(blocks):
    """Per shard: the counters the soak watches."""
    out = {}
    for shard, b in blocks.items():
        s = b.snapshot()
        out[shard] = {k: v for k, v in s.items()
                      if k.startswith("state.") or k in ("streams.open", "streams.accepted",
                                                         "pid", "tcp.rx_rst", "loop.turns")}
    return out


def diag(lab, server, snapshot=None):
    url = server.url + "_soak" + (f"?snapshot={snapshot}" if snapshot else "")
    r = lab.run_client(["curl", "-s", "-m", "20", url], timeout=40)
    try:
        return {d["shard"]: d for d in json.loads(r.stdout)["shards"]}
    except (ValueError, KeyError):
        raise RuntimeError(f"/_soak failed: {r.stdout[-300:]} {r.stderr[-300:]}")


DIAG_COUNTS = ("tcp_timer_heap", "asyncio_scheduled", "tasks", "tcp_time_wait",
               "tcp_time_wait_queue", "tcp_pending", "tcp_deferred")


def live_flows(d):
    return d.get("tcp_flows", 0) - d.get("tcp_time_wait", 0)


# ---- the load --------------------------------------------------------------------------------

def wrk_cmd(lab, server, kind, seconds, scale):
    conns, delay = KINDS[kind]
    conns = max(1, round(conns * scale))
    url = server.url + {"download": "blob", "upload": "upload"}.get(kind, "")
    return conns, ["ip", "netns", "exec", lab.client_ns, "wrk", "-t1", f"-c{conns}",
                   f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", SOAK_LUA, url,
                   "--", kind, str(MALFORMED_EVERY), str(delay)]


def parse_soak(out):
    m = re.search(r"^SOAK (.*)$", out, re.M)
    if not m:
        return None
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def account(kind, r, conns):
    """Per kind: completed, expected 4xx, unexpected errors (and why)."""
    if r is None:
        return {"unexpected": 1, "why": ["no SOAK line from wrk"]}
    depth = PIPELINE_DEPTH if kind == "pipelined" else 1
    why = []
    sock = r["connect"] + r["read"] + r["write"] + r["timeout"]
    if sock:
        why.append(f"socket errors {sock}")
    if r["other"]:
        why.append(f"{r['other']} responses neither 2xx nor 4xx")
    if r["bad_body"]:
        why.append(f"{r['bad_body']} 2xx with a wrong body length")
    extra_4xx = max(0, r["s4xx"] - r["malformed"])
    if extra_4xx:
        why.append(f"{extra_4xx} 4xx beyond the malformed requests")
    # at the end of the run wrk drops what is in flight: at most one batch per connection
    unanswered = r["sent"] - r["ok"] - r["bad_body"] - r["s4xx"] - r["other"]
    lost = max(0, unanswered - conns * depth - depth)   # + the one request() wrk's check makes
    if lost:
        why.append(f"{lost} requests unanswered beyond those in flight at the end")
    missing_4xx = max(0, r["malformed"] - r["s4xx"] - conns)
    if missing_4xx:
        why.append(f"{missing_4xx} malformed requests without a 4xx")
    return {"sent": r["sent"], "completed": r["ok"], "malformed": r["malformed"],
            "expected_4xx": min(r["s4xx"], r["malformed"]), "in_flight_at_end": unanswered,
            "socket_errors": sock,
            "unexpected": sock + r["other"] + r["bad_body"] + extra_4xx + lost + missing_4xx,
            "why": why}


# ---- the run ---------------------------------------------------------------------------------

def run(args):
    res = {"started": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M:%S UTC"),
           "minutes": args.minutes, "scale": args.scale, "workers": args.workers,
           "loadavg_start": os.getloadavg(), "samples": [], "notes": [],
           "want_connections": want_connections(args),
           "drain_for_time_wait": args.drain >= TIME_WAIT + 5}
    seconds = args.minutes * 60
    warmup = min(args.warmup, seconds / 2)
    tmp = tempfile.mkdtemp(prefix="fwsoak-")
    lab = Lab(tmp)
    env = {"SOAK_TRACEMALLOC": "1"} if args.tracemalloc else {}
    server = SoakServer(lab, args.workers, env)
    lab.servers.append(server)
    wrks = {}
    try:
        server.start()
        workers = server.workers()
        if len(workers) != args.workers:
            raise RuntimeError(f"{len(workers)} workers of {args.workers}")
        runid = server.runid()
        res["runid"] = runid
        from framework.shm.stats import StatsBlock
        blocks = StatsBlock.attach_all(runid)
        pids0 = {k: p.pid for k, p in workers.items()}
        time.sleep(1.0)
        fds0 = {k: fd_targets(p.pid) for k, p in workers.items()}
        diag0 = diag(lab, server)
        stats0 = stats_totals(blocks)
        res["baseline"] = {"fds": {k: len(v) for k, v in fds0.items()}, "diag": diag0,
                           "stats": stats0}
        log(f"{args.workers} workers {pids0}, run {runid}; load for {seconds:.0f} s "
            f"(warm-up {warmup:.0f} s)")
        t0 = time.monotonic()
        for kind in KINDS:
            conns, cmd = wrk_cmd(lab, server, kind, seconds, args.scale)
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 preexec_fn=lambda: _child_setup(None))
            wrks[kind] = (conns, p)
        warm_snap = None
        next_sample = t0
        while any(p.poll() is None for _, p in wrks.values()):
            now = time.monotonic()
            if now >= next_sample:
                next_sample += args.sample
                s = {"t": round(now - t0, 1), "rss": {}, "accepted": 0, "open": 0}
                for k, p in workers.items():
                    try:
                        s["rss"][k] = p.memory_info().rss
                    except psutil.Error:
                        s["rss"][k] = None
                for k, st in stats_totals(blocks).items():
                    s["accepted"] += st["streams.accepted"] - stats0[k]["streams.accepted"]
                    s["open"] += st["streams.open"]
                    s.setdefault("time_wait", 0)
                    s["time_wait"] += st.get("state.TIME_WAIT", 0)
                res["samples"].append(s)
                if args.tracemalloc and warm_snap is None and now - t0 >= warmup:
                    warm_snap = os.path.join(tmp, "warm")
                    diag(lab, server, warm_snap)
                if len(res["samples"]) % max(1, round(60 / args.sample)) == 1:
                    log(f"t={s['t']:.0f}s accepted {s['accepted']:,} open {s['open']} "
                        f"rss {[round(v / 2**20, 1) for v in s['rss'].values() if v]} MiB")
            time.sleep(min(0.5, max(0.0, next_sample - time.monotonic())))
        res["load_seconds"] = time.monotonic() - t0
        kinds = {}
        for kind, (conns, p) in wrks.items():
            out = p.communicate()[0]
            r = parse_soak(out)
            kinds[kind] = {"connections": conns, **account(kind, r, conns), "raw": r}
            if r is None:
                kinds[kind]["wrk_output"] = out[-1500:]
        res["kinds"] = kinds
        end_snap = None
        if args.tracemalloc:
            end_snap = os.path.join(tmp, "end")
            diag(lab, server, end_snap)
        # the load stopped: wait until its connections (and, given time, TIME_WAIT) are gone
        deadline = time.monotonic() + args.drain
        while True:
            d = diag(lab, server)
            done_live = all(live_flows(d[k]) <= live_flows(diag0[k]) for k in d)
            done_tw = all(d[k].get("tcp_time_wait", 0) <= diag0[k].get("tcp_time_wait", 0)
                          for k in d)
            if (done_live and done_tw) or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        res["drain_seconds"] = time.monotonic() - t0 - res["load_seconds"]
        time.sleep(1.0)      # a turn's worth for the last timers to fire
        diag1 = diag(lab, server)
        stats1 = stats_totals(blocks)
        workers1 = server.workers()
        fds1 = {k: fd_targets(p.pid) for k, p in workers1.items()}
        res["end"] = {"fds": {k: len(v) for k, v in fds1.items()}, "diag": diag1,
                      "stats": stats1}
        res["worker_restarts"] = sum(1 for k in pids0 if workers1.get(k) is None
                                     or workers1[k].pid != pids0[k])
        res["connections"] = sum(stats1[k]["streams.accepted"] - stats0[k]["streams.accepted"]
                                 for k in stats1) - 1    # the last /_soak's own
        res["fd_diff"] = {}
        for k in fds0:
            a = [_kind_of(x) for x in fds0[k]]
            b = [_kind_of(x) for x in fds1.get(k, [])]
            extra = list(b)
            for x in a:
                if x in extra:
                    extra.remove(x)
            res["fd_diff"][k] = extra
        if args.tracemalloc and warm_snap and end_snap:
            res["tracemalloc"] = tracemalloc_diff(warm_snap, end_snap, args.workers)
        for b in blocks.values():
            b.close()
        # stop as a user does, then look for what the run left in /dev/shm
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(40)
            res["stop_rc"] = server.proc.returncode
        except subprocess.TimeoutExpired:
            res["stop_rc"] = None
            res["notes"].append("the server did not stop within 40 s of SIGTERM")
        time.sleep(0.5)
        res["shm_left"] = sorted(os.path.basename(n) for n in glob.glob(f"/dev/shm/*{runid}*"))
    finally:
        for _, p in wrks.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            res["server_log_tail"] = server.log_tail(3000)
            res["log_errors"] = log_errors(server)
            lab.close()
        finally:
            signal.signal(signal.SIGINT, previous)
    res["loadavg_end"] = os.getloadavg()
    verdicts(res, warmup)
    return res


def log_errors(server):
    """Lines of the server's log (--log-level warning) that tell of a failure."""
    server.errlog.seek(0)
    return [line.rstrip() for line in server.errlog
            if re.search(r"Traceback|ERROR|CRITICAL| died | no heartbeat|did not stop", line)]


def tracemalloc_diff(warm, end, workers, top=15):
    import tracemalloc
    out = {}
    for k in range(workers):
        try:
            a = tracemalloc.Snapshot.load(f"{warm}.{k}")
            b = tracemalloc.Snapshot.load(f"{end}.{k}")
        except OSError:
            continue
        stats = b.compare_to(a, "traceback")[:top]
        out[k] = [{"size_diff": s.size_diff, "count_diff": s.count_diff,
                   "where": [f"{f.filename}:{f.lineno}" for f in s.traceback][-4:]}
                  for s in stats]
    return out


def verdicts(res, warmup):
    v = {}
    kinds = res.get("kinds", {})
    unexpected = sum(k["unexpected"] for k in kinds.values()) + res.get("worker_restarts", 0)
    v["errors"] = (unexpected == 0, f"{unexpected} unexpected errors, "
                                    f"{res.get('worker_restarts', 0)} worker restarts")
    samples = res["samples"]
    warm = [s for s in samples if s["t"] >= warmup]
    rss = {}
    ok = bool(warm)
    if warm:
        for k in warm[0]["rss"]:
            a, b = warm[0]["rss"].get(k), warm[-1]["rss"].get(k)
            if a and b:
                g = (b - a) / a
                rss[k] = {"start": samples[0]["rss"][k], "warm": a, "end": b,
                          "max": max(s["rss"].get(k) or 0 for s in warm), "growth": g}
                ok = ok and g <= RSS_LIMIT
    res["rss"] = rss
    v["rss"] = (ok, "; ".join(f"shard {k}: {r['warm'] / 2**20:.1f} -> {r['end'] / 2**20:.1f} MiB "
                              f"({r['growth']:+.1%})" for k, r in rss.items()) or "no samples")
    fd_extra = {k: x for k, x in res.get("fd_diff", {}).items() if x}
    fds0, fds1 = res.get("baseline", {}).get("fds", {}), res.get("end", {}).get("fds", {})
    v["fds"] = (not fd_extra and all(fds1.get(k, 0) <= n for k, n in fds0.items()),
                "; ".join(f"shard {k}: {fds0[k]} -> {fds1.get(k)}" for k in fds0)
                + (f"; extra: {fd_extra}" if fd_extra else ""))
    left = res.get("shm_left")
    v["shm"] = (left == [], "none left" if left == [] else f"left: {left}")
    d0, d1 = res.get("baseline", {}).get("diag", {}), res.get("end", {}).get("diag", {})
    # Summed over the shards: the /_soak request that measures is itself a connection (a
    # task, a live flow, perhaps a delayed-ACK timer) on whichever shard its hash picks.
    tot0 = {n: sum(d.get(n, 0) for d in d0.values()) for n in DIAG_COUNTS}
    tot1 = {n: sum(d.get(n, 0) for d in d1.values()) for n in DIAG_COUNTS}
    tot0["live_flows"] = sum(live_flows(d) for d in d0.values())
    tot1["live_flows"] = sum(live_flows(d) for d in d1.values())
    # the stack's heap drops superseded entries lazily: a few may linger
    bad = [n for n in ("asyncio_scheduled", "tasks", "live_flows", "tcp_pending",
                       "tcp_deferred") if tot1[n] > tot0[n]]
    if tot1["tcp_timer_heap"] > tot0["tcp_timer_heap"] + 4:
        bad.append("tcp_timer_heap")
    tw_checked = res.get("drain_for_time_wait", False)
    if tw_checked:
        bad += [n for n in ("tcp_time_wait", "tcp_time_wait_queue") if tot1[n] > tot0[n]]
    detail = ", ".join(f"{n} {tot0[n]} -> {tot1[n]}" for n in tot0)
    if not tw_checked:
        detail += " (TIME_WAIT not checked: the drain is shorter than its 60 s)"
    v["timers"] = (not bad and bool(d1), ("grew: " + ", ".join(bad) + "; " if bad else "")
                   + detail)
    rc = res.get("stop_rc")
    errs = res.get("log_errors", [])
    v["stop"] = (rc == 0 and not errs, f"exit status {rc} after SIGTERM; "
                 + (f"{len(errs)} error lines in the server log, first: {errs[0][:200]}"
                    if errs else "no errors in the server log"))
    v["connections"] = (res.get("connections", 0) >= res.get("want_connections", 0),
                        f"{res.get('connections', 0):,} completed connections")
    res["verdicts"] = {k: {"ok": ok, "detail": d} for k, (ok, d) in v.items()}
    res["ok"] = all(ok for ok, _ in v.values())


# ---- report ----------------------------------------------------------------------------------

def markdown(res):
    mb = 2 ** 20
    L = [f"# Soak: {res['minutes']:g} min, {res['workers']} workers, user stack (afpacket)",
         "",
         f"Started {res['started']}; `python -m bench.soak --minutes {res['minutes']:g}"
         + (f" --scale {res['scale']:g}" if res['scale'] != 1 else "") + "`; "
         f"load {res.get('load_seconds', 0):.0f} s, drain {res.get('drain_seconds', 0):.0f} s; "
         f"load average {' '.join(f'{x:.2f}' for x in res['loadavg_start'])} at the start, "
         f"{' '.join(f'{x:.2f}' for x in res['loadavg_end'])} at the end (2 cores shared "
         "with other work). "
         f"Result: **{'PASS' if res['ok'] else 'FAIL'}**.", "",
         "| check | ok | detail |", "|---|---|---|"]
    for k, r in res["verdicts"].items():
        L.append(f"| {k} | {'yes' if r['ok'] else '**no**'} | {r['detail']} |")
    L += ["", "## Traffic (one wrk per kind, bench/soak.lua; 1 request in "
          f"{MALFORMED_EVERY} malformed)", "",
          "| kind | connections | completed | malformed sent | expected 4xx | in flight at end "
          "| unexpected errors |", "|---|---|---|---|---|---|---|"]
    for kind, k in res.get("kinds", {}).items():
        L.append(f"| {kind} | {k['connections']} | {k.get('completed', 0):,} | "
                 f"{k.get('malformed', 0):,} | {k.get('expected_4xx', 0):,} | "
                 f"{k.get('in_flight_at_end', 0):,} | {k['unexpected']}"
                 + (f" ({'; '.join(k['why'])})" if k["why"] else "") + " |")
    rate = res.get("connections", 0) / max(1.0, res.get("load_seconds", 0))
    L += ["", f"Completed connections (the shards' `streams.accepted`): "
          f"**{res.get('connections', 0):,}** ({rate:,.0f} a second).", "",
          "## Worker RSS (MiB)", "", "| t (s) | " + " | ".join(
              f"shard {k}" for k in res["samples"][0]["rss"]) + " | connections so far | open "
          "| TIME_WAIT |" if res["samples"] else "",
          "|---|" + "---|" * (len(res["samples"][0]["rss"]) + 3)
          if res["samples"] else ""]
    step = max(1, len(res["samples"]) // 20)
    rows = res["samples"][::step] + ([res["samples"][-1]] if res["samples"] else [])
    seen = set()
    for s in rows:
        if s["t"] in seen:
            continue
        seen.add(s["t"])
        L.append(f"| {s['t']:.0f} | " + " | ".join(
            "-" if v is None else f"{v / mb:.1f}" for v in s["rss"].values())
            + f" | {s['accepted']:,} | {s['open']} | {s.get('time_wait', 0):,} |")
    if res.get("tracemalloc"):
        L += ["", "## tracemalloc: top growth from the end of warm-up to the end of the load", ""]
        for k, rows in res["tracemalloc"].items():
            L.append(f"shard {k}:")
            for r in rows[:8]:
                L.append(f"- {r['size_diff'] / 1024:+.1f} KiB ({r['count_diff']:+d}) "
                         f"{' <- '.join(reversed(r['where']))}")
    if res["notes"]:
        L += ["", "## Notes", ""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(L) + "\n"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the load (default 10)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply every kind's connection count (default 1)")
    p.add_argument("--warmup", type=float, default=120.0,
                   help="seconds before the RSS reference point (default 120: TIME_WAIT "
                        "fills for its 60 s first)")
    p.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--drain", type=float, default=75.0,
                   help="after the load, wait at most this long for its connections and "
                        "TIME_WAIT entries to go (default 75: TIME_WAIT lasts 60 s)")
    p.add_argument("--min-connections", type=int, default=None,
                   help="fail below this many connections (default: 1,700 per second)")
    p.add_argument("--tracemalloc", action="store_true",
                   help="trace allocations in the workers; report the top growth")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    p.add_argument("--no-save", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("python -m bench.soak needs root (namespaces, raw sockets)")
    apt.ensure("wrk")
    apt.ensure("curl")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    res = run(args)
    text = markdown(res)
    if not args.no_save:
        os.makedirs(args.out, exist_ok=True)
        stem = os.path.join(args.out, "soak-" + datetime.datetime.utcnow().strftime("%Y-%m-%d-%H%M"))
        with open(stem + ".md", "w") as f:
            f.write(text)
        with open(stem + ".json", "w") as f:
            json.dump(res, f, indent=1, default=str)
        log(f"wrote {stem}.md/.json")
        res["report"] = stem + ".json"
    print(text)
    return 0 if res["ok"] else 1


def want_connections(args):
    """The connections the run must complete: 1,700 a second at full scale."""
    if args.min_connections is not None:
        return args.min_connections
    return int(1700 * args.minutes * 60) if args.scale >= 1 else 0


if __name__ == "__main__":
    sys.exit(main())
