"""A fake transport and a driver for the HTTP protocol: no sockets, a virtual clock."""
from framework.context import ShardContext
from framework.web.testing import TestLoop

FIXED_WALL = 1784635200.0     # Date header in protocol tests: a fixed wall clock


class FakeTransport:
    def __init__(self, peer=("198.18.5.2", 40000)):
        self.out = bytearray()
        self.closed = False
        self.aborted = False
        self.lingered = False
        self.paused = False
        self.peer = peer

    def write(self, data):
        assert not self.closed, "write after close"
        self.out += data

    def close(self):
        self.closed = True

    def lingering_close(self):
        self.lingered = True
        self.closed = True

    def abort(self):
        self.aborted = True
        self.closed = True

    def is_closing(self):
        return self.closed

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False

    def get_extra_info(self, name, default=None):
        return {"peername": self.peer, "sockname": ("198.18.5.1", 8080)}.get(name, default)

    def take(self):
        data = bytes(self.out)
        self.out.clear()
        return data


class Harness:
    """One app, one shard context on a virtual-clock asyncio loop, connections on fake
    transports."""

    def __init__(self, app, port=8080, now=100.0):
        self.app = app
        self.loop = TestLoop(now)
        self.ctx = ShardContext(self.loop, 0, 1)
        self.ctx.install()      # current_shard(), as in a real shard
        self.loop.run_until_complete(app.start_shard(self.ctx))
        self.factories = app.listeners(port)
        self.port = port
        http = self.factories.get(port)
        if http is not None and getattr(http, "handler_cls", None) is None:
            self.factories[port] = app.http_factory(clock=lambda: FIXED_WALL)

    def connect(self, port=None):
        proto = self.factories[port or self.port](self.ctx)
        t = FakeTransport()
        proto.connection_made(t)
        self.run()
        return proto, t

    def run(self, advance=0.0):
        """Run what is ready, then move the clock ``advance`` on (running every timer on
        the way), until nothing is ready."""
        self.loop.run_ready()
        self.loop.advance(advance)

    def run_until(self, t_end, step=0.01):
        while self.loop.time() < t_end:
            self.run(step)

    def request(self, raw, port=None):
        proto, t = self.connect(port)
        proto.data_received(raw)
        self.run()
        return t.take(), proto, t


def parse_responses(data):
    """Split raw bytes into [(status, headers{lower: value}, body)] (Content-Length/chunked)."""
    out = []
    pos = 0
    while pos < len(data):
        end = data.index(b"\r\n\r\n", pos)
        head = data[pos:end].decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {}
        for line in head[1:]:
            k, v = line.split(":", 1)
            k = k.strip().lower()
            headers[k] = headers[k] + ", " + v.strip() if k in headers else v.strip()
        pos = end + 4
        if status in (100,):
            out.append((status, headers, b""))
            continue
        if "content-length" in headers:
            n = int(headers["content-length"])
            body = data[pos:pos + n]
            pos += n
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                e = data.index(b"\r\n", pos)
                n = int(data[pos:e], 16)
                pos = e + 2
                if n == 0:
                    pos += 2
                    break
                body += data[pos:pos + n]
                pos += n + 2
        elif status in (204, 304):
            body = b""
        else:
            body = data[pos:]
            pos = len(data)
        out.append((status, headers, body))
    return out
