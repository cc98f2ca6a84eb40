"""`--root-path /api` (the app mounted under a prefix a proxy strips) fills the ASGI scope
as uvicorn's `--root-path /api` does: root_path set, path and raw_path with the prefix put
back, the app's routes answering under it."""
from .harness import Req, check_list, client_for

APP = "starlette_app:app"
UVICORN_FLAGS = ("--root-path", "/api")
SERVE_FLAGS = ("--root-path", "/api")

REQUESTS = [
    Req("scope", "GET", "/scope/x%20y?q=1", status=200),
    Req("a route", "GET", "/items/3", status=200),
    Req("the prefix itself", "GET", "/api/scope/x", status=404),
    Req("not found", "GET", "/nothing", status=404),
]


def test_same_scope_as_uvicorn(reference, served):
    check_list(reference, served, REQUESTS)
    with client_for(served) as c:
        scope = c.get("/scope/x%20y").json()
        assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
            "/api", "/api/scope/x y", "/api/scope/x%20y")
