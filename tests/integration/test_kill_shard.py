"""A worker that dies takes only its own (issue 12, section 2).

``framework serve`` on the user stack with 2 workers, keep-alive clients on both shards
(and a few that open a connection per request), then SIGKILL of one worker. Every client binds its source port, chosen with
``steer.shard_of`` so the test knows which shard owns each flow:
  - the other shard's flows see 0 errors and keep being answered;
  - each flow of the killed shard loses at most the connection it had open at the kill,
    and only by a reset or a timeout (its reconnections may wait for the restart, but a
    connection that got through is never lost again);
  - a new connection to the killed shard is answered within 1 s of the kill (the
    supervisor restarts the worker on its core and it takes its queue back), and none
    is refused (the new worker holds connections until its app has started).
Both port types: AF_PACKET and TAP.
"""
import errno
import random
import socket
import threading
import time

import psutil
import pytest

from framework.nic import steer

from .serve_helpers import ROOT

FLOWS_PER_SHARD = 16       # keep-alive clients per shard
CLOSE_FLOWS_PER_SHARD = 4  # clients making one connection per request (handshakes at the kill)
LOAD_BEFORE = 1.5          # s of load before the kill
LOAD_AFTER = 3.5           # s of load after it
IO_TIMEOUT = 3.0           # a request unanswered this long is an error (timeout)
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
REQUEST_CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
BODY = b"Hello, World!"


def ip_int(s):
    a, b, c, d = map(int, s.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


class Ports:
    """Source ports steered to a given shard, each used once (no 4-tuple reuse while an
    old connection may linger), below the ephemeral range so the kernel's own picks for
    other processes do not collide."""

    def __init__(self, saddr, daddr, dport, n):
        self.args = (saddr, daddr, dport)
        self.n = n
        self.used = set()
        self.lock = threading.Lock()

    def take(self, shard):
        with self.lock:
            p = steer.pick_source_port(*self.args, shard, self.n, in_use=self.used,
                                       lo=20000, hi=32000)
            self.used.add(p)
            return p


def connect(host_ip, ip, port, timeout):
    """A connection from (host_ip, port); EADDRINUSE (someone else has the port) -> None."""
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        c.bind((host_ip, port))
    except OSError as e:
        c.close()
        if e.errno == errno.EADDRINUSE:
            return None
        raise
    c.settimeout(timeout)
    try:
        c.connect((ip, 8080))
    except BaseException:
        c.close()
        raise
    return c


def get(c, request=REQUEST):
    """One GET on ``c``: the response must be the whole hello."""
    c.sendall(request)
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].lower()
            n = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
            if len(buf) >= end + 4 + n:
                break
        chunk = c.recv(65536)
        if not chunk:
            raise EOFError("connection closed by the server")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 200 ") or not buf.endswith(BODY):
        raise AssertionError(f"bad response {buf[:200]!r}")


def kind(e):
    if isinstance(e, ConnectionResetError):
        return "reset"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout"
    return f"other: {e!r}"


class Flow(threading.Thread):
    """One client of one shard: a keep-alive connection doing back-to-back GETs (or,
    ``keepalive=False``, a new connection for each GET, 20 ms apart); after an error it
    reconnects from a fresh port of the same shard."""

    def __init__(self, shard, ports, host_ip, ip, stop, kill_time, keepalive=True):
        super().__init__(daemon=True)
        self.shard = shard
        self.keepalive = keepalive
        self.ports, self.host_ip, self.ip = ports, host_ip, ip
        self.stop = stop
        self.kill_time = kill_time     # [t] once the worker was killed
        self.ok_before = self.ok_after = 0
        self.errors = []               # (kind, connected before the kill?, t)
        self.connect_failures = []     # (kind, t) of attempts to connect that did not get through

    def run(self):
        c = None
        opened_at = None
        while not self.stop.is_set():
            try:
                if c is None:
                    opened_at = time.monotonic()
                    c = connect(self.host_ip, self.ip, self.ports.take(self.shard),
                                IO_TIMEOUT)
                    if c is None:
                        continue
                get(c, REQUEST if self.keepalive else REQUEST_CLOSE)
                if self.kill_time:
                    self.ok_after += 1
                else:
                    self.ok_before += 1
                if not self.keepalive:
                    c.close()
                    c = None
                    time.sleep(0.02)
            except Exception as e:
                connected = c is not None
                if not connected:
                    self.connect_failures.append((kind(e), time.monotonic()))
                else:
                    before = bool(not self.kill_time or opened_at < self.kill_time[0])
                    self.errors.append((kind(e), before, time.monotonic()))
                    c.close()
                    c = None
                time.sleep(0.02)
        if c is not None:
            c.close()


