"""apps/hello, apps/echo, apps/kv and the examples, on the fake transport."""
import json

import pytest

from framework import App, StreamHandler
from framework.web.loader import AppLoadError, load_app

from .fakes import Harness, parse_responses


def one(h, raw):
    out, _, _ = h.request(raw)
    (st, hd, body), = parse_responses(out)
    return st, hd, body


def test_hello():
    h = Harness(load_app("apps.hello:app"))
    st, hd, body = one(h, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (st, body, hd["content-type"], hd["content-length"]) == (200, b"Hello, World!", "text/plain", "13")
    st, hd, body = one(h, b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
    assert body == b'{"message": "Hello, World!"}' and hd["content-type"].startswith("application/json")


def test_echo_http_and_stream():
    app = load_app("apps.echo:app")
    assert sorted(app.listeners(8080)) == [8007, 8080]
    h = Harness(app)
    st, hd, body = one(h, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nping")
    assert body == b"ping"
    proto, t = h.connect(8007)
    proto.data_received(b"abc")
    proto.data_received(b"def")
    assert t.take() == b"abcdef"
    assert proto.eof_received() is False and t.closed


def test_kv():
    h = Harness(load_app("apps.kv:app"))
    assert one(h, b"GET /kv/a HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 404
    assert one(h, b"PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz")[0] == 201
    assert one(h, b"PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nXYZ")[0] == 204
    assert one(h, b"GET /kv/a HTTP/1.1\r\nHost: x\r\n\r\n")[2] == b"XYZ"
    assert json.loads(one(h, b"GET /kv HTTP/1.1\r\nHost: x\r\n\r\n")[2]) == {"keys": ["a"], "shard": 0}
    assert one(h, b"DELETE /kv/a HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 204
    assert one(h, b"DELETE /kv/a HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 404
    assert one(h, b"GET /kv/" + b"k" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 400


def test_examples():
    h = Harness(load_app("examples/hello.py:app"))
    assert one(h, b"GET /hello/bob?greeting=hi HTTP/1.1\r\nHost: x\r\n\r\n")[2] == b"hi bob (shard 0 of 1)\n"
    h = Harness(load_app("examples.json_api:app"))
    st, hd, body = one(h, b'POST /notes HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n{"text": "milk"}')
    assert st == 201 and hd["location"] == "/notes/1"
    assert json.loads(one(h, b"GET /notes/1 HTTP/1.1\r\nHost: x\r\n\r\n")[2]) == {"id": 1, "text": "milk"}
    assert one(h, b"POST /notes HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n{x}")[0] == 400
    assert one(h, b"GET /notes/x HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 404
    assert one(h, b"DELETE /notes/1 HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 204
    h = Harness(load_app("examples/echo_server.py:app"))
    proto, t = h.connect(8007)
    proto.data_received(b"one\ntw")
    proto.data_received(b"o\nbye\nignored\n")
    assert t.take() == b"welcome, say something\none\ntwo\nbye\n" and t.closed
    h = Harness(load_app("examples/async_handler.py:app"))
    out, proto, t = h.request(b"GET /countdown HTTP/1.1\r\nHost: x\r\n\r\n")
    h.run_until(h.loop.time() + 1.0, step=0.1)
    (st, hd, body), = parse_responses(out + t.take())
    assert body == b"3...\n2...\n1...\nliftoff\n"
    out, proto, t = h.request(b"GET /slow?delay=0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
    h.run_until(h.loop.time() + 0.5, step=0.1)
    assert json.loads(parse_responses(t.take())[0][2]) == {"slept": 0.3, "shard": 0}


def test_stream_handler_callbacks_and_errors(caplog):
    events = []
    app = App()

    @app.stream(9000)
    class S(StreamHandler):
        def on_connect(self):
            events.append(("connect", self.remote_address[0], self.ctx.shard_id))

        def on_data(self, data):
            if data == b"boom":
                raise RuntimeError("stream failure")
            self.write(data.upper())

        def on_eof(self):
            events.append("eof")
            self.write(b"bye")
            return True

        def on_close(self):
            events.append("close")

    assert list(app.listeners(8080)) == [9000]     # no routes: no HTTP listener
    h = Harness(app, port=9000)
    proto, t = h.connect(9000)
    proto.data_received(b"hi")
    assert proto.eof_received() is True and not t.closed
    proto.connection_lost(None)
    assert t.take() == b"HIbye"
    assert events == [("connect", "198.18.5.2", 0), "eof", "close"]
    proto, t = h.connect(9000)
    proto.data_received(b"boom")
    assert t.aborted and "stream failure" in caplog.text
    with pytest.raises(ValueError):
        app.stream(9000, S)
    with pytest.raises(TypeError):
        app.stream(9001, object)


def test_load_app_errors(tmp_path):
    assert isinstance(load_app("apps.hello"), App)            # attr defaults to "app"
    f = tmp_path / "my-app.py"
    f.write_text("from framework import App\nmain = App()\ndef factory():\n    return App()\nx = 3\n")
    assert isinstance(load_app(f"{f}:main"), App)
    assert isinstance(load_app(f"{f}:factory"), App)
    cases = {
        "no_such_module_xyz:app": "no module named 'no_such_module_xyz'",
        f"{tmp_path}/missing.py:app": "not found",
        f"{f}:nope": "has no attribute 'nope' (Apps there: main)",
        f"{f}:x": "is a int, not a framework App",
        "apps.hello:1bad": "not a valid attribute name",
        "": "app spec must be",
    }
    for spec, msg in cases.items():
        with pytest.raises(AppLoadError) as e:
            load_app(spec)
        assert msg in str(e.value), (spec, str(e.value))
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('broken at import')\n")
    with pytest.raises(AppLoadError, match="broken at import"):
        load_app(f"{bad}:app")
    imp = tmp_path / "imp.py"
    imp.write_text("import no_such_dependency_q\n")
    with pytest.raises(AppLoadError, match="no_such_dependency_q"):
        load_app(f"{imp}:app")
