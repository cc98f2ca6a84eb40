"""WebSockets for our apps and the ASGI bridge: the asyncio protocol of an upgraded
connection, and ``WebSocketHandler`` (Tornado's interface). The handshake and the
sans-IO engine are framework.web.wsengine (on wsproto); the ASGI ``websocket`` scope,
framework.web.asgi_ws, runs on the same protocol.

``WebSocketProtocol`` is the asyncio Protocol the transport is handed to once the HTTP
protocol has let go of it (``HttpProtocol.detach``, CONTRACTS section 5): it writes what
the engine produces, sends keep-alive pings (``loop.call_later``; no Pong within the
timeout: Close 1011), bounds the wait for the peer's Close (then cuts), follows write
flow control (``drain``) and pauses reading for a busy listener; it tells its listener
``ws_message(msg)``, ``ws_ping(payload)``, ``ws_pong(payload)`` and, exactly once, from
``connection_lost``, ``ws_closed(code, reason)``.
"""
import inspect
import json
import logging
from collections import deque
from urllib.parse import urlsplit

from .flow import drain_future, wake_drainers
from .handler import RequestHandler
from .wsengine import (MAX_MESSAGE_SIZE, Closed, Message, Ping, Pong, WebSocketClosedError,
                       WebSocketEngine, accept_response, handshake_error,
                       offered_extensions, offered_subprotocols)

__all__ = ["WebSocketHandler", "WebSocketProtocol", "WebSocketClosedError",
           "WebSocketEngine", "Message", "Ping", "Pong", "Closed", "accept_response",
           "handshake_error", "offered_extensions", "offered_subprotocols",
           "MAX_MESSAGE_SIZE", "PING_INTERVAL", "PING_TIMEOUT", "CLOSE_TIMEOUT"]

log = logging.getLogger("framework.web")

PING_INTERVAL = 20.0        # seconds; uvicorn's and websockets' defaults
PING_TIMEOUT = 20.0
CLOSE_TIMEOUT = 5.0         # our Close sent, the peer's awaited this long, then abort
_INBOX_PAUSE = 32           # messages waiting for a busy listener before reading pauses
_HELD_LIMIT = 64 * 1024     # bytes held before the handshake is accepted, then pause


