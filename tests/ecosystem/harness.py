"""Serve one app with uvicorn (the reference) and with ``framework serve`` (user and
kernel stack), send each the same requests, and compare what came back.

- ``Uvicorn(spec, interface)``: ``python -m uvicorn`` on 127.0.0.1 and a free port.
- ``Framework(spec, stack)``: ``framework serve`` on its own default link
  (tests/integration/serve_helpers.Server: ``--link-subnet``, names with its pid), reached
  from this process at ``http://<stack ip>:8080``.
- ``Req``: one request of the fixed list; ``exchange(client, req)`` sends it with httpx and
  returns ``Seen`` (status, normalised headers, body); ``raw_exchange`` sends exact bytes.
- ``differences(ref, got)``: what a user of the app could tell apart, as text lines.

Header comparison: names case-insensitive, the multiset of (name, value) pairs (a server may
order them its own way); ``Date`` and ``Server`` are left out (they name the server and the
second), ``Allow`` is compared as a set (see ``normalise``); nothing else may differ. The
status line's reason phrase is compared too (for ASGI the server picks it).

Where we differ from uvicorn on purpose, each checked on its own by the tests: HTTP/1.0 with
``Connection: keep-alive`` keeps the connection (as nginx); WSGI reason phrases are the
app's (PEP 3333, as gunicorn); a chunked upload reaches a WSGI view (uvicorn's WSGI
interface drops it). Not compared: permessage-deflate's parameters and the Content-Type of
the empty 403 refusing a WebSocket (each WebSocket library's own, uvicorn's two differ).
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx

from integration.serve_helpers import Server

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
SKIPPED_HEADERS = {"date", "server"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Uvicorn:
    """uvicorn serving ``spec`` (a module of this package, "starlette_app:app")."""

    stack = "uvicorn"

    def __init__(self, spec, interface="auto", timeout=20.0, tls=None, extra=()):
        self.port = free_port()
        self.host = "127.0.0.1"
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://{self.host}:{self.port}"
        extra = [*extra, *(("--ssl-certfile", tls.certfile, "--ssl-keyfile", tls.keyfile)
                           if tls else ())]
        self.errfile = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", spec, "--app-dir", HERE, "--host", self.host,
             "--port", str(self.port), "--interface", interface, "--lifespan", "auto",
             "--no-proxy-headers", "--log-level", "warning", "--no-access-log", *extra],
            cwd=HERE, stdout=subprocess.DEVNULL, stderr=self.errfile)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"uvicorn {spec} did not start:\n{self.stderr()}")

    def stderr(self):
        self.errfile.seek(0)
        return self.errfile.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.errfile.close()


class Framework:
    """``framework serve ecosystem.<spec>`` on ``stack`` (``cores`` workers), on its own
    link."""

    def __init__(self, spec, stack, extra=(), tls=None, cores=1):
        self.stack = stack
        self.tls = tls
        if tls:
            extra = (*extra, "--certfile", tls.certfile, "--keyfile", tls.keyfile)
        self.server = Server(app=f"ecosystem.{spec}", cores=cores, cwd=TESTS,
                             extra=("--stack", stack, *extra),
                             subnet=tls.subnet if tls else "auto")
        self.host = self.server.ip
        self.port = 8080
        self.url = f"{'https' if tls else 'http'}://{self.host}:{self.port}"

    def stderr(self):
        return self.server.stderr()

    def stop(self):
        self.server.cleanup()


class Tls:
    """A trustme CA and a certificate for 127.0.0.1 and the address of the default link
    of ``subnet`` (chosen before the server starts, so the certificate can name it)."""

    def __init__(self, directory, subnet):
        import ssl

        import trustme
        self.subnet = subnet
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", subnet[:-len("0/24")] + "2", "ecosystem.test")
        self.certfile = os.path.join(directory, "cert.pem")
        self.keyfile = os.path.join(directory, "key.pem")
        self.cafile = os.path.join(directory, "ca.pem")
        cert.cert_chain_pems[0].write_to_path(self.certfile)
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(self.certfile, append=True)
        cert.private_key_pem.write_to_path(self.keyfile)
        ca.cert_pem.write_to_path(self.cafile)
        self.client_context = ssl.create_default_context(cafile=self.cafile)


class Req:
    """One request: ``name`` identifies it in a failure message."""

    def __init__(self, name, method, path, headers=(), body=None, status=None):
        self.name = name
        self.method = method
        self.path = path
        self.headers = list(headers)
        self.body = body
        self.status = status            # what the app answers (checked on the reference too)

    def __repr__(self):
        return f"Req({self.name}: {self.method} {self.path})"


class Seen:
    def __init__(self, status, headers, body, reason=None):
        self.status = status
        self.reason = reason            # the status line's reason phrase
        self.headers = headers          # sorted [(lower-case name, value)], Date/Server out
        self.body = body

    def header(self, name):
        return [v for k, v in self.headers if k == name]


def normalise(pairs):
    out = []
    for k, v in pairs:
        k = k.lower()
        if k in SKIPPED_HEADERS:
            continue
        if k == "allow":
            # Starlette lists a route's methods from a set: the order changes with each
            # process's string hash seed, whatever the server
            v = ", ".join(sorted(m.strip() for m in v.split(",")))
        out.append((k, v))
    return sorted(out)


def exchange(client, req):
    """Send ``req`` on ``client`` (an httpx.Client with the server's base_url)."""
    r = client.request(req.method, req.path, headers=req.headers, content=req.body)
    return Seen(r.status_code, normalise(
        (k.decode("latin-1"), v.decode("latin-1")) for k, v in r.headers.raw), r.content,
        r.reason_phrase)


def raw_exchange(host, port, data, timeout=10.0, pause=0.0, half_close=False,
                 slow_read=False):
    """Send exact bytes on a fresh connection and read until the server closes it (the
    request should say ``Connection: close``); returns every byte received. ``data`` may
    be a list of parts sent ``pause`` seconds apart; ``half_close``: shut our sending side
    once all is sent; ``slow_read``: a small receive buffer read 16 KiB at a time with a
    short sleep between (the server's sending has to wait for us)."""
    parts = data if isinstance(data, list) else [data]
    s = socket.socket()
    try:
        if slow_read:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(timeout)
        s.connect((host, port))
        for i, part in enumerate(parts):
            if i and pause:
                time.sleep(pause)
            s.sendall(part)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = bytearray()
        while True:
            try:
                b = s.recv(16384 if slow_read else 65536)
            except ConnectionResetError:    # a close with unread input (uvicorn's way)
                b = b""
            if not b:
                return bytes(out)
            out += b
            if slow_read:
                time.sleep(0.002)
    finally:
        s.close()


def parse_raw(data, head=False):
    """Every response in ``data`` (bytes a server sent on one connection), in order, as
    ``Seen`` (a 1xx interim response included; chunked bodies decoded: the
    Transfer-Encoding header says how it was sent). ``head``: the requests were HEAD, no
    response has a body. What follows the last complete response is its body when it has
    neither Content-Length nor chunked framing (it ends at the close)."""
    out = []
    rest = data
    while rest:
        head_bytes, sep, rest = rest.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"a response head cut short: {head_bytes[:200]!r}")
        lines = head_bytes.decode("latin-1").split("\r\n")
        _, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        status = int(status)
        pairs = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
        fields = {k.lower(): v for k, v in pairs}
        if head or 100 <= status < 200 or status in (204, 304):
            body = b""
        elif "chunked" in fields.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                n = int(size_line.split(b";")[0], 16)
                if n == 0:
                    _, _, rest = rest.partition(b"\r\n")     # no trailers here
                    break
                body += rest[:n]
                rest = rest[n + 2:]
            body = bytes(body)
        elif "content-length" in fields:
            n = int(fields["content-length"])
            body, rest = rest[:n], rest[n:]
        else:
            body, rest = rest, b""
        out.append(Seen(status, normalise(pairs), body, reason))
    return out


