"""The app the HTTP integration tests serve (small limits so every limit is testable fast)."""
import asyncio

from framework import App, HTTPError, RequestHandler, StreamHandler

app = App(max_body_size=64 * 1024, idle_timeout=0.6, request_timeout=0.6)


@app.shard_state
def state(ctx):
    return {"hits": 0}


@app.route("/")
class Hello(RequestHandler):
    def get(self):
        self.state["hits"] += 1
        self.set_header("Content-Type", "text/plain")
        self.write("Hello, World!")


@app.route("/json")
class Json(RequestHandler):
    def get(self):
        self.write({"message": "Hello, World!"})


@app.route("/echo")
class Echo(RequestHandler):
    def post(self):
        self.set_header("Content-Type", "application/octet-stream")
        self.write(self.request.body)

    put = post


@app.route("/seq/{n}")
class Seq(RequestHandler):
    def get(self, n):
        self.write(f"seq {n}")


@app.route("/slow/{n}")
class Slow(RequestHandler):
    async def get(self, n):
        mark = self.get_argument("mark", None)
        if mark:                 # tells a test the request is in flight in the server
            open(mark, "w").close()
        await asyncio.sleep(float(self.get_argument("t", "0.2")))
        self.write(f"slow {n}")


@app.route("/info")
class Info(RequestHandler):
    def get(self):
        r = self.request
        self.write({"method": r.method, "path": r.path, "query": r.query,
                    "args": r.arguments, "remote_ip": r.remote_ip,
                    "ua": r.headers.get("user-agent"), "x": r.headers.get("X-Test"),
                    "version": r.version, "shard": [self.ctx.shard_id, self.ctx.shard_count],
                    "hits": self.state["hits"]})


@app.route("/boom")
class Boom(RequestHandler):
    def get(self):
        raise RuntimeError("secret traceback detail")


@app.route("/teapot")
class Teapot(RequestHandler):
    def get(self):
        raise HTTPError(418)


@app.route("/redirect")
class Redirect(RequestHandler):
    def get(self):
        self.redirect("/json")


@app.route("/stream")
class Stream(RequestHandler):
    async def get(self):
        self.set_header("Content-Type", "text/plain")
        for i in range(3):
            self.write(f"part{i}\n")
            self.flush()
            await asyncio.sleep(0.05)
        self.write("end\n")


@app.stream(8007)
class EchoStream(StreamHandler):
    def on_data(self, data):
        self.write(data)


@app.route("/big")
class Big(RequestHandler):
    """Streams n chunks of 64 KiB, following the client's pace with await flush()."""

    async def get(self):
        n = int(self.get_argument("n", "64"))
        self.set_header("Content-Type", "application/octet-stream")
        for i in range(n):
            self.write(bytes([65 + i % 26]) * 65536)
            await self.flush()
        self.state["big_done"] = n


@app.route("/bigsync")
class BigSync(RequestHandler):
    def get(self):
        self.write(b"s" * int(self.get_argument("size", "3000000")))


@app.route("/upload")
class Upload(RequestHandler):
    """Reads a large body as a stream, slowly, and answers its length and digest."""

    stream_request_body = True
    max_body_size = 16 << 20

    async def put(self):
        import hashlib
        digest = hashlib.sha256()
        n = 0
        async for chunk in self.request.stream():
            digest.update(chunk)
            n += len(chunk)
            if n % 7 == 0:
                await asyncio.sleep(0.001)
        self.write({"bytes": n, "sha256": digest.hexdigest()})