# ---- the protocol of an upgraded connection --------------------------------------------------
class WebSocketProtocol:
    """asyncio Protocol of a WebSocket connection; see the module docstring.

    ``attach(transport, rest)`` takes the transport over (the bytes after the request head
    are held); ``accept(head, extensions)`` writes the 101 and starts the engine, or
    ``reject(response)`` answers with an HTTP response and closes.
    """

    def __init__(self, loop, listener, max_message_size=MAX_MESSAGE_SIZE,
                 ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT,
                 close_timeout=CLOSE_TIMEOUT):
        self.loop = loop
        self.listener = listener
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.transport = None
        self.engine = None
        self._held = b""            # bytes received before accept()
        self._lost = False
        self._wpaused = False
        self._drainers = None
        self._rpaused = 0
        self._timer = None          # the next keep-alive ping, its pong deadline, or
        self._ping_payload = None   # the close timeout
        self._close_started = False  # our Close is out: only the close timeout runs

    # ---- set-up ------------------------------------------------------------------------------
    def attach(self, transport, rest=b""):
        self.transport = transport
        transport.set_protocol(self)
        if rest:
            self._hold(rest)

    def accept(self, head, extensions=()):
        if self._lost:
            return
        self.engine = WebSocketEngine(extensions, self.max_message_size)
        self.transport.write(head)
        self._schedule_ping()
        held, self._held = self._held, b""
        if len(held) > _HELD_LIMIT:
            self.resume_reading()
        if held:
            self.data_received(held)

    def reject(self, response):
        if not self._lost:
            self.transport.write(response)
            self.transport.close()

    # ---- asyncio Protocol ------------------------------------------------------------------
    def connection_made(self, transport):   # only when used as a listener's protocol
        self.transport = transport

    def data_received(self, data):
        engine = self.engine
        if engine is None:
            self._hold(data)
            return
        events = engine.receive(data)
        self._flush()
        listener = self.listener
        for ev in events:
            cls = type(ev)
            if cls is Message:
                listener.ws_message(ev.data)
            elif cls is Pong:
                if self._ping_payload is not None and ev.payload == self._ping_payload \
                        and not self._close_started:
                    self._ping_payload = None
                    self._schedule_ping()
                listener.ws_pong(ev.payload)
            elif cls is Ping:
                listener.ws_ping(ev.payload)
            elif cls is Closed:
                self._cancel_timer()
                self.transport.close()      # the server closes TCP first (RFC 6455 7.1.1)
            if self._lost:
                break
        if engine.closing and not engine.done and not self._close_started:
            self._cancel_timer()          # the engine sent Close (1009): wait for the reply
            self._start_close_timer()

    def eof_received(self):
        return False    # a peer that half-closes is gone: close (connection_lost follows)

    def connection_lost(self, exc):
        if self._lost:
            return
        self._lost = True
        self._cancel_timer()
        self._held = b""
        if self._drainers:
            wake_drainers(self, ConnectionResetError("connection lost"))
        engine = self.engine
        code = reason = None
        if engine is not None:
            engine.connection_lost()
            code, reason = engine.close_code, engine.close_reason
        self.transport = None
        listener, self.listener = self.listener, None
        try:
            listener.ws_closed(code, reason)
        except Exception:
            log.exception("WebSocket close callback failed")

    def pause_writing(self):
        self._wpaused = True

    def resume_writing(self):
        self._wpaused = False
        wake_drainers(self, None)

    def shutdown(self):
        """Graceful stop of the server: Close 1001 ("going away")."""
        if self.engine is None:
            if not self._lost:
                self.transport.close()
            return
        self.close(1001, "server shutting down")

    # ---- used by the listener ---------------------------------------------------------------
    @property
    def closed(self):
        return self._lost or self.engine is None or not self.engine.is_open

    def send(self, data):
        """Write a message; an asyncio future done when the transport takes more."""
        if self._lost:
            raise WebSocketClosedError("WebSocket is closed")
        self.engine.send(data)
        self._flush()
        return drain_future(self, self.loop, False)

    def ping(self, payload=b""):
        if self._lost:
            raise WebSocketClosedError("WebSocket is closed")
        self.engine.ping(payload)
        self._flush()

    def close(self, code=1000, reason=""):
        engine = self.engine
        if self._lost or engine is None or engine.closing or engine.done:
            return
        engine.close(code, reason)
        self._flush()
        self._cancel_timer()
        self._start_close_timer()

    def abort(self):
        if not self._lost and self.transport is not None:
            self.transport.abort()

    def pause_reading(self):
        self._rpaused += 1
        if self._rpaused == 1 and not self._lost:
            self.transport.pause_reading()

    def resume_reading(self):
        if self._rpaused > 0:
            self._rpaused -= 1
            if self._rpaused == 0 and not self._lost:
                self.transport.resume_reading()

    # ---- internals -------------------------------------------------------------------------
    def _hold(self, data):
        before = len(self._held)
        self._held += data
        if before <= _HELD_LIMIT < len(self._held):
            self.pause_reading()

    def _flush(self):
        data = self.engine.data_to_send()
        if data and not self._lost:
            self.transport.write(data)

    def _cancel_timer(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._ping_payload = None

    def _schedule_ping(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.ping_interval and not self._lost:
            self._timer = self.loop.call_later(self.ping_interval, self._keepalive)

    def _keepalive(self):
        self._timer = None
        engine = self.engine
        if self._lost or not engine.is_open:
            return
        self._ping_payload = b"%08x" % (int(self.loop.time() * 1000) & 0xFFFFFFFF)
        engine.ping(self._ping_payload)
        self._flush()
        if self.ping_timeout:
            self._timer = self.loop.call_later(self.ping_timeout, self._pong_missing)

    def _pong_missing(self):
        """No Pong in time: fail the connection (as websockets does): Close 1011, FIN,
        and the close timeout's abort for a peer that is really gone."""
        self._timer = None
        if self._lost:
            return
        self.engine.close(1011, "keepalive ping timeout")
        self._flush()
        self.transport.close()
        self._start_close_timer()

    def _start_close_timer(self):
        self._close_started = True
        if self.close_timeout is not None and not self._lost:
            self._timer = self.loop.call_later(self.close_timeout, self._close_timed_out)

    def _close_timed_out(self):
        self._timer = None
        if not self._lost:
            self.transport.abort()


# ---- our apps' handler -----------------------------------------------------------------------
class WebSocketHandler(RequestHandler):
    """A WebSocket endpoint (Tornado's interface): route it like any handler.

    Override ``open(*args, **kwargs)`` (the route's captures), ``on_message(message)``
    (str or bytes; either may be ``async def``: later messages wait for it),
    ``on_close()`` (once, however the connection ends), ``on_ping``/``on_pong``,
    ``select_subprotocol(subprotocols)`` and ``check_origin(origin)``. Use
    ``write_message(msg, binary=False)`` (returns a future: ``await`` it to follow the
    client's pace), ``ping(data)``, ``close(code, reason)``; ``close_code`` and
    ``close_reason`` are what the client's Close frame said (None without one).

    Options (class attributes, or set in ``initialize``): ``max_message_size`` (bigger
    messages close with 1009), ``compression`` (permessage-deflate when offered),
    ``ping_interval``/``ping_timeout`` (keep-alive; None disables), ``close_timeout``.
    """

    max_message_size = MAX_MESSAGE_SIZE
    compression = True
    ping_interval = PING_INTERVAL
    ping_timeout = PING_TIMEOUT
    close_timeout = CLOSE_TIMEOUT

    # ---- override these ---------------------------------------------------------------------
    def open(self, *args, **kwargs):
        pass

    def on_message(self, message):
        raise NotImplementedError

    def on_ping(self, data):
        pass

    def on_pong(self, data):
        pass

    def on_close(self):
        pass

    def select_subprotocol(self, subprotocols):
        """The subprotocol to speak, one of ``subprotocols`` (the client's), or None."""
        return None

    def check_origin(self, origin):
        """Accept a browser's cross-origin connection? Default: the Origin's host must be
        the request's Host (as Tornado); clients without Origin (not browsers) pass."""
        host = self.request.headers.get("Host", "")
        return urlsplit(origin).netloc.lower() == host.lower()

    # ---- use these ---------------------------------------------------------------------------
    def write_message(self, message, binary=False):
        """Send a message: str -> text (binary with ``binary``), bytes -> binary,
        dict/list -> JSON text. Returns a future done when the transport takes more."""
        ws = self._ws
        if ws is None or ws.closed:
            raise WebSocketClosedError("WebSocket is closed")
        if isinstance(message, (dict, list)):
            message = json.dumps(message)
        elif isinstance(message, (bytearray, memoryview)):
            message = bytes(message)
        elif not isinstance(message, (str, bytes)):
            raise TypeError(f"write_message takes str, bytes or dict, not "
                            f"{type(message).__name__}")
        if binary and isinstance(message, str):
            message = message.encode()
        return ws.send(message)

    def ping(self, data=b""):
        ws = self._ws
        if ws is None or ws.closed:
            raise WebSocketClosedError("WebSocket is closed")
        ws.ping(data.encode() if isinstance(data, str) else data)

    def close(self, code=1000, reason=""):
        """Start the close handshake; ``on_close`` follows once the connection is gone."""
        if self._ws is not None:
            self._ws.close(code, reason)

    @property
    def selected_subprotocol(self):
        return self._subprotocol

    @property
    def ws_connection(self):
        """The WebSocketProtocol once the handshake is done, else None."""
        return self._ws

    _ws = None
    _subprotocol = None
    close_code = None
    close_reason = None

    # ---- the handshake (the route's GET) ----------------------------------------------------
    def get(self, *args, **kwargs):
        headers = self.request.headers
        error = handshake_error(headers)
        if error is None and "Origin" in headers and not self.check_origin(headers["Origin"]):
            error = 403, "Cross origin websockets not allowed", {}
        if error is not None:
            status, message, extra = error
            for name, value in extra.items():
                self.set_header(name, value)
            self.set_status(status)
            self.finish(message)
            return
        subprotocols = offered_subprotocols(headers)
        subprotocol = self.select_subprotocol(subprotocols) if subprotocols else None
        extra = [(k, v) for k, vs in (self._headers or {}).items()
                 for v in (vs if isinstance(vs, list) else [vs])]
        shared = getattr(self._conn, "shared", None)
        head, extensions = accept_response(headers, subprotocol, self.compression, extra,
                                           shared.prefix() if shared is not None else b"",
                                           self.max_message_size)
        taken = self._conn.detach()
        if taken is None:       # not an Upgrade llhttp saw (HTTP/1.0), or the client left
            self.set_status(400)
            self.finish("Can \"Upgrade\" only to \"WebSocket\".")
            return
        transport, rest = taken
        self._finished = self._headers_written = True
        self._subprotocol = subprotocol
        self._inbox = deque()
        self._busy = True       # open() first: messages wait for it
        self._gone = False
        ws = self._ws = WebSocketProtocol(
            self._conn.loop, self, self.max_message_size, self.ping_interval,
            self.ping_timeout, self.close_timeout)
        ws.attach(transport, rest)
        ws.accept(head, extensions)
        if not self._run(self.open, args, kwargs):
            self._next()

    # ---- listener interface of WebSocketProtocol -------------------------------------------
    def ws_message(self, message):
        if self._busy:
            inbox = self._inbox
            inbox.append(message)
            if len(inbox) == _INBOX_PAUSE:
                self._ws.pause_reading()
            return
        self._run(self.on_message, (message,), None)

    def ws_ping(self, payload):
        self._run(self.on_ping, (payload,), None, sequential=False)

    def ws_pong(self, payload):
        self._run(self.on_pong, (payload,), None, sequential=False)

    def ws_closed(self, code, reason):
        self.close_code = code
        self.close_reason = reason
        self._inbox.clear()
        self._gone = True
        self._run(self.on_close, (), None, sequential=False)

    # ---- running the callbacks in order -----------------------------------------------------
    def _run(self, fn, args, kwargs, sequential=True):
        """Call ``fn``; True when it returned an awaitable that now runs as a task (a
        sequential one holds the next messages until it is done)."""
        try:
            r = fn(*args, **(kwargs or {}))
        except Exception:
            self._failed(fn)
            return False
        if r is None or not inspect.isawaitable(r):
            return False
        if sequential:
            self._busy = True
            self._conn.loop.create_task(self._await_then_next(r, fn))
        else:
            self._conn.loop.create_task(self._await(r, fn))
        return True

    async def _await(self, awaitable, fn):
        try:
            await awaitable
        except Exception:
            if self._gone:      # on_close, or a callback the connection's end cut short
                log.exception("%s.%s failed", type(self).__name__,
                              getattr(fn, "__name__", "callback"))
            else:
                self._failed(fn)

    async def _await_then_next(self, awaitable, fn):
        await self._await(awaitable, fn)
        self._next()

    def _next(self):
        """The callback is done: deliver the messages that waited for it, in order."""
        self._busy = False
        inbox = self._inbox
        while inbox and not self._busy and not self._gone:
            if len(inbox) == _INBOX_PAUSE:
                self._ws.resume_reading()
            self._run(self.on_message, (inbox.popleft(),), None)

    def _failed(self, fn):
        log.exception("%s.%s failed; closing with 1011", type(self).__name__,
                      getattr(fn, "__name__", "callback"))
        self.close(1011, "internal error")
