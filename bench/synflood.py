"""A legitimate client's latency through a SYN flood, ours and Linux's side by side.

    python -m bench.synflood [--rounds 5] [--requests 1000] [--port-type tap|afpacket|both]

Two real ``framework serve`` servers, one worker each, each on its own link (the hidden
``--link-subnet``, as tests/integration/serve_helpers.py runs them): the user stack on
``--port-type`` (tap: bare SYNs on a queue of their own; afpacket: a ring of their own; both:
one server of each) and ``--stack kernel`` (Linux's TCP in the server's namespace, with
net.ipv4.tcp_syncookies=1 set there). For each round, each server, without and with a
flood: ``hping3 -S --flood`` from a spoofed address of the client's /24 (nobody answers
ARP for it), and meanwhile ``--requests`` sequential requests, a new connection each,
from the link's host side. Reported per case: the median over the rounds of the round's
p50 and p99 (whole request: connect, GET, response, close), the worst request seen, how
many requests failed and how many waited for a SYN retransmission (connect > 0.5 s).
The cases are interleaved within each round, so slow phases of a loaded machine hit all
of them alike.
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

from bench import apt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from serve_helpers import Server  # noqa: E402  (the tests' way to run a real server)

from tests.integration.test_synflood import RETRANSMITTED, _request  # noqa: E402


def measure(ip, n):
    """(sorted request seconds, failures, connects that waited for a retransmission)."""
    totals, failed, retrans = [], 0, 0
    for _ in range(n):
        try:
            c, t = _request(ip)
        except (OSError, AssertionError):
            failed += 1
            continue
        totals.append(t)
        retrans += c > RETRANSMITTED
    return sorted(totals), failed, retrans


def pct(xs, q):
    return xs[max(0, int(len(xs) * q) - 1)] if xs else float("nan")


def run_case(hping3, server, flood, n):
    proc = None
    if flood:
        spoofed = server.ip.rsplit(".", 1)[0] + ".77"
        proc = subprocess.Popen([hping3, "-S", "--flood", "-a", spoofed, "-p", "8080",
                                 server.ip], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    try:
        return measure(server.ip, n)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        time.sleep(0.5)          # embryonic connections and the flood's backlog drain


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--port-type", choices=("tap", "afpacket", "both"), default="both",
                    help="the user stack's port type (default: a server of each)")
    a = ap.parse_args(argv)
    hping3 = apt.ensure("hping3")
    servers = {}
    try:
        for pt in (("tap", "afpacket") if a.port_type == "both" else (a.port_type,)):
            servers[f"ours ({pt})"] = Server(app="apps.hello:app", cores=1, cwd=ROOT,
                                             extra=("--port-type", pt))
        k = servers["Linux (--stack kernel)"] = Server(app="apps.hello:app", cores=1,
                                                        extra=("--stack", "kernel"), cwd=ROOT)
        ns = k.link_names()[2]
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        "net.ipv4.tcp_syncookies=1"], check=True)
        for s in servers.values():
            for _ in range(20):
                _request(s.ip)
        rows = {(name, fl): [] for name in servers for fl in (False, True)}
        for r in range(a.rounds):
            for name, s in servers.items():
                for fl in (False, True):
                    rows[(name, fl)].append(run_case(hping3, s, fl, a.requests))
            print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    finally:
        for s in servers.values():
            s.cleanup()
    print(f"\n{a.requests} sequential requests (new connection each) per case, median of "
          f"{a.rounds} rounds; a 2-core machine shared with other work: timings are noisy")
    print(f"{'server':24} {'flood':6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'failed':>7} {'SYN rexmit':>10}")
    for (name, fl), res in rows.items():
        p50 = statistics.median(pct(t, 0.5) for t, _, _ in res) * 1e3
        p99 = statistics.median(pct(t, 0.99) for t, _, _ in res) * 1e3
        worst = max((t[-1] for t, _, _ in res if t), default=float("nan")) * 1e3
        print(f"{name:24} {'yes' if fl else 'no':6} {p50:8.2f} {p99:8.2f} {worst:8.1f} "
              f"{sum(f for _, f, _ in res):7d} {sum(x for _, _, x in res):10d}")


if __name__ == "__main__":
    main()
