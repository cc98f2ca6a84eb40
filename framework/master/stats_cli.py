"""``framework stats`` and ``framework links``: looking at runs from the outside.

``framework stats [--pid PID] [--once] [--interval S]`` attaches (read-only) to the
per-shard stats blocks of a running server in /dev/shm and prints one row per shard,
refreshed every interval: packets and Mbit/s in and out, open connections, accepts/s,
retransmits, drops, CPU% (psutil) and the age of the shard's last heartbeat. Rates are
differences between two snapshots, so ``--once`` samples for one interval and prints
one table (for scripts). Drops are listed by reason below the table.

``framework links [--clean]`` lists the links, namespaces and shm segments of framework
runs, live or left behind by dead ones; ``--clean`` removes those whose owner is dead
(the same rules a starting supervisor applies: framework/master/link.py cleanup_stale and
framework/shm/naming.py cleanup_stale).
"""
import argparse
import os
import sys
import time

import psutil

from framework.shm import StatsBlock, naming

from . import link as linkmod
from . import netns

ROW_COLUMNS = ("shard", "pid", "cpu%", "rx pkt/s", "tx pkt/s", "rx Mb/s", "tx Mb/s", "conns",
               "accept/s", "retrans", "drops", "hb age")


class StatsError(Exception):
    pass


# --- finding a run -------------------------------------------------------------------

def live_runs():
    """[(runid, supervisor pid)] of runs with stats blocks and a live supervisor."""
    out = []
    for runid in naming.list_runs():
        pid = naming.runid_pid(runid)
        if not naming.pid_alive(pid):
            continue
        if any(os.path.basename(p).startswith(f"{naming.PREFIX}.{runid}.stats.")
               for p in naming.run_files(runid)):
            out.append((runid, pid))
    return out


def pick_run(pid=None, runid=None):
    if runid:
        return runid
    runs = live_runs()
    if pid is not None:
        runs = [r for r in runs if r[1] == pid]
        if not runs:
            raise StatsError(f"no running framework server with pid {pid}")
    if not runs:
        raise StatsError("no running framework server found (no stats blocks in /dev/shm)")
    if len(runs) > 1:
        pids = ", ".join(str(p) for _, p in runs)
        raise StatsError(f"several servers are running (pids {pids}): pick one with --pid")
    return runs[0][0]


# --- sampling --------------------------------------------------------------------------

class Sampler:
    """Snapshots of a run's stats blocks and the workers' CPU times."""

    def __init__(self, runid):
        self.runid = runid
        self.blocks = StatsBlock.attach_all(runid)
        if not self.blocks:
            raise StatsError(f"run {runid}: no stats blocks")
        self._procs = {}

    def _cpu(self, pid):
        if not pid:
            return None
        p = self._procs.get(pid)
        try:
            if p is None:
                p = self._procs[pid] = psutil.Process(pid)
            t = p.cpu_times()
            return t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def sample(self):
        now = time.monotonic()
        snaps = {k: b.snapshot() for k, b in self.blocks.items()}
        cpu = {k: self._cpu(s.get("pid", 0)) for k, s in snaps.items()}
        return now, snaps, cpu

    def close(self):
        for b in self.blocks.values():
            b.close()


def _g(s, name):
    return s.get(name, 0)


def rows(a, b):
    """Per-shard figures from two samples (t, snaps, cpu); plus a total row."""
    t0, s0, c0 = a
    t1, s1, c1 = b
    dt = max(t1 - t0, 1e-6)
    out = []
    for k in sorted(s1):
        x, y = s0.get(k, {}), s1[k]

        def rate(name):
            return max(0, _g(y, name) - _g(x, name)) / dt

        def has(name):
            return name in y

        cpu = None
        if c0.get(k) is not None and c1.get(k) is not None and _g(x, "pid") == _g(y, "pid"):
            cpu = 100.0 * (c1[k] - c0[k]) / dt
        drops = {n[5:]: v for n, v in y.items() if n.startswith("drop.") and v}
        for n in ("port.rx_drops", "port.tx_drops", "fwd.drops"):
            if y.get(n):
                drops[n] = y[n]
        hb = _g(y, "heartbeat_ms")
        out.append({
            "shard": k, "pid": _g(y, "pid"), "cpu%": cpu,
            "rx pkt/s": rate("port.rx"), "tx pkt/s": rate("port.tx"),
            "rx Mb/s": rate("port.rx_bytes") * 8e-6 if has("port.rx_bytes") else None,
            "tx Mb/s": rate("port.tx_bytes") * 8e-6 if has("port.tx_bytes") else None,
            "conns": _g(y, "streams.open"), "accept/s": rate("streams.accepted"),
            "retrans": _g(y, "tcp.retransmits"), "drops": sum(drops.values()),
            "hb age": (t1 * 1000 - hb) / 1000 if hb else None,
            "_drops": drops,
            "_states": {n[6:]: v for n, v in y.items() if n.startswith("state.")},
        })
    return out


def _fmt(v, col):
    if v is None:
        return "-"
    if col in ("shard", "pid", "conns", "retrans", "drops"):
        return str(int(v))
    if col == "hb age":
        return f"{v:.1f}s"
    if col in ("rx Mb/s", "tx Mb/s"):
        return f"{v:.2f}"
    if col == "cpu%":
        return f"{v:.0f}"
    return f"{v:.0f}"


