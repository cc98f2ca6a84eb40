import os
import uuid

import pytest

from framework.master import netns
from framework.shm import cleanup_run, new_runid


def uniq(prefix="t"):
    """A short unique name (interface names are limited to 15 chars)."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class Lab:
    """Namespaces and veth pairs of one test; all removed at teardown."""

    def __init__(self):
        self.namespaces = []
        self.links = []

    def netns(self, prefix="fwt"):
        name = uniq(prefix)
        netns.add_netns(name)
        self.namespaces.append(name)
        return name

    def veth(self, a_netns=None, b_netns=None, prefix="fv"):
        base = uniq(prefix)
        a, b = base + "a", base + "b"
        netns.add_veth(a, b, a_netns, b_netns)
        self.links.append((a, a_netns))
        return a, b

    def cleanup(self):
        for ifname, ns in self.links:
            netns.del_link(ifname, ns)
        for ns in self.namespaces:
            netns.del_netns(ns)


@pytest.fixture
def lab():
    if os.geteuid() != 0:
        pytest.fail("network tests need root (CI runs as root)")
    lab = Lab()
    try:
        yield lab
    finally:
        lab.cleanup()


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
