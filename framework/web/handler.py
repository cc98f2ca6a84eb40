"""RequestHandler, the request object, case-insensitive headers, HTTPError.

A handler instance lives for one request. The connection (``framework.web.http1``)
builds it, calls ``_execute`` and gets the response bytes back through
``conn._send`` / ``conn._send_chunk``. Sync handlers run straight through; a
handler whose method is ``async def`` runs as an asyncio Task on the shard's loop (only
then), so it may use asyncio freely: sleep, wait_for, gather, queues, executors.
"""
import http.client
import json
import logging
import re
from email.utils import formatdate
from urllib.parse import parse_qs, quote, unquote

log = logging.getLogger("framework.web")

# Reason phrases, the complete status line bytes (precomputed: the hot path only joins).
REASONS = dict(http.client.responses)
REASONS.setdefault(431, "Request Header Fields Too Large")
STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, reason.encode("latin-1"))
                for code, reason in REASONS.items()}

METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


class HTTPError(Exception):
    """Raise from a handler to answer with ``status_code``.

    ``log_message`` goes to the log only (never to the client); ``reason``
    replaces the standard reason phrase.
    """

    def __init__(self, status_code=500, log_message=None, *args, reason=None):
        super().__init__(status_code, log_message)
        self.status_code = status_code
        self.log_message = log_message
        self.args_ = args
        self.reason = reason

    def __str__(self):
        msg = f"HTTP {self.status_code}: {self.reason or REASONS.get(self.status_code, 'Unknown')}"
        if self.log_message:
            msg += f" ({self.log_message % self.args_ if self.args_ else self.log_message})"
        return msg


class MissingArgumentError(HTTPError):
    def __init__(self, arg_name):
        super().__init__(400, f"Missing argument {arg_name}")
        self.arg_name = arg_name


class HTTPHeaders(dict):
    """Request headers: a dict keyed by lower-case name, case-insensitive lookups.

    Repeated headers are joined with ", " (RFC 9110 5.3); values are str (latin-1).
    """

    __slots__ = ()

    def __getitem__(self, name):
        return dict.__getitem__(self, name.lower())

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())

    def __setitem__(self, name, value):
        dict.__setitem__(self, name.lower(), value)

    def __delitem__(self, name):
        dict.__delitem__(self, name.lower())

    def add(self, name, value):
        key = name.lower()
        old = dict.get(self, key)
        dict.__setitem__(self, key, value if old is None else f"{old}, {value}")


# remote_ip not looked up yet: most handlers never read it, and the lookup (peername,
# address formatting) costs ~1 us per connection
PEER_LAZY = object()


