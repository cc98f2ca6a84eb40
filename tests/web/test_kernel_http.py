"""Real clients (a curl-like raw HTTP client, http.client, urllib, raw sockets) against a
served app. No curl binary: servers.http_request does what the tests used curl for."""
import http.client
import json
import socket
import time
import urllib.request

import pytest

from .conftest import STACKS
from .fakes import parse_responses
from .servers import connect, http_request, in_netns, recv_responses, recv_until_closed


def test_hello_raw_response(server):
    r = http_request(server.ns, server.url + "/")      # (was curl -i: head, blank, body)
    head, body = r.raw.split(b"\r\n\r\n", 1)
    assert body == b"Hello, World!"
    assert b"Content-Length: 13" in head and b"Content-Type: text/plain" in head
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"\r\nDate: " in head


def test_http_client_keepalive(server):
    with in_netns(server.ns):
        c = http.client.HTTPConnection(server.ip, server.port, timeout=5)
        c.connect()
    try:
        for i in range(20):
            c.request("GET", f"/seq/{i}")
            r = c.getresponse()
            assert r.status == 200 and r.read() == f"seq {i}".encode()
        c.request("GET", "/json")
        r = c.getresponse()
        assert r.getheader("Content-Type") == "application/json; charset=UTF-8"
        assert json.loads(r.read()) == {"message": "Hello, World!"}
        c.request("POST", "/echo", body=b"x" * 10000)
        r = c.getresponse()
        assert r.read() == b"x" * 10000
    finally:
        c.close()


def test_urllib_args_and_headers(server):
    with in_netns(server.ns):
        req = urllib.request.Request(server.url + "/info?a=1&b=x%20y&a=2",
                                     headers={"x-TEST": "yes"})
        with urllib.request.urlopen(req, timeout=5) as r:
            info = json.loads(r.read())
    assert info["args"] == {"a": ["1", "2"], "b": ["x y"]}
    assert info["x"] == "yes"
    assert info["remote_ip"] == "198.18.5.2"
    assert info["shard"] == [0, 1]


