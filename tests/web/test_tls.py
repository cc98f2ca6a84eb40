"""HTTPS (framework.web.tls) with certificates from trustme.

- in-process, on fake transports (no sockets): a Python ssl client over MemoryBIOs;
  plain HTTP, random bytes, an expired certificate and a slow handshake close that
  connection only, and the next client is served;
- on both stacks, ``framework serve`` (user) / the kernel worker with --certfile: curl
  --cacert and Python's ssl client (ALPN http/1.1, scheme https), a plain HTTP request
  and random bytes to the TLS port closed while a TLS client keeps working, a wrong-host
  certificate is the client's error, bodies of a few MB both ways, client certificates
  required with --ca-certs, a WebSocket over TLS.
"""
import datetime
import hashlib
import json
import os
import socket
import ssl
import subprocess
import time

import pytest
import trustme

from framework.web.serving import WebOptions, build_app
from framework.web.tls import HANDSHAKE_TIMEOUT, STATS, TlsConfigError, wrap

from .conftest import SERVER_IP, Net
from .fakes import Harness
from .servers import connect, start_server

HERE = os.path.dirname(os.path.abspath(__file__))
TLSAPP = os.path.join(HERE, "tlsapp.py") + ":app"
PORT = 8443


class Pki:
    """A CA, a server certificate for SERVER_IP, an expired one, a client certificate."""

    def __init__(self, d):
        ca = trustme.CA()
        now = datetime.datetime.now(datetime.timezone.utc)
        self.ca = str(d / "ca.pem")
        ca.cert_pem.write_to_path(self.ca)
        self.cert, self.key = self._leaf(d, "server", ca.issue_cert(SERVER_IP, "localhost"))
        self.expired_cert, self.expired_key = self._leaf(d, "expired", ca.issue_cert(
            SERVER_IP, "localhost", not_before=now - datetime.timedelta(days=2),
            not_after=now - datetime.timedelta(days=1)))
        self.client = str(d / "client.pem")
        ca.issue_cert("client.example", common_name="client.example") \
            .private_key_and_cert_chain_pem.write_to_path(self.client)

    @staticmethod
    def _leaf(d, name, leaf):
        cert, key = str(d / f"{name}.crt"), str(d / f"{name}.key")
        with open(cert, "wb") as f:
            for blob in leaf.cert_chain_pems:
                f.write(blob.bytes())
        leaf.private_key_pem.write_to_path(key)
        return cert, key

    def client_context(self, cert=None):
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.set_alpn_protocols(["http/1.1"])
        if cert:
            ctx.load_cert_chain(cert)
        return ctx


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


# ---- in-process, fake transports ---------------------------------------------------------
class MemoryClient:
    """A TLS client over MemoryBIOs wired to one fake-transport connection."""

    def __init__(self, h, ctx, hostname="localhost"):
        self.h = h
        self.proto, self.t = h.connect()
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.ssl = ctx.wrap_bio(self.inc, self.out, server_hostname=hostname)

    def pump(self):
        for _ in range(50):
            sent = self.out.read()
            if sent and not self.t.closed:
                self.proto.data_received(sent)
            self.h.run()
            got = self.t.take()
            if got:
                self.inc.write(got)
            if not sent and not got:
                return

    def handshake(self):
        for _ in range(10):
            try:
                self.ssl.do_handshake()
                self.pump()
                return
            except ssl.SSLWantReadError:
                self.pump()
        raise AssertionError("handshake did not finish")

    def request(self, raw):
        self.ssl.write(raw)
        self.pump()
        return self.ssl.read(1 << 20)


def memory_app(pki, **opts):
    from . import tlsapp
    return wrap(tlsapp.app, WebOptions(certfile=pki.cert, keyfile=pki.key, **opts))


