"""Markdown tables and the PNG chart of one benchmark run."""
import statistics

SERVER_TITLES = {
    "user-afpacket": "framework user stack (afpacket)",
    "user-tap": "framework user stack (tap)",
    "kernel": "framework --stack kernel",
    "uvloop": "uvloop + httptools",
    "uvicorn": "uvicorn (uvloop, httptools), ASGI",
    "granian-asgi": "granian, ASGI",
    "granian-rsgi": "granian, RSGI",
    "nginx": "nginx, 1 worker",
}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _fmt(x, spec="{:,.0f}"):
    return "-" if x is None else spec.format(x)


def _ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}x"


def _range(xs, spec="{:,.0f}"):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return f"{spec.format(statistics.median(xs))} ({spec.format(min(xs))}-{spec.format(max(xs))})"


def _split(runs):
    """core 0 busy (server tasks / rest; softirq share), medians."""
    busy = med([r["core0"] for r in runs])
    srv = med([r.get("server_share") for r in runs])
    sirq = med([r.get("softirq0") for r in runs])
    oth = med([r.get("other0") for r in runs])
    return (f"{_fmt(busy, '{:.0%}')} ({_fmt(srv, '{:.0%}')} / {_fmt(oth, '{:.0%}')}; "
            f"softirq {_fmt(sirq, '{:.0%}')})")


def syscalls_per_req(syscalls, sc, srv):
    r = (syscalls or {}).get(sc, {}).get(srv)
    return r.get("per_req") if r else None


