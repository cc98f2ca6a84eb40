"""Outbound connections from handlers: /fanout opens n connections to a kernel echo
server (c at a time) and reports how many worked; /shard says who answered."""
import json

from framework import App, RequestHandler

app = App()


@app.route("/shard")
class Shard(RequestHandler):
    def get(self):
        self.write(str(self.ctx.shard_id))


async def one(ctx, host, port, i):
    conn = await ctx.open_connection(host, port, timeout=10)   # through the shard's stack
    msg = f"hello {i}\n".encode()
    conn.write(msg)
    got = await conn.read_until_eof()       # the server echoes one line and closes
    conn.close()
    return got == msg


@app.route("/fanout")
class Fanout(RequestHandler):
    async def get(self):
        host = self.get_argument("host")
        port = int(self.get_argument("port"))
        n = int(self.get_argument("n", "100"))
        c = int(self.get_argument("c", "50"))
        ok = failed = 0
        errors = []
        loop = self.ctx.loop
        for start in range(0, n, c):
            tasks = [loop.create_task(one(self.ctx, host, port, i))
                     for i in range(start, min(n, start + c))]
            for t in tasks:
                try:
                    if await t:
                        ok += 1
                    else:
                        failed += 1
                except Exception as e:
                    failed += 1
                    errors.append(repr(e))
        self.write(json.dumps({"shard": self.ctx.shard_id, "ok": ok, "failed": failed,
                               "errors": errors[:5]}))
