"""TCP connection events (CONTRACTS §4) -> asyncio-style protocols and transports (§5).

The user-stack shard loop drains ``tcp.events`` once per turn and hands the batch to
``Streams.deliver``. Each accepted connection gets one ``StreamTransport`` (kept in
``conn.user``) and one protocol from the listener's factory. Handlers therefore see the
same interface as on kernel sockets (``--stack kernel``) and behave identically.

Rules kept here (asyncio's meanings):
- ``write`` never blocks: what the TCP send buffer does not take waits in the transport
  and goes out on EV_WRITABLE; flow control and the lingering close's limits are those
  of both providers (framework/shard/transport.py).
- ``close`` sends FIN after everything written (lingering if input is still unread, so
  TCP does not answer it with an RST); ``abort`` sends RST at once.
- ``connection_lost`` is called exactly once, whatever the order of events, and always
  later through ``loop.defer`` (ordered as ``call_soon``) (never from inside ``write``/``close``/``abort``).
- ``lingering_close`` (after an error response): FIN after the pending data, then read
  and discard until the peer's EOF or LINGER_TIME, then close, so no RST (which a TCP
  sends when closing with unread data) destroys the response in flight.
- ``Streams.shutdown`` (graceful stop): protocols with ``shutdown()`` finish and close
  themselves, the others are closed; new connections are refused (RST) meanwhile.
- ``eof_received`` returning a false value closes our side too.
- ``pause_reading`` leaves data in the TCP receive buffer, so the window closes and the
  peer slows down: the back-pressure is TCP's own.
"""
import logging
import socket

from framework.shard.connect import Connector, failure_for
from framework.shard.transport import ShardTransport, LINGER_TIME
from framework.net.tcp import (EV_ACCEPT, EV_CONNECTED, EV_READABLE, EV_WRITABLE, EV_EOF,
                               EV_CLOSED, EV_RESET, EV_ERROR, CLOSED, CLOSE_WAIT, ESTABLISHED,
                               FIN_WAIT_2, TIME_WAIT)

# our side is finished once our FIN is acknowledged: nothing of ours is left to deliver
_OUR_SIDE_DONE = frozenset((CLOSED, FIN_WAIT_2, TIME_WAIT))
# the event codes again under names streams.pxd types as C ints (deliver's dispatch)
_ACCEPT, _CONNECTED, _READABLE, _WRITABLE = EV_ACCEPT, EV_CONNECTED, EV_READABLE, EV_WRITABLE
_EOF, _CLOSED, _RESET, _ERROR = EV_EOF, EV_CLOSED, EV_RESET, EV_ERROR

log = logging.getLogger("framework.streams")


def ip_str(addr):
    return socket.inet_ntoa(addr.to_bytes(4, "big")) if isinstance(addr, int) else str(addr)


