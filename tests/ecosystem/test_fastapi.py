"""A FastAPI app (fastapi_app.py) served by `framework serve` on both stacks answers a
fixed list of requests exactly as uvicorn does: path and query parameters, a body model,
422s from validation, dependencies (a header check, a yield dependency, a sync endpoint in
FastAPI's thread pool), 404/405, HEAD, and the generated OpenAPI document and docs page."""
import json
import time

from .harness import Req, check_list, client_for

APP = "fastapi_app:app"
JSON = [("Content-Type", "application/json")]
TOKEN = [("X-Token", "secret")]


def body(obj):
    return json.dumps(obj).encode()


REQUESTS = [
    Req("path and query", "GET", "/items/5?q=red%20car", status=200),
    Req("query default", "GET", "/items/5", status=200),
    Req("path not an int: 422", "GET", "/items/five", status=422),
    Req("query over its bound: 422", "GET", "/items/5?limit=1000", status=422),
    Req("body model", "POST", "/items", headers=JSON + TOKEN,
        body=body({"name": "lamp", "price": 12.5, "tags": ["a", "b"]}), status=201),
    Req("body missing a field: 422", "POST", "/items", headers=JSON + TOKEN,
        body=body({"name": "lamp"}), status=422),
    Req("body wrong type: 422", "POST", "/items", headers=JSON + TOKEN,
        body=body({"name": "lamp", "price": "cheap"}), status=422),
    Req("body not JSON: 422", "POST", "/items", headers=JSON + TOKEN, body=b"{not json",
        status=422),
    Req("dependency: header missing: 422", "POST", "/items", headers=JSON,
        body=body({"name": "lamp", "price": 1}), status=422),
    Req("dependency: wrong token: 403", "POST", "/items",
        headers=JSON + [("X-Token", "nope")], body=body({"name": "lamp", "price": 1}),
        status=403),
    Req("sync endpoint with a yield dependency", "PUT", "/items/3", headers=JSON,
        body=body({"name": "desk", "price": 99}), status=200),
    Req("unicode path parameter", "GET", "/users/J%C3%BCrgen/hello", status=200),
    Req("204 no body", "DELETE", "/items/3", status=204),
    Req("not found", "GET", "/nope", status=404),
    Req("method not allowed", "PATCH", "/items/3", status=405),
    Req("head of a get route", "HEAD", "/items/5", status=405),
    Req("response model filters", "GET", "/users/ann", status=200),
    Req("a list query", "GET", "/search?tag=a&tag=b%20c&tag=", status=200),
    Req("streamed", "GET", "/stream", status=200),
    Req("custom exception handler", "GET", "/teapot", status=418),
    Req("openapi", "GET", "/openapi.json", status=200),
    Req("docs", "GET", "/docs", status=200),
    Req("docs redirect", "GET", "/docs/", status=307),
]


def test_same_answers_as_uvicorn(reference, served):
    check_list(reference, served, REQUESTS)


def test_validation_and_dependencies(served):
    with client_for(served) as c:
        r = c.post("/items", json={"name": "lamp", "price": 10}, headers=dict(TOKEN))
        assert (r.status_code, r.json()) == (201, {
            "item": {"name": "lamp", "price": 10.0, "tags": []}, "total": 12.0,
            "by": "secret"})
        r = c.post("/items", json={"name": "", "price": -1}, headers=dict(TOKEN))
        assert r.status_code == 422
        assert sorted(e["loc"][-1] for e in r.json()["detail"]) == ["name", "price"]
        assert c.get("/users/J%C3%BCrgen/hello").text == "hello Jürgen"
        assert c.get("/openapi.json").json()["info"]["title"] == "ecosystem test"


def test_background_task(served):
    with client_for(served) as c:
        assert c.post("/later/x1").json() == {"queued": "x1"}
        deadline = time.monotonic() + 5
        while "x1" not in c.get("/later").json()["done"]:
            assert time.monotonic() < deadline, "the background task never ran"
            time.sleep(0.02)
