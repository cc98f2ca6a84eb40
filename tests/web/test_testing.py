"""framework.web.testing.TestClient: apps tested without sockets, in fake time."""
import time

from framework import App, RequestHandler
from framework.web.loader import load_app
from framework.web.testing import TestClient


def test_client_against_examples():
    c = TestClient(load_app("examples/json_api.py:app"))
    r = c.post("/notes", json={"text": "milk"})
    assert r.status == 201 and r.json() == {"id": 1, "text": "milk"}
    assert r.headers["location"] == "/notes/1"
    assert c.get("/notes").json() == {"notes": [{"id": 1, "text": "milk"}]}
    assert c.delete("/notes/1").status == 204
    assert c.get("/notes/1").status == 404
    assert c.state.items == {}

    c = TestClient(load_app("examples/async_handler.py:app"))
    t0 = time.monotonic()
    r = c.get("/slow?delay=5")                      # 5 s of fake time, no wall time
    assert r.json() == {"slept": 5.0, "shard": 0} and time.monotonic() - t0 < 1.0
    r = c.get("/countdown")
    assert r.headers["transfer-encoding"] == "chunked"
    assert r.text == "3...\n2...\n1...\nliftoff\n"


def test_client_forms_head_errors_and_timeouts():
    app = App(max_body_size=10, request_timeout=2.0)

    @app.route("/f")
    class F(RequestHandler):
        def get(self):
            self.write(self.get_argument("a"))

        def post(self):
            self.write(self.get_argument("a") + self.get_argument("b"))

    c = TestClient(app, shard_id=1, shard_count=4)
    assert c.post("/f", form={"a": "x", "b": "y"}).text == "xy"
    assert c.get("/f?a=1").text == "1"
    h = c.head("/f?a=12345")
    assert h.status == 200 and h.body == b"" and h.headers["content-length"] == "5"
    assert c.get("/f").status == 400
    assert c.post("/f", body=b"x" * 11).status == 413
    assert c.raw(b"BAD\x01\r\n\r\n").status == 400
    r = c.raw(b"GET /f?a=1 HTTP/1.1\r\nHost: x\r\nX-Slow: ")     # never finished: 408 after 2 s (fake)
    assert r.status == 408
    r = c.raw(b"GET /f?a=9 HTTP/1.0\r\n\r\n")
    assert r.text == "9" and r.headers["connection"] == "close"
    assert "date" in r.headers and r.headers["server"] == "framework"
