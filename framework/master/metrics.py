"""Prometheus text exposition (format 0.0.4) of the per-shard stats blocks.

The supervisor serves it on an ordinary kernel socket (``--metrics HOST:PORT``, loopback
unless told otherwise): metrics are read by something on the host, never by the clients
of the user-level stack, so they need no part of it, and a stuck worker cannot stop them.

Every counter of a shard's stats block (framework/shm/stats.py) becomes a sample with a
``shard`` label; names map as follows:

    drop.<reason>          -> framework_drops_total{shard="0",reason="<reason>"}   counter
    a name in GAUGES       -> framework_<name>{shard="0"}                          gauge
    anything else          -> framework_<name>_total{shard="0"}                    counter

with every character outside [a-zA-Z0-9_] turned into ``_`` ("port.rx" ->
framework_port_rx_total). ``heartbeat_ms`` (the worker's CLOCK_MONOTONIC at its last
loop publication, comparable across processes) also yields
framework_heartbeat_age_seconds, the one gauge to alert on for a stuck worker.

Rendering is a pure function of the snapshots (``render``); ``MetricsServer`` is a small
threaded HTTP server around a ``collect()`` callable.
"""
import http.server
import logging
import re
import socket
import threading
import time

from . import netns as nsmod

log = logging.getLogger("framework.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "framework_"

# stats-block names that are levels, not running totals
GAUGES = {"pid", "heartbeat_ms", "generation", "streams.open", "tcp.open", "tcp.established",
          "xshard.pending", "cpu_core", "started_ms"}
GAUGE_PREFIXES = ("state.", "conns.", "gauge.")

_BAD = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(name):
    n = _BAD.sub("_", name)
    if n[:1].isdigit():
        n = "_" + n
    return PREFIX + n


def _escape_label(v):
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(v):
    return str(v).replace("\\", "\\\\").replace("\n", "\\n")


def _labels(d):
    if not d:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in d.items()) + "}"


def _fmt(v):
    if isinstance(v, float):
        if v != v:
            return "NaN"
        if v in (float("inf"), float("-inf")):
            return "+Inf" if v > 0 else "-Inf"
        return repr(v)
    return str(int(v))


class Family:
    """One metric family: name, type, help, samples [(labels, value)]."""

    __slots__ = ("name", "type", "help", "samples")

    def __init__(self, name, type, help):
        self.name = name
        self.type = type
        self.help = help
        self.samples = []

    def add(self, labels, value):
        self.samples.append((labels, value))

    def lines(self):
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.type}"
        for labels, value in self.samples:
            yield f"{self.name}{_labels(labels)} {_fmt(value)}"


def is_gauge(name):
    return name in GAUGES or name.startswith(GAUGE_PREFIXES)


def families(snapshots, now_ms=None):
    """{shard: {name: value}} -> [Family], in a stable order."""
    fams = {}

    def fam(name, type, help):
        f = fams.get(name)
        if f is None:
            f = fams[name] = Family(name, type, help)
        return f

    for shard in sorted(snapshots):
        snap = snapshots[shard]
        sl = {"shard": str(shard)}
        for name, value in snap.items():
            if name.startswith("drop."):
                fam(PREFIX + "drops_total", "counter",
                    "frames/segments dropped, by reason (stats block drop.*)").add(
                    {"shard": str(shard), "reason": name[5:]}, value)
            elif is_gauge(name):
                fam(metric_name(name), "gauge", f"shard gauge {name}").add(sl, value)
            else:
                fam(metric_name(name) + "_total", "counter",
                    f"shard counter {name}").add(sl, value)
        hb = snap.get("heartbeat_ms")
        if hb and now_ms is not None:
            fam(PREFIX + "heartbeat_age_seconds", "gauge",
                "seconds since the shard's loop last published its counters").add(
                sl, max(0.0, (now_ms - hb) / 1000.0))
    return [fams[k] for k in sorted(fams)]


def render(snapshots, now_ms=None, extra=()):
    """The exposition text. ``extra``: more Family objects (supervisor-level metrics)."""
    out = []
    for f in list(families(snapshots, now_ms)) + list(extra):
        out.extend(f.lines())
    return "\n".join(out) + "\n"


def snapshot_blocks(blocks):
    """{shard: StatsBlock} -> {shard: {name: value}} (a block unmapped meanwhile is skipped)."""
    out = {}
    for shard, b in blocks.items():
        try:
            out[shard] = b.snapshot()
        except (ValueError, OSError):  # closed mapping
            pass
    return out


def render_blocks(blocks, extra=()):
    return render(snapshot_blocks(blocks), now_ms=time.monotonic() * 1000.0, extra=extra)


# --- the HTTP side -------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "framework-metrics"
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path not in ("/metrics", "/"):
            self._send(404, b"not found: try /metrics\n", "text/plain")
            return
        try:
            body = self.server.collect().encode()
        except Exception as e:  # never kill the server over one scrape
            log.exception("collecting metrics failed")
            self._send(500, f"collect failed: {e}\n".encode(), "text/plain")
            return
        self._send(200, body, CONTENT_TYPE)

    def _send(self, code, body, ctype):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        log.debug("metrics %s " + fmt, self.client_address[0], *args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, collect):
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.collect = collect
        super().__init__(addr, _Handler)


class MetricsServer:
    """``MetricsServer((host, port), collect).start()`` ... ``.close()``.

    ``collect()`` returns the exposition text. ``netns``: open the listening socket inside
    that network namespace (its serving thread stays there; the rest of the process does
    not move). ``start`` raises OSError if the address cannot be bound.
    """

    def __init__(self, addr, collect, netns=None):
        self.addr = addr
        self.collect = collect
        self.netns = netns
        self._srv = None
        self._thread = None

    @property
    def address(self):
        return self._srv.server_address[:2] if self._srv else None

    def start(self):
        ready = threading.Event()
        err = []

        def run():
            try:
                if self.netns:
                    nsmod.setns(self.netns)  # this thread only
                self._srv = _Server(self.addr, self.collect)
            except BaseException as e:
                err.append(e)
                ready.set()
                return
            ready.set()
            self._srv.serve_forever(poll_interval=0.25)

        self._thread = threading.Thread(target=run, name="fw-metrics", daemon=True)
        self._thread.start()
        ready.wait(10)
        if err:
            self._thread.join(1)
            e = err[0]
            raise OSError(getattr(e, "errno", None) or 0,
                          f"metrics {self.addr[0]}:{self.addr[1]}: {e}")
        return self

    def close(self):
        if self._srv is not None:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None


def supervisor_families(workers, deaths_total, started_at, now=None):
    """Families the supervisor adds: its workers' liveness and restarts.

    ``workers``: iterable of (shard, core, pid or None, alive: bool, restarts: int)."""
    now = time.time() if now is None else now
    up = Family(PREFIX + "worker_up", "gauge", "1 while the shard's worker process runs")
    core = Family(PREFIX + "worker_core", "gauge", "the core the shard's worker is pinned to")
    rs = Family(PREFIX + "worker_restarts_total", "counter",
                "times the shard's worker was restarted")
    for shard, c, pid, alive, restarts in workers:
        sl = {"shard": str(shard)}
        up.add(sl, 1 if alive else 0)
        core.add(sl, c)
        rs.add(sl, restarts)
    deaths = Family(PREFIX + "worker_deaths_total", "counter", "worker deaths of this run")
    deaths.add({}, deaths_total)
    uptime = Family(PREFIX + "uptime_seconds", "gauge", "seconds since the server started")
    uptime.add({}, round(max(0.0, now - started_at), 3))
    return [up, core, rs, deaths, uptime]
