"""Start an app on a stack inside a network namespace, for the integration tests.

``start_server(stack, app_spec, ns, ip, port)`` is the one place that knows how each
stack is started; add a stack here and to the ``server`` fixture's params. The server
namespace ``ns`` holds one veth end (conftest.Net: ``server_if``); for a stack other
than "kernel" the kernel has no address on it, the stack takes ``ip`` itself.
"""
import ctypes
import multiprocessing
import os
import select
import socket
import subprocess
import time
from contextlib import contextmanager

from framework import netns

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

    def stop(self, timeout=8.0):
        """Ask the worker to stop; returns its exit code (killed after ``timeout``)."""
        self.stop_event.set()
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2)
        return self.proc.exitcode


def _kernel_child(app_spec, ns, ip, port, stop_event, ready, shard_id, shard_count, signals,
                  nofile=None):
    import logging
    logging.basicConfig(level=logging.WARNING)
    if nofile:
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    from framework.shard.kernel import run_kernel_worker
    from framework.web.loader import load_app
    netns.setns(ns)            # before any socket exists
    app = load_app(app_spec)
    run_kernel_worker(app, ip, port, shard_id, shard_count,
                      stop_event=None if signals else stop_event, ready=ready)


def start_server(stack, app_spec, ns, ip, port, timeout=10.0, shard_id=0, shard_count=1,
                 signals=False, nofile=None):
    """Serve ``app_spec`` on ``ip:port`` inside ``ns``; ``signals``: stop by SIGTERM only."""
    mp = multiprocessing.get_context("fork")
    stop_event = mp.Event()
    ready = mp.Event()
    if stack == "kernel":
        proc = mp.Process(target=_kernel_child,
                          args=(app_spec, ns, ip, port, stop_event, ready, shard_id,
                                shard_count, signals, nofile), daemon=True)
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


def curl(ns, *args, timeout=10):
    return subprocess.run(["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "5", *args],
                          capture_output=True, timeout=timeout)


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
