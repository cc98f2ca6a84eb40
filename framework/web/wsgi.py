"""Serve a WSGI application (PEP 3333) on our HTTP/1.1 protocol: ``WsgiApp(app, opts)``.

Framing is ours, written once: every request reaches one bridge handler through a
catch-all route (routing.CatchAllRouter), and the response leaves through the
connection's ``write_headers`` / ``write`` / ``finish``, as any handler's does. The app
itself runs in a bounded thread pool per shard (``opts.threads``), so a view that blocks
(a database call, ``time.sleep``) holds a pool thread, never the shard's loop.

One request, two threads:

    loop    headers + body complete -> environ -> submit to the pool
    thread  app(environ, start_response) -> iterate the body; each block is handed
            to the loop (call_soon_threadsafe) and the thread goes on, unless WINDOW
            bytes are still on their way or the transport said pause_writing: then it
            waits (back-pressure: a slow client slows the app's iteration down,
            nothing piles up in our buffers)
    loop    _deliver: write_headers / write / finish; a full transport blocks the
            thread until drain()

``wsgi.input`` is the whole request body, buffered by the protocol before the app is
called (up to ``max_body_size``, 1 GiB unless given; more is a 413 the app never sees): a
BytesIO, so read/readline/readlines/iteration never block a pool thread on a slow client.

A list or tuple body is sent in one piece, framed by its length; any other iterable is
streamed block by block (chunked unless the app set Content-Length), each block sent
before the next is asked for (PEP 3333: no block is delayed). An exception before the
headers went out is a 500 (the connection closes after it); after, the connection is
cut so the client sees the response is incomplete; both are logged with the traceback.
The iterable's ``close()`` is always called.
"""
import concurrent.futures
import io
import logging
import threading
from urllib.parse import unquote_to_bytes

from .app import App
from .h1writer import REASONS
from .handler import RequestHandler
from .httputil import add_header
from .routing import CatchAllRouter

log = logging.getLogger("framework.wsgi")

# response headers that are the connection's business, not the app's (PEP 3333:
# hop-by-hop headers are the server's); "Connection: close" is honoured
_HOP_BY_HOP = frozenset(("connection", "keep-alive", "transfer-encoding", "te", "trailer",
                         "upgrade", "proxy-authenticate", "proxy-authorization"))
# names the framing code looks up exactly as spelled
_CANONICAL = {"content-type": "Content-Type", "content-length": "Content-Length"}
_PLAIN_500 = {"Content-Type": "text/plain; charset=UTF-8"}
# response bytes a pool thread may hand to the loop before they are written
WINDOW = 256 * 1024


class ClientGone(ConnectionError):
    """The client went away (or the shard stopped) while the app was answering."""


class WsgiApp(App):
    """An App whose every request is answered by the WSGI application ``wsgi_app``."""

    def __init__(self, wsgi_app, opts=None, **app_kwargs):
        from .serving import SERVED_MAX_HEADER_SIZE, WSGI_MAX_BODY_SIZE, WebOptions
        app_kwargs.setdefault("max_body_size", WSGI_MAX_BODY_SIZE)
        app_kwargs.setdefault("max_header_size", SERVED_MAX_HEADER_SIZE)
        super().__init__(**app_kwargs)
        if opts is None:
            opts = WebOptions()
        self.wsgi_app = wsgi_app
        self.threads = int(opts.threads)
        self.script_name = (opts.root_path or "").rstrip("/")
        self.router = CatchAllRouter(WsgiBridge, "handle")
        self._pools = {}        # ctx -> the shard's ThreadPoolExecutor
        self._servers = {}      # ctx -> (SERVER_NAME, SERVER_PORT) of its listener

    async def start_shard(self, ctx):
        # made here, in the worker, never before the supervisor forks it
        self._pools[ctx] = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.threads, thread_name_prefix=f"wsgi-{ctx.shard_id}")
        await super().start_shard(ctx)

    async def stop_shard(self, ctx):
        try:
            await super().stop_shard(ctx)
        finally:
            self._servers.pop(ctx, None)
            pool = self._pools.pop(ctx, None)
            if pool is not None:
                # a view still blocked finds the loop gone when it answers (ClientGone)
                pool.shutdown(wait=False, cancel_futures=True)

    def pool(self, ctx):
        return self._pools[ctx]

    def server_address(self, ctx, conn):
        """(ip, port) as str the connection came to: asked once per shard (a kernel
        socket's getsockname is a system call; a shard listens on one address)."""
        addr = self._servers.get(ctx)
        if addr is None:
            t = conn.transport
            sock = t.get_extra_info("sockname") if t is not None else None
            if not sock:
                return None
            addr = self._servers[ctx] = (str(sock[0]), str(sock[1]))
        return addr

    def __repr__(self):
        return f"<WsgiApp {self.wsgi_app!r}, {self.threads} threads per worker>"


