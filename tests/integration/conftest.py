"""Fixtures of the supervisor-level tests; the helpers live in serve_helpers.py."""
import os

import pytest

from .serve_helpers import Server


@pytest.fixture
def serve():
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (CI runs as root)")
    servers = []

    def start(*args, **kw):
        s = Server(*args, **kw)
        servers.append(s)
        return s

    try:
        yield start
    finally:
        for s in servers:
            s.cleanup()


