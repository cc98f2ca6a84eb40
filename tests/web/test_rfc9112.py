"""RFC 9112 (HTTP/1.1), the server-side MUSTs on framing and Host, as raw bytes.

Each MUST (and the choice where the RFC leaves one: nginx's) is a row of REJECTED (the
status, then the connection closes) or ACCEPTED (served, with what the app must see).
They run on our App, an ASGI app and a WSGI app (all three behind the same HttpProtocol)
over the fake transport, and a subset over both stacks with a raw socket.

What llhttp (httptools) already refuses is in the table too, so a parser upgrade that
relaxes it fails here. The sections:
- 2.2  bare CR: invalid; whitespace before the first field line: invalid (400)
- 2.3  an HTTP version other than 1.x: 505 (RFC 9110 15.6.6); 1.2+ likewise (llhttp)
- 3    a request-target longer than we parse: 414
- 3.2  HTTP/1.1 without Host, more than one Host line, an invalid Host value: 400
- 3.2.2 absolute-form: the Host is the target's authority (the received one ignored)
- 3.2.3 authority-form only with CONNECT (which we answer 405: not a proxy, as nginx)
- 3.2.4 asterisk-form only with OPTIONS
- 5.1  whitespace between field name and colon: 400; OWS around the value is not its
- 5.2  obs-fold: 400
- 6.1  Transfer-Encoding in HTTP/1.0: faulty framing, 400 (nginx); a coding other than
       chunked: 501; chunked twice: 400; CL with TE: 400 and close (nginx)
- 6.3  TE not ending in chunked: 400 and close; an invalid or repeated Content-Length:
       400 and close (nginx also refuses repeated equal values)
- 7.1  chunk extensions ignored; a bad chunk: 400; 7.1.2 trailers not merged into headers
- 9.6  after "Connection: close" no further request is processed
- 6.1/6.2 (responses): no Transfer-Encoding to HTTP/1.0, none and no Content-Length in 204
"""
import json
import os
import socket
import threading

import pytest

from framework import App, RequestHandler
from framework.web.asgi import AsgiApp
from framework.web.wsgi import WsgiApp

from .fakes import Harness, parse_responses

H = b"Host: example.com\r\n"

