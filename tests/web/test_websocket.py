"""WebSockets without sockets: the engine fed bytes and the handshake functions
(framework.web.wsengine), and WebSocketHandler behind the HTTP protocol on a fake
transport and a virtual clock (the client is wsproto's, so every frame on the wire is
one a real client makes)."""
import asyncio
import tracemalloc

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping, Pong,
                            RejectConnection, RejectData, Request, TextMessage)
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol

from framework import App, RequestHandler
from framework.web.httputil import HTTPHeaders
from framework.web.websocket import WebSocketHandler
from framework.web.wsengine import (Closed, Message, WebSocketClosedError, WebSocketEngine,
                                    accept_response, handshake_error)
from framework.web.wsengine import Pong as EnginePong

from .fakes import FakeTransport, Harness

MiB = 1 << 20


# ---- the engine --------------------------------------------------------------------------------
def client():
    return Connection(ConnectionType.CLIENT)


def feed(engine, data):
    return engine.receive(bytes(data))


def received(cl, engine):
    """Events the client gets from what the engine queued."""
    cl.receive_data(engine.data_to_send())
    return list(cl.events())


def test_engine_text_and_binary_messages():
    e, cl = WebSocketEngine(), client()
    ev = feed(e, cl.send(TextMessage("héllo")) + cl.send(BytesMessage(b"\x00\xff")))
    assert [(type(x), x.data) for x in ev] == [(Message, "héllo"), (Message, b"\x00\xff")]
    assert type(ev[1].data) is bytes
    e.send("back")
    e.send(b"bin")
    got = received(cl, e)
    assert [(type(x), x.data) for x in got] == [(TextMessage, "back"), (BytesMessage, b"bin")]


def test_engine_assembles_fragments_and_partial_frames():
    e, cl = WebSocketEngine(), client()
    wire = (cl.send(TextMessage("ab", message_finished=False))
            + cl.send(Ping(b"mid"))          # a control frame between fragments
            + cl.send(TextMessage("cd", message_finished=False))
            + cl.send(TextMessage("ef")))
    events = []
    for i in range(len(wire)):               # one byte at a time
        events += feed(e, wire[i:i + 1])
    kinds = [(type(x).__name__, getattr(x, "data", getattr(x, "payload", None)))
             for x in events]
    assert kinds == [("Ping", b"mid"), ("Message", "abcdef")]
    assert [type(x) for x in received(cl, e)] == [Pong]      # the ping answered


def test_engine_peer_close_is_echoed():
    e, cl = WebSocketEngine(), client()
    ev = feed(e, cl.send(CloseConnection(code=4001, reason="bye")))
    assert [(type(x), x.code, x.reason) for x in ev] == [(Closed, 4001, "bye")]
    assert e.done and e.close_code == 4001
    (echo,) = received(cl, e)
    assert isinstance(echo, CloseConnection) and echo.code == 4001
    with pytest.raises(WebSocketClosedError):
        e.send("late")
    assert feed(e, b"more") == []


def test_engine_local_close_waits_for_the_reply_and_drops_messages_meanwhile():
    e, cl = WebSocketEngine(), client()
    e.close(1001, "going")
    in_flight = cl.send(TextMessage("in flight"))     # sent before our Close arrived
    (ev,) = received(cl, e)
    assert ev.code == 1001 and ev.reason == "going"
    assert e.closing and not e.done
    data = in_flight + cl.send(ev.response())
    assert [(type(x), x.code) for x in feed(e, data)] == [(Closed, 1001)]
    assert e.done


def test_engine_message_too_big_closes_1009_before_it_is_whole():
    e, cl = WebSocketEngine(max_message_size=1000), client()
    assert feed(e, cl.send(BytesMessage(b"x" * 1000))) != []      # at the limit: fine
    frame = cl.send(BytesMessage(b"y" * 5000))
    assert feed(e, frame[:1500]) == []                             # cut at 1001 bytes
    (ev,) = received(cl, e)
    assert isinstance(ev, CloseConnection) and ev.code == 1009
    # fragments count together
    e, cl = WebSocketEngine(max_message_size=1000), client()
    feed(e, cl.send(BytesMessage(b"a" * 600, message_finished=False)))
    feed(e, cl.send(BytesMessage(b"b" * 600)))
    assert [x.code for x in received(cl, e)] == [1009]


def test_engine_fails_a_broken_stream():
    e, cl = WebSocketEngine(), client()
    wire = bytearray(cl.send(TextMessage("ok")))
    bad = FrameProtocol(True, [])
    frame = bytearray(bad.send_data(b"\xff\xfe", True))
    frame[0] = 0x81                           # claims text: invalid UTF-8
    ev = feed(e, bytes(wire) + bytes(frame))
    assert [type(x) for x in ev] == [Message, Closed] and ev[1].code is None
    assert [x.code for x in received(cl, e)] == [1007]
    assert e.done


