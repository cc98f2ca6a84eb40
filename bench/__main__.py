"""python -m bench: the user-level stack against kernel sockets, side by side.

    python -m bench            # full run: every scenario x every server, 5x each
    python -m bench --quick    # fewer, shorter runs, 2,000 idle connections

Servers: the framework's user stack (afpacket, tap), ``framework --stack kernel``, and
the servers users would pick instead (bench/baselines/peers.py): uvloop + httptools
(bench/baselines/uvloop_server.py, same response bytes), uvicorn, granian (ASGI and
RSGI) and nginx, each one worker. Each in its own namespace and /24 (bench/lab.py), the
server on core 0, every load generator on core 1, RPS set inside our namespaces only.
Scenarios run interleaved (round r: every scenario, every server, the order of servers
rotated each round). After the rounds, one extra run per server of the close and
keep-alive scenarios counts the worker's syscalls per request (bench/syscalls.py; no
req/s is taken from it). Output: a Markdown report on stdout and in
bench/results/<date>.md, a PNG chart next to it. Never part of the test suite.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

from bench import apt, loadgen, report, syscalls as syscount
from bench.baselines import peers
from bench.lab import CLIENT_CORE, ROOT, SERVER_CORE, Lab

OURS = ("user-afpacket", "user-tap", "kernel")
ALL_SERVERS = OURS + peers.KINDS
USER_STACKS = ("user-afpacket", "user-tap")
HTTP_SCENARIOS = ("close-wrk", "close-ab", "keepalive", "pipelined", "latency")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


_apt_install = apt.install


def ensure_tools(servers=ALL_SERVERS, syscall_tool="auto"):
    tools = [("wrk", "wrk"), ("ab", "apache2-utils")]
    if syscall_tool in ("auto", "strace"):
        tools.append(("strace", "strace"))
    if "nginx" in servers:
        tools.append(("nginx", "nginx"))
    missing = [p for t, p in tools if not shutil.which(t) and not
               (t == "nginx" and os.path.exists(peers.nginx_binary()))]
    if missing:
        log(f"installing {' '.join(missing)}")
        _apt_install(missing)
    if syscall_tool in ("auto", "perf") and not shutil.which("perf"):
        # the cheap syscall counter; strace stands in when it cannot be had
        log("installing linux-perf")
        if not _apt_install(["linux-perf"], check=False):
            log("linux-perf not installed: syscalls are counted with strace")
    modules = [("matplotlib", "matplotlib")]
    if "uvicorn" in servers:
        modules.append(("uvicorn", "uvicorn"))
    if any(s.startswith("granian") for s in servers):
        modules.append(("granian", "granian"))
    if any(s in peers.KINDS for s in servers):
        modules.append(("uvloop", "uvloop"))
    for mod, pkg in modules:
        try:
            __import__(mod)
        except ImportError:
            log(f"installing {pkg}")
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", pkg], check=True)


def run_micro(args):
    """bench/micro_stack.py on the server core, compiled and in pure-Python mode, rounds
    interleaved (each run its own clean process); profiles and idle memory in pure mode,
    where cProfile and tracemalloc can name our functions and lines."""
    base = ["taskset", "-c", str(SERVER_CORE), sys.executable, "-m", "bench.micro_stack"]
    cmd = base + ["--json", "--repeat", "1", "--connections", str(args.micro_connections)]
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("FRAMEWORK_PURE_PYTHON", None)
    pure_env = dict(env, FRAMEWORK_PURE_PYTHON="1")
    runs = {"compiled": [], "pure": []}
    for _ in range(args.rounds):
        for mode, e in (("compiled", env), ("pure", pure_env)):
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env=e)
            try:
                runs[mode].append(json.loads(r.stdout.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                log(f"micro benchmark ({mode}) failed: {r.stderr[-1500:]}")
                return None
    med = lambda rs, k: statistics.median(x[k] for x in rs)
    res = dict(runs["compiled"][-1])
    res["us_per_conn"] = med(runs["compiled"], "us_per_conn")
    res["us_per_packet"] = med(runs["compiled"], "us_per_packet")
    res["us_per_conn_pure"] = med(runs["pure"], "us_per_conn")
    res["native"] = subprocess.run([sys.executable, "-c", "import framework.native as n; "
                                    "print(n.REASON)"], capture_output=True, text=True,
                                   cwd=ROOT, env=env).stdout.strip()
    # the profile the team optimises against, short connections and keep-alive
    for key, extra in (("profile", []), ("profile_keepalive", ["--requests", "20"])):
        n = max(200, args.micro_connections // (10 if extra else 1))
        p = subprocess.run(base + ["--profile", "--top", "15", "--connections", str(n)] + extra,
                           capture_output=True, text=True, cwd=ROOT, timeout=600, env=pure_env)
        res[key] = p.stdout.strip() if p.returncode == 0 else f"failed: {p.stderr[-500:]}"
    # where the bytes of an idle keep-alive connection go, kernel-free (compiled: the total;
    # pure: the lines)
    for key, e in (("idle_memory", env), ("idle_memory_pure", pure_env)):
        p = subprocess.run([sys.executable, "-m", "bench.idle_memory", "--connections",
                            str(min(args.idle or 2000, 5000))], capture_output=True, text=True,
                           cwd=ROOT, timeout=600, env=e)
        res[key] = p.stdout.strip() if p.returncode == 0 else f"failed: {p.stderr[-500:]}"
    return res


def cpu_snapshot():
    """{pid: (cpu seconds, short command line)} of every process."""
    out = {}
    for p in psutil.process_iter(["pid", "cmdline", "name", "cpu_times"]):
        try:
            t = p.info["cpu_times"]
            cmd = " ".join(p.info["cmdline"] or []) or p.info["name"] or "?"
            out[p.info["pid"]] = (t.user + t.system, cmd[:90])
        except (psutil.Error, TypeError):
            pass
    return out


def other_load(before, after, seconds, top=5):
    """Processes alive over the whole run, not ours, that used the most CPU meanwhile."""
    me = os.getpid()
    rows = []
    for pid, (c1, cmd) in after.items():
        if pid == me or pid not in before:
            continue
        d = c1 - before[pid][0]
        if d > 0.05 * seconds:
            rows.append((d / seconds, pid, cmd))
    rows.sort(reverse=True)
    return [f"{share:.0%} of a core: pid {pid} `{cmd}`" for share, pid, cmd in rows[:top]]


def _pre(results):
    vals = [r["pre0"] for per in results.values() for runs in per.values() for r in runs
            if r.get("pre0") is not None]
    return f"{report.med(vals):.0%}" if vals else "-"


def git_state():
    """The commit measured, and whether framework/ or apps/ had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "framework", "apps"], cwd=ROOT,
                               capture_output=True, text=True).stdout.split("\n")
        dirty = [d for d in dirty if d.strip()]
        return f"commit {head}" + (f" + uncommitted changes in {len(dirty)} file(s) of "
                                   f"framework/ or apps/" if dirty else "")
    except OSError:
        return "unknown commit"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="< 2 minutes: 1 round, 2 s runs")
    p.add_argument("--servers", default=",".join(ALL_SERVERS),
                   help=f"comma list out of {','.join(ALL_SERVERS)}")
    every = HTTP_SCENARIOS + ("bulk", "idle", "micro", "asgi")
    p.add_argument("--scenarios", default=",".join(every),
                   help="comma list out of " + ",".join(every))
    p.add_argument("--rounds", type=int, help="runs of each scenario per server (5; quick 1)")
    p.add_argument("--seconds", type=float, help="length of one HTTP run (3; quick 2)")
    p.add_argument("--idle", type=int, help="idle connections held (10000; quick 2000)")
    p.add_argument("--bulk-seconds", type=float, help="cap of one bulk run (4; quick 1.5)")
    p.add_argument("--bulk-bytes", type=int, default=1 << 30, help="cap of one bulk run (1 GiB)")
    p.add_argument("--micro-connections", type=int, help="connections of the micro benchmark")
    p.add_argument("--syscalls", choices=("auto", "perf", "strace", "off"), default="auto",
                   help="how to count each server's syscalls per request in an extra run: "
                        "perf (a kernel counter, cheap), strace (-c -f, slow), auto: perf "
                        "when it works here, else strace; off: not counted")
    p.add_argument("--syscall-requests", type=int,
                   help="requests of each syscall-counting run (20000; quick 5000)")
    p.add_argument("--no-pyspy", dest="pyspy", action="store_false",
                   help="skip the live py-spy profiles of the user stack's worker")
    p.add_argument("--quiet-wait", type=float,
                   help="before each run, wait up to this long for core 0 to be < 25%% busy "
                        "with our servers idle, i.e. for other people's work to leave it "
                        "(2 s; quick 0: never wait)")
    p.add_argument("--nice", type=int, default=0,
                   help="run servers and load generators at this nice value (e.g. -5 on a "
                        "machine shared with other work; default 0)")
    p.add_argument("--client-rps", action="store_true",
                   help="also steer the client side's receive work to core 1 (off: it runs "
                        "on the sender's core, as bench/README.md explains)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"),
                   help="directory of the report and chart")
    p.add_argument("--no-save", action="store_true", help="stdout only")
    a = p.parse_args(argv)
    q = a.quick
    a.rounds = a.rounds or (1 if q else 5)
    a.seconds = a.seconds or (2 if q else 3)
    a.idle = a.idle if a.idle is not None else (2000 if q else 10000)
    a.bulk_seconds = a.bulk_seconds or (1.5 if q else 4)
    if a.quiet_wait is None:
        a.quiet_wait = 0.0 if q else 2.0
    a.micro_connections = a.micro_connections or (500 if q else 3000)
    a.syscall_requests = a.syscall_requests or (5000 if q else 20000)
    a.servers = [s for s in a.servers.split(",") if s]
    a.scenarios = [s for s in a.scenarios.split(",") if s]
    for s in a.servers:
        if s not in ALL_SERVERS:
            p.error(f"unknown server {s}")
    return a


