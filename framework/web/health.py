"""``--health-path``: what a balancer's health check asks (docs/DEPLOY.md).

``GET PATH`` (and HEAD) answers 200 ``ok`` while the shard serves and 503 ``draining``
from the moment a stop begins: the supervisor's drain (``--drain-delay``: it tells every
worker with SIGUSR2, ``begin_drain``) or the graceful stop itself (``loop.draining``).
The path is answered before the app's own routing, for a framework App, an ASGI and a
WSGI app alike: ``wrap`` puts a ``HealthRouter`` in front of the app's router, so the
HTTP protocol's dispatch finds the health route first and everything else where it was.
A 503 closes the connection, so a checker's keep-alive connection does not pin a node
that is going away.
"""
from .handler import RequestHandler
from .routing import Route

DRAIN_SIGNAL_ATTR = "health_draining"    # set on a shard's loop by begin_drain


def begin_drain(loop):
    """This shard reports unhealthy from now on (it keeps serving)."""
    setattr(loop, DRAIN_SIGNAL_ATTR, True)


def is_draining(loop):
    return bool(getattr(loop, "draining", False) or getattr(loop, DRAIN_SIGNAL_ATTR, False))


class HealthHandler(RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.set_header("Cache-Control", "no-store")
        if is_draining(self.ctx.loop):
            self.set_status(503)
            self.set_header("Connection", "close")
            self.write("draining\n")
        else:
            self.write("ok\n")


class HealthRouter:
    """The app's router with one exact path answered first (the protocol's dispatch only
    calls ``match`` and reads ``routes`` and ``early``)."""

    __slots__ = ("inner", "path", "route", "early")

    def __init__(self, inner, path):
        self.inner = inner
        self.path = path
        self.route = Route(path, HealthHandler)
        self.early = inner.early

    @property
    def routes(self):
        return [self.route] + list(self.inner.routes)

    def add(self, pattern, handler, kwargs=None):
        """A route added after the wrap (App.route) still goes to the app's router."""
        route = self.inner.add(pattern, handler, kwargs)
        self.early = self.inner.early
        return route

    def match(self, path):
        if path == self.path:
            return self.route, (), {}
        return self.inner.match(path)


def wrap(app, path):
    """Answer ``path`` as the health check on ``app`` (any App: ours, AsgiApp, WsgiApp);
    wrapping again (the worker builds the app the supervisor built) changes nothing."""
    inner = app.router
    if isinstance(inner, HealthRouter):
        inner = inner.inner
    app.router = HealthRouter(inner, path)
    return app
