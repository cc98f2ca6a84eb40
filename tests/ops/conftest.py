import os
import threading

import pytest

from framework import netns
from framework.shm import cleanup_run, new_runid


@pytest.fixture
def runid():
    """A fresh shm run id; every segment of it must be gone after the test."""
    rid = new_runid()
    try:
        yield rid
    finally:
        cleanup_run(rid)
        left = [p for p in os.listdir("/dev/shm") if rid in p]
        assert left == [], f"left in /dev/shm: {left}"


def in_netns(name, fn, *args):
    """Run fn(*args) in a thread that entered namespace ``name``; return its result."""
    out = {}

    def run():
        try:
            netns.setns(name)
            out["v"] = fn(*args)
        except BaseException as e:  # re-raised in the caller
            out["e"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    if "e" in out:
        raise out["e"]
    return out["v"]
