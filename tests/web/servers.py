"""Start an app on a stack inside a network namespace, for the integration tests.

``start_server(stack, app_spec, ns, ip, port)`` is the one place that knows how each
stack is started; add a stack here and to the ``server`` fixture's params. The server
namespace ``ns`` holds one veth end (conftest.Net: ``server_if``); for a stack other
than "kernel" the kernel has no address on it, the stack takes ``ip`` itself.

- "kernel": ``framework.shard.run.run_kernel_worker`` in a forked child that entered
  ``ns``.
- "user": the way a user starts it: ``ip netns exec NS framework serve APP --cores 1
  --iface IFACE --ip IP/24`` (supervisor + one user-stack worker on an AF_PACKET port
  attached to the veth end), stopped with SIGTERM (graceful, like the kernel one).

Both handles offer ``stop()``, ``request_stop()`` (graceful), ``wait(timeout)`` (exit
code or None) and ``worker_pid()`` (the process that holds the connections).

``web``: a ``framework.web.serving.WebOptions`` (ASGI/WSGI interface, root path, lifespan,
TLS, access log, ...) the app is built with on either stack (the user stack gets it as
the equivalent ``serve`` flags, see ``web_args``); ``cli_args``: more ``serve`` flags for
the user stack only (e.g. ``["--reload"]``).
"""
import ctypes
import multiprocessing
import os
import select
import socket
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

from framework.master import netns

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


class ServerHandle:
    def __init__(self, stack, proc, stop_event, ip, port):
        self.stack = stack
        self.proc = proc
        self.stop_event = stop_event
        self.ip = ip
        self.port = port

    def alive(self):
        return self.proc.is_alive()

    def request_stop(self):
        self.stop_event.set()

    def wait(self, timeout):
        self.proc.join(timeout)
        return self.proc.exitcode

    def worker_pid(self):
        return self.proc.pid

    def stop(self, timeout=8.0):
        """Ask the worker to stop; returns its exit code (killed after ``timeout``)."""
        self.stop_event.set()
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2)
        return self.proc.exitcode


def _kernel_child(app_spec, ns, ip, port, stop_event, ready, shard_id, shard_count, signals,
                  nofile=None, web=None):
    import logging
    logging.basicConfig(level=logging.WARNING)
    if nofile:
        # "a worker with `nofile` descriptors": the forked child would otherwise start
        # with every descriptor the test session has open (which grows over a long run)
        # and might have none left below the limit. Nothing here needs them (the events
        # are semaphores, stdio stays).
        import resource
        os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    from framework.shard.run import run_kernel_worker
    from framework.web.loader import load_app
    netns.setns(ns)            # before any socket exists
    app = load_app(app_spec, web)
    run_kernel_worker(app, ip, port, shard_id, shard_count,
                      stop_event=None if signals else stop_event, ready=ready)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class CliServerHandle:
    """``framework serve`` run as a user runs it, inside the server namespace."""

    def __init__(self, stack, proc, errfile, ip, port):
        self.stack = stack
        self.proc = proc            # the supervisor (``ip netns exec`` execs, no fork)
        self.errfile = errfile
        self.ip = ip
        self.port = port
        self._worker = None

    def alive(self):
        return self.proc.poll() is None

    def request_stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)   # graceful: connections finish

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def worker_pid(self):
        """The shard's worker process (the supervisor's child fw-shard-0)."""
        if self._worker is None:
            import psutil
            deadline = time.monotonic() + 5
            while self._worker is None and time.monotonic() < deadline:
                for p in psutil.Process(self.proc.pid).children():
                    try:
                        if p.name() == "fw-shard-0":
                            self._worker = p.pid
                    except psutil.NoSuchProcess:
                        pass
                if self._worker is None:
                    time.sleep(0.01)
            assert self._worker is not None, "no fw-shard-0 worker under the supervisor"
        return self._worker

    def stderr(self):
        self.errfile.seek(0)
        return self.errfile.read()

    def stop(self, timeout=8.0):
        """SIGTERM (graceful); returns the exit code (SIGKILL after ``timeout``)."""
        self.request_stop()
        rc = self.wait(timeout)
        if rc is None:
            import psutil
            try:
                kids = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                kids = []
            for p in kids:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            self.proc.kill()
            self.proc.wait(5)
        self.errfile.close()
        return rc


