"""RequestHandler and HTTPError (the request itself: framework.web.httputil).

A handler instance lives for one request. The connection (``framework.web.http1``)
builds it and calls ``_execute``; the handler answers through the connection's public
interface, as Tornado's RequestHandler does through its HTTPConnection:
``write_headers(status, reason, headers, chunk, last)``, ``write(chunk)``,
``finish(chunk)``, ``drain()``, ``abort()`` and ``closed``. Sync handlers run straight
through; a handler whose method is ``async def`` runs as an asyncio Task on the shard's
loop (only then), so it may use asyncio freely: sleep, wait_for, gather, queues,
executors.
"""
import asyncio
import json
import logging
import re
from email.utils import formatdate
from urllib.parse import quote

from .h1writer import REASONS

log = logging.getLogger("framework.web")

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


_ARG_DEFAULT = object()
_COOKIE_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_COOKIE_SAFE = "!#$&'()*+-./:<=>?@[]^_`{|}~"
_CTYPE_JSON = "application/json; charset=UTF-8"


_HEADER_KEYS = {}    # header name as a handler spells it -> its canonical form


def _header_key(name):
    """Canonical header name ("content-type" -> "Content-Type"), cached."""
    key = _HEADER_KEYS.get(name)
    if key is None:
        if len(_HEADER_KEYS) > 1024:
            _HEADER_KEYS.clear()
        key = _HEADER_KEYS[name] = "-".join(w.capitalize() for w in name.split("-"))
    return key


def _check_header_value(value):
    value = str(value)
    if "\n" in value or "\r" in value:
        raise ValueError(f"unsafe header value {value!r}")
    return value


class RequestHandler:
    """Base class of HTTP handlers: define ``get``/``post``/... (sync or ``async def``)."""

    __slots__ = ("app", "request", "path_kwargs", "state", "_conn", "_status",
                 "_reason", "_headers", "_buf", "_finished", "_headers_written", "_ctx",
                 "__dict__")

    def __init__(self, app, request, conn, ctx):
        self.app = app
        self.request = request
        self._conn = conn
        self._ctx = ctx
        self.state = ctx.state
        self.path_kwargs = None
        self._status = 200
        self._reason = None
        self._headers = None
        self._buf = []
        self._finished = False
        self._headers_written = False

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
        return _last_value(self.request.arguments, name, default, strip)

    def get_arguments(self, name, strip=True):
        values = self.request.arguments.get(name, [])
        return [v.strip() for v in values] if strip else list(values)

    def get_query_argument(self, name, default=_ARG_DEFAULT, strip=True):
        return _last_value(self.request.query_arguments, name, default, strip)

    def get_body_argument(self, name, default=_ARG_DEFAULT, strip=True):
        return _last_value(self.request.body_arguments, name, default, strip)

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
        # (every response sets a header or two: the usual case costs no further call)
        key = _HEADER_KEYS.get(name) or _header_key(name)
        if key == "Connection":
            # the connection's framing is ours: "close" is honoured, the header is ours
            if "close" in str(value).lower():
                self.request.keep_alive = False
            return
        if value.__class__ is not str or "\n" in value or "\r" in value:
            value = _check_header_value(value)
        headers = self._headers
        if headers is None:
            self._headers = {key: value}
        else:
            headers[key] = value

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
            chunk = b"".join(self._buf)
            self._buf = []
            if self._headers_written:
                self._conn.write(chunk)
            else:
                self._headers_written = True
                self._conn.write_headers(self._status, self._reason, self._headers, chunk)
        return self._conn.drain()

    def finish(self, chunk=None):
        """Complete the response; called for you after the method returns."""
        if self._finished:
            raise RuntimeError("finish() called twice")
        if chunk is not None:
            self.write(chunk)
        self._finished = True
        buf = self._buf
        body = buf[0] if len(buf) == 1 else b"".join(buf)
        self._buf = None
        if self._headers_written:
            self._conn.finish(body)
        else:
            self._headers_written = True
            # last=True, positionally (a keyword costs the compiled connection a parse)
            self._conn.write_headers(self._status, self._reason, self._headers, body, True)
        if type(self).on_finish is not _BASE_ON_FINISH:
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
                self._conn.abort()
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
    def _execute(self, route, method_name, args, kwargs):
        """Run this handler: None once it has answered, or a coroutine (the rest of an
        async handler) that the connection runs as a Task."""
        self.path_kwargs = kwargs
        try:
            if route.kwargs:
                self.initialize(**route.kwargs)
            if route.has_defaults:
                self.set_default_headers()
            pending = self.prepare() if route.has_prepare else None
            method = getattr(self, method_name)
            if pending is not None:   # async prepare()
                return self._run_async(pending, method, args, kwargs)
            if self._finished:
                return None
            if route.is_async[self.request.method]:
                return self._run_async(None, method, args, kwargs)
            r = method(*args, **kwargs)
            if r is not None and hasattr(r, "__await__"):
                # a plain def that returned an awaitable: finish when it is done
                return self._run_async(None, lambda: r, (), {})
            if not self._finished:
                self.finish()
        except Exception as e:
            self._handle_exception(e)
        return None

    async def _run_async(self, pending, method, args, kwargs):
        try:
            if pending is not None:
                await pending
            if not self._finished:
                r = method(*args, **kwargs)
                if r is not None and hasattr(r, "__await__"):
                    await r
                if not self._finished:
                    self.finish()
        except Exception as e:
            self._handle_exception(e)
        except asyncio.CancelledError as e:
            # something the handler awaited was cancelled under it, or this task was
            # (the loop shutting down): no response will come, so answer 500 and go on
            self._handle_exception(e)
            if asyncio.current_task().cancelling():
                raise

    def _handle_exception(self, exc):
        if isinstance(exc, HTTPError):
            if exc.log_message:
                log.warning("%s %s: %s", self.request.method, self.request.uri, exc)
            status = exc.status_code if exc.status_code in REASONS or exc.reason else 500
            if not self._finished:
                self.send_error(status, reason=exc.reason)
        elif isinstance(exc, ConnectionError) and self._conn.closed:
            log.debug("%s %s: client went away", self.request.method, self.request.uri)
        else:
            self.log.error("uncaught exception in %s %s", self.request.method,
                           self.request.uri, exc_info=exc)
            if not self._finished:
                self.send_error(500)

    def __repr__(self):
        return f"<{type(self).__name__} {self.request!r}>"


_BASE_ON_FINISH = RequestHandler.on_finish


def _last_value(arguments, name, default, strip):
    values = arguments.get(name)
    if not values:
        if default is _ARG_DEFAULT:
            raise MissingArgumentError(name)
        return default
    value = values[-1]
    return value.strip() if strip else value