def wait_alive(lab, s):
    if not s.alive():
        raise RuntimeError(f"{s.kind} server died:\n{s.log_tail()}")


def http_phase(lab, args, results, profiles, notes, syscalls=None):
    servers = []
    for kind in args.servers:
        try:
            servers.append(lab.start(kind))
            log(f"started {kind} at {servers[-1].url}")
        except Exception as e:
            notes.append(f"{kind}: could not start ({str(e).splitlines()[0]})")
            log(f"{kind} failed to start: {e}")
    for s in servers:
        sv, cl = s.rps_state()
        notes.append(f"{s.kind}: RPS server side {','.join(sv)}, client side {','.join(cl)}")
        # warm up (imports, caches, ARP): not measured
        lab.run_client(loadgen.wrk_cmd(s.url, 1, 10), timeout=30)
        lab.run_client(loadgen.wrk_cmd(s.url, 1, 10, close=True), timeout=30)
    scen = [sc for sc in HTTP_SCENARIOS if sc in args.scenarios]
    for rnd in range(args.rounds):
        for sc in scen:
            order = servers[rnd % len(servers):] + servers[:rnd % len(servers)] if servers else []
            for s in order:
                if not s.alive():
                    continue
                r = loadgen.run_http(lab, s, sc, args.seconds)
                results.setdefault(sc, {}).setdefault(s.kind, []).append(r)
                log(f"round {rnd + 1} {sc:10s} {s.kind:14s} {r['rps']:>10,.0f} req/s  "
                    f"core0 {r['core0']:.0%} (other {r.get('other0', 0):.0%}) core1 "
                    f"{r['core1']:.0%}  server {r.get('server_us_per_req') or 0:.1f} us/req  "
                    f"errors {r['errors']}")
                if not s.alive():
                    notes.append(f"{s.kind}: server died during {sc}: {s.log_tail(500)}")
    if syscalls is not None:
        syscall_phase(lab, args, servers, syscalls, notes)
    if args.pyspy:
        live_profiles(lab, args, servers, profiles, notes)
    for s in servers:
        if not s.alive():
            notes.append(f"{s.kind}: server died (log {s.logpath}): {s.log_tail(300)!r}")
    lab.stop_servers()