def web_args(web):
    """The ``framework serve`` flags that make ``web`` (a WebOptions): those that differ
    from the defaults."""
    if web is None:
        return []
    from framework.master.config import OPTIONS
    from framework.web.serving import WebOptions
    default = WebOptions()
    out = []
    for name in WebOptions.__slots__:
        value = getattr(web, name)
        if value != getattr(default, name) and value is not None:
            out += [OPTIONS[name].flag, str(value)]
    return out


def _start_user(app_spec, ns, ifname, ip, port, timeout, cores=1, log_level="warning",
                extra=()):
    errfile = tempfile.TemporaryFile(mode="w+")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "framework", "serve", app_spec,
           "--cores", str(cores), "--iface", ifname, "--ip", f"{ip}/24",
           "--port", str(port), "--log-level", log_level, *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=errfile,
                            text=True)
    h = CliServerHandle("user", proc, errfile, ip, port)
    deadline = time.monotonic() + timeout
    p = select.poll()
    p.register(proc.stdout, select.POLLIN)
    while time.monotonic() < deadline:
        if p.poll(50):
            line = proc.stdout.readline()
            if line.startswith("serving "):     # printed once every worker is ready
                proc.stdout.close()             # nothing more is printed there
                return h
            if not line and proc.poll() is not None:
                break
        elif proc.poll() is not None:
            break
    err = h.stderr()
    h.stop(2)
    raise RuntimeError(f"user server for {app_spec} did not start (exit code "
                       f"{proc.returncode}): {err.strip()[-2000:]}")


def start_server(stack, app_spec, ns, ip, port, timeout=10.0, shard_id=0, shard_count=1,
                 signals=False, nofile=None, ifname=None, web=None, cli_args=()):
    """Serve ``app_spec`` on ``ip:port`` inside ``ns``; ``signals``: stop by SIGTERM only.
    ``ifname``: the server's veth end in ``ns`` (the user stack attaches to it).
    ``web``: WebOptions the app is built with; ``cli_args``: more serve flags (user only)."""
    if stack == "user":
        if ifname is None:
            raise ValueError("the user stack needs the interface it attaches to (ifname)")
        if shard_id != 0 or shard_count != 1 or nofile:
            raise ValueError("user stack: one shard, started by framework serve")
        return _start_user(app_spec, ns, ifname, ip, port, timeout,
                           extra=[*web_args(web), *cli_args])
    if cli_args:
        raise ValueError("cli_args are serve flags: the user stack only (kernel: web=)")
    mp = multiprocessing.get_context("fork")
    stop_event = mp.Event()
    ready = mp.Event()
    if stack == "kernel":
        proc = mp.Process(target=_kernel_child,
                          args=(app_spec, ns, ip, port, stop_event, ready, shard_id,
                                shard_count, signals, nofile, web), daemon=True)
    else:
        raise ValueError(f"unknown stack {stack!r}")
    proc.start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if not proc.is_alive() or time.monotonic() > deadline:
            proc.kill()
            proc.join(2)
            raise RuntimeError(f"{stack} server for {app_spec} did not start "
                               f"(exit code {proc.exitcode})")
    return ServerHandle(stack, proc, stop_event, ip, port)


