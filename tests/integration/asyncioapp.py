"""Handlers that use plain asyncio on the shard's loop (tests/integration/
test_asyncio_serve.py): one route per feature, each answering JSON a test checks.

ASYNCIOAPP_PEER_PORT: the port of a TCP server the test runs on 127.0.0.1 in the
namespace where it started ``framework serve``; /connect reaches it with
asyncio.open_connection (a worker's own kernel sockets live where the supervisor runs).
"""
import asyncio
import os
import threading
import time

from framework import App, RequestHandler

app = App()


@app.route("/loop")
class Loop(RequestHandler):
    async def get(self):
        loop = asyncio.get_running_loop()
        self.write({"type": type(loop).__name__, "is_ctx_loop": loop is self.ctx.loop,
                    "in_task": asyncio.current_task() is not None})


@app.route("/sleep")
class Sleep(RequestHandler):
    async def get(self):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(0.2)
        self.write({"slept": loop.time() - t0})


@app.route("/task")
class Task(RequestHandler):
    async def get(self):
        async def double(x):
            await asyncio.sleep(0.01)
            return 2 * x
        t = asyncio.create_task(double(21))
        self.write({"result": await t, "done": t.done()})


@app.route("/wait_for")
class WaitFor(RequestHandler):
    async def get(self):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            await asyncio.wait_for(asyncio.sleep(10), timeout=0.1)
            timed_out = False
        except asyncio.TimeoutError:
            timed_out = True
        self.write({"timed_out": timed_out, "elapsed": loop.time() - t0})


@app.route("/gather")
class Gather(RequestHandler):
    async def get(self):
        loop = asyncio.get_running_loop()

        async def after(delay, value):
            await asyncio.sleep(delay)
            return value
        t0 = loop.time()
        got = await asyncio.gather(after(0.2, "a"), after(0.1, "b"), after(0.15, "c"))
        self.write({"results": got, "elapsed": loop.time() - t0})


@app.route("/queue")
class Queue(RequestHandler):
    async def get(self):
        q = asyncio.Queue(maxsize=2)            # small: the producer has to wait too

        async def produce():
            for i in range(6):
                await q.put(i)
            await q.put(None)
        producer = asyncio.create_task(produce())
        items = []
        while (item := await q.get()) is not None:
            items.append(item)
        await producer
        self.write({"items": items})


@app.route("/event")
class Event(RequestHandler):
    async def get(self):
        ev = asyncio.Event()
        order = []

        async def waiter():
            await ev.wait()
            order.append("woken")

        async def setter():
            await asyncio.sleep(0.05)
            order.append("set")
            ev.set()
        w = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        was_set = ev.is_set()
        await asyncio.gather(w, setter())
        self.write({"order": order, "set_before": was_set})


@app.route("/cancel")
class Cancel(RequestHandler):
    async def get(self):
        seen = {}

        async def long():
            try:
                await asyncio.sleep(10)
                seen["finished"] = True
            except asyncio.CancelledError:
                seen["got_cancelled_error"] = True
                raise
        t = asyncio.create_task(long())
        await asyncio.sleep(0.01)
        t.cancel()
        try:
            await t
            raised = False
        except asyncio.CancelledError:
            raised = True
        self.write({"cancelled": t.cancelled(), "raised": raised, **seen})


@app.route("/executor")
class Executor(RequestHandler):
    async def get(self):
        loop = asyncio.get_running_loop()
        here = threading.get_ident()

        def blocking():
            time.sleep(0.05)
            return threading.get_ident()
        other = await loop.run_in_executor(None, blocking)
        self.write({"other_thread": other != here})


@app.route("/connect")
class Connect(RequestHandler):
    async def get(self):
        port = int(os.environ["ASYNCIOAPP_PEER_PORT"])
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout=5)
        writer.write(b"hello from the shard\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=5)
        writer.close()
        await writer.wait_closed()
        self.write({"reply": line.decode().strip()})


@app.route("/slow")
class Slow(RequestHandler):
    async def get(self):
        mark = self.get_argument("mark", None)
        if mark:                 # tells a test the request is in flight in the server
            open(mark, "w").close()
        await asyncio.sleep(float(self.get_argument("s", "1")))
        self.write("slow done\n")
