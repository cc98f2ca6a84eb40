"""What a shard offers the app: its event loop, its id, the app's per-shard state, calls
to other shards and outbound connections through the shard's own stack.

A leaf module: the shard loops (framework/shard) build a ShardContext, the web layer
(framework/web) only reads one, and neither imports the other for it.

Cross-shard calls always exist and always return an awaitable asyncio future, also
with one shard and also for a call to the calling shard itself (Seastar's
``smp::submit_to``): code written for N shards runs unchanged on one.
"""
import asyncio
import functools
import logging

from framework.connection import StreamConnection


class ShardUnavailable(RuntimeError):
    """The target shard is dead or was restarted while the call was in flight."""


class ShardTimeout(TimeoutError):
    """The target shard did not answer in time (stuck, or its ring stayed full)."""


_current = None


def current_shard():
    """The ShardContext of the shard this process runs (inside a cross-shard call: the
    shard running it). RuntimeError outside a shard."""
    if _current is None:
        raise RuntimeError("not inside a shard")
    return _current


class ShardContext:
    """``loop``: the shard's asyncio event loop; ``shard_id`` in 0..``shard_count``-1;
    ``state``: what the app's ``@app.shard_state`` function built for this shard."""

    __slots__ = ("loop", "shard_id", "shard_count", "state", "log", "_calls", "_connector")

    def __init__(self, loop, shard_id=0, shard_count=1, state=None):
        self.loop = loop
        self.shard_id = shard_id
        self.shard_count = shard_count
        self.state = state
        self.log = logging.getLogger(f"framework.shard{shard_id}")
        self._calls = None       # the shard's end of the cross-shard mesh (xshard.XShard)
        self._connector = None   # fn(factory, host, port, timeout) -> future of (t, p)

    def install(self):
        """Make this the process's shard (``current_shard()``)."""
        global _current
        _current = self

    def bind(self, calls=None, connector=None):
        """The shard loop plugs in its cross-shard mesh and its stack's connector."""
        if calls is not None:
            self._calls = calls
        if connector is not None:
            self._connector = connector

    # ---- cross-shard calls ---------------------------------------------------------------
    def submit_to(self, shard, fn, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` on shard ``shard``; a future of its result. ``fn``
        must be a module-level function (it travels by name); it may return a value, a
        future or a coroutine. Fails with ShardUnavailable / ShardTimeout."""
        if self._calls is not None:
            return self._calls.submit_to(shard, fn, *args, **kwargs)
        if not 0 <= shard < self.shard_count:
            raise ValueError(f"submit_to: no shard {shard} (0..{self.shard_count - 1})")
        if shard != self.shard_id:
            fut = self.loop.create_future()
            fut.set_exception(ShardUnavailable(f"shard {shard} is not reachable from here"))
            return fut
        return run_local(self.loop, fn, args, kwargs)

    def broadcast(self, fn, *args, **kwargs):
        """Run ``fn`` on every shard; a future of the results in shard order (the first
        failure fails it)."""
        return asyncio.gather(*(self.submit_to(k, fn, *args, **kwargs)
                                for k in range(self.shard_count)))

    def map_reduce(self, fn, reduce, *args, initial=None, **kwargs):
        """A future of ``reduce()`` over the results of ``fn`` on every shard, in order."""
        out = self.loop.create_future()

        def done(g):
            if out.done():
                return
            if g.cancelled():
                out.cancel()
            elif g.exception() is not None:
                out.set_exception(g.exception())
            else:
                try:
                    vals = g.result()
                    out.set_result(functools.reduce(reduce, vals) if initial is None
                                   else functools.reduce(reduce, vals, initial))
                except Exception as e:
                    out.set_exception(e)
        self.broadcast(fn, *args, **kwargs).add_done_callback(done)
        return out

    # ---- outbound connections through the shard's stack -------------------------------
    def create_connection(self, protocol_factory, host, port, timeout=10.0):
        """A future of (transport, protocol) connected to host:port through this shard's
        stack (the user-level stack, or kernel sockets in the link's namespace)."""
        if self._connector is None:
            raise RuntimeError("this shard has no stack to connect through")
        return self._connector(protocol_factory, host, port, timeout)

    async def open_connection(self, host, port, timeout=10.0):
        """A framework.connection.StreamConnection to host:port (``await conn.read()``,
        ``conn.write()``), through this shard's stack."""
        _transport, proto = await self.create_connection(
            lambda: StreamConnection(self.loop), host, port, timeout)
        return proto


def run_local(loop, fn, args, kwargs):
    """Run ``fn`` on the next turn of ``loop``; a future of its value (a returned
    coroutine runs as a task, a returned future is followed)."""
    fut = loop.create_future()

    def run():
        try:
            res = fn(*args, **kwargs)
        except Exception as e:
            settle(fut, False, e)
            return
        when_ready(loop, res, functools.partial(settle, fut))
    loop.call_soon(run)
    return fut


def when_ready(loop, res, reply):
    """Call ``reply(ok, value)`` once ``res`` (a value, a future or a coroutine) is ready."""
    if asyncio.iscoroutine(res):
        res = loop.create_task(res)
    if asyncio.isfuture(res):
        def done(f):
            if f.cancelled():
                reply(False, asyncio.CancelledError())
            elif f.exception() is not None:
                reply(False, f.exception())
            else:
                reply(True, f.result())
        res.add_done_callback(done)
    else:
        reply(True, res)


def settle(fut, ok, value):
    """Resolve ``fut`` unless its waiter gave up on it (cancelled it) already."""
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)