def syscall_phase(lab, args, servers, syscalls, notes):
    """Per server, one extra run of each of the close and keep-alive scenarios measured,
    over a fixed number of requests, with the worker's syscalls counted."""
    scen = [sc for sc in loadgen.SYSCALL_SCENARIOS if sc in args.scenarios]
    if not scen or args.syscalls == "off":
        return
    tool = syscount.available_tool(args.syscalls)
    if tool is None:
        notes.append("syscalls not counted: neither perf nor strace works here")
        return
    notes.append(f"syscalls per request: {tool}"
                 + (" (`perf stat -e raw_syscalls:sys_enter -p <worker>`, every thread)"
                    if tool == "perf" else " (`strace -c -f -p <worker>`)")
                 + f", one extra run of {args.syscall_requests:,} requests per server and "
                 "scenario, after the measured rounds; the server's supervisor or master "
                 "process is not counted (it serves no request)")
    for sc in scen:
        for s in servers:
            if not s.alive():
                continue
            r = loadgen.run_syscalls(lab, s, sc, args.syscall_requests, tool)
            syscalls.setdefault(sc, {})[s.kind] = r
            if r.get("per_req") is None:
                notes.append(f"{s.kind}: syscall count for {sc} failed: {r.get('failed')}")
                log(f"syscalls {sc:10s} {s.kind:14s} failed: {r.get('failed')}")
            else:
                log(f"syscalls {sc:10s} {s.kind:14s} {r['per_req']:6.2f} per request "
                    f"({r['syscalls']:,} over {r['requests']:,} requests, {tool})")


