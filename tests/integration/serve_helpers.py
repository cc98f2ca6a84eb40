"""Run ``framework serve`` as a real subprocess on its own default link.

Each server gets a /24 of its own inside 198.18.0.0/15 through the hidden
``--link-subnet`` flag (the default 198.18.0.0/24 stays free for a user's own run, and
parallel tests do not collide); its link and namespace names carry its pid. Whatever
happens, teardown stops the server and removes anything it left behind.
"""
import glob
import math
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from framework.master import link as linkmod
from framework.master import netns

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
START_TIMEOUT = 30.0


def dead_pid():
    """A pid no process has, far behind the pid the kernel hands out next (pids are
    given in increasing order), so it is not reused while the test runs."""
    with open("/proc/sys/kernel/pid_max") as f:
        top = int(f.read())
    last = int(open("/proc/sys/kernel/ns_last_pid").read())
    while True:
        pid = (last - random.randint(top // 4, top // 2)) % top
        if pid > 300 and not os.path.exists(f"/proc/{pid}"):
            return pid


def free_subnet():
    for _ in range(100):
        net = f"198.18.{random.randint(100, 250)}.0/24"
        if not linkmod.subnet_in_use(linkmod.parse_subnet(net)):
            return net
    raise RuntimeError("no free /24 in 198.18.100-250")


class Server:
    def __init__(self, app="pingapp:app", cores=1, extra=(), cwd=HERE, subnet="auto", env=None):
        self.cores = cores
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, ROOT]), **(env or {})}
        for attempt in range(3):
            # a concurrent run may take the same /24 between our look and its use:
            # the server then refuses with exit 2 ("already in use"); take another
            self._start(app, cores, extra, cwd, free_subnet() if subnet == "auto" else subnet,
                        env)
            try:
                self.banner = self._read_banner()
                return
            except AssertionError:
                if subnet != "auto" or "already in use" not in self.stderr() or attempt == 2:
                    raise
                self.proc.stdout.close()
                self.errfile.close()

    def _start(self, app, cores, extra, cwd, subnet, env):
        self.subnet = subnet
        if self.subnet:
            prefix = self.subnet[:-len("0/24")]       # "198.18.N."
            self.host_ip, self.ip = prefix + "1", prefix + "2"
            extra = ("--link-subnet", self.subnet, *extra)
        self.errfile = tempfile.TemporaryFile(mode="w+")
        self.cmd = [sys.executable, "-m", "framework", "serve", app, "--cores", str(cores),
                    "--log-level", "info", *extra]
        self.proc = subprocess.Popen(self.cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=self.errfile, text=True)
        self.pid = self.proc.pid

    def _read_banner(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                line = self.proc.stdout.readline()
                if line.startswith("serving "):
                    return line.strip()
                if not line and self.proc.poll() is not None:
                    break
            elif self.proc.poll() is not None:
                break
        raise AssertionError(f"server did not start: rc={self.proc.poll()}\n{self.stderr()}")

    def stderr(self):
        self.errfile.seek(0)
        return self.errfile.read()

    def workers(self):
        """{shard: psutil.Process} of the live workers."""
        out = {}
        try:
            kids = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return out
        for p in kids:
            try:
                m = re.match(r"fw-shard-(\d+)$", p.name())
                if m and p.status() != psutil.STATUS_ZOMBIE:
                    out[int(m.group(1))] = p
            except psutil.NoSuchProcess:
                pass
        return out

    def wait_workers(self, n, timeout=5.0, exclude=()):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            w = self.workers()
            if len(w) == n and not any(p.pid in exclude for p in w.values()):
                return w
            time.sleep(0.005)
        raise AssertionError(f"expected {n} workers, have {self.workers()}")

    def link_names(self):
        short = f"{self.pid:x}"
        return f"fw{short}h", f"fw{short}t", f"fw-{short}"

    def leftovers(self):
        """Links, namespaces and /dev/shm files of this run that still exist."""
        h, t, ns = self.link_names()
        left = [x for x in (h, t) if netns.link_exists(x)]
        if netns.netns_exists(ns):
            left.append(ns)
        left += glob.glob(f"/dev/shm/framework.{self.pid}-*")
        left += glob.glob(f"/dev/shm/sem.framework.{self.pid}-*")
        return left

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return self.proc.poll()

    def cleanup(self):
        """Never leave anything behind, even when a test failed half-way."""
        if self.proc.poll() is None:
            self.stop()
        if self.proc.poll() is None:
            for p in self.workers().values():
                p.kill()
            self.proc.kill()
            self.proc.wait(5)
        h, t, ns = self.link_names()
        netns.del_link(h)
        netns.del_link(t)
        netns.del_netns(ns)
        for f in glob.glob(f"/dev/shm/*framework.{self.pid}-*"):
            os.unlink(f)
        self.proc.stdout.close()
        self.errfile.close()


def ping_cmd():
    """iputils ping when the machine has it, else the stand-in tests/integration/pyping.py
    (FRAMEWORK_TEST_PYPING=1 forces the stand-in)."""
    p = shutil.which("ping")
    if p and not os.environ.get("FRAMEWORK_TEST_PYPING"):
        return [p]
    return [sys.executable, os.path.join(HERE, "pyping.py")]


def ping(ip, count=20, interval=0.05, flood=False, deadline=None, timeout=1):
    """Run ping; returns (transmitted, received, rtts_ms, output)."""
    cmd = ping_cmd() + ["-n", "-W", str(timeout)]
    if flood:
        cmd += ["-f", "-q"]
    else:
        cmd += ["-i", str(interval)]
    if count:
        cmd += ["-c", str(count)]
        if not deadline and not flood:
            # iputils ping gives the last reply only max(2 x the largest RTT, interval)
            # once any reply came (-W applies only while none has): on a loaded machine
            # a reply 50 ms late counted as lost. With -w, ping waits for every reply
            # (up to the deadline: about -W after the last request)
            deadline = math.ceil(count * interval + timeout) + 1
    if deadline:
        cmd += ["-w", str(deadline)]
    out = subprocess.run(cmd + [ip], capture_output=True, text=True,
                         timeout=(deadline or count * interval + timeout) + 10).stdout
    return parse_ping(out)


def parse_ping(out):
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    if not m:
        raise AssertionError(f"unexpected ping output:\n{out}")
    rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]
    return int(m.group(1)), int(m.group(2)), rtts, out


