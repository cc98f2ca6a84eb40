"""framework serve as an operator sees it: options from env/file/flags, /metrics, pcap,
framework stats, heartbeat timeout, SIGKILL recovery, HUP rolling restart, USR1."""
import http.client
import os
import random
import signal
import subprocess
import sys
import threading
import time

from prometheus_client.parser import text_string_to_metric_families
from scapy.all import IP, TCP, rdpcap

from integration.serve_helpers import ROOT, Server

from .conftest import in_netns

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "opsapp.py") + ":app"


def get(ip, port, path="/", timeout=2.0):
    c = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def until_answered(ip, port, deadline, path="/"):
    """Poll with fresh connections until one is answered; returns the time it was."""
    while time.monotonic() < deadline:
        try:
            if get(ip, port, path, timeout=0.25)[0] == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError("no answer")


class Load:
    """Background HTTP requests (new connection each, so both shards get some)."""

    def __init__(self, ip, port):
        self.ok = self.failed = 0
        self.stop = False
        self.t = threading.Thread(target=self.run, args=(ip, port), daemon=True)
        self.t.start()

    def run(self, ip, port):
        while not self.stop:
            try:
                st, _ = get(ip, port, timeout=1)
                self.ok += st == 200
            except OSError:
                self.failed += 1

    def close(self):
        self.stop = True
        self.t.join(5)