def test_engine_pong_event_and_permessage_deflate():
    server_ext, client_ext = PerMessageDeflate(), PerMessageDeflate()
    offer = client_ext.offer()
    client_ext.finalize(server_ext.accept(offer if isinstance(offer, str) else ""))
    e = WebSocketEngine([server_ext])
    cl = Connection(ConnectionType.CLIENT, [client_ext])
    text = "compress me " * 1000
    wire = cl.send(TextMessage(text))
    assert len(wire) < len(text) // 10
    assert [x.data for x in feed(e, wire)] == [text]
    e.send(text)
    out = e.data_to_send()
    assert len(out) < len(text) // 10
    cl.receive_data(out)
    assert [x.data for x in cl.events()] == [text]
    assert [type(x) for x in feed(e, cl.send(Pong(b"p")))] == [EnginePong]


def test_engine_a_deflate_bomb_is_1009_before_it_inflates():
    h = headers(**{"Sec-WebSocket-Extensions": "permessage-deflate"})
    _, (server_ext,) = accept_response(h, None, True, max_message_size=MiB)
    client_ext = PerMessageDeflate()
    client_ext.finalize(server_ext.accept("permessage-deflate") or "")
    e = WebSocketEngine([server_ext], max_message_size=MiB)
    cl = Connection(ConnectionType.CLIENT, [client_ext])
    wire = cl.send(BytesMessage(bytes(64 * MiB)))         # 64 MiB of zeros: ~64 KiB sent
    assert len(wire) < MiB // 8
    tracemalloc.start()
    try:
        events = feed(e, wire)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB                     # never the 64 MiB the frame inflates to
    assert [type(x) for x in events] == [Closed]
    assert [x.code for x in received(cl, e)] == [1009]


