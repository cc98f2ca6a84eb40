"""The ASGI ``websocket`` scope (ASGI spec 2.4, as uvicorn serves it) on our WebSocket
engine (framework.web.wsengine) and protocol (framework.web.websocket).

framework.web.asgi's handler calls ``await serve_websocket(asgi_app, http_scope,
handler)`` for a request with ``Upgrade: websocket``: the connection is detached from
the HTTP protocol at once, and the app sees

- ``receive()``: ``websocket.connect`` first, then ``websocket.receive`` (``text`` or
  ``bytes``, whole messages) and, once the connection is gone,
  ``websocket.disconnect`` (``code``: the client's Close code, 1006 without one;
  ``reason``), at once when the app closes (as uvicorn);
- ``send()``: ``websocket.accept`` (``subprotocol``, ``headers``) writes the 101;
  ``websocket.send`` (``text`` or ``bytes``) returns once the transport takes more (the
  client's pace); ``websocket.close`` (``code``, ``reason``) starts the close handshake,
  or, before accept, answers 403 (as uvicorn). After the client left, ``send`` raises
  ``ClientDisconnected`` (an OSError, as uvicorn's). The Denial Response extension
  (``websocket.http.response.start``/``.body`` before accept) answers with that HTTP
  response instead.

An exception in the app, or a return without accept, before the handshake gives a 500;
after it, a Close 1011 (exception) or 1000 (return). Received messages wait in a queue;
past ``_QUEUE_PAUSE`` reading pauses until the app catches up.
"""
import asyncio
import logging
from collections import deque

from .h1writer import REASONS
from .websocket import (CLOSE_TIMEOUT, MAX_MESSAGE_SIZE, PING_INTERVAL, PING_TIMEOUT,
                        WebSocketClosedError, WebSocketProtocol, accept_response,
                        handshake_error, offered_subprotocols)

log = logging.getLogger("framework.asgi")

_QUEUE_PAUSE = 32
_CONNECTING, _RESPONDING, _ACCEPTED, _CLOSED = 0, 1, 2, 3
_500 = (b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\n"
        b"Connection: close\r\n\r\nInternal Server Error")


class ClientDisconnected(OSError):
    """``send()`` after the client has gone (uvicorn raises the same kind)."""


def websocket_scope(http_scope, headers):
    """The ``websocket`` scope of a request whose HTTP scope is ``http_scope`` (built by
    framework.web.asgi.http_scope); ``headers``: the request's HTTPHeaders."""
    scope = dict(http_scope)
    scope.pop("method", None)
    scope["type"] = "websocket"
    scope["asgi"] = {"version": "3.0", "spec_version": "2.4"}
    scope["scheme"] = "wss" if http_scope.get("scheme") in ("https", "wss") else "ws"
    scope["subprotocols"] = offered_subprotocols(headers)
    scope["extensions"] = {**(http_scope.get("extensions") or {}),
                           "websocket.http.response": {}}
    return scope


def _response(status, reason, prefix, rest):
    return b"HTTP/1.1 %d %s\r\n%s%s" % (status, reason, prefix, rest)


async def serve_websocket(asgi_app, http_scope, handler, opts=None):
    """Run ``asgi_app`` for the WebSocket request ``handler`` is answering (a
    RequestHandler on an HTTP connection, framework.web.http1). Returns when the app
    does; the connection then finishes its close handshake on its own."""
    request = handler.request
    conn = handler._conn
    opts = opts if opts is not None else getattr(handler.app, "opts", None)
    error = handshake_error(request.headers)
    taken = conn.detach() if error is None else None
    if taken is None:
        status, message, extra = error or (400, "Can \"Upgrade\" only to \"WebSocket\".", {})
        for name, value in extra.items():
            handler.set_header(name, value)
        handler.set_status(status)
        handler.finish(message)
        return
    handler._finished = handler._headers_written = True
    transport, rest = taken
    shared = getattr(conn, "shared", None)
    session = AsgiWebSocket(websocket_scope(http_scope, request.headers), request.headers,
                            conn.loop, shared.prefix() if shared is not None else b"", opts)
    session.ws.attach(transport, rest)
    await session.run(asgi_app)


