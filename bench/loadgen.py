"""Load generators (wrk, ab, the bulk client, the idle-connection client), their output
parsers, and per-core CPU accounting from /proc/stat."""
import os
import re
import select
import signal
import subprocess
import time

from bench.syscalls import SyscallCounter

HERE = os.path.dirname(os.path.abspath(__file__))
PIPELINE_LUA = os.path.join(HERE, "pipeline.lua")
COUNTED_LUA = os.path.join(HERE, "counted.lua")


# ---- /proc/stat ---------------------------------------------------------------------------

def cpu_times():
    """{core: (busy_ticks, total_ticks, irq+softirq ticks)}; busy = user+nice+system+irq+softirq."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                p = line.split()
                v = list(map(int, p[1:]))
                user, nice, system, idle, iowait, irq, softirq = v[:7]
                steal = v[7] if len(v) > 7 else 0
                busy = user + nice + system + irq + softirq
                out[int(p[0][3:])] = (busy, busy + idle + iowait + steal, irq + softirq)
    return out


SERVER_CORE_FOR_METER = 0
_KSOFTIRQD = {}


def _ksoftirqd(core):
    if core not in _KSOFTIRQD:
        import psutil
        _KSOFTIRQD[core] = None
        for p in psutil.process_iter(["name"]):
            if p.info["name"] == f"ksoftirqd/{core}":
                _KSOFTIRQD[core] = p
                break
    return _KSOFTIRQD[core]


class CpuMeter:
    """/proc/stat deltas per core, plus the CPU time of one process (the server's worker):
    what is busy on core 0 beyond that process and the softirqs is someone else's load."""
    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, proc=None):
        # the server's worker, plus ksoftirqd/0: under load the kernel hands core 0's
        # softirqs (the server's receive path, steered there by RPS) to that thread, and
        # without IRQ time accounting its time shows as system time, not softirq
        self.procs = [proc, _ksoftirqd(SERVER_CORE_FOR_METER)] if proc else []

    def _proc_cpu(self):
        """Run time of the server's tasks in seconds (/proc/<pid>/task/*/schedstat: exact
        ns, and it includes the softirqs the kernel ran while one of them was current)."""
        total = 0
        try:
            for p in self.procs:
                if p is None:
                    continue
                for tid in os.listdir(f"/proc/{p.pid}/task"):
                    with open(f"/proc/{p.pid}/task/{tid}/schedstat") as f:
                        total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return total / 1e9

    def __enter__(self):
        self.p0 = self._proc_cpu() if self.procs else None
        self.t0 = cpu_times()
        self.w0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.t1 = cpu_times()
        self.wall = time.monotonic() - self.w0
        p1 = self._proc_cpu() if self.procs else None
        self.proc_seconds = p1 - self.p0 if p1 is not None and self.p0 is not None else None

    def softirq_share(self, core):
        t = self.t1[core][1] - self.t0[core][1]
        return (self.t1[core][2] - self.t0[core][2]) / t if t > 0 else 0.0

    def total_seconds(self, core):
        return (self.t1[core][1] - self.t0[core][1]) / self.TICK

    def busy_share(self, core):
        b0, t0 = self.t0[core][:2]
        b1, t1 = self.t1[core][:2]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def busy_seconds(self, core):
        return (self.t1[core][0] - self.t0[core][0]) / self.TICK


def wait_quiet(core=0, limit=0.25, max_wait=4.0, step=0.25):
    """Wait (at most ``max_wait`` s) until ``core`` is less than ``limit`` busy while our
    servers idle: on a shared machine, start a measured run when nobody else is using the
    server's core. Returns the last measured busy share."""
    deadline = time.monotonic() + max_wait
    while True:
        a = cpu_times()[core]
        time.sleep(step)
        b = cpu_times()[core]
        busy = (b[0] - a[0]) / (b[1] - a[1]) if b[1] > a[1] else 0.0
        if busy < limit or time.monotonic() >= deadline:
            return busy


# ---- wrk / ab ---------------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _dur(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def parse_wrk(out):
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not m:
        raise ValueError(f"unexpected wrk output:\n{out}")
    n = int(m.group(1))
    secs = float(m.group(2)) * _UNITS[m.group(3)]
    res = {"requests": n, "seconds": secs, "rps": n / secs if secs else 0.0, "errors": 0}
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if e:
        res["errors"] += sum(map(int, e.groups()))
    e = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if e:
        res["errors"] += int(e.group(1))
    for pct in ("50", "99"):
        p = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        if p:
            res[f"p{pct}"] = _dur(p.group(1))
    return res


