"""Serve an ASGI 3 application (``async def app(scope, receive, send)``) on our HTTP/1.1
connection (framework.web.http1), as uvicorn serves one on its own.

``AsgiApp(asgi_app, opts)`` is an App whose router sends every path and every method to
one ``AsgiHandler`` (framework.web.routing.CatchAllRouter). The handler streams the
request body (``stream_request_body``), so framing, pipelining, limits, timeouts and
read back-pressure are the connection's, written once. Per request it builds the HTTP
scope (``http_scope``), calls the app, and turns

- ``receive()`` into ``http.request`` events (``more_body`` while the body arrives; a
  body the app does not read pauses reading), then ``http.disconnect`` once the
  response is complete or the client went away;
- ``send()`` into the connection's ``write_headers``/``write``/``finish``/``drain``: the
  app's Content-Length frames the body, else it is chunked (whole when the app gives it
  in one message); ``more_body`` streams, each piece waiting for the client's pace.

An exception before ``http.response.start`` (or an app returning without one) gives a
500; after it, the connection is cut. Both are logged with the traceback; the client
sees nothing of it. Lifespan (framework.web.lifespan) runs in every shard's start/stop;
its ``state`` is copied into each HTTP scope.

A request with ``Upgrade: websocket`` goes to ``framework.web.asgi_ws.serve_websocket``
when that module is present (the WebSocket bridge).
"""
import asyncio
import logging
import re
from urllib.parse import unquote_to_bytes

from .app import App
from .h1writer import REASONS
from .handler import RequestHandler
from .httputil import add_header
from .lifespan import Lifespan
from .routing import CatchAllRouter
from .serving import SERVED_MAX_HEADER_SIZE, WebOptions

log = logging.getLogger("framework.asgi")

_HTTP_VERSIONS = {"HTTP/1.1": "1.1", "HTTP/1.0": "1.0"}
# what uvicorn refuses in a response header (RFC 9110 5.1/5.5 token and field-value)
_BAD_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_ERROR_HEADERS = {"Content-Type": "text/plain; charset=utf-8"}
_ERROR_BODY = b"Internal Server Error"
_NO_CTYPE = ()      # a Content-Type key with no line: we add no default type (as uvicorn)
_DISCONNECT = {"type": "http.disconnect"}


def http_scope(request, conn, opts, state):
    """The ASGI HTTP scope of ``request`` (httputil.Request) on ``conn`` (its
    connection): what the spec and uvicorn put there. ``path`` and ``raw_path`` include
    ``opts.root_path`` (as uvicorn since 0.26); ``state``: the lifespan state, copied."""
    raw = request.path
    raw_path = raw.encode("latin-1")
    if "%" in raw or not raw.isascii():
        path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
    else:
        path = raw
    root = opts.root_path
    if root:
        path = root + path
        raw_path = root.encode("utf-8") + raw_path
    transport = conn.transport
    client = server = None
    if transport is not None:
        peer = transport.get_extra_info("peername")
        client = (peer[0], peer[1]) if peer else None
        sock = transport.get_extra_info("sockname")
        server = (sock[0], sock[1]) if sock else None
    if conn.shared.config.trusted_proxies is not None:
        ip = request.remote_ip
        if ip is not None and (client is None or ip != client[0]):
            client = (ip, 0)    # a trusted proxy's X-Forwarded-For (as uvicorn: port 0)
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": _HTTP_VERSIONS.get(request.version) or request.version[5:],
        "method": request.method,
        "scheme": scheme_of(request, transport, opts),
        "path": path,
        "raw_path": raw_path,
        "query_string": request.query.encode("latin-1"),
        "root_path": root,
        "headers": [(name.lower(), value.rstrip(b" \t"))
                    for name, value in request.raw_headers],
        "client": client,
        "server": server,
        "state": dict(state) if state else {},
    }


def scheme_of(request, transport, opts, secure="https"):
    """The request's scheme: a trusted proxy's X-Forwarded-Proto or ours
    (``request.protocol``), ``https`` when the connection is TLS (--certfile, or the
    transport has an ``ssl_object``, as asyncio's SSL transports)."""
    scheme = getattr(request, "protocol", "http")
    if scheme != "http":
        return scheme
    if opts.certfile:
        return secure
    if transport is not None and transport.get_extra_info("ssl_object") is not None:
        return secure
    return scheme


def wants_websocket(request):
    for name, value in request.raw_headers:
        if len(name) == 7 and name.lower() == b"upgrade":
            return b"websocket" in value.lower()
    return False


