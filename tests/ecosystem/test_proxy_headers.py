"""`--forwarded-allow-ips` as uvicorn's `--proxy-headers --forwarded-allow-ips`: behind a
trusted proxy the ASGI scope's client and scheme come from X-Forwarded-For/-Proto."""
from .harness import Req, check_list, client_for

APP = "starlette_app:app"
UVICORN_FLAGS = ("--proxy-headers", "--forwarded-allow-ips", "*")
SERVE_FLAGS = ("--forwarded-allow-ips", "*")

REQUESTS = [
    Req("forwarded for", "GET", "/client", headers=[("X-Forwarded-For", "203.0.113.7")],
        status=200),
    Req("forwarded for and proto", "GET", "/client",
        headers=[("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
        status=200),
    Req("a chain of proxies", "GET", "/client",
        headers=[("X-Forwarded-For", "203.0.113.7, 198.51.100.1, 192.0.2.9")], status=200),
    Req("an ipv6 client", "GET", "/client", headers=[("X-Forwarded-For", "2001:db8::1")],
        status=200),
]


def test_forwarded_as_uvicorn(reference, served):
    check_list(reference, served, REQUESTS)


def test_proto_alone_keeps_the_peer(served):
    """Only X-Forwarded-Proto: the scheme follows it, the client stays the peer itself
    (its own address and port; uvicorn does the same, at its own address)."""
    with client_for(served) as c:
        got = c.get("/client", headers={"X-Forwarded-Proto": "https"}).json()
    assert got["scheme"] == "https" and got["url"].startswith("https://")
    assert got["client"][0] == served.host.rsplit(".", 1)[0] + ".1" and got["client"][1] > 0