def parse_ab(out):
    m = re.search(r"Complete requests:\s+(\d+)", out)
    t = re.search(r"Time taken for tests:\s+([\d.]+) seconds", out)
    if not m or not t:
        raise ValueError(f"unexpected ab output:\n{out[-2000:]}")
    n, secs = int(m.group(1)), float(t.group(1))
    res = {"requests": n, "seconds": secs, "rps": n / secs if secs else 0.0, "errors": 0}
    f = re.search(r"Failed requests:\s+(\d+)", out)
    if f:
        res["errors"] += int(f.group(1))
    f = re.search(r"Non-2xx responses:\s+(\d+)", out)
    if f:
        res["errors"] += int(f.group(1))
    return res


def wrk_cmd(url, seconds, conns=50, close=False, pipeline=False, latency=False):
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--timeout", "5s"]
    if close:
        cmd += ["-H", "Connection: close"]
    if pipeline:
        cmd += ["-s", PIPELINE_LUA]
    if latency:
        cmd += ["--latency"]
    return cmd + [url]


def ab_cmd(url, seconds, conns=50):
    # -t: time limit (ab then sets -n 50000 unless given), -r: do not stop on a recv error
    return ["ab", "-q", "-r", "-t", str(max(1, round(seconds))), "-n", "200000", "-c", str(conns), url]


QUIET_WAIT = 0.0     # python -m bench sets it: seconds to wait for a quiet core 0


def run_http(lab, server, scenario, seconds):
    """One measured run. Returns the parsed result + CPU figures."""
    pre = wait_quiet(max_wait=QUIET_WAIT) if QUIET_WAIT else None
    sc = SCENARIOS[scenario]
    if sc["tool"] == "ab":
        cmd, parse = ab_cmd(server.url, seconds, sc["conns"]), parse_ab
    else:
        cmd = wrk_cmd(server.url, seconds, sc["conns"], close=sc.get("close", False),
                      pipeline=sc.get("pipeline", False), latency=sc.get("latency", False))
        parse = parse_wrk
    with CpuMeter(_worker(server)) as cpu:
        r = lab.run_client(cmd, timeout=seconds + 60)
    out = r.stdout + r.stderr
    try:
        res = parse(out)
    except ValueError:
        res = {"requests": 0, "seconds": seconds, "rps": 0.0, "errors": -1,
               "failed": out[-500:]}
    _cpu_fields(res, cpu, res["requests"])
    res["pre0"] = pre
    return res


def _worker(server):
    try:
        return server.worker()
    except Exception:
        return None


def _cpu_fields(res, cpu, units):
    res["core0"] = cpu.busy_share(0)
    res["core1"] = cpu.busy_share(1)
    res["us_per_req"] = cpu.busy_seconds(0) * 1e6 / units if units else None
    res["softirq0"] = cpu.softirq_share(0)
    total = cpu.total_seconds(0)
    if cpu.proc_seconds is not None and total > 0:
        # the server's own cost: run time of its worker and of ksoftirqd/0 (both pinned to
        # core 0; a softirq is charged to whichever task was current, so the receive path
        # that RPS steers to core 0 is in here). Unlike core-0 busy, this does not grow
        # when other processes share the core. Not in it: softirqs run while core 0 was
        # idle or running someone else (small when the server saturates the core).
        res["server_share"] = min(1.0, cpu.proc_seconds / cpu.wall)
        # the rest of core 0's busy time: other processes, softirqs outside our tasks
        res["other0"] = max(0.0, res["core0"] - res["server_share"])
        if units:
            res["server_us_per_req"] = cpu.proc_seconds * 1e6 / units


SCENARIOS = {
    "close-wrk": {"tool": "wrk", "conns": 50, "close": True,
                  "title": "Connection: close, wrk -c50"},
    "close-ab": {"tool": "ab", "conns": 50, "title": "one request per connection, ab -c50"},
    "keepalive": {"tool": "wrk", "conns": 50, "title": "keep-alive, wrk -c50"},
    "pipelined": {"tool": "wrk", "conns": 50, "pipeline": True,
                  "title": "pipelined depth 16, wrk -c50"},
    "latency": {"tool": "wrk", "conns": 10, "latency": True,
                "title": "latency, keep-alive wrk -c10"},
}


# ---- syscalls per request ------------------------------------------------------------