def render(rs, runid=None):
    """The table (a string ending in a newline)."""
    total = {"shard": "all", "pid": None}
    for col in ROW_COLUMNS[2:]:
        vals = [r[col] for r in rs if r[col] is not None and col != "hb age"]
        total[col] = sum(vals) if vals else None
    total["hb age"] = max((r["hb age"] for r in rs if r["hb age"] is not None), default=None)
    table = [list(ROW_COLUMNS)]
    for r in rs:
        table.append([_fmt(r[c], c) for c in ROW_COLUMNS])
    if len(rs) > 1:
        table.append(["all"] + [_fmt(total[c], c) for c in ROW_COLUMNS[1:]])
    widths = [max(len(row[i]) for row in table) for i in range(len(ROW_COLUMNS))]
    lines = []
    if runid:
        lines.append(f"run {runid}  {time.strftime('%H:%M:%S')}")
    for row in table:
        lines.append("  ".join(cell.rjust(w) for cell, w in zip(row, widths)).rstrip())
    states = {}
    for r in rs:
        for st, v in r["_states"].items():
            states[st] = states.get(st, 0) + v
    if any(states.values()):
        lines.append("connections by state: " + ", ".join(
            f"{st} {v}" for st, v in sorted(states.items()) if v))
    reasons = sorted({n for r in rs for n in r["_drops"]})
    if reasons:
        lines.append("drops by reason:")
        for n in reasons:
            per = "  ".join(f"shard {r['shard']}: {r['_drops'].get(n, 0)}" for r in rs)
            lines.append(f"  {n:<28} {per}")
    return "\n".join(lines) + "\n"


def stats_main(args, out=sys.stdout):
    try:
        runid = pick_run(args.pid, args.run)
        sampler = Sampler(runid)
    except (StatsError, ValueError, OSError) as e:
        print(f"framework stats: {e}", file=sys.stderr)
        return 1
    try:
        prev = sampler.sample()
        while True:
            time.sleep(args.interval)
            cur = sampler.sample()
            text = render(rows(prev, cur), runid)
            if args.once:
                out.write(text)
                out.flush()
                return 0
            out.write("\x1b[H\x1b[2J" + text if out.isatty() else text + "\n")
            out.flush()
            prev = cur
            if not naming.pid_alive(naming.runid_pid(runid)):
                print("framework stats: the server has stopped", file=sys.stderr)
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        sampler.close()


# --- links -------------------------------------------------------------------------------

def find_leftovers():
    """[(kind, name, owner pid, alive)] of framework links, namespaces and shm runs."""
    out = []
    for name in netns.list_netns(linkmod.NS_PREFIX):
        m = linkmod._NS_RE.match(name)
        if m:
            pid = int(m.group(1), 16)
            out.append(("netns", name, pid, linkmod._owner_alive(pid)))
    try:
        ifnames = sorted(os.listdir("/sys/class/net"))
    except OSError:
        ifnames = []
    for ifname in ifnames:
        m = linkmod._LINK_RE.match(ifname)
        if m and linkmod._link_alias(ifname).startswith(linkmod.ALIAS_PREFIX):
            pid = int(m.group(1), 16)
            out.append(("link", ifname, pid, linkmod._owner_alive(pid)))
    for runid in naming.list_runs():
        pid = naming.runid_pid(runid)
        n = len(naming.run_files(runid))
        out.append(("shm", f"{runid} ({n} file{'s' if n != 1 else ''})", pid,
                    naming.pid_alive(pid)))
    return out


def links_main(args, out=sys.stdout):
    items = find_leftovers()
    if not items:
        print("no framework links, namespaces or shm segments", file=out)
    else:
        w = max(len(n) for _, n, _, _ in items)
        print(f"{'kind':<6} {'name':<{w}} {'owner':>8}  state", file=out)
        for kind, name, pid, alive in items:
            print(f"{kind:<6} {name:<{w}} {pid:>8}  {'running' if alive else 'dead (stale)'}",
                  file=out)
    if args.clean:
        removed = list(linkmod.cleanup_stale())
        for runid, paths in naming.cleanup_stale().items():
            removed.append(f"shm {runid} ({len(paths)} files)")
        if removed:
            print("removed: " + ", ".join(removed), file=out)
        else:
            print("nothing stale to remove", file=out)
    return 0


# --- argparse glue (the CLI adds these as subcommands) ------------------------------------

def add_stats_parser(sub):
    p = sub.add_parser("stats", help="live per-shard table of a running server",
                       description="Per-shard counters of a running server, from its shm "
                                   "stats blocks.")
    p.add_argument("--pid", type=int, help="the supervisor's pid (when several servers run)")
    p.add_argument("--run", help=argparse.SUPPRESS)
    p.add_argument("--once", action="store_true", help="print one table and exit")
    p.add_argument("--interval", type=float, default=1.0, metavar="S",
                   help="seconds between refreshes (default 1)")
    return p


def add_links_parser(sub):
    p = sub.add_parser("links", help="links, namespaces and shm segments of framework runs",
                       description="List framework links, namespaces and shm segments; "
                                   "--clean removes those of dead runs.")
    p.add_argument("--clean", action="store_true", help="remove what dead runs left behind")
    return p


def main(argv=None):
    p = argparse.ArgumentParser(prog="framework")
    sub = p.add_subparsers(dest="command", required=True)
    add_stats_parser(sub)
    add_links_parser(sub)
    args = p.parse_args(argv)
    if args.command == "stats":
        return stats_main(args)
    return links_main(args)


if __name__ == "__main__":
    sys.exit(main())
