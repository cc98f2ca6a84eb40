"""The same Starlette app served by framework (user stack, kernel stack), uvicorn and
granian (ASGI): what a team that already has a Starlette/FastAPI app would get.

    python -m bench.asgi_apps --rounds 3 --seconds 5      # this scenario alone
    python -m bench                                        # the full run includes it

The app is ``app`` below (one route, ``GET /`` -> ``Hello, World!``, text/plain), so every
server runs the same Python per request: the difference is the server. Each server is
started the way bench/lab.py starts them for ``python -m bench`` (one worker under
``taskset -c 0`` in a namespace and /24 of its own, RPS to core 0 on the server side,
wrk on core 1 in the client namespace): framework via ``framework serve bench.asgi_apps:app``,
uvicorn (uvloop, httptools) and granian (``--interface asgi``, one runtime thread) via
bench/baselines/peers.py's command lines with this app in place of the raw ASGI hello.
The user stack runs on both port types (afpacket, tap). Scenarios: keep-alive and
``Connection: close``, wrk -c50. Rounds are interleaved (each
round: every scenario, every server, the order rotated). Reported: median req/s, the
ratio to uvicorn, and the server's CPU microseconds per request (its worker's run time
plus ksoftirqd/0, bench/loadgen.py).
"""
import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request):
    return PlainTextResponse("Hello, World!")


app = Starlette(routes=[Route("/", hello)])

APP = "bench.asgi_apps:app"
SERVERS = ("user-afpacket", "user-tap", "kernel", "uvicorn", "granian-asgi")
KNOWN = SERVERS
SCENARIOS = ("keepalive", "close-wrk")
TITLES = {"user-afpacket": "framework, user stack (afpacket)",
          "user-tap": "framework, user stack (tap)",
          "kernel": "framework, --stack kernel", "uvicorn": "uvicorn (uvloop, httptools)",
          "granian-asgi": "granian --interface asgi"}