def _websocket_bridge():
    try:
        from . import asgi_ws
    except ImportError:
        return None
    return getattr(asgi_ws, "serve_websocket", None)


def response_headers(pairs, request):
    """The app's ``[(name, value)]`` as write_headers takes them (``{Name: str or
    [str]}``); order kept, repeats grouped. Content-Length and Content-Type are keyed as
    the connection looks them up; Connection and Transfer-Encoding are the
    connection's own (``close`` is honoured)."""
    out = {}
    for name, value in pairs:
        if _BAD_NAME.search(name):
            raise RuntimeError(f"invalid HTTP header name {name!r}")
        if _BAD_VALUE.search(value):
            raise RuntimeError(f"invalid HTTP header value {value!r}")
        lname = name.lower()
        if lname == b"content-length":
            key = "Content-Length"
        elif lname == b"content-type":
            key = "Content-Type"
        elif lname == b"connection":
            if b"close" in value.lower():
                request.keep_alive = False
            continue
        elif lname == b"transfer-encoding":
            continue
        else:
            key = name.decode("latin-1")
        add_header(out, key, value.decode("latin-1"))
    if "Content-Type" not in out:
        out["Content-Type"] = _NO_CTYPE
    return out


class AsgiHandler(RequestHandler):
    """One request's ASGI cycle: the bridge between the app's receive/send and the
    connection (http1.HttpProtocol's write_headers/write/finish/drain/abort)."""

    stream_request_body = True

    __slots__ = ("_started", "_complete", "_disconnected", "_pending_head", "_body_done",
                 "_next_chunk", "_waiter", "_head_call", "_client_eof")

    def __init__(self, app, request, conn, ctx):
        super().__init__(app, request, conn, ctx)
        self._started = False           # http.response.start received
        self._complete = False          # the last body message was sent
        self._disconnected = False      # the client went away (or its body broke)
        self._pending_head = None       # (status, headers) not yet written
        self._body_done = False         # the app has had the whole request body
        self._next_chunk = None         # a read of the body ahead of the app's receive()
        self._waiter = None             # receive() waiting for the disconnect
        self._head_call = None
        self._client_eof = False        # the client sends no more (EOF)

    def _execute(self, route, method_name, args, kwargs):
        return self.handle()

    async def handle(self):
        app = self.app
        request = self.request
        scope = http_scope(request, self._conn, app.opts, self.state)
        if wants_websocket(request):
            serve = _websocket_bridge()
            if serve is not None:
                try:
                    await serve(app.asgi, scope, self)
                except Exception:
                    log.exception("ASGI WebSocket bridge failed (%s)", request.uri)
                    self._conn.abort()      # no-op once the bridge took the connection
                return
        try:
            result = await app.asgi(scope, self.receive, self.send)
        except asyncio.CancelledError:
            # the shard is stopping and its grace is over (ShardLoop cancels what is left)
            log.warning("ASGI application cancelled (%s %s)", request.method, request.uri)
            self._fail()
            raise
        except BaseException as exc:
            log.error("exception in ASGI application (%s %s)", request.method, request.uri,
                      exc_info=exc)
            self._fail()
        else:
            if result is not None:
                log.error("ASGI callable returned %r, not None (%s %s)", result,
                          request.method, request.uri)
            if not (self._complete or self._disconnected):
                # after the client's EOF the app may well give up: no error then
                level = logging.DEBUG if self._client_eof else logging.ERROR
                log.log(level, "ASGI callable returned without %s the response (%s %s)",
                        "completing" if self._started else "starting", request.method,
                        request.uri)
                self._fail()
        finally:
            self._finished = True
            nxt = self._next_chunk
            if nxt is not None:
                self._next_chunk = None
                if nxt.done():
                    if not nxt.cancelled():
                        nxt.exception()     # retrieved: no "never retrieved" warning
                else:
                    nxt.cancel()

    def _fail(self):
        """The app failed: a 500 if nothing reached the client yet, else cut; after a
        complete response the connection closes once it is out (as uvicorn)."""
        if self._disconnected:
            return
        if self._complete:
            self._conn.shutdown()
            return
        self._complete = True
        if self._head_call is not None:
            self._head_call.cancel()
            self._head_call = None
        if not self._started:
            self.request.keep_alive = False
            self._conn.write_headers(500, None, _ERROR_HEADERS, _ERROR_BODY, last=True)
        else:
            self._conn.abort()
        self._wake()

    # ---- receive ---------------------------------------------------------------------
    async def receive(self):
        if self._body_done or self._complete or self._disconnected:
            if not (self._complete or self._disconnected or self._client_eof):
                fut = self._waiter = self._conn.loop.create_future()
                await fut
            return _DISCONNECT
        fut = self._next_chunk
        if fut is None:
            fut = self.request.read()
        self._next_chunk = None
        try:
            chunk = await fut
        except Exception as exc:
            # the client went away mid-body, or the body broke a limit (408/413/400):
            # the app sees a disconnect; a status still due is answered by us
            self._body_broken(exc)
            return _DISCONNECT
        if not chunk:
            self._body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # one read ahead tells more_body: done at once when the body is all here
        nxt = self.request.read()
        if nxt.done() and not nxt.exception() and not nxt.result():
            self._body_done = True
            return {"type": "http.request", "body": chunk, "more_body": False}
        self._next_chunk = nxt
        return {"type": "http.request", "body": chunk, "more_body": True}

    def _body_broken(self, exc):
        status = getattr(exc, "status_code", None)
        if status is not None and not self._started and not self._conn.closed:
            self._complete = True
            self._conn.write_headers(status, None, _ERROR_HEADERS, b"%d: %s\n" % (
                status, REASONS.get(status, "Error").encode()), last=True)
        self._disconnected = True
        self._wake()

    def on_connection_close(self):
        self._disconnected = True
        self._wake()

    def on_client_eof(self):
        """The client half-closed (or closed): an app waiting for more after the body
        gets http.disconnect (as uvicorn); what it still sends goes out."""
        self._client_eof = True
        self._wake()

    def _wake(self):
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    # ---- send ------------------------------------------------------------------------
    async def send(self, message):
        kind = message["type"]
        if self._complete and not self._disconnected:
            raise RuntimeError(f"ASGI: {kind!r} sent after the response completed")
        if self._disconnected:
            return                  # the client is gone: as uvicorn, sends are dropped
        if not self._started:
            if kind != "http.response.start":
                raise RuntimeError(f"ASGI: expected 'http.response.start', got {kind!r}")
            status = message["status"]
            if status.__class__ is not int:
                status = int(status)
            headers = response_headers(message.get("headers", ()), self.request)
            self._started = True
            self._pending_head = (status, headers)
            # the head goes with the first body message (one write, and a single-body
            # response framed by its length); if the app awaits something else first,
            # it goes on its own on the next loop turn
            self._head_call = self._conn.loop.call_soon(self._flush_head)
            return
        if kind != "http.response.body":
            raise RuntimeError(f"ASGI: expected 'http.response.body', got {kind!r}")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        conn = self._conn
        head = self._pending_head
        if head is not None:
            self._pending_head = None
            self._head_call.cancel()
            self._head_call = None
            conn.write_headers(head[0], None, head[1], body, last=not more)
        elif more:
            conn.write(body)
        else:
            conn.finish(body)
        if not more:
            self._complete = True
            self._wake()
            return
        try:
            await conn.drain()
        except ConnectionError:
            self._disconnected = True
            self._wake()

    def _flush_head(self):
        self._head_call = None
        head = self._pending_head
        if head is not None and not self._disconnected:
            self._pending_head = None
            self._conn.write_headers(head[0], None, head[1], b"")

    def __repr__(self):
        return f"<AsgiHandler {self.request!r}>"