class Request:
    """What the client asked: method, uri, path, query, version, headers, body, remote_ip."""

    __slots__ = ("method", "uri", "path", "query", "version", "_headers", "raw_headers",
                 "body", "_remote_ip", "keep_alive", "_query_args", "_body_args", "connection",
                 "expect_continue", "body_stream", "_body_taken", "start_time")

    def __init__(self, method, uri, path, query, version, raw_headers, body, remote_ip):
        self.method = method
        self.uri = uri
        self.path = path
        self.query = query
        self.version = version
        # [(name bytes, value bytes)] as received; decoded into HTTPHeaders on first use
        # (most handlers never look at a header, so parsing pays nothing for them)
        self.raw_headers = raw_headers
        self._headers = None
        self.body = body
        self._remote_ip = remote_ip   # PEER_LAZY: ask self.connection on first use
        self.keep_alive = True
        self._query_args = None
        self._body_args = None
        self.connection = None
        self.expect_continue = False
        self.body_stream = None     # a BodyStream while the body is still arriving
        self._body_taken = False
        self.start_time = 0.0       # the shard's clock when the headers were complete

    @property
    def remote_ip(self):
        """The client's address (str), or None if unknown."""
        ip = self._remote_ip
        if ip is PEER_LAZY:
            ip = self._remote_ip = self.connection.remote_ip
        return ip

    @remote_ip.setter
    def remote_ip(self, value):
        self._remote_ip = value

    @property
    def headers(self):
        """Case-insensitive request headers (HTTPHeaders)."""
        h = self._headers
        if h is None:
            h = self._headers = HTTPHeaders()
            setitem = dict.__setitem__
            for name, value in self.raw_headers:
                key = name.decode("latin-1").lower()
                value = value.decode("latin-1")
                old = dict.get(h, key)
                setitem(h, key, value if old is None else f"{old}, {value}")
        return h

    @property
    def query_arguments(self):
        """{name: [str, ...]} from the query string (parsed on first use)."""
        if self._query_args is None:
            self._query_args = parse_qs(self.query, keep_blank_values=True) if self.query else {}
        return self._query_args

    @property
    def body_arguments(self):
        """{name: [str, ...]} from an application/x-www-form-urlencoded body."""
        if self._body_args is None:
            ctype = self.headers.get("content-type", "")
            if self.body and ctype.split(";", 1)[0].strip().lower() == \
                    "application/x-www-form-urlencoded":
                self._body_args = parse_qs(self.body.decode("utf-8", "replace"),
                                           keep_blank_values=True)
            else:
                self._body_args = {}
        return self._body_args

    @property
    def arguments(self):
        """Query and form-body arguments together."""
        q = self.query_arguments
        b = self.body_arguments
        if not b:
            return q
        merged = {k: list(v) for k, v in q.items()}
        for k, v in b.items():
            merged.setdefault(k, []).extend(v)
        return merged

    @property
    def cookies(self):
        """{name: value} from the Cookie header(s)."""
        out = {}
        raw = self.headers.get("cookie")
        if raw:
            for part in raw.replace(",", ";").split(";"):
                name, sep, value = part.strip().partition("=")
                if sep and name:
                    value = value.strip()
                    if len(value) >= 2 and value[0] == value[-1] == '"':
                        value = value[1:-1]
                    out.setdefault(name, unquote(value))
        return out

    def read(self):
        """An asyncio future of the next body chunk; ``b""`` once the body is complete.

        With ``stream_request_body = True`` on the handler, chunks arrive while the
        handler runs; otherwise the whole (already received) body comes as one chunk.
        """
        stream = self.body_stream
        if stream is not None:
            return stream.get()
        fut = self.connection.shared.loop.create_future()
        fut.set_result(b"" if self._body_taken else self.body)
        self._body_taken = True
        return fut

    async def stream(self):
        """``async for chunk in self.request.stream(): ...``"""
        while True:
            chunk = await self.read()
            if not chunk:
                return
            yield chunk

    @property
    def host(self):
        return self.headers.get("host", "")

    protocol = "http"

    def full_url(self):
        return f"http://{self.host}{self.uri}"

    def __repr__(self):
        return f"Request({self.method} {self.uri} from {self.remote_ip})"


class BodyStream:
    """Body chunks of a streamed request, from the parser to an awaiting handler.

    Reading is paused on the transport while more than ``high`` bytes wait unread, so
    a slow consumer slows the client down (TCP's own back-pressure).
    """

    __slots__ = ("_loop", "_chunks", "_waiter", "_done", "_exc", "_size", "_conn",
                 "_high", "_paused", "closed")

    def __init__(self, loop, conn, high=256 * 1024):
        self._loop = loop
        self._conn = conn
        self._chunks = []
        self._waiter = None
        self._done = False
        self._exc = None
        self._size = 0
        self._high = high
        self._paused = False
        self.closed = False     # the reader is gone: drop what still arrives

    def put(self, chunk):
        if self.closed:
            return
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():    # else the reader gave up waiting: keep the chunk for it
                w.set_result(chunk)
                return
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > self._high and not self._paused:
            self._paused = True
            self._conn._pause_body()

    def finish(self, exc=None):
        if self._done:
            return
        self._done = True
        self._exc = exc
        w = self._waiter
        if w is not None and not w.done():
            self._waiter = None
            if exc is None:
                w.set_result(b"")
            else:
                w.set_exception(exc)

    def get(self):
        fut = self._loop.create_future()
        if self._chunks:
            chunk = self._chunks.pop(0)
            self._size -= len(chunk)
            if self._paused and self._size <= self._high // 4:
                self._paused = False
                self._conn._resume_body()
            fut.set_result(chunk)
        elif self._done:
            if self._exc is None:
                fut.set_result(b"")
            else:
                fut.set_exception(self._exc)
        elif self._waiter is not None and not self._waiter.done():
            raise RuntimeError("concurrent reads of one request body")
        else:
            self._waiter = fut
        return fut


class ShardInfo:
    """``handler.shard``: which shard runs this handler."""

    __slots__ = ("id", "count")

    def __init__(self, id, count):
        self.id = id
        self.count = count

    def __repr__(self):
        return f"ShardInfo(id={self.id}, count={self.count})"


_ARG_DEFAULT = object()
_COOKIE_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_COOKIE_SAFE = "!#$&'()*+-./:<=>?@[]^_`{|}~"
_CTYPE_JSON = "application/json; charset=UTF-8"


def _header_key(name, _cache={}):
    """Canonical header name ("content-type" -> "Content-Type"), cached."""
    key = _cache.get(name)
    if key is None:
        if len(_cache) > 1024:
            _cache.clear()
        key = _cache[name] = "-".join(w.capitalize() for w in name.split("-"))
    return key


