"""The ASGI websocket scope (framework.web.asgi_ws) behind AsgiApp, on fake transports
and a virtual clock; the client is wsproto's."""
import logging

import pytest

from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection,
                            RejectConnection, Request, TextMessage)
from wsproto.extensions import PerMessageDeflate

from framework.web.asgi import AsgiApp
from framework.web.serving import WebOptions

from .fakes import Harness
from .test_websocket import WsTransport

SEEN = []


async def echo_app(scope, receive, send):
    """Raw ASGI echo: accepts (with the client's first subprotocol), echoes messages,
    closes 4000 on "bye", records the scope and the disconnect."""
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            await send({"type": m["type"] + ".complete"})
            if m["type"] == "lifespan.shutdown":
                return
    SEEN.append(scope)
    assert (await receive()) == {"type": "websocket.connect"}
    if scope["path"] == "/r/deny":
        await send({"type": "websocket.close"})
        return
    if scope["path"] == "/r/fail-early":
        raise RuntimeError("boom")
    if scope["path"] == "/r/denial":
        assert "websocket.http.response" in scope["extensions"]
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"x-why", b"token")]})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})
        return
    subs = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": subs[0] if subs else None,
                "headers": [(b"x-asgi", b"yes")]})
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            SEEN.append(m)
            return
        if m.get("text") == "bye":
            await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
            SEEN.append(await receive())        # at once (as uvicorn), not after the echo
            return
        if m.get("text") == "fail":
            raise RuntimeError("boom after accept")
        await send({"type": "websocket.send", **{k: v for k, v in m.items() if k != "type"}})


OPEN = []


@pytest.fixture(autouse=True)
def _cleanup():
    """Every connection and the lifespan end with the test (no task left pending)."""
    yield
    for h, t in OPEN:
        if not t.lost:
            t.vanish()
        h.run()
    for h in {id(h): h for h, _ in OPEN}.values():
        h.loop.run_until_complete(h.app.stop_shard(h.ctx))
        h.run()
    OPEN.clear()


def harness():
    SEEN.clear()
    h = Harness(AsgiApp(echo_app, WebOptions(root_path="/r")))
    return h


def connect(h, path, first=b"", subprotocols=(), extensions=()):
    proto = h.factories[h.port](h.ctx)
    t = WsTransport(h.loop)
    t.protocol = proto
    proto.connection_made(t)
    OPEN.append((h, t))
    cl = WSConnection(ConnectionType.CLIENT)
    proto.data_received(cl.send(Request(host="h", target=path, subprotocols=list(subprotocols),
                                        extensions=list(extensions))) + first)
    h.run()
    cl.receive_data(t.take())
    return cl, t, list(cl.events())


def exchange(h, cl, t, data):
    t.protocol.data_received(data)
    h.run()
    out = t.take()
    if out:
        cl.receive_data(out)
    return list(cl.events())


def test_scope_and_echo_with_the_first_frame_in_the_request_packet():
    h = harness()
    cl, t, events = connect(h, "/a%20b?q=1", first=Connection(ConnectionType.CLIENT).send(
        TextMessage("early")), subprotocols=["chat", "x"], extensions=[PerMessageDeflate()])
    acc = events[0]
    assert isinstance(acc, AcceptConnection) and acc.subprotocol == "chat"
    assert (b"x-asgi", b"yes") in acc.extra_headers
    assert [e.name for e in acc.extensions] == ["permessage-deflate"]
    assert [e.data for e in events[1:]] == ["early"]
    s = SEEN[0]
    assert s["type"] == "websocket" and s["scheme"] == "ws" and "method" not in s
    assert s["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert (s["path"], s["raw_path"], s["query_string"], s["root_path"]) == \
        ("/r/a b", b"/r/a%20b", b"q=1", "/r")
    assert s["subprotocols"] == ["chat", "x"] and s["client"] == ("198.18.5.2", 40000)
    assert (b"upgrade", b"websocket") in s["headers"] and s["state"] == {}
    got = exchange(h, cl, t, cl.send(BytesMessage(b"\x00" * 70000)) + cl.send(TextMessage("t")))
    assert [(type(e), len(e.data)) for e in got] == [(BytesMessage, 70000), (TextMessage, 1)]


def test_app_close_handshake_and_client_close_code():
    h = harness()
    cl, t, _ = connect(h, "/x")
    (ev,) = exchange(h, cl, t, cl.send(TextMessage("bye")))
    assert isinstance(ev, CloseConnection) and (ev.code, ev.reason) == (4000, "bye")
    assert SEEN[-1] == {"type": "websocket.disconnect", "code": 4000, "reason": "bye"}
    assert not t.closed                       # the handshake goes on without the app
    exchange(h, cl, t, cl.send(ev.response()))
    h.run()
    assert t.closed
    cl, t, _ = connect(h, "/x")
    exchange(h, cl, t, cl.send(CloseConnection(code=1001, reason="tab closed")))
    h.run()
    assert SEEN[-1] == {"type": "websocket.disconnect", "code": 1001, "reason": "tab closed"}


def test_close_before_accept_is_403_and_errors_are_500_or_1011(caplog):
    h = harness()
    cl, t, events = connect(h, "/deny")
    assert isinstance(events[0], RejectConnection) and events[0].status_code == 403
    h.run()
    assert t.closed
    with caplog.at_level(logging.ERROR, logger="framework.asgi"):
        cl, t, events = connect(h, "/fail-early")
        assert isinstance(events[0], RejectConnection) and events[0].status_code == 500
        cl, t, _ = connect(h, "/x")
        (ev,) = exchange(h, cl, t, cl.send(TextMessage("fail")))
        assert isinstance(ev, CloseConnection) and ev.code == 1011
    assert "boom after accept" in caplog.text


def test_vanishing_client_gives_one_disconnect():
    h = harness()
    cl, t, _ = connect(h, "/x")
    frame = cl.send(BytesMessage(b"q" * 50000))
    exchange(h, cl, t, frame[:10000])
    t.vanish()
    h.run()
    assert [m for m in SEEN if isinstance(m, dict) and m.get("type") ==
            "websocket.disconnect"] == [{"type": "websocket.disconnect", "code": 1006,
                                         "reason": ""}]


def test_denial_response_extension():
    h = harness()
    cl, t, events = connect(h, "/denial")
    rej = events[0]
    assert isinstance(rej, RejectConnection) and rej.status_code == 401
    assert (b"x-why", b"token") in rej.headers
    assert b"".join(e.data for e in events[1:]) == b"no entry"
    h.run()
    assert t.closed