def assert_idle(procs, limit, settle=0.3, window=2.0):
    """Each of ``procs`` (psutil.Process) uses under ``limit`` % CPU over ``window`` s."""
    time.sleep(settle)
    for p in procs:
        p.cpu_percent(None)
    time.sleep(window)
    for p in procs:
        pct = p.cpu_percent(None)
        assert pct < limit, f"{p.name()} (pid {p.pid}) used {pct}% CPU while idle"


def assert_stuck_worker_replaced(s, path, url_ok="/", body_ok=b"ok", shard=0,
                                 lo=0.8, hi=4.0):
    """A request for ``path`` leaves shard ``shard``'s loop stuck (spinning or blocked):
    the heartbeat watchdog (--timeout, here about 1 s) kills the worker, a new one takes
    its core, and the server answers again. Returns the seconds until it was replaced."""
    import socket
    import urllib.request
    old = s.wait_workers(s.cores)[shard].pid
    with urllib.request.urlopen(f"http://{s.ip}:8080{url_ok}", timeout=5) as r:
        assert (r.status, r.read()) == (200, body_ok)
    c = socket.create_connection((s.ip, 8080), timeout=5)
    try:
        c.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        t0 = time.monotonic()
        new = s.wait_workers(s.cores, timeout=5.0, exclude={old})[shard]
        took = time.monotonic() - t0
    finally:
        c.close()
    assert lo < took < hi, f"stuck worker replaced after {took:.2f} s"
    assert new.cpu_affinity() == [shard]
    time.sleep(0.3)
    with urllib.request.urlopen(f"http://{s.ip}:8080{url_ok}", timeout=5) as r:
        assert (r.status, r.read()) == (200, body_ok)
    return took
