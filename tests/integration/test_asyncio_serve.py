"""Plain asyncio inside handlers, through `framework serve` on the default link, on both
stacks: the shard's loop is a real asyncio loop (ShardLoop), so asyncio's own tools work
in a handler (tests/integration/asyncioapp.py: one route per feature). A handler's
asyncio.open_connection reaches a server this test runs on 127.0.0.1 of the namespace
it started `framework serve` in: the workers stay in the supervisor's namespace (only
their port / listening sockets live in the link's). Also: an idle worker costs ~0% CPU,
and a handler that blocks the loop (time.sleep past --timeout) gets its worker killed
and restarted by the heartbeat watchdog, on both stacks."""
import asyncio
import json
import os
import threading
import urllib.request

import pytest

from .serve_helpers import Server, assert_idle, assert_stuck_worker_replaced

STACKS = ["user", "kernel"]


class Peer:
    """A small asyncio TCP server on 127.0.0.1 (a free port), in a thread of this
    process: it answers each line with ``pong: <line>`` and counts its clients."""

    def __init__(self):
        self.clients = 0
        self.lines = []
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        assert started.wait(5), "peer server did not start"

    def _run(self, started):
        asyncio.set_event_loop(self.loop)

        async def client(reader, writer):
            self.clients += 1
            line = await reader.readline()
            self.lines.append(line)
            writer.write(b"pong: " + line)
            await writer.drain()
            writer.close()

        self.server = self.loop.run_until_complete(
            asyncio.start_server(client, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    def close(self):
        def stop():
            self.server.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module", params=STACKS)
def served(request):
    """(Server, Peer): asyncioapp on one worker of ``--stack <param>``."""
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (CI runs as root)")
    peer = Peer()
    s = None
    try:
        s = Server(app="asyncioapp:app", cores=1, extra=("--stack", request.param),
                   env={"ASYNCIOAPP_PEER_PORT": str(peer.port)})
        yield s, peer
    finally:
        if s is not None:
            s.cleanup()
        peer.close()


def get_json(s, path, timeout=10):
    with urllib.request.urlopen(f"http://{s.ip}:8080{path}", timeout=timeout) as r:
        assert r.status == 200
        return json.loads(r.read())


def test_running_loop_is_the_shard_loop(served):
    s, _ = served
    assert get_json(s, "/loop") == {"type": "ShardLoop", "is_ctx_loop": True,
                                    "in_task": True}


def test_asyncio_sleep(served):
    s, _ = served
    assert 0.19 <= get_json(s, "/sleep")["slept"] < 1.0


def test_create_task(served):
    s, _ = served
    assert get_json(s, "/task") == {"result": 42, "done": True}


def test_wait_for_timeout_fires(served):
    s, _ = served
    got = get_json(s, "/wait_for")
    assert got["timed_out"] is True and 0.09 <= got["elapsed"] < 1.0, got


def test_gather(served):
    s, _ = served
    got = get_json(s, "/gather")
    # results in argument order; the sleeps ran concurrently (0.2 s, not 0.45 s)
    assert got["results"] == ["a", "b", "c"] and 0.19 <= got["elapsed"] < 0.4, got


def test_queue(served):
    s, _ = served
    assert get_json(s, "/queue") == {"items": [0, 1, 2, 3, 4, 5]}


def test_event(served):
    s, _ = served
    assert get_json(s, "/event") == {"order": ["set", "woken"], "set_before": False}


def test_task_cancellation(served):
    s, _ = served
    assert get_json(s, "/cancel") == {"cancelled": True, "raised": True,
                                      "got_cancelled_error": True}


def test_run_in_executor(served):
    s, _ = served
    assert get_json(s, "/executor") == {"other_thread": True}


def test_open_connection_reaches_the_supervisors_namespace(served):
    s, peer = served
    before = peer.clients
    assert get_json(s, "/connect") == {"reply": "pong: hello from the shard"}
    assert peer.clients == before + 1 and peer.lines[-1] == b"hello from the shard\n"


def test_idle_worker_near_zero_cpu(served):
    s, _ = served
    assert_idle(list(s.wait_workers(1).values()), 5.0, window=2.0)


@pytest.mark.parametrize("stack", STACKS)
def test_blocking_handler_past_timeout_restarts_worker(serve, stack):
    s = serve(app="spinapp:app", cores=1, extra=("--stack", stack, "--timeout", "1"))
    took = assert_stuck_worker_replaced(s, "/block?s=30")
    print(f"\n{stack}: blocked worker replaced after {took:.2f} s (--timeout 1)")
    assert s.stop() == 0, s.stderr()
    assert s.leftovers() == []
