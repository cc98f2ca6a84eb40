"""Handlers on the shard's asyncio loop, through TestClient on the virtual clock:
sleep, tasks, wait_for, gather, Queue, Event, cancellation, executors, app hooks."""
import asyncio
import logging
import threading
import time

import pytest

from framework import App, RequestHandler
from framework.web.testing import TestClient


def client_for(handler, path="/x", app=None):
    app = app or App()
    app.add_route(path, handler)
    return TestClient(app)


def test_sleep_takes_virtual_time_only():
    class H(RequestHandler):
        async def get(self):
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await asyncio.sleep(30)
            self.write({"waited": loop.time() - t0})

    c = client_for(H)
    w0 = time.monotonic()
    assert c.get("/x").json() == {"waited": 30.0}
    assert time.monotonic() - w0 < 1.0 and c.loop.time() == 30.0


def test_create_task_and_gather():
    class H(RequestHandler):
        async def get(self):
            async def part(name, delay):
                await asyncio.sleep(delay)
                return name
            first = asyncio.get_running_loop().create_task(part("t", 2))
            rest = await asyncio.gather(part("a", 1), part("b", 3))
            self.write({"task": await first, "gather": rest,
                        "now": asyncio.get_running_loop().time()})

    assert client_for(H).get("/x").json() == {"task": "t", "gather": ["a", "b"], "now": 3.0}


def test_wait_for_timeout_is_caught_by_the_handler():
    class H(RequestHandler):
        async def get(self):
            try:
                await asyncio.wait_for(asyncio.sleep(10), timeout=0.5)
            except TimeoutError:
                self.set_status(504)
                self.write("gave up")

    c = client_for(H)
    r = c.get("/x")
    assert (r.status, r.text, c.loop.time()) == (504, "gave up", 0.5)


def test_queue_and_event():
    class H(RequestHandler):
        async def get(self):
            q = asyncio.Queue()
            ready = asyncio.Event()

            async def producer():
                for i in range(3):
                    await asyncio.sleep(0.1)
                    await q.put(i)
                await q.put(None)
                ready.set()

            task = asyncio.get_running_loop().create_task(producer())
            got = []
            while (item := await q.get()) is not None:
                got.append(item)
            await ready.wait()
            await task
            self.write({"got": got, "set": ready.is_set()})

    assert client_for(H).get("/x").json() == {"got": [0, 1, 2], "set": True}


def test_handler_cancels_its_own_task():
    seen = []

    class H(RequestHandler):
        async def get(self):
            async def forever():
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    seen.append("cancelled")
                    raise

            task = asyncio.get_running_loop().create_task(forever())
            await asyncio.sleep(1)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                self.write({"cancelled": task.cancelled()})

    c = client_for(H)
    assert c.get("/x").json() == {"cancelled": True} and seen == ["cancelled"]
    assert c.loop.time() == 1.0


def test_cancelled_future_under_a_handler_is_a_500_and_the_connection_goes_on(caplog):
    class H(RequestHandler):
        async def get(self):
            fut = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.1, fut.cancel)
            await fut              # CancelledError escapes the handler

    c = client_for(H)
    with caplog.at_level(logging.ERROR):
        r = c.raw(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 500
    assert c.get("/x").status == 500      # the client (and its loop) still work


def test_run_in_executor_uses_real_threads():
    main = threading.get_ident()

    def work(n):
        time.sleep(0.05)        # real wall time on a real thread
        return n * 2, threading.get_ident() != main

    class H(RequestHandler):
        async def get(self):
            loop = asyncio.get_running_loop()
            value, other_thread = await loop.run_in_executor(None, work, 21)
            also = await asyncio.to_thread(work, 1)
            self.write({"value": value, "thread": other_thread, "also": also[0],
                        "now": loop.time()})

    with client_for(H) as c:
        assert c.get("/x").json() == {"value": 42, "thread": True, "also": 2, "now": 0.0}


def test_async_shard_state_and_hooks_in_order():
    app = App()
    order = []

    @app.shard_state
    async def state(ctx):
        await asyncio.sleep(1)
        order.append("state")
        return {"shard": ctx.shard_id, "loop": ctx.loop}

    @app.on_start
    def first(ctx):
        order.append(("start sync", ctx.state["shard"]))

    @app.on_start
    async def second(ctx):
        await asyncio.sleep(0.5)
        order.append("start async")

    @app.on_stop
    async def broken(ctx):
        raise RuntimeError("stop hook failure")

    @app.on_stop
    def last(ctx):
        order.append("stop")

    @app.route("/s")
    class S(RequestHandler):
        def get(self):
            self.write({"same_loop": self.state["loop"] is asyncio.get_running_loop()})

    c = TestClient(app, shard_id=2, shard_count=3)
    assert order == ["state", ("start sync", 2), "start async"]
    assert c.loop.time() == 1.5 and c.get("/s").json() == {"same_loop": True}
    c.close()                                  # the failing stop hook is logged only
    assert order[-1] == "stop"


def test_failing_start_hook_raises():
    app = App()

    @app.on_start
    async def boom(ctx):
        raise RuntimeError("cannot start")

    with pytest.raises(RuntimeError, match="cannot start"):
        TestClient(app)


def test_stop_hook_failure_is_logged(caplog):
    app = App()

    @app.on_stop
    def boom(ctx):
        raise RuntimeError("stop failure")

    with caplog.at_level(logging.ERROR):
        TestClient(app).close()
    assert "stop failure" in caplog.text and "on_stop hook boom failed" in caplog.text


def test_examples_async_handler_race_and_digest():
    from framework.web.loader import load_app
    with TestClient(load_app("examples/async_handler.py:app")) as c:
        assert c.get("/race?delay=0.4").json() == {"results": ["a", "b"]}
        r = c.get("/race?delay=5")
        assert r.status == 504 and c.loop.time() == pytest.approx(1.4)
        import hashlib
        h = hashlib.sha256()
        for i in range(10):
            h.update(i.to_bytes(8, "little"))
        assert c.get("/digest?n=10").json() == {"n": 10, "sha256": h.hexdigest()}


def test_body_chunk_after_a_read_timed_out_is_kept():
    from .fakes import Harness

    app = App()

    @app.route("/x")
    class H(RequestHandler):
        stream_request_body = True

        async def post(self):
            try:
                await asyncio.wait_for(self.request.read(), timeout=0.5)
            except TimeoutError:
                pass
            self.write(await self.request.read())

    h = Harness(app)
    proto, t = h.connect()
    proto.data_received(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
    h.run(1.0)
    assert t.take() == b""
    proto.data_received(b"hello")
    h.run()
    assert t.take().endswith(b"\r\n\r\nhello")
