"""A Starlette app (starlette_app.py) served by `framework serve` on both stacks answers
every request of a fixed list exactly as uvicorn does (status, headers but Date/Server,
body), and its WebSocket echo, lifespan state and background tasks work."""
import asyncio
import json
import time
import uuid

import httpx
import pytest
import websockets.exceptions
from websockets.sync.client import connect as ws_connect

from .harness import (Req, check_list, client_for, differences, normalise, parse_raw,
                      raw_exchange)
from .starlette_app import LARGE

APP = "starlette_app:app"

REQUESTS = [
    Req("index", "GET", "/", status=200),
    Req("json", "GET", "/json", status=200),
    Req("path param", "GET", "/items/42", status=200),
    Req("path param not an int", "GET", "/items/abc", status=404),
    Req("query percent-encoded", "GET", "/items/7?q=a%20b&q=c+d&x=%E2%9C%93&empty=",
        status=200),
    Req("unicode path", "GET", "/name/caf%C3%A9", status=200),
    Req("unicode path, httpx encodes", "GET", "/name/日本語", status=200),
    Req("encoded slash (path is decoded: no route)", "GET", "/name/a%2Fb", status=404),
    Req("scope", "GET", "/scope/x/y%20z?k=v%26w", status=200),
    Req("scope root", "GET", "/scope/", status=200),
    Req("request headers", "GET", "/headers",
        headers=[("X-One", "1"), ("X-Two", "a, b"), ("Accept-Language", "fr")], status=200),
    Req("repeated and latin-1 request headers", "GET", "/headers",
        headers=[("X-Dup", "1"), ("X-Dup", "2"), ("X-Latin", "caf\xe9".encode("latin-1")),
                 ("X-Empty", "")], status=200),
    Req("repeated, empty, latin-1 and long response headers", "GET", "/odd-headers",
        status=200),
    Req("12 KiB of headers (3 lines of 4 KB: large cookies, a JWT)", "GET", "/state",
        headers=[(f"X-Big-{i}", "v" * 4000) for i in range(3)], status=200),
    Req("post body", "POST", "/echo", headers=[("Content-Type", "application/json")],
        body=json.dumps({"k": "v", "n": [1, 2]}).encode(), status=200),
    Req("put binary body", "PUT", "/echo",
        headers=[("Content-Type", "application/octet-stream")],
        body=bytes(range(256)) * 1000, status=200),
    Req("2 MiB upload", "POST", "/echo", headers=[("Content-Type", "application/x-bin")],
        body=bytes(range(256)) * 8192, status=200),
    Req("post empty body", "POST", "/echo", body=b"", status=200),
    Req("streaming", "GET", "/stream", status=200),
    Req("large", "GET", "/large", status=200),
    Req("head", "HEAD", "/", status=200),
    Req("head large", "HEAD", "/large", status=200),
    Req("not found", "GET", "/nothing/here", status=404),
    Req("method not allowed", "DELETE", "/echo", status=405),
    Req("post to a get route", "POST", "/", body=b"x", status=405),
    Req("cookies", "GET", "/cookies", headers=[("Cookie", "c=3; d=4")], status=201),
    Req("lifespan state", "GET", "/state", status=200),
    Req("a file", "GET", "/file", status=200),
    Req("a file, head", "HEAD", "/file", status=200),
    Req("a file, a range", "GET", "/file", headers=[("Range", "bytes=10-99")], status=206),
    Req("a file, a suffix range", "GET", "/file", headers=[("Range", "bytes=-30")],
        status=206),
    Req("a file, a range past the end", "GET", "/file",
        headers=[("Range", "bytes=999999-")], status=416),
    Req("gzip, sized", "GET", "/gz/large", headers=[("Accept-Encoding", "gzip")], status=200),
    Req("gzip, streamed", "GET", "/gz/stream", headers=[("Accept-Encoding", "gzip")],
        status=200),
    Req("gzip not asked for", "GET", "/gz/json", headers=[("Accept-Encoding", "identity")],
        status=200),
    Req("cors preflight", "OPTIONS", "/cors/echo",
        headers=[("Origin", "https://example.org"), ("Access-Control-Request-Method", "POST"),
                 ("Access-Control-Request-Headers", "X-Custom")], status=200),
    Req("cors preflight refused", "OPTIONS", "/cors/echo",
        headers=[("Origin", "https://evil.example"), ("Access-Control-Request-Method", "PUT")],
        status=400),
    Req("cors simple request", "POST", "/cors/echo",
        headers=[("Origin", "https://example.org"), ("Content-Type", "text/plain")],
        body=b"cross", status=200),
]


