"""A Starlette app exercising what real apps use: routes with path parameters, JSON,
streaming, a background task, lifespan state, a WebSocket echo, and a view of the ASGI
scope (every field that does not depend on the server's address)."""
import asyncio
import contextlib
import os

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import (FileResponse, JSONResponse, PlainTextResponse, Response,
                                 StreamingResponse)
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

LARGE = bytes(range(256)) * 4096            # 1 MiB, every byte value
A_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flask_app.py")


@contextlib.asynccontextmanager
async def lifespan(app):
    done = []                   # what background tasks finished (per worker)
    yield {"started": "yes", "done": done, "ws_closes": [], "streams_ended": []}


async def index(request):
    return PlainTextResponse("hello\n")


async def as_json(request):
    return JSONResponse({"n": 1, "text": "héllo", "list": [1, 2, 3], "none": None})


async def item(request):
    return JSONResponse({"id": request.path_params["id"],
                         "query": sorted(request.query_params.multi_items())})


async def name(request):
    return PlainTextResponse(request.path_params["name"])


async def echo(request):
    body = await request.body()
    return Response(body, media_type=request.headers.get("content-type", "text/plain"),
                    headers={"x-body-length": str(len(body))})


async def stream(request):
    async def parts():
        for i in range(5):
            yield f"part {i}\n".encode()
            await asyncio.sleep(0.01)
    return StreamingResponse(parts(), media_type="text/plain")


async def forever(request):
    """Streams until the client goes away: Starlette sees http.disconnect and cancels the
    generator, whose ``finally`` records the tag."""
    ended = request.state.streams_ended
    tag = request.query_params["tag"]

    async def ticks():
        try:
            while True:
                yield b"tick\n"
                await asyncio.sleep(0.01)
        finally:
            ended.append(tag)
    return StreamingResponse(ticks(), media_type="text/plain")


async def streams_ended(request):
    return JSONResponse(request.state.streams_ended)


async def large(request):
    return Response(LARGE, media_type="application/octet-stream")


async def background(request):
    done = request.state.done
    tag = request.query_params["tag"]

    async def record():
        await asyncio.sleep(0)
        done.append(tag)
    return JSONResponse({"queued": tag}, background=BackgroundTask(record))


async def background_done(request):
    return JSONResponse({"done": request.state.done})


async def state(request):
    return JSONResponse({"started": request.state.started})


async def worker(request):
    return JSONResponse({"pid": os.getpid(), "started": request.state.started})


async def headers(request):
    return JSONResponse([[k.decode("latin-1"), v.decode("latin-1")]
                         for k, v in request.scope["headers"]])


async def scope(request):
    s = request.scope
    return JSONResponse({
        "type": s["type"], "asgi": s["asgi"], "http_version": s["http_version"],
        "method": s["method"], "scheme": s["scheme"], "path": s["path"],
        "raw_path": s["raw_path"].decode("latin-1"),
        "query_string": s["query_string"].decode("latin-1"),
        "root_path": s["root_path"], "has_state": "state" in s,
        "client_is_pair": len(s["client"]) == 2, "server_is_pair": len(s["server"]) == 2,
    })


async def client(request):
    # only meaningful behind a trusted proxy (test_proxy_headers.py): otherwise the
    # client is the test's own address, which differs from server to server
    s = request.scope
    return JSONResponse({"client": list(s["client"]), "scheme": s["scheme"],
                         "url": str(request.url)})


async def cookies(request):
    r = JSONResponse({"cookies": request.cookies}, status_code=201)
    r.set_cookie("a", "1", path="/")
    r.set_cookie("b", "2", httponly=True)
    return r


async def a_file(request):
    # Starlette answers Range requests (206, 416) and If-Range itself
    return FileResponse(A_FILE, media_type="text/x-python")


async def odd_headers(request):
    r = Response(b"odd", media_type="text/plain")
    r.raw_headers += [(b"x-latin", b"caf\xe9"), (b"x-empty", b""), (b"x-dup", b"1"),
                      (b"x-dup", b"2"), (b"x-long", b"v" * 6000)]
    return r


async def fail(request):
    raise RuntimeError("boom (expected by the test)")


async def ws_closes(request):
    return JSONResponse(request.state.ws_closes)


async def ws_echo(websocket):
    await websocket.accept(subprotocol=(websocket.scope["subprotocols"] or [None])[0],
                           headers=[(b"x-accepted-by", b"starlette")])
    try:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                websocket.state.ws_closes.append([msg.get("code"), msg.get("reason")])
                return
            if msg.get("text") == "close-me":
                await websocket.close(code=4001, reason="asked to")
                return
            if msg.get("text") is not None:
                await websocket.send_text(msg["text"])
            else:
                await websocket.send_bytes(msg["bytes"])
    except WebSocketDisconnect:
        pass


async def ws_scope(websocket):
    """Sends the websocket scope's fields that do not depend on the server's address."""
    await websocket.accept()
    s = websocket.scope
    await websocket.send_json({
        "type": s["type"], "asgi": s["asgi"], "http_version": s["http_version"],
        "scheme": s["scheme"], "path": s["path"], "raw_path": s["raw_path"].decode("latin-1"),
        "query_string": s["query_string"].decode("latin-1"), "root_path": s["root_path"],
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in s["headers"]
                    if k not in (b"sec-websocket-key", b"host")],
        "subprotocols": s["subprotocols"], "has_state": "state" in s,
        "client_is_pair": len(s["client"]) == 2, "server_is_pair": len(s["server"]) == 2,
    })
    await websocket.close()


async def ws_reject(websocket):
    await websocket.close(code=1008)


# the same endpoints behind middleware: gzip (Accept-Encoding) and CORS (preflight)
gzipped = GZipMiddleware(Starlette(routes=[Route("/large", large), Route("/stream", stream),
                                           Route("/json", as_json)]), minimum_size=20)
cors = CORSMiddleware(Starlette(routes=[Route("/json", as_json),
                                        Route("/echo", echo, methods=["POST"])]),
                      allow_origins=["https://example.org"], allow_methods=["GET", "POST"],
                      allow_headers=["X-Custom"], expose_headers=["X-Body-Length"])

routes = [
    Route("/", index),
    Route("/json", as_json),
    Route("/items/{id:int}", item),
    Route("/name/{name}", name),
    Route("/echo", echo, methods=["POST", "PUT"]),
    Route("/stream", stream),
    Route("/large", large),
    Route("/forever", forever),
    Route("/streams-ended", streams_ended),
    Route("/background", background),
    Route("/background/done", background_done),
    Route("/state", state),
    Route("/worker", worker),
    Route("/headers", headers),
    Route("/scope/{rest:path}", scope),
    Route("/cookies", cookies),
    Route("/client", client),
    Route("/file", a_file),
    Route("/odd-headers", odd_headers),
    Route("/fail", fail),
    Mount("/gz", app=gzipped),
    Mount("/cors", app=cors),
    Route("/ws-closes", ws_closes),
    WebSocketRoute("/ws", ws_echo),
    WebSocketRoute("/ws-reject", ws_reject),
    WebSocketRoute("/ws-scope/{rest:path}", ws_scope),
]

app = Starlette(routes=routes, lifespan=lifespan)