class AsgiApp(App):
    """An ASGI 3 application served as an App: one instance per worker, lifespan in
    every shard. ``limits`` are App's (max_body_size None: no limit, as uvicorn; the
    body is streamed to the app at its pace; max_header_size: 32 KiB, see serving)."""

    def __init__(self, asgi_app, opts=None, **limits):
        if limits.get("max_body_size", None) is None:
            limits["max_body_size"] = float("inf")
        limits.setdefault("max_header_size", SERVED_MAX_HEADER_SIZE)
        super().__init__(**limits)
        self.asgi = asgi_app
        self.opts = opts if opts is not None else WebOptions()
        self.router = CatchAllRouter(AsgiHandler)
        self._lifespans = {}            # ctx -> Lifespan (one per shard)

    async def start_shard(self, ctx):
        await super().start_shard(ctx)
        lifespan = Lifespan(self.asgi, self.opts.lifespan)
        self._lifespans[ctx] = lifespan
        await lifespan.startup()
        ctx.state = lifespan.state

    async def stop_shard(self, ctx):
        lifespan = self._lifespans.pop(ctx, None)
        if lifespan is not None:
            try:
                await lifespan.shutdown()
            except Exception:
                log.exception("ASGI lifespan shutdown failed")
        await super().stop_shard(ctx)

    def __repr__(self):
        return f"<AsgiApp {self.asgi!r}>"
