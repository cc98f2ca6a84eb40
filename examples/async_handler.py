"""Async handlers: each runs as an asyncio Task on its shard's loop, so it may await
anything asyncio offers without blocking the shard's other connections.

    framework serve examples/async_handler.py:app
    curl 'http://198.18.0.2:8080/slow?delay=0.5'      # others are served meanwhile
    curl -N http://198.18.0.2:8080/countdown            # a streamed (chunked) response
    curl 'http://198.18.0.2:8080/race?delay=2'          # asyncio.wait_for: gives up at 1 s
    curl http://198.18.0.2:8080/digest?n=100000         # CPU work on a thread (executor)
"""
import asyncio
import hashlib

from framework import App, HTTPError, RequestHandler

app = App()


def float_arg(handler, name, default):
    try:
        return float(handler.get_argument(name, default))
    except ValueError:
        raise HTTPError(400, f"{name} must be a number") from None


@app.route("/slow")
class Slow(RequestHandler):
    async def get(self):
        delay = float_arg(self, "delay", "0.2")
        await asyncio.sleep(min(delay, 10.0))
        self.write({"slept": delay, "shard": self.ctx.shard_id})


@app.route("/countdown")
class Countdown(RequestHandler):
    async def get(self):
        self.set_header("Content-Type", "text/plain")
        for i in range(3, 0, -1):
            self.write(f"{i}...\n")
            self.flush()
            await asyncio.sleep(0.2)
        self.write("liftoff\n")


@app.route("/race")
class Race(RequestHandler):
    """Two waits side by side (gather), the whole bounded by a timeout (wait_for)."""

    async def get(self):
        delay = min(float_arg(self, "delay", "0.1"), 10.0)
        try:
            a, b = await asyncio.wait_for(
                asyncio.gather(asyncio.sleep(delay, "a"), asyncio.sleep(delay / 2, "b")),
                timeout=1.0)
        except TimeoutError:
            self.set_status(504)
            self.write({"error": "timed out", "after": 1.0})
            return
        self.write({"results": [a, b]})


def digest(n):
    h = hashlib.sha256()
    for i in range(n):
        h.update(i.to_bytes(8, "little"))
    return h.hexdigest()


@app.route("/digest")
class Digest(RequestHandler):
    """CPU-bound work goes to a thread, so the shard keeps serving meanwhile."""

    async def get(self):
        n = min(int(float_arg(self, "n", "1000")), 10_000_000)
        loop = asyncio.get_running_loop()
        self.write({"n": n, "sha256": await loop.run_in_executor(None, digest, n)})