def live_profiles(lab, args, servers, profiles, notes, scenarios=("close-wrk", "keepalive")):
    """One extra, unmeasured run per scenario with py-spy sampling the user stack's worker."""
    from bench import pyspy
    if not pyspy.available():
        if "py-spy" not in " ".join(notes):
            notes.append("live profiles skipped: py-spy is not installed (pip install py-spy)")
        return
    for s in servers:
        if s.kind != "user-afpacket" or not s.alive():
            continue
        for sc in scenarios:
            raw = os.path.join(lab.tmp, f"pyspy-{s.kind}-{sc}.txt")
            secs = args.bulk_seconds if sc.startswith("bulk") else args.seconds
            p = pyspy.start(s.worker().pid, secs, raw)
            if sc.startswith("bulk"):
                loadgen.run_bulk(lab, s, sc.split("-")[1], secs, args.bulk_bytes)
            else:
                loadgen.run_http(lab, s, sc, args.seconds)
            pyspy.finish(p)
            summary = pyspy.summarize(raw)
            if summary:
                profiles[(s.kind, sc)] = summary
                log(f"py-spy {s.kind} {sc}: {summary.splitlines()[0]}")
            else:
                notes.append(f"py-spy on {s.kind} ({sc}) recorded nothing: "
                             f"{(p.stderr.read() if p.stderr else '')[-300:]}")


def idle_phase(lab, args, idle, notes):
    """On fresh servers: a server that just served thousands of short connections holds
    them in TIME_WAIT for a minute, and its RSS moves with them.

    More connections than one client address can open to one server port (about 60k,
    bench/idle_client.py) come from extra addresses of the client namespace's interface
    to the server (.10, .11, ... of its /24; they go with the link). Such runs serve
    bench.idle_client:app (apps.hello with a 10-minute idle timeout: opening them may
    take longer than the usual minute). A kernel-socket server needs a descriptor per
    connection: it is left out of runs beyond its limit (the lab's NOFILE, or a lower
    hard limit: 20,000 on this workplace's machines)."""
    # here, not at the top: only this function of the file may change right now
    import resource
    from bench import idle_client
    from bench import lab as labmod
    from framework.master import netns
    many = args.idle > idle_client.PER_SOURCE
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    fds = labmod.NOFILE if hard == resource.RLIM_INFINITY else min(labmod.NOFILE, hard)
    for kind in args.servers:
        if kind in ("kernel", "uvloop") and args.idle > fds - 1024:
            notes.append(f"{kind} (idle): left out of the {args.idle:,}-connection run "
                         f"(a server process has {fds:,} descriptors here)")
            continue
        try:
            s = lab.start(kind, app="bench.idle_client:app") if many else lab.start(kind)
        except Exception as e:
            notes.append(f"{kind} (idle): could not start ({str(e).splitlines()[0]})")
            continue
        lab.run_client(loadgen.wrk_cmd(s.url, 1, 10), timeout=30)   # warm up
        sources = []
        try:
            if many:
                sources = idle_client.add_sources(netns, lab.client_ns, s.c_if, s.ip,
                                                  args.idle)
            r = loadgen.run_idle(lab, s, args.idle, args.seconds)
        except Exception as e:
            r = {"held": 0, "failed": str(e)}
        idle[kind] = r
        opened = r.get("open_seconds")
        log(f"idle {kind}: held {r.get('held')} bytes/conn {r.get('bytes_per_conn')} "
            f"req/s {r.get('rps')} opened in {opened} s")
        if many and opened:
            notes.append(f"{kind} (idle): {r['held']:,} connections from {len(sources)} "
                         f"client addresses opened in {opened:.1f} s "
                         f"({r['held'] / opened:,.0f}/s), {r.get('still_open')} still open "
                         f"after wrk")
        lab.stop_servers()


