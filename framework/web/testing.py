"""Test an App without sockets: requests go through the real HTTP protocol on a fake
transport, and time is fake, so ``await self.reactor.sleep(30)`` takes no wall time.

    from framework.web.testing import TestClient

    def test_hello():
        client = TestClient(app)
        r = client.get("/hello/bob")
        assert r.status == 200 and r.text == "hello bob\\n"
        assert client.post("/notes", json={"text": "x"}).json()["id"] == 1
"""
import json as _json
from urllib.parse import urlencode

from framework.shard.context import ShardContext
from framework.shard.reactor import Reactor


class Response:
    __slots__ = ("status", "reason", "headers", "body", "raw")

    def __init__(self, status, reason, headers, body, raw):
        self.status = status
        self.reason = reason
        self.headers = headers          # {lower-case name: value} (repeats joined by ", ")
        self.body = body
        self.raw = raw                  # the bytes on the wire

    @property
    def text(self):
        return self.body.decode("utf-8")

    def json(self):
        return _json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.reason} ({len(self.body)} bytes)>"


class FakeTransport:
    """Collects what the protocol writes; records close/abort."""

    def __init__(self, peer=("198.18.0.1", 40000)):
        self.out = bytearray()
        self.closed = False
        self.aborted = False
        self.peer = peer

    def write(self, data):
        if not self.closed:
            self.out += data

    def close(self):
        self.closed = True

    def lingering_close(self):
        self.closed = True

    def abort(self):
        self.aborted = self.closed = True

    def is_closing(self):
        return self.closed

    def get_extra_info(self, name, default=None):
        return {"peername": self.peer, "sockname": ("198.18.0.2", 8080)}.get(name, default)


class TestClient:
    """One shard of ``app`` with a fake clock; each request on a fresh connection."""

    __test__ = False    # not a pytest test class

    def __init__(self, app, shard_id=0, shard_count=1, port=8080, wall_clock=1.7e9):
        self.app = app
        self.reactor = Reactor(0.0)
        self.ctx = ShardContext(self.reactor, shard_id, shard_count)
        app.on_shard_start(self.ctx)
        self.port = port
        self._wall0 = wall_clock
        self._http = app.http_factory(clock=lambda: self._wall0 + self.reactor.now)
        self.factories = app.listeners(port)

    @property
    def state(self):
        return self.ctx.state

    def advance(self, seconds):
        """Move the fake clock on, running every timer that falls due."""
        end = self.reactor.now + seconds
        while True:
            self._run_ready()
            d = self.reactor.next_deadline()
            if d is None or d > end:
                break
            self.reactor.run_once(d)
        self.reactor.run_once(end)
        self._run_ready()

    def _run_ready(self):
        r = self.reactor
        while r.has_ready():
            r.run_once(r.now)

    def request(self, method, path, body=b"", headers=None, json=None, form=None,
                timeout=300.0):
        """Send one request; fake time runs on until the response is complete."""
        headers = dict(headers or {})
        if json is not None:
            body = _json.dumps(json).encode()
            headers.setdefault("Content-Type", "application/json")
        elif form is not None:
            body = urlencode(form, doseq=True).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif isinstance(body, str):
            body = body.encode()
        headers.setdefault("Host", "testserver")
        if body or method in ("POST", "PUT", "PATCH"):
            headers.setdefault("Content-Length", str(len(body)))
        raw = f"{method} {path} HTTP/1.1\r\n".encode() + b"".join(
            f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items()) + b"\r\n" + body
        return self.raw(raw, head=method == "HEAD", timeout=timeout)

    def raw(self, data, head=False, timeout=300.0):
        """Send raw request bytes; returns the first Response."""
        proto = self._http(self.ctx)
        t = FakeTransport()
        proto.connection_made(t)
        proto.data_received(data)
        end = self.reactor.now + timeout
        while True:
            self._run_ready()
            r = _parse_one(bytes(t.out), head)
            if r is not None:
                break
            if t.closed:
                r = _parse_one(bytes(t.out), head, eof=True)
                if r is not None:
                    break
                raise AssertionError(f"connection closed without a complete response: "
                                     f"{bytes(t.out)[:200]!r}")
            d = self.reactor.next_deadline()
            if d is None or d > end:
                raise AssertionError(f"no response within {timeout} s of fake time")
            self.reactor.run_once(d)
        if not t.closed:
            t.close()
            proto.connection_lost(None)
            self._run_ready()
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def head(self, path, **kw):
        return self.request("HEAD", path, **kw)

    def post(self, path, body=b"", **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body=b"", **kw):
        return self.request("PUT", path, body, **kw)

    def patch(self, path, body=b"", **kw):
        return self.request("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def _parse_one(data, head=False, eof=False):
    """The first complete response in ``data``, or None (skips 100 Continue)."""
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = data[:end].decode("latin-1").split("\r\n")
        _version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        status = int(status)
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            headers[k] = f"{headers[k]}, {v.strip()}" if k in headers else v.strip()
        pos = end + 4
        if status == 100:
            data = data[pos:]
            continue
        if head or status in (204, 304):
            return Response(status, reason, headers, b"", data[:pos])
        if "content-length" in headers:
            n = int(headers["content-length"])
            if len(data) < pos + n:
                return None
            return Response(status, reason, headers, data[pos:pos + n], data[:pos + n])
        if headers.get("transfer-encoding") == "chunked":
            body = bytearray()
            while True:
                e = data.find(b"\r\n", pos)
                if e < 0:
                    return None
                n = int(data[pos:e], 16)
                if len(data) < e + 2 + n + 2:
                    return None
                body += data[e + 2:e + 2 + n]
                pos = e + 2 + n + 2
                if n == 0:
                    return Response(status, reason, headers, bytes(body), data[:pos])
        # a body that ends when the connection closes (HTTP/1.0 streaming)
        return Response(status, reason, headers, data[pos:], data) if eof else None
