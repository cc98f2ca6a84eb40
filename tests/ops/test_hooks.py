"""--on-ready / --on-drain / --drain-delay: the supervisor's Lifecycle (framework/master/hooks.py)."""
import os
import signal
import subprocess
import sys
import time

from framework.master.hooks import DRAIN_SIGNAL, Lifecycle


def wait_for(path, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and open(path).read():
            return open(path).read()
        time.sleep(0.02)
    raise AssertionError(f"{path} was not written")


def test_ready_runs_once_with_its_environment(tmp_path):
    out = tmp_path / "ready"
    lc = Lifecycle(on_ready=f'echo "$FRAMEWORK_EVENT $FRAMEWORK_VIPS" >> {out}',
                   vips=["198.19.0.1", "198.19.0.2"])
    lc.ready()
    lc.ready()
    lc.close()
    assert out.read_text() == "ready 198.19.0.1,198.19.0.2\n"


def test_drain_runs_the_hook_signals_ready_workers_and_ends_after_the_delay(tmp_path):
    out = tmp_path / "drain"
    # a stand-in worker: exits 0 when it gets the drain signal
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal,sys,time\n"
                              f"signal.signal({int(DRAIN_SIGNAL)}, lambda *a: sys.exit(7))\n"
                              "print('up', flush=True)\ntime.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "up\n"
        lc = Lifecycle(on_drain=f"echo $FRAMEWORK_EVENT > {out}", drain_delay=2.0)
        assert lc.step(100.0, [child.pid]) is False        # nothing asked yet
        lc.request_drain()
        assert lc.step(100.0, [child.pid]) is False        # drain begins: not over yet
        assert lc.next_deadline() == 102.0
        assert child.wait(5) == 7                           # the worker was told
        assert wait_for(out) == "drain\n"
        assert lc.step(101.9, [child.pid]) is False
        assert lc.step(102.0, [child.pid]) is True          # graceful stop due
        lc.begin_drain()                                    # the stop itself: no second run
        lc.close()
        assert out.read_text() == "drain\n"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_failing_or_slow_hook_does_not_block(tmp_path):
    lc = Lifecycle(on_ready="exit 3", on_drain="sleep 30")
    t0 = time.monotonic()
    lc.ready()
    lc.begin_drain()
    assert time.monotonic() - t0 < 1.0
    lc.close(wait=0.2)                                      # the sleeper is killed
    assert time.monotonic() - t0 < 3.0