def dead_at(proc, timeout=2.0):
    """The time ``proc`` (a psutil.Process) was seen no longer running: gone, or a zombie
    its parent has not reaped yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.0005)
    return time.monotonic()


def first_answer(ports, shard, host_ip, ip, t0, deadline):
    """Fresh connections to ``shard`` one after the other (each given 0.1 s to connect:
    a SYN the dead worker never saw is not waited for until Linux retries it after 1 s)
    until one is answered; returns its time after ``t0``."""
    while time.monotonic() < deadline:
        try:
            c = connect(host_ip, ip, ports.take(shard), 0.1)
        except OSError:
            continue
        if c is None:
            continue
        try:
            c.settimeout(1.0)
            get(c)
            return time.monotonic() - t0
        except Exception:
            time.sleep(0.01)
        finally:
            c.close()
    return None


@pytest.mark.parametrize("port_type", ["afpacket", "tap"])
def test_sigkill_of_one_worker_loses_only_its_own_connections(serve, port_type):
    s = serve(app="apps.hello:app", cores=2, cwd=ROOT, extra=("--port-type", port_type))
    workers = s.wait_workers(2)
    victim = random.Random().randrange(2)
    survivor = 1 - victim
    ports = Ports(ip_int(s.host_ip), ip_int(s.ip), 8080, 2)
    stop = threading.Event()
    kill_time = []
    flows = [Flow(shard, ports, s.host_ip, s.ip, stop, kill_time, keepalive=k)
             for shard in (0, 1)
             for k in [True] * FLOWS_PER_SHARD + [False] * CLOSE_FLOWS_PER_SHARD]
    for f in flows:
        f.start()
    try:
        time.sleep(LOAD_BEFORE)
        old = workers[victim]
        t_kill = time.monotonic()
        old.kill()
        # a flow opened before the victim is gone may have been answered by it, and losing
        # that one is right: "after the kill" starts when the process no longer runs
        kill_time.append(dead_at(old))
        first_new = first_answer(ports, victim, s.host_ip, s.ip, t_kill, t_kill + 5.0)
        time.sleep(max(0.0, t_kill + LOAD_AFTER - time.monotonic()))
    finally:
        stop.set()
        for f in flows:
            f.join(IO_TIMEOUT + 2)
    new = s.wait_workers(2, timeout=2.0, exclude={old.pid})
    assert new[survivor].pid == workers[survivor].pid, "the other worker was replaced too"

    by_shard = {k: [f for f in flows if f.shard == k] for k in (0, 1)}
    report = {k: dict(ok_before=sum(f.ok_before for f in fl), ok_after=sum(f.ok_after for f in fl),
                      errors=sum(len(f.errors) for f in fl),
                      reset=sum(1 for f in fl for e in f.errors if e[0] == "reset"),
                      timeout=sum(1 for f in fl for e in f.errors if e[0] == "timeout"),
                      connect_failures=[(k, round((t - t_kill) * 1000)) for f in fl
                                        for k, t in f.connect_failures])
              for k, fl in by_shard.items()}
    lost_after = sorted(e[2] - t_kill for f in by_shard[victim] for e in f.errors)
    print(f"\nkilled shard {victim}; first new connection to it answered "
          f"{first_new if first_new is None else f'{first_new * 1000:.0f} ms'} after the kill; "
          f"its open connections failed "
          f"{', '.join(f'{x * 1000:.0f}' for x in lost_after[:1] + lost_after[-1:])} ms "
          f"after it (first, last); per shard: {report}")

    # the other shard: not one error, and it went on answering every flow after the kill
    assert report[survivor]["errors"] == 0 and report[survivor]["connect_failures"] == [], \
        [f.errors for f in by_shard[survivor] if f.errors]
    assert all(f.ok_before > 0 and f.ok_after > 0 for f in by_shard[survivor]), \
        [(f.ok_before, f.ok_after) for f in by_shard[survivor]]
    # the killed shard: only the connection open at the kill lost, by a reset or a timeout
    for f in by_shard[victim]:
        assert f.ok_before > 0
        assert len(f.errors) <= 1, f.errors
        for k, before, _t in f.errors:
            assert before, f"a connection made after the kill was lost ({k})"
            assert k in ("reset", "timeout"), k
    # a new connection is never refused (the restarted worker holds what reaches it before
    # its listeners open)
    refused = [k for f in by_shard[victim] for k, _t in f.connect_failures if "Refused" in k]
    assert refused == [], report[victim]["connect_failures"]
    # ... and it serves new connections again within 1 s; every flow got back
    assert first_new is not None and first_new < 1.0, first_new
    assert all(f.ok_after > 0 for f in by_shard[victim]), \
        [(f.ok_after, f.errors, f.connect_failures) for f in by_shard[victim]]
    assert s.proc.poll() is None
    assert s.stop() == 0, s.stderr()
    assert s.leftovers() == []