def test_same_answers_as_uvicorn(reference, served):
    check_list(reference, served, REQUESTS)


def test_answers_are_what_the_app_says(served):
    """Not only the same as uvicorn: the values the app computes from the request."""
    with client_for(served) as c:
        assert c.get("/").text == "hello\n"
        assert c.get("/items/7?q=a%20b&q=c+d").json() == {
            "id": 7, "query": [["q", "a b"], ["q", "c d"]]}
        assert c.get("/name/caf%C3%A9").text == "café"
        scope = c.get("/scope/x/y%20z?k=v%26w").json()
        assert scope == {
            "type": "http", "asgi": {"version": "3.0", "spec_version": scope["asgi"]
                                     ["spec_version"]},
            "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": "/scope/x/y z", "raw_path": "/scope/x/y%20z", "query_string": "k=v%26w",
            "root_path": "", "has_state": True, "client_is_pair": True,
            "server_is_pair": True}
        r = c.get("/large")
        assert r.content == LARGE and r.headers["content-length"] == str(len(LARGE))
        r = c.get("/stream")
        assert r.text == "".join(f"part {i}\n" for i in range(5))
        assert r.headers["transfer-encoding"] == "chunked"
        assert c.get("/state").json() == {"started": "yes"}


def test_concurrent_clients(served):
    """50 clients at once, each on its own connection, streamed and plain answers mixed:
    every one gets its own complete answer."""
    async def one(i):
        async with httpx.AsyncClient(base_url=served.url, timeout=20) as c:
            path = "/stream" if i % 2 else f"/items/{i}?k={i}"
            r = await c.get(path)
            return r.status_code, r.content

    async def all_of_them():
        return await asyncio.gather(*(one(i) for i in range(50)))
    got = asyncio.run(all_of_them())
    for i, (status, body) in enumerate(got):
        want = ("".join(f"part {j}\n" for j in range(5)).encode() if i % 2 else
                json.dumps({"id": i, "query": [["k", str(i)]]}, separators=(",", ":")).encode())
        assert (status, body) == (200, want), i


@pytest.mark.parametrize("which", ["reference", "served"])
def test_client_gone_mid_stream_ends_the_stream(reference, served, which):
    """A client that leaves a never-ending stream: the app sees http.disconnect (its
    generator is cancelled) on uvicorn and on ours."""
    server = reference if which == "reference" else served
    tag = uuid.uuid4().hex[:8]
    with client_for(server) as c:
        with c.stream("GET", f"/forever?tag={tag}") as r:
            lines = r.iter_lines()
            assert [next(lines) for _ in range(3)] == ["tick"] * 3
    with client_for(server) as c:          # the streaming connection is closed now
        deadline = time.monotonic() + 5
        while tag not in c.get("/streams-ended").json():
            assert time.monotonic() < deadline, "the app never saw the client go"
            time.sleep(0.02)


def test_background_task_runs_after_the_response(served):
    with client_for(served) as c:
        assert c.get("/background?tag=t1").json() == {"queued": "t1"}
        deadline = time.monotonic() + 5
        while "t1" not in c.get("/background/done").json()["done"]:
            assert time.monotonic() < deadline, "the background task never ran"
            time.sleep(0.02)


