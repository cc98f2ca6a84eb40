"""ASGI 3 apps on our HTTP/1.1 connection (framework.web.asgi), through the real protocol
on fake transports and a virtual clock (tests/web/fakes.py): the scope, request bodies
in events, streamed responses, disconnects, errors, lifespan and its state."""
import asyncio
import logging
from types import SimpleNamespace

import pytest

from framework.web.asgi import AsgiApp, http_scope
from framework.web.lifespan import StartupFailed
from framework.web.serving import WebOptions, build_app
from framework.web.testing import TestClient

from .fakes import Harness, parse_responses


def asgi(handler, lifespan=None):
    """An ASGI app: ``handler(scope, receive, send)`` for HTTP, ``lifespan`` (or a
    refusal) for the lifespan scope."""
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            if lifespan is None:
                raise RuntimeError("no lifespan here")
            return await lifespan(scope, receive, send)
        return await handler(scope, receive, send)
    return app


async def read_body(receive, events=None):
    body = b""
    while True:
        m = await receive()
        if events is not None:
            events.append(m)
        assert m["type"] == "http.request", m
        body += m["body"]
        if not m["more_body"]:
            return body


def respond(status=200, body=b"ok", headers=((b"content-type", b"text/plain"),)):
    async def handler(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        await send({"type": "http.response.body", "body": body})
    return handler


def test_scope_fields_as_uvicorn():
    seen = []

    async def handler(scope, receive, send):
        seen.append(scope)
        await respond()(scope, receive, send)

    h = Harness(AsgiApp(asgi(handler), WebOptions(root_path="/mnt")))
    out, _, _ = h.request(b"GET /a%20b/%C3%A9t%C3%A9?x=1&y=%20 HTTP/1.1\r\nHost: h\r\n"
                          b"X-Dup: 1\r\nx-dup: 2\r\nCookie: c=1 \r\n\r\n")
    assert parse_responses(out)[0][0] == 200
    s = seen[0]
    assert s["type"] == "http" and s["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert s["http_version"] == "1.1" and s["method"] == "GET" and s["scheme"] == "http"
    assert s["path"] == "/mnt/a b/été" and s["raw_path"] == b"/mnt/a%20b/%C3%A9t%C3%A9"
    assert s["root_path"] == "/mnt" and s["query_string"] == b"x=1&y=%20"
    # lower-cased bytes, order and repeats kept, trailing whitespace off the values
    assert s["headers"] == [(b"host", b"h"), (b"x-dup", b"1"), (b"x-dup", b"2"),
                            (b"cookie", b"c=1")]
    assert s["client"] == ("198.18.5.2", 40000) and s["server"] == ("198.18.5.1", 8080)
    assert s["state"] == {}
    out, _, _ = h.request(b"GET / HTTP/1.0\r\n\r\n")
    assert seen[1]["http_version"] == "1.0" and seen[1]["path"] == "/mnt/"


def test_scheme_https_with_a_certificate_and_behind_a_trusted_proxy():
    class Req:
        path, query, version, method, raw_headers = "/", "", "HTTP/1.1", "GET", []
        remote_ip, protocol = None, "http"

    class Conn:
        transport = None
        shared = SimpleNamespace(config=SimpleNamespace(trusted_proxies=None))
    assert http_scope(Req, Conn, WebOptions(certfile="c.pem"), {})["scheme"] == "https"
    assert http_scope(Req, Conn, WebOptions(), {})["scheme"] == "http"

    seen = []

    async def handler(scope, receive, send):
        seen.append(scope)
        await respond()(scope, receive, send)

    opts = WebOptions(forwarded_allow_ips="198.18.5.2")
    h = Harness(build_app(asgi(handler), opts))
    h.request(b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.7\r\n"
              b"X-Forwarded-Proto: https\r\n\r\n")
    assert seen[0]["scheme"] == "https" and seen[0]["client"] == ("203.0.113.7", 0)


def test_any_method_and_head():
    async def handler(scope, receive, send):
        await respond(body=scope["method"].encode())(scope, receive, send)

    h = Harness(AsgiApp(asgi(handler)))
    out, _, _ = h.request(b"PROPFIND /dav HTTP/1.1\r\nHost: h\r\n\r\n")
    assert parse_responses(out)[0][2] == b"PROPFIND"
    out, _, _ = h.request(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 4\r\n" in out
    assert out.endswith(b"\r\n\r\n")        # HEAD: the headers of a GET, no body


def test_body_in_chunks_with_more_body_and_flow_control():
    events = []
    done = []

    async def handler(scope, receive, send):
        await asyncio.sleep(1)              # not reading yet: the body piles up
        body = await read_body(receive, events)
        done.append(body)
        await respond(body=b"%d" % len(body))(scope, receive, send)

    h = Harness(AsgiApp(asgi(handler)))
    proto, t = h.connect()
    n = 600_000
    proto.data_received(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % n)
    for _ in range(6):
        proto.data_received(b"x" * (n // 6))
        h.run()
    assert t.paused                         # over the high-water mark unread: pause
    h.run(2.0)
    assert done == [b"x" * n] and not t.paused
    assert len(events) >= 2 and all(e["more_body"] for e in events[:-1])
    assert not events[-1]["more_body"]
    assert parse_responses(t.take())[0][2] == b"%d" % n


def test_a_body_in_one_piece_is_one_event():
    events = []

    async def handler(scope, receive, send):
        await read_body(receive, events)
        await respond()(scope, receive, send)

    TestClient(AsgiApp(asgi(handler))).post("/", body=b"hello")
    assert events == [{"type": "http.request", "body": b"hello", "more_body": False}]


def test_streamed_response_chunked_and_content_length():
    async def chunked(scope, receive, send):
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"x-a", b"1"), (b"set-cookie", b"a=1"),
                                (b"set-cookie", b"b=2")]})
        for part in (b"one ", b"two ", b""):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"three"})

    h = Harness(AsgiApp(asgi(chunked)))
    out, _, _ = h.request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    status, headers, body = parse_responses(out)[0]
    assert status == 201 and body == b"one two three"
    assert headers["transfer-encoding"] == "chunked" and "content-type" not in headers
    assert headers["set-cookie"] == "a=1, b=2" and out.count(b"set-cookie") == 2

    async def sized(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"6"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})

    h = Harness(AsgiApp(asgi(sized)))
    out, _, t = h.request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    status, headers, body = parse_responses(out)[0]
    assert body == b"abcdef" and headers["content-length"] == "6"
    assert "transfer-encoding" not in headers and headers["connection"] == "close"
    assert t.closed                                 # the app's Connection: close


