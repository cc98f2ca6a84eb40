"""Short keep-alive requests on a worker that also serves one bulk download: latency
p50/p99 with the turn's TX batch ordered and bounded (TcpConfig.tx_burst, mTCP's TX
manager) and without (FRAMEWORK_TX_BURST=0: the order connections queued output in, no
bound), in interleaved rounds, medians.

    python -m bench.tx_priority [--rounds 5] [--seconds 5] [--burst 64] [--kind user-afpacket]

One `framework serve bench.app:app --cores 1` per setting (bench/lab.py: server on core 0,
client namespace on core 1); per round: a bulk download from bench/bulk.py's Source port
runs for the whole round while `wrk -t1 -c10 --latency` asks for / on keep-alive
connections. Both client programs share the client core, the same way for both settings.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench import loadgen
from bench.__main__ import ensure_tools
from bench.lab import Lab


def one_round(lab, server, seconds):
    dl = lab.popen_client([sys.executable, "-c",
                           "from bench import bulk; import sys; "
                           f"b, dt, g = bulk.download({server.ip!r}, {seconds + 2}, 1 << 40); "
                           "print(g)"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    time.sleep(1.0)              # the download at full speed before the probes start
    r = lab.run_client(loadgen.wrk_cmd(server.url, seconds, conns=10, latency=True),
                       timeout=seconds + 60)
    out, err = dl.communicate(timeout=seconds + 60)
    res = loadgen.parse_wrk(r.stdout + r.stderr)
    try:
        res["gbps"] = float(out.split()[-1])
    except (ValueError, IndexError):
        res["gbps"] = 0.0
        res["failed"] = err[-300:]
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.tx_priority")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--burst", type=int, default=64, help="tx_burst of the ordered setting")
    ap.add_argument("--kind", default="user-afpacket", choices=("user-afpacket", "user-tap"))
    args = ap.parse_args(argv)
    ensure_tools(servers=())
    settings = {"unordered (tx_burst=0)": "0", f"ordered (tx_burst={args.burst})": str(args.burst)}
    results = {name: [] for name in settings}
    with tempfile.TemporaryDirectory(prefix="fw-txprio-") as tmp:
        lab = Lab(tmp)
        try:
            servers = {}
            for name, burst in settings.items():
                os.environ["FRAMEWORK_TX_BURST"] = burst
                servers[name] = lab.start(args.kind, app="bench.app:app")
            os.environ.pop("FRAMEWORK_TX_BURST", None)
            for rnd in range(args.rounds):
                order = list(settings) if rnd % 2 == 0 else list(reversed(settings))
                for name in order:
                    res = one_round(lab, servers[name], args.seconds)
                    results[name].append(res)
                    print(f"round {rnd + 1} {name}: p50 {res.get('p50', 0) * 1e6:.0f} us, "
                          f"p99 {res.get('p99', 0) * 1e6:.0f} us, {res['rps']:.0f} req/s, "
                          f"bulk {res['gbps']:.2f} Gbit/s, errors {res['errors']}",
                          flush=True)
        finally:
            lab.close()
    print(f"\n## Short requests beside a bulk download ({args.kind}, medians of "
          f"{args.rounds} rounds, wrk -t1 -c10 keep-alive)\n")
    print("| TX batch | p50 | p99 | req/s | bulk Gbit/s |")
    print("|---|---|---|---|---|")
    for name, rs in results.items():
        med = {k: statistics.median(r.get(k, 0.0) for r in rs) for k in ("p50", "p99", "rps", "gbps")}
        print(f"| {name} | {med['p50'] * 1e6:.0f} us | {med['p99'] * 1e6:.0f} us | "
              f"{med['rps']:.0f} | {med['gbps']:.2f} |")


if __name__ == "__main__":
    main()