def test_in_process_https_request(pki):
    h = Harness(memory_app(pki))
    c = MemoryClient(h, pki.client_context())
    before = STATS["tls.handshakes"]
    c.handshake()
    assert c.ssl.selected_alpn_protocol() == "http/1.1"
    assert STATS["tls.handshakes"] == before + 1
    out = c.request(b"GET /tls HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head, body = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    info = json.loads(body)
    assert info["scheme"] == "https" and info["alpn"] == "http/1.1"
    assert info["url"] == "https://localhost/tls"
    assert not c.t.closed


@pytest.mark.parametrize("payload", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                                     bytes(range(256)) * 4])
def test_in_process_plain_or_random_bytes_close_that_connection(pki, payload):
    h = Harness(memory_app(pki))
    good = MemoryClient(h, pki.client_context())
    good.handshake()
    failed = STATS["tls.handshake_failed"]
    proto, t = h.connect()
    proto.data_received(payload)
    h.run()
    assert t.closed and not t.take().startswith(b"HTTP/")
    assert STATS["tls.handshake_failed"] == failed + 1
    # the other connection is untouched
    assert good.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"Hello over https")


def test_in_process_expired_certificate_is_the_clients_error(pki):
    app = wrap(_tlsapp(), WebOptions(certfile=pki.expired_cert, keyfile=pki.expired_key))
    h = Harness(app)
    c = MemoryClient(h, pki.client_context())
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        c.handshake()
    c.pump()                  # the client's alert reaches the server
    assert c.t.closed
    # the server is fine: a client that does not verify is served
    lax = pki.client_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    c2 = MemoryClient(h, lax)
    c2.handshake()
    assert c2.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"Hello over https")


def _tlsapp():
    from . import tlsapp
    return tlsapp.app


