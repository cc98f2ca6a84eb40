"""--access-log: gunicorn's line format + request time, buffered per shard, reopened."""
import asyncio
import os
import time

from framework.web import accesslog
from framework.web.app import App
from framework.web.handler import RequestHandler
from framework.web.serving import WebOptions, build_app

from .fakes import Harness

WALL = 1784635200.0          # 2026-07-21 12:00:00 UTC


def _app():
    app = App()

    @app.route("/hello")
    class Hello(RequestHandler):
        def get(self):
            self.write("hello")

    @app.route("/slow")
    class Slow(RequestHandler):
        async def get(self):
            await asyncio.sleep(0.25)
            self.write("x" * 10)
            await self.flush()
            self.write("y" * 5)
    return app


def _serve(tmp_path, app=None, **opts):
    path = str(tmp_path / "access.log")
    app = build_app(app or _app(), WebOptions(access_log=path, **opts))
    app.config.access_log.clock = lambda: WALL
    return Harness(app), path


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _stamp():
    return time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(WALL)).encode()


def test_exact_line_format(tmp_path):
    h, path = _serve(tmp_path, forwarded_allow_ips="198.18.5.2")
    h.request(b"GET /hello?a=1 HTTP/1.1\r\nHost: x\r\nReferer: http://ref/\r\n"
              b"User-Agent: curl/8.5.0\r\nAuthorization: Basic Ym9iOnNlY3JldA==\r\n"
              b"X-Forwarded-For: 203.0.113.9\r\n\r\n")
    proto, t = h.connect()
    proto.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\nUser-Agent: a \"quoted\"\xff\r\n\r\n")
    h.run(0.3)
    h.request(b"POST /hello HTTP/1.0\r\n\r\n")      # 405, no headers at all
    h.run(1.0)
    assert _read(path).split(b"\n") == [
        b'203.0.113.9 - bob ' + _stamp() + b' "GET /hello?a=1 HTTP/1.1" 200 5 '
        b'"http://ref/" "curl/8.5.0" 0',
        b'198.18.5.2 - - ' + _stamp() + b' "GET /slow HTTP/1.1" 200 15 "-" '
        b'"a \\x22quoted\\x22\\xFF" 250000',
        b'198.18.5.2 - - ' + _stamp() + b' "POST /hello HTTP/1.0" 405 24 "-" "-" 0',
        b""]


def test_lines_are_buffered_then_written_together(tmp_path):
    h, path = _serve(tmp_path)
    writes = []
    real_write = os.write

    def counting_write(fd, data):
        writes.append(len(data))
        return real_write(fd, data)
    os.write = counting_write
    try:
        for _ in range(3):
            h.request(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read(path) == b"" and writes == []      # nothing yet: buffered
        h.run(1.0)
        assert _read(path).count(b"\n") == 3 and len(writes) == 1
        h.run(5.0)
        assert len(writes) == 1                         # idle: no more writes
    finally:
        os.write = real_write


def test_buffer_written_at_stop(tmp_path):
    h, path = _serve(tmp_path)
    h.request(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _read(path) == b""
    h.loop.run_until_complete(h.app.stop_shard(h.ctx))
    assert _read(path).count(b" 200 5 ") == 1


def test_reopen_after_rotation(tmp_path):
    h, path = _serve(tmp_path)
    h.request(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    h.run(1.0)
    os.rename(path, path + ".1")
    accesslog.reopen_all()          # what SIGUSR1 does in a worker
    h.run()
    assert os.path.exists(path)     # made again at once, not at the next request
    h.request(b"GET /hello?after HTTP/1.1\r\nHost: x\r\n\r\n")
    h.run(1.0)
    assert b"/hello?after" in _read(path) and b"after" not in _read(path + ".1")
    assert _read(path + ".1").count(b"\n") == 1


def test_asgi_and_wsgi_apps_are_logged_too(tmp_path):
    async def asgi(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi!"})

    def wsgi(environ, start_response):
        start_response("202 Accepted", [("Content-Type", "text/plain")])
        return [b"wsgi"]
    for name, app, line in (("asgi", asgi, b'"GET /a HTTP/1.1" 201 5 '),
                            ("wsgi", wsgi, b'"GET /a HTTP/1.1" 202 4 ')):
        d = tmp_path / name
        d.mkdir()
        h, path = _serve(d, app, lifespan="off")
        h.request(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        h.run(1.0)
        h.loop.run_until_complete(h.app.stop_shard(h.ctx))
        assert line in _read(path), name


def test_unsafe_target_and_basic_user():
    assert accesslog.basic_user(b"Basic Ym9iOnNlY3JldA==") == b"bob"
    assert accesslog.basic_user(b"Bearer abc") is None
    assert accesslog.basic_user(b"Basic !!!") is None
    assert accesslog._text('/a"b\\c\x7f') == "/a\\x22b\\x5Cc\\x7F"
