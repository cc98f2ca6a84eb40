"""Markdown tables and the PNG chart of one benchmark run."""
import statistics

SERVER_TITLES = {
    "user-afpacket": "framework user stack (afpacket)",
    "user-tap": "framework user stack (tap)",
    "kernel": "framework --stack kernel",
    "uvloop": "uvloop + httptools",
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
    """core 0 busy (server process / softirq / other), medians."""
    busy = med([r["core0"] for r in runs])
    srv = med([r.get("server_share") for r in runs])
    sirq = med([r.get("softirq0") for r in runs])
    oth = med([r.get("other0") for r in runs])
    return (f"{_fmt(busy, '{:.0%}')} ({_fmt(srv, '{:.0%}')} / {_fmt(sirq, '{:.0%}')} / "
            f"{_fmt(oth, '{:.0%}')})")


def http_table(results, scenarios, servers, titles):
    lines = ["| scenario | server | req/s median (min-max) | vs uvloop | vs kernel | core 0 busy "
             "(server process / softirq / other) | core 1 busy | core-0 CPU us/req | errors | runs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for sc in scenarios:
        per = results.get(sc, {})
        base_uv = med([r["rps"] for r in per.get("uvloop", [])])
        base_k = med([r["rps"] for r in per.get("kernel", [])])
        for srv in servers:
            runs = per.get(srv, [])
            if not runs:
                continue
            rps = [r["rps"] for r in runs]
            m = med(rps)
            lines.append(
                f"| {titles[sc]} | {SERVER_TITLES[srv]} | {_range(rps)} | "
                f"{'-' if srv == 'uvloop' else _ratio(m, base_uv)} | "
                f"{'-' if srv == 'kernel' else _ratio(m, base_k)} | "
                f"{_split(runs)} | "
                f"{_fmt(med([r['core1'] for r in runs]), '{:.0%}')} | "
                f"{_fmt(med([r['us_per_req'] for r in runs]), '{:.1f}')} | "
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


def bulk_table(results, servers):
    lines = ["| direction | server | Gbit/s median (min-max) | vs uvloop | vs kernel | core 0 busy "
             "(server process / softirq / other) | core 1 busy | runs |", "|---|---|---|---|---|---|---|---|"]
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


def chart(path, results, bulk, scenarios, servers, titles):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(sc, titles[sc], "req/s", "rps", results.get(sc, {})) for sc in scenarios
              if sc != "latency" and results.get(sc)]
    for d in ("upload", "download"):
        if bulk.get(d):
            panels.append((d, f"bulk {d}, one connection", "Gbit/s", "gbps", bulk[d]))
    if not panels:
        return None
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    colors = {"user-afpacket": "#1f77b4", "user-tap": "#17becf", "kernel": "#ff7f0e",
              "uvloop": "#7f7f7f"}
    for ax, (key, title, unit, field, per) in zip(axes.flat, panels):
        names, meds, lo, hi, cols_ = [], [], [], [], []
        for srv in servers:
            vals = [r[field] for r in per.get(srv, []) if r.get(field) is not None]
            if not vals:
                continue
            m = statistics.median(vals)
            names.append(SERVER_TITLES[srv].replace("framework ", "").replace(" + httptools", ""))
            meds.append(m)
            lo.append(m - min(vals))
            hi.append(max(vals) - m)
            cols_.append(colors[srv])
        x = range(len(names))
        ax.bar(x, meds, yerr=[lo, hi], color=cols_, capsize=4)
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(unit)
        for i, m in enumerate(meds):
            ax.text(i, m, f"{m:,.0f}" if field == "rps" else f"{m:.2f}", ha="center",
                    va="bottom", fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("framework vs kernel sockets: one server core (0), load generator on core 1; "
                 "median, whiskers min-max", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
