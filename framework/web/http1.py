"""HTTP/1.1 server protocol on httptools, for one connection (CONTRACTS section 5).

Pure: no sockets and no clock reads of its own. Time is ``ctx.loop.time()``, the
shard's asyncio loop's clock. What a shard's connections share (router, limits, the
cached Date line, the timeout sweep) is one ``HttpShared`` (framework.web.httpserver);
the response bytes come from framework.web.h1writer.

Request flow: bytes -> httptools callbacks -> ``Request`` -> (queue, for pipelining)
-> handler. Only one handler runs per connection at a time, so responses leave in
request order; later pipelined requests are parsed and queued meanwhile. A sync
handler runs inside ``data_received`` and its response is written before the next
request is looked at; an ``async def`` handler becomes an asyncio Task on the shard loop.
The handler answers through this connection's ``write_headers`` / ``write`` /
``finish`` (Tornado's HTTPConnection interface).

A handler with ``stream_request_body = True`` starts as soon as its headers are in
(when it is the connection's turn) and reads the body through a BodyStream
(``await self.request.read()``); reading pauses while it lags behind, also while a
pipelined one waits for its turn.

An Upgrade request (``Upgrade: websocket``) is dispatched to its route like any other;
its handler may take the connection over with ``detach()`` (CONTRACTS section 5,
"Upgrade"): llhttp stops at the end of that request's head, and the bytes after it are
the new protocol's. Otherwise the request is answered and the connection closed.

Errors found while parsing (400/408/413/431/417) are answered in turn (after the
responses still due) and close the connection, through the transport's optional
``lingering_close`` so a client still sending does not turn our answer into an RST.
"""
import logging
from collections import deque

import httptools
from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade

from . import h1writer
from .flow import drain_future, wake_drainers
from .h1writer import REASONS
from .handler import HTTPError
from .httputil import (PEER_LAZY, BodyStream, Request, absolute_authority, head_error,
                       is_authority, split_target, valid_host)
from .proxy import apply_to_request as apply_forwarded

log = logging.getLogger("framework.web")

_METHOD_STR = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                         "OPTIONS")}
_VERSION_STR = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
_PLAIN = {"Content-Type": "text/plain; charset=UTF-8"}
_PAUSE_AT = 16          # queued pipelined requests before we stop reading
_RESUME_AT = 4
_UPGRADE_BUFFER = 64 * 1024   # bytes after an Upgrade head held before reading pauses
_SPARE_READERS = 32           # per shard: readers kept for the next connections
# A parser that has just completed a message can parse the next one, also for another
# connection (llhttp keeps nothing of a message past its end); after a message that does
# not keep the connection llhttp only refuses further bytes unless it is lenient about
# keep-alive, so it is made lenient and on_message_begin refuses instead (_Stop).
_REUSABLE = hasattr(httptools.HttpRequestParser, "set_dangerous_leniencies")


class _Reject(Exception):
    """Raised inside a parser callback to answer ``status`` and close."""

    def __init__(self, status):
        self.status = status


class _Stop(Exception):
    """Raised inside on_message_complete: no more requests on this connection."""


