"""A small HTTP reverse proxy: each request is fetched from a backend over an outbound
connection of the shard that received it, through the shard's own stack (the user-level
stack, or kernel sockets on the link with --stack kernel).

    FRAMEWORK_PROXY_BACKEND=198.18.0.1:8000 framework serve examples/proxy.py:app
    python3 -m http.server 8000 --bind 198.18.0.1     # a backend on the host side
    curl http://198.18.0.2:8080/some/file

On the user stack the outbound connection's source port is picked so that the backend's
replies are steered to the same shard; the handler just awaits.
One backend connection per request (HTTP/1.0, Connection: close): short and obviously
correct, not the fastest.
"""
import os

from framework import App, HTTPError, RequestHandler

BACKEND = os.environ.get("FRAMEWORK_PROXY_BACKEND", "198.18.0.1:8000")
TIMEOUT = 10.0
# hop-by-hop headers (RFC 9110 7.6.1) are not forwarded, in either direction
HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
       "upgrade", "content-length", "host"}

app = App()


def backend():
    host, _, port = BACKEND.rpartition(":")
    return host, int(port)


@app.route("/{path:.*}")
class Proxy(RequestHandler):
    async def _forward(self, path):
        host, port = backend()
        req = self.request
        try:
            conn = await self.ctx.open_connection(host, port, timeout=TIMEOUT)
        except OSError as e:
            raise HTTPError(502, f"backend {host}:{port}: {e}")
        lines = [f"{req.method} {req.uri} HTTP/1.0", f"Host: {host}:{port}",
                 f"X-Forwarded-For: {req.remote_ip}", "Connection: close"]
        for name, value in req.headers.items():
            if name.lower() not in HOP:
                lines.append(f"{name}: {value}")
        body = req.body or b""
        if body:
            lines.append(f"Content-Length: {len(body)}")
        conn.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            raw = await conn.read_until_eof()
        except OSError as e:
            raise HTTPError(502, f"backend {host}:{port}: {e}")
        finally:
            conn.close()
        head, sep, payload = raw.partition(b"\r\n\r\n")
        if not sep:
            raise HTTPError(502, "backend sent no complete response")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(status_line.split()[1])
        except (IndexError, ValueError):
            raise HTTPError(502, f"bad status line from the backend: {status_line[:80]!r}")
        self.set_status(status)
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() not in HOP and name.strip().lower() != "server":
                self.set_header(name.strip(), value.strip())
        self.set_header("Via", "1.0 framework-proxy")
        if payload and req.method != "HEAD":
            self.write(payload)

    async def get(self, path):
        await self._forward(path)

    async def post(self, path):
        await self._forward(path)

    async def put(self, path):
        await self._forward(path)

    async def delete(self, path):
        await self._forward(path)
