"""WebSockets (RFC 6455) on wsproto: the opening handshake, a sans-IO engine, the asyncio
protocol of an upgraded connection, and ``WebSocketHandler`` (Tornado's interface) for
our own apps. The ASGI ``websocket`` scope (framework.web.asgi_ws) uses the same engine
and protocol.

Layers, each knowing only the one below:

- ``handshake_error`` / ``accept_response``: pure functions of the request's headers
  (validation, Sec-WebSocket-Accept, subprotocol, permessage-deflate negotiation).
- ``WebSocketEngine``: bytes in -> events (``Message``, ``Ping``, ``Pong``, ``Closed``),
  messages out -> bytes; fragments assembled, the message size limit (close 1009), the
  close handshake. No I/O and no clock (frames: wsproto's ``Connection``).
- ``WebSocketProtocol``: the asyncio Protocol the transport is handed to once the HTTP
  protocol has let go of it (``HttpProtocol.detach``, CONTRACTS section 5): writes what
  the engine produces, keep-alive pings (``loop.call_later``), the close timeout,
  write flow control (``drain``), read pausing; tells its listener
  ``ws_message(msg)``, ``ws_ping(payload)``, ``ws_pong(payload)`` and, exactly once, from
  ``connection_lost``, ``ws_closed(code, reason)``.
"""
import base64
import binascii
import inspect
import json
import logging
from collections import deque
from urllib.parse import urlsplit

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping as WsPing, Pong as WsPong
from wsproto.events import TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import generate_accept_token

from .flow import drain_future, wake_drainers
from .handler import RequestHandler

log = logging.getLogger("framework.web")

MAX_MESSAGE_SIZE = 16 * 1024 * 1024
PING_INTERVAL = 20.0        # seconds; uvicorn's and websockets' defaults
PING_TIMEOUT = 20.0
CLOSE_TIMEOUT = 5.0         # our Close sent, the peer's awaited this long, then abort
_INBOX_PAUSE = 32           # messages waiting for a busy listener before reading pauses
_HELD_LIMIT = 64 * 1024     # bytes held before the handshake is accepted, then pause


class WebSocketClosedError(Exception):
    """A message was written to a WebSocket that is closed (or closing)."""


# ---- the opening handshake (RFC 6455 section 4.2) -------------------------------------------
def _tokens(value):
    return {t.strip().lower() for t in (value or "").split(",") if t.strip()}