class HttpProtocol:
    __slots__ = ("shared", "transport", "_reader", "_remote_ip", "deadline", "_closed",
                 "_stopped", "_eof", "_active", "_queue", "_paused", "_in_msg", "_task",
                 "_wpaused", "_drainers", "_inbox", "_rpaused", "_current", "_writer", "_status",
                 "_upgrade_rest", "_sent", "_last")

    def __init__(self, shared):
        self.shared = shared
        self.transport = None
        self._reader = None       # a _RequestReader while requests arrive (data_received)
        self._remote_ip = None
        self.deadline = 0.0
        self._closed = False
        self._stopped = False     # no more requests will be read (close after responses)
        self._eof = False
        self._active = None       # the handler currently producing a response
        self._queue = None        # pipelined requests (or error statuses) waiting their turn
        self._paused = False
        self._in_msg = False      # a request is being parsed
        self._task = None
        self._wpaused = False
        self._drainers = None
        self._inbox = None        # BodyStream of the request being streamed to its handler
        self._rpaused = 0         # reasons reading is paused (pipelining, body stream)
        self._current = None      # the request being answered
        self._writer = None       # its body's framing (h1writer), once the headers are out
        self._status = 200
        self._sent = 0            # body bytes of the response written so far (access log)
        self._upgrade_rest = None  # bytes after an Upgrade request's head, until detach()
        self._last = False        # retiring worker: the next response closes (retire)

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
            rest = self._upgrade_rest
            if rest is not None and not self._closed:   # the upgrade's handler is not
                self._upgrade_rest = rest + data         # done: keep them for detach()
                if len(rest) <= _UPGRADE_BUFFER < len(rest) + len(data):
                    self.pause_body()
            return
        reader = self._reader
        if reader is None:
            spare = self.shared.readers
            if spare:
                reader = spare.pop()
                reader.conn = self
            else:
                reader = _RequestReader(self)
            self._reader = reader
        reader.at_boundary = False
        try:
            reader.parser.feed_data(data)
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
        except HttpParserUpgrade as e:
            # Upgrade/CONNECT: its handler may detach() the connection and speak the
            # other protocol from e.args[0] on; otherwise answer the request, then close
            self._stopped = True
            self._upgrade_rest = data[e.args[0]:]
            req = reader.req
            if req is not None:     # (a streamed request's handler already runs)
                reader.req = None
                req.body = b""
                req.keep_alive = False
                self._in_msg = False
                self._dispatch(req)
            if self._active is None and not self._queue:
                self._close()
            return
        except HttpParserError as e:
            if reader.llhttp_closed:
                return      # bytes after a request that closes the connection: ignored
            # a version llhttp does not take (HTTP/1.2, 3.0): 505, as for 2.0 (head_error)
            self._fail(505 if e.args and e.args[0] == "Invalid HTTP version" else 400)
            return
        # llhttp returned between two messages: its parser may serve another connection
        reader.at_boundary = not self._in_msg
        if self._stopped:
            return
        if reader.in_hdrs:
            # A header block still arriving: bound what the parser buffers, counting
            # completed lines in hdr_size and the unfinished line in partial. While that
            # line is the request line, hdr_size holds the target's pieces seen so far
            # (llhttp hands the URL over per segment): the line alone is the size, and a
            # long one is a long target (414; e.g. 40 KB arriving in 1448-byte segments).
            nl = data.rfind(b"\n")
            if nl >= 0:
                reader.line1 = False
            reader.partial = len(data) - nl - 1 if nl >= 0 else reader.partial + len(data)
            if reader.line1:
                if reader.partial > reader.max_hdr:
                    self._fail(414)
            elif (reader.hdr_size + reader.partial if reader.headers
                  else max(reader.hdr_size, reader.partial)) > reader.max_hdr:
                # (no field yet: a pipelined request line may still be unfinished after
                # a newline of the request before it, so its target would count twice)
                self._fail(431)
        elif not self._in_msg:
            # between requests llhttp holds nothing a new parser would not: an idle
            # keep-alive connection keeps no reader, parser or bound methods
            self._drop_reader()
            if self._active is None and not self._queue:
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
        h = self._active
        if h is not None:
            # a handler may want to know the client sends no more (ASGI: http.disconnect
            # to an app waiting on receive(), as uvicorn); the response may still go out
            notice = getattr(h, "on_client_eof", None)
            if notice is not None:
                notice()
        return True   # keep the write side open to finish the responses

    def connection_lost(self, exc):
        self._closed = True
        self.shared.untrack(self)
        # break the protocol <-> parser and protocol <-> transport reference cycles: the
        # connection's objects are then freed by reference counting at once, not left
        # for the cyclic GC
        self._drop_reader()
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

    def pause_body(self):
        """Stop reading (one more reason to): a streamed body waits unread."""
        self._rpaused += 1
        if self._rpaused == 1:
            pause = getattr(self.transport, "pause_reading", None)
            if pause is not None:
                pause()

    def resume_body(self):
        self._rpaused -= 1
        if self._rpaused == 0 and not self._closed:
            resume = getattr(self.transport, "resume_reading", None)
            if resume is not None:
                resume()

    def shutdown(self):
        """Stop reading; close once the current response is out."""
        self._stopped = True
        if self._active is None and not self._queue:
            self._close()

    def retire(self):
        """A zero-downtime reload: keep reading, answer the request in progress or the
        next one with "Connection: close", then close, so the client opens its next
        connection to the new worker and no request meets a closing connection."""
        self._last = True

    def detach(self):
        """Hand the connection over to the handler of an Upgrade request (WebSocket):
        ``(transport, bytes received after the request's head)``, or None when this is
        no upgrade (or the connection is gone). This protocol then never touches the
        transport again; the caller ``set_protocol()``s its own and feeds it the bytes."""
        rest = self._upgrade_rest
        t = self.transport
        if rest is None or self._closed or t is None:
            return None
        self._upgrade_rest = None
        self._closed = self._stopped = True
        self.deadline = 0.0
        self.shared.untrack(self)
        self._active = self._current = self._writer = None
        self._drop_reader()
        self.transport = None
        if self._rpaused:
            self._rpaused = 0
            resume = getattr(t, "resume_reading", None)
            if resume is not None:
                resume()
        return t, rest

    def _drop_reader(self):
        reader = self._reader
        if reader is not None:
            self._reader = None
            spare = self.shared.readers
            if reader.at_boundary and _REUSABLE and len(spare) < _SPARE_READERS:
                # what on_message_begin does not reset for the next message
                reader.conn = None
                reader.llhttp_closed = False
                reader.req = None
                spare.append(reader)
            else:
                reader.parser = None    # it holds the reader's bound methods: a cycle

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
                self.pause_body()
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
            self.resume_body()
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
            self._simple(req, 405, route.allow)
            return
        h = route.handler(shared.app, req, self, shared.ctx)
        self._active = h
        self._current = req
        rest = h._execute(route, name, args, kwargs)
        if rest is not None:
            self._task = shared.loop.create_task(self._run_async(h, rest))

    async def _run_async(self, h, rest):
        try:
            await rest
        finally:
            self._task = None
            if self._active is h:   # the response never completed (connection gone)
                self._active = None
            self._pump()

    # ---- the connection a handler answers through (Tornado's HTTPConnection) ----------
    @property
    def loop(self):
        return self.shared.loop

    @property
    def closed(self):
        return self._closed

    def write_headers(self, status, reason, headers, chunk=b"", last=False):
        """Start the response to the request being handled: status line, ``headers``
        ({Name: str or [str]} or None) and the first ``chunk`` of the body.

        ``last``: ``chunk`` is the whole body (framed by its length). Otherwise more
        comes with ``write`` and ``finish`` ends it; it is framed by the headers'
        Content-Length if given, else chunked (HTTP/1.1) or ended by closing (1.0).
        """
        req = self._current
        if self._closed or req is None:
            if last:
                self._response_done(status, 0)
            return
        declared = headers.get("Content-Length") if headers is not None else None
        framing, writer = h1writer.body_framing(req.method, status, req.version, declared,
                                                chunk if last else None)
        if writer.closes or (self._last and not self._queue):
            req.keep_alive = False
        # stopped (EOF, shutdown, a later "Connection: close"): close after the last one
        keep = req.keep_alive and not (self._stopped and not self._queue)
        shared = self.shared
        head = h1writer.response_head(status, reason, headers, framing, keep, req.version,
                                      shared.prefix(), shared.ctype_line)
        # the usual response: nothing to frame (a type test: compiled, no module lookup)
        if writer.__class__ is h1writer._WholeBodyWriter:
            self.transport.write(head + chunk if chunk else head)
            self._status = status
            self._response_done(status, len(chunk))
            return
        self._writer = writer
        self._status = status
        self._sent = 0
        self._body_out(head, chunk, last)

    def write(self, chunk):
        """More of the response's body."""
        self._body_out(b"", chunk, False)

    def finish(self, chunk=b""):
        """The last ``chunk`` of the body (may be empty): the response is complete."""
        self._body_out(b"", chunk, True)

    def drain(self):
        """An asyncio future done when the transport takes more data (at once if it does now)."""
        return drain_future(self, self.shared.loop, self._closed)

    def abort(self):
        """Cut the connection (no FIN): the client sees the response is incomplete."""
        self._stopped = True
        if not self._closed:
            self._closed = True
            self.shared.untrack(self)
            self.transport.abort()

    def _body_out(self, head, chunk, last):
        if self._closed:
            if last:
                self._response_done(self._status, self._sent)
            return
        writer = self._writer
        try:
            data = writer.data(chunk) if chunk else b""
            if last:
                data += writer.end()
        except h1writer.FramingError as e:
            req = self._current
            log.error("%s %s: %s; connection cut", req.method, req.uri, e)
            if head:
                self.transport.write(head)
            self._active = self._current = None
            self.abort()
            return
        if data:
            self._sent += len(chunk)
        if head or data:
            self.transport.write(head + data if data else head)
        if last:
            self._response_done(self._status, self._sent)

    def _response_done(self, status, nbytes):
        req = self._current
        self._active = self._current = self._writer = None
        inbox = self._inbox
        if inbox is not None and (req is None or req.body_stream is inbox):
            inbox.close()     # the handler answered: the rest of its body is dropped
        if self._closed or req is None:
            return
        shared = self.shared
        shared.requests += 1
        access_log = shared.access_log
        if access_log is not None:
            access_log.record(req, status, nbytes)
        if not req.keep_alive or (self._stopped and not self._queue):
            self._stopped = True
            self._close()

    def _simple(self, req, status, allow=None):
        """A framework-made response (404, 405, ...) to a parsed request."""
        headers = {"Content-Type": "text/plain; charset=UTF-8"}
        if allow is not None:
            headers["Allow"] = allow
        self._current = req
        self.write_headers(status, None, headers, _page(status), last=True)

    def _fail(self, status):
        """Protocol error (400/408/413/431/...): answer in turn, then close."""
        self._stopped = True
        self._in_msg = False
        if self._reader is not None:
            self._reader.in_hdrs = False
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
        body = _page(status)
        framing, _ = h1writer.body_framing(None, status, "HTTP/1.1", None, body)
        self.transport.write(h1writer.response_head(
            status, None if status in REASONS else "Error", _PLAIN, framing, False,
            "HTTP/1.1", self.shared.prefix(), self.shared.ctype_line) + body)
        # the client may still be sending (a refused body): let the transport drain it
        # before closing, so no RST destroys the response (kernel transport only)
        self._closed = True
        self.deadline = 0.0
        self.shared.untrack(self)
        linger = getattr(self.transport, "lingering_close", None)
        (linger or self.transport.close)()

    def timed_out(self):
        """Its deadline passed (HttpServer's sweep): 408, or close an idle connection."""
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

    def _close(self):
        if not self._closed:
            self._closed = True
            self.deadline = 0.0
            self.shared.untrack(self)
            self.transport.close()