def build_environ(req, ctx, script_name, server):
    """The PEP 3333 environ of ``req`` (our Request); ``server``: (SERVER_NAME,
    SERVER_PORT) the connection came to, or None."""
    path = req.path
    if "%" in path:     # PATH_INFO is percent-decoded: its bytes as latin-1 (PEP 3333)
        path = unquote_to_bytes(path).decode("latin-1")
    if script_name and (path == script_name or path.startswith(script_name + "/")):
        path = path[len(script_name):]
    body = req.body or b""
    environ = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        "QUERY_STRING": req.query,
        "SERVER_NAME": server[0] if server else "localhost",
        "SERVER_PORT": server[1] if server else "80",
        "SERVER_PROTOCOL": req.version,
        "REMOTE_ADDR": req.remote_ip or "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": req.protocol,
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,      # read() to EOF is safe (gunicorn sets it too)
        "wsgi.errors": ErrorStream(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": ctx.shard_count > 1,
        "wsgi.run_once": False,
    }
    for name, value in req.raw_headers:
        key = name.decode("latin-1").upper()
        if "_" in key:
            # HTTP_X_USER could come from "X-User" or "X_User": a proxy that filters one
            # spelling would let the other through (gunicorn and nginx drop these too)
            continue
        key = key.replace("-", "_")
        if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
            pass
        else:
            key = "HTTP_" + key
        value = value.decode("latin-1")
        old = environ.get(key)
        environ[key] = value if old is None else f"{old}, {value}"
    # the body is complete: its length is known even when it came chunked
    if body or "CONTENT_LENGTH" in environ:
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


class ErrorStream:
    """``wsgi.errors``: what the app writes there goes to the "framework.wsgi" log, a line
    at a time (so it lands in the worker's log file, reopened with it on SIGUSR1)."""

    __slots__ = ("_partial",)

    def __init__(self):
        self._partial = ""

    def write(self, text):
        lines = (self._partial + str(text)).split("\n")
        self._partial = lines.pop()
        for line in lines:
            log.error("%s", line)
        return len(text)

    def writelines(self, seq):
        for text in seq:
            self.write(text)

    def flush(self):
        if self._partial:
            log.error("%s", self._partial)
            self._partial = ""


class WsgiBridge(RequestHandler):
    """The handler of every request of a WsgiApp: hands it to a pool thread (Exchange)."""

    __slots__ = ()

    def handle(self):       # the catch-all route's method; _execute below runs instead
        raise NotImplementedError

    def _execute(self, route, method_name, args, kwargs):
        conn = self._conn
        app = self.app
        ctx = self._ctx
        environ = build_environ(self.request, ctx, app.script_name,
                                app.server_address(ctx, conn))
        exchange = self.exchange = Exchange(self, app.wsgi_app, environ)
        self._finished = False
        return exchange.serve(app.pool(ctx))

    def on_connection_close(self):
        # the client went away mid-request: the thread learns it at its next write
        self._finished = True
        exchange = self.__dict__.get("exchange")
        if exchange is not None:
            exchange._stop_thread(ClientGone("client went away"))