def test_head_flushed_when_the_app_waits_before_its_body():
    async def slow(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(5)
        await send({"type": "http.response.body", "body": b"late"})

    h = Harness(AsgiApp(asgi(slow)))
    proto, t = h.connect()
    proto.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    h.run(1.0)
    assert t.out.startswith(b"HTTP/1.1 200 OK\r\n") and b"chunked" in t.out
    h.run(5.0)
    assert parse_responses(t.take())[0][2] == b"late"


def test_pipelined_requests_answered_in_order():
    async def handler(scope, receive, send):
        await read_body(receive)
        await asyncio.sleep(0.5 if scope["path"] == "/1" else 0)
        await respond(body=scope["path"].encode())(scope, receive, send)

    h = Harness(AsgiApp(asgi(handler)))
    proto, t = h.connect()
    proto.data_received(b"".join(b"POST /%d HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n"
                                 b"x" % i for i in (1, 2, 3)))
    h.run(1.0)
    assert [r[2] for r in parse_responses(t.take())] == [b"/1", b"/2", b"/3"]


def test_a_pipelined_upload_waits_unread_not_buffered():
    # no body limit for ASGI apps: a big body queued behind a slow request must not pile
    # up in memory; it waits in its stream, reading paused, until its turn
    got = []

    async def handler(scope, receive, send):
        if scope["path"] == "/slow":
            await asyncio.sleep(5)
        got.append(len(await read_body(receive)))
        await respond(body=scope["path"].encode())(scope, receive, send)

    h = Harness(AsgiApp(asgi(handler)))
    proto, t = h.connect()
    n = 4 << 20
    proto.data_received(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"
                        b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % n)
    sent = 0
    while not t.paused and sent < n:
        proto.data_received(b"x" * 65536)
        sent += 65536
        h.run()
    assert t.paused and sent <= 1 << 20      # a client reading nothing stops being read
    h.run(6.0)                                # /slow answers; /up reads its body
    while sent < n:
        assert not t.paused
        proto.data_received(b"x" * 65536)
        sent += 65536
        h.run()
    h.run()
    assert got == [0, n]
    assert [r[2] for r in parse_responses(t.take())] == [b"/slow", b"/up"]


def test_disconnect_after_the_body_and_at_close():
    got = []

    async def handler(scope, receive, send):
        await read_body(receive)
        got.append(await receive())         # waits until the client goes away

    h = Harness(AsgiApp(asgi(handler)))
    proto, t = h.connect()
    proto.data_received(b"GET /poll HTTP/1.1\r\nHost: h\r\n\r\n")
    h.run(10.0)
    assert got == []
    proto.connection_lost(None)
    h.run()
    assert got == [{"type": "http.disconnect"}]

    # a client that closes (EOF) while the app waits: http.disconnect, as uvicorn; what
    # the app still sends goes out (a half-closed client reads on)
    async def poll(scope, receive, send):
        await read_body(receive)
        got.append(await receive())
        await respond(body=b"bye")(scope, receive, send)

    h = Harness(AsgiApp(asgi(poll)))
    proto, t = h.connect()
    proto.data_received(b"GET /poll HTTP/1.1\r\nHost: h\r\n\r\n")
    h.run(10.0)
    assert len(got) == 1
    assert proto.eof_received() is True
    h.run()
    assert got[1] == {"type": "http.disconnect"}
    assert parse_responses(t.take())[0][2] == b"bye" and t.closed
    del got[:]

    async def upload(scope, receive, send):
        got.append(await receive())
        got.append(await receive())         # the client left mid-body

    h = Harness(AsgiApp(asgi(upload)))
    proto, t = h.connect()
    proto.data_received(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc")
    h.run()
    proto.connection_lost(ConnectionResetError())
    h.run()
    assert got[0]["body"] == b"abc" and got[0]["more_body"] is True
    assert got[1] == {"type": "http.disconnect"}


def test_send_after_completion_raises_in_the_app(caplog):
    raised = []

    async def handler(scope, receive, send):
        await respond()(scope, receive, send)
        try:
            await send({"type": "http.response.body", "body": b"more"})
        except RuntimeError as e:
            raised.append(str(e))
        assert await receive() == {"type": "http.disconnect"}

    h = Harness(AsgiApp(asgi(handler)))
    out, _, t = h.request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert parse_responses(out)[0][2] == b"ok" and not t.closed
    assert raised and "after the response completed" in raised[0]


def test_exception_before_start_is_a_500_logged_not_sent(caplog):
    async def handler(scope, receive, send):
        raise ValueError("secret detail")

    h = Harness(AsgiApp(asgi(handler)))
    with caplog.at_level(logging.ERROR, logger="framework.asgi"):
        out, _, t = h.request(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    status, headers, body = parse_responses(out)[0]
    assert status == 500 and body == b"Internal Server Error" and b"secret" not in out
    assert headers["connection"] == "close" and t.closed
    rec = [r for r in caplog.records if r.name == "framework.asgi"]
    assert rec and rec[0].exc_info and "secret detail" in str(rec[0].exc_info[1])


def test_exception_after_start_cuts_the_connection(caplog):
    async def handler(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ValueError("half-way")

    h = Harness(AsgiApp(asgi(handler)))
    with caplog.at_level(logging.ERROR, logger="framework.asgi"):
        out, _, t = h.request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert t.aborted and out.startswith(b"HTTP/1.1 200 ") and b"half-way" not in out
    assert not out.endswith(b"0\r\n\r\n")           # the client sees it incomplete
    assert any(r.exc_info for r in caplog.records if r.name == "framework.asgi")


def test_exception_after_a_complete_response_closes_the_connection(caplog):
    # Starlette's error middleware sends its 500, then raises (uvicorn closes then)
    async def handler(scope, receive, send):
        await respond(status=500, body=b"Internal Server Error")(scope, receive, send)
        raise ValueError("after the response")

    h = Harness(AsgiApp(asgi(handler)))
    with caplog.at_level(logging.ERROR, logger="framework.asgi"):
        out, _, t = h.request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert parse_responses(out)[0][2] == b"Internal Server Error"
    assert t.closed and not t.aborted
    assert any(r.exc_info for r in caplog.records if r.name == "framework.asgi")


def test_no_response_is_a_500_and_bad_headers_too(caplog):
    async def nothing(scope, receive, send):
        return None

    out, _, _ = Harness(AsgiApp(asgi(nothing))).request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert parse_responses(out)[0][0] == 500

    injected = respond(headers=[(b"x-a", b"1\r\nSet-Cookie: evil=1")])
    out, _, _ = Harness(AsgiApp(asgi(injected))).request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert parse_responses(out)[0][0] == 500 and b"evil" not in out


def test_body_over_the_limit_is_413_before_the_app():
    called = []

    async def handler(scope, receive, send):
        called.append(1)
        await respond()(scope, receive, send)

    h = Harness(AsgiApp(asgi(handler), max_body_size=10))
    out, _, _ = h.request(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n")
    assert parse_responses(out)[0][0] == 413 and called == []


def test_chunked_body_over_the_limit_is_413_and_a_disconnect_for_the_app():
    got = []

    async def handler(scope, receive, send):
        while True:
            m = await receive()
            got.append(m["type"])
            if m["type"] == "http.disconnect" or not m["more_body"]:
                break
        await respond()(scope, receive, send)      # dropped: the client is answered

    h = Harness(AsgiApp(asgi(handler), max_body_size=10))
    proto, t = h.connect()
    proto.data_received(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"6\r\nabcdef\r\n")
    h.run()
    proto.data_received(b"6\r\nghijkl\r\n0\r\n\r\n")
    h.run()
    assert got[-1] == "http.disconnect"
    responses = parse_responses(t.take())
    assert [r[0] for r in responses] == [413] and t.closed


# ---- lifespan ----------------------------------------------------------------------------
def lifespan_app(events, fail=None, message="db down"):
    async def lifespan(scope, receive, send):
        while True:
            m = await receive()
            events.append(m["type"])
            if m["type"] == "lifespan.startup":
                if fail == "raise":
                    raise RuntimeError("startup exploded")
                if fail == "failed":
                    await send({"type": "lifespan.startup.failed", "message": message})
                    return
                scope["state"]["pool"] = ["conn"]
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def handler(scope, receive, send):
        scope["state"]["mine"] = 1      # a shallow copy: no other request sees it
        await respond(body=repr(sorted(scope["state"])).encode())(scope, receive, send)
    return asgi(handler, lifespan)


def test_lifespan_state_per_request_copy_and_shutdown():
    events = []
    app = AsgiApp(lifespan_app(events), WebOptions(lifespan="on"))
    c = TestClient(app)
    assert events == ["lifespan.startup"]
    assert c.get("/").body == b"['mine', 'pool']"
    assert c.state == {"pool": ["conn"]}        # the request's key stayed in its copy
    c.close()
    assert events == ["lifespan.startup", "lifespan.shutdown"]


def test_lifespan_shutdown_runs_when_the_shard_loop_cancels_its_tasks():
    # ShardLoop._finish cancels every task still running before stop_shard runs
    events = []
    app = AsgiApp(lifespan_app(events), WebOptions(lifespan="on"))
    h = Harness(app)
    tasks = [t for t in asyncio.all_tasks(h.loop) if not t.done()]
    assert tasks
    for t in tasks:
        t.cancel()
    h.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    h.loop.run_until_complete(app.stop_shard(h.ctx))       # nothing left to do: returns
    assert events == ["lifespan.startup", "lifespan.shutdown"]


def test_lifespan_off_never_calls_the_app():
    events = []
    c = TestClient(AsgiApp(lifespan_app(events), WebOptions(lifespan="off")))
    assert c.get("/").body == b"['mine']"
    c.close()
    assert events == []


def test_lifespan_auto_tolerates_an_app_without_it(caplog):
    app = asgi(respond())                  # raises on the lifespan scope
    with caplog.at_level(logging.DEBUG, logger="framework.asgi"):
        c = TestClient(AsgiApp(app, WebOptions(lifespan="auto")))
    assert c.get("/").status == 200
    c.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with pytest.raises(StartupFailed, match="no lifespan here"):
        TestClient(AsgiApp(app, WebOptions(lifespan="on")))
    # an app that ignores scope["type"] (answers the lifespan scope as HTTP) too
    c = TestClient(AsgiApp(respond(), WebOptions(lifespan="auto")))
    assert c.get("/").status == 200
    c.close()


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_lifespan_startup_failed_stops_the_shard(mode):
    with pytest.raises(StartupFailed, match="application startup failed: db down"):
        TestClient(AsgiApp(lifespan_app([], fail="failed"), WebOptions(lifespan=mode)))
    # a traceback as the message (Starlette sends one): its last line names the failure
    tb = "Traceback (most recent call last):\n  File 'x', line 1\nKeyError: 'DB_URL'\n"
    with pytest.raises(StartupFailed, match=r"failed: KeyError: 'DB_URL'$"):
        TestClient(AsgiApp(lifespan_app([], fail="failed", message=tb),
                           WebOptions(lifespan=mode)))


def test_lifespan_on_exception_in_startup_fails():
    with pytest.raises(StartupFailed, match="startup exploded"):
        TestClient(AsgiApp(lifespan_app([], fail="raise"), WebOptions(lifespan="on")))


def test_build_app_detects_asgi_and_starlette_runs():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(request):
        return JSONResponse({"path": request.url.path, "q": request.query_params["q"]})

    app = build_app(Starlette(routes=[Route("/hi/{name}", hello)]), WebOptions())
    assert isinstance(app, AsgiApp)
    r = TestClient(app).get("/hi/x?q=%C3%A9")
    assert r.status == 200 and r.json() == {"path": "/hi/x", "q": "é"}
