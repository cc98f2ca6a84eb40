"""The Starlette app over HTTPS (`--certfile/--keyfile`, trustme certificates) on both
stacks: the same fixed list of requests over https:// and the same WebSocket
conversation over wss:// as uvicorn serving it with `--ssl-certfile/--ssl-keyfile`."""
import pytest

from integration.serve_helpers import free_subnet

from . import test_starlette as plain
from .conftest import STACKS, need_root
from .harness import Framework, Tls, Uvicorn, check_list, client_for

APP = plain.APP


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    server = Uvicorn(APP, tls=Tls(str(tmp_path_factory.mktemp("uvicorn-tls")), free_subnet()))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", params=STACKS)
def served(request, tmp_path_factory):
    need_root()
    tls = Tls(str(tmp_path_factory.mktemp(f"{request.param}-tls")), free_subnet())
    server = Framework(APP, request.param, tls=tls)
    try:
        yield server
    finally:
        server.stop()


def test_same_answers_as_uvicorn_over_https(reference, served):
    check_list(reference, served, plain.REQUESTS)
    with client_for(served) as c:
        r = c.get("/scope/x")
        assert r.json()["scheme"] == "https"
        assert r.extensions["http_version"] == b"HTTP/1.1"


def test_the_banner_names_https(served):
    assert f" on https://{served.host}:8080 " in served.server.banner, served.server.banner


def test_websocket_over_tls_as_uvicorn(reference, served):
    assert plain.ws_session(served) == plain.ws_session(reference)
