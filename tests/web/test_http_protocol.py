"""The HTTP/1.1 protocol against a fake transport and a manual clock (no sockets)."""
import asyncio
import logging

import pytest

from framework import App, HTTPError, RequestHandler

from .fakes import Harness, parse_responses

DATE = b"Date: Tue, 21 Jul 2026 12:00:00 GMT\r\n"


def make_app(**kw):
    app = App(**kw)

    @app.route("/")
    class Hello(RequestHandler):
        def get(self):
            self.set_header("Content-Type", "text/plain")
            self.write("Hello, World!")

    @app.route("/seq/{n}")
    class Seq(RequestHandler):
        def get(self, n):
            self.write(f"seq {n}")

    @app.route("/echo")
    class Echo(RequestHandler):
        def post(self):
            self.write(self.request.body)

    @app.route("/slow/{n}")
    class Slow(RequestHandler):
        async def get(self, n):
            await asyncio.sleep(float(self.get_argument("t", "1")))
            self.write(f"slow {n}")

    return app


@pytest.fixture
def h():
    return Harness(make_app(idle_timeout=5.0, request_timeout=2.0, max_body_size=1000))


def test_exact_response_bytes(h):
    out, proto, t = h.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert out == (b"HTTP/1.1 200 OK\r\nServer: framework\r\n" + DATE +
                   b"Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!")
    assert not t.closed