def bulk_phase(lab, args, bulk, notes, profiles):
    servers = []
    for kind in args.servers:
        if kind in peers.KINDS and kind not in peers.SERVES_BULK:
            notes.append(f"{kind} (bulk): left out (serves HTTP only, not bench/bulk.py's ports)")
            continue
        try:
            servers.append(lab.start(kind, app="bench.app:app"))
        except Exception as e:
            notes.append(f"{kind} (bulk app): could not start ({str(e).splitlines()[0]})")
    for rnd in range(args.rounds):
        for d in ("upload", "download"):
            order = servers[rnd % len(servers):] + servers[:rnd % len(servers)] if servers else []
            for s in order:
                if not s.alive():
                    continue
                r = loadgen.run_bulk(lab, s, d, args.bulk_seconds, args.bulk_bytes)
                bulk.setdefault(d, {}).setdefault(s.kind, []).append(r)
                log(f"round {rnd + 1} bulk {d:8s} {s.kind:14s} {r['gbps']:.2f} Gbit/s "
                    f"({r['bytes'] / 2**20:,.0f} MiB) core0 {r['core0']:.0%} errors {r['errors']}"
                    + (f" {r.get('failed')}" if r["errors"] else ""))
    if args.pyspy:
        live_profiles(lab, args, servers, profiles, notes, ("bulk-upload", "bulk-download"))
    lab.stop_servers()


# issue 10: (scenario, goal against uvloop, goal against nginx); None = shown, no goal
HTTP_GOALS = (("close-wrk", 2.0, 1.5), ("close-ab", 2.0, 1.5), ("keepalive", 1.2, 1.0),
              ("pipelined", 1.0, None))
BASELINES = ("uvloop", "nginx")


