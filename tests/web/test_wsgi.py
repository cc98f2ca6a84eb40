"""WSGI apps (PEP 3333) served by WsgiApp on a real shard (kernel sockets on a loopback
address of this test's own), every app wrapped in wsgiref.validate.validator, whose
warnings are errors here."""
import http.client
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from wsgiref.validate import validator

import pytest

from framework.shard.run import run_kernel_worker
from framework.web.serving import WebOptions, build_app
from framework.web.wsgi import WsgiApp

pytestmark = pytest.mark.filterwarnings("error::wsgiref.validate.WSGIWarning")

HOST = f"127.{(os.getpid() >> 8) & 255}.{os.getpid() & 255}.7"
PORT = 8089


@contextmanager
def serving(wsgi_app, validate=True, **opts):
    app = build_app(validator(wsgi_app) if validate else wsgi_app,
                    WebOptions(interface="wsgi", **opts))
    assert isinstance(app, WsgiApp)
    stop, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=run_kernel_worker, args=(app, HOST, PORT),
                         kwargs={"stop_event": stop, "ready": ready, "grace": 1.0},
                         daemon=True)
    t.start()
    assert ready.wait(10), "the shard did not start"
    try:
        yield app
    finally:
        stop.set()
        t.join(10)
        assert not t.is_alive()


def get(path, method="GET", body=None, headers=None):
    c = http.client.HTTPConnection(HOST, PORT, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        headers = {}
        for k, v in r.getheaders():
            k = k.lower()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        return r.status, headers, r.read()
    finally:
        c.close()


def raw(data, until_close=True):
    s = socket.create_connection((HOST, PORT), timeout=10)
    try:
        s.sendall(data)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b
            if not until_close and b"\r\n\r\n" in out:
                return out
    finally:
        s.close()


# ---- environ and bodies ---------------------------------------------------------------
def environ_app(environ, start_response):
    inp = environ["wsgi.input"]
    n = int(environ.get("CONTENT_LENGTH") or 0)
    first = inp.readline(n)
    rest = inp.read(n - len(first))
    shown = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int, tuple))}
    shown["body"] = (first + rest).decode("latin-1")
    environ["wsgi.errors"].write("a line to the log\n")
    data = json.dumps(shown).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


def test_environ_is_complete():
    with serving(environ_app, root_path="/mount"):
        status, headers, body = get("/mount/a%20b/%C3%A9?x=1&y=%20", headers={
            "X-Multi": "one", "Cookie": "c=1", "X_Smuggled": "no"})
        # http.client sends one X-Multi; repeated lines are joined (raw test below)
    env = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == "/mount"
    assert env["PATH_INFO"] == "/a b/\u00c3\u00a9"       # the UTF-8 bytes as latin-1
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["SERVER_NAME"] == HOST and env["SERVER_PORT"] == str(PORT)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1" or env["REMOTE_ADDR"].startswith("127.")
    assert env["HTTP_HOST"] == f"{HOST}:{PORT}" and env["HTTP_X_MULTI"] == "one"
    assert env["HTTP_COOKIE"] == "c=1"
    assert not [k for k in env if "SMUGGLED" in k]      # names with "_" are dropped
    assert env["wsgi.url_scheme"] == "http" and env["wsgi.version"] == [1, 0]
    assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert "CONTENT_LENGTH" not in env and "HTTP_CONTENT_LENGTH" not in env


def test_repeated_headers_joined_and_proxy_headers_trusted():
    with serving(environ_app, forwarded_allow_ips="127.0.0.0/8"):
        out = raw(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-A: 2\r\n"
                  b"X-Forwarded-For: 203.0.113.5\r\nX-Forwarded-Proto: https\r\n"
                  b"Connection: close\r\n\r\n")
    env = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert env["HTTP_X_A"] == "1, 2"
    assert env["REMOTE_ADDR"] == "203.0.113.5" and env["wsgi.url_scheme"] == "https"


def test_post_bodies_plain_and_chunked():
    with serving(environ_app):
        status, _, body = get("/p", "POST", body=b"line one\nline two\n",
                              headers={"Content-Type": "text/plain"})
        env = json.loads(body)
        assert (status, env["body"], env["CONTENT_TYPE"], env["CONTENT_LENGTH"]) == \
            (200, "line one\nline two\n", "text/plain", "18")
        out = raw(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                  b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        env = json.loads(out.split(b"\r\n\r\n", 1)[1])
        assert env["body"] == "hello world" and env["CONTENT_LENGTH"] == "11"


def lines_app(environ, start_response):
    inp = environ["wsgi.input"]
    first = inp.readline()
    lines = inp.readlines()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"|".join([first] + lines)]


def test_input_readline_readlines():
    with serving(lines_app):
        assert get("/", "PUT", body=b"a\nb\nc")[2] == b"a\n|b\n|c"


def test_body_over_max_is_413_and_app_not_called():
    called = []

    def app(environ, start_response):
        called.append(1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]
    with serving(app) as a:
        a.config.max_body_size = 100
        assert get("/", "POST", body=b"x" * 101)[0] == 413
    assert not called


