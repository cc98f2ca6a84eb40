"""WebSockets served on both stacks, driven by the `websockets` library as the real
client (tests/integration/wsapp.py): our WebSocketHandler and a raw ASGI app.

Each stack's server runs in its own namespace (tests/web/servers.py: the kernel stack in
a forked worker, the user stack through `framework serve`); clients run in a client
namespace joined to it by a veth pair."""
import asyncio
import json
import os
import socket
import struct
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from tests.conftest import Lab
from tests.web.conftest import HTTP_PORT, SERVER_IP, Net
from tests.web.servers import http_request, in_netns, start_server

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "wsapp.py") + ":app"
ASGI_APP = os.path.join(HERE, "wsapp.py") + ":asgi_app"
MiB = 1 << 20


class Served:
    def __init__(self, stack, spec):
        if os.geteuid() != 0:
            pytest.fail("integration tests need root (CI runs as root)")
        self.lab = Lab()
        try:
            self.net = Net(self.lab, kernel_ip=stack == "kernel")
            self.handle = start_server(stack, spec, self.net.server_ns, SERVER_IP, HTTP_PORT,
                                       ifname=self.net.server_if)
        except BaseException:
            self.lab.cleanup()
            raise
        self.stack = stack
        self.ns = self.net.client_ns
        self.url = f"ws://{SERVER_IP}:{HTTP_PORT}"

    def run(self, fn, timeout=30):
        """Run ``fn(url)`` (a coroutine function) on a fresh asyncio loop in the client
        namespace."""
        with in_netns(self.ns):
            return asyncio.run(asyncio.wait_for(fn(self.url), timeout))

    def stats(self):
        r = http_request(self.ns, f"http://{SERVER_IP}:{HTTP_PORT}/stats")
        return json.loads(r.body)

    def wait_stats(self, pred, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if pred(s) or time.monotonic() > deadline:
                return s
            time.sleep(0.05)

    def close(self):
        try:
            self.handle.stop()
        finally:
            self.lab.cleanup()


@pytest.fixture(scope="module", params=["kernel", "user"])
def srv(request):
    s = Served(request.param, APP)
    yield s
    s.close()


@pytest.fixture(scope="module", params=["kernel", "user"])
def asgi_srv(request):
    s = Served(request.param, ASGI_APP)
    yield s
    s.close()


def ws(url, **kw):
    kw.setdefault("proxy", None)
    kw.setdefault("open_timeout", 10)
    return connect(url, **kw)


# ---- our WebSocketHandler -------------------------------------------------------------------
def test_echo_text_and_binary_up_to_16_mib(srv):
    big = bytes(range(256)) * (16 * MiB // 256)         # exactly the default limit

    async def go(url):
        async with ws(url + "/echo", max_size=None, compression=None) as c:
            await c.send("héllo")
            assert await c.recv() == "héllo"
            await c.send(b"\x00\xffbin")
            assert await c.recv() == b"\x00\xffbin"
            text = "ü" * (MiB // 2)
            await c.send(text)
            assert await c.recv() == text
            await c.send(big)
            got = await c.recv()
            assert len(got) == len(big) and got == big
            await c.send(big + b"!")                   # one byte over: 1009
            with pytest.raises(ConnectionClosedError) as e:
                await c.recv()
            assert e.value.rcvd.code == 1009

    srv.run(go, timeout=60)


def test_fragmented_messages(srv):
    async def go(url):
        async with ws(url + "/echo") as c:
            await c.send(["ab", "cd", "é"])
            assert await c.recv() == "abcdé"
            await c.send([b"\x01" * 70000, b"\x02" * 70000, b"\x03"])
            assert await c.recv() == b"\x01" * 70000 + b"\x02" * 70000 + b"\x03"

    srv.run(go)


def test_close_handshake_started_by_the_client(srv):
    async def go(url):
        async with ws(url + "/echo") as c:
            await c.send("x")
            await c.recv()
            await c.close(4001, "client bye")
            return c.close_code, c.close_reason

    assert srv.run(go) == (4001, "client bye")       # the server echoed the code
    s = srv.wait_stats(lambda s: ["/echo", 4001, "client bye"] in s["closes"])
    assert ["/echo", 4001, "client bye"] in s["closes"]


def test_close_handshake_started_by_the_server(srv):
    async def go(url):
        async with ws(url + "/echo") as c:
            await c.send("close:4002:server bye")
            with pytest.raises(ConnectionClosed):
                await c.recv()
            return c.close_code, c.close_reason

    assert srv.run(go) == (4002, "server bye")
    s = srv.wait_stats(lambda s: ["/echo", 4002, "server bye"] in s["closes"])
    assert ["/echo", 4002, "server bye"] in s["closes"]


def test_message_over_the_route_limit_closes_1009(srv):
    async def go(url):
        async with ws(url + "/small") as c:
            await c.send(b"k" * 1024)                  # at the limit
            assert await c.recv() == b"k" * 1024
            await c.send("k" * 1025)
            with pytest.raises(ConnectionClosedError) as e:
                await c.recv()
            return e.value.rcvd.code

    assert srv.run(go) == 1009


def test_permessage_deflate_and_subprotocol(srv):
    async def go(url):
        async with ws(url + "/proto", subprotocols=["v1.chat", "v2.chat"]) as c:
            ext = c.response.headers.get("Sec-WebSocket-Extensions", "")
            text = "compressible " * 20000
            await c.send(text)
            assert await c.recv() == text
            return c.subprotocol, ext

    sub, ext = srv.run(go)
    assert sub == "v2.chat" and ext.startswith("permessage-deflate")


def test_a_thousand_concurrent_sockets(srv):
    n = 1000
    before = srv.stats()["open"]

    async def go(url):
        ready = asyncio.Event()
        echoed = []
        connecting = asyncio.Semaphore(200)          # handshakes in flight (SYN backlog)

        async def one(i):
            async with connecting:
                c = await ws(url + "/echo", compression=None, ping_interval=None,
                             open_timeout=20)
            try:
                await c.send(f"n{i}")
                assert await c.recv() == f"n{i}"
                echoed.append(i)
                if len(echoed) == n:
                    ready.set()
                await ready.wait()                    # all n open at once
                await c.send(b"bye")
                assert await c.recv() == b"bye"
            finally:
                await c.close()

        async def all_open():
            await ready.wait()          # woken first: the clients wait meanwhile
            return srv.stats()["open"]

        results = await asyncio.gather(all_open(), *(one(i) for i in range(n)))
        return len(echoed), results[0]

    echoed, open_at_peak = srv.run(go, timeout=60)
    assert echoed == n and open_at_peak == before + n
    s = srv.wait_stats(lambda s: s["open"] == before)
    assert s["open"] == before


def _handshake(sock, path):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        b = sock.recv(4096)
        assert b, "closed during the handshake"
        head += b
    assert head.startswith(b"HTTP/1.1 101 ")


def test_keepalive_pings_keep_a_quiet_client_and_drop_a_silent_one(srv):
    async def go(url):
        async with ws(url + "/keepalive", ping_interval=None) as c:   # it answers pings
            await asyncio.sleep(1.0)                  # five pings, all answered
            await c.send("still here")
            return await c.recv()

    assert srv.run(go) == "still here"
    before = srv.stats()
    with in_netns(srv.ns):
        s = socket.create_connection((SERVER_IP, HTTP_PORT), timeout=5)
    try:
        _handshake(s, "/keepalive")                   # then never answers anything
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
    finally:
        s.close()
    assert data[:1] == b"\x89"                        # a Ping came first ...
    close = data[data.index(b"\x88"):]                # ... then a Close 1011, then FIN
    assert struct.unpack("!H", close[2:4])[0] == 1011
    st = srv.wait_stats(lambda st: len(st["closes"]) > len(before["closes"]))
    assert st["closes"][-1] == ["/keepalive", None, None]


def test_a_client_that_vanishes_mid_message(srv):
    before = srv.stats()
    with in_netns(srv.ns):
        s = socket.create_connection((SERVER_IP, HTTP_PORT), timeout=5)
    try:
        _handshake(s, "/echo")
        srv.wait_stats(lambda st: st["opened"] > before["opened"])
        # a masked binary frame announcing 1 MiB, of which 100 KiB arrive
        header = struct.pack("!BBQ", 0x82, 0x80 | 127, MiB) + b"\x00\x00\x00\x00"
        s.sendall(header + b"v" * 100_000)
        time.sleep(0.1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        s.close()                                      # RST: gone without a Close
    st = srv.wait_stats(lambda st: st["open"] == before["open"]
                        and len(st["closes"]) > len(before["closes"]))
    assert st["open"] == before["open"]
    assert st["closes"][len(before["closes"]):] == [["/echo", None, None]]   # once


# ---- a raw ASGI app ---------------------------------------------------------------------------
def test_asgi_websocket_echo(asgi_srv):
    async def go(url):
        async with ws(url + "/chat?x=1", subprotocols=["graphql-ws"], max_size=None) as c:
            assert c.subprotocol == "graphql-ws"
            await c.send("hi")
            assert await c.recv() == "hi"
            await c.send(b"\x00" * (4 * MiB))
            assert await c.recv() == b"\x00" * (4 * MiB)
            await c.send(["frag", "mented"])
            assert await c.recv() == "fragmented"
            await c.send("close:4100:asgi bye")
            with pytest.raises(ConnectionClosed):
                await c.recv()
            closed = (c.close_code, c.close_reason)
        with pytest.raises(InvalidStatus) as e:
            async with ws(url + "/deny"):
                pass
        return closed, e.value.response.status_code

    assert asgi_srv.run(go) == ((4100, "asgi bye"), 403)
    r = http_request(asgi_srv.ns, f"http://{SERVER_IP}:{HTTP_PORT}/plain")
    assert r.status == 200 and r.body == b"http here"


@pytest.mark.parametrize("stack", ["kernel", "user"])
def test_graceful_stop_closes_open_sockets_with_1001(stack):
    s = Served(stack, APP)
    try:
        async def go(url):
            async with ws(url + "/echo") as c:
                await c.send("x")
                assert await c.recv() == "x"
                s.handle.request_stop()
                with pytest.raises(ConnectionClosed):
                    await c.recv()
                return c.close_code

        assert s.run(go) == 1001
        assert s.handle.wait(8) == 0
    finally:
        s.close()
