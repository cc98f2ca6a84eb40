"""The app bench/soak.py serves: small, large and uploaded bodies, plus a diagnostics
route reporting each shard's timers and connections (the stack's timer heap, TIME_WAIT
queue, flow table; asyncio's scheduled callbacks) so the soak can tell that they are
back to their baseline once the load stops.

    GET  /          13-byte Hello, World!
    GET  /blob      BLOB_SIZE bytes
    POST /upload    the body's length as text
    GET  /_soak     JSON list, one dict per shard (soak_diag)

``SOAK_TRACEMALLOC=1`` in the workers' environment starts tracemalloc at import;
``GET /_soak?snapshot=PATH`` then also writes a snapshot per shard to PATH.<shard>.
"""
import gc
import os
import tracemalloc

from framework import App, RequestHandler, current_shard

BLOB_SIZE = 1 << 20
BLOB = bytes(range(256)) * (BLOB_SIZE // 256)

if os.environ.get("SOAK_TRACEMALLOC") == "1":
    tracemalloc.start(int(os.environ.get("SOAK_TRACEMALLOC_FRAMES", "8")))

app = App(max_body_size=2 * BLOB_SIZE)


@app.route("/")
class Hello(RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.write(b"Hello, World!")


@app.route("/blob")
class Blob(RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/octet-stream")
        self.write(BLOB)


@app.route("/upload")
class Upload(RequestHandler):
    def post(self):
        self.set_header("Content-Type", "text/plain")
        self.write(str(len(self.request.body)).encode())


def soak_diag(snapshot=None):
    """This shard's timers and connections (run on every shard by ctx.broadcast)."""
    ctx = current_shard()
    loop = ctx.loop
    out = {"shard": ctx.shard_id, "pid": os.getpid(),
           "asyncio_scheduled": len(getattr(loop, "_scheduled", ())),
           "asyncio_ready": len(getattr(loop, "_ready", ())),
           "tasks": len([t for t in __import__("asyncio").all_tasks(loop) if not t.done()]),
           "gc_objects": len(gc.get_objects())}
    stack = getattr(getattr(loop, "provider", None), "stack", None)
    if stack is not None:
        layers = getattr(stack, "tcp_layers", None) or (stack.tcp,)
        out["tcp_timer_heap"] = sum(len(L._timers) for L in layers)
        out["tcp_time_wait_queue"] = sum(len(L.tw_queue) for L in layers)
        out["tcp_time_wait"] = sum(L.tw_count for L in layers)
        out["tcp_flows"] = sum(len(L.flows) for L in layers)
        out["tcp_pending"] = sum(len(L._pending) for L in layers)
        out["tcp_deferred"] = sum(len(L._deferred) for L in layers)
    if snapshot and tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(f"{snapshot}.{ctx.shard_id}")
        out["snapshot"] = f"{snapshot}.{ctx.shard_id}"
    return out


@app.route("/_soak")
class Diag(RequestHandler):
    async def get(self):
        snap = self.get_query_argument("snapshot", None)
        self.write({"shards": list(await self.ctx.broadcast(soak_diag, snap))})