def test_default_content_type_and_json(h):
    out, _, _ = h.request(b"GET /seq/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    (st, hd, body), = parse_responses(out)
    assert hd["content-type"] == "text/html; charset=UTF-8" and body == b"seq 1"


def test_keepalive_sequence(h):
    proto, t = h.connect()
    for i in range(5):
        proto.data_received(f"GET /seq/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        (st, hd, body), = parse_responses(t.take())
        assert body == f"seq {i}".encode() and "connection" not in hd
    assert not t.closed


@pytest.mark.parametrize("split", [1, 3, 7, 1000])
def test_pipelined_and_fragmented(h, split):
    raw = b"".join(f"GET /seq/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(10))
    raw += b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    raw += b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    proto, t = h.connect()
    for i in range(0, len(raw), split):
        proto.data_received(raw[i:i + split])
    got = parse_responses(t.take())
    assert [b for _, _, b in got] == [f"seq {i}".encode() for i in range(10)] + [b"hello", b"abcde"]


def test_pipelined_async_in_order_and_backpressure(h):
    proto, t = h.connect()
    raw = b"GET /slow/a?t=0.5 HTTP/1.1\r\nHost: x\r\n\r\n" + b"".join(
        f"GET /seq/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(20))
    proto.data_received(raw)
    h.run()
    assert t.take() == b""
    assert t.paused          # 20 queued behind a slow one: reading paused
    h.run(0.6)
    got = parse_responses(t.take())
    assert [b for _, _, b in got] == [b"slow a"] + [f"seq {i}".encode() for i in range(20)]
    assert not t.paused


def test_404_405_allow_head():
    app = App()

    @app.route("/r")
    class R(RequestHandler):
        def get(self):
            self.write("body!")

        def post(self):
            self.write("p")

    @app.route("/h")
    class Hd(RequestHandler):
        def head(self):
            self.set_header("X-Head", "1")

    h = Harness(app)
    out, _, _ = h.request(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\nPUT /r HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"HEAD /r HTTP/1.1\r\nHost: x\r\n\r\nGET /h HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.count(b"HTTP/1.1 ") == 4
    first, rest = out.split(b"\n\n", 1)[0], out
    resps = out.split(b"HTTP/1.1 ")[1:]
    assert resps[0].startswith(b"404 Not Found")
    assert resps[1].startswith(b"405 Method Not Allowed") and b"Allow: GET, HEAD, POST\r\n" in resps[1]
    assert resps[2].startswith(b"200 OK") and b"Content-Length: 5\r\n" in resps[2]
    assert resps[2].endswith(b"\r\n\r\n")        # HEAD: no body
    assert resps[3].startswith(b"405") and b"Allow: HEAD\r\n" in resps[3]
    out, _, _ = h.request(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"X-Head: 1" in out and out.endswith(b"\r\n\r\n")


def test_routing_forms_and_params():
    class P(RequestHandler):
        def get(self, *args, **kw):
            self.write({"args": list(args), "kw": kw})

    app = App([("/a/{x}/b/{y}", P), (r"/re/([0-9]+)/(\w+)", P), ("/any/{rest:.*}", P),
               ("/plain", P), ("/n/{id:[0-9]{3}}", P)])
    h = Harness(app)
    import json
    def get(path):
        out, _, _ = h.request(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        (st, _, body), = parse_responses(out)
        return st, json.loads(body) if st == 200 else None
    assert get("/a/1/b/two%20x") == (200, {"args": [], "kw": {"x": "1", "y": "two x"}})
    assert get("/re/42/abc") == (200, {"args": ["42", "abc"], "kw": {}})
    assert get("/any/x/y/z") == (200, {"args": [], "kw": {"rest": "x/y/z"}})
    assert get("/plain?q=1") == (200, {"args": [], "kw": {}})
    assert get("/n/123") == (200, {"args": [], "kw": {"id": "123"}})
    assert get("/n/1234")[0] == 404
    assert get("/a/1/b/")[0] == 404
    assert get("/re/x/abc")[0] == 404
    with pytest.raises(TypeError):
        App([("/x", object)])
    with pytest.raises(ValueError):
        App([("x", P)])


def test_request_object_and_arguments():
    seen = {}
    app = App()

    @app.route("/r")
    class R(RequestHandler):
        def post(self):
            r = self.request
            seen.update(method=r.method, path=r.path, query=r.query, uri=r.uri,
                        ip=r.remote_ip, ua=r.headers["USER-AGENT"], ct="content-type" in r.headers,
                        multi=r.headers.get("x-m"), a=self.get_argument("a"),
                        all_a=self.get_arguments("a"), f=self.get_argument("f"),
                        missing=self.get_argument("zz", None), body=r.body,
                        q=self.get_query_argument("a"), bodyarg=self.get_body_argument("f"),
                        version=r.version, shard=(self.ctx.shard_id, self.ctx.shard_count))

    h = Harness(app)
    body = b"f=%20form+v&a=3"
    out, _, _ = h.request(b"POST /r?a=1&a=%202 HTTP/1.1\r\nHost: x\r\nUser-Agent: t/1\r\nX-M: 1\r\nx-m: 2\r\n"
                          b"Content-Type: application/x-www-form-urlencoded\r\n"
                          + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert out.startswith(b"HTTP/1.1 200")
    assert seen == dict(method="POST", path="/r", query="a=1&a=%202", uri="/r?a=1&a=%202",
                        ip="198.18.5.2", ua="t/1", ct=True, multi="1, 2", a="3",
                        all_a=["1", "2", "3"], f="form v", missing=None, body=body,
                        q="2", bodyarg="form v", version="HTTP/1.1", shard=(0, 1))


def test_missing_argument_is_400():
    app = App()

    @app.route("/r")
    class R(RequestHandler):
        def get(self):
            self.write(self.get_argument("need"))

    out, _, _ = Harness(app).request(b"GET /r HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request")


def test_write_types_status_headers_redirect():
    app = App()

    @app.route("/w")
    class W(RequestHandler):
        def get(self):
            self.set_status(201)
            self.set_header("x-custom", 5)
            self.add_header("Set-Cookie", "a=1")
            self.add_header("Set-Cookie", "b=2")
            self.write("a")
            self.write(b"b")
            self.write({"c": "</script>"})

    @app.route("/bad")
    class Bad(RequestHandler):
        def get(self):
            self.write(3.5)

    @app.route("/inject")
    class Inject(RequestHandler):
        def get(self):
            self.set_header("X", "a\r\nEvil: 1")

    @app.route("/go")
    class Go(RequestHandler):
        def get(self):
            self.redirect("/there", permanent=self.get_argument("p", "") == "1")

    @app.route("/reason")
    class Reason(RequestHandler):
        def get(self):
            self.set_status(299, reason="Fine")

    @app.route("/nocontent")
    class NoContent(RequestHandler):
        def get(self):
            self.set_status(204)

    h = Harness(app)
    out, _, _ = h.request(b"GET /w HTTP/1.1\r\nHost: x\r\n\r\n")
    (st, hd, body), = parse_responses(out)
    assert st == 201 and hd["x-custom"] == "5" and hd["set-cookie"] == "a=1, b=2"
    assert b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n" in out
    assert hd["content-type"] == "application/json; charset=UTF-8"
    assert body == b'ab{"c": "<\\/script>"}'
    out, _, _ = h.request(b"GET /bad HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 500")
    out, _, _ = h.request(b"GET /inject HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 500") and b"Evil" not in out
    out, _, _ = h.request(b"GET /go HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 302 Found") and b"Location: /there\r\n" in out
    out, _, _ = h.request(b"GET /go?p=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 301 Moved Permanently")
    out, _, _ = h.request(b"GET /reason HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 299 Fine\r\n")
    out, _, _ = h.request(b"GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"Content-Length" not in out and b"Content-Type" not in out


def test_flush_is_chunked_and_http10_is_not():
    app = App()

    @app.route("/f")
    class F(RequestHandler):
        def get(self):
            self.write("one")
            self.flush()
            self.flush()             # nothing new: no empty chunk (that would end the body)
            self.write("two")
            self.finish("three")

    h = Harness(app)
    out, _, t = h.request(b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.endswith(b"\r\n\r\n3\r\none\r\n8\r\ntwothree\r\n0\r\n\r\n")
    assert b"Transfer-Encoding: chunked\r\n" in out and not t.closed
    out, _, t = h.request(b"GET /f HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert out.endswith(b"\r\n\r\nonetwothree") and b"Transfer-Encoding" not in out
    assert b"Connection: close\r\n" in out and t.closed
    out, _, t = h.request(b"HEAD /f HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.endswith(b"\r\n\r\n") and b"one" not in out and not t.closed


def test_prepare_on_finish_and_errors(caplog):
    log = []
    app = App()

    @app.route("/p")
    class P(RequestHandler):
        def prepare(self):
            log.append("prepare")
            if self.get_argument("stop", None):
                self.finish("stopped")

        def get(self):
            log.append("get")
            self.write("got")

        def on_finish(self):
            log.append(("finish", self.get_status()))

    @app.route("/boom")
    class Boom(RequestHandler):
        def get(self):
            self.write("partial")
            raise ValueError("secret detail")

    @app.route("/tea")
    class Tea(RequestHandler):
        def get(self):
            raise HTTPError(418, "logged only %s", "x")

    @app.route("/custom")
    class Custom(RequestHandler):
        def get(self):
            raise HTTPError(503)

        def write_error(self, status_code, **kw):
            self.finish({"error": status_code})

    h = Harness(app)
    out, _, _ = h.request(b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.endswith(b"got") and log == ["prepare", "get", ("finish", 200)]
    log.clear()
    out, _, _ = h.request(b"GET /p?stop=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.endswith(b"stopped") and log == ["prepare", ("finish", 200)]
    with caplog.at_level(logging.ERROR):
        out, proto, t = h.request(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 500 Internal Server Error")
    assert b"secret" not in out and b"partial" not in out and b"Traceback" not in out
    assert "secret detail" in caplog.text and "Traceback" in caplog.text
    proto.data_received(b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n")   # same connection keeps serving
    assert t.take().endswith(b"got")
    out, _, _ = h.request(b"GET /tea HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 418 I'm a Teapot") and b"logged only" not in out
    out, _, _ = h.request(b"GET /custom HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 503") and out.endswith(b'{"error": 503}')


def test_async_handlers(caplog):
    app = App()
    order = []

    @app.route("/a")
    class A(RequestHandler):
        async def prepare(self):
            await asyncio.sleep(0.1)
            order.append("prepared")

        async def get(self):
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            loop.call_later(0.2, fut.set_result, "value")
            v = await fut
            self.write(v)

    @app.route("/fail")
    class Fail(RequestHandler):
        async def get(self):
            await asyncio.sleep(0.1)
            raise KeyError("async secret")

    @app.route("/gone")
    class Gone(RequestHandler):
        async def get(self):
            await asyncio.sleep(0.1)
            self.write("late")

        def on_connection_close(self):
            order.append("gone")

    h = Harness(app)
    out, p, t = h.request(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out == b""
    h.run(0.15)
    assert order == ["prepared"] and t.take() == b""
    h.run(0.25)
    assert t.take().endswith(b"value")
    with caplog.at_level(logging.ERROR):
        out, p, t = h.request(b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
        h.run(0.2)
    assert t.take().startswith(b"HTTP/1.1 500") and "async secret" in caplog.text
    out, p, t = h.request(b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
    p.connection_lost(None)
    h.run(0.2)
    assert order[-1] == "gone" and t.take() == b""


def test_async_other_connection_not_blocked(h):
    slow, ts = h.connect()
    fast, tf = h.connect()
    slow.data_received(b"GET /slow/1?t=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    h.run()
    fast.data_received(b"GET /seq/2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert tf.take().endswith(b"seq 2") and ts.take() == b""
    h.run(1.0)
    assert ts.take().endswith(b"slow 1")


def test_body_limits(h):
    out, _, t = h.request(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 ") and t.closed and t.lingered
    out, _, t = h.request(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000)
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"x" * 1000)
    proto, t = h.connect()
    proto.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(3):
        proto.data_received(b"190\r\n" + b"c" * 400 + b"\r\n")
    assert t.take().startswith(b"HTTP/1.1 413 ") and t.closed


def test_header_limits():
    h = Harness(make_app(max_header_size=8192))
    ok = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 8000 + b"\r\n\r\n"
    out, _, t = h.request(ok)
    assert out.startswith(b"HTTP/1.1 200 ")
    out, _, t = h.request(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: aaaaaaaaaa\r\n" * 600 + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large") and t.closed
    proto, t = h.connect()           # one endless header line, fed in small pieces
    proto.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ")
    for _ in range(100):
        if t.closed:
            break
        proto.data_received(b"b" * 100)
    assert t.take().startswith(b"HTTP/1.1 431 ") and t.closed
    proto, t = h.connect()           # an endless URL: a target too long (RFC 9112 3)
    for _ in range(100):
        if t.closed:
            break
        proto.data_received(b"GET /" if not _ else b"u" * 200)
    assert t.take().startswith(b"HTTP/1.1 414 ") and t.closed


def test_a_long_target_in_segments_counts_once():
    """A 6 KB target under the 8 KB limit, arriving in MSS-sized pieces (llhttp hands
    the URL over piece by piece), alone and after a pipelined request: answered."""
    h = Harness(make_app(max_header_size=8192))
    target = b"/" + b"t" * 6000
    first = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    for raw in (b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                first + b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"):
        proto, t = h.connect()
        for i in range(0, len(raw), 1448):
            proto.data_received(raw[i:i + 1448])
        out = t.take()
        assert out.count(b"HTTP/1.1 ") == raw.count(b"GET "), out[:200]
        assert b" 414 " not in out and b" 431 " not in out and not t.closed, out[:200]


@pytest.mark.parametrize("raw", [
    b"GARBAGE\x01 / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
])
def test_malformed_is_400_and_close(h, raw):
    out, proto, t = h.request(raw)
    assert out.startswith(b"HTTP/1.1 400 Bad Request") and b"Connection: close" in out
    assert t.closed
    proto.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")   # ignored after the error
    assert t.take() == b""


def test_malformed_after_async_keeps_order(h):
    proto, t = h.connect()
    proto.data_received(b"GET /slow/1?t=0.1 HTTP/1.1\r\nHost: x\r\n\r\nBAD\x01 REQUEST\r\n\r\n")
    h.run(0.2)
    got = parse_responses(t.take())
    assert [g[0] for g in got] == [200, 400] and t.closed


def test_expect_continue(h):
    proto, t = h.connect()
    proto.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert t.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    proto.data_received(b"abc")
    assert t.take().endswith(b"\r\n\r\nabc")
    out, _, t = h.request(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\nExpect: 100-continue\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 ")     # refused before the body is sent
    out, _, t = h.request(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: magic\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 417 ")


def test_connection_close_and_http10(h):
    out, proto, t = h.request(b"GET /seq/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /seq/2 HTTP/1.1\r\nHost: x\r\n\r\n")
    (st, hd, body), = parse_responses(out)
    assert body == b"seq 1" and hd["connection"] == "close" and t.closed
    out, proto, t = h.request(b"GET /seq/1 HTTP/1.0\r\n\r\n")
    assert b"Connection: close\r\n" in out and t.closed and out.endswith(b"seq 1")
    out, proto, t = h.request(b"GET /seq/1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert b"Connection: keep-alive\r\n" in out and not t.closed


def test_eof_after_request_answers_then_closes(h):
    proto, t = h.connect()
    proto.data_received(b"GET /slow/1?t=0.1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert proto.eof_received() is True        # keep the write side open
    h.run(0.2)
    out = t.take()
    assert out.endswith(b"slow 1") and b"Connection: close" in out and t.closed
    proto, t = h.connect()
    assert proto.eof_received() is False and t.closed


def test_idle_timeout(h):
    proto, t = h.connect()
    proto.data_received(b"GET /seq/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    t.take()
    h.run_until(h.loop.time() + 4.5, step=0.5)
    assert not t.closed
    h.run_until(h.loop.time() + 1.5, step=0.5)
    assert t.closed and t.take() == b""
    proto, t = h.connect()                    # a connection that never sends anything
    h.run_until(h.loop.time() + 6.0, step=0.5)
    assert t.closed


def test_request_timeout_slowloris(h):
    proto, t = h.connect()
    proto.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n")
    for _ in range(5):                        # trickles a header every 0.5 s
        h.run(0.5)
        if t.closed:
            break
        proto.data_received(b"X-A: b\r\n")
    assert t.closed and t.take().startswith(b"HTTP/1.1 408 ")


def test_no_timeout_while_handler_runs(h):
    proto, t = h.connect()
    proto.data_received(b"GET /slow/1?t=3 HTTP/1.1\r\nHost: x\r\n\r\n")   # longer than request_timeout
    h.run_until(h.loop.time() + 3.2, step=0.25)
    assert t.take().endswith(b"slow 1") and not t.closed


def test_date_header_cached_per_second():
    wall = [1000.2]
    app = make_app()
    h = Harness(app)
    h.factories[8080] = app.http_factory(clock=lambda: wall[0])
    out, _, _ = h.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    first = [l for l in out.split(b"\r\n") if l.startswith(b"Date:")]
    wall[0] = 1000.5
    h.run(0.3)                                   # same second: not even read again
    out, _, _ = h.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [l for l in out.split(b"\r\n") if l.startswith(b"Date:")] == first
    wall[0] = 1001.3
    h.run(0.8)
    out, _, _ = h.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"Date: Thu, 01 Jan 1970 00:16:41 GMT" in out


def test_absolute_form_and_upgrade(h):
    out, _, _ = h.request(b"GET http://x.example/seq/7?a=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.endswith(b"seq 7")
    out, _, t = h.request(b"GET /seq/8 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"seq 8") and t.closed


def test_per_shard_state_and_hooks():
    app = App()
    started = []

    @app.shard_state
    def make(ctx):
        return {"n": 0, "shard": ctx.shard_id}

    @app.on_start
    def hook(ctx):
        started.append(ctx.state["shard"])

    @app.route("/c")
    class C(RequestHandler):
        def get(self):
            self.state["n"] += 1
            self.write(str(self.state["n"]))

    h = Harness(app)
    assert started == [0]
    for i in range(1, 4):
        out, _, _ = h.request(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
        assert out.endswith(str(i).encode())
    assert h.ctx.state["n"] == 3


def test_flush_follows_write_pause():
    app = App()
    progress = []

    @app.route("/s")
    class S(RequestHandler):
        async def get(self):
            for i in range(3):
                self.write(f"c{i}")
                await self.flush()
                progress.append(i)

    h = Harness(app)
    proto, t = h.connect()
    proto.data_received(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")   # the handler task starts next turn
    proto.pause_writing()
    h.run()
    assert progress == [] and t.take().endswith(b"2\r\nc0\r\n")
    proto.resume_writing()
    h.run()
    assert progress == [0, 1, 2]
    assert t.take() == b"2\r\nc1\r\n2\r\nc2\r\n0\r\n\r\n"


def test_flush_waiter_fails_when_connection_lost(caplog):
    app = App()
    seen = []

    @app.route("/s")
    class S(RequestHandler):
        async def get(self):
            self.write("x")
            try:
                await self.flush()
            except ConnectionResetError:
                seen.append("reset")
                raise

    h = Harness(app)
    proto, t = h.connect()
    proto.data_received(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")   # the handler task starts next turn
    proto.pause_writing()
    h.run()
    proto.connection_lost(None)
    h.run()
    assert seen == ["reset"]


def make_stream_app():
    app = App(max_body_size=100)
    log = []

    @app.route("/up")
    class Up(RequestHandler):
        stream_request_body = True
        max_body_size = 10_000

        async def put(self):
            n = 0
            async for chunk in self.request.stream():
                log.append(len(chunk))
                n += len(chunk)
                await asyncio.sleep(0.01)      # a slow consumer
            self.write(f"got {n}")

        async def post(self):                     # answers without reading the body
            self.set_status(401)

    @app.route("/plain")
    class Plain(RequestHandler):
        async def post(self):
            first = await self.request.read()
            rest = await self.request.read()
            self.write(b"%d %d" % (len(first), len(rest)))

    return app, log


def test_streamed_request_body():
    app, log = make_stream_app()
    h = Harness(app)
    proto, t = h.connect()
    proto.data_received(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
    h.run()
    assert log == []                         # running, waiting for the body
    for _ in range(10):
        proto.data_received(b"x" * 500)
        h.run(0.02)
    h.run(0.1)
    assert sum(log) == 5000 and len(log) == 10
    assert t.take().endswith(b"got 5000")
    # chunked, and the per-handler limit (10000) rather than the app's (100)
    proto.data_received(b"PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    proto.data_received(b"1000\r\n" + b"y" * 4096 + b"\r\n0\r\n\r\n")
    h.run_until(h.loop.time() + 0.2)
    assert t.take().endswith(b"got 4096")


def test_streamed_body_backpressure_and_limit():
    app, log = make_stream_app()
    h = Harness(app)
    proto, t = h.connect()
    proto.data_received(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n")
    proto.data_received(b"z" * 9000)             # waits unread, the handler has not started
    # (high water is 256 KiB: no pause for this little)
    assert not t.paused
    h.run_until(h.loop.time() + 0.1)
    proto.data_received(b"z" * 1000)
    h.run_until(h.loop.time() + 0.1)
    assert t.take().endswith(b"got 10000")
    out, proto, t = h.request(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10001\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 ")
    proto, t = h.connect()
    proto.data_received(b"PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    h.run()
    proto.data_received(b"2710\r\n" + b"q" * 10000 + b"\r\n5\r\nqqqqq\r\n0\r\n\r\n")
    h.run_until(h.loop.time() + 0.5)
    assert t.take().startswith(b"HTTP/1.1 413 ") and t.closed


def test_streamed_early_answer_discards_body_and_keeps_connection():
    app, log = make_stream_app()
    h = Harness(app)
    proto, t = h.connect()
    proto.data_received(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n")
    h.run()
    assert t.take().startswith(b"HTTP/1.1 401 ")
    proto.data_received(b"a" * 3000 + b"POST /plain HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    h.run()
    assert t.take().endswith(b"3 0") and not t.closed


def test_streamed_body_truncated_by_eof():
    app, log = make_stream_app()
    h = Harness(app)
    proto, t = h.connect()
    proto.data_received(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n" + b"a" * 100)
    h.run()
    proto.eof_received()
    h.run(0.1)
    assert t.take().startswith(b"HTTP/1.1 400 ") and t.closed


def test_streamed_request_pipelined_behind_is_buffered():
    app, log = make_stream_app()

    @app.route("/wait")
    class Wait(RequestHandler):
        async def get(self):
            await asyncio.sleep(0.1)

    h = Harness(app)
    proto, t = h.connect()
    proto.data_received(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\nPUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n"
                        + b"b" * 50)
    h.run_until(h.loop.time() + 0.3)
    got = parse_responses(t.take())
    assert [g[0] for g in got] == [200, 200] and got[1][2] == b"got 50" and log == [50]


def test_cookies():
    app = App()

    @app.route("/c")
    class C(RequestHandler):
        def get(self):
            self.write({"a": self.get_cookie("a"), "b": self.get_cookie("b"),
                        "none": self.get_cookie("zz", "dflt")})
            self.set_cookie("sess", "x y;z", max_age=60, httponly=True, samesite="Lax")
            self.clear_cookie("old")

    import json
    out, _, _ = Harness(app).request(b'GET /c HTTP/1.1\r\nHost: x\r\nCookie: a=1; b="two%20x"\r\n\r\n')
    (st, hd, body), = parse_responses(out)
    assert json.loads(body) == {"a": "1", "b": "two x", "none": "dflt"}
    assert b"Set-Cookie: sess=x%20y%3Bz; Path=/; Max-Age=60; HttpOnly; SameSite=Lax\r\n" in out
    assert b"Set-Cookie: old=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT\r\n" in out
    with pytest.raises(ValueError):
        RequestHandler.set_cookie(None, "bad name", "v")


def test_sync_method_returning_awaitable_and_no_timeouts():
    app = App(idle_timeout=None, request_timeout=None)

    @app.route("/r")
    class R(RequestHandler):
        def get(self):
            return self.later()

        async def later(self):
            await asyncio.sleep(0.1)
            self.write("later")

    h = Harness(app)
    out, proto, t = h.request(b"GET /r HTTP/1.1\r\nHost: x\r\n\r\n")
    h.run(0.2)
    assert t.take().endswith(b"later")
    proto.data_received(b"GET /r HTTP/1.1\r\nHost: x\r\n")   # half a request, forever
    h.run_until(h.loop.time() + 5, step=1.0)
    assert not t.closed


def test_access_log(caplog):
    app = make_app(access_log=True)
    h = Harness(app)
    with caplog.at_level(logging.INFO, logger="framework.access"):
        h.request(b"GET /seq/3?x=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
    lines = [r.getMessage() for r in caplog.records if r.name == "framework.access"]
    assert lines[0].startswith("200 GET /seq/3?x=1 (198.18.5.2) 5 ")
    assert lines[1].startswith("404 GET /missing (198.18.5.2) 15 ")
    caplog.clear()
    h = Harness(make_app())
    with caplog.at_level(logging.INFO, logger="framework.access"):
        h.request(b"GET /seq/3 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not [r for r in caplog.records if r.name == "framework.access"]


def test_awaiting_a_foreign_future_is_a_500(caplog):
    other_loop = asyncio.new_event_loop()
    app = App()

    @app.route("/x")
    class X(RequestHandler):
        async def get(self):
            await other_loop.create_future()    # of another loop: cannot be waited for

    h = Harness(app)
    try:
        with caplog.at_level(logging.ERROR):
            out, proto, t = h.request(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\nGET /seq/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            h.run()
    finally:
        other_loop.close()
    got = parse_responses(out + t.take())
    assert [g[0] for g in got] == [500, 404]       # and the next request is served
    assert "attached to a different loop" in caplog.text
    assert "callback" not in caplog.text          # the loop itself did not fail


def test_default_limits():
    h = Harness(make_app())                      # App() defaults: 1 MiB body, 8 KiB headers
    body = b"b" * (1 << 20)
    out, _, _ = h.request(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(body)
    out, _, t = h.request(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (len(body) + 1))
    assert out.startswith(b"HTTP/1.1 413 ") and t.closed
    out, _, _ = h.request(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"x" * 8100 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")
    out, _, _ = h.request(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"x" * 8200 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")


def test_flush_with_content_length_is_not_chunked(caplog):
    app = App()

    @app.route("/n")
    class N(RequestHandler):
        async def get(self):
            n = int(self.get_argument("n"))
            self.set_header("Content-Length", 6)
            for part in (b"ab", b"cd", b"ef" + b"!" * n)[:3 if n >= 0 else 2]:
                self.write(part)
                await self.flush()

    h = Harness(app)
    proto, t = h.connect()
    proto.data_received(b"GET /n?n=0 HTTP/1.1\r\nHost: x\r\n\r\n")
    h.run()
    out = t.take()
    assert b"Transfer-Encoding" not in out and out.endswith(b"\r\n\r\nabcdef") and not t.closed
    proto.data_received(b"GET /n?n=0 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    h.run()
    out = t.take()
    assert b"Connection: keep-alive" in out and out.endswith(b"abcdef") and not t.closed
    with caplog.at_level(logging.ERROR):
        proto.data_received(b"GET /n?n=2 HTTP/1.1\r\nHost: x\r\n\r\n")     # 8 bytes for 6 declared
        h.run()
    assert t.aborted and "more bytes than its Content-Length" in caplog.text
    proto, t = h.connect()
    with caplog.at_level(logging.ERROR):
        proto.data_received(b"GET /n?n=-1 HTTP/1.1\r\nHost: x\r\n\r\n")    # 4 bytes for 6 declared
        h.run()
    assert t.aborted and "fewer bytes" in caplog.text


def test_pipelined_flood_waits_while_client_does_not_read(h):
    proto, t = h.connect()
    proto.data_received(b"GET /seq/0 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert t.take().endswith(b"seq 0")
    proto.pause_writing()                       # the client stopped reading
    proto.data_received(b"".join(f"GET /seq/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(1, 41)))
    assert t.take() == b"" and t.paused          # nothing produced; reading paused too
    proto.resume_writing()
    got = parse_responses(t.take())
    assert [b for _, _, b in got] == [f"seq {i}".encode() for i in range(1, 41)]
    assert not t.paused


def test_handler_asks_connection_close():
    app = App()

    @app.route("/bye")
    class Bye(RequestHandler):
        def get(self):
            self.set_header("Connection", "close")
            self.write("bye")

    out, proto, t = Harness(app).request(b"GET /bye HTTP/1.1\r\nHost: x\r\n\r\nGET /bye HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.count(b"HTTP/1.1 200") == 1 and out.count(b"Connection: close") == 1
    assert t.closed


def test_send_error_odd_codes():
    app = App()

    @app.route("/e")
    class E(RequestHandler):
        def get(self):
            self.set_header("X-Dropped", "1")
            self.send_error(int(self.get_argument("c")), reason=self.get_argument("r", None))

    h = Harness(app)
    out, _, _ = h.request(b"GET /e?c=599 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 599 Unknown\r\n") and b"X-Dropped" not in out
    out, _, _ = h.request(b"GET /e?c=503&r=Later HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 503 Later\r\n") and out.endswith(b"503: Later\n")


def test_set_default_headers_and_request_host():
    app = App()

    @app.route("/d")
    class D(RequestHandler):
        def set_default_headers(self):
            self.set_header("X-Frame-Options", "DENY")

        def get(self):
            if self.get_argument("fail", None):
                raise HTTPError(403)
            self.write(self.request.full_url())

    h = Harness(app)
    out, _, _ = h.request(b"GET /d?x=1 HTTP/1.1\r\nHost: ex.test:8080\r\n\r\n")
    assert b"X-Frame-Options: DENY\r\n" in out and out.endswith(b"http://ex.test:8080/d?x=1")
    out, _, _ = h.request(b"GET /d?fail=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 403") and b"X-Frame-Options: DENY\r\n" in out


def test_slow_but_steady_body_is_not_cut(h):
    proto, t = h.connect()                  # request_timeout is 2 s
    proto.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
    for c in b"abcde":                      # 5 s in all, never a 2 s pause
        h.run_until(h.loop.time() + 1.0, step=0.25)
        assert not t.closed
        proto.data_received(bytes([c]))
    assert t.take().endswith(b"abcde")
    proto.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    h.run_until(h.loop.time() + 2.5, step=0.25)     # a pause longer than 2 s: 408
    assert t.take().startswith(b"HTTP/1.1 408 ") and t.closed


def test_no_408_while_we_paused_reading():
    app = App(request_timeout=1.0)
    got = []

    @app.route("/up")
    class Up(RequestHandler):
        stream_request_body = True
        max_body_size = 10 << 20

        async def put(self):
            await asyncio.sleep(3.0)           # a slow consumer: reading gets paused
            async for chunk in self.request.stream():
                got.append(len(chunk))
            self.write(str(sum(got)))

    h = Harness(app)
    proto, t = h.connect()
    proto.data_received(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 400000\r\n\r\n")
    proto.data_received(b"x" * 300000)
    assert t.paused
    h.run_until(h.loop.time() + 3.5, step=0.25)
    assert not t.closed and not t.paused
    proto.data_received(b"x" * 100000)
    h.run()
    assert t.take().endswith(b"400000")


def test_parsers_serve_later_connections_of_the_shard(h):
    """A connection's request parser goes on to parse other connections' requests (kept
    only when it stopped between two messages): each still sees its own requests."""
    proto, t = h.connect()
    proto.data_received(b"GET /seq/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                        b"GET /seq/2 HTTP/1.1\r\nHost: x\r\n\r\n")
    h.run()
    got = parse_responses(t.take())
    assert [b for _, _, b in got] == [b"seq 1"] and t.closed
    proto.connection_lost(None)
    spare = proto.shared.readers
    assert not spare            # (llhttp was stopped inside the second request)
    proto, t = h.connect()
    proto.data_received(b"GET /seq/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    proto.connection_lost(None)
    assert len(spare) == 1
    cut, t2 = h.connect()
    cut.data_received(b"GET /seq/3 HTTP/1.1\r\nHo")       # gone inside a request's head
    assert not spare
    cut.connection_lost(None)
    assert not spare
    for i in range(4):
        proto, t = h.connect()
        proto.data_received(f"GET /seq/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        proto.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
        h.run()
        assert [b for _, _, b in parse_responses(t.take())] == [f"seq {i}".encode(), b"ok"]
        proto.connection_lost(None)
        assert len(spare) == 1 and spare[0].conn is None
    bad, t = h.connect()
    bad.data_received(b"\x00\x01 nonsense\r\n\r\n")
    assert t.take().startswith(b"HTTP/1.1 400 ") and t.closed
    bad.connection_lost(None)
    assert not spare            # a parser that failed is not used again
