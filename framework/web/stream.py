"""StreamHandler: raw TCP protocols (``app.stream(port, Handler)``).

One handler instance per connection. Override ``on_connect``, ``on_data``,
``on_eof`` (peer half-closed; default: close) and ``on_close``; call ``write`` and
``close``. An exception in a callback is logged and the connection is aborted.
"""
import logging

from .flow import drain_future, wake_drainers

log = logging.getLogger("framework.web")


class StreamHandler:
    __slots__ = ("transport", "ctx", "state", "remote_address", "closed",
                 "_wpaused", "_drainers", "__dict__")

    # While the peer does not read what we write (the transport's buffer is over its
    # high-water mark), stop reading from it: an echo-like protocol then cannot be made
    # to buffer without bound. Set False to keep reading (and use ``drain()``).
    flow_control = True

    def __init__(self, transport, ctx):
        self.transport = transport
        self.ctx = ctx
        self.state = ctx.state
        self.remote_address = transport.get_extra_info("peername")
        self.closed = False
        self._wpaused = False
        self._drainers = None

    # ---- override these ----------------------------------------------------------------
    def on_connect(self):
        pass

    def on_data(self, data):
        pass

    def on_eof(self):
        """The peer will send no more; return True to keep writing, else we close."""
        return False

    def on_close(self):
        pass

    # ---- use these ---------------------------------------------------------------------
    def write(self, data):
        if not self.closed:
            self.transport.write(data if isinstance(data, (bytes, bytearray, memoryview))
                                 else str(data).encode())

    def drain(self):
        """An asyncio future done when the peer can take more (``await self.drain()`` after writes)."""
        return drain_future(self, self.ctx.loop, self.closed)

    def _wake(self, exc=None):
        wake_drainers(self, exc)

    def close(self):
        if not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self):
        if not self.closed:
            self.closed = True
            self.transport.abort()


def _ignore(data):
    pass


class StreamProtocol:
    """Adapts a StreamHandler class to the Protocol interface (CONTRACTS section 5)."""

    __slots__ = ("handler_cls", "ctx", "handler", "on_data")

    def __init__(self, handler_cls, ctx):
        self.handler_cls = handler_cls
        self.ctx = ctx
        self.handler = None
        self.on_data = None

    def connection_made(self, transport):
        try:
            h = self.handler = self.handler_cls(transport, self.ctx)
            self.on_data = h.on_data
            h.on_connect()
        except Exception:
            log.exception("%s.on_connect failed", self.handler_cls.__name__)
            self.on_data = _ignore
            if self.handler is not None:
                self.handler.abort()
            else:
                transport.abort()

    def data_received(self, data):
        try:
            self.on_data(data)
        except Exception:
            log.exception("%s.on_data failed", self.handler_cls.__name__)
            self.handler.abort()

    def eof_received(self):
        if self.handler is None:
            return False
        try:
            keep = self.handler.on_eof()
        except Exception:
            log.exception("%s.on_eof failed", self.handler_cls.__name__)
            keep = False
        if not keep:
            self.handler.close()
        return bool(keep)

    def pause_writing(self):
        h = self.handler
        if h is not None:
            h._wpaused = True
            if h.flow_control:
                pause = getattr(h.transport, "pause_reading", None)
                if pause is not None:
                    pause()

    def resume_writing(self):
        h = self.handler
        if h is not None:
            h._wpaused = False
            if h.flow_control and not h.closed:
                resume = getattr(h.transport, "resume_reading", None)
                if resume is not None:
                    resume()
            h._wake()

    def connection_lost(self, exc):
        h = self.handler
        if h is None:
            return
        h.closed = True
        if h._drainers:
            h._wake(ConnectionResetError("connection lost"))
        try:
            h.on_close()
        except Exception:
            log.exception("%s.on_close failed", self.handler_cls.__name__)


def stream_factory(handler_cls):
    def factory(ctx):
        return StreamProtocol(handler_cls, ctx)

    factory.handler_cls = handler_cls
    return factory
