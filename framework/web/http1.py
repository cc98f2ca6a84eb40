"""HTTP/1.1 server protocol on httptools, for one connection (CONTRACTS section 5).

Pure: no sockets and no clock reads of its own. Time is ``ctx.loop.time()``, the
shard's asyncio loop's clock; the wall clock for the Date header is an injectable function read at
most once per second. Everything a shard's connections share (router, limits, the
cached Date line, the timeout sweep) lives in one ``HttpShared`` per shard.

Request flow: bytes -> httptools callbacks -> ``Request`` -> (queue, for pipelining)
-> handler. Only one handler runs per connection at a time, so responses leave in
request order; later pipelined requests are parsed and queued meanwhile. A sync
handler runs inside ``data_received`` and its response is written before the next
request is looked at; an ``async def`` handler becomes an asyncio Task on the shard loop.

A handler with ``stream_request_body = True`` starts as soon as its headers are in
(when it is the connection's turn) and reads the body through a BodyStream
(``await self.request.read()``); reading pauses while it lags behind.

Timeouts are deadlines on the connection (a float, 0 = none) checked by one periodic
sweep per shard, not a timer per request: setting a float costs nothing on the hot path.
Errors found while parsing (400/408/413/431/417) are answered in turn (after the
responses still due) and close the connection, through the transport's optional
``lingering_close`` so a client still sending does not turn our answer into an RST.
"""
import asyncio
import logging
from collections import deque
from email.utils import formatdate
import time

import httptools
from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade

from .flow import drain_future, wake_drainers
from .handler import PEER_LAZY, REASONS, STATUS_LINES, BodyStream, HTTPError, Request, ShardInfo

log = logging.getLogger("framework.web")

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NO_BODY_STATUS = frozenset((204, 304)) | frozenset(range(100, 200))
_METHOD_STR = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                         "OPTIONS")}
_VERSION_STR = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
_HDR_CACHE = {}          # tuple(handler headers) -> their bytes
_PAUSE_AT = 16          # queued pipelined requests before we stop reading
_RESUME_AT = 4


class _Reject(Exception):
    """Raised inside a parser callback to answer ``status`` and close."""

    def __init__(self, status):
        self.status = status


class _Stop(Exception):
    """Raised inside on_message_complete: no more requests on this connection."""


class HttpConfig:
    __slots__ = ("max_body_size", "max_header_size", "idle_timeout", "request_timeout",
                 "server_header", "default_content_type", "access_log")

    def __init__(self, max_body_size=1 << 20, max_header_size=8192, idle_timeout=60.0,
                 request_timeout=30.0, server_header="framework",
                 default_content_type="text/html; charset=UTF-8", access_log=False):
        self.access_log = access_log
        self.max_body_size = max_body_size
        self.max_header_size = max_header_size
        # None = no limit (a deadline of +inf is never reached)
        self.idle_timeout = float("inf") if idle_timeout is None else float(idle_timeout)
        self.request_timeout = float("inf") if request_timeout is None else float(request_timeout)
        self.server_header = server_header
        self.default_content_type = default_content_type


class HttpShared:
    """Per-shard state of the HTTP server: router, config, Date cache, timeout sweep."""

    __slots__ = ("app", "ctx", "loop", "router", "config", "shard_info", "conns",
                 "_sweep_handle", "_tick", "_prefix_until", "_prefix", "ctype_line",
                 "clock", "server_line", "access_log")

    def __init__(self, app, ctx, router, config, clock=time.time):
        self.app = app
        self.ctx = ctx
        self.loop = ctx.loop
        self.router = router
        self.config = config
        self.shard_info = ShardInfo(ctx.shard_id, ctx.shard_count)
        self.conns = set()
        self._sweep_handle = None
        self._tick = min(1.0, max(0.02, min(config.idle_timeout, config.request_timeout) / 4))
        self._prefix_until = -1.0
        self._prefix = b""
        self.clock = clock
        self.server_line = (b"Server: %s\r\n" % config.server_header.encode("latin-1")
                            if config.server_header else b"")
        self.ctype_line = b"Content-Type: %s\r\n" % config.default_content_type.encode("latin-1")
        self.access_log = access_log = logging.getLogger("framework.access") \
            if config.access_log else None
        if access_log is not None and not access_log.isEnabledFor(logging.INFO):
            access_log.setLevel(logging.INFO)   # asked for explicitly: show it

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
            conn._timed_out()
        self._sweep_handle = (self.loop.call_later(self._tick, self._sweep)
                              if self.conns else None)


