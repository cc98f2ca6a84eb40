"""Outbound connections from a running server: 1,000 from 2 shards to a kernel server
on the host side (none lost, none steered to the wrong shard), and examples/proxy.py in
front of a kernel HTTP server."""
import asyncio
import http.client
import http.server
import json
import os
import random
import threading
import time

from integration.serve_helpers import ROOT, Server, free_subnet

HERE = os.path.dirname(os.path.abspath(__file__))


class EchoServer(threading.Thread):
    """A kernel-socket server: reads one line, echoes it, closes."""

    def __init__(self, host):
        super().__init__(daemon=True)
        self.host = host
        self.port = random.randrange(20000, 30000)
        self.count = 0
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()

    async def handle(self, r, w):
        line = await r.readline()
        w.write(line)
        await w.drain()
        w.close()
        self.count += 1

    def run(self):
        asyncio.set_event_loop(self.loop)
        srv = self.loop.run_until_complete(
            asyncio.start_server(self.handle, self.host, self.port, backlog=2048))
        self.ready.set()
        self.loop.run_forever()
        srv.close()
        self.loop.run_until_complete(srv.wait_closed())
        self.loop.close()               # its selector and self-pipe descriptors

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.join(5)


def conns_per_shard(s, n=2):
    out = {}
    for _ in range(64):
        c = http.client.HTTPConnection(s.ip, 8080, timeout=60)
        c.request("GET", "/shard")
        k = int(c.getresponse().read())
        if k in out:
            c.close()
        else:
            out[k] = c
        if len(out) == n:
            return out
    raise AssertionError(f"connections reached only shards {sorted(out)}")


def stats(s):
    from integration.test_serve import run_stats
    return run_stats(s)


def test_thousand_outbound_connections_from_two_shards():
    s = Server(app=os.path.join(HERE, "connectapp.py") + ":app", cores=2, cwd=ROOT)
    echo = None
    try:
        echo = EchoServer(s.host_ip)
        echo.start()
        assert echo.ready.wait(5)
        conns = conns_per_shard(s)
        before = stats(s)
        results = {}

        def fan(k, c):
            c.request("GET", f"/fanout?host={s.host_ip}&port={echo.port}&n=500&c=50")
            results[k] = json.loads(c.getresponse().read())

        threads = [threading.Thread(target=fan, args=kc) for kc in conns.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        for k in (0, 1):
            assert results[k] == {"shard": k, "ok": 500, "failed": 0, "errors": []}, results
        assert echo.count == 1000
        time.sleep(1.1)                    # one more publication of the counters
        after = stats(s)
        for k in (0, 1):
            d = {n: after[k].get(n, 0) - before[k].get(n, 0) for n in after[k]}
            assert d["tcp.active_opens"] == 500, d
            # every reply reached the shard that connected: nothing arrived for a flow
            # this shard does not have, nothing was forwarded between shards
            assert d["drop.tcp.no_listener"] == 0 and d["tcp.rst_sent"] == 0, d
            assert d.get("fwd.out", 0) == 0 and d.get("fwd.in", 0) == 0
        for c in conns.values():
            c.close()
        assert s.stop() == 0, s.stderr()
        assert s.leftovers() == []
    finally:
        if echo is not None and echo.is_alive():
            echo.stop()
        s.cleanup()


def test_reverse_proxy_example(tmp_path, monkeypatch):
    (tmp_path / "hello.txt").write_bytes(b"hello from the backend\n" * 100)
    s = None
    backend = None
    try:
        port = random.randrange(30000, 40000)
        subnet = free_subnet()
        host_ip = subnet[:-len("0/24")] + "1"
        monkeypatch.setenv("FRAMEWORK_PROXY_BACKEND", f"{host_ip}:{port}")
        s = Server(app="examples/proxy.py:app", cores=2, cwd=ROOT, subnet=subnet)
        assert s.host_ip == host_ip
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
            *a, directory=str(tmp_path), **k)
        backend = http.server.ThreadingHTTPServer((s.host_ip, port), handler)
        threading.Thread(target=backend.serve_forever, daemon=True).start()
        for _ in range(20):
            c = http.client.HTTPConnection(s.ip, 8080, timeout=10)
            c.request("GET", "/hello.txt")
            r = c.getresponse()
            body = r.read()
            assert r.status == 200 and body == b"hello from the backend\n" * 100
            assert r.getheader("Via") == "1.0 framework-proxy"
            assert r.getheader("Content-Type").startswith("text/plain")
            c.close()
            c = http.client.HTTPConnection(s.ip, 8080, timeout=10)
            c.request("GET", "/missing")
            assert c.getresponse().status == 404
            c.close()
        assert s.stop() == 0, s.stderr()
        assert s.leftovers() == []
    finally:
        if backend is not None:
            backend.shutdown()
            backend.server_close()
        if s is not None:
            s.cleanup()
