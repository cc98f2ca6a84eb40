"""The best pure-Python kernel-socket baseline: uvloop + httptools, one process.

Returns the same bytes as the framework's ``apps.hello`` ``GET /`` (status line,
``Server: framework``, a Date cached per second, ``Content-Type: text/plain``,
``Content-Length: 13``, ``Connection: close`` when the request asked for it or is
HTTP/1.0 without keep-alive, ``Connection: keep-alive`` for an HTTP/1.0 keep-alive).
Keep-alive and pipelining (responses in order, one write per received batch). Any
other path -> 404. Also serves the bulk ports of bench/bulk.py.

    python -m bench.baselines.uvloop_server HOST PORT
"""
import asyncio
import email.utils
import resource
import sys
import time

import httptools
import uvloop

from bench import bulk

BODY = b"Hello, World!"
_date = [0, b""]


def date_line():
    now = int(time.time())
    if now != _date[0]:
        _date[0] = now
        _date[1] = b"Date: " + email.utils.formatdate(now, usegmt=True).encode() + b"\r\n"
    return _date[1]


HEAD = b"HTTP/1.1 200 OK\r\nServer: framework\r\n"
TAIL = b"Content-Type: text/plain\r\nContent-Length: 13\r\n"
NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\nServer: framework\r\nContent-Length: 0\r\n")


class Http(asyncio.Protocol):
    __slots__ = ("t", "parser", "out", "url", "close_after", "ka_header")

    def __init__(self):
        self.t = None
        self.parser = httptools.HttpRequestParser(self)
        self.out = []
        self.url = b""
        self.close_after = False

    def connection_made(self, t):
        self.t = t

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.t.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.t.close()
            return
        if self.out:
            self.t.write(b"".join(self.out))
            self.out.clear()
            if self.close_after:
                self.t.close()

    def on_url(self, url):
        self.url = url

    def on_message_complete(self):
        if self.close_after:
            return
        keep = self.parser.should_keep_alive()
        if self.url == b"/" or self.url.startswith(b"/?"):
            r = [HEAD, date_line(), TAIL]
        else:
            r = [NOT_FOUND.replace(b"Server: framework\r\n", b"Server: framework\r\n" + date_line())]
        if not keep:
            r.append(b"Connection: close\r\n")
            self.close_after = True
        elif self.parser.get_http_version() == "1.0":
            r.append(b"Connection: keep-alive\r\n")
        r.append(b"\r\n")
        if self.url == b"/" or self.url.startswith(b"/?"):
            r.append(BODY)
        self.out.append(b"".join(r))

    def connection_lost(self, exc):
        self.t = None


async def main(host, port):
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(Http, host, port, reuse_address=True, backlog=4096)
    await loop.create_server(bulk.Discard, host, bulk.DISCARD_PORT, reuse_address=True)
    await loop.create_server(lambda: bulk.Source(loop.call_later), host, bulk.SOURCE_PORT,
                             reuse_address=True)
    print(f"serving uvloop on http://{host}:{port}", flush=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 8080
    uvloop.install()
    try:
        asyncio.run(main(host, port))
    except KeyboardInterrupt:
        pass