class AsgiWebSocket:
    """One ASGI WebSocket connection: the app's receive/send, and the listener of its
    WebSocketProtocol."""

    def __init__(self, scope, headers, loop, prefix=b"", opts=None):
        self.scope = scope
        self.headers = headers
        self.loop = loop
        self.prefix = prefix
        self.compression = getattr(opts, "ws_per_message_deflate", True)
        self.ws = WebSocketProtocol(
            loop, self, getattr(opts, "ws_max_size", MAX_MESSAGE_SIZE),
            getattr(opts, "ws_ping_interval", PING_INTERVAL),
            getattr(opts, "ws_ping_timeout", PING_TIMEOUT), CLOSE_TIMEOUT)
        self.state = _CONNECTING
        self.gone = False           # the connection is lost
        self._queue = deque([{"type": "websocket.connect"}])
        self._final = None          # the websocket.disconnect, once due
        self._waiter = None
        self._paused = False
        self._denial = None         # [status, headers, body parts] of a denial response

    async def run(self, asgi_app):
        path = self.scope.get("path")
        try:
            result = await asgi_app(self.scope, self.receive, self.send)
        except (Exception, asyncio.CancelledError) as exc:
            log.error("exception in ASGI application (websocket %s)", path, exc_info=exc)
            self._end(500, 1011)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            if result is not None:
                log.error("ASGI callable returned %r, not None (websocket %s)", result, path)
            if self.state == _CONNECTING:
                log.error("ASGI callable returned without sending handshake (websocket %s)",
                          path)
            self._end(500, 1000)

    def _end(self, status, code):
        """The app is done: reject (``status``) or close (``code``) whatever it left."""
        if self.state == _CONNECTING:
            self.state = _CLOSED
            self.ws.reject(_response(status, b"Internal Server Error", self.prefix, _500))
        elif self.state == _ACCEPTED:
            self.state = _CLOSED
            self.ws.close(code, "")

    # ---- the app's side --------------------------------------------------------------------
    async def receive(self):
        queue = self._queue
        while not queue and self._final is None:
            fut = self._waiter = self.loop.create_future()
            try:
                await fut
            finally:
                self._waiter = None
        if not queue:
            return self._final
        message = queue.popleft()
        if self._paused and len(queue) < _QUEUE_PAUSE // 2:
            self._paused = False
            self.ws.resume_reading()
        return message

    async def send(self, message):
        kind = message["type"]
        state = self.state
        if state == _CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self.state = _CLOSED
                self.ws.reject(_response(403, b"Forbidden", self.prefix,
                                         b"Content-Length: 0\r\nConnection: close\r\n\r\n"))
            elif kind == "websocket.http.response.start":
                self._deny_start(message)
            else:
                raise RuntimeError(f"Expected ASGI message 'websocket.accept', "
                                   f"'websocket.close' or 'websocket.http.response.start', "
                                   f"but got {kind!r}.")
            return
        if state == _RESPONDING:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body', "
                                   f"but got {kind!r}.")
            self._deny_body(message)
            return
        if self.gone:
            raise ClientDisconnected("the WebSocket client has disconnected")
        if state == _CLOSED:
            raise RuntimeError(f"Unexpected ASGI message {kind!r}, after sending "
                               "'websocket.close'.")
        if kind == "websocket.send":
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
                if data is None:
                    raise RuntimeError("websocket.send needs 'bytes' or 'text'")
            try:
                await self.ws.send(data)
            except (ConnectionError, WebSocketClosedError):
                raise ClientDisconnected("the WebSocket client has disconnected") from None
        elif kind == "websocket.close":
            # as uvicorn: the app hears its own close at once; the handshake runs on
            code = message.get("code") or 1000
            reason = message.get("reason") or ""
            self.state = _CLOSED
            self._disconnect(code, reason)
            self.ws.close(code, reason)
        else:
            raise RuntimeError(f"Expected ASGI message 'websocket.send' or "
                               f"'websocket.close', but got {kind!r}.")

    def _deny_start(self, message):
        """The WebSocket Denial Response extension: an HTTP response instead of 101."""
        status = int(message["status"])
        if not 100 <= status < 600:
            raise RuntimeError(f"Invalid HTTP status code {status} in response.")
        lines = []
        for name, value in message.get("headers") or ():
            if b"\n" in name + value or b"\r" in name + value:
                raise RuntimeError(f"invalid HTTP header {name!r}: {value!r}")
            if name.lower() not in (b"content-length", b"connection", b"transfer-encoding"):
                lines.append(b"%s: %s\r\n" % (name, value))
        self.state = _RESPONDING
        self._denial = [status, b"".join(lines), []]

    def _deny_body(self, message):
        status, headers, parts = self._denial
        parts.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(parts)
        self._denial = None
        self.state = _CLOSED
        self.ws.reject(_response(status, REASONS.get(status, "Unknown").encode(), self.prefix,
                                 headers + b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                                 % len(body) + body))

    def _accept(self, message):
        if self.gone:
            raise ClientDisconnected("the WebSocket client has disconnected")
        subprotocol = message.get("subprotocol")
        head, extensions = accept_response(self.headers, subprotocol, self.compression,
                                           message.get("headers") or (), self.prefix,
                                           self.ws.max_message_size)
        self.state = _ACCEPTED
        self.ws.accept(head, extensions)

    # ---- listener of the WebSocketProtocol ---------------------------------------------------
    def ws_message(self, data):
        if self.state != _ACCEPTED:
            return      # the app closed: nothing more for it
        key = "text" if data.__class__ is str else "bytes"
        self._push({"type": "websocket.receive", key: data})
        if len(self._queue) >= _QUEUE_PAUSE and not self._paused:
            self._paused = True
            self.ws.pause_reading()

    def ws_ping(self, payload):
        pass

    def ws_pong(self, payload):
        pass

    def ws_closed(self, code, reason):
        self.gone = True
        self._disconnect(code or 1006, reason or "")

    def _disconnect(self, code, reason):
        if self._final is None:
            self._final = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self._wake()

    def _push(self, message):
        self._queue.append(message)
        self._wake()

    def _wake(self):
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