def http_table(results, scenarios, servers, titles, syscalls=None):
    lines = ["| scenario | server | req/s median (min-max) | syscalls/req | vs uvloop | vs nginx | "
             "vs kernel | core 0 busy (server tasks / rest; softirq) | core 1 busy | core-0 CPU "
             "us/req | server CPU us/req | CPU efficiency vs uvloop | errors | runs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for sc in scenarios:
        per = results.get(sc, {})
        base_uv = med([r["rps"] for r in per.get("uvloop", [])])
        base_ng = med([r["rps"] for r in per.get("nginx", [])])
        base_k = med([r["rps"] for r in per.get("kernel", [])])
        cpu_uv = med([r.get("server_us_per_req") for r in per.get("uvloop", [])])
        for srv in servers:
            runs = per.get(srv, [])
            if not runs:
                continue
            rps = [r["rps"] for r in runs]
            m = med(rps)
            lines.append(
                f"| {titles[sc]} | {SERVER_TITLES[srv]} | {_range(rps)} | "
                f"{_fmt(syscalls_per_req(syscalls, sc, srv), '{:.2f}')} | "
                f"{'-' if srv == 'uvloop' else _ratio(m, base_uv)} | "
                f"{'-' if srv == 'nginx' else _ratio(m, base_ng)} | "
                f"{'-' if srv == 'kernel' else _ratio(m, base_k)} | "
                f"{_split(runs)} | "
                f"{_fmt(med([r['core1'] for r in runs]), '{:.0%}')} | "
                f"{_fmt(med([r['us_per_req'] for r in runs]), '{:.1f}')} | "
                f"{_fmt(med([r.get('server_us_per_req') for r in runs]), '{:.1f}')} | "
                f"{'-' if srv == 'uvloop' else _ratio(cpu_uv, med([r.get('server_us_per_req') for r in runs]))} | "
                f"{sum(max(0, r['errors']) for r in runs)}"
                f"{' (failed runs: %d)' % sum(1 for r in runs if r['errors'] < 0) if any(r['errors'] < 0 for r in runs) else ''} | "
                f"{len(runs)} |")
    return "\n".join(lines)


def latency_table(runs_by_server, servers):
    lines = ["| server | p50 | p99 | req/s | runs |", "|---|---|---|---|---|"]
    for srv in servers:
        runs = runs_by_server.get(srv, [])
        if not runs:
            continue
        p50 = med([r.get("p50") for r in runs])
        p99 = med([r.get("p99") for r in runs])
        lines.append(f"| {SERVER_TITLES[srv]} | {_fmt(p50 and p50 * 1e6, '{:,.0f} us')} | "
                     f"{_fmt(p99 and p99 * 1e6, '{:,.0f} us')} | "
                     f"{_fmt(med([r['rps'] for r in runs]))} | {len(runs)} |")
    return "\n".join(lines)


def syscall_table(syscalls, servers, titles, top=8):
    """Syscalls per request of each server's worker (all threads), per scenario, with the
    most frequent calls named."""
    scen = [sc for sc in syscalls if syscalls[sc]]
    lines = ["| scenario | server | syscalls/req | requests counted | most frequent (per request) |",
             "|---|---|---|---|---|"]
    for sc in scen:
        for srv in servers:
            r = syscalls[sc].get(srv)
            if not r:
                continue
            if r.get("per_req") is None:
                lines.append(f"| {titles[sc]} | {SERVER_TITLES[srv]} | - | - | failed: "
                             f"{str(r.get('failed', ''))[:100]} |")
                continue
            named = sorted(r.get("by_name_per_req", {}).items(), key=lambda kv: -kv[1])
            shown = [(k, v) for k, v in named[:top] if v >= 0.005]
            rest = r["per_req"] - sum(v for _, v in shown)
            parts = [f"{k} {v:.2f}" for k, v in shown]
            if rest >= 0.005:
                parts.append(f"rest {rest:.2f}")
            lines.append(f"| {titles[sc]} | {SERVER_TITLES[srv]} | {r['per_req']:.2f} | "
                         f"{r['requests']:,} | {', '.join(parts) or '-'} |")
    return "\n".join(lines)


def bulk_table(results, servers):
    lines = ["| direction | server | Gbit/s median (min-max) | vs uvloop | vs kernel | core 0 busy "
             "(server tasks / rest; softirq) | core 1 busy | runs |", "|---|---|---|---|---|---|---|---|"]
    for d, title in (("upload", "client -> server (server receives)"),
                     ("download", "server -> client (server sends)")):
        per = results.get(d, {})
        bu = med([r["gbps"] for r in per.get("uvloop", [])])
        bk = med([r["gbps"] for r in per.get("kernel", [])])
        for srv in servers:
            runs = per.get(srv, [])
            if not runs:
                continue
            g = [r["gbps"] for r in runs]
            m = med(g)
            lines.append(f"| {title} | {SERVER_TITLES[srv]} | {_range(g, '{:.2f}')} | "
                         f"{'-' if srv == 'uvloop' else _ratio(m, bu)} | "
                         f"{'-' if srv == 'kernel' else _ratio(m, bk)} | "
                         f"{_split(runs)} | "
                         f"{_fmt(med([r['core1'] for r in runs]), '{:.0%}')} | {len(runs)} |")
    return "\n".join(lines)


def idle_table(idle, servers):
    lines = ["| server | idle connections held | worker RSS before -> after (MB) | bytes per "
             "connection | still open after wrk | wrk -c50 req/s meanwhile | core-0 CPU us/req |",
             "|---|---|---|---|---|---|---|"]
    for srv in servers:
        r = idle.get(srv)
        if not r:
            continue
        if "rss0" not in r:
            lines.append(f"| {SERVER_TITLES[srv]} | {r.get('held', 0)} | failed: "
                         f"{str(r.get('failed', ''))[:80]} | | | | |")
            continue
        lines.append(f"| {SERVER_TITLES[srv]} | {r['held']:,} | {r['rss0'] / 1e6:.1f} -> "
                     f"{r['rss1'] / 1e6:.1f} | {_fmt(r['bytes_per_conn'])} | "
                     f"{_fmt(r.get('still_open'), '{:,}')} | {_fmt(r.get('rps'))} | "
                     f"{_fmt(r.get('us_per_req'), '{:.1f}')} |")
    return "\n".join(lines)


COLORS = {"user-afpacket": "#1f77b4", "user-tap": "#17becf", "kernel": "#ff7f0e",
          "uvloop": "#7f7f7f", "uvicorn": "#bcbd22", "granian-asgi": "#9467bd",
          "granian-rsgi": "#e377c2", "nginx": "#2ca02c"}


def _short(srv):
    return {"user-afpacket": "user/afpacket", "user-tap": "user/tap", "kernel": "--stack kernel",
            "uvloop": "uvloop", "uvicorn": "uvicorn", "granian-asgi": "granian asgi",
            "granian-rsgi": "granian rsgi", "nginx": "nginx"}[srv]


def _bars(ax, per, servers, field, title, unit, fmt):
    names, meds, lo, hi, cols = [], [], [], [], []
    for srv in servers:
        vals = [r[field] for r in per.get(srv, []) if r.get(field) is not None]
        if not vals:
            continue
        m = statistics.median(vals)
        names.append(_short(srv))
        meds.append(m)
        lo.append(m - min(vals))
        hi.append(max(vals) - m)
        cols.append(COLORS[srv])
    x = list(range(len(names)))
    ax.bar(x, meds, yerr=[lo, hi], color=cols, capsize=4)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(unit, fontsize=8)
    for i, m in enumerate(meds):
        ax.text(i, m, fmt.format(m), ha="center", va="bottom", fontsize=7)


def _grouped(ax, groups, servers, title, unit, log=False, fmt=None):
    """groups: [(label, {srv: value})]; one bar per server in each group, labelled with
    ``fmt`` if given."""
    n = len(servers)
    w = 0.8 / max(n, 1)
    for k, srv in enumerate(servers):
        xs, ys = [], []
        for g, (label, vals) in enumerate(groups):
            if vals.get(srv) is not None:
                xs.append(g - 0.4 + w * (k + 0.5))
                ys.append(vals[srv])
        ax.bar(xs, ys, width=w, color=COLORS[srv], label=_short(srv))
        if fmt:
            for x, y in zip(xs, ys):
                ax.text(x, y, fmt.format(y), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(list(range(len(groups))))
    ax.set_xticklabels([g[0] for g in groups], fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(unit, fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=6, ncol=2 if n > 4 else 1)


def chart(path, results, bulk, scenarios, servers, titles, syscalls=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for sc in scenarios:
        if sc != "latency" and results.get(sc):
            panels.append(("bars", results[sc], "rps", titles[sc] + " (req/s)", "req/s", "{:,.0f}"))
    cpu_groups = []
    for sc in scenarios:
        if sc != "latency" and results.get(sc):
            cpu_groups.append((sc, {srv: med([r.get("server_us_per_req") for r in runs])
                                    for srv, runs in results[sc].items()}))
    if cpu_groups:
        panels.append(("grouped", cpu_groups, "server CPU per request (worker + ksoftirqd/0 run "
                       "time), lower is better", "us"))
    sys_groups = [(sc, {srv: r.get("per_req") for srv, r in per.items()})
                  for sc, per in (syscalls or {}).items() if per]
    if sys_groups:
        panels.append(("grouped", sys_groups, "syscalls per request of the server's worker "
                       "(all threads), lower is better", "syscalls", False, "{:.2f}"))
    if results.get("latency"):
        lat = results["latency"]
        panels.append(("grouped", [(p, {srv: (med([r.get(p) for r in runs]) or 0) * 1e3
                                        for srv, runs in lat.items()}) for p in ("p50", "p99")],
                       titles["latency"] + ": p50 / p99 (log scale)", "ms", True))
    for d in ("upload", "download"):
        if bulk.get(d):
            panels.append(("bars", bulk[d], "gbps", f"bulk {d}, one connection (Gbit/s)",
                           "Gbit/s", "{:.2f}"))
    if not panels:
        return None
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    width = 5.4 if len(servers) <= 4 else 6.6
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.8 * rows), squeeze=False)
    for ax, p in zip(axes.flat, panels):
        if p[0] == "bars":
            _bars(ax, p[1], servers, p[2], p[3], p[4], p[5])
        else:
            _grouped(ax, p[1], servers, *p[2:])
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("framework vs kernel-socket servers: server on core 0, load generator on "
                 "core 1; medians, whiskers min-max", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
