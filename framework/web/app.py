"""App: routes, stream listeners, per-shard state, limits.

The shard loop (kernel sockets or the user-level stack) does, per worker, on its
asyncio loop (``ctx.loop``):

    await app.start_shard(ctx)         # once, before any connection: builds ctx.state
    factories = app.listeners(http_port)   # {port: factory(ctx) -> Protocol}
    ...  factory(ctx) for every accepted connection on that port ...
    await app.stop_shard(ctx)          # once, at shutdown
"""
import inspect

from .http1 import HttpProtocol
from .httpserver import HttpConfig, HttpShared
from .routing import Router
from .stream import StreamHandler, stream_factory


class App:
    def __init__(self, routes=None, *, max_body_size=1 << 20, max_header_size=8192,
                 idle_timeout=60.0, request_timeout=30.0, server_header="framework",
                 default_content_type="text/html; charset=UTF-8", access_log=False):
        """``routes``: [(pattern, Handler), (pattern, Handler, initialize_kwargs), ...].

        Limits: bodies over ``max_body_size`` -> 413, header blocks over
        ``max_header_size`` -> 431; a keep-alive connection idle for ``idle_timeout``
        seconds is closed; a request whose headers are not complete ``request_timeout``
        seconds after its first byte, or whose body pauses that long -> 408 and close
        (None disables either timeout).
        ``access_log``: one INFO line per response on the "framework.access" logger.
        """
        self.router = Router()
        self.streams = {}
        self.config = HttpConfig(max_body_size=max_body_size, max_header_size=max_header_size,
                                 idle_timeout=idle_timeout, request_timeout=request_timeout,
                                 server_header=server_header,
                                 default_content_type=default_content_type,
                                 access_log=access_log)
        self._state_fn = None
        self._start_hooks = []
        self._stop_hooks = []
        for r in routes or ():
            self.add_route(*r)

    # ---- declaring -----------------------------------------------------------------------
    def add_route(self, pattern, handler, kwargs=None):
        self.router.add(pattern, handler, kwargs)
        return handler

    def route(self, pattern, **kwargs):
        """Decorator: ``@app.route("/users/{id}")`` on a RequestHandler subclass.

        Keyword arguments are passed to the handler's ``initialize``.
        """
        def deco(handler):
            self.add_route(pattern, handler, kwargs or None)
            return handler
        return deco

    def stream(self, port, handler=None):
        """Serve raw TCP on ``port`` with a StreamHandler subclass (also a decorator)."""
        def register(h):
            if not (isinstance(h, type) and issubclass(h, StreamHandler)):
                raise TypeError(f"app.stream({port}): {h!r} is not a StreamHandler subclass")
            if port in self.streams:
                raise ValueError(f"port {port} already has a stream handler")
            self.streams[int(port)] = h
            return h
        return register if handler is None else register(handler)

    def shard_state(self, fn):
        """Decorator: ``fn(ctx) -> state`` (plain or ``async def``) builds each shard's
        state object: ``ctx.state``, ``handler.state``."""
        self._state_fn = fn
        return fn

    def on_start(self, fn):
        """Decorator: ``fn(ctx)`` (plain or ``async def``) runs once per shard after its
        state exists, before the first connection; hooks run in order, and a failing one
        fails the shard's start."""
        self._start_hooks.append(fn)
        return fn

    def on_stop(self, fn):
        """Decorator: ``fn(ctx)`` (plain or ``async def``) runs once per shard at shutdown;
        a failing hook is logged and the others still run."""
        self._stop_hooks.append(fn)
        return fn

    # ---- called by the shard loops -------------------------------------------------------
    async def start_shard(self, ctx):
        """Build ``ctx.state`` and run the on_start hooks (in order); raises what they raise."""
        if self._state_fn is not None:
            ctx.state = await _call(self._state_fn, ctx)
        for fn in self._start_hooks:
            await _call(fn, ctx)

    async def stop_shard(self, ctx):
        """Run the on_stop hooks (in order); a failure is logged, not raised."""
        for fn in self._stop_hooks:
            try:
                await _call(fn, ctx)
            except Exception:
                ctx.log.exception("on_stop hook %s failed", getattr(fn, "__name__", fn))

    def listeners(self, http_port):
        """{port: factory(ctx) -> Protocol}: HTTP on ``http_port`` (if any routes) + streams."""
        out = {}
        if self.router.routes:
            out[int(http_port)] = self.http_factory()
        for port, handler in self.streams.items():
            if port in out:
                raise ValueError(f"stream port {port} collides with the HTTP port")
            out[port] = stream_factory(handler)
        return out

    def http_factory(self, clock=None):
        shared_by_ctx = {}
        app = self

        def factory(ctx):
            shared = shared_by_ctx.get(ctx)
            if shared is None:
                shared = shared_by_ctx[ctx] = (
                    HttpShared(app, ctx, app.router, app.config) if clock is None else
                    HttpShared(app, ctx, app.router, app.config, clock=clock))
            return HttpProtocol(shared)

        factory.shared_by_ctx = shared_by_ctx
        return factory

    def __repr__(self):
        return (f"<App {len(self.router.routes)} routes, "
                f"streams on {sorted(self.streams) or 'no ports'}>")


async def _call(fn, ctx):
    """``fn(ctx)``, awaited when it returns an awaitable (an ``async def`` hook)."""
    res = fn(ctx)
    if inspect.isawaitable(res):
        res = await res
    return res
