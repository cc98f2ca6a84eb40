import os
import signal
from contextlib import contextmanager

import multiprocess
import pytest

from framework.shm import cleanup_run, new_runid

CTX = multiprocess.get_context("fork")


@pytest.fixture
def runid():
    """A fresh run id; every segment of it must be gone after the test."""
    rid = new_runid()
    try:
        yield rid
    finally:
        cleanup_run(rid)
        left = [p for p in os.listdir("/dev/shm") if rid in p]
        assert left == [], f"left in /dev/shm: {left}"


@contextmanager
def child(target, *args):
    """A forked process that is always gone when the block ends."""
    p = CTX.Process(target=target, args=args, daemon=True)
    p.start()
    try:
        yield p
    finally:
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
        p.join(5)
