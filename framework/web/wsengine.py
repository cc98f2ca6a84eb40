"""WebSockets (RFC 6455), sans-IO, on wsproto: the opening handshake as pure functions of
the request's headers, and ``WebSocketEngine``, one server-side connection after it
(bytes in -> events, messages out -> bytes). No I/O and no clock: framework.web.websocket
runs it on a transport.

- ``handshake_error`` / ``accept_response``: validation, Sec-WebSocket-Accept, the
  subprotocol, permessage-deflate negotiation (wsproto's PerMessageDeflate).
- ``WebSocketEngine``: events ``Message``, ``Ping``, ``Pong``, ``Closed``; fragments
  assembled, the message size limit (close 1009 as soon as a message passes it, before
  it is whole), the close handshake, broken frames failed with wsproto's code.
"""
import base64
import binascii
import zlib

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping as WsPing, Pong as WsPong
from wsproto.events import TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import generate_accept_token

MAX_MESSAGE_SIZE = 16 * 1024 * 1024


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


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate whose inflating stops at the message size limit: a small
    compressed frame cannot make us hold more than the limit (it is a 1009 instead)."""

    def __init__(self, limit, **params):
        super().__init__(**params)
        self.limit = limit

    def frame_inbound_payload_data(self, proto, data):
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        try:
            out = self._decompressor.decompress(bytes(data), self.limit + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        if self._decompressor.unconsumed_tail or len(out) > self.limit:
            return CloseReason.MESSAGE_TOO_BIG
        return out


def accept_response(headers, subprotocol=None, compression=True, extra_headers=(),
                    prefix=b"", max_message_size=MAX_MESSAGE_SIZE):
    """``(101 response bytes, the extensions agreed)`` for a request that passed
    ``handshake_error``. ``prefix``: header lines every response carries (Server, Date).
    ``extra_headers``: [(name, value)] as str or bytes. ``max_message_size`` bounds what
    a compressed frame may inflate to (BoundedDeflate)."""
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
        deflate = BoundedDeflate(max_message_size)
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
