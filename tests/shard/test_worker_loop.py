"""The user-stack shard loop (ShardLoop + UserStackProvider) with a fake port and a fake
stack: frames in -> stack -> frames out, events delivered, timers wake the loop, idle
sleeps."""
import os
import socket
import threading
import time

import pytest

from framework.context import ShardContext
from framework.net.tcp import ESTABLISHED
from framework.net.tcp.connection import Connection
from framework.shard.loop import ShardLoop
from framework.shard.userstack import PortGone, UserStackProvider
from framework.shard import streams as S


class SockPort:
    """A port over one end of a SOCK_SEQPACKET pair: one datagram = one frame."""
    csum_offload = gso = False
    mtu = 1500

    def __init__(self, sock, room=None):
        self.sock = sock
        sock.setblocking(False)
        self.room = room  # None: unlimited; else frames tx_burst takes before "full"
        self.stats = {"rx": 0, "tx": 0}

    def rx_burst(self, max=64):
        out = []
        while len(out) < max:
            try:
                out.append(self.sock.recv(65536))
            except BlockingIOError:
                break
        self.stats["rx"] += len(out)
        return out

    def tx_burst(self, frames):
        n = len(frames) if self.room is None else min(self.room, len(frames))
        if self.room is not None:
            self.room -= n
        for f in frames[:n]:
            self.sock.send(f)
        self.stats["tx"] += n
        return n

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.sock.close()


class FakeTcp:
    def __init__(self):
        self.events = []
        self.listening = []
        self.handover = 0          # not in a handover (net/tcp/handover.py)
        self.listeners = {}

    def listen(self, port, backlog=128):
        self.listening.append(port)


class EchoStack:
    """Echoes every frame upper-cased on the next dispatch; one optional timer."""

    def __init__(self):
        self.tcp = FakeTcp()
        self.queue = []
        self.timer = None
        self.fired = []
        self.dispatches = 0

    def process(self, frames, now):
        self.queue += [f.upper() for f in frames]

    def dispatch(self, now):
        self.dispatches += 1
        if self.timer is not None and self.timer <= now:
            self.fired.append(now)
            self.timer = None
            self.queue.append(b"timer")
        out, self.queue = self.queue, []
        return out

    def output_pending(self):
        return bool(self.queue)

    def poll_at(self):
        return self.timer


_opened = []     # sockets, fds and loops a test made; closed after it (a long session must
                 # not accumulate descriptors: forked servers in later tests inherit them)


@pytest.fixture(autouse=True)
def _close_what_the_test_opened():
    yield
    while _opened:
        x = _opened.pop()
        try:
            x.close() if hasattr(x, "close") else os.close(x)
        except (OSError, RuntimeError):   # RuntimeError: a loop a failed test left running
            pass


def socketpair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    _opened.extend((a, b))
    return a, b


def build(port, stack, listeners=(), grace=None):
    """A ShardLoop serving ``stack`` over ``port`` (closed after the test)."""
    loop = ShardLoop() if grace is None else ShardLoop(grace=grace)
    _opened.append(loop)
    ctx = ShardContext(loop, 0, 1)
    provider = UserStackProvider(port, stack)
    loop.attach(provider, ctx)
    for p, factory in dict(listeners).items():
        provider.listen(p, factory)
    return loop, provider


def make(room=None):
    a, b = socketpair()
    port = SockPort(a, room)
    stack = EchoStack()
    loop, provider = build(port, stack)
    th = threading.Thread(target=loop.serve, daemon=True)
    return loop, provider, stack, b, th


def wake(loop):
    """Wake a sleeping loop from another thread (it recomputes its sleep afterwards)."""
    loop.call_soon_threadsafe(lambda: None)


def stop(loop, th):
    loop.call_soon_threadsafe(loop.request_stop, False)
    th.join(2)
    assert not th.is_alive()


def recv(sock, timeout=2.0):
    sock.settimeout(timeout)
    return sock.recv(65536)


