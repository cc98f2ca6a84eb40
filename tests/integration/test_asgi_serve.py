"""A raw ASGI 3 app (tests/integration/asgiapp.py) served by a real `framework serve` on
its default link, on both stacks: the scope a request sees, a request body in events, a
streamed (chunked) response, a 500 that tells the client nothing, lifespan state in the
scope; and an app whose lifespan startup fails stops the server with exit code 3 and
the app's message, leaving nothing behind (no restart loop)."""
import os

import httpx
import pytest

from .serve_helpers import HERE, Server, free_subnet

STACKS = ["user", "kernel"]


@pytest.fixture(scope="module", params=STACKS)
def served(request):
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (CI runs as root)")
    s = None
    try:
        s = Server(app="asgiapp:app", cores=1,
                   extra=("--stack", request.param, "--root-path", "/api"))
        with httpx.Client(base_url=f"http://{s.ip}:8080", timeout=10) as client:
            yield s, client
    finally:
        if s is not None:
            s.cleanup()


def test_scope_as_the_spec_fills_it(served):
    s, client = served
    r = client.get("/sc%C3%A9ne?a=1&b=%20", headers={"X-Twice": "1"})
    assert r.status_code == 200
    scope = r.json()
    assert scope["type"] == "http" and scope["asgi"]["version"] == "3.0"
    assert scope["http_version"] == "1.1" and scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/api/scéne" and scope["raw_path"] == "/api/sc%C3%A9ne"
    assert scope["root_path"] == "/api" and scope["query_string"] == "a=1&b=%20"
    assert ["x-twice", "1"] in scope["headers"] and ["host", f"{s.ip}:8080"] in scope["headers"]
    assert scope["server"] == [s.ip, 8080] and scope["client"][0] == s.host_ip
    assert scope["state"] == {"started": "yes"}      # lifespan startup ran in this worker


def test_request_body_and_streamed_response(served):
    s, client = served
    body = os.urandom(300_000)
    r = client.post("/echo", content=body)
    assert r.status_code == 200 and r.content == body
    assert int(r.headers["x-events"]) >= 1
    r = client.get("/stream?n=5")
    assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
    assert r.text == "".join(f"chunk {i}\n" for i in range(5))


def test_exception_is_a_500_without_details(served):
    s, client = served
    r = client.get("/boom")
    assert r.status_code == 500 and r.text == "Internal Server Error"
    assert "secret" not in r.text
    assert client.get("/").status_code == 200     # the worker serves on
    assert "boom: a secret" in s.stderr()         # logged with its traceback


@pytest.mark.parametrize("stack", STACKS)
def test_failed_startup_exits_3_with_the_message(stack):
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (CI runs as root)")
    s = Server.__new__(Server)          # no banner will come: start it by hand
    s._start("asgiapp:failing_app", 1, ("--stack", stack, "--lifespan", "on"), HERE,
             free_subnet(), {**os.environ, "PYTHONPATH": os.pathsep.join(
                 [HERE, os.path.dirname(os.path.dirname(HERE))])})
    try:
        rc = s.proc.wait(30)
        err = s.stderr()
        assert rc == 3, err
        lines = [ln for ln in err.splitlines() if ln.startswith("framework: ")]
        assert any("application startup failed: database at 198.18.0.9 refused the "
                   "connection" in ln for ln in lines), err
        assert "restarting" not in err, err
        assert s.leftovers() == []
    finally:
        s.cleanup()


def test_sigterm_runs_the_lifespan_shutdown(served):
    # last of the module's tests on this server: it stops it
    s, client = served
    assert client.get("/").status_code == 200
    assert s.stop() == 0
    assert "asgiapp: lifespan shutdown" in s.stderr()


def test_failed_startup_of_a_restarted_worker_stops_the_server(serve, tmp_path):
    # a worker killed and restarted whose app now refuses to start: exit 3, no loop
    marker = tmp_path / "started"
    s = serve(app="asgiapp:fails_on_restart", cores=1, extra=("--stack", "kernel"),
              env={"ASGIAPP_MARKER": str(marker)})
    assert marker.exists()
    s.workers()[0].kill()
    rc = s.proc.wait(30)
    err = s.stderr()
    assert rc == 3, err
    assert "application startup failed: the second start is refused" in err
    assert err.count("died") <= 1, err          # one death (the kill), no restart storm