class HttpProtocol:
    __slots__ = ("shared", "transport", "parser", "_remote_ip", "deadline", "_closed",
                 "_stopped", "_eof", "_active", "_queue", "_paused", "_in_msg", "_in_hdrs",
                 "_url", "_headers", "_body", "_body_size", "_hdr_size", "_partial",
                 "_req", "_task", "_clen", "_expect", "_max_hdr", "_wpaused", "_drainers", "_inbox",
                 "_body_limit", "_rpaused", "_llhttp_closed")

    def __init__(self, shared):
        self.shared = shared
        self.transport = None
        self.parser = httptools.HttpRequestParser(self)
        self._remote_ip = None
        self.deadline = 0.0
        self._closed = False
        self._stopped = False     # no more requests will be read (close after responses)
        self._eof = False
        self._active = None       # the handler currently producing a response
        self._queue = None        # pipelined requests (or error statuses) waiting their turn
        self._paused = False
        self._in_msg = False
        self._in_hdrs = False
        self._url = b""
        self._headers = None
        self._body = None
        self._body_size = 0
        self._hdr_size = 0
        self._partial = 0
        self._req = None
        self._task = None
        self._clen = None
        self._expect = None
        self._max_hdr = shared.config.max_header_size
        self._wpaused = False
        self._drainers = None
        self._inbox = None        # BodyStream of the request being streamed to its handler
        self._body_limit = shared.config.max_body_size
        self._rpaused = 0         # reasons reading is paused (pipelining, body stream)
        self._llhttp_closed = False   # the parser finished a non-keep-alive message

    # ---- Protocol interface ------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        self._remote_ip = PEER_LAZY      # looked up on first use (remote_ip)
        shared = self.shared
        self.deadline = shared.loop.time() + shared.config.idle_timeout
        shared.track(self)

    @property
    def remote_ip(self):
        """The client's address (str), or None."""
        ip = self._remote_ip
        if ip is PEER_LAZY:
            t = self.transport
            peer = t.get_extra_info("peername") if t is not None else None
            ip = self._remote_ip = peer[0] if peer else None
        return ip

    @remote_ip.setter
    def remote_ip(self, value):
        self._remote_ip = value

    def data_received(self, data):
        if self._stopped or self._closed:
            return
        try:
            self.parser.feed_data(data)
        except HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _Stop):
                pass
            elif isinstance(cause, _Reject):
                self._fail(cause.status)
            else:  # a bug in a callback of ours: do not leave the connection half-parsed
                log.error("HTTP parser callback failed", exc_info=cause)
                self._fail(500)
            return
        except HttpParserUpgrade:
            # Upgrade/CONNECT: we speak no other protocol; answer the request, then close
            self._stopped = True
            if self._req is not None and self._in_msg:
                req = self._req
                req.body = b""
                req.keep_alive = False
                self._in_msg = False
                self._dispatch(req)
            if self._active is None and not self._queue:
                self._close()
            return
        except HttpParserError:
            if self._llhttp_closed:
                return      # bytes after a request that closes the connection: ignored
            self._fail(400)
            return
        if self._stopped:
            return
        if self._in_hdrs:
            # A header block still arriving: bound what the parser buffers (431), counting
            # completed lines in _hdr_size and the unfinished line in _partial.
            nl = data.rfind(b"\n")
            self._partial = len(data) - nl - 1 if nl >= 0 else self._partial + len(data)
            if self._hdr_size + self._partial > self.shared.config.max_header_size:
                self._fail(431)
        elif not self._in_msg and self._active is None and not self._queue:
            self.deadline = self.shared.loop.time() + self.shared.config.idle_timeout

    def eof_received(self):
        self._eof = True
        if self._inbox is not None:     # the body being streamed will never complete
            self._fail(400)
            return not self._closed
        self._stopped = True
        if self._active is None and not self._queue:
            self._close()
            return False
        return True   # keep the write side open to finish the responses

    def connection_lost(self, exc):
        self._closed = True
        self.shared.untrack(self)
        # break the protocol <-> parser and protocol <-> transport reference cycles: the
        # connection's objects are then freed by reference counting at once, not left
        # for the cyclic GC (whose collections cost ~4 us per short connection)
        self.parser = None
        if self._remote_ip is PEER_LAZY and self._active is not None:
            self.remote_ip          # a handler still running may ask for it
        self.transport = None
        if self._inbox is not None:
            self._inbox.finish(ConnectionResetError("connection lost"))
            self._inbox = None
        if self._drainers:
            self._wake_drainers(ConnectionResetError("connection lost"))
        h = self._active
        if h is not None:
            try:
                h.on_connection_close()
            except Exception:
                log.exception("on_connection_close failed")

    def pause_writing(self):
        self._wpaused = True

    def resume_writing(self):
        self._wpaused = False
        self._wake_drainers(None)
        if self._queue and self._active is None:
            self._pump()

    def _wake_drainers(self, exc):
        wake_drainers(self, exc)

    def _release_inbox(self):
        """The streamed request's handler is done: drop the rest of its body."""
        inbox = self._inbox
        inbox.closed = True
        if inbox._paused:
            inbox._paused = False
            self._resume_body()

    def _pause_body(self):
        self._rpaused += 1
        if self._rpaused == 1:
            pause = getattr(self.transport, "pause_reading", None)
            if pause is not None:
                pause()

    def _resume_body(self):
        self._rpaused -= 1
        if self._rpaused == 0 and not self._closed:
            resume = getattr(self.transport, "resume_reading", None)
            if resume is not None:
                resume()

    def _drain(self):
        """An asyncio future done when the transport takes more data (at once if it does now)."""
        return drain_future(self, self.shared.loop, self._closed)

    def shutdown(self):
        """Stop reading; close once the current response is out."""
        self._stopped = True
        if self._active is None and not self._queue:
            self._close()

    # ---- httptools callbacks -----------------------------------------------------------
    def on_message_begin(self):
        self._in_msg = True
        self._in_hdrs = True
        self._url = b""
        self._headers = []
        self._clen = None
        self._expect = None
        self._body = None
        self._body_limit = self.shared.config.max_body_size
        self._body_size = 0
        self._hdr_size = 0
        self._partial = 0
        shared = self.shared
        self.deadline = shared.loop.time() + shared.config.request_timeout

    def on_url(self, url):
        self._url += url
        self._hdr_size += len(url)

    def on_header(self, name, value):
        n = self._hdr_size + len(name) + len(value) + 4
        self._hdr_size = n
        if n > self._max_hdr:
            raise _Reject(431)
        self._headers.append((name, value))
        ln = len(name)
        if ln == 14 or ln == 6:   # the two headers the protocol itself must look at
            lname = name.lower()
            if lname == b"content-length":
                if self._clen is not None and self._clen != value:
                    raise _Reject(400)
                self._clen = value
            elif lname == b"expect":
                self._expect = value

    def on_headers_complete(self):
        self._in_hdrs = False
        self._partial = 0
        if self._hdr_size > self._max_hdr:
            raise _Reject(431)
        config = self.shared.config
        parser = self.parser
        url = self._url
        headers = self._headers
        if url[:1] != b"/":
            if url == b"*":
                path, query = "*", ""
            else:  # absolute-form (a proxy-style request line)
                try:
                    u = httptools.parse_url(url)
                except HttpParserError:
                    raise _Reject(400) from None
                path = (u.path or b"/").decode("latin-1")
                query = (u.query or b"").decode("latin-1")
        else:
            q = url.find(b"?")
            if q < 0:
                path, query = url.decode("latin-1"), ""
            else:
                path, query = url[:q].decode("latin-1"), url[q + 1:].decode("latin-1")
            f = path.find("#")
            if f >= 0:
                path = path[:f]
        version = parser.get_http_version()
        method = parser.get_method()
        req = Request(_METHOD_STR.get(method) or method.decode("ascii"), url.decode("latin-1"),
                      path, query, _VERSION_STR.get(version) or "HTTP/" + version, headers,
                      b"", self._remote_ip)
        req.connection = self
        req.start_time = self.shared.loop.time()
        self._req = req
        stream = False
        if self.shared.router.early:
            route = self.shared.router.match(path)[0]
            if route is not None:
                if route.max_body_size is not None:
                    self._body_limit = route.max_body_size
                # stream only when it is this request's turn; a pipelined one waiting
                # behind others is buffered and read() gives it in one piece
                stream = (route.streaming and req.method in route.methods
                          and self._active is None and not self._queue)
        cl = self._clen
        if cl is not None:
            try:
                n = int(cl)
            except ValueError:
                raise _Reject(400) from None
            if n > self._body_limit:
                raise _Reject(413)
        expect = self._expect
        if expect is not None:
            if expect.strip().lower() != b"100-continue":
                raise _Reject(417)
            if version == "1.1":
                if self._active is None and not self._queue:
                    self.transport.write(_CONTINUE)
                else:
                    # an earlier response is still due: 100 would jump the queue; the
                    # client sends the body anyway after its own short wait
                    req.expect_continue = True
        if stream:
            req.keep_alive = parser.should_keep_alive()
            self._inbox = req.body_stream = BodyStream(self.shared.loop, self)
            self.deadline = self.shared.loop.time() + config.request_timeout
            self._run(req)

    def on_body(self, body):
        n = self._body_size + len(body)
        if n > self._body_limit:
            raise _Reject(413)
        self._body_size = n
        # a body may take long (big uploads); what is limited is a pause in it
        self.deadline = self.shared.loop.time() + self.shared.config.request_timeout
        if self._inbox is not None:
            self._inbox.put(body)
            return
        if self._body is None:
            self._body = [body]
        else:
            self._body.append(body)

    def on_message_complete(self):
        req = self._req
        self._req = None
        self._in_msg = False
        keep = self.parser.should_keep_alive()
        req.keep_alive = keep
        self.deadline = 0.0
        inbox = self._inbox
        if inbox is not None:       # streamed: its handler is already running
            self._inbox = None
            inbox.finish()
        else:
            body = self._body
            if body is not None:
                req.body = body[0] if len(body) == 1 else b"".join(body)
                self._body = None
            self._dispatch(req)
        if not keep:
            # llhttp itself stops after a message that does not keep the connection:
            # any further byte of this feed raises HttpParserError("Data after
            # `Connection: close`"), which data_received ignores. Not raising _Stop here
            # spares the common Connection: close request an exception, its traceback
            # and the reference cycles they leave for the GC (~10 us per connection).
            self._stopped = True
            self._llhttp_closed = True
        elif self._closed:   # the handler closed the connection: parse no further
            self._stopped = True
            raise _Stop()

    # ---- request execution -------------------------------------------------------------
    def _dispatch(self, req):
        # wait while a response is being made, others wait, or the client does not read
        # (write-paused: a pipelined flood must not pile up responses in our buffers)
        if self._active is not None or self._queue or self._wpaused:
            if self._queue is None:
                self._queue = deque()
            self._queue.append(req)
            if len(self._queue) >= _PAUSE_AT and not self._paused:
                self._paused = True
                self._pause_body()
            return
        self._run(req)

    def _pump(self):
        """Run queued requests once the active one has finished."""
        q = self._queue
        while q and self._active is None and not self._closed and not self._wpaused:
            item = q.popleft()
            if item.__class__ is int:
                self._fail(item)
                return
            self._run(item)
        if self._paused and (not q or len(q) <= _RESUME_AT):
            self._paused = False
            self._resume_body()
        if self._active is None and not q:
            if self._stopped:
                self._close()
            elif not self._in_msg:
                shared = self.shared
                self.deadline = shared.loop.time() + shared.config.idle_timeout

    def _run(self, req):
        shared = self.shared
        route, args, kwargs = shared.router.match(req.path)
        if route is None:
            self._simple(req, 404)
            return
        name = route.methods.get(req.method)
        if name is None:
            self._simple(req, 405, b"Allow: %s\r\n" % route.allow.encode())
            return
        h = route.handler(shared.app, req, self, shared.ctx, shared.shard_info)
        self._active = h
        h.path_kwargs = kwargs
        try:
            if route.kwargs:
                h.initialize(**route.kwargs)
            if route.has_defaults:
                h.set_default_headers()
            pending = h.prepare() if route.has_prepare else None
            if pending is not None:   # async prepare()
                self._task = shared.loop.create_task(
                    self._run_async(h, pending, getattr(h, name), args, kwargs))
                return
            if h._finished:
                return
            if route.is_async[req.method]:
                self._task = shared.loop.create_task(
                    self._run_async(h, None, getattr(h, name), args, kwargs))
                return
            r = getattr(h, name)(*args, **kwargs)
            if r is not None and hasattr(r, "__await__"):
                # a plain def that returned an awaitable: finish when it is done
                self._task = shared.loop.create_task(
                    self._run_async(h, None, lambda: r, (), {}))
                return
            if not h._finished:
                h.finish()
        except Exception as e:
            h._handle_exception(e)

    async def _run_async(self, h, pending, method, args, kwargs):
        try:
            if pending is not None:
                await pending
            if not h._finished:
                r = method(*args, **kwargs)
                if r is not None and hasattr(r, "__await__"):
                    await r
                if not h._finished:
                    h.finish()
        except Exception as e:
            h._handle_exception(e)
        except asyncio.CancelledError as e:
            # something the handler awaited was cancelled under it, or this task was
            # (the loop shutting down): no response will come, so answer 500 and go on
            h._handle_exception(e)
            if asyncio.current_task().cancelling():
                self._after_async(h)
                raise
        self._after_async(h)

    def _after_async(self, h):
        self._task = None
        if self._active is h:   # finish() never reached us (connection gone): let go
            self._active = None
        self._pump()

    # ---- responses ---------------------------------------------------------------------
    def _head(self, h, status, extra):
        """Status line and header bytes of handler ``h``'s response."""
        shared = self.shared
        if h._reason is None:
            line = STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status
        else:
            line = b"HTTP/1.1 %d %s\r\n" % (status, h._reason.encode("latin-1"))
        headers = h._headers
        if headers is None:
            hdr = shared.ctype_line if status not in _NO_BODY_STATUS else b""
        else:
            # handlers tend to set the same few headers every time: cache their bytes
            items = tuple(headers.items())
            try:
                hdr = _HDR_CACHE.get(items)
            except TypeError:       # a list value (add_header): not hashable, not cached
                hdr = items = None
            if hdr is None:
                hdr = "".join([f"{k}: {v}\r\n" if v.__class__ is str else
                               "".join(f"{k}: {x}\r\n" for x in v)
                               for k, v in headers.items()]).encode("latin-1")
                if items is not None:
                    if len(_HDR_CACHE) >= 512:
                        _HDR_CACHE.clear()
                    _HDR_CACHE[items] = hdr
            if "Content-Type" not in headers and status not in _NO_BODY_STATUS:
                hdr = shared.ctype_line + hdr
        return line + shared.prefix() + hdr + extra

    def _send(self, h, body):
        """Complete response of a handler that never flushed."""
        if self._closed:
            self._active = None
            return
        req = h.request
        status = h._status
        # stopped (EOF, shutdown, a later "Connection: close"): close after the last one
        keep = req.keep_alive and not (self._stopped and not self._queue)
        if status in _NO_BODY_STATUS:
            extra = b""
            body = b""
        elif h._headers is not None and "Content-Length" in h._headers:
            extra = b""
        else:
            extra = b"Content-Length: %d\r\n" % len(body)
        if not keep:
            extra += b"Connection: close\r\n"
        elif req.version == "HTTP/1.0":
            extra += b"Connection: keep-alive\r\n"
        head = self._head(h, status, extra)
        if req.method == "HEAD" or not body:
            self.transport.write(head + b"\r\n")
        else:
            self.transport.write(b"".join((head, b"\r\n", body)))
        self._active = None
        if self._inbox is not None:
            self._release_inbox()
        if self.shared.access_log is not None:
            self._log_access(req, status, len(body))
        if not keep:
            self._stopped = True
            self._close()

    def _send_chunk(self, h, data, last):
        """Streamed response: headers on the first flush, then chunks (HTTP/1.1)."""
        if self._closed:
            if last:
                self._active = None
            return
        req = h.request
        head_only = req.method == "HEAD" or h._status in _NO_BODY_STATUS
        out = []
        if not h._headers_written:
            h._headers_written = True
            declared = h._headers.get("Content-Length") if h._headers is not None else None
            if declared is not None and not head_only:
                # the handler gave the length: stream exactly that, no chunks (HTTP/1.0
                # keeps its keep-alive too); a different amount breaks the framing
                h._remaining = int(declared)
                chunked = False
            else:
                chunked = req.version == "HTTP/1.1" and not head_only
            h._chunked = chunked
            if not chunked and not head_only and h._remaining is None:
                # HTTP/1.0 has no chunks: the body ends when the connection closes
                req.keep_alive = False
            keep = req.keep_alive and not (self._stopped and not self._queue)
            extra = b"Transfer-Encoding: chunked\r\n" if chunked else b""
            if not keep:
                extra += b"Connection: close\r\n"
            elif req.version == "HTTP/1.0":
                extra += b"Connection: keep-alive\r\n"
            out.append(self._head(h, h._status, extra) + b"\r\n")
        if not head_only:
            if h._chunked:
                if data:
                    out.append(b"%x\r\n%s\r\n" % (len(data), data))
                if last:
                    out.append(b"0\r\n\r\n")
            elif h._remaining is not None:
                left = h._remaining - len(data)
                if left < 0 or (last and left):
                    log.error("%s %s: wrote %s bytes than its Content-Length; connection cut",
                              req.method, req.uri, "more" if left < 0 else "fewer")
                    if out:
                        self.transport.write(b"".join(out))
                    self._active = None
                    self._abort()
                    return
                h._remaining = left
                if data:
                    out.append(data)
            elif data:
                out.append(data)
        if out:
            self.transport.write(b"".join(out))
        if last:
            self._active = None
            if self._inbox is not None:
                self._release_inbox()
            if self.shared.access_log is not None:
                self._log_access(req, h._status, -1)
            if not req.keep_alive or (self._stopped and not self._queue):
                self._stopped = True
                self._close()

    def _simple(self, req, status, extra=b""):
        """A framework-made response (404, 405, ...) to a parsed request."""
        if self._closed:
            return
        reason = REASONS[status]
        body = b"%d: %s\n" % (status, reason.encode())
        keep = req.keep_alive and not (self._stopped and not self._queue)
        shared = self.shared
        head = b"".join((STATUS_LINES[status], shared.prefix(),
                         b"Content-Type: text/plain; charset=UTF-8\r\n", extra,
                         b"Content-Length: %d\r\n" % len(body),
                         b"" if keep else b"Connection: close\r\n",
                         b"Connection: keep-alive\r\n" if keep and req.version == "HTTP/1.0"
                         else b"", b"\r\n"))
        self.transport.write(head if req.method == "HEAD" else head + body)
        if self.shared.access_log is not None:
            self._log_access(req, status, len(body))
        if not keep:
            self._stopped = True
            self._close()

    def _log_access(self, req, status, nbytes):
        ms = (self.shared.loop.time() - req.start_time) * 1000.0
        self.shared.access_log.info("%d %s %s (%s) %s %.2fms", status, req.method, req.uri,
                                    req.remote_ip, "-" if nbytes < 0 else nbytes, ms)

    def _fail(self, status):
        """Protocol error (400/408/413/431/...): answer in turn, then close."""
        self._stopped = True
        self._in_msg = False
        self._in_hdrs = False
        inbox = self._inbox
        if inbox is not None:
            # the handler reading this body gets the error from read(); it answers
            # (send_error) if it has not yet, and the connection closes after that
            self._inbox = None
            inbox.finish(HTTPError(status))
            if self._active is not None:
                return
            if not self._closed:
                self._close()
            return
        if self._active is not None or self._queue:
            if self._queue is None:
                self._queue = deque()
            self._queue.append(status)
            return
        if self._closed:
            return
        reason = REASONS.get(status, "Error")
        body = b"%d: %s\n" % (status, reason.encode())
        self.transport.write(b"".join((
            STATUS_LINES.get(status, b"HTTP/1.1 %d Error\r\n" % status), self.shared.prefix(),
            b"Content-Type: text/plain; charset=UTF-8\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % len(body), body)))
        # the client may still be sending (a refused body): let the transport drain it
        # before closing, so no RST destroys the response (kernel transport only)
        self._closed = True
        self.deadline = 0.0
        self.shared.untrack(self)
        linger = getattr(self.transport, "lingering_close", None)
        (linger or self.transport.close)()

    def _timed_out(self):
        if self._closed:
            return
        if self._rpaused:     # we stopped reading (back-pressure): the wait is ours
            self.deadline = self.shared.loop.time() + self.shared.config.request_timeout
            return
        if self._in_msg:      # a request that never completed (slowloris): 408
            self._fail(408)
        elif self._active is None and not self._queue:
            self._close()     # idle keep-alive connection
        self.deadline = 0.0

    def _abort(self):
        self._stopped = True
        if not self._closed:
            self._closed = True
            self.shared.untrack(self)
            self.transport.abort()

    def _close(self):
        if not self._closed:
            self._closed = True
            self.deadline = 0.0
            self.shared.untrack(self)
            self.transport.close()