def handshake_error(headers):
    """None when ``headers`` (HTTPHeaders) ask for a WebSocket we can accept, else
    ``(status, message, extra_headers)`` of the answer to give instead."""
    if "websocket" not in _tokens(headers.get("Upgrade")):
        return 400, "Can \"Upgrade\" only to \"WebSocket\".", {}
    if "upgrade" not in _tokens(headers.get("Connection")):
        return 400, "\"Connection\" must be \"Upgrade\".", {}
    if headers.get("Sec-WebSocket-Version", "").strip() != "13":
        return 426, "Unsupported WebSocket version.", {"Sec-WebSocket-Version": "13"}
    key = headers.get("Sec-WebSocket-Key", "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError(key)
    except (binascii.Error, ValueError):
        return 400, "Invalid Sec-WebSocket-Key.", {}
    return None


def offered_subprotocols(headers):
    """The subprotocols the client offers, in its order (Sec-WebSocket-Protocol)."""
    value = headers.get("Sec-WebSocket-Protocol")
    return [p.strip() for p in value.split(",") if p.strip()] if value else []


def offered_extensions(headers):
    value = headers.get("Sec-WebSocket-Extensions")
    return [e.strip() for e in value.split(",") if e.strip()] if value else []


def accept_response(headers, subprotocol=None, compression=True, extra_headers=(),
                    prefix=b""):
    """``(101 response bytes, the extensions agreed)`` for a request that passed
    ``handshake_error``. ``prefix``: header lines every response carries (Server, Date).
    ``extra_headers``: [(name, value)] as str or bytes."""
    if subprotocol is not None and subprotocol not in offered_subprotocols(headers):
        raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
    accept = generate_accept_token(headers["Sec-WebSocket-Key"].strip().encode("latin-1"))
    lines = [b"HTTP/1.1 101 Switching Protocols\r\n", prefix,
             b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ", accept,
             b"\r\n"]
    if subprotocol is not None:
        lines += [b"Sec-WebSocket-Protocol: ", subprotocol.encode("ascii"), b"\r\n"]
    extensions = []
    offers = offered_extensions(headers)
    if compression and offers:
        deflate = PerMessageDeflate()
        agreed = server_extensions_handshake(offers, [deflate])
        if agreed:
            extensions.append(deflate)
            lines += [b"Sec-WebSocket-Extensions: ", agreed, b"\r\n"]
    for name, value in extra_headers:
        name = name if isinstance(name, bytes) else name.encode("latin-1")
        value = value if isinstance(value, bytes) else str(value).encode("latin-1")
        if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name:
            raise ValueError(f"unsafe header {name!r}: {value!r}")
        lines += [name, b": ", value, b"\r\n"]
    lines.append(b"\r\n")
    return b"".join(lines), extensions


# ---- the engine ------------------------------------------------------------------------------
class Message:
    """A complete message: ``data`` is str (text) or bytes (binary)."""
    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data

    def __repr__(self):
        return f"Message({self.data[:40]!r}{'...' if len(self.data) > 40 else ''})"


class Ping:
    __slots__ = ("payload",)

    def __init__(self, payload):
        self.payload = payload


class Pong(Ping):
    __slots__ = ()


class Closed:
    """The close handshake is over (or failed): the transport is to be closed.
    ``code``/``reason``: what the peer's Close frame said, None if it sent none."""
    __slots__ = ("code", "reason")

    def __init__(self, code, reason):
        self.code = code
        self.reason = reason

    def __repr__(self):
        return f"Closed({self.code!r}, {self.reason!r})"


class WebSocketEngine:
    """One server-side WebSocket after its handshake, sans-IO.

    ``receive(data) -> [events]``; ``send``/``ping``/``close`` queue frames;
    ``data_to_send()`` takes every byte due (also the automatic Pong and Close replies).
    After we sent a Close, messages still arriving are dropped (RFC 6455 5.5.1).
    """

    __slots__ = ("_ws", "max_message_size", "_parts", "_size", "_out", "closing",
                 "done", "close_code", "close_reason")

    def __init__(self, extensions=(), max_message_size=MAX_MESSAGE_SIZE):
        self._ws = Connection(ConnectionType.SERVER, list(extensions))
        self.max_message_size = max_message_size
        self._parts = None          # fragments of the message being received
        self._size = 0
        self._out = []
        self.closing = False        # we sent a Close (or failed the connection)
        self.done = False           # nothing more will be received: close the transport
        self.close_code = None      # the peer's Close, once received
        self.close_reason = None

    @property
    def is_open(self):
        return not self.closing and not self.done

    def data_to_send(self):
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def send(self, data):
        """Queue a message: str -> text, bytes-like -> binary."""
        if not self.is_open:
            raise WebSocketClosedError("WebSocket is closed")
        event = (TextMessage(data=data) if isinstance(data, str)
                 else BytesMessage(data=bytes(data)))
        self._out.append(self._ws.send(event))

    def ping(self, payload=b""):
        if not self.is_open:
            raise WebSocketClosedError("WebSocket is closed")
        self._out.append(self._ws.send(WsPing(payload=bytes(payload))))

    def close(self, code=1000, reason=""):
        """Start the close handshake (nothing if it has started)."""
        if self.closing or self.done:
            return
        self.closing = True
        self._parts = None
        if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            self._out.append(self._ws.send(CloseConnection(code=code, reason=reason or None)))

    def connection_lost(self):
        """The transport is gone: drop what a message in progress had collected."""
        self.done = True
        self._parts = None
        self._out = []

    def receive(self, data):
        """Feed bytes from the peer; the events they complete."""
        if self.done:
            return []
        self._ws.receive_data(data)
        events = []
        for ev in self._ws.events():
            cls = type(ev)
            if cls is TextMessage or cls is BytesMessage:
                if self.closing:
                    continue
                self._fragment(ev, events)
            elif cls is WsPing:
                if self._ws.state is ConnectionState.OPEN:
                    self._out.append(self._ws.send(ev.response()))
                events.append(Ping(ev.payload))
            elif cls is WsPong:
                events.append(Pong(ev.payload))
            elif cls is CloseConnection:
                self._closed_by(ev, events)
                break
        return events

    def _fragment(self, ev, events):
        size = self._size + len(ev.data)
        if size > self.max_message_size:
            self.close(1009, "message too big")
            return
        if ev.message_finished:
            parts = self._parts
            if parts is None:
                data = ev.data
            else:
                parts.append(ev.data)
                data = "".join(parts) if parts[0].__class__ is str else b"".join(parts)
            data = data if data.__class__ is str or data.__class__ is bytes else bytes(data)
            self._parts = None
            self._size = 0
            events.append(Message(data))
        else:
            if self._parts is None:
                self._parts = []
            self._parts.append(ev.data)
            self._size = size

    def _closed_by(self, ev, events):
        state = self._ws.state
        self.done = True
        self._parts = None
        if state is ConnectionState.OPEN:
            # wsproto's verdict on a broken frame (ParseFailed): fail the connection
            # with the code it gives (1002, 1007, ...); the peer sent no Close
            self.closing = True
            self._out.append(self._ws.send(CloseConnection(code=ev.code, reason=ev.reason)))
            events.append(Closed(None, None))
            return
        self.close_code = ev.code
        self.close_reason = ev.reason or ""
        if state is ConnectionState.REMOTE_CLOSING:     # the peer started: echo its code
            self._out.append(self._ws.send(ev.response()))
        events.append(Closed(ev.code, self.close_reason))


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
                if self._ping_payload is not None and ev.payload == self._ping_payload:
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
        if engine.closing and not engine.done and self._timer is None:
            self._start_close_timer()     # we sent Close (e.g. 1009): wait for the reply

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
        """No Pong in time: the peer is gone. Close 1011 and cut (as websockets does)."""
        self._timer = None
        if self._lost:
            return
        self.engine.close(1011, "keepalive ping timeout")
        self._flush()
        self.transport.abort()

    def _start_close_timer(self):
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
        extra = [(k, v) for k, vs in (self._headers or {}).items()
                 for v in (vs if isinstance(vs, list) else [vs])]
        shared = getattr(self._conn, "shared", None)
        head, extensions = accept_response(headers, subprotocol, self.compression, extra,
                                           shared.prefix() if shared is not None else b"")
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
            if not self._gone:
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
