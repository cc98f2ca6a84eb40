"""framework.master.metrics: stats blocks -> Prometheus text, served on a kernel socket inside a
test namespace's own loopback, parsed strictly (prometheus_client + a line grammar)."""
import http.client
import re
import time

import multiprocess
from prometheus_client.parser import text_string_to_metric_families

from framework.master.metrics import MetricsServer, render, render_blocks
from framework.shm import StatsBlock

from .conftest import in_netns

NAMES = ("pid", "heartbeat_ms", "port.rx", "port.tx", "streams.open", "drop.ipv4.bad_checksum",
         "drop.tcp.no_listener", "tcp.retransmits")

# one sample line of the 0.0.4 text format: name{label="v",...} value
_SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
                     r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? '
                     r'(-?[0-9.e+]+|NaN|[+-]Inf)$')
_META = re.compile(r"^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* "
                   r"(counter|gauge|histogram|summary|untyped))$")


def strict_lines(text):
    assert text.endswith("\n")
    typed = set()
    for line in text.splitlines():
        if line.startswith("#"):
            assert _META.match(line), line
            if line.startswith("# TYPE"):
                name = line.split()[2]
                assert name not in typed, f"family {name} declared twice"
                typed.add(name)
        else:
            assert _SAMPLE.match(line), line
            assert line.split("{")[0].split(" ")[0] in typed, line


def worker(runid, shard, n):
    import os
    b = StatsBlock.attach(runid, shard)
    b.update({"pid": os.getpid(), "heartbeat_ms": int(time.monotonic() * 1000),
              "port.rx": 100 * n, "port.tx": 90 * n, "streams.open": n,
              "drop.ipv4.bad_checksum": n, "tcp.retransmits": 7})


def samples(text):
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = (fam.type, s.value)
    return out


def test_render_pure():
    text = render({0: {"port.rx": 5, "pid": 42, "drop.arp.short": 1, "heartbeat_ms": 1000},
                   1: {"port.rx": 6, "pid": 43, "drop.arp.short": 0, "heartbeat_ms": 900}},
                  now_ms=2000)
    strict_lines(text)
    s = samples(text)
    assert s[("framework_port_rx_total", (("shard", "1"),))] == ("counter", 6)
    assert s[("framework_pid", (("shard", "0"),))] == ("gauge", 42)
    assert s[("framework_drops_total", (("reason", "arp.short"), ("shard", "0")))][1] == 1
    assert s[("framework_heartbeat_age_seconds", (("shard", "1"),))] == ("gauge", 1.1)


def test_served_from_real_stats_blocks(lab, runid):
    blocks = {k: StatsBlock.create(runid, k, NAMES) for k in range(2)}
    ctx = multiprocess.get_context("fork")
    procs = [ctx.Process(target=worker, args=(runid, k, k + 1)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    ns = lab.netns()
    srv = MetricsServer(("127.0.0.1", 0), lambda: render_blocks(blocks), netns=ns).start()
    try:
        host, port = srv.address
        assert host == "127.0.0.1"

        def get(path):
            c = http.client.HTTPConnection(host, port, timeout=5)
            c.request("GET", path)
            r = c.getresponse()
            body = r.read().decode()
            c.close()
            return r.status, r.getheader("Content-Type"), body

        status, ctype, text = in_netns(ns, get, "/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        strict_lines(text)
        s = samples(text)
        for k, p in enumerate(procs):
            lab_ = (("shard", str(k)),)
            assert s[("framework_port_rx_total", lab_)] == ("counter", 100 * (k + 1))
            assert s[("framework_port_tx_total", lab_)] == ("counter", 90 * (k + 1))
            assert s[("framework_pid", lab_)] == ("gauge", p.pid)
            assert s[("framework_streams_open", lab_)] == ("gauge", k + 1)
            assert s[("framework_tcp_retransmits_total", lab_)] == ("counter", 7)
            assert s[("framework_drops_total", (("reason", "ipv4.bad_checksum"),) + lab_)][1] == k + 1
            age = s[("framework_heartbeat_age_seconds", lab_)][1]
            assert 0 <= age < 30
        assert in_netns(ns, get, "/nope")[0] == 404
    finally:
        srv.close()
        for b in blocks.values():
            b.close()


def test_bind_error_is_an_oserror(lab):
    ns = lab.netns()
    a = MetricsServer(("127.0.0.1", 0), lambda: "", netns=ns).start()
    try:
        b = MetricsServer(("127.0.0.1", a.address[1]), lambda: "", netns=ns)
        try:
            b.start()
            raise AssertionError("second bind succeeded")
        except OSError as e:
            assert "metrics 127.0.0.1:" in str(e)
    finally:
        a.close()


def test_supervisor_families_parse():
    from framework.master.metrics import supervisor_families
    text = render({0: {"port.rx": 1}}, extra=supervisor_families(
        [(0, 0, 123, True, 2), (1, 1, None, False, 0)], 3, started_at=100.0, now=160.5))
    strict_lines(text)
    s = samples(text)
    assert s[("framework_worker_up", (("shard", "1"),))] == ("gauge", 0)
    assert s[("framework_worker_restarts_total", (("shard", "0"),))] == ("counter", 2)
    assert s[("framework_worker_deaths_total", ())] == ("counter", 3)
    assert s[("framework_uptime_seconds", ())] == ("gauge", 60.5)