class Exchange:
    """One request's run of the WSGI app: the thread side (``run``) and the loop side
    (``_deliver``) of its response."""

    __slots__ = ("handler", "conn", "loop", "wsgi_app", "environ", "status", "reason",
                 "headers", "declared", "headers_sent", "sent", "complete", "close_after",
                 "flow", "in_flight", "blocked", "gone")

    def __init__(self, handler, wsgi_app, environ):
        self.handler = handler
        self.conn = handler._conn
        self.loop = self.conn.loop
        self.wsgi_app = wsgi_app
        self.environ = environ
        self.status = None          # int, once start_response was called
        self.reason = None
        self.headers = None         # {Name: str or [str]} for write_headers
        self.declared = None        # the app's Content-Length, int, or None
        self.headers_sent = False
        self.sent = 0               # body bytes handed to the connection
        self.complete = False       # the last block went out
        self.close_after = False    # the app said "Connection: close"
        # flow control between the two threads (under ``flow``): bytes handed to the loop
        # and not written yet, whether the transport asked us to wait (pause_writing),
        # and why no more may be sent (a ClientGone), if so
        self.flow = threading.Condition(threading.Lock())
        self.in_flight = 0
        self.blocked = False
        self.gone = None

    # ---- loop side --------------------------------------------------------------------
    async def serve(self, pool):
        try:
            fut = self.loop.run_in_executor(pool, self.run)
        except RuntimeError:
            # the pool is shut down (the shard is stopping): no thread will answer
            if not self.conn.closed:
                self._deliver((503, None, dict(_PLAIN_500)), _page(503), True, True)
            return
        try:
            await fut
        except Exception:       # a bug of ours, not the app's (run() catches those)
            log.exception("WSGI bridge failed")
            self._abort()

    def _deliver(self, head, chunk, last, close=False):
        """Write one block of the response (on the loop), then let the thread send more
        unless the transport is full (then once it drained)."""
        conn = self.conn
        try:
            if conn.closed:
                raise ClientGone("client went away")
            if head is not None:
                status, reason, headers = head
                if close or self.close_after:
                    self.handler.request.keep_alive = False
                conn.write_headers(status, reason, headers, chunk, last)
            elif last:
                conn.finish(chunk)
            else:
                conn.write(chunk)
        except BaseException as e:      # noqa: B902 - the thread learns it
            if not isinstance(e, ConnectionError):
                log.error("writing the WSGI response failed", exc_info=e)
                self._abort()
            self._stop_thread(e if isinstance(e, ClientGone) else ClientGone(str(e)))
            return
        if last:
            self.handler._finished = True
            return
        drained = None if conn.closed else conn.drain()
        with self.flow:
            self.in_flight -= len(chunk) + 1
            if conn.closed:
                self.gone = ClientGone("client went away")
            elif not drained.done():
                self.blocked = True
            self.flow.notify()
        if drained is not None and not drained.done():
            drained.add_done_callback(self._drained)

    def _drained(self, fut):
        exc = None if fut.cancelled() else fut.exception()
        with self.flow:
            self.blocked = False
            if exc is not None:
                self.gone = ClientGone(str(exc))
            self.flow.notify()

    def _stop_thread(self, exc):
        with self.flow:
            if self.gone is None:
                self.gone = exc
            self.flow.notify()

    def _abort(self):
        self.handler._finished = True
        if not self.conn.closed:
            self.conn.abort()

    # ---- thread side ------------------------------------------------------------------
    def run(self):
        result = None
        try:
            result = self.wsgi_app(self.environ, self.start_response)
            self._send_body(result)
        except ClientGone:
            log.debug("%s %s: client went away", self.environ["REQUEST_METHOD"],
                      self.environ["PATH_INFO"])
        except Exception as exc:
            self._failed(exc)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("close() of the response of %s %s failed",
                                  self.environ["REQUEST_METHOD"], self.environ["PATH_INFO"])

    def start_response(self, status, response_headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.headers_sent:   # too late for another status: the app's error
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None         # no traceback <-> frame cycle
        elif self.status is not None:
            raise AssertionError("start_response() called again without exc_info")
        code, reason = _parse_status(status)
        headers = {}
        declared = None
        close_after = False
        for name, value in response_headers:
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"response header {name!r}: {value!r}: names and values "
                                "are str")
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name or \
                    ":" in name or not (value.isascii() or _latin1(value)):
                raise ValueError(f"unsafe response header {name!r}: {value!r}")
            lname = name.lower()
            if lname in _HOP_BY_HOP:
                if lname == "connection" and "close" in value.lower():
                    close_after = True
                continue
            name = _CANONICAL.get(lname, name)
            if lname == "content-length":
                declared = int(value)
            add_header(headers, name, value)
        self.status, self.reason, self.headers = code, reason, headers
        self.declared, self.close_after = declared, close_after
        return self.write

    def write(self, data):
        """The legacy write() callable start_response returns: blocks until written."""
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if data:
            self._send(data)

    def _send_body(self, result):
        if isinstance(result, (list, tuple)) and not self.headers_sent:
            # the whole body is here: one write, framed by its length
            for block in result:
                if type(block) is not bytes:
                    raise TypeError(f"the app's body yields {type(block).__name__}, "
                                    "not bytes")
            self._send(b"".join(result), last=True)
            return
        for block in result:
            if type(block) is not bytes:
                raise TypeError(f"the app's body yields {type(block).__name__}, not bytes")
            if block and not self.complete:
                self._send(block)
        if not self.complete:
            if not self.headers_sent and self.declared is None and \
                    self.environ["REQUEST_METHOD"] == "HEAD":
                # a HEAD's empty iterable says nothing of the GET's length: no
                # Content-Length: 0 (the headers go as a stream's, then it ends)
                self._send(b"")
            self._send(b"", last=True)

    def _send(self, block, last=False):
        if self.status is None:
            raise AssertionError("the app returned a body before calling start_response()")
        if self.complete:
            if block:
                log.warning("%s %s: %d bytes past its Content-Length dropped",
                            self.environ["REQUEST_METHOD"], self.environ["PATH_INFO"],
                            len(block))
            return
        declared = self.declared
        if declared is not None and self.sent + len(block) == declared:
            last = True     # the declared length is all there is: finish in this write
        head = None if self.headers_sent else (self.status, self.reason, self.headers)
        self._to_loop(head, block, last)
        self.headers_sent = True
        self.sent += len(block)
        if last:
            self.complete = True

    def _to_loop(self, head, block, last, close=False):
        """Hand a block to the loop; wait first while WINDOW bytes are on their way or the
        transport is full (back-pressure: the app is not asked for more meanwhile)."""
        flow = self.flow
        with flow:
            while (self.blocked or self.in_flight >= WINDOW) and self.gone is None:
                flow.wait()
            if self.gone is not None:
                if head is not None:
                    self.headers_sent = True    # nothing more goes out, whatever happens
                raise self.gone
            self.in_flight += len(block) + 1
        try:
            self.loop.call_soon_threadsafe(self._deliver, head, block, last, close)
        except RuntimeError:    # the loop is closed: the shard stopped
            raise ClientGone("the shard stopped") from None

    def _failed(self, exc):
        env = self.environ
        log.error("%s %s: the WSGI app failed", env["REQUEST_METHOD"],
                  env["SCRIPT_NAME"] + env["PATH_INFO"], exc_info=exc)
        if self.headers_sent:
            # the status is out: cut the connection, the client sees a broken response
            try:
                self.loop.call_soon_threadsafe(self._abort)
            except RuntimeError:
                pass
            return
        self.headers_sent = True
        try:
            self._to_loop((500, None, dict(_PLAIN_500)), _page(500), True, close=True)
        except ClientGone:
            pass


def _latin1(text):
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _parse_status(status):
    """(code, reason or None for the standard phrase) of a WSGI status "200 OK"."""
    if type(status) is not str:
        raise TypeError(f"status must be a str like '200 OK', not {type(status).__name__}")
    code_text, _, reason = status.partition(" ")
    if len(code_text) != 3 or not code_text.isdigit():
        raise ValueError(f"status {status!r}: not 'NNN reason'")
    code = int(code_text)
    if code < 100:
        raise ValueError(f"status {status!r}: no such code")
    reason = reason.strip()
    if "\r" in reason or "\n" in reason:
        raise ValueError(f"unsafe status {status!r}")
    if not reason or reason == REASONS.get(code):
        return code, None if code in REASONS else (reason or "Unknown")
    return code, reason


def _page(status):
    return b"%d: %s\n" % (status, REASONS.get(status, "Error").encode())