# ---- the handshake functions ------------------------------------------------------------------
def headers(**kw):
    h = HTTPHeaders()
    base = {"Upgrade": "websocket", "Connection": "keep-alive, Upgrade",
            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    base.update(kw)
    for k, v in base.items():
        if v is not None:
            h[k] = v
    return h


def test_handshake_validation():
    assert handshake_error(headers()) is None
    assert handshake_error(headers(Upgrade="h2c"))[0] == 400
    assert handshake_error(headers(Connection="close"))[0] == 400
    assert handshake_error(headers(**{"Sec-WebSocket-Key": "short"}))[0] == 400
    status, _, extra = handshake_error(headers(**{"Sec-WebSocket-Version": "8"}))
    assert status == 426 and extra == {"Sec-WebSocket-Version": "13"}


def test_accept_response_rfc_example_subprotocol_and_deflate():
    h = headers(**{"Sec-WebSocket-Protocol": "chat, superchat",
                   "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"})
    head, ext = accept_response(h, "superchat", True, [("X-A", "1")], b"Server: t\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 101 Switching Protocols" and lines[1] == b"Server: t"
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in lines   # RFC 6455 1.3
    assert b"Sec-WebSocket-Protocol: superchat" in lines and b"X-A: 1" in lines
    assert any(line.startswith(b"Sec-WebSocket-Extensions: permessage-deflate")
               for line in lines)
    assert len(ext) == 1 and head.endswith(b"\r\n\r\n")
    head, ext = accept_response(h, None, False)
    assert b"Sec-WebSocket-Extensions" not in head and ext == []
    assert b"Sec-WebSocket-Protocol" not in head
    with pytest.raises(ValueError):
        accept_response(h, "other")


# ---- WebSocketHandler behind the HTTP protocol -----------------------------------------------
class WsTransport(FakeTransport):
    """The fake transport plus what an upgraded connection uses: set_protocol, and
    connection_lost delivered at a later turn (CONTRACTS section 5)."""

    def __init__(self, loop):
        super().__init__()
        self.loop = loop
        self.protocol = None
        self.lost = False

    def set_protocol(self, protocol):
        self.protocol = protocol

    def get_protocol(self):
        return self.protocol

    def write(self, data):
        if not self.closed:
            self.out += data

    def close(self):
        if not self.closed:
            super().close()
            self.loop.call_soon(self._lose, None)

    def abort(self):
        if not self.closed:
            super().abort()
            self.loop.call_soon(self._lose, None)

    def vanish(self):
        """The peer is gone (an RST): the protocol hears connection_lost."""
        self.closed = True
        self.loop.call_soon(self._lose, ConnectionResetError())

    def _lose(self, exc):
        if not self.lost:
            self.lost = True
            self.protocol.connection_lost(exc)


EVENTS = []


class Echo(WebSocketHandler):
    ping_interval = None

    def open(self, name):
        EVENTS.append(("open", name))

    def on_message(self, message):
        if message == "close-me":
            self.close(4000, "asked")
        else:
            self.write_message(message, binary=isinstance(message, bytes))

    def on_close(self):
        EVENTS.append(("close", self.close_code, self.close_reason))

    def select_subprotocol(self, subprotocols):
        return "b" if "b" in subprotocols else None


class SlowEcho(WebSocketHandler):
    ping_interval = None

    async def on_message(self, message):
        await asyncio.sleep(0.01 if message == "first" else 0)
        self.write_message(message)

    def on_close(self):
        EVENTS.append(("close", self.close_code, self.close_reason))


class KeepAlive(WebSocketHandler):
    ping_interval = 1.0
    ping_timeout = 0.5

    def on_message(self, message):
        pass

    def on_close(self):
        EVENTS.append(("close", self.close_code, self.close_reason))


class SmallKeepAlive(KeepAlive):
    max_message_size = 100


class LateTaker(RequestHandler):
    """Takes the connection over only after an await (an async prepare, say)."""
    taken = []

    async def get(self):
        await asyncio.sleep(0.1)
        LateTaker.taken.append(self.request.connection.detach())
        self._finished = True


class Plain(RequestHandler):
    def get(self):
        self.write("plain")


@pytest.fixture
def h():
    EVENTS.clear()
    app = App([("/ws/{name}", Echo), ("/slow", SlowEcho), ("/ka", KeepAlive), ("/ka-small", SmallKeepAlive),
               ("/plain", Plain), ("/late", LateTaker)])
    return Harness(app)


def open_ws(h, path, first=b"", subprotocols=(), extensions=()):
    """Connect and handshake; ``first``: client bytes sent in the same packet as the
    request. Returns (client WSConnection, transport, the 101's bytes)."""
    proto = h.factories[h.port](h.ctx)
    t = WsTransport(h.loop)
    t.protocol = proto
    proto.connection_made(t)
    cl = WSConnection(ConnectionType.CLIENT)
    req = cl.send(Request(host="198.18.5.1", target=path, subprotocols=list(subprotocols),
                          extensions=list(extensions)))
    proto.data_received(req + first)
    h.run()
    out = t.take()
    cl.receive_data(out)
    events = list(cl.events())
    return cl, t, out, events


def pump(h, cl, t, data=b""):
    """Send ``data`` to the server; the events the client receives back."""
    if data:
        t.protocol.data_received(data)
    h.run()
    out = t.take()
    if out:
        cl.receive_data(out)
    return list(cl.events())


def test_handler_echo_with_first_frame_in_the_request_packet(h):
    # a client may send its first frame right after the request (llhttp stops at the
    # head; the rest is the WebSocket's)
    framer = Connection(ConnectionType.CLIENT)
    cl, t, head, events = open_ws(h, "/ws/room1", first=framer.send(TextMessage("early")))
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\nServer: framework\r\n")
    assert isinstance(events[0], AcceptConnection)
    assert [e.data for e in events[1:]] == ["early"]
    assert EVENTS == [("open", "room1")]
    got = pump(h, cl, t, cl.send(BytesMessage(b"\x01\x02")) + cl.send(TextMessage("x")))
    assert [(type(e), e.data) for e in got] == [(BytesMessage, b"\x01\x02"),
                                                (TextMessage, "x")]
    assert t.protocol is not None and type(t.protocol).__name__ == "WebSocketProtocol"


def test_handler_client_initiated_close(h):
    cl, t, _, _ = open_ws(h, "/ws/a")
    got = pump(h, cl, t, cl.send(CloseConnection(code=1000, reason="done")))
    assert [(type(e), e.code) for e in got] == [(CloseConnection, 1000)]
    h.run()
    assert t.closed and not t.aborted and t.lost
    assert EVENTS[-1] == ("close", 1000, "done")


def test_handler_server_initiated_close(h):
    cl, t, _, _ = open_ws(h, "/ws/a")
    (ev,) = pump(h, cl, t, cl.send(TextMessage("close-me")))
    assert isinstance(ev, CloseConnection) and (ev.code, ev.reason) == (4000, "asked")
    assert not t.closed                       # waiting for the client's Close
    pump(h, cl, t, cl.send(ev.response()))
    h.run()
    assert t.closed and EVENTS[-1] == ("close", 4000, "asked")


def test_handler_close_timeout_aborts(h):
    cl, t, _, _ = open_ws(h, "/ws/a")
    pump(h, cl, t, cl.send(TextMessage("close-me")))
    h.run(4.9)
    assert not t.closed
    h.run(0.2)
    assert t.aborted and EVENTS[-1] == ("close", None, None)


def test_handler_vanishing_client_mid_message_closes_once(h):
    cl, t, _, _ = open_ws(h, "/ka")
    frame = cl.send(BytesMessage(b"z" * 100000))
    pump(h, cl, t, frame[:30000])
    t.vanish()
    h.run()
    assert EVENTS.count(("close", None, None)) == 1
    ws_proto = t.protocol
    assert ws_proto.listener is None and ws_proto.transport is None   # nothing held
    assert ws_proto._timer is None and ws_proto.engine._parts is None
    assert not [x for x in h.loop._scheduled if not x.cancelled()
                and "WebSocket" in repr(x)]           # the keep-alive timer is gone


def test_handler_subprotocol_and_deflate(h):
    cl, t, head, events = open_ws(h, "/ws/a", subprotocols=["a", "b"],
                                  extensions=[PerMessageDeflate()])
    acc = events[0]
    assert isinstance(acc, AcceptConnection) and acc.subprotocol == "b"
    assert b"permessage-deflate" in head and [e.name for e in acc.extensions] == \
        ["permessage-deflate"]
    text = "z" * 50000
    data = cl.send(TextMessage(text))
    assert len(data) < 1000
    t.protocol.data_received(data)
    h.run()
    out = t.take()
    assert len(out) < 1000
    cl.receive_data(out)
    assert [e.data for e in cl.events()] == [text]


def test_handler_async_on_message_keeps_order(h):
    cl, t, _, _ = open_ws(h, "/slow")
    t.protocol.data_received(cl.send(TextMessage("first")) + cl.send(TextMessage("second")))
    h.run(0.05)
    cl.receive_data(t.take())
    assert [e.data for e in cl.events()] == ["first", "second"]


def test_handler_keepalive_ping_and_timeout(h):
    cl, t, _, _ = open_ws(h, "/ka")
    h.run(1.01)
    (ping,) = pump(h, cl, t)
    assert isinstance(ping, Ping)
    pump(h, cl, t, cl.send(ping.response()))   # answered: no timeout
    h.run(0.9)
    assert not t.closed
    h.run(0.2)                                 # the second ping, never answered
    (ping2,) = pump(h, cl, t)
    assert isinstance(ping2, Ping)
    h.run(0.6)
    assert t.closed                            # Close 1011, then FIN
    cl.receive_data(t.take())
    assert [(type(e), e.code) for e in cl.events()] == [(CloseConnection, 1011)]
    h.run()
    assert EVENTS[-1] == ("close", None, None)


def test_handler_1009_then_the_close_timeout_even_with_keepalive(h):
    cl, t, _, _ = open_ws(h, "/ka-small")
    (ev,) = pump(h, cl, t, cl.send(BytesMessage(b"b" * 101)))
    assert isinstance(ev, CloseConnection) and ev.code == 1009
    h.run(4.9)                                 # no reply; no keep-alive ping either
    assert not t.closed and t.take() == b""
    h.run(0.2)
    assert t.aborted and EVENTS[-1] == ("close", None, None)


def test_handler_rejections_and_plain_routes(h):
    out, _, t = h.request(b"GET /ws/a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
    out, _, t = h.request(b"GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Version: 7\r\n"
                          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 426 ") and b"sec-websocket-version: 13" in out.lower()
    assert t.closed
    out, _, t = h.request(b"GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                          b"Origin: http://evil.example\r\n"
                          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 403 ")
    # an upgrade to something else on a plain route: answered, then closed (as before)
    out, _, t = h.request(b"GET /plain HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n"
                          b"Connection: Upgrade\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"plain") and t.closed
    assert not any(e[0] == "open" for e in EVENTS)


def test_wsproto_client_sees_a_rejection_as_a_rejection(h):
    proto = h.factories[h.port](h.ctx)
    t = WsTransport(h.loop)
    proto.connection_made(t)
    cl = WSConnection(ConnectionType.CLIENT)
    proto.data_received(cl.send(Request(host="x", target="/plain")))
    h.run()
    cl.receive_data(t.take())
    kinds = [type(e) for e in cl.events()]
    assert kinds[0] is RejectConnection and RejectData in kinds


def test_detach_hands_over_every_byte_after_the_head(h):
    LateTaker.taken.clear()
    proto, t = h.connect()
    head = (b"GET /late HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n")
    proto.data_received(head + b"first")
    proto.data_received(b"-second")
    proto.data_received(b"x" * 70000)          # past 64 KiB held: reading pauses
    assert t.paused
    h.run(0.2)
    (transport, rest), = LateTaker.taken
    assert transport is t and rest == b"first-second" + b"x" * 70000
    assert not t.paused and t.take() == b"" and not t.closed
    proto.data_received(b"ignored")            # the HTTP protocol has let go
    proto.connection_lost(None)
    assert t.take() == b""
    assert proto.detach() is None