def wait_for(cond, timeout=5.0):
    """Poll cond() until true (the loop runs in another thread; on a loaded machine it may
    be scheduled late, so wait for the state rather than sleeping a fixed time)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_frames_in_frames_out_and_stop():
    loop, provider, stack, peer, th = make()
    th.start()
    for i in range(200):
        peer.send(b"frame%d" % i)
    got = [recv(peer) for _ in range(200)]
    assert got == [b"FRAME%d" % i for i in range(200)]
    stop(loop, th)


def test_idle_loop_sleeps():
    loop, provider, stack, peer, th = make()
    th.start()
    time.sleep(0.1)
    turns = loop.turns
    t0 = time.thread_time()
    time.sleep(1.0)
    # nothing to do: the loop is parked in epoll, not spinning
    assert loop.turns - turns <= 2
    stop(loop, th)
    assert time.thread_time() - t0 < 0.2


def test_stack_timer_wakes_the_loop():
    loop, provider, stack, peer, th = make()
    th.start()
    time.sleep(0.05)
    due = time.monotonic() + 0.15
    stack.timer = due
    wake(loop)  # the loop recomputes its sleep after any wake-up
    assert recv(peer) == b"timer"
    # not before it is due; and long before the idle sleep (MAX_SLEEP = 1 s) would have
    # ended by itself (margin for a loaded machine)
    assert due <= stack.fired[0] < due + 0.5
    stop(loop, th)


def test_asyncio_timer_wakes_the_loop():
    loop, provider, stack, peer, th = make()
    fired = []
    loop.call_later(0.2, lambda: fired.append(time.monotonic()))
    t0 = time.monotonic()
    th.start()
    assert wait_for(lambda: fired)
    time.sleep(0.05)
    # on time, once; an idle loop deaf to asyncio's timers would sleep 1 s (MAX_SLEEP)
    assert len(fired) == 1 and 0.19 <= fired[0] - t0 < 0.7
    stop(loop, th)


def test_tx_backlog_is_retried():
    loop, provider, stack, peer, th = make(room=3)
    th.start()
    for i in range(5):
        peer.send(b"f%d" % i)
    got = [recv(peer) for _ in range(3)]
    # f3 and f4 may arrive in a later rx batch: wait until the loop has them queued
    wait_for(lambda: provider.tx_backlog == [b"F3", b"F4"])
    assert provider.tx_backlog == [b"F3", b"F4"]
    provider.port.room = 10
    got += [recv(peer) for _ in range(2)]
    assert got == [b"F0", b"F1", b"F2", b"F3", b"F4"]
    stop(loop, th)


def test_events_reach_protocols_and_writes_go_out_same_turn():
    """EV_ACCEPT/EV_READABLE from stack.process reach the app before dispatch."""
    class Conn(Connection):
        local = (0xC6120002, 7)
        remote = (0xC6120001, 5555)

        def __init__(self):
            self.user = None
            self.error = None
            self.sent = []
            self.rx = b""

        def recv(self, max=-1):
            d, self.rx = self.rx, b""
            return d

        def send(self, data):
            self.sent.append(bytes(data))
            stack.queue.append(b"seg:" + bytes(data))
            return len(data)

    class Echo:
        def connection_made(self, t):
            self.t = t

        def data_received(self, d):
            self.t.write(d)

    a, b = socketpair()
    stack = EchoStack()
    conn = Conn()

    def process(frames, now):
        conn.rx += b"".join(frames)
        stack.tcp.events += [(S.EV_ACCEPT, conn), (S.EV_READABLE, conn)]

    stack.process = process
    loop, provider = build(SockPort(a), stack, {7: lambda c: Echo()})
    assert stack.tcp.listening == [7]
    b.send(b"ping")
    loop.run_turns(1)
    assert recv(b) == b"seg:ping"
    assert conn.user is not None


class _Conn(Connection):
    local = (0xC6120002, 7)
    remote = (0xC6120001, 5555)

    def __init__(self, tcp):
        self.state = ESTABLISHED
        self.error = None
        self.tcp = tcp
        self.user = None
        self.calls = []

    def recv(self, max=-1):
        return b""

    def send(self, data):
        return len(data)

    def readable(self):
        return 0

    def close(self):
        self.calls.append("close")
        self.tcp.events.append((S.EV_CLOSED, self))   # the TCP finishes the close

    def abort(self):
        self.calls.append("abort")


def _graceful_shard(proto, grace=None):
    a, b = socketpair()
    stack = EchoStack()
    loop, provider = build(SockPort(a), stack, {7: lambda c: proto}, grace=grace)
    conn = _Conn(stack.tcp)
    stack.tcp.events.append((S.EV_ACCEPT, conn))
    loop.run_turns(1)
    assert provider.streams.open == 1
    return loop, conn, b


def test_graceful_stop_lets_protocols_finish():
    class P:
        def connection_made(self, t):
            self.t = t

        def shutdown(self):
            self.t.close()

        def connection_lost(self, exc):
            self.lost = True

    p = P()
    loop, conn, _ = _graceful_shard(p)
    loop.request_stop()
    t0 = time.monotonic()
    loop.serve()
    assert time.monotonic() - t0 < 1.0
    assert conn.calls == ["close"] and p.lost


def test_graceful_stop_is_bounded_and_fast_stop_is_immediate():
    class Stubborn:
        def connection_made(self, t):
            pass

        def shutdown(self):
            pass  # never finishes

    loop, conn, _ = _graceful_shard(Stubborn(), grace=0.3)
    loop.request_stop()
    t0 = time.monotonic()
    loop.serve()
    assert 0.25 < time.monotonic() - t0 < 1.0

    loop, conn, _ = _graceful_shard(Stubborn(), grace=0.3)
    loop.request_stop()
    loop.request_stop()
    loop.request_stop(graceful=False)
    t0 = time.monotonic()
    loop.serve()
    assert time.monotonic() - t0 < 0.25     # not the 0.3 s grace (margin for a busy machine)


def test_port_fd_that_keeps_failing_ends_the_loop_instead_of_spinning():
    """The device went away under the port (its fd polls POLLHUP forever, nothing to
    read): the loop gives up (the supervisor restarts or stops) instead of burning its
    core."""
    class DeadPort(SockPort):
        def __init__(self):
            self.r, w = os.pipe()
            _opened.append(self.r)
            os.close(w)           # POLLHUP from now on
            self.stats = {}

        def rx_burst(self, max=64):
            return []

        def fileno(self):
            return self.r

    loop, provider = build(DeadPort(), EchoStack())
    t0 = time.thread_time()
    with pytest.raises(PortGone):
        loop.serve()
    assert time.thread_time() - t0 < 0.5