class StreamTransport(ShardTransport):
    __slots__ = ("_conn", "_protocol", "_streams", "_pending", "_pending_len", "_closing",
                 "_lost", "_paused_reading", "_write_paused", "_high", "_low", "_eof",
                 "_linger", "_linger_timer", "_eof_held", "_data_turn")

    def __init__(self, conn, protocol, streams):
        self._init_flow(protocol)
        self._conn = conn
        self._streams = streams
        self._pending = None        # bytes the TCP send buffer did not take yet (a list
        #                             while there are any)
        self._pending_len = 0
        self._closing = False
        self._lost = False
        self._paused_reading = False
        self._eof = False
        self._linger = False        # lingering close: discard input until EOF / timeout
        self._linger_timer = None
        self._eof_held = False      # peer's EOF seen while reading was paused: deliver it
        #                             after the data still in the receive buffer
        self._data_turn = -1        # the loop turn that last delivered data (EOF timing)

    # --- asyncio.Transport (the guards are ShardTransport's) ----------------------------
    def _write(self, data):
        if not self._pending:
            try:
                n = self._conn.send(data)
            except Exception as exc:  # ConnectionClosed: the peer is gone
                self._streams._lost(self, exc)
                return
            if n >= len(data):
                return
            data = bytes(data[n:])
        else:
            data = bytes(data)
        self._buffer(data)

    def _write_eof(self):
        self._eof = True
        if not self._pending:
            self._conn.shutdown()

    def _close(self):
        self._paused_reading = False
        if not self._pending:
            self._close_now()

    def _close_now(self):
        """Everything written is in TCP's hands: close. With input still unread (reading
        was paused, e.g. pipelined requests after a ``Connection: close`` one), TCP's
        close() would send an RST (RFC 2525) that throws away the responses not yet
        sent or read: linger instead (FIN after the data, discard input until the
        peer's EOF or LINGER_TIME), as the kernel transport does in the same case."""
        if self._conn.readable():
            self._linger = True
            self._eof = True
            self._conn.shutdown()
            self._linger_timer = self._streams.loop.call_later(LINGER_TIME,
                                                               self._linger_done)
            self._streams.loop.call_soon(self._streams._read, self)
        else:
            self._conn.close()

    def _lingering_close(self):
        self._linger = True
        self._paused_reading = False
        self._eof = True
        if not self._pending:
            self._conn.shutdown()
        self._linger_timer = self._streams.loop.call_later(LINGER_TIME, self._linger_done)
        # input already waiting would produce no new event
        self._streams.loop.call_soon(self._streams._read, self)

    def _linger_done(self):
        self._linger_timer = None
        if not self._lost:
            self._conn.close()

    def abort(self):
        if self._lost:
            return
        self._closing = True
        self._pending = None
        self._pending_len = 0
        try:
            self._conn.abort()
        except Exception:
            log.debug("abort failed", exc_info=True)
        # asyncio calls connection_lost soon after abort(); do the same, once
        self._streams._lost(self, None)

    def get_extra_info(self, name, default=None):
        if name == "peername":
            a, p = self._conn.remote
            return (ip_str(a), p)
        if name == "sockname":
            a, p = self._conn.local
            return (ip_str(a), p)
        if name == "connection":
            return self._conn
        return default

    def pause_reading(self):
        self._paused_reading = True

    def resume_reading(self):
        if self._paused_reading:
            self._paused_reading = False
            # data may be waiting in the receive buffer with no new event coming
            self._streams.loop.call_soon(self._streams._read, self)

    def is_reading(self):
        return not self._paused_reading


    # --- internals ----------------------------------------------------------------------
    def _flush(self):
        """EV_WRITABLE: move pending bytes into the TCP send buffer."""
        pending = self._pending
        conn = self._conn
        while pending:
            data = pending[0]
            try:
                n = conn.send(data)
            except Exception as exc:
                self._streams._lost(self, exc)
                return
            self._pending_len -= n
            if n < len(data):
                pending[0] = data[n:]
                break
            pending.pop(0)
        self._maybe_resume_writing()
        if not self._pending:       # (resume_writing may have written more)
            self._pending = None
            if self._eof:          # write_eof() or lingering close: FIN, keep reading
                conn.shutdown()
            elif self._closing:
                self._close_now()

    def __repr__(self):
        return f"<StreamTransport {self.get_extra_info('peername')}>"