class _RequestReader:
    """The requests of one connection while they arrive: the httptools parser, its
    callbacks and what they collect of the request being parsed. HttpProtocol makes one
    when data arrives and drops it between requests, so an idle keep-alive connection
    holds neither (the parser, its C state and its bound methods are most of what a
    connection would otherwise keep)."""

    __slots__ = ("conn", "parser", "in_hdrs", "line1", "url", "headers", "body", "body_size",
                 "hdr_size", "partial", "req", "clen", "expect", "max_hdr", "body_limit",
                 "llhttp_closed", "upgrade", "hosts", "host", "te", "at_boundary")

    # httptools' parser looks every callback up with getattr(reader, name, None) when it
    # is made, once per connection: a name we do not define would raise (and swallow) an
    # AttributeError each time, so the chunk callbacks we do not want are None here
    on_chunk_header = None
    on_chunk_complete = None

    def __init__(self, conn):
        self.conn = conn
        self.in_hdrs = False
        self.line1 = False
        self.req = None
        self.max_hdr = conn.shared.config.max_header_size
        self.llhttp_closed = False  # the parser finished a non-keep-alive message
        self.at_boundary = False    # the last feed ended between messages (reusable)
        # the other slots are set by on_message_begin, which llhttp calls first
        self.parser = httptools.HttpRequestParser(self)
        if _REUSABLE:
            self.parser.set_dangerous_leniencies(lenient_keep_alive=True)

    # ---- httptools callbacks -----------------------------------------------------------
    def on_message_begin(self):
        if self.llhttp_closed:
            raise _Stop()   # bytes after a message that closes the connection: ignored
        conn = self.conn
        conn._in_msg = True
        self.in_hdrs = True
        self.line1 = True
        self.url = b""
        self.headers = []
        self.clen = None
        self.expect = None
        self.upgrade = None
        self.hosts = 0
        self.host = None
        self.te = None
        self.body = None
        shared = conn.shared
        self.body_limit = shared.config.max_body_size
        self.body_size = 0
        self.hdr_size = 0
        self.partial = 0
        conn.deadline = shared.loop.time() + shared.config.request_timeout

    def on_url(self, url):
        self.url += url
        self.hdr_size += len(url)
        if len(self.url) > self.max_hdr:
            raise _Reject(414)      # RFC 9112 3: a target longer than we parse

    def on_header(self, name, value):
        n = self.hdr_size + len(name) + len(value) + 4
        self.hdr_size = n
        if n > self.max_hdr:
            raise _Reject(431)
        if not self.in_hdrs:
            return      # a chunked trailer field: never merged into the headers (RFC 9112 7.1.2)
        if value and (value[-1] == 32 or value[-1] == 9):
            value = value.rstrip(b" \t")   # trailing OWS is not the value's (RFC 9112 5.1)
        self.headers.append((name, value))
        ln = len(name)
        if ln == 14 or ln == 6 or ln == 4 or ln == 17:    # what the protocol looks at
            lname = name.lower()
            if lname == b"content-length":
                if self.clen is not None and self.clen != value:
                    raise _Reject(400)
                self.clen = value
            elif lname == b"expect":
                self.expect = value
            elif lname == b"host":
                self.hosts += 1
                self.host = value
            elif lname == b"transfer-encoding":
                self.te = value if self.te is None else self.te + b"," + value
        elif ln == 7 and name.lower() == b"upgrade":
            self.upgrade = value

    def on_headers_complete(self):
        self.in_hdrs = False
        self.partial = 0
        if self.hdr_size > self.max_hdr:
            raise _Reject(431)
        conn = self.conn
        shared = conn.shared
        parser = self.parser
        url = self.url
        target = split_target(url)
        if target is None:
            # authority-form is CONNECT's (RFC 9112 3.2.3): we are no proxy (nginx: 405)
            raise _Reject(405 if self.parser.get_method() == b"CONNECT" and
                          is_authority(url) else 400)
        path, query = target
        version = parser.get_http_version()
        method = parser.get_method()
        if self.hosts != 1 or self.te is not None or url[:1] != b"/" \
                or (version != "1.1" and version != "1.0"):
            self._check_head(version, method, url)
        elif not valid_host(self.host):
            raise _Reject(400)      # an invalid Host value (RFC 9112 3.2)
        req = Request(_METHOD_STR.get(method) or method.decode("ascii"), url.decode("latin-1"),
                      path, query, _VERSION_STR.get(version) or "HTTP/" + version,
                      self.headers, b"", conn._remote_ip)
        req.connection = conn
        req.start_time = shared.loop.time()
        req.protocol = shared.config.scheme     # "https" over TLS (framework.web.tls)
        if shared.config.trusted_proxies is not None:
            apply_forwarded(req, shared.config.trusted_proxies)
        self.req = req
        stream = False
        if shared.router.early:
            route = shared.router.match(path)[0]
            if route is not None:
                if route.max_body_size is not None:
                    self.body_limit = route.max_body_size
                stream = route.streaming and req.method in route.methods
        cl = self.clen
        if cl is not None:
            try:
                n = int(cl)
            except ValueError:
                raise _Reject(400) from None
            if n > self.body_limit:
                raise _Reject(413)
        expect = self.expect
        if expect is not None:
            if expect.strip().lower() != b"100-continue":
                raise _Reject(417)
            if version == "1.1":
                if conn._active is None and not conn._queue:
                    conn.transport.write(h1writer.CONTINUE)
                else:
                    # an earlier response is still due: 100 would jump the queue; the
                    # client sends the body anyway after its own short wait
                    req.expect_continue = True
        if stream:
            req.keep_alive = parser.should_keep_alive()
            conn._inbox = req.body_stream = BodyStream(shared.loop, conn)
            conn.deadline = shared.loop.time() + shared.config.request_timeout
            # its handler starts now if it is the connection's turn; a pipelined one
            # waits in the queue while its body fills the stream, and reading pauses
            # at the stream's mark: a queued upload is never buffered whole
            conn._dispatch(req)

    def _check_head(self, version, method, url):
        """RFC 9112's MUSTs on the request line, Host and framing (httputil.head_error);
        absolute-form: the target's authority replaces the Host header (3.2.2)."""
        status = head_error(version, method, url, self.hosts, self.host, self.te)
        if status:
            raise _Reject(status)
        c = url[:1]
        if c != b"/" and c != b"*" and method != b"CONNECT":
            authority = absolute_authority(url)
            headers = self.headers
            for i in range(len(headers)):
                if len(headers[i][0]) == 4 and headers[i][0].lower() == b"host":
                    headers[i] = (headers[i][0], authority)

    def on_body(self, body):
        n = self.body_size + len(body)
        if n > self.body_limit:
            raise _Reject(413)
        self.body_size = n
        conn = self.conn
        # a body may take long (big uploads); what is limited is a pause in it
        conn.deadline = conn.shared.loop.time() + conn.shared.config.request_timeout
        if conn._inbox is not None:
            conn._inbox.put(body)
            return
        if self.body is None:
            self.body = [body]
        else:
            self.body.append(body)

    def on_message_complete(self):
        conn = self.conn
        req = self.req
        self.req = None
        conn._in_msg = False
        self.url = b""
        self.headers = None         # the request has them (raw_headers)
        keep = self.parser.should_keep_alive()
        req.keep_alive = keep
        conn.deadline = 0.0
        inbox = conn._inbox
        if inbox is not None:       # streamed: its handler is already running
            conn._inbox = None
            inbox.finish()
        elif self.upgrade is not None and self.parser.should_upgrade():
            # the bytes after this head are another protocol's: data_received dispatches
            # the request once llhttp has said where they start (HttpParserUpgrade)
            self.req = req
            return
        else:
            body = self.body
            if body is not None:
                req.body = body[0] if len(body) == 1 else b"".join(body)
                self.body = None
            conn._dispatch(req)
        if not keep:
            # llhttp itself stops after a message that does not keep the connection:
            # any further byte of this feed raises HttpParserError("Data after
            # `Connection: close`"), which data_received ignores. Not raising _Stop here
            # spares the common Connection: close request an exception, its traceback
            # and the reference cycles they would leave for the GC.
            conn._stopped = True
            self.llhttp_closed = True
        elif conn._closed:   # the handler closed the connection: parse no further
            conn._stopped = True
            raise _Stop()


def _page(status):
    """The plain-text body of a response the framework makes itself."""
    return b"%d: %s\n" % (status, REASONS.get(status, "Error").encode())