def test_pipelining_in_order(server):
    s = connect(server.ns, server.ip, server.port)
    try:
        reqs = b"".join(f"GET /seq/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(50))
        s.sendall(reqs)
        got = recv_responses(s, 50, parse_responses)
        assert [b for _, _, b in got] == [f"seq {i}".encode() for i in range(50)]
    finally:
        s.close()


def test_pipelining_async_keeps_order(server):
    s = connect(server.ns, server.ip, server.port)
    try:
        s.sendall(b"GET /slow/1?t=0.2 HTTP/1.1\r\nHost: x\r\n\r\nGET /seq/2 HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /slow/3?t=0.05 HTTP/1.1\r\nHost: x\r\n\r\nGET /seq/4 HTTP/1.1\r\nHost: x\r\n\r\n")
        got = recv_responses(s, 4, parse_responses)
        assert [b for _, _, b in got] == [b"slow 1", b"seq 2", b"slow 3", b"seq 4"]
    finally:
        s.close()


def test_async_does_not_block_other_connections(server):
    slow = connect(server.ns, server.ip, server.port)
    fast = connect(server.ns, server.ip, server.port)
    try:
        t0 = time.monotonic()
        slow.sendall(b"GET /slow/1?t=1.0 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.05)
        fast.sendall(b"GET /seq/9 HTTP/1.1\r\nHost: x\r\n\r\n")
        got = recv_responses(fast, 1, parse_responses)
        assert got[0][2] == b"seq 9"
        # well before the slow one's 1 s (a blocked loop answers after it); margin for a
        # loaded machine
        assert time.monotonic() - t0 < 0.9
        assert recv_responses(slow, 1, parse_responses)[0][2] == b"slow 1"
        assert time.monotonic() - t0 >= 0.95
    finally:
        slow.close()
        fast.close()


def test_500_then_keeps_serving(server):
    a = connect(server.ns, server.ip, server.port)
    b = connect(server.ns, server.ip, server.port)
    try:
        a.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        (status, headers, body), = recv_responses(a, 1, parse_responses)
        assert status == 500
        assert b"secret" not in body and b"Traceback" not in body
        b.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert recv_responses(b, 1, parse_responses)[0][2] == b"Hello, World!"
        a.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")   # the same connection survives too
        assert recv_responses(a, 1, parse_responses)[0][2] == b"Hello, World!"
    finally:
        a.close()
        b.close()


def test_connection_close_and_http10(server):
    s = connect(server.ns, server.ip, server.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\n")
    data = recv_until_closed(s)
    s.close()
    (status, headers, body), = parse_responses(data)
    assert body == b"Hello, World!" and headers["connection"] == "close"
    s = connect(server.ns, server.ip, server.port)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = recv_until_closed(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"\r\n\r\nHello, World!")
    s = connect(server.ns, server.ip, server.port)
    try:
        s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        (st, h, b), = recv_responses(s, 1, parse_responses)
        assert h["connection"] == "keep-alive"
        s.sendall(b"GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert json.loads(recv_responses(s, 1, parse_responses)[0][2])
    finally:
        s.close()


def test_chunked_request_and_response(server):
    s = connect(server.ns, server.ip, server.port)
    try:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        assert recv_responses(s, 1, parse_responses)[0][2] == b"hello world"
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        (st, h, body), = recv_responses(s, 1, parse_responses)
        assert h["transfer-encoding"] == "chunked"
        assert body == b"part0\npart1\npart2\nend\n"
    finally:
        s.close()
    r = http_request(server.ns, server.url + "/stream")
    assert r.body == b"part0\npart1\npart2\nend\n"


def test_expect_100_continue(server):
    body = "z" * 5000
    r = http_request(server.ns, server.url + "/echo", "POST", body=body.encode(),
                     headers={"Expect": "100-continue"})
    assert r.body == body.encode()
    assert b"HTTP/1.1 100 Continue" in r.interim[0]
    s = connect(server.ns, server.ip, server.port)
    try:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"abcde")
        assert recv_responses(s, 1, parse_responses)[0][2] == b"abcde"
    finally:
        s.close()


def test_head_404_405(server):
    s = connect(server.ns, server.ip, server.port)
    try:
        s.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(1000)
        assert b"Content-Length: 13\r\n" in data and data.endswith(b"\r\n\r\n")
        s.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\nDELETE / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = recv_responses(s, 3, parse_responses)
        assert [g[0] for g in got] == [404, 405, 200]
        assert got[1][1]["allow"] == "GET, HEAD"
    finally:
        s.close()


def test_limits_413_431_400(server):
    with in_netns(server.ns):
        c = http.client.HTTPConnection(server.ip, server.port, timeout=5)
        c.request("POST", "/echo", body=b"y" * (200 * 1024))
        r = c.getresponse()
        assert r.status == 413
        c.close()
    s = connect(server.ns, server.ip, server.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    data = recv_until_closed(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 431 ")
    s = connect(server.ns, server.ip, server.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000)   # never finished
    data = recv_until_closed(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 431 ")
    s = connect(server.ns, server.ip, server.port)
    s.sendall(b"GARBAGE\x01 / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = recv_until_closed(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in data


def test_idle_and_slowloris_timeouts(server):
    idle = connect(server.ns, server.ip, server.port)
    slow = connect(server.ns, server.ip, server.port)
    try:
        t0 = time.monotonic()
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert recv_responses(idle, 1, parse_responses)[0][2] == b"Hello, World!"
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for _ in range(4):       # a header line every 0.25 s: never completes in time
            time.sleep(0.25)
            try:
                slow.sendall(b"X-a: b\r\n")
            except OSError:
                break
        data = recv_until_closed(slow)
        assert data.startswith(b"HTTP/1.1 408 ")
        assert recv_until_closed(idle) == b""     # closed by the server, no response
        assert time.monotonic() - t0 < 3
    finally:
        idle.close()
        slow.close()


def test_tcp_stream_echo(server):
    s = connect(server.ns, server.ip, 8007)
    try:
        for i in range(5):
            msg = f"hello {i}\n".encode() * 100
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                got += s.recv(65536)
            assert got == msg
        s.shutdown(socket.SHUT_WR)
        assert recv_until_closed(s) == b""
    finally:
        s.close()


def test_many_connections(server):
    socks = []
    try:
        # each asks at once: the test app closes a connection idle for 0.6 s, and making
        # 50 connections can take that long on a loaded machine
        for _ in range(50):
            s = connect(server.ns, server.ip, server.port)
            socks.append(s)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in socks:
            assert recv_responses(s, 1, parse_responses)[0][2] == b"Hello, World!"
    finally:
        for s in socks:
            s.close()


@pytest.mark.app("apps.hello:app")
def test_apps_hello(server):
    r = http_request(server.ns, server.url + "/")
    assert r.body == b"Hello, World!"
    r = http_request(server.ns, server.url + "/json")
    assert json.loads(r.body) == {"message": "Hello, World!"}


def test_graceful_stop_finishes_inflight(server, tmp_path):
    s = connect(server.ns, server.ip, server.port)
    idle = connect(server.ns, server.ip, server.port)
    try:
        mark = tmp_path / "inflight"
        s.sendall(b"GET /slow/1?t=0.5&mark=%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(mark).encode())
        # stop once the handler runs (a fixed 0.1 s could pass on a loaded machine before
        # the server had read the request: it then looked like an idle connection)
        deadline = time.monotonic() + 10
        while not mark.exists():
            assert time.monotonic() < deadline, "the request never reached the handler"
            time.sleep(0.005)
        t0 = time.monotonic()
        server.handle.request_stop()
        data = recv_until_closed(s)
        (st, hd, body), = parse_responses(data)
        assert body == b"slow 1" and hd["connection"] == "close"
        assert recv_until_closed(idle) == b""      # idle keep-alive: closed at once
        assert server.handle.wait(5) == 0
        assert time.monotonic() - t0 < 3
    finally:
        s.close()
        idle.close()


def test_large_responses_slow_reader(server):
    s = connect(server.ns, server.ip, server.port)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /big?n=96 HTTP/1.1\r\nHost: x\r\n\r\nGET /bigsync HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)       # let the server hit its high-water mark and pause
        got = recv_responses(s, 3, parse_responses)
        big = got[0][2]
        assert len(big) == 96 * 65536
        assert all(big[i * 65536:(i + 1) * 65536] == bytes([65 + i % 26]) * 65536
                   for i in range(96))
        assert got[1][2] == b"s" * 3000000 and got[2][2] == b"Hello, World!"
    finally:
        s.close()


def test_streamed_upload(server):
    import hashlib
    import os
    body = os.urandom(6 << 20)
    with in_netns(server.ns):
        c = http.client.HTTPConnection(server.ip, server.port, timeout=10)
        c.connect()
    try:
        c.request("PUT", "/upload", body=body)
        r = c.getresponse()
        assert r.status == 200
        assert json.loads(r.read()) == {"bytes": len(body),
                                        "sha256": hashlib.sha256(body).hexdigest()}
        c.request("PUT", "/upload", body=iter([b"a" * 1000, b"b" * 2000]),
                  encode_chunked=True)   # chunked upload
        r = c.getresponse()
        assert json.loads(r.read())["bytes"] == 3000
        c.request("PUT", "/upload", body=b"x" * (17 << 20))
        assert c.getresponse().status == 413
    finally:
        c.close()


@pytest.mark.app("apps.hello:app")   # its idle timeout (60 s) outlasts making 1000 connections
def test_thousand_idle_connections(server):
    # the client end holds 1000 sockets in this process: like any load generator it
    # raises its soft descriptor limit (a common default is 1024, and the session's own
    # descriptors come on top); the servers raise theirs themselves
    import resource
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    if limits[0] != resource.RLIM_INFINITY and limits[0] < 4096:
        want = 4096 if limits[1] == resource.RLIM_INFINITY else min(4096, limits[1])
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, limits[1]))
    socks = []
    try:
        with in_netns(server.ns):
            for _ in range(1000):
                socks.append(socket.create_connection((server.ip, server.port), timeout=5))
        s = socks[-1]
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert recv_responses(s, 1, parse_responses)[0][2] == b"Hello, World!"
        socks[0].sendall(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
        assert json.loads(recv_responses(socks[0], 1, parse_responses)[0][2])
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)


@pytest.mark.parametrize("stack", STACKS)
def test_static_over_the_wire(lab, tmp_path, stack):
    import os as _os

    from .conftest import SERVER_IP, Net
    from .servers import start_server
    root = tmp_path / "www"
    root.mkdir()
    data = _os.urandom(700_000)
    (root / "big.bin").write_bytes(data)
    (root / "index.txt").write_text("hello static\n")
    (tmp_path / "secret").write_text("no")
    appfile = tmp_path / "static_app.py"
    appfile.write_text(f"from apps.static import make_app\napp = make_app({str(root)!r})\n")
    net = Net(lab, kernel_ip=stack == "kernel")
    h = start_server(stack, f"{appfile}:app", net.server_ns, SERVER_IP, 8080,
                     ifname=net.server_if)
    try:
        url = f"http://{SERVER_IP}:8080"
        r = http_request(net.client_ns, url + "/big.bin")    # (raises if cut short)
        assert r.body == data
        r = http_request(net.client_ns, url + "/big.bin", headers={"Range": "bytes=1000-1999"})
        assert r.body == data[1000:2000]
        r = http_request(net.client_ns, url + "/index.txt")
        etag = [l.split(b": ", 1)[1] for l in r.raw.split(b"\r\n") if l.lower().startswith(b"etag:")][0]
        r = http_request(net.client_ns, url + "/index.txt",
                         headers={"If-None-Match": etag.decode()})
        assert r.status == 304
        for path in ("/../secret", "/%2e%2e/secret", "/..%2Fsecret"):
            r = http_request(net.client_ns, url + path)     # the path as is (--path-as-is)
            assert r.status == 404, path
    finally:
        assert h.stop() == 0


def test_pipelined_flood_from_a_client_that_does_not_read(server):
    import psutil
    proc = psutil.Process(server.handle.worker_pid())
    rss0 = proc.memory_info().rss
    s = connect(server.ns, server.ip, server.port)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        n = 300
        reqs = b"GET /bigsync?size=100000 HTTP/1.1\r\nHost: x\r\n\r\n" * n
        s.setblocking(False)
        sent = 0
        t0 = time.monotonic()
        while sent < len(reqs) and time.monotonic() - t0 < 1.0:
            try:
                sent += s.send(reqs[sent:])
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(0.3)
        grown = proc.memory_info().rss - rss0
        assert grown < 12 << 20, f"server buffered {grown >> 20} MiB for a client that reads nothing"
        s.setblocking(True)
        s.sendall(reqs[sent:])
        got = total = 0
        tail = b""
        marker = b"HTTP/1.1 200 OK"
        while got < n and total < n * 200000:
            b = s.recv(1 << 20)
            assert b
            total += len(b)
            chunk = tail + b
            got += chunk.count(marker)
            tail = chunk[-(len(marker) - 1):]
        assert got == n
    finally:
        s.close()


def test_tcp_echo_client_that_does_not_read(server):
    import psutil
    proc = psutil.Process(server.handle.worker_pid())
    rss0 = proc.memory_info().rss
    s = connect(server.ns, server.ip, 8007)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.setblocking(False)
        blob = b"e" * (1 << 20)
        sent = 0
        t0 = last_progress = time.monotonic()
        # with flow control the server stops reading once its output is stuck, so our
        # sends stall for good; without it they would go on (into the server's memory)
        while time.monotonic() - last_progress < 0.3:
            assert time.monotonic() - t0 < 3.0, f"never stalled: {sent >> 20} MiB taken"
            try:
                sent += s.send(blob)
                last_progress = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        assert proc.memory_info().rss - rss0 < 12 << 20
        s.setblocking(True)
        s.shutdown(socket.SHUT_WR)
        got = len(recv_until_closed(s, limit=1 << 30))
        assert got == sent
    finally:
        s.close()


def test_pipelined_then_half_close_gets_every_response(server):
    s = connect(server.ns, server.ip, server.port)
    try:
        n = 60
        s.sendall(b"GET /bigsync?size=100000 HTTP/1.1\r\nHost: x\r\n\r\n" * n)
        s.shutdown(socket.SHUT_WR)          # EOF while the server is still busy answering
        data = recv_until_closed(s, limit=1 << 30)
        got = parse_responses(data)
        # (the last one says "Connection: close" only if the EOF was seen before it was
        # made; either way the server closes once everything is out)
        assert len(got) == n and all(len(b) == 100000 for _, _, b in got)
    finally:
        s.close()