def _check_header_value(value):
    value = str(value)
    if "\n" in value or "\r" in value:
        raise ValueError(f"unsafe header value {value!r}")
    return value


class RequestHandler:
    """Base class of HTTP handlers: define ``get``/``post``/... (sync or ``async def``)."""

    __slots__ = ("app", "request", "path_kwargs", "shard", "state", "_conn", "_status",
                 "_reason", "_headers", "_buf", "_finished", "_headers_written",
                 "_chunked", "_ctx", "_remaining", "__dict__")

    def __init__(self, app, request, conn, ctx, shard_info):
        self.app = app
        self.request = request
        self._conn = conn
        self._ctx = ctx
        self.shard = shard_info
        self.state = ctx.state
        self.path_kwargs = None
        self._status = 200
        self._reason = None
        self._headers = None
        self._buf = []
        self._finished = False
        self._headers_written = False
        self._chunked = False
        self._remaining = None      # body bytes still due after a flush with Content-Length

    # ---- hooks -----------------------------------------------------------------------
    def initialize(self, **kwargs):
        """Receives the route's extra dict (``(path, Handler, {"root": ...})``)."""

    def set_default_headers(self):
        """Set headers every response of this handler carries (called before prepare)."""

    def prepare(self):
        """Runs before the method; may be ``async``; may ``finish()`` early."""

    def on_finish(self):
        """Runs after the response has been handed to the connection."""

    def on_connection_close(self):
        """The client went away while this (async) request was still running."""

    @property
    def ctx(self):
        return self._ctx

    @property
    def log(self):
        return self._ctx.log

    # ---- request helpers ---------------------------------------------------------------
    def get_argument(self, name, default=_ARG_DEFAULT, strip=True):
        """Last value of argument ``name`` (query or form body); 400 if missing and no default."""
        values = self.request.arguments.get(name)
        if not values:
            if default is _ARG_DEFAULT:
                raise MissingArgumentError(name)
            return default
        value = values[-1]
        return value.strip() if strip else value

    def get_arguments(self, name, strip=True):
        values = self.request.arguments.get(name, [])
        return [v.strip() for v in values] if strip else list(values)

    def get_query_argument(self, name, default=_ARG_DEFAULT, strip=True):
        values = self.request.query_arguments.get(name)
        if not values:
            if default is _ARG_DEFAULT:
                raise MissingArgumentError(name)
            return default
        return values[-1].strip() if strip else values[-1]

    def get_body_argument(self, name, default=_ARG_DEFAULT, strip=True):
        values = self.request.body_arguments.get(name)
        if not values:
            if default is _ARG_DEFAULT:
                raise MissingArgumentError(name)
            return default
        return values[-1].strip() if strip else values[-1]

    def get_json(self):
        """The body parsed as JSON; 400 if it is not JSON."""
        try:
            return json.loads(self.request.body or b"null")
        except ValueError:
            raise HTTPError(400, "invalid JSON body") from None

    # ---- response ----------------------------------------------------------------------
    def set_status(self, status_code, reason=None):
        if reason is None and status_code not in REASONS:
            raise ValueError(f"unknown status code {status_code}")
        self._status = status_code
        self._reason = reason

    def get_status(self):
        return self._status

    def set_header(self, name, value):
        key = _header_key(name)
        if key == "Connection":
            # the connection's framing is ours: "close" is honoured, the header is ours
            if "close" in str(value).lower():
                self.request.keep_alive = False
            return
        if self._headers is None:
            self._headers = {}
        self._headers[key] = _check_header_value(value)

    def add_header(self, name, value):
        """Add another header of the same name (e.g. Set-Cookie)."""
        if self._headers is None:
            self._headers = {}
        key = _header_key(name)
        value = _check_header_value(value)
        old = self._headers.get(key)
        if old is None:
            self._headers[key] = value
        elif isinstance(old, list):
            old.append(value)
        else:
            self._headers[key] = [old, value]

    def clear_header(self, name):
        if self._headers is not None:
            self._headers.pop(_header_key(name), None)

    def get_cookie(self, name, default=None):
        return self.request.cookies.get(name, default)

    def set_cookie(self, name, value, path="/", domain=None, max_age=None, expires=None,
                   secure=False, httponly=False, samesite=None):
        """Add a Set-Cookie header (value percent-encoded where needed)."""
        if not _COOKIE_NAME.match(name):
            raise ValueError(f"invalid cookie name {name!r}")
        parts = [f"{name}={quote(str(value), safe=_COOKIE_SAFE)}"]
        if path:
            parts.append(f"Path={path}")
        if domain:
            parts.append(f"Domain={domain}")
        if max_age is not None:
            parts.append(f"Max-Age={int(max_age)}")
        if expires is not None:
            parts.append("Expires=" + (expires if isinstance(expires, str)
                                       else formatdate(expires, usegmt=True)))
        if secure:
            parts.append("Secure")
        if httponly:
            parts.append("HttpOnly")
        if samesite:
            parts.append(f"SameSite={samesite}")
        self.add_header("Set-Cookie", "; ".join(parts))

    def clear_cookie(self, name, path="/", domain=None):
        self.set_cookie(name, "", path=path, domain=domain, max_age=0,
                        expires="Thu, 01 Jan 1970 00:00:00 GMT")

    def write(self, chunk):
        """Queue ``chunk`` (str -> UTF-8, bytes, dict/list -> JSON with its content type)."""
        if self._finished:
            raise RuntimeError("write() after finish()")
        if isinstance(chunk, (bytes, bytearray, memoryview)):
            self._buf.append(chunk)
        elif isinstance(chunk, str):
            self._buf.append(chunk.encode())
        elif isinstance(chunk, (dict, list)):
            # "</" escaped as Tornado does, so JSON is safe to embed in a <script>
            self._buf.append(json.dumps(chunk).replace("</", "<\\/").encode())
            if self._headers is None or "Content-Type" not in self._headers:
                self.set_header("Content-Type", _CTYPE_JSON)
        else:
            raise TypeError(f"write() takes str, bytes or dict, not {type(chunk).__name__}")

    def flush(self):
        """Send what was written so far now (the response becomes chunked).

        Returns an asyncio future done once the connection can take more: an async
        handler streaming a large body does ``await self.flush()`` to follow the
        client's pace (the transport's write buffer high/low water marks).
        """
        if not self._finished:
            self._conn._send_chunk(self, b"".join(self._buf), False)
            self._buf = []
        return self._conn._drain()

    def finish(self, chunk=None):
        """Complete the response; called for you after the method returns."""
        if self._finished:
            raise RuntimeError("finish() called twice")
        if chunk is not None:
            self.write(chunk)
        self._finished = True
        body = b"".join(self._buf) if len(self._buf) != 1 else self._buf[0]
        self._buf = None
        if self._headers_written:
            self._conn._send_chunk(self, body, True)
        else:
            self._conn._send(self, body)
        if type(self).on_finish is not RequestHandler.on_finish:
            try:
                self.on_finish()
            except Exception:
                log.exception("on_finish of %s failed", type(self).__name__)

    def redirect(self, url, permanent=False, status=None):
        if self._headers_written:
            raise RuntimeError("cannot redirect after headers were sent")
        self.set_status(status or (301 if permanent else 302))
        self.set_header("Location", url)
        self.finish()

    def send_error(self, status_code=500, **kwargs):
        """Discard what was written and answer with an error page (``write_error``)."""
        if self._headers_written:
            # too late for a status: cut the connection so the client sees a broken response
            log.error("cannot send error %d: response already started", status_code)
            if not self._finished:
                self._finished = True
                self._conn._abort()
            return
        self._buf = []
        self._headers = None
        try:
            self.set_default_headers()
        except Exception:
            log.exception("set_default_headers failed")
        reason = kwargs.get("reason")
        self._status = status_code
        self._reason = reason if reason or status_code in REASONS else "Unknown"
        try:
            self.write_error(status_code, **kwargs)
        except Exception:
            log.exception("write_error failed")
        if not self._finished:
            self.finish()

    def write_error(self, status_code, **kwargs):
        """Override for custom error pages. Default: plain text, never a traceback."""
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(f"{status_code}: {self._reason or REASONS.get(status_code, 'Unknown')}\n")

    # ---- execution (called by the connection) ------------------------------------------
    def _handle_exception(self, exc):
        if isinstance(exc, HTTPError):
            if exc.log_message:
                log.warning("%s %s: %s", self.request.method, self.request.uri, exc)
            status = exc.status_code if exc.status_code in REASONS or exc.reason else 500
            if not self._finished:
                self.send_error(status, reason=exc.reason)
        elif isinstance(exc, ConnectionError) and self._conn._closed:
            log.debug("%s %s: client went away", self.request.method, self.request.uri)
        else:
            self.log.error("uncaught exception in %s %s", self.request.method,
                           self.request.uri, exc_info=exc)
            if not self._finished:
                self.send_error(500)

    def __repr__(self):
        return f"<{type(self).__name__} {self.request!r}>"


def unquote_kwargs(groupdict):
    return {k: unquote(v) for k, v in groupdict.items()}
