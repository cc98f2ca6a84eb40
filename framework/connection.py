"""StreamConnection: a protocol with awaitable reads, for code that wants
``await conn.read()`` on a connection of the shard's own stack (``ctx.open_connection``).

    conn = await ctx.open_connection("198.18.0.1", 9000)
    conn.write(b"GET / HTTP/1.0\\r\\n\\r\\n")
    reply = await conn.read_until_eof()
    conn.close()
"""


class StreamConnection:
    """A protocol with awaitable reads, for handlers that want ``await conn.read()``.

    read(n=-1)        Future of up to n bytes (b"" at EOF; -1: whatever is there)
    readexactly(n)    Future of exactly n bytes (IncompleteReadError-like EOFError)
    readuntil(sep)    Future of the bytes up to and including sep
    read_until_eof()  Future of everything until the peer's FIN
    write(data), close(), abort(), closed (Future set when the connection is gone)
    """

    def __init__(self, loop):
        self._loop = loop
        self.transport = None
        self._buf = bytearray()
        self._eof = False
        self._exc = None
        self._waiter = None          # (kind, arg, future)
        self.closed = None

    # -- protocol side ---------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        self.closed = self._loop.create_future()

    def data_received(self, data):
        self._buf += data
        self._wake()

    def eof_received(self):
        self._eof = True
        self._wake()
        return True      # keep our side open: the caller decides when to close

    def connection_lost(self, exc):
        self._eof = True
        if exc is not None and self._exc is None:
            self._exc = exc
        self._wake()
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(exc)

    # -- caller side -------------------------------------------------------------------
    def _wait(self, kind, arg):
        if self._waiter is not None:
            raise RuntimeError("concurrent reads on one StreamConnection")
        fut = self._loop.create_future()
        self._waiter = (kind, arg, fut)
        self._wake()
        return fut

    def _wake(self):
        w = self._waiter
        if w is None:
            return
        kind, arg, fut = w
        buf = self._buf
        res = None
        if kind == "read":
            if buf:
                n = len(buf) if arg < 0 else min(arg, len(buf))
                res = bytes(buf[:n])
                del buf[:n]
            elif self._eof:
                if self._exc is not None:
                    return self._fail(self._exc)
                res = b""
        elif kind == "exactly":
            if len(buf) >= arg:
                res = bytes(buf[:arg])
                del buf[:arg]
            elif self._eof:
                return self._fail(self._exc or EOFError(
                    f"connection closed after {len(buf)} of {arg} bytes"))
        elif kind == "until":
            i = buf.find(arg)
            if i >= 0:
                res = bytes(buf[:i + len(arg)])
                del buf[:i + len(arg)]
            elif self._eof:
                return self._fail(self._exc or EOFError(f"connection closed before {arg!r}"))
        elif kind == "eof":
            if self._eof:
                if self._exc is not None:
                    return self._fail(self._exc)
                res = bytes(buf)
                buf.clear()
        if res is not None:
            self._waiter = None
            if not fut.done():
                fut.set_result(res)

    def _fail(self, exc):
        fut = self._waiter[2]
        self._waiter = None
        if not fut.done():
            fut.set_exception(exc)

    def read(self, n=-1):
        return self._wait("read", n)

    def readexactly(self, n):
        return self._wait("exactly", n)

    def readuntil(self, sep=b"\n"):
        return self._wait("until", sep)

    def read_until_eof(self):
        return self._wait("eof", None)

    def write(self, data):
        self.transport.write(data)

    def write_eof(self):
        self.transport.write_eof()

    def close(self):
        self.transport.close()

    def abort(self):
        self.transport.abort()

    def get_extra_info(self, name, default=None):
        return self.transport.get_extra_info(name, default)