SYSCALL_SCENARIOS = ("close-wrk", "keepalive")


def run_syscalls(lab, server, scenario, requests, tool, max_seconds=60):
    """An extra run of ``scenario`` (a wrk one, not pipelined) that stops after
    ``requests`` requests, with the server's worker process (every thread) under a
    syscall counter (bench/syscalls.py). Its req/s is not a result: the counter may slow
    the server."""
    sc = SCENARIOS[scenario]
    cmd = ["wrk", "-t1", f"-c{sc['conns']}", f"-d{max_seconds}s", "--timeout", "5s"]
    if sc.get("close"):
        cmd += ["-H", "Connection: close"]
    cmd += ["-s", COUNTED_LUA, server.url, "--", str(requests)]
    res = {"tool": tool}
    try:
        with SyscallCounter(server.worker().pid, tool) as counter:
            out = _wrk_until_limit(lab, cmd, max_seconds + 30)
    except Exception as e:
        res["failed"] = str(e)[-300:]
        return res
    if counter.error:
        res["failed"] = counter.error
        return res
    try:
        w = parse_wrk(out)
    except ValueError as e:
        res["failed"] = str(e)[-300:]
        return res
    n = w["requests"]
    res.update(requests=n, errors=w["errors"], syscalls=counter.total, by_name=counter.by_name,
               per_req=counter.total / n if n else None,
               by_name_per_req={k: v / n for k, v in counter.by_name.items()} if n else {})
    return res


def _wrk_until_limit(lab, cmd, timeout):
    """Run wrk with counted.lua; SIGINT it once its thread has stopped at the limit.
    Returns wrk's output."""
    p = lab.popen_client(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    deadline = time.monotonic() + timeout
    seen = b""
    try:
        # raw reads: a buffered readline would hide the marker from select()
        while b"bench: limit reached" not in seen and time.monotonic() < deadline:
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if r:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
            elif p.poll() is not None:
                break
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return (seen + out + err).decode("utf-8", "replace")


# ---- bulk -------------------------------------------------------------------------------

def run_bulk(lab, server, direction, seconds, nbytes):
    if QUIET_WAIT:
        wait_quiet(max_wait=QUIET_WAIT)
    code = ("import sys; from bench import bulk; "
            f"b, dt, g = bulk.{direction}({server.ip!r}, {seconds}, {nbytes}); "
            "print(b, dt, g)")
    with CpuMeter(_worker(server)) as cpu:
        r = lab.run_client(["python3", "-c", code], timeout=seconds + 60)
    res = {"errors": 0}
    try:
        b, dt, g = r.stdout.split()
        res.update(bytes=int(b), seconds=float(dt), gbps=float(g))
    except ValueError:
        res.update(bytes=0, seconds=0.0, gbps=0.0, errors=-1, failed=(r.stdout + r.stderr)[-500:])
    _cpu_fields(res, cpu, 0)
    return res


# ---- idle connections -------------------------------------------------------------------

def run_idle(lab, server, n, seconds):
    """Hold ``n`` idle keep-alive connections (each served one request), measure the
    worker's RSS before/after, then wrk -c50 over 50 more while they stay open."""
    import psutil
    w = server.worker()
    rss0 = w.memory_info().rss
    p = lab.popen_client(["python3", "-m", "bench.idle_client", server.ip, str(server.port), str(n)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    res = {"held": 0, "errors": 0}
    try:
        line = p.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError(f"idle client failed: {line} {p.stderr.read()[-1000:]}")
        res["held"] = int(line[1])
        res["open_seconds"] = float(line[2])
        time.sleep(0.5)
        rss1 = w.memory_info().rss
        res["rss0"], res["rss1"] = rss0, rss1
        res["bytes_per_conn"] = (rss1 - rss0) / res["held"] if res["held"] else None
        with CpuMeter(w) as cpu:
            r = lab.run_client(wrk_cmd(server.url, seconds, 50), timeout=seconds + 60)
        wr = parse_wrk(r.stdout)
        res["rps"] = wr["rps"]
        res["errors"] = wr["errors"]
        _cpu_fields(res, cpu, wr["requests"])
        p.stdin.write("check\n")
        p.stdin.flush()
        line = p.stdout.readline().split()
        res["still_open"] = int(line[1]) if line and line[0] == "alive" else None
    finally:
        try:
            p.stdin.write("quit\n")
            p.stdin.flush()
        except OSError:
            pass
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return res
