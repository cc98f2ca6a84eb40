"""run_kernel_worker (framework/shard/run.py) itself: SO_REUSEPORT shards, SIGTERM, bind
errors.

Kernel only, on purpose: these test the kernel-socket loop's own machinery. The user
stack's counterparts are elsewhere: shards on one port (RSS steering) and SIGTERM in
tests/integration (``framework serve --cores 2``), a bad --iface/--ip in
test_serve.test_bad_flags_exit_2_one_line_nothing_left, the user-stack loop in
tests/shard/test_worker_loop.py. Running out of file descriptors is kernel-specific: a
user-stack connection holds no descriptor. The HTTP behaviour itself runs on both
stacks (test_kernel_http.py, test_stacks_identical.py).
"""
import json
import os
import signal

import pytest

from .conftest import CLIENT_IP, SERVER_IP, TESTAPP, Net
from .fakes import parse_responses
from .servers import connect, recv_responses, start_server


def test_two_shards_share_the_port(lab):
    net = Net(lab)
    a = start_server("kernel", TESTAPP, net.server_ns, SERVER_IP, 8080, shard_id=0, shard_count=2)
    b = start_server("kernel", TESTAPP, net.server_ns, SERVER_IP, 8080, shard_id=1, shard_count=2)
    try:
        shards = set()
        for _ in range(40):
            s = connect(net.client_ns, SERVER_IP, 8080)
            s.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            (st, hd, body), = recv_responses(s, 1, parse_responses)
            s.close()
            info = json.loads(body)
            assert info["shard"][1] == 2 and info["remote_ip"] == CLIENT_IP
            shards.add(info["shard"][0])
        assert shards == {0, 1}
    finally:
        assert a.stop() == 0
        assert b.stop() == 0


def test_sigterm_stops_worker(lab):
    net = Net(lab)
    h = start_server("kernel", TESTAPP, net.server_ns, SERVER_IP, 8080, signals=True)
    try:
        s = connect(net.client_ns, SERVER_IP, 8080)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert recv_responses(s, 1, parse_responses)[0][2] == b"Hello, World!"
        s.close()
        os.kill(h.proc.pid, signal.SIGTERM)
        h.proc.join(3)
        assert h.proc.exitcode == 0
    finally:
        h.stop()


def test_bind_error_is_reported(lab):
    net = Net(lab)
    with pytest.raises(RuntimeError, match="did not start"):
        start_server("kernel", TESTAPP, net.server_ns, "198.18.99.1", 8080, timeout=3)


def test_loop_extension_hooks(lab):
    """Extra per-shard machinery joins the shard loop (framework/shard/loop.py) before the
    app starts: an fd reader (asyncio's add_reader), a per-turn hook and a deadline (the
    provider's output/deadline), sleep/wake hooks (the doorbell's prepare_sleep/awake);
    the loop served by serve_shard in a thread of this process."""
    import threading
    import time as _time

    from framework import App, RequestHandler
    from framework.shard.kernelstack import KernelProvider
    from framework.shard.run import serve_shard

    net = Net(lab)
    app = App()
    seen = {"turns": 0, "reads": [], "sleeps": 0, "wakes": 0, "setup_before_start": None}

    @app.shard_state
    def st(ctx):
        return {"ext": getattr(ctx, "_ext_marker", None)}

    @app.route("/")
    class H(RequestHandler):
        def get(self):
            self.write(str(self.state["ext"]))

    r, w = os.pipe()
    bell_r, bell_w = os.pipe()
    wake_at = [None]

    class Bell:
        """The loop's doorbell interface: announced sleeps and wake-ups are counted."""

        def fileno(self):
            return bell_r

        def drain(self):
            os.read(bell_r, 100)

        def prepare_sleep(self):
            seen["sleeps"] += 1

        def awake(self):
            seen["wakes"] += 1

    def setup(loop):
        seen["setup_before_start"] = loop.ctx.state is None
        loop.add_reader(r, lambda: seen["reads"].append(os.read(r, 100)))
        loop.use_doorbell(Bell())

    class HookedProvider(KernelProvider):
        def start(self, loop, ctx):
            super().start(loop, ctx)
            setup(loop)

        def output(self, now):          # once per turn
            seen["turns"] += 1
            return super().output(now)

        def deadline(self):
            return wake_at[0]

    stop = threading.Event()
    ready = threading.Event()
    errors = []

    def run():
        try:
            serve_shard(app, HookedProvider(SERVER_IP, netns=net.server_ns), 8080,
                        stop_event=stop, ready=ready)
        except Exception as e:      # surfaced below
            errors.append(e)
            ready.set()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    assert ready.wait(5) and not errors, errors
    try:
        os.write(w, b"ping")
        s = connect(net.client_ns, SERVER_IP, 8080)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert recv_responses(s, 1, parse_responses)[0][2] == b"None"
        s.close()
        _time.sleep(0.05)
        wake_at[0] = _time.monotonic() + 0.05          # a hook deadline wakes the loop ...
        turns = seen["turns"]
        os.write(w, b"x")                              # ... once it recomputes its timeout
        _time.sleep(0.12)       # without the hook: one or two turns (idle sleeps last
        wake_at[0] = None       # up to 0.5 s); a past deadline means "poll without sleeping"
        assert seen["turns"] - turns >= 3
        assert seen["reads"][0] == b"ping"
        assert seen["setup_before_start"] is True
        assert seen["sleeps"] >= 1 and seen["wakes"] >= 1
    finally:
        stop.set()
        th.join(5)
        os.close(r)
        os.close(w)
        os.close(bell_r)
        os.close(bell_w)
    assert not th.is_alive()
    assert not errors, errors


def test_out_of_file_descriptors_backs_off_and_recovers(lab):
    # kernel only: a user-stack connection uses no file descriptor (EMFILE cannot happen)
    import time

    import psutil
    net = Net(lab)
    h = start_server("kernel", TESTAPP, net.server_ns, SERVER_IP, 8080, nofile=48)
    socks = []
    try:
        proc = psutil.Process(h.proc.pid)
        for _ in range(80):          # more than the worker has descriptors for
            socks.append(connect(net.client_ns, SERVER_IP, 8080))
        proc.cpu_percent(None)
        time.sleep(0.6)
        assert proc.cpu_percent(None) < 50, "accept loop spinning on EMFILE"
        for s in socks:
            s.close()
        socks = []
        time.sleep(0.3)
        s = connect(net.client_ns, SERVER_IP, 8080)
        socks.append(s)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert recv_responses(s, 1, parse_responses)[0][2] == b"Hello, World!"
    finally:
        for s in socks:
            s.close()
        h.stop()
