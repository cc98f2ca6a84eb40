"""What ``framework serve`` hands the web layer besides the app: the interface to serve it
with, TLS, access log and proxy options (``WebOptions``), and the one place that turns what
the APP spec names into the object a shard serves (``build_app``).

    app = build_app(load_target("main:app"), WebOptions(interface="auto"))
    app.start_shard(ctx); app.listeners(http_port); app.stop_shard(ctx)

A framework ``App`` is served as it is; an ASGI 3 application through
``framework.web.asgi.AsgiApp``, a WSGI one through ``framework.web.wsgi.WsgiApp`` (both
``App`` subclasses, so the shard loops see one interface); with ``certfile`` the result is
wrapped by ``framework.web.tls.wrap`` so its HTTP listener speaks HTTPS.
"""
import inspect

from .app import App

INTERFACES = ("auto", "asgi", "wsgi", "framework")

# Limits of a served ASGI/WSGI app, where App's own defaults (8 KiB head, 1 MiB body) turn
# away requests those apps get through the servers they come from. A request head up to
# 32 KiB: nginx's large_client_header_buffers 4 x 8k (uvicorn and gunicorn take as much):
# a few large cookies or a JWT. A WSGI body up to 1 GiB, buffered before the app runs:
# waitress's max_request_body_size (uvicorn and gunicorn set none; Flask's
# MAX_CONTENT_LENGTH is the app's own). An ASGI body is streamed: no limit, as uvicorn.
SERVED_MAX_HEADER_SIZE = 32 * 1024
WSGI_MAX_BODY_SIZE = 1 << 30


class AppKindError(Exception):
    """The APP spec names something that is neither an App, an ASGI nor a WSGI app."""


class WebOptions:
    """Plain data (it pickles into the worker spec); defaults are what ``serve`` uses."""

    __slots__ = ("interface", "root_path", "lifespan", "threads", "certfile", "keyfile",
                 "ca_certs", "ssl_ciphers", "access_log", "forwarded_allow_ips", "health_path")

    def __init__(self, interface="auto", root_path="", lifespan="auto", threads=4,
                 certfile=None, keyfile=None, ca_certs=None, ssl_ciphers=None,
                 access_log=None, forwarded_allow_ips=None, health_path=None):
        self.interface = interface          # auto | asgi | wsgi | framework
        self.root_path = root_path          # ASGI root_path / WSGI SCRIPT_NAME
        self.lifespan = lifespan            # auto | on | off (ASGI lifespan protocol)
        self.threads = threads              # WSGI thread pool per worker
        self.certfile = certfile            # TLS: serve HTTPS when given
        self.keyfile = keyfile
        self.ca_certs = ca_certs            # ask for (and verify) client certificates
        self.ssl_ciphers = ssl_ciphers
        self.access_log = access_log        # None (off), "-" (stderr) or a file path
        self.forwarded_allow_ips = forwarded_allow_ips  # None, "*" or "a,b,c" (trusted proxies)
        self.health_path = health_path      # None, or the path answered 200/503 (health.py)

    @classmethod
    def from_config(cls, cfg):
        return cls(**{k: getattr(cfg, k) for k in cls.__slots__ if hasattr(cfg, k)})

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, st):
        for k, v in st.items():
            setattr(self, k, v)

    def __repr__(self):
        return f"WebOptions({self.__getstate__()!r})"


def kind_of(obj):
    """"framework" | "asgi" | "wsgi" | None, by the shape of ``obj`` (as uvicorn and granian
    tell an ASGI 3 app, ``async def app(scope, receive, send)``, from a WSGI one,
    ``def app(environ, start_response)``)."""
    if isinstance(obj, App):
        return "framework"
    if not callable(obj) or isinstance(obj, type):
        return None
    call = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else \
        getattr(obj, "__call__", None)
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(obj):
        return "asgi"
    try:
        params = [p for p in inspect.signature(obj).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return None
    if len(params) == 3:
        return "asgi"       # an ASGI app that is not a coroutine function (a wrapper class)
    if len(params) == 2:
        return "wsgi"
    return None


def build_app(obj, opts=None):
    """The App a shard serves for ``obj`` (what the APP spec names), per ``opts.interface``."""
    opts = opts or WebOptions()
    kind = kind_of(obj) if opts.interface == "auto" else opts.interface
    if kind == "framework":
        if not isinstance(obj, App):
            raise AppKindError(f"--interface framework: {type(obj).__name__} is not a "
                               "framework App")
        app = obj
    elif kind == "asgi":
        from .asgi import AsgiApp
        app = AsgiApp(obj, opts)
    elif kind == "wsgi":
        from .wsgi import WsgiApp
        app = WsgiApp(obj, opts)
    else:
        raise AppKindError(f"{type(obj).__name__} is not a framework App, an ASGI 3 app "
                           "(async (scope, receive, send)) or a WSGI app (environ, "
                           "start_response); --interface asgi|wsgi|framework names it")
    if opts.forwarded_allow_ips:
        from .proxy import TrustedProxies
        app.config.trusted_proxies = TrustedProxies.parse(opts.forwarded_allow_ips)
    if opts.access_log is not None:
        from .accesslog import enable
        enable(app, opts)
    if opts.health_path:
        from .health import wrap as answer_health
        answer_health(app, opts.health_path)
    if opts.certfile:
        from .tls import wrap
        app = wrap(app, opts)
    return app
