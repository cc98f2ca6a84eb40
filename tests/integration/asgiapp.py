"""A small raw ASGI 3 app for the serve tests (no framework, no Starlette).

    GET /scope      -> JSON of the scope's plain fields and the lifespan state
    POST /echo      -> the request body back (read in events), with the event count
    GET /stream?n=K -> K chunks "chunk i\\n" (more_body), no Content-Length: chunked
    GET /boom       -> raises before the response starts (a 500)

``failing_app``: lifespan startup fails with a message (the server exits with code 3).
"""
import json
import sys


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = "yes"
                await send({"type": "lifespan.startup.complete"})
            else:
                print("asgiapp: lifespan shutdown", file=sys.stderr, flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"][len(scope["root_path"]):]   # path includes root_path
    if path == "/echo":
        body, events = b"", 0
        while True:
            message = await receive()
            events += 1
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"x-events", str(events).encode())]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/stream":
        n = int(dict(p.split("=") for p in scope["query_string"].decode().split("&") if p)
                .get("n", 3))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for i in range(n):
            await send({"type": "http.response.body", "body": b"chunk %d\n" % i,
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/boom":
        raise RuntimeError("boom: a secret the client must not see")
    else:
        fields = {k: (v.decode("latin-1") if isinstance(v, bytes) else v)
                  for k, v in scope.items() if k not in ("headers", "state")}
        fields["state"] = scope["state"]
        fields["headers"] = [[k.decode(), v.decode()] for k, v in scope["headers"]]
        body = json.dumps(fields).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def failing_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed",
                    "message": "database at 198.18.0.9 refused the connection"})
        return
    raise AssertionError("no HTTP request may reach an app that failed to start")


async def fails_on_restart(scope, receive, send):
    """Starts once; a worker started again (after a crash) finds the marker file of the
    first start (ASGIAPP_MARKER) and fails its startup."""
    import os
    if scope["type"] == "lifespan":
        marker = os.environ["ASGIAPP_MARKER"]
        await receive()
        if os.path.exists(marker):
            await send({"type": "lifespan.startup.failed",
                        "message": "the second start is refused"})
            return
        open(marker, "w").close()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await app(scope, receive, send)
