"""WebSocket apps for tests/integration/test_websocket_serve.py.

``app``: our WebSocketHandler (framework App). ``/echo`` echoes text and binary (16 MiB
limit, the default); a text ``close:CODE:REASON`` makes the server close with that code;
``/small`` allows 1 KiB messages; ``/keepalive`` pings every 0.2 s (0.3 s for the
Pong); ``/proto`` picks the client's last subprotocol;
``/stats`` (HTTP) tells how many sockets are open and what closes were seen, as JSON.

``asgi_app``: a raw ASGI 3 echo app (served through framework.web.asgi).
"""
from framework import App, RequestHandler, WebSocketHandler

app = App()


@app.shard_state
def state(ctx):
    return {"open": 0, "closes": [], "opened": 0}


class Echo(WebSocketHandler):
    ping_interval = None

    def open(self):
        self.state["open"] += 1
        self.state["opened"] += 1

    def on_message(self, message):
        if isinstance(message, str) and message.startswith("close:"):
            _, code, reason = message.split(":", 2)
            self.close(int(code), reason)
            return
        return self.write_message(message, binary=isinstance(message, bytes))

    def on_close(self):
        self.state["open"] -= 1
        self.state["closes"].append([self.request.path, self.close_code, self.close_reason])

    def select_subprotocol(self, subprotocols):
        return subprotocols[-1]


class Small(Echo):
    max_message_size = 1024


class KeepAlive(Echo):
    ping_interval = 0.2
    ping_timeout = 0.3


app.add_route("/echo", Echo)
app.add_route("/small", Small)
app.add_route("/proto", Echo)
app.add_route("/keepalive", KeepAlive)


@app.route("/stats")
class Stats(RequestHandler):
    def get(self):
        self.write({k: self.state[k] for k in ("open", "opened", "closes")})


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            await send({"type": m["type"] + ".complete"})
            if m["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"http here"})
        return
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/deny":
        await send({"type": "websocket.close"})
        return
    subs = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": subs[0] if subs else None})
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            return
        if m.get("text") is not None:
            if m["text"].startswith("close:"):
                _, code, reason = m["text"].split(":", 2)
                await send({"type": "websocket.close", "code": int(code), "reason": reason})
                return
            await send({"type": "websocket.send", "text": m["text"]})
        else:
            await send({"type": "websocket.send", "bytes": m["bytes"]})
