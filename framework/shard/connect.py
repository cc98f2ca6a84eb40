"""Outbound TCP connections from a shard over the user-level stack.

    conn = await open_connection("198.18.0.1", 9000)        # a StreamConnection
    conn.write(b"GET / HTTP/1.0\\r\\n\\r\\n")
    reply = await conn.read_until_eof()
    conn.close()

    transport, proto = await create_connection(MyProtocol, "198.18.0.1", 9000)

Replies must come back to the shard that connected, or they would reach another shard's
stack, which has no such connection and resets it. The kernel steers every frame of a
flow by ``steer.shard_of`` of its 4-tuple, so the source port is chosen such that the
flow hashes to the calling shard (``steer.pick_source_port``; mTCP's mtcp_init_rss does
the same with the NIC's RSS hash): about one port in N qualifies, found by a short scan.

The connection is handed to the shard's Streams (framework/shard/streams.py) like an
accepted one: the same StreamTransport, the same protocol callbacks. A connect that
fails (RST, SYN retransmission timeout, our ``timeout``) fails the Future with
ConnectionRefusedError / TimeoutError / OSError.

``open_connection`` / ``create_connection`` use the shard this process runs (one worker
process = one shard); ``Connector`` is the per-shard object behind them.
"""
import ipaddress
import socket

from framework.nic.steer import pick_source_port
from framework.shard.reactor import Future

DEFAULT_TIMEOUT = 10.0

_current = None


def current():
    """The Connector of this process's shard (None outside a user-stack worker)."""
    return _current


def open_connection(host, port, timeout=DEFAULT_TIMEOUT):
    """Future of a StreamConnection to host:port from the current shard."""
    if _current is None:
        raise RuntimeError("outbound connections need a user-stack shard "
                           "(framework serve ... --stack user)")
    return _current.open_connection(host, port, timeout)


def create_connection(protocol_factory, host, port, timeout=DEFAULT_TIMEOUT):
    """Future of (transport, protocol) to host:port from the current shard."""
    if _current is None:
        raise RuntimeError("outbound connections need a user-stack shard "
                           "(framework serve ... --stack user)")
    return _current.create_connection(protocol_factory, host, port, timeout)


def _addr(host):
    if isinstance(host, int):
        return host
    try:
        return int(ipaddress.IPv4Address(host))
    except ValueError:
        raise ValueError(f"{host!r}: an IPv4 address is needed (no DNS in the user stack)")


class _InUse:
    """``port in in_use``: a 4-tuple the TCP layer or a pending connect already has."""

    __slots__ = ("flows", "dst", "dport", "pending", "listeners")

    def __init__(self, flows, dst, dport, pending, listeners):
        self.flows = flows
        self.dst = dst
        self.dport = dport
        self.pending = pending
        self.listeners = listeners

    def __contains__(self, p):
        return ((self.dst, self.dport, p) in self.flows or p in self.pending
                or p in self.listeners)


class Outbound:
    """A connect in flight: what Streams calls back when it completes or fails."""

    __slots__ = ("factory", "future", "timer", "sport", "connector")

    def __init__(self, factory, future, sport, connector):
        self.factory = factory
        self.future = future
        self.sport = sport
        self.connector = connector
        self.timer = None

    def made(self, transport, protocol):
        self._done()
        self.future.set_result((transport, protocol))

    def failed(self, exc):
        self._done()
        self.future.set_exception(exc)

    def _done(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.connector._pending_ports.discard(self.sport)


class Connector:
    """Outbound connections of one shard (created by the shard's Streams)."""

    def __init__(self, streams, shard_id, shard_count, install=True):
        global _current
        self.streams = streams
        self.tcp = streams.tcp
        self.reactor = streams.reactor
        self.shard = shard_id
        self.n = shard_count
        self._pending_ports = set()
        self.counters = {"connect.started": 0, "connect.failed": 0}
        if install:
            _current = self

    def create_connection(self, protocol_factory, host, port, timeout=DEFAULT_TIMEOUT):
        fut = Future(self.reactor)
        streams = self.streams
        if streams.stopping:
            fut.set_exception(ConnectionError("the shard is stopping"))
            return fut
        dst = _addr(host)
        tcp = self.tcp
        sport = pick_source_port(tcp.local_ip, dst, port, self.shard, self.n,
                                 in_use=_InUse(tcp.flows, dst, port, self._pending_ports,
                                               tcp.listeners))
        if sport is None:
            fut.set_exception(OSError(99, f"no free source port to {host}:{port} "
                                          f"that steers to shard {self.shard}"))
            return fut
        conn = tcp.connect(dst, port, self.reactor.time(), sport=sport)
        out = Outbound(lambda ctx: protocol_factory(), fut, sport, self)
        self._pending_ports.add(sport)
        streams.outbound[conn] = out
        self.counters["connect.started"] += 1
        if timeout:
            def expire():
                out.timer = None
                if streams.outbound.pop(conn, None) is out:
                    conn.abort()
                    self.counters["connect.failed"] += 1
                    out.failed(TimeoutError(f"connect to {host}:{port} timed out "
                                            f"after {timeout:g} s"))
            out.timer = self.reactor.call_later(timeout, expire)
        return fut

    def open_connection(self, host, port, timeout=DEFAULT_TIMEOUT):
        out = Future(self.reactor)
        f = self.create_connection(StreamConnection, host, port, timeout)

        def done(f):
            e = f.exception()
            if e is not None:
                out.set_exception(e)
            else:
                out.set_result(f.result()[1])
        f.add_done_callback(done)
        return out


def failure_for(ev_name, error):
    """The exception for a connect that ended before it was established."""
    text = error or ev_name
    if ev_name == "reset":
        return ConnectionRefusedError(111, f"connection refused ({text})")
    if "timeout" in (error or "").lower() or "timed out" in (error or "").lower():
        return TimeoutError(text)
    return OSError(text)


class StreamConnection:
    """A protocol with awaitable reads, for handlers that want ``await conn.read()``.

    read(n=-1)        Future of up to n bytes (b"" at EOF; -1: whatever is there)
    readexactly(n)    Future of exactly n bytes (IncompleteReadError-like EOFError)
    readuntil(sep)    Future of the bytes up to and including sep
    read_until_eof()  Future of everything until the peer's FIN
    write(data), close(), abort(), closed (Future set when the connection is gone)
    """

    def __init__(self):
        self.transport = None
        self._buf = bytearray()
        self._eof = False
        self._exc = None
        self._waiter = None          # (kind, arg, future)
        self.closed = None

    # -- protocol side ---------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        self.closed = Future(transport._streams.reactor)

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
        if self.closed is not None:
            self.closed.set_result(exc)

    # -- caller side -------------------------------------------------------------------
    def _reactor(self):
        return self.transport._streams.reactor

    def _wait(self, kind, arg):
        if self._waiter is not None:
            raise RuntimeError("concurrent reads on one StreamConnection")
        fut = Future(self._reactor())
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
            fut.set_result(res)

    def _fail(self, exc):
        fut = self._waiter[2]
        self._waiter = None
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


def peer_str(conn):
    ip, port = conn.remote
    return f"{socket.inet_ntoa(ip.to_bytes(4, 'big'))}:{port}"
