"""The per-shard reactor: call_soon, call_later, futures and coroutine tasks.

One per worker, driven by whichever loop owns the worker (user stack or kernel
sockets). It never reads a clock itself: the loop passes ``now`` in, so tests can
drive it with a fake time. Deliberately tiny; asyncio's loop would want to own
the I/O, and here the I/O belongs to the shard loop.
"""
import heapq
import itertools
import logging
from collections import deque

log = logging.getLogger("framework.reactor")


class CancelledError(Exception):
    pass


class TimerHandle:
    __slots__ = ("when", "seq", "fn", "args", "cancelled")

    def __init__(self, when, seq, fn, args):
        self.when = when
        self.seq = seq
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self):
        self.cancelled = True
        self.fn = None
        self.args = None

    def __lt__(self, other):
        return (self.when, self.seq) < (other.when, other.seq)


class Future:
    """A result that arrives later; awaitable from handler coroutines."""

    __slots__ = ("_reactor", "_done", "_result", "_exc", "_callbacks")

    def __init__(self, reactor):
        self._reactor = reactor
        self._done = False
        self._result = None
        self._exc = None
        self._callbacks = []

    def done(self):
        return self._done

    def result(self):
        if not self._done:
            raise RuntimeError("future not done")
        if self._exc is not None:
            raise self._exc
        return self._result

    def exception(self):
        return self._exc

    def set_result(self, value):
        if self._done:
            return
        self._result = value
        self._finish()

    def set_exception(self, exc):
        if self._done:
            return
        self._exc = exc
        self._finish()

    def cancel(self):
        self.set_exception(CancelledError())

    def add_done_callback(self, fn):
        if self._done:
            self._reactor.call_soon(fn, self)
        else:
            self._callbacks.append(fn)

    def _finish(self):
        self._done = True
        cbs, self._callbacks = self._callbacks, []
        for fn in cbs:
            self._reactor.call_soon(fn, self)

    def __await__(self):
        if not self._done:
            yield self
        return self.result()


class Task(Future):
    """Runs a coroutine that awaits Futures of the same reactor."""

    __slots__ = ("_coro",)

    def __init__(self, reactor, coro):
        super().__init__(reactor)
        self._coro = coro
        reactor.call_soon(self._step, None)

    def _step(self, fut):
        coro = self._coro
        try:
            if fut is None:
                yielded = coro.send(None)
            elif fut._exc is not None:
                yielded = coro.throw(fut._exc)
            else:
                yielded = coro.send(fut._result)
            while not isinstance(yielded, Future):
                # e.g. an asyncio future: we cannot wait for it; the coroutine gets the
                # error (and may catch it and go on, so its answer is handled here too)
                yielded = coro.throw(TypeError(
                    f"task awaited {yielded!r}, not a framework Future"))
        except StopIteration as stop:
            self.set_result(stop.value)
            return
        except BaseException as exc:  # the task's owner decides what to log
            self.set_exception(exc)
            return
        yielded.add_done_callback(self._step)


class Reactor:
    def __init__(self, now=0.0):
        self.now = now
        self._ready = deque()
        self._timers = []
        self._seq = itertools.count()

    def time(self):
        return self.now

    def call_soon(self, fn, *args):
        self._ready.append((fn, args))

    def call_later(self, delay, fn, *args):
        return self.call_at(self.now + delay, fn, *args)

    def call_at(self, when, fn, *args):
        h = TimerHandle(when, next(self._seq), fn, args)
        heapq.heappush(self._timers, h)
        return h

    def create_future(self):
        return Future(self)

    def create_task(self, coro):
        return Task(self, coro)

    def sleep(self, delay, result=None):
        fut = Future(self)
        self.call_later(delay, fut.set_result, result)
        return fut

    def has_ready(self):
        return bool(self._ready)

    def next_deadline(self):
        """Earliest pending timer (absolute time), or None."""
        timers = self._timers
        while timers and timers[0].cancelled:
            heapq.heappop(timers)
        return timers[0].when if timers else None

    def run_once(self, now):
        """Fire due timers, then everything ready (including what they queued)."""
        self.now = now
        timers = self._timers
        ready = self._ready
        while timers and (timers[0].cancelled or timers[0].when <= now):
            h = heapq.heappop(timers)
            if not h.cancelled:
                ready.append((h.fn, h.args))
        # callbacks queued while running run in this turn too, bounded to avoid starvation
        for _ in range(len(ready) + 4096):
            if not ready:
                break
            fn, args = ready.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("callback %r failed", fn)
