"""A Flask app (flask_app.py, WSGI) served by `framework serve` on both stacks answers a
fixed list of requests exactly as uvicorn's WSGI interface does (the reference), and its
views see a PEP 3333 environ."""
import pytest

from .flask_app import LARGE
from .harness import Req, check_list, client_for, differences, parse_raw, raw_exchange

APP = "flask_app:app"
UVICORN_INTERFACE = "wsgi"

REQUESTS = [
    Req("index", "GET", "/", status=200),
    Req("json", "GET", "/json", status=200),
    Req("path param", "GET", "/items/42", status=200),
    Req("path param not an int", "GET", "/items/abc", status=404),
    Req("query percent-encoded", "GET", "/items/7?q=a%20b&q=c+d&x=%E2%9C%93&empty=",
        status=200),
    Req("unicode path", "GET", "/name/caf%C3%A9", status=200),
    Req("unicode path, httpx encodes", "GET", "/name/日本語", status=200),
    Req("post body", "POST", "/echo", headers=[("Content-Type", "application/json")],
        body=b'{"k": "v"}', status=200),
    Req("put binary body", "PUT", "/echo",
        headers=[("Content-Type", "application/octet-stream")],
        body=bytes(range(256)) * 1000, status=200),
    Req("20 MiB upload", "PUT", "/echo",
        headers=[("Content-Type", "application/octet-stream")],
        body=bytes(range(256)) * (4096 * 20), status=200),
    Req("form", "POST", "/form",
        headers=[("Content-Type", "application/x-www-form-urlencoded")],
        body=b"a=1&b=x%20y&a=2", status=200),
    Req("streaming", "GET", "/stream", status=200),
    Req("large", "GET", "/large", status=200),
    Req("head", "HEAD", "/", status=200),
    Req("not found", "GET", "/nothing", status=404),
    Req("method not allowed", "DELETE", "/echo", status=405),
    Req("environ", "GET", "/environ?a=%20b", status=200),
    Req("a file", "GET", "/file", status=200),
    Req("a file, head", "HEAD", "/file", status=200),
    Req("a file, a range", "GET", "/file", headers=[("Range", "bytes=5-54")], status=206),
    Req("a file, a range past the end", "GET", "/file",
        headers=[("Range", "bytes=999999-")], status=416),
    Req("a file, not modified", "GET", "/file",
        headers=[("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")], status=304),
    Req("a redirect", "GET", "/old", status=301),
    Req("app exception", "GET", "/fail", status=500),
    Req("after the exception", "GET", "/", status=200),
]


def test_same_answers_as_uvicorn(reference, served):
    # reason phrases apart: uvicorn's WSGI interface replaces the app's with its own
    check_list(reference, served, REQUESTS, reason=False)


def test_the_status_line_is_the_apps(served):
    """PEP 3333: the app's status string is the status line (as gunicorn and waitress
    send it): werkzeug says "404 NOT FOUND"."""
    with client_for(served) as c:
        assert [(r.status_code, r.reason_phrase) for r in (c.get("/nothing"),
                                                           c.delete("/echo"), c.get("/"))] \
            == [(404, "NOT FOUND"), (405, "METHOD NOT ALLOWED"), (200, "OK")]


def test_environ_and_bodies(served):
    with client_for(served) as c:
        assert c.get("/environ?a=%20b").json() == {
            "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/environ",
            "QUERY_STRING": "a=%20b", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http", "version": [1, 0], "input": ""}
        assert c.get("/name/caf%C3%A9").text == "café"
        assert c.get("/large").content == LARGE
        assert c.get("/stream").text == "".join(f"part {i}\n" for i in range(5))
        assert c.post("/form", content=b"a=1&a=2",
                      headers={"content-type": "application/x-www-form-urlencoded"}
                      ).json() == [["a", "1"], ["a", "2"]]


RAW = [
    ("raw pipelined", b"GET /items/1 HTTP/1.1\r\nHost: h\r\n\r\nGET /items/2?a=%41 HTTP/1.1\r\n"
     b"Host: h\r\nConnection: close\r\n\r\n"),
    ("raw head of a stream", b"HEAD /stream HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
    ("raw expect 100-continue", b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
     b"Expect: 100-continue\r\nConnection: close\r\n\r\nhello"),
    ("raw http/1.0", b"GET /environ HTTP/1.0\r\nHost: h\r\n\r\n"),
    ("raw query untouched", b"GET /environ?a=%41&b=%2x&c=+ HTTP/1.1\r\nHost: h\r\n"
     b"Connection: close\r\n\r\n"),
]


@pytest.mark.parametrize("name,data", RAW, ids=[r[0] for r in RAW])
def test_raw_requests_as_uvicorn(reference, served, name, data):
    head = data.startswith(b"HEAD")
    ref = parse_raw(raw_exchange(reference.host, reference.port, data), head)
    got = parse_raw(raw_exchange(served.host, served.port, data), head)
    assert ref and ref[-1].status == 200, (name, [(r.status, r.body) for r in ref])
    assert [r.status for r in got] == [r.status for r in ref], name
    for i, (r, g) in enumerate(zip(ref, got)):
        assert differences(r, g, reason=False) == [], f"{name}: response {i + 1}"


def test_chunked_request_body_reaches_the_view(served):
    """A chunked upload reaches Flask whole. No comparison with uvicorn here: its WSGI
    interface gives the view an empty body (no CONTENT_LENGTH, no wsgi.input_terminated),
    where gunicorn and werkzeug's own server hand it over."""
    data = (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: t/x\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    [got] = parse_raw(raw_exchange(served.host, served.port, data))
    assert (got.status, got.body, got.header("x-body-length")) == (200, b"hello world",
                                                                   ["11"])