# ---- clients inside a namespace ------------------------------------------------------------
@contextmanager
def in_netns(ns):
    """Run the body with this thread in namespace ``ns`` (sockets made there stay there)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        netns.setns(ns)
        try:
            yield
        finally:
            if _libc.setns(own, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back failed")
    finally:
        os.close(own)


def connect(ns, ip, port, timeout=5.0):
    with in_netns(ns):
        return socket.create_connection((ip, port), timeout=timeout)


class HttpResult:
    """One HTTP exchange as a client saw it. ``head``: the final response's status line
    and headers as received (no blank line); ``body``: its body (chunked decoded);
    ``interim``: the raw heads of 1xx responses before it; ``raw``: every byte received."""

    def __init__(self, status, head, headers, body, interim, raw):
        self.status = status
        self.head = head
        self.headers = headers          # {lower-case name: value}
        self.body = body
        self.interim = interim
        self.raw = raw


def _read_head(sock, buf, deadline):
    """(head bytes, rest) once a blank line arrived; None at EOF."""
    while b"\r\n\r\n" not in buf:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        b = sock.recv(65536)
        if not b:
            return None
        buf += b
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def http_request(ns, url, method="GET", headers=(), body=None, timeout=5.0):
    """What the tests used ``curl`` for, in Python: one request on a fresh connection
    from namespace ``ns``, the path sent exactly as written (curl --path-as-is), the
    request headers curl sends (Host, User-Agent, Accept; Content-Type for a body, as
    curl --data-binary). With an ``Expect: 100-continue`` header the body waits for the
    interim response (at most 1 s, as curl does; not sent after a final answer).
    Raises on a connection problem or a body shorter than its Content-Length (where
    curl exited non-zero)."""
    from urllib.parse import urlsplit
    u = urlsplit(url)
    host, port = u.hostname, u.port or 80
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    hdrs = {"Host": u.netloc, "User-Agent": "pytest-http/1", "Accept": "*/*"}
    if body is not None:
        hdrs["Content-Length"] = str(len(body))
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    for name, value in dict(headers).items():
        for k in [k for k in hdrs if k.lower() == name.lower()]:
            del hdrs[k]
        hdrs[name] = value
    expect = any(k.lower() == "expect" and "100-continue" in v.lower()
                 for k, v in hdrs.items())
    req = (f"{method} {path} HTTP/1.1\r\n"
           + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n").encode("latin-1")
    deadline = time.monotonic() + timeout
    s = connect(ns, host, port, timeout=timeout)
    raw = bytearray()
    try:
        interim = []
        buf = b""
        if body is not None and expect:
            s.sendall(req)
            p = select.poll()
            p.register(s, select.POLLIN)
            if p.poll(1000):
                got = _read_head(s, buf, deadline)
                if got is None:
                    raise ConnectionError("closed before a response")
                head, buf = got
                if head.split(b" ", 2)[1:2] == [b"100"]:
                    interim.append(head)
                    raw += head + b"\r\n\r\n"
                    s.sendall(body)
                else:
                    buf = head + b"\r\n\r\n" + buf    # a final answer: no body sent
            else:
                s.sendall(body)
        else:
            s.sendall(req + (body or b""))
        while True:
            got = _read_head(s, buf, deadline)
            if got is None:
                raise ConnectionError("closed before a response")
            head, buf = got
            raw += head + b"\r\n\r\n"
            status = int(head.split(b" ", 2)[1])
            if 100 <= status < 200:
                interim.append(head)
                continue
            break
        fields = {}
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.decode("latin-1").partition(":")
            fields[k.strip().lower()] = v.strip()

        def more():
            s.settimeout(max(deadline - time.monotonic(), 0.001))
            b = s.recv(1 << 20)
            raw.extend(b)
            return b
        raw += buf
        data = bytearray(buf)
        if method == "HEAD" or status in (204, 304):
            out = b""
        elif "chunked" in fields.get("transfer-encoding", "").lower():
            out = bytearray()
            while True:
                while b"\r\n" not in data:
                    b = more()
                    if not b:
                        raise ConnectionError("chunked body cut short")
                    data += b
                line, _, rest = bytes(data).partition(b"\r\n")
                n = int(line.split(b";")[0], 16)
                while len(rest) < n + 2:
                    b = more()
                    if not b:
                        raise ConnectionError("chunked body cut short")
                    rest += b
                if n == 0:
                    # trailers end with a blank line; the last CRLF is already here
                    data = bytearray(rest)
                    while not (data.startswith(b"\r\n") or b"\r\n\r\n" in data):
                        b = more()
                        if not b:
                            break
                        data += b
                    break
                out += rest[:n]
                data = bytearray(rest[n + 2:])
            out = bytes(out)
        elif "content-length" in fields:
            n = int(fields["content-length"])
            while len(data) < n:
                b = more()
                if not b:
                    raise ConnectionError(f"body cut short: {len(data)} of {n} bytes")
                data += b
            out = bytes(data[:n])
        else:                               # the body ends at the server's close
            while True:
                b = more()
                if not b:
                    break
                data += b
            out = bytes(data)
        return HttpResult(status, head, fields, out, interim, bytes(raw))
    finally:
        s.close()


def recv_until_closed(sock, limit=1 << 22):
    out = b""
    while len(out) < limit:
        try:
            b = sock.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        out += b
    return out


def _readable_now(sock):
    # poll, not select: in a long test session fd numbers pass select's 1024 limit
    p = select.poll()
    p.register(sock, select.POLLIN)
    return bool(p.poll(0))


def recv_responses(sock, n, parse):
    """Read until ``n`` complete responses have arrived (or EOF); returns parse(bytes)."""
    data = bytearray()
    while True:
        try:
            got = parse(bytes(data))
            if len(got) >= n:
                return got
        except (ValueError, IndexError):
            pass
        while True:     # parse again only once what has arrived is read
            b = sock.recv(1 << 20)
            if not b:
                return parse(bytes(data))
            data += b
            if not _readable_now(sock):
                break