RAW = [
    # exact bytes on the wire: what httpx would normalise away
    ("raw unicode bytes escaped", b"GET /name/%E2%82%AC%20x HTTP/1.1\r\nHost: h\r\n"
     b"Connection: close\r\n\r\n"),
    ("raw query untouched", b"GET /scope/p?a=%41&b=%2x&c=+ HTTP/1.1\r\nHost: h\r\n"
     b"Connection: close\r\n\r\n"),
    ("raw http/1.0", b"GET /json HTTP/1.0\r\nHost: h\r\n\r\n"),
    ("raw pipelined", b"GET /items/1 HTTP/1.1\r\nHost: h\r\n\r\nGET /items/2 HTTP/1.1\r\n"
     b"Host: h\r\nConnection: close\r\n\r\n"),
    ("raw head of a stream", b"HEAD /stream HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
    ("raw expect 100-continue", b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
     b"Expect: 100-continue\r\nConnection: close\r\n\r\nhello"),
    ("raw pipelined bodies", b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
     b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndefg"),
    ("raw chunked request body", b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: t/x\r\n"
     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
     b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
]


@pytest.mark.parametrize("name,data", RAW, ids=[r[0] for r in RAW])
def test_raw_requests_as_uvicorn(reference, served, name, data):
    head = data.startswith(b"HEAD")
    ref = parse_raw(raw_exchange(reference.host, reference.port, data), head)
    got = parse_raw(raw_exchange(served.host, served.port, data), head)
    assert ref and ref[-1].status == 200, (name, [(r.status, r.body) for r in ref])
    assert [r.status for r in got] == [r.status for r in ref], name
    for i, (r, g) in enumerate(zip(ref, got)):
        assert differences(r, g) == [], f"{name}: response {i + 1}"


MANNERS = [
    # (name, request bytes or parts, raw_exchange options)
    ("a body arriving in pieces", [b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n"
                                   b"Connection: close\r\n\r\n", b"01234", b"56789"],
     {"pause": 0.1}),
    ("a client that half-closes after its request",
     b"GET /json HTTP/1.1\r\nHost: h\r\n\r\n", {"half_close": True}),
    ("a slow reader of 1 MiB", b"GET /large HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
     {"slow_read": True}),
]


@pytest.mark.parametrize("name,data,how", MANNERS, ids=[m[0] for m in MANNERS])
def test_client_manners_as_uvicorn(reference, served, name, data, how):
    ref = parse_raw(raw_exchange(reference.host, reference.port, data, **how))
    got = parse_raw(raw_exchange(served.host, served.port, data, **how))
    assert [r.status for r in ref] == [200], name
    assert [r.status for r in got] == [200], name
    assert differences(ref[0], got[0]) == [], name


def test_http10_keep_alive_as_nginx(reference, served):
    """The one difference allowed: an HTTP/1.0 request asking for keep-alive. uvicorn
    answers and closes; we keep the connection, as nginx does (RFC 9112 9.3 lets a server
    choose). Apart from the Connection header the answers are the same."""
    data = (b"GET /json HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"
            b"GET / HTTP/1.0\r\nHost: h\r\n\r\n")
    ref = parse_raw(raw_exchange(reference.host, reference.port, data, timeout=5))
    got = parse_raw(raw_exchange(served.host, served.port, data, timeout=5))
    assert [r.status for r in ref] == [200]
    assert [r.status for r in got] == [200, 200]
    assert got[0].header("connection") == ["keep-alive"]
    assert got[1].header("connection") == ["close"] and got[1].body == b"hello\n"
    ref[0].headers.remove(("connection", "close"))
    got[0].headers.remove(("connection", "keep-alive"))
    assert differences(ref[0], got[0]) == []


def test_raw_utf8_in_the_request_line_is_a_400(reference, served):
    """Bytes above 0x7f in the request-target are not a valid request (RFC 9112 3.2,
    RFC 3986): 400 and close, from both (the body is each server's own)."""
    data = "GET /name/caf\u00e9 HTTP/1.1\r\nHost: h\r\n\r\n".encode()
    ref = parse_raw(raw_exchange(reference.host, reference.port, data, timeout=5))
    got = parse_raw(raw_exchange(served.host, served.port, data, timeout=5))
    assert [r.status for r in ref] == [400]
    assert [r.status for r in got] == [400]


def test_app_exception_after_the_response_closes_the_connection(reference, served):
    """Starlette's error middleware sends its 500, then raises: the server logs it and
    closes the connection (uvicorn does), the next connection is served as usual."""
    req = b"GET /fail HTTP/1.1\r\nHost: h\r\n\r\n"        # keep-alive asked for
    [ref] = parse_raw(raw_exchange(reference.host, reference.port, req, timeout=5))
    [got] = parse_raw(raw_exchange(served.host, served.port, req, timeout=5))
    assert (ref.status, ref.body) == (500, b"Internal Server Error")
    assert differences(ref, got) == []
    with client_for(served) as c:
        assert c.get("/").text == "hello\n"
    assert "boom (expected by the test)" in served.stderr()


# ---- WebSocket ---------------------------------------------------------------------------
def ws_session(server, app_saw=True):
    """What a websockets client sees of conversations with the echo endpoint (it offers
    permessage-deflate, as by default) and of two refused handshakes. ``app_saw``: also
    ask the app (over HTTP) which close codes it saw; with one worker only (the list is
    per worker)."""
    seen = []
    try:
        _ws_session(server, seen, app_saw)
    except Exception as e:
        raise AssertionError(f"{server.stack}: {e!r} after {seen}\nlog (end):\n"
                             f"{server.stderr()[-1500:]}") from e
    return seen


def _ws_session(server, seen, app_saw):
    if app_saw:
        with client_for(server) as c:
            closes_before = len(c.get("/ws-closes").json())   # earlier sessions'
    tls = getattr(server, "tls", None)
    base = f"{'wss' if tls else 'ws'}://{server.host}:{server.port}"
    kw = {"open_timeout": 10, "ssl": tls.client_context} if tls else {"open_timeout": 10}
    url = base + "/ws"
    with ws_connect(url, subprotocols=["chat", "other"], max_size=None, **kw) as ws:
        seen.append(("subprotocol", ws.subprotocol))
        # the 101's headers; Sec-WebSocket-Accept follows the client's random key (and
        # the client checked it); of an extension only its name: the parameters are the
        # WebSocket library's choice (RFC 7692 lets the server pick its window bits:
        # uvicorn's websockets says 12, wsproto 15)
        seen.append(("handshake", normalise(
            (k, v.split(";")[0] if k.lower() == "sec-websocket-extensions" else v)
            for k, v in ws.response.headers.raw_items()
            if k.lower() != "sec-websocket-accept")))
        for msg in ["héllo", b"\x00\xff\x80", "x" * 70000, bytes(1 << 20), ""]:
            ws.send(msg)
            back = ws.recv(timeout=10)
            seen.append(("echo", type(back).__name__, len(back), back == msg))
        ws.send(["frag", "mented ", "text"])            # a fragmented message
        seen.append(("fragmented", ws.recv(timeout=10)))
        seen.append(("pong", ws.ping(b"p").wait(10)))
        ws.send("close-me")
        try:
            ws.recv(timeout=10)
        except websockets.exceptions.ConnectionClosed as e:
            seen.append(("closed by server", e.rcvd.code, e.rcvd.reason))
    with ws_connect(url, **kw) as ws:
        ws.send("bye")
        seen.append(("echo", ws.recv(timeout=10)))
        ws.close(code=1000, reason="client done")
        seen.append(("closed by client", ws.close_code, ws.close_reason))
    with ws_connect(url, **kw) as ws:
        ws.close(code=4321, reason="custom")
    if app_saw:
        # what the app's websocket.disconnect said, for both client closes
        with client_for(server) as c:
            deadline = time.monotonic() + 5
            while (len(c.get("/ws-closes").json()) < closes_before + 2
                   and time.monotonic() < deadline):
                time.sleep(0.02)
            seen.append(("app saw", c.get("/ws-closes").json()[closes_before:]))
    with ws_connect(base + "/ws-scope/a%20b?x=%41&y", subprotocols=["one", "two"],
                    additional_headers={"X-Extra": "1"}, **kw) as ws:
        seen.append(("scope", json.loads(ws.recv(timeout=10))))
    try:
        with ws_connect(base + "/ws-reject", **kw):
            seen.append(("rejected", "no"))
    except websockets.exceptions.InvalidStatus as e:
        seen.append(("rejected", e.response.status_code))
        # of the empty 403 not its Content-Type: uvicorn's websockets implementation
        # sends one, its wsproto implementation does not
        seen.append(("rejected answer", [h for h in normalise(e.response.headers.raw_items())
                                         if h[0] != "content-type"], bytes(e.response.body)))
    try:
        with ws_connect(base + "/nothing", **kw):
            seen.append(("no route", "accepted"))
    except websockets.exceptions.InvalidStatus as e:
        seen.append(("no route", e.response.status_code))


def test_websocket_as_uvicorn(reference, served):
    ref = ws_session(reference)
    assert [x for x in ref if x[0] not in ("handshake", "rejected answer", "scope")] == [
        ("subprotocol", "chat"),
        ("echo", "str", 5, True), ("echo", "bytes", 3, True), ("echo", "str", 70000, True),
        ("echo", "bytes", 1 << 20, True), ("echo", "str", 0, True),
        ("fragmented", "fragmented text"), ("pong", True),
        ("closed by server", 4001, "asked to"),
        ("echo", "bye"), ("closed by client", 1000, "client done"),
        ("app saw", [[1000, "client done"], [4321, "custom"]]),
        ("rejected", 403), ("no route", 403)]
    assert ws_session(served) == ref


def too_big(server):
    """A message one byte over 16 MiB (uvicorn's default --ws-max-size, and ours)."""
    with ws_connect(f"ws://{server.host}:{server.port}/ws", max_size=None, open_timeout=10,
                    close_timeout=10) as ws:
        ws.send(b"x" * (16 << 20))                  # exactly the limit: echoed
        ok = len(ws.recv(timeout=20)) == 16 << 20
        ws.send(b"x" * ((16 << 20) + 1))
        try:
            ws.recv(timeout=20)
        except websockets.exceptions.ConnectionClosed as e:
            return ok, e.rcvd.code if e.rcvd else None
    return ok, "not closed"


def test_websocket_message_over_the_limit_as_uvicorn(reference, served):
    assert too_big(reference) == (True, 1009)
    assert too_big(served) == (True, 1009)
