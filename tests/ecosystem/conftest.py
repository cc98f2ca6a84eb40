"""Fixtures of the ecosystem tests: one server per stack per module.

A test module names its app (``APP = "starlette_app:app"``, a module of this package),
how uvicorn serves it (``UVICORN_INTERFACE``, ``UVICORN_FLAGS``) and the flags of
``framework serve`` (``SERVE_FLAGS``, ``CORES``); ``reference`` is uvicorn serving it,
``served`` is ``framework serve`` serving it on the user and on the kernel stack (the
tests using it run once per stack, the server started once per stack and module).
"""
import os

import pytest

from .harness import Framework, Uvicorn

STACKS = ["user", "kernel"]


def need_root():
    if os.geteuid() != 0:
        pytest.fail("the ecosystem tests serve on a link of their own: they need root "
                    "(CI runs as root)")


def _started(make):
    server = make()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def reference(request):
    mod = request.module
    yield from _started(lambda: Uvicorn(mod.APP, getattr(mod, "UVICORN_INTERFACE", "auto"),
                                        extra=getattr(mod, "UVICORN_FLAGS", ())))


@pytest.fixture(scope="module", params=STACKS)
def served(request):
    need_root()
    mod = request.module
    yield from _started(lambda: Framework(mod.APP, request.param,
                                          getattr(mod, "SERVE_FLAGS", ()),
                                          cores=getattr(mod, "CORES", 1)))
