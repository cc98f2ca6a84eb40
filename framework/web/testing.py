"""Test an App without sockets: requests go through the real HTTP protocol on a fake
transport, on an asyncio loop with a virtual clock (framework.vtime), so
``await asyncio.sleep(30)`` in a handler takes no wall time.

    from framework.web.testing import TestClient

    def test_hello():
        client = TestClient(app)
        r = client.get("/hello/bob")
        assert r.status == 200 and r.text == "hello bob\\n"
        assert client.post("/notes", json={"text": "x"}).json()["id"] == 1

Work a handler hands to ``loop.run_in_executor`` (or ``asyncio.to_thread``) runs on
real threads; the client waits for it (wall time) before it moves the virtual clock on.
"""
import json as _json
import threading
from urllib.parse import urlencode

from framework.context import ShardContext
from framework.vtime import VirtualClockLoop

EXECUTOR_WAIT = 30.0    # wall seconds a test waits for one executor job before failing


class TestLoop(VirtualClockLoop):
    """A VirtualClockLoop that also waits for executor jobs: ``run_ready()`` returns only
    once no ``run_in_executor`` future is pending, and ``advance()`` lets each job land
    before the clock passes the next timer (threads take no virtual time)."""

    __test__ = False

    def __init__(self, start=0.0):
        self._landed = threading.Condition()
        self._in_flight = set()
        super().__init__(start)

    def _write_to_self(self):
        # call_soon_threadsafe from an executor thread: its callback is in _ready now
        with self._landed:
            self._landed.notify_all()

    def run_in_executor(self, executor, func, *args):
        fut = super().run_in_executor(executor, func, *args)
        self._in_flight.add(fut)
        fut.add_done_callback(self._in_flight.discard)
        return fut

    def run_ready(self):
        while True:
            super().run_ready()
            if not self._in_flight:
                return
            with self._landed:
                if not self._landed.wait_for(lambda: self._ready, EXECUTOR_WAIT):
                    raise AssertionError(f"an executor job took over {EXECUTOR_WAIT} s")

    def advance(self, seconds):
        end = self.time() + seconds
        while True:
            self.run_ready()
            d = self.next_deadline()
            if d is None or d > end:
                break
            super().advance(d - self.time())
        super().advance(end - self.time())

    def __del__(self):
        # tests drop clients without close(): nothing is running, so close quietly
        if not self.is_closed() and not self.is_running():
            self.close()


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
    """One shard of ``app`` on a virtual clock; each request on a fresh connection."""

    __test__ = False    # not a pytest test class

    def __init__(self, app, shard_id=0, shard_count=1, port=8080, wall_clock=1.7e9):
        self.app = app
        self.loop = TestLoop(0.0)
        self.ctx = ShardContext(self.loop, shard_id, shard_count)
        self.ctx.install()      # current_shard(), as in a real shard
        self.loop.run_until_complete(app.start_shard(self.ctx))
        self.port = port
        self._wall0 = wall_clock
        self._http = app.http_factory(clock=lambda: self._wall0 + self.loop.time())
        self.factories = app.listeners(port)

    @property
    def state(self):
        return self.ctx.state

    def advance(self, seconds):
        """Move the virtual clock on, running every timer that falls due."""
        self.loop.advance(seconds)

    def close(self):
        """Run the app's on_stop hooks and close the loop."""
        loop = self.loop
        if not loop.is_closed():
            loop.run_until_complete(self.app.stop_shard(self.ctx))
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

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
        loop = self.loop
        # delivered from inside the loop, as a shard loop does: a sync handler may use
        # asyncio.get_running_loop() / create_task too
        loop.call_soon(proto.connection_made, t)
        loop.call_soon(proto.data_received, data)
        end = loop.time() + timeout
        while True:
            loop.run_ready()
            r = _parse_one(bytes(t.out), head)
            if r is not None:
                break
            if t.closed:
                r = _parse_one(bytes(t.out), head, eof=True)
                if r is not None:
                    break
                raise AssertionError(f"connection closed without a complete response: "
                                     f"{bytes(t.out)[:200]!r}")
            d = loop.next_deadline()
            if d is None or d > end:
                raise AssertionError(f"no response within {timeout} s of fake time")
            loop.advance(d - loop.time())
        if not t.closed:
            t.close()
            loop.call_soon(proto.connection_lost, None)
            loop.run_ready()
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