def test_options_metrics_pcap_stats(lab, tmp_path, monkeypatch):
    ns = lab.netns()
    pcap = tmp_path / "pcap"
    cfg = tmp_path / "fw.toml"
    mport = random.randrange(20000, 60000)   # the test namespace's own loopback: free
    cfg.write_text(f'port = 8081\npcap = "{pcap}"\nmetrics = "127.0.0.1:{mport}"\n'
                   f'stack = "kernel"\n')
    monkeypatch.setenv("FRAMEWORK_PORT", "8082")        # env beats the file
    monkeypatch.setenv("FRAMEWORK_STACK", "user")
    s = Server(app=APP, cores=2, extra=("--config", str(cfg), "--metrics-netns", ns), cwd=ROOT)
    try:
        assert ":8082 " in s.banner and "2 user-stack workers" in s.banner, s.banner
        shards = set()
        for _ in range(30):
            st, body = get(s.ip, 8082)
            assert st == 200 and body.startswith("v0 shard=")
            shards.add(body.split("=")[1].strip())
        assert shards == {"0", "1"}
        load = Load(s.ip, 8082)
        try:
            time.sleep(0.3)
            r = subprocess.run([sys.executable, "-m", "framework", "stats", "--pid", str(s.pid),
                                "--once"], capture_output=True, text=True, timeout=30,
                               env=dict(os.environ, PYTHONPATH=ROOT))
        finally:
            load.close()
        assert r.returncode == 0, r.stderr
        print("\n" + r.stdout)
        rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines()[2:5]}
        assert set(rows) == {"0", "1", "all"}, r.stdout
        assert float(rows["all"][3]) > 50           # rx pkt/s under load
        assert float(rows["all"][8]) > 10           # accepts/s
        assert load.ok > 20 and load.failed == 0

        # idle workers publish about once a second (up to two under load): read until the
        # last of the load's connections is in the counters
        deadline = time.monotonic() + 10
        while True:
            time.sleep(0.5)
            text = in_netns(ns, lambda: get("127.0.0.1", mport, "/metrics")[1])
            samples = {}
            for fam in text_string_to_metric_families(text):
                for smp in fam.samples:
                    samples[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
            opens = sum(v for (n, _), v in samples.items()
                        if n == "framework_tcp_passive_opens_total")
            if opens >= 30 + load.ok or time.monotonic() > deadline:
                break
        for k in ("0", "1"):
            assert samples[("framework_port_rx_total", (("shard", k),))] > 0
            assert samples[("framework_streams_accepted_total", (("shard", k),))] > 0
            assert samples[("framework_worker_up", (("shard", k),))] == 1
            assert samples[("framework_heartbeat_age_seconds", (("shard", k),))] < 2
        assert opens >= 30 + load.ok
        assert any(n == "framework_drops_total" for n, _ in samples)
        assert s.stop() == 0, s.stderr()
        assert s.leftovers() == []
    finally:
        s.cleanup()
    # every frame in and out: a full handshake with the host's client is in the capture
    files = sorted(os.listdir(pcap))
    assert "shard0.pcap" in files and "shard1.pcap" in files
    pkts = [p for f in files for p in rdpcap(str(pcap / f)) if TCP in p]
    syns = [p for p in pkts if str(p[TCP].flags) == "S" and p[TCP].dport == 8082]
    assert len(syns) >= 30
    syn = syns[0]
    sport = syn[TCP].sport
    synack = [p for p in pkts if str(p[TCP].flags) == "SA" and p[TCP].dport == sport
              and p[IP].src == s.ip]
    ack = [p for p in pkts if p[TCP].sport == sport and "A" in str(p[TCP].flags)
           and p[TCP].ack == synack[0][TCP].seq + 1]
    assert synack and synack[0][TCP].ack == syn[TCP].seq + 1 and ack


def test_sigkill_recovery_and_spinning_handler_timeout():
    s = Server(app=APP, cores=1, extra=("--timeout", "1"), cwd=ROOT)
    try:
        assert get(s.ip, 8080)[0] == 200
        w = s.wait_workers(1)[0]
        t0 = time.monotonic()
        w.kill()
        t1 = until_answered(s.ip, 8080, t0 + 10)
        print(f"\nSIGKILL of the worker -> first answered request: {(t1 - t0) * 1000:.0f} ms")
        assert t1 - t0 < 3
        w = s.wait_workers(1)[0]
        # a handler that never returns: no heartbeat for --timeout 1 s -> killed, restarted
        t0 = time.monotonic()
        try:
            get(s.ip, 8080, "/spin", timeout=0.5)
        except OSError:
            pass
        t1 = until_answered(s.ip, 8080, t0 + 10)
        print(f"spinning handler -> killed and answering again after {(t1 - t0):.2f} s")
        assert 0.9 < t1 - t0 < 5
        assert not w.is_running() or w.status() == "zombie"
        assert "no heartbeat" in s.stderr() and "killing it" in s.stderr()
        assert s.stop() == 0, s.stderr()
        assert s.leftovers() == []
    finally:
        s.cleanup()


def test_hup_rolling_restart_and_usr1_reopen(tmp_path, monkeypatch):
    vf = tmp_path / "version"
    vf.write_text("v1")
    log = tmp_path / "fw.log"
    monkeypatch.setenv("OPS_VERSION_FILE", str(vf))
    s = Server(app=APP, cores=2, extra=("--log-file", str(log)), cwd=ROOT)
    try:
        assert get(s.ip, 8080)[1].startswith("v1 ")
        before = {k: p.pid for k, p in s.wait_workers(2).items()}
        vf.write_text("v2")
        load = Load(s.ip, 8080)
        try:
            os.kill(s.pid, signal.SIGHUP)
            deadline = time.monotonic() + 20
            seen = set()
            while time.monotonic() < deadline and seen != {"0", "1"}:
                try:
                    st, body = get(s.ip, 8080, timeout=1)
                except OSError:
                    continue
                if body.startswith("v2 "):
                    seen.add(body.split("=")[1].strip())
            assert seen == {"0", "1"}, seen
            time.sleep(0.2)
        finally:
            load.close()
        # the server kept answering meanwhile (one shard at a time is replaced)
        print(f"\nduring the rolling restart: {load.ok} answered, {load.failed} failed")
        assert load.ok > 0, (load.ok, load.failed)
        after = {k: p.pid for k, p in s.wait_workers(2).items()}
        assert not set(after.values()) & set(before.values())
        text = log.read_text()
        assert "[master] WARNING framework.supervisor: SIGHUP" in text, text
        # USR1: log files reopened (logrotate moved the old one), nobody dies of it
        os.rename(log, tmp_path / "fw.log.1")
        os.kill(s.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not log.exists():           # the master reopened its log file
            assert time.monotonic() < deadline, "USR1: no new log file"
            time.sleep(0.01)
        time.sleep(0.2)                   # (and the workers had their USR1 too)
        assert {k: p.pid for k, p in s.wait_workers(2).items()} == after
        assert get(s.ip, 8080)[0] == 200
        # the next lines of the master and of a (restarted) worker land in the new file
        os.kill(after[0], signal.SIGKILL)
        s.wait_workers(2, exclude=(after[0],))
        until_answered(s.ip, 8080, time.monotonic() + 5)
        deadline = time.monotonic() + 10
        while True:                       # log lines are written a moment later
            new = log.read_text()
            if ("[master]" in new and "died" in new and "[shard 0]" in new
                    or time.monotonic() > deadline):
                break
            time.sleep(0.05)
        assert "[master]" in new and "died" in new and "[shard 0]" in new, new
        assert "died" not in (tmp_path / "fw.log.1").read_text()
        assert s.stop() == 0, s.stderr()
        assert s.leftovers() == []
    finally:
        s.cleanup()