def targets(results, bulk, idle, micro):
    """Issue 10's targets (against uvloop and nginx) and issue 6's (bulk, idle memory,
    stack time): met, or the measured gap."""
    def m(sc, srv, f="rps", src=None):
        src = results if src is None else src
        return report.med([r.get(f) for r in src.get(sc, {}).get(srv, [])])

    def cell(ratio, goal, ours, theirs, spec):
        if ratio is None:
            return "-", None
        text = f"{ratio:.2f}x ({spec.format(ours)} vs {spec.format(theirs)})"
        if goal is None:
            return text, None
        ok = ratio >= goal
        return text + (" met" if ok else f" gap {goal / ratio:.2f}x"), ok

    out = ["| target | server | req/s vs uvloop | req/s vs nginx | server CPU per request vs "
           "uvloop (theirs / ours) | server CPU per request vs nginx (theirs / ours) | verdict |",
           "|---|---|---|---|---|---|---|"]
    for sc, g_uv, g_ng in HTTP_GOALS:
        for srv in USER_STACKS:
            v, cv = m(sc, srv), m(sc, srv, "server_us_per_req")
            if not v:
                continue
            cells, verdicts = [], []
            for f in ("rps", "server_us_per_req"):
                for base, goal in zip(BASELINES, (g_uv, g_ng)):
                    b = m(sc, base, f)
                    if f == "rps":
                        ratio = v / b if b else None
                        text, ok = cell(ratio, goal, v, b, "{:,.0f}")
                    else:
                        ratio = b / cv if b and cv else None
                        text, ok = cell(ratio, goal, cv, b, "{:.1f} us")
                    cells.append(text)
                    if ok is not None:
                        verdicts.append(ok)
                    elif goal is not None:
                        cells[-1] += " (not measured)"
            goal_text = " and ".join(f">= {g}x {b}" for b, g in zip(BASELINES, (g_uv, g_ng))
                                     if g is not None)
            verdict = ("-" if not verdicts else "met" if all(verdicts) else
                       f"not met ({verdicts.count(False)} of {len(verdicts)} ratios short)")
            out.append(f"| {loadgen.SCENARIOS[sc]['title']}: {goal_text} | {srv} | "
                       f"{' | '.join(cells)} | {verdict} |")
    def p50_vs(ours, theirs):
        return "-" if theirs is None else \
            f"{theirs / ours:.2f}x ({ours * 1e6:,.0f} vs {theirs * 1e6:,.0f} us)"

    for srv in USER_STACKS:
        p50 = m("latency", srv, "p50")
        if not p50:
            continue
        u, n = m("latency", "uvloop", "p50"), m("latency", "nginx", "p50")
        verdict = "-" if u is None else "met" if p50 <= u else f"gap {p50 / u:.2f}x"
        out.append(f"| latency p50 (keep-alive wrk -c10) <= uvloop's (theirs / ours) | {srv} | "
                   f"{p50_vs(p50, u)} | {p50_vs(p50, n)} | | | {verdict} |")
    for srv in USER_STACKS:
        for d in ("upload", "download"):
            v = m(d, srv, "gbps", bulk)
            if v is not None:
                out.append(f"| bulk {d} >= 10 Gbit/s (issue 6) | {srv} | {v:.2f} Gbit/s | | | | "
                           f"{'met' if v >= 10 else 'gap %.1fx' % (10 / v if v else float('inf'))} |")
    for srv in USER_STACKS:
        r = idle.get(srv)
        if r and r.get("bytes_per_conn") is not None:
            b = r["bytes_per_conn"]
            out.append(f"| <= 2 KB per idle connection (issue 6) | {srv} | {b:,.0f} B | | | | "
                       f"{'met' if b <= 2048 else 'gap %.1fx' % (b / 2048)} |")
    if micro:
        v = micro["us_per_conn"]
        out.append(f"| micro_stack compiled <= 12 us per short connection (issue 10) | "
                   f"memory port | {v:.1f} us | | | | "
                   f"{'met' if v <= 12 else 'gap %.1fx' % (v / 12)} |")
        if micro.get("us_per_conn_pure"):
            x = micro["us_per_conn_pure"] / v
            out.append(f"| micro_stack compiled >= 5x pure Python (issue 10) | memory port | "
                       f"{x:.2f}x ({micro['us_per_conn_pure']:.1f} us pure) | | | | "
                       f"{'met' if x >= 5 else 'gap %.1fx' % (5 / x)} |")
    return "\n".join(out)