def test_in_process_pipelined_flood_pauses_and_resumes_reading(pki):
    """60 pipelined requests to an async handler in one TLS write: the HTTP protocol
    pauses reading (through TLS to the transport) and resumes it; all answered in order."""
    import asyncio
    from framework import App, RequestHandler
    from .fakes import parse_responses
    app = App()

    @app.route("/s/{n}")
    class Slow(RequestHandler):
        async def get(self, n):
            await asyncio.sleep(0.01)
            self.write(n)

    h = Harness(wrap(app, WebOptions(certfile=pki.cert, keyfile=pki.key)))
    c = MemoryClient(h, pki.client_context())
    c.handshake()
    c.ssl.write(b"".join(b"GET /s/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(60)))
    c.pump()
    paused, out = [], b""
    for _ in range(200):
        paused.append(c.t.paused)
        h.run(0.01)
        c.pump()
        try:
            while True:
                out += c.ssl.read(1 << 20)
        except ssl.SSLWantReadError:
            pass
    assert [b for _, _, b in parse_responses(out)] == [b"%d" % i for i in range(60)]
    assert any(paused) and not c.t.paused


def test_in_process_handshake_timeout_aborts(pki):
    h = Harness(memory_app(pki))
    proto, t = h.connect()
    proto.data_received(b"\x16\x03\x01")       # the start of a ClientHello, then nothing
    h.run(HANDSHAKE_TIMEOUT - 1)
    assert not t.closed
    h.run(2)
    assert t.aborted


def test_bad_certificate_is_one_line_error(pki, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(TlsConfigError) as e:
        build_app(_tlsapp(), WebOptions(certfile=str(bad)))
    assert "--certfile" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(TlsConfigError, match="--keyfile"):
        build_app(_tlsapp(), WebOptions(certfile=pki.cert, keyfile=pki.expired_key))
    with pytest.raises(TlsConfigError, match="--ssl-ciphers"):
        build_app(_tlsapp(), WebOptions(certfile=pki.cert, keyfile=pki.key,
                                        ssl_ciphers="NO-SUCH-CIPHER"))


def test_serve_refuses_a_bad_certificate_with_exit_2(pki, tmp_path):
    """The supervisor builds the app once: a certificate it cannot use is one line on
    stderr and exit code 2, before anything is created."""
    import sys
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    for flags, says in ([["--certfile", str(bad)], "--certfile"],
                        [["--certfile", pki.cert, "--keyfile", pki.expired_key],
                         "does not match"],
                        [["--certfile", pki.cert, "--keyfile", pki.key, "--ca-certs",
                          str(bad)], "--ca-certs"]):
        r = subprocess.run([sys.executable, "-m", "framework", "serve", TLSAPP, *flags],
                           capture_output=True, text=True, timeout=60,
                           cwd=os.path.dirname(os.path.dirname(HERE)))
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], r.stderr
        assert "cannot load APP" not in lines[0]         # the certificate is named, not the app


# ---- both stacks ---------------------------------------------------------------------------
def serve(lab, stack, web):
    net = Net(lab, kernel_ip=stack == "kernel")
    handle = start_server(stack, TLSAPP, net.server_ns, SERVER_IP, PORT,
                          ifname=net.server_if, web=web)
    return net, handle


def tls_connect(ns, ctx, hostname=SERVER_IP):
    s = connect(ns, SERVER_IP, PORT)
    try:
        return ctx.wrap_socket(s, server_hostname=hostname)
    except BaseException:
        s.close()
        raise


def read_response(s):
    """(status, body) of one Content-Length-framed response."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {buf!r}")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    n = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
             if line.lower().startswith(b"content-length:"))
    while len(body) < n:
        chunk = s.recv(1 << 20)
        if not chunk:
            raise ConnectionError("body cut short")
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def get(s, path, body=None):
    method = "GET" if body is None else "POST"
    head = f"{method} {path} HTTP/1.1\r\nHost: {SERVER_IP}:{PORT}\r\n"
    if body is not None:
        head += f"Content-Length: {len(body)}\r\n"
    s.sendall(head.encode() + b"\r\n" + (body or b""))
    return read_response(s)


def closed_without_answer(ns, payload):
    """Send ``payload`` in plain to the TLS port; True if the server closes without an
    HTTP answer (a TLS alert may come first)."""
    s = connect(ns, SERVER_IP, PORT)
    try:
        s.sendall(payload)
        s.settimeout(5)
        got = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        return not got.startswith(b"HTTP/")
    finally:
        s.close()


@pytest.mark.parametrize("stack", ["kernel", "user"])
def test_https_on_stack(lab, pki, stack):
    net, handle = serve(lab, stack, WebOptions(certfile=pki.cert, keyfile=pki.key))
    try:
        ns = net.client_ns
        # curl --cacert: verified, HTTP/1.1 (ALPN), the scheme the app saw
        r = subprocess.run(["ip", "netns", "exec", ns, "curl", "-sS", "--cacert", pki.ca,
                            "-w", "\n%{http_code} %{http_version}",
                            f"https://{SERVER_IP}:{PORT}/"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "Hello over https\n200 1.1"

        ctx = pki.client_context()
        keep = tls_connect(ns, ctx)         # a TLS client that stays connected throughout
        try:
            assert keep.selected_alpn_protocol() == "http/1.1"
            status, body = get(keep, "/tls")
            info = json.loads(body)
            assert status == 200 and info["scheme"] == "https" and info["alpn"] == "http/1.1"
            assert info["client_cn"] is None

            # plain HTTP and random bytes on the TLS port: those connections only close
            assert closed_without_answer(ns, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert closed_without_answer(ns, os.urandom(3000))
            # a client that does not trust the name: its own verification error
            with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
                tls_connect(ns, ctx, hostname="wrong.example").close()

            # a few MB both ways over the connection that stayed up
            up = os.urandom(5 << 20)
            status, body = get(keep, "/echo", up)
            assert status == 200 and hashlib.sha256(body).digest() == \
                hashlib.sha256(up).digest()
            status, body = get(keep, "/big?size=4194304")
            assert status == 200 and body == bytes(range(256)) * (4194304 // 256)
        finally:
            keep.close()
        assert handle.alive()
        if stack == "user":     # the worker's counters (stats block, /metrics) count them
            st = _published(handle, lambda v: v.get("tls.handshake_failed", 0) >= 2)
            assert st["tls.handshakes"] >= 2 and st["tls.handshake_failed"] >= 2, st
    finally:
        handle.stop()


def _published(handle, ok, timeout=10.0):
    """The stats block of ``handle``'s one shard once ``ok(values)`` holds."""
    import glob
    from framework.shm.stats import StatsBlock
    deadline = time.monotonic() + timeout
    while True:
        names = glob.glob(f"/dev/shm/framework.{handle.proc.pid}-*.stats.0")
        if names:
            runid = os.path.basename(names[0])[len("framework."):-len(".stats.0")]
            vals = StatsBlock.attach(runid, 0).snapshot()
            if ok(vals) or time.monotonic() > deadline:
                return vals
        assert time.monotonic() < deadline, "no stats block"
        time.sleep(0.2)


@pytest.mark.parametrize("stack", ["kernel", "user"])
def test_client_certificate_required(lab, pki, stack):
    net, handle = serve(lab, stack, WebOptions(certfile=pki.cert, keyfile=pki.key,
                                               ca_certs=pki.ca))
    try:
        ns = net.client_ns
        s = tls_connect(ns, pki.client_context(cert=pki.client))
        try:
            status, body = get(s, "/tls")
            assert status == 200 and json.loads(body)["client_cn"] == "client.example"
        finally:
            s.close()
        # without a certificate: the handshake is refused (TLS 1.3 tells the client on
        # its first read), no response
        with pytest.raises((ssl.SSLError, ConnectionError)):
            s = tls_connect(ns, pki.client_context())
            try:
                get(s, "/tls")
            finally:
                s.close()
        r = subprocess.run(["ip", "netns", "exec", ns, "curl", "-sS", "--cacert", pki.ca,
                            f"https://{SERVER_IP}:{PORT}/"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode != 0 and "Hello" not in r.stdout
        assert handle.alive()
    finally:
        handle.stop()


@pytest.mark.parametrize("stack", ["kernel", "user"])
def test_websocket_over_tls(lab, pki, stack):
    from . import tlsapp
    assert tlsapp.WebSocketHandler is not None, "framework.web.websocket is missing"
    from websockets.sync.client import connect as ws_connect
    net, handle = serve(lab, stack, WebOptions(certfile=pki.cert, keyfile=pki.key))
    try:
        sock = connect(net.client_ns, SERVER_IP, PORT)
        with ws_connect(f"wss://{SERVER_IP}:{PORT}/ws", sock=sock,
                        ssl=pki.client_context(), open_timeout=10, max_size=None) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"
            blob = os.urandom(1 << 20)
            ws.send(blob)
            assert ws.recv(timeout=10) == blob
    finally:
        handle.stop()


def test_asgi_and_wsgi_apps_see_https(pki):
    """The ASGI scope's scheme and WSGI's wsgi.url_scheme over TLS (a kernel shard on a
    loopback address of this test's own; build_app wraps as `serve` does)."""
    import threading
    from framework.shard.run import run_kernel_worker

    async def asgi_app(scope, receive, send):
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["scheme"].encode()})

    def wsgi_app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(len(environ["wsgi.url_scheme"])))])
        return [environ["wsgi.url_scheme"].encode()]

    host = f"127.{(os.getpid() >> 8) & 255}.{os.getpid() & 255}.11"
    ctx = pki.client_context()
    ctx.check_hostname = False          # the certificate names SERVER_IP, not this address
    for interface, obj in (("asgi", asgi_app), ("wsgi", wsgi_app)):
        app = build_app(obj, WebOptions(interface=interface, certfile=pki.cert,
                                        keyfile=pki.key))
        stop, ready = threading.Event(), threading.Event()
        t = threading.Thread(target=run_kernel_worker, args=(app, host, PORT),
                             kwargs={"stop_event": stop, "ready": ready, "grace": 1.0},
                             daemon=True)
        t.start()
        try:
            assert ready.wait(10), "the shard did not start"
            with ctx.wrap_socket(socket.create_connection((host, PORT), timeout=10)) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(s) == (200, b"https"), interface
        finally:
            stop.set()
            t.join(10)
        assert not t.is_alive()