class Streams:
    """Delivers a shard's TCP events to the app's protocols."""

    def __init__(self, tcp, ctx, listeners=(), eof_next_turn=False):
        self.tcp = tcp
        # eof_next_turn (the shard loop, which calls new_turn() once per turn): a FIN is
        # delivered in a later turn than the data before it, after the loop has run
        # what that data caused, as on a kernel socket, where recv() reports the EOF
        # only on a call after the one that returned the last data. A handler that
        # answers at once then answers before it learns of the EOF on both stacks, so
        # the response is the same ("Connection: close" or not) byte for byte.
        self.eof_next_turn = eof_next_turn
        self._turn = 0
        self._eofs_later = []             # transports whose EOF waits for the next turn
        self.ctx = ctx
        self.loop = ctx.loop
        self.listeners = {}               # local port -> factory(ctx) -> Protocol
        self.open = 0
        self.accepted = 0
        self.transports = set()           # open ones (for a graceful stop)
        self.stopping = False
        self.retiring = False             # handing over: new connections retire() too
        self.outbound = {}                # conn -> connect.Outbound: connects in flight
        self.held = {}                    # reserved port -> connections it accepted so far
        for port, factory in dict(listeners).items():
            self.listen(port, factory)
        # outbound connections (framework/shard/connect.py)
        self.connector = Connector(self, ctx.shard_id, ctx.shard_count)

    def listen(self, port, factory):
        self.listeners[port] = factory
        self.tcp.listen(port)
        held = self.held.pop(port, None)
        if held:
            self._release(held)

    def reserve(self, port):
        """TCP listens on ``port`` before the app can take connections (a worker starting,
        whose app's on_start hooks run first): handshakes complete into the accept queue
        and the connections wait, unread, until ``listen`` names the factory, as on a
        kernel socket that listens before its accept loop runs. Without it the port
        answers SYNs with RST meanwhile: connection refused on a restart."""
        if port not in self.listeners:
            self.held.setdefault(port, [])
            self.tcp.listen(port)

    def unreserve(self, port):
        """A reserved port the app did not listen on after all: its waiting connections
        are reset and SYNs are refused again."""
        held = self.held.pop(port, None)
        if held is None:
            return
        self.tcp.unlisten(port)
        for conn in held:
            if conn.state != CLOSED:
                conn.abort()

    def _release(self, held):
        for conn in held:
            if conn.user is not None or conn.state not in (ESTABLISHED, CLOSE_WAIT):
                continue    # reset or closed by the peer while it waited: nothing to hand up
            self._accept(conn)
            t = conn.user
            if t is None:
                continue
            if conn.readable():
                self._read(t)
            if conn.state == CLOSE_WAIT and not t._lost:
                self._eof(t)

    def new_turn(self):
        """The shard loop starts a turn: EOFs held back from the last one go now.
        Returns True when there were any."""
        self._turn += 1
        later = self._eofs_later
        if not later:
            return False
        self._eofs_later = []
        for t in later:
            if not t._lost:
                self._eof(t)
        return True

    def eofs_waiting(self):
        return bool(self._eofs_later)

    def deliver(self, events):
        for ev, conn in events:
            t = conn.user
            if ev == _READABLE:
                if t is not None and not t._lost and not t._paused_reading:
                    self._read(t)
            elif ev == _WRITABLE:
                if t is not None and not t._lost:
                    t._flush()
            elif ev == _ACCEPT or ev == _CONNECTED:
                if t is None:
                    self._accept(conn)
            elif ev == _EOF:
                if t is not None and not t._lost:
                    self._eof(t)
            elif ev == _CLOSED:
                if t is not None:
                    self._lost(t, None)
                    conn.user = None        # see below
                elif self.outbound:
                    self._connect_failed(conn, "closed")
            elif ev == _RESET:
                if t is not None:
                    self._lost(t, ConnectionResetError(conn.error or "connection reset by peer"))
                    conn.user = None
                elif self.outbound:
                    self._connect_failed(conn, "reset")
            elif ev == _ERROR:
                if t is None and self.outbound:
                    self._connect_failed(conn, "error")
                if t is not None:
                    self._lost(t, OSError(conn.error or "connection error"))
                    conn.user = None
        # (EV_CLOSED/RESET/ERROR is a connection's last event: dropping conn.user then
        # breaks the conn <-> transport reference cycle, so a finished connection is freed
        # by reference counting at once instead of piling up for the cyclic GC)

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except Exception:
            log.exception("protocol callback %r failed", fn)
            return None

    def all_done(self):
        """True when no open connection has anything of ours left to deliver (graceful
        stop): each is lost, or closed by us with its FIN acknowledged. A peer that keeps
        its half open does not hold the worker (that is what FIN_WAIT_2 timers are for)."""
        for t in self.transports:
            if not t._closing or t._pending or t._conn.state not in _OUR_SIDE_DONE:
                return False
        return True

    def shutdown(self):
        """Graceful stop: ask every protocol to finish (``shutdown()``) or close it."""
        self.stopping = True
        for t in list(self.transports):
            fn = getattr(t._protocol, "shutdown", None)
            if fn is not None:
                self._call(fn)
            else:
                t.close()

    def retire(self):
        """Zero-downtime reload: every protocol that knows how answers its next request
        with "Connection: close" and closes (``retire()``); the others carry on."""
        self.retiring = True
        for t in list(self.transports):
            retire_protocol(t._protocol)

    def _connect_failed(self, conn, what):
        out = self.outbound.pop(conn, None)
        if out is not None:
            self.connector.counters["connect.failed"] += 1
            out.failed(failure_for(what, conn.error))

    def _accept(self, conn):
        out = self.outbound.pop(conn, None) if self.outbound else None
        factory = self.listeners.get(conn.local[1]) if out is None else out.factory
        if factory is None:
            if out is None:
                held = self.held.get(conn.local[1])
                if held is not None:        # reserved: waits for listen()
                    held.append(conn)
            return                          # (or an outbound connection nobody claimed)
        if self.stopping:
            conn.abort()
            if out is not None:
                out.failed(ConnectionError("the shard is stopping"))
            return
        t = None
        try:
            proto = factory(self.ctx)
            t = StreamTransport(conn, proto, self)
            conn.user = t
            self.open += 1
            if out is None:
                self.accepted += 1
            self.transports.add(t)
            proto.connection_made(t)
            if self.retiring:
                retire_protocol(proto)
        except Exception as e:
            log.exception("protocol setup failed; resetting the connection")
            t.abort() if t is not None else conn.abort()
            if out is not None:
                out.failed(e)
            return
        if out is not None:
            out.made(t, proto)

    def _read(self, t):
        if t._lost or t._paused_reading:
            return
        data = t._conn.recv()
        if t._linger:
            if t._eof_held:     # lingering_close() after a held EOF: done reading
                self._eof(t)
            return  # discarded: the response is out, the request body is not wanted
        if data and not self._data(t, data):
            return
        # an EOF held back while reading was paused follows the last data, as on a
        # kernel socket (recv() returns b"" only after everything was read)
        if t._eof_held and not t._paused_reading and not t._lost:
            self._eof(t)

    def _eof(self, t):
        if t._paused_reading and not t._linger:
            # back-pressure: the protocol does not want data now, and unread data may
            # still be in the receive buffer. Delivering the EOF now would let the
            # protocol close with that data unread (lost, and a close with unread data
            # resets the connection). resume_reading() reads it, then the EOF follows.
            t._eof_held = True
            return
        t._eof_held = False
        # data that arrived with the FIN goes first
        self._read_before_eof(t)
        if t._lost:
            return
        if t._paused_reading and not t._linger:
            t._eof_held = True  # the protocol paused on that data: the EOF waits again
            return
        if self.eof_next_turn and t._data_turn == self._turn and not t._linger:
            self._eofs_later.append(t)   # data went up this turn: the EOF follows next
            return
        if t._linger:
            if t._linger_timer is not None:
                t._linger_timer.cancel()
                t._linger_timer = None
            t._conn.close()
            return
        try:
            keep_open = t._protocol.eof_received()
        except Exception:
            log.exception("eof_received failed; aborting the connection")
            t.abort()
            return
        if not keep_open:
            t.close()

    def _read_before_eof(self, t):
        """Deliver what is left in the receive buffer (no EOF handling)."""
        if t._lost:
            return
        data = t._conn.recv()
        if t._linger or not data:
            return
        self._data(t, data)

    def _data(self, t, data):
        """Hand data to the protocol; False if that failed (the connection is aborted)."""
        t._data_turn = self._turn
        try:
            t._protocol.data_received(data)
        except Exception:
            log.exception("data_received failed; aborting the connection")
            t.abort()
            return False
        return True

    def _lost(self, t, exc):
        if t._lost:
            return
        t._lost = True
        t._closing = True
        t._pending = None
        t._pending_len = 0
        if t._linger_timer is not None:
            t._linger_timer.cancel()
            t._linger_timer = None
        self.open -= 1
        self.transports.discard(t)
        # later, never from inside the caller's write()/close()/abort()
        self.loop.defer(t._protocol.connection_lost, exc)
        # keep conn.user set: later events for this connection find a lost transport


def retire_protocol(proto):
    """``proto.retire()`` if it has one (HTTP/1.1: the next response closes)."""
    fn = getattr(proto, "retire", None)
    if fn is not None:
        try:
            fn()
        except Exception:
            log.exception("protocol retire failed")
