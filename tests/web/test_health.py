"""--health-path: 200 while serving, 503 once a stop begins, before the app's routing,
for our App, an ASGI and a WSGI app alike (framework/web/health.py)."""
import pytest

from framework import App, RequestHandler
from framework.web.health import begin_drain
from framework.web.serving import WebOptions, build_app
from framework.web.testing import TestClient


def framework_app():
    app = App()

    @app.route("/")
    class Root(RequestHandler):
        def get(self):
            self.write("app\n")

    return app


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"app " + scope["path"].encode()})


def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app " + environ["PATH_INFO"].encode()]


@pytest.mark.parametrize("make", [framework_app, lambda: asgi_app, lambda: wsgi_app],
                         ids=["framework", "asgi", "wsgi"])
def test_health_answers_before_the_app_and_turns_503_on_drain(make):
    app = build_app(make(), WebOptions(health_path="/healthz", lifespan="off"))
    with TestClient(app) as client:
        r = client.get("/healthz")
        assert (r.status, r.text) == (200, "ok\n")
        assert r.headers.get("cache-control") == "no-store"
        assert client.get("/").text.startswith("app")
        assert client.request("HEAD", "/healthz").status == 200
        begin_drain(client.loop)            # what SIGUSR2 from the supervisor does
        r = client.get("/healthz")
        assert (r.status, r.text) == (503, "draining\n")
        assert r.headers.get("connection") == "close"
        assert client.get("/").status == 200        # still serving everything else


def test_graceful_stop_is_unhealthy_too():
    app = build_app(framework_app(), WebOptions(health_path="/healthz"))
    with TestClient(app) as client:
        client.loop.draining = True         # what ShardLoop.request_stop(graceful) sets
        assert client.get("/healthz").status == 503


def test_off_by_default_and_wrapping_twice_is_one_route():
    assert build_app(framework_app(), WebOptions()).router.match("/healthz")[0] is None
    app = framework_app()
    opts = WebOptions(health_path="/healthz")
    build_app(app, opts)
    build_app(app, opts)
    assert app.router.inner.__class__.__name__ == "Router"


def test_routes_added_after_the_wrap_still_served():
    app = build_app(framework_app(), WebOptions(health_path="/healthz"))

    @app.route("/late")
    class Late(RequestHandler):
        def get(self):
            self.write("late\n")

    with TestClient(app) as client:
        assert client.get("/late").text == "late\n"
        assert client.get("/healthz").status == 200