# ---- responses ------------------------------------------------------------------------
def test_list_body_framed_by_length_and_write_callable_and_head():
    def app(environ, start_response):
        write = start_response("201 Created", [("Content-Type", "text/plain"),
                                               ("X-Two", "a"), ("X-Two", "b")])
        write(b"via write, ")
        return [b"then ", b"the list"]

    def listed(environ, start_response):
        start_response("299 Fine Indeed", [("content-type", "text/plain")])
        return [b"one ", b"two"]
    with serving(app):
        status, headers, body = get("/")
        assert (status, body) == (201, b"via write, then the list")
        assert headers["x-two"] == "a, b"
    with serving(listed, validate=False):       # the validator wraps the list
        out = raw(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        head, body = out.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 299 Fine Indeed\r\n")
        assert b"Content-Length: 7\r\n" in head and body == b"one two"
        assert head.count(b"Content-Type: text/plain\r\n") == 1
        out = raw(b"HEAD / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert out.endswith(b"\r\n\r\n") and b"one" not in out


def test_head_of_an_empty_stream_claims_no_length():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter(()) if environ["REQUEST_METHOD"] == "HEAD" else iter([b"a", b"b"])
    with serving(app):
        head = raw(b"HEAD / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    assert b"Content-Length" not in head


class Closing:
    """A body iterable that says when close() was called."""

    def __init__(self, blocks, gate=None, fail_at=None):
        self.blocks = blocks
        self.gate = gate
        self.fail_at = fail_at
        self.closed = threading.Event()
        self.produced = 0

    def __iter__(self):
        for i, b in enumerate(self.blocks):
            if i == self.fail_at:
                raise RuntimeError("boom mid-body")
            if i == 1 and self.gate is not None:
                # the client has the first block before the second is even made
                assert self.gate.wait(5), "first block not delivered before the next"
            self.produced += 1
            yield b

    def close(self):
        self.closed.set()


def test_streamed_blocks_go_out_one_by_one_and_close_is_called():
    gate = threading.Event()
    body = Closing([b"first;", b"second;", b"third"], gate=gate)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body
    with serving(app):
        s = socket.create_connection((HOST, PORT), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        got = b""
        while b"first;" not in got:
            got += s.recv(65536)
        assert b"Transfer-Encoding: chunked" in got
        gate.set()
        while not got.endswith(b"0\r\n\r\n"):
            got += s.recv(65536)
        assert b"second;" in got and b"third" in got
        assert body.closed.wait(5)
        # keep-alive: the connection serves the next request
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        s.close()


def test_back_pressure_stops_the_app_while_the_client_does_not_read():
    block = b"x" * 65536
    total = 1024                        # 64 MiB in all
    body = Closing([block] * total)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(block) * total))])
        return body
    with serving(app):
        s = socket.create_connection((HOST, PORT), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        time.sleep(1.0)
        stalled_at = body.produced
        assert stalled_at < total // 2, f"the app ran ahead: {stalled_at} of {total} blocks"
        n = 0
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            n += len(b)
        s.close()
        assert n >= len(block) * total and body.produced == total
        assert body.closed.wait(5)


def test_client_gone_mid_stream_closes_the_iterable():
    gate = threading.Event()
    body = Closing([b"a" * 1000] * 10000, gate=gate)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body
    with serving(app):
        s = socket.create_connection((HOST, PORT), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        s.recv(100)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()                           # RST
        gate.set()
        assert body.closed.wait(5)
        assert body.produced < 10000


# ---- errors ---------------------------------------------------------------------------
def test_exception_before_headers_is_500_logged_and_closes(caplog):
    def app(environ, start_response):
        raise ValueError("secret detail")
    with serving(app):
        out = raw(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")    # server closes: raw returns
    assert out.startswith(b"HTTP/1.1 500 ") and b"Connection: close" in out
    assert b"secret" not in out
    assert any("secret detail" in (r.exc_text or "") or
               (r.exc_info and "secret detail" in str(r.exc_info[1]))
               for r in caplog.records if r.name == "framework.wsgi")


def test_exception_after_headers_cuts_the_connection_and_closes_the_iterable():
    body = Closing([b"part one", b"part two"], fail_at=1)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body
    with serving(app):
        s = socket.create_connection((HOST, PORT), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        out, cut = b"", False
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                cut = True                  # an RST: the response is broken on purpose
                break
            if not b:
                break
            out += b
        s.close()
    assert cut or (out.startswith(b"HTTP/1.1 200 ") and not out.endswith(b"0\r\n\r\n"))
    assert b"part two" not in out
    assert body.closed.wait(5)


def test_exc_info_replaces_the_status_before_anything_went_out():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("x")
        except KeyError:
            import sys
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"sorry"]

    def twice(environ, start_response):
        start_response("200 OK", [])
        start_response("200 OK", [])        # no exc_info: an error -> 500
        return [b""]
    with serving(app):
        assert get("/")[0::2] == (503, b"sorry")
    with serving(twice, validate=False):
        assert get("/")[0] == 500


# ---- threads --------------------------------------------------------------------------
def test_a_blocking_view_does_not_stop_the_shard():
    released, entered = threading.Event(), threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/block":
            entered.set()
            assert released.wait(10)         # blocks this pool thread, not the loop
            time.sleep(0.05)
            body = b"unblocked"
        else:
            released.set()
            body = b"released"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    with serving(app, threads=2):
        blocked = http.client.HTTPConnection(HOST, PORT, timeout=10)
        blocked.request("GET", "/block")
        assert entered.wait(10)             # the view is blocked in its thread now
        assert get("/release")[2] == b"released"
        assert blocked.getresponse().read() == b"unblocked"
        blocked.close()


def test_the_pool_is_bounded_by_threads():
    lock = threading.Lock()
    active, peak = [0], [0]
    go = threading.Event()

    def app(environ, start_response):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        go.wait(10)
        with lock:
            active[0] -= 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [threading.current_thread().name.encode()]
    with serving(app, threads=2):
        conns = [http.client.HTTPConnection(HOST, PORT, timeout=10) for _ in range(3)]
        for c in conns:
            c.request("GET", "/")
        deadline = time.monotonic() + 5
        while active[0] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert active[0] == 2               # the third waits for a free thread
        go.set()
        names = {c.getresponse().read() for c in conns}
        for c in conns:
            c.close()
    assert peak[0] == 2 and len(names) <= 2 and all(n.startswith(b"wsgi-0") for n in names)
