"""What one shard's HTTP connections share: the limits (``HttpConfig``), and the router,
the cached Server/Date lines and the timeout sweep (``HttpShared``, one per shard).

Timeouts are deadlines on the connection (a float, 0 = none) checked by one periodic
sweep per shard, not a timer per request: setting a float costs nothing on the hot path.
The wall clock for the Date header is an injectable function read at most once per
second; everything else runs on the loop's clock.
"""
import logging
import time
from email.utils import formatdate



class HttpConfig:
    __slots__ = ("max_body_size", "max_header_size", "idle_timeout", "request_timeout",
                 "server_header", "default_content_type", "access_log", "trusted_proxies",
                 "scheme")

    def __init__(self, max_body_size=1 << 20, max_header_size=8192, idle_timeout=60.0,
                 request_timeout=30.0, server_header="framework",
                 default_content_type="text/html; charset=UTF-8", access_log=False,
                 trusted_proxies=None):
        # False, True (a line per response on the "framework.access" logger) or an object
        # whose for_shard(shared) gives the shard's sink (framework.web.accesslog)
        self.access_log = access_log
        # framework.web.proxy.TrustedProxies whose X-Forwarded-For/-Proto are believed
        self.trusted_proxies = trusted_proxies
        # what Request.protocol says: "https" once framework.web.tls.wrap serves the app
        self.scheme = "http"
        self.max_body_size = max_body_size
        self.max_header_size = max_header_size
        # None = no limit (a deadline of +inf is never reached)
        self.idle_timeout = float("inf") if idle_timeout is None else float(idle_timeout)
        self.request_timeout = float("inf") if request_timeout is None else float(request_timeout)
        self.server_header = server_header
        self.default_content_type = default_content_type


LIVE = []       # every HttpShared of this process (served_requests)


def served_requests():
    """Responses the HTTP servers of this process completed."""
    return sum(s.requests for s in LIVE)


class HttpShared:
    """Per-shard state of the HTTP server: router, config, Date cache, timeout sweep."""

    __slots__ = ("app", "ctx", "loop", "router", "config", "conns",
                 "_sweep_handle", "_tick", "_prefix_until", "_prefix", "ctype_line",
                 "clock", "server_line", "access_log", "requests", "readers")

    def __init__(self, app, ctx, router, config, clock=time.time):
        self.app = app
        self.ctx = ctx
        self.loop = ctx.loop
        self.router = router
        self.config = config
        self.conns = set()
        # request readers (httptools parser + callbacks) between two connections: making
        # a parser costs more than most of a short request's parsing (framework.web.http1)
        self.readers = []
        self.requests = 0        # responses completed (--max-requests counts them)
        LIVE.append(self)
        self._sweep_handle = None
        self._tick = min(1.0, max(0.02, min(config.idle_timeout, config.request_timeout) / 4))
        self._prefix_until = -1.0
        self._prefix = b""
        self.clock = clock
        self.server_line = (b"Server: %s\r\n" % config.server_header.encode("latin-1")
                            if config.server_header else b"")
        self.ctype_line = b"Content-Type: %s\r\n" % config.default_content_type.encode("latin-1")
        # what _response_done hands every response to: record(req, status, nbytes)
        wanted = config.access_log
        if not wanted:
            self.access_log = None
        elif hasattr(wanted, "for_shard"):
            self.access_log = wanted.for_shard(self)
        else:
            self.access_log = LoggerAccessLog(self.loop)

    def prefix(self):
        """``Server:`` + ``Date:`` header lines; the Date is rebuilt once per wall second."""
        now = self.loop.time()
        if now >= self._prefix_until:
            wall = self.clock()
            self._prefix = self.server_line + b"Date: %s\r\n" % formatdate(
                wall, usegmt=True).encode("ascii")
            self._prefix_until = now + (1.0 - wall % 1.0)
        return self._prefix

    def track(self, conn):
        self.conns.add(conn)
        if self._sweep_handle is None:
            self._sweep_handle = self.loop.call_later(self._tick, self._sweep)

    def untrack(self, conn):
        self.conns.discard(conn)

    def _sweep(self):
        now = self.loop.time()
        for conn in [c for c in self.conns if 0.0 < c.deadline <= now]:
            conn.timed_out()
        self._sweep_handle = (self.loop.call_later(self._tick, self._sweep)
                              if self.conns else None)


class LoggerAccessLog:
    """``App(access_log=True)``: one INFO line per response on the "framework.access"
    logger (``--access-log`` writes gunicorn's format instead: framework.web.accesslog)."""

    __slots__ = ("loop", "log")

    def __init__(self, loop):
        self.loop = loop
        self.log = logging.getLogger("framework.access")
        if not self.log.isEnabledFor(logging.INFO):
            self.log.setLevel(logging.INFO)     # asked for explicitly: show it

    def record(self, req, status, nbytes):
        ms = (self.loop.time() - req.start_time) * 1000.0
        self.log.info("%d %s %s (%s) %s %.2fms", status, req.method, req.uri, req.remote_ip,
                      "-" if nbytes < 0 else nbytes, ms)
