"""App: routes, stream listeners, per-shard state, limits.

The shard loop (kernel sockets or the user-level stack) calls, per worker:

    app.on_shard_start(ctx)            # once, before any connection: builds ctx.state
    factories = app.listeners(http_port)   # {port: factory(ctx) -> Protocol}
    ...  factory(ctx) for every accepted connection on that port ...
    app.on_shard_stop(ctx)             # once, at shutdown (optional for the loop)
"""
from .http1 import HttpConfig, HttpProtocol, HttpShared
from .routing import Router
from .stream import StreamHandler, stream_factory


class App:
    def __init__(self, routes=None, *, max_body_size=1 << 20, max_header_size=8192,
                 idle_timeout=60.0, request_timeout=30.0, server_header="framework",
                 default_content_type="text/html; charset=UTF-8", state=None,
                 access_log=False):
        """``routes``: [(pattern, Handler), (pattern, Handler, initialize_kwargs), ...].

        ``state``: optional ``fn(ctx) -> object``, the per-shard state (``handler.state``,
        ``ctx.state``); the same as decorating a function with ``@app.shard_state``.
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
        self._state_fn = state
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
        """Decorator: ``fn(ctx) -> state`` builds each shard's state object."""
        self._state_fn = fn
        return fn

    def on_start(self, fn):
        """Decorator: ``fn(ctx)`` runs once per shard after its state exists."""
        self._start_hooks.append(fn)
        return fn

    def on_stop(self, fn):
        self._stop_hooks.append(fn)
        return fn

    # ---- called by the shard loops -------------------------------------------------------
    def on_shard_start(self, ctx):
        if self._state_fn is not None:
            ctx.state = self._state_fn(ctx)
        for fn in self._start_hooks:
            fn(ctx)

    def make_state(self, ctx):
        """Same as on_shard_start, returning the state (for loops that assign it)."""
        self.on_shard_start(ctx)
        return ctx.state

    def on_shard_stop(self, ctx):
        for fn in self._stop_hooks:
            try:
                fn(ctx)
            except Exception:
                ctx.log.exception("on_stop hook failed")

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