REJECTED = [
    # 3.2 Host
    ("no-host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    ("two-hosts-differ", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("two-hosts-1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("host-space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("host-slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("host-at", b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400),
    ("host-bad-port", b"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400),
    ("absolute-no-host", b"GET http://a.example/ HTTP/1.1\r\n\r\n", 400),
    # 3.2.3 / 3.2.4 target forms
    ("authority-form-get", b"GET a.example:80 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("connect", b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", 405),
    ("asterisk-get", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    # 2.3 version
    ("http-2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("http-1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    ("http-3.0", b"GET / HTTP/3.0\r\n" + H + b"\r\n", 505),
    ("http-0.9", b"GET /\r\n\r\n", 505),
    ("http-lowercase", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    # 3 request line
    # longer than any interface's header limit (served ASGI/WSGI apps: 32 KiB, serving.py)
    ("target-too-long", b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("target-space", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    # 2.2 line endings and whitespace
    ("bare-cr-value", b"GET / HTTP/1.1\r\n" + H + b"X: a\rb\r\n\r\n", 400),
    ("bare-cr-eol", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
    ("bare-cr-request-line", b"GET / HTTP/1.1\r" + H + b"\r\n", 400),
    ("ws-before-first-field", b"GET / HTTP/1.1\r\n " + H + b"\r\n", 400),
    # 5.1 / 5.2 field lines
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    ("tab-before-colon", b"GET / HTTP/1.1\r\n" + H + b"X\t: a\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n\tb\r\n\r\n", 400),
    ("nul-in-value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", 400),
    # 6.1 / 6.3 framing
    ("cl-and-te", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-and-cl", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"Content-Length: 3\r\n\r\n0\r\n\r\n", 400),
    ("te-gzip-only", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nabc", 400),
    ("te-identity", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n", 400),
    ("te-chunked-not-last", b"POST / HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    ("te-chunked-twice", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-unknown-coding", b"POST / HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("te-in-http-1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabc\r\n0\r\n\r\n", 400),
    ("cl-twice-equal", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n"
     b"Content-Length: 3\r\n\r\nabc", 400),
    ("cl-twice-differ", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n"
     b"Content-Length: 4\r\n\r\nabcd", 400),
    ("cl-list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    ("cl-negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    ("cl-plus", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc", 400),
    ("cl-hex", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x3\r\n\r\nabc", 400),
    # 7.1 chunked
    ("chunk-size-invalid", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk-data-no-crlf", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"\r\n3\r\nabcX0\r\n\r\n", 400),
    ("chunk-bare-lf", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"\r\n3\nabc\n0\n\n", 400),
    ("chunk-size-overflow", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"\r\n1" + b"0" * 20 + b"\r\nabc\r\n0\r\n\r\n", 400),
    ("te-xchunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n"
     b"\r\n0\r\n\r\n", 400),
]


# ---- the three interfaces, each answering what it saw (JSON) -----------------------------
def framework_app():
    app = App()

    @app.route("/{rest:.*}")
    class Seen(RequestHandler):
        def _seen(self, rest):
            r = self.request
            self.write({"method": r.method, "host": r.host, "headers": [
                [k.decode("latin-1"), v.decode("latin-1")] for k, v in r.raw_headers],
                "body": r.body.decode("latin-1")})

        get = post = options = _seen
    return app


def asgi_app():
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan")
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        host = next((v for k, v in headers if k == "host"), "")
        data = json.dumps({"method": scope["method"], "host": host, "headers": headers,
                           "body": body.decode("latin-1")}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})
    return AsgiApp(app)


def wsgi_callable(environ, start_response):
    n = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(n) if n else environ["wsgi.input"].read()
    headers = [[k[5:].replace("_", "-").lower(), v] for k, v in environ.items()
               if k.startswith("HTTP_")]
    data = json.dumps({"method": environ["REQUEST_METHOD"],
                       "host": environ.get("HTTP_HOST", ""), "headers": headers,
                       "body": body.decode("latin-1")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


def wsgi_app():
    return WsgiApp(wsgi_callable)


FACTORIES = {"framework": framework_app, "asgi": asgi_app, "wsgi": wsgi_app}


@pytest.fixture(params=list(FACTORIES))
def harness(request):
    return Harness(FACTORIES[request.param]())


@pytest.mark.parametrize("name,raw,status", REJECTED, ids=[r[0] for r in REJECTED])
def test_rejected_and_closed(harness, name, raw, status):
    out, proto, t = harness.request(raw)
    (st, headers, body), = parse_responses(out)
    assert st == status, out
    assert headers["connection"] == "close" and t.closed
    assert b"example.com" not in body      # answered by the protocol, not the app


@pytest.mark.parametrize("kind", ["framework", "asgi"])    # (WSGI answers from a thread)
def test_rejected_request_after_good_one_in_pipeline(kind):
    """The error comes in turn after the earlier response, then the connection closes."""
    out, proto, t = Harness(FACTORIES[kind]()).request(b"GET /a HTTP/1.1\r\n" + H + b"\r\n"
                                    b"GET /b HTTP/1.1\r\n\r\n"
                                    b"GET /c HTTP/1.1\r\n" + H + b"\r\n")
    got = parse_responses(out)
    assert [r[0] for r in got] == [200, 400] and t.closed


# ---- what must still be served (framework and ASGI in-process) --------------------------
ACCEPTED = [
    # (name, raw, check(seen))
    ("host", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
     lambda s: s["host"] == "example.com"),
    ("host-port", b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
     lambda s: s["host"] == "example.com:8080"),
    ("host-ipv6", b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n",
     lambda s: s["host"] == "[2001:db8::1]:80"),
    ("host-ipv4", b"GET / HTTP/1.1\r\nHost: 198.18.0.2\r\n\r\n",
     lambda s: s["host"] == "198.18.0.2"),
    ("host-empty", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", lambda s: s["host"] == ""),
    ("host-ows", b"GET / HTTP/1.1\r\nHost:  example.com \t\r\n\r\n",
     lambda s: s["host"] == "example.com"),
    ("http-1.0-no-host", b"GET / HTTP/1.0\r\n\r\n", lambda s: s["host"] == ""),
    ("absolute-form", b"GET http://target.example:81/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n",
     lambda s: s["host"] == "target.example:81"
     and [v for k, v in s["headers"] if k.lower() == "host"] == ["target.example:81"]),
    ("absolute-ipv6", b"GET http://[::1]:81/ HTTP/1.1\r\nHost: other\r\n\r\n",
     lambda s: s["host"] == "[::1]:81"),
    ("leading-crlf", b"\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
     lambda s: s["method"] == "GET"),
    ("chunk-extension", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"3;name=value\r\nabc\r\n0\r\n\r\n", lambda s: s["body"] == "abc"),
    ("te-case-insensitive", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: Chunked\r\n"
     b"\r\n2\r\nab\r\n0\r\n\r\n", lambda s: s["body"] == "ab"),
    ("trailer-not-merged", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\nHost: evil\r\n\r\n",
     lambda s: s["body"] == "abc" and s["host"] == "example.com"
     and not any(k.lower() == "x-trailer" for k, v in s["headers"])),
    ("obs-text-value", b"GET / HTTP/1.1\r\n" + H + b"X-Latin: caf\xe9\r\n\r\n",
     lambda s: ["x-latin", "caf\u00e9"] in [[k.lower(), v] for k, v in s["headers"]]),
]


@pytest.mark.parametrize("name,raw,check", ACCEPTED, ids=[a[0] for a in ACCEPTED])
@pytest.mark.parametrize("kind", ["framework", "asgi"])
def test_accepted(kind, name, raw, check):
    h = Harness(FACTORIES[kind]())
    out, proto, t = h.request(raw)
    (st, headers, body), = parse_responses(out)
    assert st == 200, out
    assert check(json.loads(body)), body


def test_options_asterisk_is_a_request():
    """3.2.4: OPTIONS * is valid: the ASGI app gets it (path "*"); our router has no
    pattern for it (patterns start with "/"), so an App answers 404, not 400."""
    seen = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan")
        seen.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    out, _, _ = Harness(AsgiApp(app)).request(b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n")
    assert out.startswith(b"HTTP/1.1 204 ") and seen == [("OPTIONS", "*")]
    out, _, t = Harness(framework_app()).request(b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n")
    assert out.startswith(b"HTTP/1.1 404 ") and not t.closed


def test_nothing_after_connection_close_is_processed():
    """9.6: a request after one with "Connection: close" is never answered."""
    h = Harness(framework_app())
    out, proto, t = h.request(b"GET /1 HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
                              b"POST /2 HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n")
    got = parse_responses(out)
    assert len(got) == 1 and got[0][1]["connection"] == "close" and t.closed


@pytest.mark.parametrize("kind", ["framework", "asgi"])
def test_body_cut_short_is_never_served(kind):
    """6.3: fewer octets than Content-Length, then the peer's EOF: the message is
    incomplete, the connection closes, nothing reaches the app."""
    h = Harness(FACTORIES[kind]())
    proto, t = h.connect()
    proto.data_received(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nabc")
    h.run()
    proto.eof_received()
    h.run()
    assert b"200" not in t.take()[:12] and t.closed


def test_response_framing_for_http10_and_204():
    """6.1: no Transfer-Encoding to an HTTP/1.0 client; 6.2: a 204 carries neither
    Content-Length nor Transfer-Encoding."""
    app = App()

    @app.route("/stream")
    class Stream(RequestHandler):
        async def get(self):
            self.write("a")
            await self.flush()
            self.write("b")

    @app.route("/nothing")
    class Nothing(RequestHandler):
        def get(self):
            self.set_status(204)

    h = Harness(app)
    out, _, t = h.request(b"GET /stream HTTP/1.0\r\n\r\n")
    head, body = out.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding" not in head.lower() and body == b"ab" and t.closed
    out, _, _ = h.request(b"GET /nothing HTTP/1.1\r\n" + H + b"\r\n")
    head = out.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 204 ")
    assert b"content-length" not in head and b"transfer-encoding" not in head


# ---- WSGI and the framework on a real shard (kernel sockets, loopback) -------------------
HOST = f"127.{(os.getpid() >> 8) & 255}.{os.getpid() & 255}.9"
PORT = 8091


def exchange(data):
    """Send ``data`` on a fresh connection; everything received until the server closes."""
    s = socket.create_connection((HOST, PORT), timeout=10)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                return out
            if not b:
                return out
            out += b
    finally:
        s.close()


@pytest.fixture(params=list(FACTORIES))
def shard(request):
    from framework.shard.run import run_kernel_worker
    app = FACTORIES[request.param]()
    stop, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=run_kernel_worker, args=(app, HOST, PORT),
                         kwargs={"stop_event": stop, "ready": ready, "grace": 1.0},
                         daemon=True)
    t.start()
    assert ready.wait(10), "the shard did not start"
    try:
        yield request.param
    finally:
        stop.set()
        t.join(10)
        assert not t.is_alive()


SUBSET = ["no-host", "two-hosts", "cl-and-te", "te-unknown-coding", "http-2.0",
          "target-too-long", "obs-fold", "space-before-colon", "te-in-http-1.0"]


def test_on_a_shard(shard):
    """A subset of the table on a real shard (WSGI's app runs in its thread pool here),
    then requests that must be served."""
    rows = {r[0]: r for r in REJECTED}
    for name in SUBSET:
        _, raw, status = rows[name]
        out = exchange(raw)
        assert out.startswith(b"HTTP/1.1 %d " % status), (name, out)
        assert parse_responses(out)[0][1]["connection"] == "close"
    out = exchange(b"GET http://target.example:81/p HTTP/1.1\r\nHost: other\r\n"
                   b"Connection: close\r\n\r\n")
    (st, _, body), = parse_responses(out)
    assert st == 200 and json.loads(body)["host"] == "target.example:81"
    out = exchange(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
                   b"Connection: close\r\n\r\n3;x=y\r\nabc\r\n0\r\nHost: evil\r\n\r\n")
    (st, _, body), = parse_responses(out)
    seen = json.loads(body)
    assert st == 200 and seen["body"] == "abc" and seen["host"] == "example.com"


# ---- both stacks, raw sockets ------------------------------------------------------------
STACK_SUBSET = ["no-host", "two-hosts", "cl-and-te", "te-unknown-coding", "http-2.0",
                "target-too-long", "bare-cr-value"]


def test_both_stacks(server):
    from .servers import connect
    rows = {r[0]: r for r in REJECTED}
    for name in STACK_SUBSET:
        _, raw, status = rows[name]
        s = connect(server.ns, server.ip, server.port)
        try:
            s.sendall(raw)
            s.settimeout(5)
            out = b""
            while True:
                try:
                    b = s.recv(65536)
                except ConnectionResetError:
                    break
                if not b:
                    break
                out += b
        finally:
            s.close()
        assert out.startswith(b"HTTP/1.1 %d " % status), (server.stack, name, out)