def build_report(args, results, bulk, idle, micro, notes, started, elapsed, profiles=None,
                 syscalls=None):
    titles = {k: v["title"] for k, v in loadgen.SCENARIOS.items()}
    servers = args.servers
    scen = [sc for sc in HTTP_SCENARIOS if sc in args.scenarios and sc != "latency"]
    cpu = platform.processor() or platform.machine()
    parts = [
        f"# framework benchmark, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"`python -m bench{' --quick' if args.quick else ''}`: {args.rounds} round(s), "
        f"HTTP runs of {args.seconds:g} s, interleaved; server on core {SERVER_CORE}, load "
        f"generator on core {CLIENT_CORE}; RPS: server-side receive -> core {SERVER_CORE}, "
        f"client-side receive -> {'core %d' % CLIENT_CORE if args.client_rps else 'the sender core (no RPS)'}. "
        f"{psutil.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}. Response: apps.hello `GET /` (13-byte body, "
        f"same bytes from every server). Total time {elapsed / 60:.1f} min. "
        f"Code: {git_state()}{'; nice %d' % args.nice if args.nice else ''}. Before each run "
        f"the harness waited up to {args.quiet_wait:g} s for core 0 to be < 25% busy (median "
        f"core-0 load just before the HTTP runs: {_pre(results)}).",
        "",
        "Core busy = share of the core's time in user+nice+system+irq+softirq (/proc/stat). "
        "Server tasks = run time of the server's worker and of ksoftirqd/0 "
        "(/proc/<pid>/task/*/schedstat, exact; a softirq is charged to the task that was "
        "current, so the receive path RPS steers to core 0 is in it); rest = core-0 busy "
        "time beyond that: other processes (on a shared machine, other people's work) and "
        "softirqs that ran while core 0 idled or ran someone else. Core-0 CPU us/req = "
        "core-0 busy time / requests (inflated by other load); server CPU us/req = server "
        "tasks' run time / requests (not inflated by other load; req/s is). A server whose "
        "core 0 is not near 100% was not the bottleneck (the load generator or the link was).",
        "",
        f"Load average at start: {args.loadavg_start}; at end: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "",
        "## Targets (issues 10 and 6)",
        "",
        "Ratios of medians measured in this run; for req/s ours / theirs, for server CPU per "
        "request and latency theirs / ours, so above 1.00x is better for us everywhere.",
        "",
        targets(results, bulk, idle, micro),
        "",
        "## HTTP throughput",
        "",
        report.http_table(results, scen, servers, titles, syscalls),
    ]
    if syscalls:
        parts += ["", "## Syscalls per request (server's worker process, every thread)", "",
                  f"An extra run per server and scenario after the measured rounds, stopped "
                  f"after {args.syscall_requests:,} requests (bench/counted.lua), counter "
                  f"attached to the worker; its req/s is not reported. For the user-level "
                  f"stack the frames move through the AF_PACKET socket or the TAP in batches, "
                  f"so its count is per batch, not per connection.", "",
                  report.syscall_table(syscalls, servers, titles)]
    if results.get("latency"):
        parts += ["", "## Latency (keep-alive, wrk -t1 -c10, closed loop)", "",
                  report.latency_table(results["latency"], servers)]
    if bulk:
        parts += ["", f"## Bulk: one TCP connection each way (up to {args.bulk_bytes / 2**30:g} GiB "
                  f"or {args.bulk_seconds:g} s, whichever first)", "",
                  "Server: bench/app.py (framework) or the uvloop baseline, raw protocols: "
                  "discard on 9009, an endless 256 KiB-chunk source on 9019. Client: one "
                  "Python kernel socket (1 MiB send/recv_into) in the client namespace on "
                  "core 1. Default veth offloads (TSO/GSO/checksum) on both ends.", "",
                  report.bulk_table(bulk, servers)]
    if idle:
        parts += ["", f"## {args.idle:,} idle keep-alive connections, then wrk -c50 over 50 more", "",
                  "Each idle connection made one request and stays open; bytes per "
                  "connection = worker RSS delta / connections (for kernel sockets the "
                  "kernel's socket memory is not in the RSS).", "",
                  report.idle_table(idle, servers)]
    if micro:
        parts += ["", "## Micro benchmark (kernel-free): memory port -> Stack -> apps.hello", "",
                  f"`python -m bench.micro_stack`: {micro['connections']:,} complete short HTTP "
                  f"connections (SYN -> request -> response -> FIN -> final ACK) from a "
                  f"crafted-frame client, {micro['packets_per_conn']:.1f} frames per connection "
                  f"into and out of the stack.", "",
                  f"Medians of {args.rounds} interleaved rounds; {micro.get('native', '')}.", "",
                  "| mode | stack time per connection | per frame (in+out) | connections/s on one core |",
                  "|---|---|---|---|",
                  f"| compiled | {micro['us_per_conn']:.1f} us | {micro['us_per_packet']:.2f} us | "
                  f"{1e6 / micro['us_per_conn']:,.0f} |"]
        if micro.get("us_per_conn_pure"):
            parts.append(f"| pure Python (`FRAMEWORK_PURE_PYTHON=1`) | "
                         f"{micro['us_per_conn_pure']:.1f} us | | "
                         f"{1e6 / micro['us_per_conn_pure']:,.0f} |")
        for key, mode in (("idle_memory", "compiled"), ("idle_memory_pure", "pure Python")):
            if micro.get(key):
                parts += ["", f"Memory of an idle keep-alive connection in the user stack + app, "
                          f"{mode} (`python -m bench.idle_memory`, tracemalloc):", "", "```",
                          micro[key], "```"]
        for key, title in (("profile", "one request per connection"),
                           ("profile_keepalive", "keep-alive, 20 requests per connection")):
            if micro.get(key):
                parts += ["", f"Profile, {title} (`python -m bench.micro_stack --profile"
                          f"{' --requests 20' if 'keep' in key else ''}`; cProfile inflates "
                          f"absolute times 2-3x, compare shares):", "", "```", micro[key], "```"]
    for (kind, sc), summary in (profiles or {}).items():
        parts += ["", f"## Live profile: {report.SERVER_TITLES[kind]}, {sc} (py-spy, "
                  f"extra unmeasured run)", "", "```", summary, "```"]
    if notes:
        parts += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(parts) + "\n"


