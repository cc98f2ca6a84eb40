"""A Starlette app served by `framework serve` (ASGI 3, detected by its shape):

    framework serve examples.starlette_app:app                 # user-level stack
    framework serve examples.starlette_app:app --stack kernel  # kernel sockets
    curl http://198.18.0.2:8080/
    curl http://198.18.0.2:8080/users/7?verbose=1
    curl -N http://198.18.0.2:8080/countdown
    python -m websockets ws://198.18.0.2:8080/ws                # type lines, they come back

The lifespan handler runs once in every worker (`--lifespan on|off|auto`); what it yields
is copied into each request's `request.state`.
"""
import asyncio
import contextlib

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "Hello"}          # per worker: a database pool would go here


async def index(request):
    return PlainTextResponse(f"{request.state.greeting}, World!\n")


async def user(request):
    return JSONResponse({"id": request.path_params["id"],
                         "verbose": request.query_params.get("verbose") == "1"})


async def countdown(request):
    async def lines():
        for i in range(5, 0, -1):
            yield f"{i}\n"
            await asyncio.sleep(0.2)
        yield "liftoff\n"
    return StreamingResponse(lines(), media_type="text/plain")


async def echo(websocket):
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)


app = Starlette(routes=[
    Route("/", index),
    Route("/users/{id:int}", user),
    Route("/countdown", countdown),
    WebSocketRoute("/ws", echo),
], lifespan=lifespan)
