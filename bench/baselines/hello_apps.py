"""apps.hello's ``GET /`` as a raw ASGI app (uvicorn, granian --interface asgi) and a raw
RSGI app (granian --interface rsgi): the same 13-byte body and Content-Type; any other
path -> 404. No framework on top, the way those servers are measured at their best.
The Date and Server headers are the servers' own.

    uvicorn bench.baselines.hello_apps:asgi ...
    granian --interface asgi bench.baselines.hello_apps:asgi ...
    granian --interface rsgi bench.baselines.hello_apps:rsgi ...
"""
BODY = b"Hello, World!"

_ASGI_START = {"type": "http.response.start", "status": 200,
               "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")]}
_ASGI_BODY = {"type": "http.response.body", "body": BODY}
_ASGI_404 = {"type": "http.response.start", "status": 404,
             "headers": [(b"content-length", b"0")]}
_ASGI_EMPTY = {"type": "http.response.body", "body": b""}


async def asgi(scope, receive, send):
    kind = scope["type"]
    if kind == "http":
        if scope["path"] == "/":
            await send(_ASGI_START)
            await send(_ASGI_BODY)
        else:
            await send(_ASGI_404)
            await send(_ASGI_EMPTY)
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


_RSGI_HEADERS = [("content-type", "text/plain")]


async def rsgi(scope, proto):
    if scope.path == "/":
        proto.response_bytes(200, _RSGI_HEADERS, BODY)
    else:
        proto.response_empty(404, [])
