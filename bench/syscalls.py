"""Syscalls of one process (every thread) over a window: ``with SyscallCounter(pid) as c:``
then ``c.total`` and ``c.by_name`` ({syscall: calls} for the calls named in COUNTED).

Two tools. perf (``perf stat`` on the raw_syscalls:sys_enter tracepoint, counted in the
kernel, no event leaves it): the server runs at nearly its usual speed. strace (``strace
-c -f``, ptrace stops the thread at every call): several times slower, every syscall
named. perf's window opens and closes exactly (``--control`` fifo, acknowledged);
strace's opens once every thread reports attached. Either way no req/s is taken from
such a run: python -m bench counts syscalls over a run of its own.
"""
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time

# syscalls a server's request path may use, named one by one (perf counts each as a
# tracepoint of its own, and each costs perf time to close; whatever is not named is in
# the total only)
COUNTED = ("read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg",
           "recvmmsg", "sendmmsg", "accept", "accept4", "close", "shutdown", "epoll_wait",
           "epoll_pwait", "epoll_ctl", "poll", "ppoll", "select", "pselect6",
           "io_uring_enter", "futex", "setsockopt", "getsockname", "getpeername", "ioctl",
           "sendfile64", "getpid")

TRACEFS = "/sys/kernel/tracing/events/syscalls"


def _perf_works():
    if not shutil.which("perf"):
        return False
    r = subprocess.run(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "true"],
                       capture_output=True, text=True)
    return r.returncode == 0 and "raw_syscalls:sys_enter" in r.stderr \
        and "<not supported>" not in r.stderr


def available_tool(prefer="auto"):
    """'perf', 'strace' or None: the cheapest that works here (or the one asked for)."""
    if prefer in ("auto", "perf") and _perf_works():
        return "perf"
    if prefer in ("auto", "strace") and shutil.which("strace"):
        return "strace"
    return None


def _perf_events():
    names = [n for n in COUNTED if os.path.isdir(os.path.join(TRACEFS, f"sys_enter_{n}"))]
    return ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{n}" for n in names]


class SyscallCounter:
    def __init__(self, pid, tool="perf"):
        self.pid = pid
        self.tool = tool
        self.total = None
        self.by_name = {}
        self.error = None
        self._dir = tempfile.mkdtemp(prefix="fwsys-")
        self._proc = None

    def __enter__(self):
        try:
            self._start_perf() if self.tool == "perf" else self._start_strace()
        except Exception:
            self._kill()
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self.tool == "perf":
                self._finish_perf()
            else:
                self._finish_strace()
        except Exception as e:    # a failed count is reported, never raised into the run
            self.error = f"{self.tool}: {e}"
        finally:
            self._kill()
            shutil.rmtree(self._dir, ignore_errors=True)

    # perf: counters opened disabled, enabled and disabled through a control fifo
    def _start_perf(self):
        ctl, ack = os.path.join(self._dir, "ctl"), os.path.join(self._dir, "ack")
        os.mkfifo(ctl)
        os.mkfifo(ack)
        self._out = os.path.join(self._dir, "perf.csv")
        cmd = ["perf", "stat", "-x,", "-o", self._out, "-D", "-1",
               "--control", f"fifo:{ctl},{ack}", "-p", str(self.pid)]
        for e in _perf_events():
            cmd += ["-e", e]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
        # opening a fifo blocks until perf opens its end: non-blocking read side first
        self._ack = os.open(ack, os.O_RDONLY | os.O_NONBLOCK)
        deadline = time.monotonic() + 30
        while True:
            try:
                self._ctl = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"perf did not start: {self._proc.stderr.read()[-500:]}")
                time.sleep(0.02)
        self._command("enable")

    def _command(self, word, timeout=30.0):
        os.write(self._ctl, word.encode() + b"\n")
        deadline = time.monotonic() + timeout
        got = b""
        while b"ack" not in got:
            left = deadline - time.monotonic()
            if left <= 0 or self._proc.poll() is not None:
                raise RuntimeError(f"perf did not acknowledge {word!r}")
            r, _, _ = select.select([self._ack], [], [], min(left, 0.5))
            if r:
                got += os.read(self._ack, 64)

    def _finish_perf(self):
        self._command("disable")
        self._proc.send_signal(signal.SIGINT)
        self._proc.wait(30)
        with open(self._out) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) < 3 or not parts[0].isdigit():
                    continue
                n, event = int(parts[0]), parts[2]
                if event == "raw_syscalls:sys_enter":
                    self.total = n
                elif event.startswith("syscalls:sys_enter_") and n:
                    self.by_name[event[len("syscalls:sys_enter_"):]] = n
        if self.total is None:
            raise RuntimeError("perf counted nothing")

    # strace: attached to every thread (-f), summary (-c) written when interrupted
    def _start_strace(self):
        self._out = os.path.join(self._dir, "strace.txt")
        threads = len(os.listdir(f"/proc/{self.pid}/task"))
        self._proc = subprocess.Popen(["strace", "-c", "-f", "-o", self._out, "-p",
                                       str(self.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      bufsize=0)
        seen, deadline = b"", time.monotonic() + 30
        # "Process N attached" per thread, or "Process N attached with K threads"
        while sum(int(k or 1) for k in re.findall(rb"attached(?: with (\d+) threads)?", seen)) \
                < threads:
            r, _, _ = select.select([self._proc.stderr], [], [], 0.5)
            if r:
                seen += os.read(self._proc.stderr.fileno(), 4096)
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"strace did not attach: {seen.decode()[-300:]}")

    def _finish_strace(self):
        self._proc.send_signal(signal.SIGINT)
        self._proc.wait(30)
        with open(self._out) as f:
            for line in f:
                # % time  seconds  usecs/call  calls  [errors]  syscall
                m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\S+)\s*$", line)
                if not m:
                    continue
                n, name = int(m.group(1)), m.group(2)
                if name == "total":
                    self.total = n
                else:
                    self.by_name[name] = n
        if self.total is None:
            raise RuntimeError("strace printed no summary")

    def _kill(self):
        for fd in ("_ctl", "_ack"):
            if hasattr(self, fd):
                os.close(getattr(self, fd))
                delattr(self, fd)
        p = self._proc
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(5)