def differences(ref, got, reason=True):
    """Lines saying how ``got`` differs from ``ref`` (empty: the same to a client).
    ``reason``: compare the reason phrases too (not for WSGI: see test_flask.py)."""
    out = []
    if (ref.status, ref.reason if reason else None) != (got.status,
                                                         got.reason if reason else None):
        out.append(f"status {got.status} {got.reason!r}, reference {ref.status} "
                   f"{ref.reason!r}")
    if ref.headers != got.headers:
        extra = [h for h in got.headers if h not in ref.headers]
        missing = [h for h in ref.headers if h not in got.headers]
        out.append(f"headers: extra {extra}, missing {missing}")
    if ref.body != got.body:
        out.append(f"body ({len(got.body)} bytes) {got.body[:200]!r}, reference "
                   f"({len(ref.body)} bytes) {ref.body[:200]!r}")
    return out


HOST = "ecosystem.test"      # the same Host to every server: apps echo it (redirects, headers)


def client_for(server):
    tls = getattr(server, "tls", None)
    return httpx.Client(base_url=server.url, timeout=10.0, follow_redirects=False,
                        headers={"Host": HOST},
                        verify=tls.client_context if tls else True)


def run_list(ref_server, server, requests, reason=True):
    """Send every request of the list to both servers (one keep-alive client each);
    returns {req.name: difference lines} for those that differ, and the reference's
    answers (to check against what the app is known to answer)."""
    diffs, ref_seen = {}, {}
    with client_for(ref_server) as rc, client_for(server) as fc:
        for req in requests:
            ref = exchange(rc, req)
            got = exchange(fc, req)
            ref_seen[req.name] = ref
            d = differences(ref, got, reason)
            if d:
                diffs[req.name] = d
    return diffs, ref_seen


def check_list(ref_server, server, requests, reason=True):
    """Assert the reference answers each request as the list says and the server under
    test answers exactly like the reference."""
    diffs, ref_seen = run_list(ref_server, server, requests, reason)
    wrong_ref = {n: s.status for n, s in ref_seen.items()
                 if [r for r in requests if r.name == n][0].status not in (None, s.status)}
    assert not wrong_ref, f"the reference answered other statuses than expected: {wrong_ref}"
    assert not diffs, (f"{server.stack} differs from uvicorn:\n" + "\n".join(
        f"  {n}: {line}" for n, lines in diffs.items() for line in lines)
        + f"\n{server.stack}'s log (end):\n{server.stderr()[-1500:]}")