def log(msg):
    print(f"[asgi_apps {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def peers_serving(spec):
    """peers.command() serves ``spec`` as the ASGI app while inside (it reads the module
    global when it builds a command line)."""
    from bench.baselines import peers
    before = peers.HELLO_ASGI
    peers.HELLO_ASGI = spec
    try:
        yield
    finally:
        peers.HELLO_ASGI = before


def phase(lab, rounds, seconds, servers=SERVERS, notes=None):
    """Start every server in ``lab`` (bench.lab.Lab), run the rounds, stop them.
    Returns {scenario: {server kind: [run result, ...]}}."""
    from bench import loadgen
    notes = [] if notes is None else notes
    results = {}
    started = []
    try:
        with peers_serving(APP):
            for kind in servers:
                try:
                    started.append(lab.start(kind, app=APP))
                    log(f"started {kind} at {started[-1].url}")
                except Exception as e:
                    notes.append(f"asgi: {kind} could not start ({str(e).splitlines()[0]})")
                    log(f"{kind} failed to start: {e}")
        for s in started:
            _check_serves_starlette(lab, s)
            # warm up (imports, caches, ARP): not measured
            lab.run_client(loadgen.wrk_cmd(s.url, 1, 10), timeout=30)
            lab.run_client(loadgen.wrk_cmd(s.url, 1, 10, close=True), timeout=30)
        for rnd in range(rounds):
            for sc in SCENARIOS:
                k = rnd % len(started) if started else 0
                for s in started[k:] + started[:k]:
                    if not s.alive():
                        continue
                    r = loadgen.run_http(lab, s, sc, seconds)
                    results.setdefault(sc, {}).setdefault(s.kind, []).append(r)
                    log(f"round {rnd + 1} {sc:10s} {s.kind:14s} {r['rps']:>10,.0f} req/s  "
                        f"server {r.get('server_us_per_req') or 0:.1f} us/req  "
                        f"errors {r['errors']}")
        for s in started:
            if not s.alive():
                notes.append(f"asgi: {s.kind} died (log {s.logpath}): {s.log_tail(300)!r}")
    finally:
        lab.stop_servers()
    return results


_PROBE = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    print(r.status, r.headers["content-type"], r.read().decode())
"""


def _check_serves_starlette(lab, server):
    """Starlette's PlainTextResponse says its charset (the raw ASGI hello does not): the
    server runs this module's app, not bench/baselines/hello_apps.py's."""
    r = lab.run_client([sys.executable, "-c", _PROBE, server.url], timeout=30)
    if r.stdout.strip() != "200 text/plain; charset=utf-8 Hello, World!":
        raise RuntimeError(f"{server.kind} does not serve {APP}: {r.stdout!r} {r.stderr!r}")


def _median(runs, key):
    vals = _ok(runs, key)
    return statistics.median(vals) if vals else None


def _ok(runs, key):
    return [r[key] for r in runs if r.get(key) is not None and r.get("errors", 0) == 0]


def table(results, servers=SERVERS):
    """A Markdown table: per server, per scenario the median req/s (min-max: on a busy
    machine the spread says how far to trust it), its ratio to uvicorn's, and the
    server's CPU us per request (steadier than req/s when others share the cores)."""
    head = ["server"]
    for sc in SCENARIOS:
        t = "keep-alive" if sc == "keepalive" else "Connection: close"
        head += [f"{t} req/s (min-max)", "vs uvicorn", "us/req"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref = {sc: _median(results.get(sc, {}).get("uvicorn", []), "rps") for sc in SCENARIOS}
    for kind in servers:
        row = [TITLES.get(kind, kind)]
        for sc in SCENARIOS:
            runs = results.get(sc, {}).get(kind, [])
            rps, us = _median(runs, "rps"), _median(runs, "server_us_per_req")
            ok = _ok(runs, "rps")
            spread = f" ({min(ok) / 1000:.1f}-{max(ok) / 1000:.1f}k)" if len(ok) > 1 else ""
            row += [f"{rps / 1000:.1f}k{spread}" if rps else "-",
                    f"{rps / ref[sc]:.2f}x" if rps and ref[sc] else "-",
                    f"{us:.0f}" if us else "-"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def report_section(results, rounds, seconds, servers=SERVERS):
    return "\n".join([
        "", "## A Starlette app on each server (`python -m bench.asgi_apps`)", "",
        f"`bench/asgi_apps.py:app` (Starlette, `GET /` -> `Hello, World!`), one worker on "
        f"core 0, wrk -c50 on core 1; medians of {rounds} interleaved rounds of {seconds:g} s; "
        "us/req: the server's CPU per request (worker + ksoftirqd/0).", "",
        table(results, servers), ""])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.asgi_apps", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--servers", default=",".join(SERVERS),
                   help=f"comma list out of {', '.join(KNOWN)} (default: {', '.join(SERVERS)})")
    a = p.parse_args(argv)
    servers = [s for s in a.servers.split(",") if s]
    for s in servers:
        if s not in KNOWN:
            p.error(f"unknown server {s}")
    if os.geteuid() != 0:
        sys.exit("python -m bench.asgi_apps needs root (namespaces, raw sockets)")
    import psutil

    from bench.__main__ import ensure_tools
    from bench.lab import CLIENT_CORE, Lab
    ensure_tools(servers, syscall_tool="off")
    psutil.Process().cpu_affinity([CLIENT_CORE])   # the harness stays off the server's core
    notes = []
    tmp = tempfile.mkdtemp(prefix="fwbench-asgi-")
    lab = Lab(tmp)
    try:
        results = phase(lab, a.rounds, a.seconds, servers, notes)
    finally:
        lab.close()
    print(report_section(results, a.rounds, a.seconds, servers))
    for n in notes:
        print(f"- {n}")


if __name__ == "__main__":
    main()