def main(argv=None):
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("python -m bench needs root (namespaces, raw sockets)")
    if psutil.cpu_count() < 2:
        sys.exit("python -m bench needs 2 cores (server on 0, load generator on 1)")
    ensure_tools(args.servers, args.syscalls)
    # SIGTERM/SIGHUP unwind like Ctrl-C: the finally below removes servers and namespaces
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    from bench import lab as labmod
    labmod.NICE = args.nice
    labmod.CLIENT_RPS = args.client_rps
    loadgen.QUIET_WAIT = args.quiet_wait
    psutil.Process().cpu_affinity([CLIENT_CORE])   # the harness stays off the server's core
    started = datetime.datetime.utcnow()
    args.loadavg_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t0 = time.monotonic()
    results, bulk, idle, notes, profiles, syscalls = {}, {}, {}, [], {}, {}
    micro = asgi = None
    snap0 = cpu_snapshot()
    tmp = tempfile.mkdtemp(prefix="fwbench-")
    lab = Lab(tmp)
    try:
        if any(sc in args.scenarios for sc in HTTP_SCENARIOS):
            http_phase(lab, args, results, profiles, notes, syscalls)
        if "idle" in args.scenarios and args.idle:
            idle_phase(lab, args, idle, notes)
        if "bulk" in args.scenarios:
            bulk_phase(lab, args, bulk, notes, profiles)
        if "asgi" in args.scenarios:    # a Starlette app on framework, uvicorn, granian
            from bench import asgi_apps
            asgi = asgi_apps.phase(lab, args.rounds, args.seconds, notes=notes)
    finally:
        # a second Ctrl-C must not cut the clean-up short (it left namespaces behind)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            lab.close()
        finally:
            signal.signal(signal.SIGINT, previous)
        # keep the servers' logs only when something went wrong (the notes name them)
        if not any("log /tmp" in n or "could not start" in n for n in notes):
            shutil.rmtree(tmp, ignore_errors=True)
    busy = other_load(snap0, cpu_snapshot(), time.monotonic() - t0)
    if busy:
        notes.append("other work on this machine during the run (long-lived processes not "
                     "started by the benchmark, CPU averaged over the run): " + "; ".join(busy))
    if "micro" in args.scenarios:
        micro = run_micro(args)
    elapsed = time.monotonic() - t0
    text = build_report(args, results, bulk, idle, micro, notes, started, elapsed, profiles,
                        syscalls)
    if asgi:
        text += asgi_apps.report_section(asgi, args.rounds, args.seconds)
    if not args.no_save:
        os.makedirs(args.out, exist_ok=True)
        stem = started.strftime("%Y-%m-%d-%H%M") + ("-quick" if args.quick else "")
        png = os.path.join(args.out, stem + ".png")
        try:
            titles = {k: v["title"] for k, v in loadgen.SCENARIOS.items()}
            if report.chart(png, results, bulk, list(HTTP_SCENARIOS), args.servers, titles,
                            syscalls):
                text += f"\n![chart]({os.path.basename(png)})\n"
        except Exception as e:
            log(f"chart failed: {e}")
        with open(os.path.join(args.out, stem + ".md"), "w") as f:
            f.write(text)
        with open(os.path.join(args.out, stem + ".json"), "w") as f:
            json.dump({"results": results, "bulk": bulk, "idle": idle, "micro": micro,
                       "syscalls": syscalls, "notes": notes}, f, indent=1, default=str)
        log(f"wrote {os.path.join(args.out, stem)}.md/.png/.json")
    print(text)


if __name__ == "__main__":
    main()
