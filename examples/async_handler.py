"""Async handlers: await framework futures without blocking the shard's other connections.

    framework serve examples/async_handler.py:app
    curl 'http://198.18.0.2:8080/slow?delay=0.5'      # others are served meanwhile
    curl -N http://198.18.0.2:8080/countdown            # a streamed (chunked) response
"""
from framework import App, HTTPError, RequestHandler

app = App()


@app.route("/slow")
class Slow(RequestHandler):
    async def get(self):
        try:
            delay = float(self.get_argument("delay", "0.2"))
        except ValueError:
            raise HTTPError(400, "delay must be a number") from None
        await self.reactor.sleep(min(delay, 10.0))
        self.write({"slept": delay, "shard": self.shard.id})


@app.route("/countdown")
class Countdown(RequestHandler):
    async def get(self):
        self.set_header("Content-Type", "text/plain")
        for i in range(3, 0, -1):
            self.write(f"{i}...\n")
            self.flush()
            await self.reactor.sleep(0.2)
        self.write("liftoff\n")
