"""Kernel sockets as a ShardLoop's stream provider (``--stack kernel``).

Each worker opens its own SO_REUSEPORT listening socket per listener port (the kernel
spreads connections over the workers), accepts non-blocking sockets and adapts each to
the Protocol/Transport interface of CONTRACTS section 5, exactly as the user-level
stack's transports behave. Every socket is a native fd of the ShardLoop's epoll set:
its readiness is handled in the turn, not through asyncio's callback queue.

- writes are corked: ``transport.write`` only appends; the turn's output step gives
  every written-to connection one ``send`` of the joined bytes (pipelined responses
  leave in one segment);
- a close whose peer may still be sending is a lingering close (framework/shard/
  transport.py): shut down our side, discard input until EOF or the limits.

Sockets (listening and outbound) are created in ``netns`` (the link's namespace) while
the worker itself stays where the supervisor runs, so a handler's own kernel-socket
clients reach what the server's host reaches.
"""
import errno
import functools
import logging
import os
import resource
import select
import socket
import struct
import _socket

from framework.nic.nsenter import netns as in_netns
from framework.shard.streams import retire_protocol
from framework.shard.transport import ShardTransport, LINGER_BYTES, LINGER_TIME

log = logging.getLogger("framework.kernel")

_AF_INET = int(socket.AF_INET)
_SOCK_STREAM = int(socket.SOCK_STREAM)
_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_EPOLLERR_HUP = select.EPOLLERR | select.EPOLLHUP
_RECV = 256 * 1024
_BACKLOG = 1024
_KERNEL_CC = {"newreno": "reno"}     # --tcp-cc names -> Linux's (TCP_CONGESTION)
_ACCEPT_BATCH = 64
_LINGER_OFF = struct.pack("ii", 1, 0)


class KernelTransport(ShardTransport):
    """One connected socket as a Transport (CONTRACTS section 5)."""

    __slots__ = ("sock", "fd", "provider", "_protocol", "_high", "_low", "_write_paused",
                 "_pending", "_pending_len", "_closing", "_lost", "reading", "out_registered",
                 "peer", "lingering", "eof", "_eof_after_write", "discarded", "linger_handle")

    def __init__(self, sock, provider, peer):
        self._init_flow(None)
        self.sock = sock
        self.fd = sock.fileno()
        self.provider = provider
        self._pending = []
        self._pending_len = 0
        self._closing = False
        self._lost = False
        self.reading = True
        self.out_registered = False
        self.peer = peer
        self.lingering = False
        self.eof = False
        self._eof_after_write = False
        self.discarded = 0
        self.linger_handle = None

    # ---- Transport interface (the guards are ShardTransport's) ------------------------
    def _write(self, data):
        if not self._pending:
            self.provider.dirty.append(self)
        self._pending.append(data)       # corked: the turn's output sends it
        self._pending_len += len(data)
        if self._pending_len > self._high:
            self._maybe_pause_writing()

    def _write_eof(self):
        self._eof_after_write = True
        if not self._pending:
            self.provider.shutdown_write(self)

    def _close(self):
        """Close after pending data is sent; linger if the peer may still be sending."""
        try:
            self.lingering = bool(self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:
            self.lingering = False
        if not self._pending:
            self.provider.finish_close(self)

    def _lingering_close(self):
        """Close after an error response: the peer is probably still sending."""
        self.lingering = True
        if not self._pending:
            self.provider.finish_close(self)

    def abort(self):
        if self._lost:
            return
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_OFF)
        except OSError:
            pass
        self._pending = []
        self._pending_len = 0
        self.provider.finalize(self, None)

    def get_extra_info(self, name, default=None):
        if name == "peername":
            return self.peer
        if name == "sockname":
            try:
                return self.sock.getsockname()
            except OSError:
                return default
        if name == "socket":
            return self.sock
        return default

    def pause_reading(self):
        if self.reading and not self._lost:
            self.reading = False
            self.provider.update_events(self)

    def resume_reading(self):
        if not self.reading and not self._lost and not self.eof:   # (EOF: nothing left)
            self.reading = True
            self.provider.update_events(self)

    def is_reading(self):
        return self.reading


    def __repr__(self):
        return f"<KernelTransport fd={self.fd} peer={self.peer}>"


class KernelProvider:
    """Kernel sockets for one shard: listening (SO_REUSEPORT) and outbound."""

    polls = True        # the kernel's readiness comes only from epoll: poll every turn

    def __init__(self, host, netns=None, vips=(), cc=None):
        self.host = host
        # --tcp-cc: the listening sockets' congestion control (accepted ones inherit it)
        self.cc = None if cc is None else _KERNEL_CC.get(cc, cc).encode()
        self.vips = list(vips)   # --vip: each listener port is opened on these too
        self.netns = netns
        self.loop = None
        self.ctx = None
        self.conns = {}          # fd -> KernelTransport
        self.listeners = {}      # fd -> socket
        self.dirty = []
        self.accepted = 0
        self.stopping = False
        self._accept_warned = -1e9

    def start(self, loop, ctx):
        self.loop = loop
        self.ctx = ctx

    def _socket(self):
        with in_netns(self.netns):
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    def listen(self, port, factory):
        for host in [self.host] + self.vips:
            self._listen_on(host, port, factory)

    def _listen_on(self, host, port, factory):
        s = self._socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if self.cc is not None:
                try:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, self.cc)
                except OSError as e:
                    raise OSError(e.errno, f"--tcp-cc: this kernel has no "
                                  f"{self.cc.decode()!r} congestion control") from None
            s.bind((host, port))
            s.listen(_BACKLOG)
            s.setblocking(False)
        except OSError as e:
            s.close()
            raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}") from e
        self.listeners[s.fileno()] = s
        self.loop.add_native(s.fileno(), lambda ev: self._accept(s, factory))

    # ---- accepting and connecting ---------------------------------------------------------
    def _accept(self, lsock, factory):
        raw_accept = lsock._accept
        for _ in range(_ACCEPT_BATCH):
            try:
                # _accept + the C socket type: socket.accept() builds a Python-level
                # socket through enum conversions, several times the cost
                fd, peer = raw_accept()
                sock = _socket.socket(_AF_INET, _SOCK_STREAM, 0, fd)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                # EMFILE/ENFILE/ENOBUFS: the listener stays readable, so a level-triggered
                # epoll would spin; stop watching it for a moment
                now = self.loop.time()
                if now - self._accept_warned >= 10.0:      # not 10 lines a second
                    self._accept_warned = now
                    log.warning("accept failed: %s; pausing accepts for 0.1 s at a time", e)
                lfd = lsock.fileno()
                fn = self.loop._sel.native.get(lfd)
                self.loop.remove_native(lfd)
                self.loop.call_later(0.1, self._rearm, lfd, fn)
                return
            if self.stopping:
                sock.close()
                continue
            self.accepted += 1
            self._adopt(sock, peer, factory, self.ctx)

    def _rearm(self, lfd, fn):
        if lfd in self.listeners and fn is not None:
            try:
                self.loop.add_native(lfd, fn)
            except OSError:
                pass

    def _adopt(self, sock, peer, factory, *args):
        """A connected socket becomes a transport with the protocol ``factory(*args)``
        makes; (transport, protocol), or the exception the protocol's setup raised (the
        connection is then aborted)."""
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = KernelTransport(sock, self, peer)
        self.conns[t.fd] = t
        self.loop.add_native(t.fd, functools.partial(self.event, t))
        try:
            proto = t._protocol = factory(*args)
            proto.connection_made(t)
        except Exception as e:
            log.exception("protocol setup failed")
            t.abort()
            return e
        return t, proto

    def connect(self, factory, host, port, timeout):
        """A non-blocking connect through the loop; a future of (transport, protocol)."""
        loop = self.loop
        fut = loop.create_future()
        if self.stopping:
            fut.set_exception(ConnectionError("the shard is stopping"))
            return fut
        s = self._socket()
        s.setblocking(False)
        err = s.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            fut.set_exception(_connect_error(err, host, port))
            return fut
        fd = s.fileno()
        timer = None

        def give_up(exc):
            loop.remove_native(fd)
            s.close()
            if not fut.done():
                fut.set_exception(exc)

        def writable(ev):
            if timer is not None:
                timer.cancel()
            e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if e:
                give_up(_connect_error(e, host, port))
                return
            if fut.done():          # the caller gave up (cancelled)
                give_up(None)
                return
            loop.remove_native(fd)
            made = self._adopt(s, s.getpeername(), factory)
            if isinstance(made, Exception):
                fut.set_exception(made)
            else:
                fut.set_result(made)

        loop.add_native(fd, writable, _EPOLLOUT)
        if timeout:
            timer = loop.call_later(timeout, give_up, TimeoutError(
                f"connect to {host}:{port} timed out after {timeout:g} s"))
        return fut

    # ---- the turn -----------------------------------------------------------------------
    def input(self, now):
        return False        # the sockets' events were handled as epoll reported them

    def has_output(self):
        return bool(self.dirty)

    def output(self, now):
        dirty = self.dirty
        if not dirty:
            return False
        self.dirty = []
        for t in dirty:
            if not t._lost and t._pending:
                self.send(t)
        return True

    def busy(self):
        return bool(self.dirty)

    def deadline(self):
        return None

    def pending(self):
        return False

    def idle(self):
        pass

    def update_events(self, t):
        if t._lost:
            return
        mask = ((_EPOLLIN if t.reading or (t.lingering and not t.eof) else 0)
                | (_EPOLLOUT if t.out_registered else 0))
        try:
            self.loop.modify_native(t.fd, mask)
        except OSError:
            pass

    def event(self, t, ev):
        """What epoll reported for ``t`` (its native handler, one frame for the usual
        case, readable): writable (send what waits), error or hang-up (read once for
        the error / EOF; after EOF it is final), readable."""
        if ev & _EPOLLOUT and t._pending:
            self.send(t)
            if t._lost:
                return
        if not ev & _EPOLLIN:
            if not ev & _EPOLLERR_HUP:
                return
            if t.eof:
                self.finalize(t, ConnectionResetError("connection closed"))
                return
        try:
            data = t.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.finalize(t, e)
            return
        if t._closing:           # lingering: discard, wait for the peer's EOF
            t.discarded += len(data)
            if not data or t.discarded > LINGER_BYTES:
                self.finalize(t, None)
            return
        if data:
            try:
                t._protocol.data_received(data)
            except Exception:
                log.exception("data_received failed; aborting the connection")
                t.abort()
            return
        # EOF: the peer sends no more; stop reading (level-triggered epoll would spin)
        t.eof = True
        t.reading = False
        self.update_events(t)
        try:
            keep = t._protocol.eof_received()
        except Exception:
            log.exception("eof_received failed")
            keep = False
        if not keep:
            t.close()

    def send(self, t):
        wbuf = t._pending
        data = wbuf[0] if len(wbuf) == 1 else b"".join(wbuf)
        try:
            n = t.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            t._pending = []
            t._pending_len = 0
            self.finalize(t, e)
            return
        if n == len(data):
            t._pending = []
            t._pending_len = 0
            if t.out_registered:
                t.out_registered = False
                self.update_events(t)
            if t._closing:
                self.finish_close(t)
            elif t._eof_after_write:
                self.shutdown_write(t)
        else:
            t._pending = [memoryview(data)[n:]] if n else [data]
            t._pending_len = len(data) - n
            if not t.out_registered:
                t.out_registered = True
                self.update_events(t)
        if not t._lost:
            t._maybe_resume_writing()

    def shutdown_write(self, t):
        try:
            t.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def finish_close(self, t):
        """All data sent and close() was asked: close now or linger."""
        if t._lost:
            return
        if not t.lingering:
            self.finalize(t, None)
            return
        try:
            t.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.finalize(t, None)
            return
        if t.eof:               # peer already sent EOF: nothing to wait for
            self.finalize(t, None)
            return
        self.update_events(t)
        t.linger_handle = self.loop.call_later(LINGER_TIME, self.finalize, t, None)

    def finalize(self, t, exc):
        if t._lost:
            return
        t._lost = True
        t._closing = True
        if t.linger_handle is not None:
            t.linger_handle.cancel()
            t.linger_handle = None
        self.conns.pop(t.fd, None)
        self.loop.remove_native(t.fd)
        t.sock.close()
        if t._protocol is not None:
            self.loop.defer(t._protocol.connection_lost, exc)

    # ---- zero-downtime reload -----------------------------------------------------------
    # The successor opened its own SO_REUSEPORT listener before this one retires; closing
    # ours then hands what waits in its accept queue to the successor's
    # (net.ipv4.tcp_migrate_req, which the supervisor sets in the link's namespace).
    def standby(self):
        pass

    def skip_backlog(self):
        pass

    def retire(self, flows_path=None):
        """Stop accepting; each HTTP connection closes after its next response."""
        self._close_listeners()
        for t in list(self.conns.values()):
            retire_protocol(t._protocol)

    def take_over(self, flows_path, now):
        pass

    def alone(self):
        pass

    # ---- graceful stop ------------------------------------------------------------------
    def shutdown(self):
        """Stop accepting; protocols that know how finish their current request and
        close, the others are closed (their data is flushed first)."""
        self.stopping = True
        self._close_listeners()
        for t in list(self.conns.values()):
            shutdown = getattr(t._protocol, "shutdown", None)
            if shutdown is not None:
                try:
                    shutdown()
                except Exception:
                    log.exception("protocol shutdown failed")
                    t.close()
            else:
                t.close()

    def all_done(self):
        return not self.conns

    def abort_all(self):
        for t in list(self.conns.values()):
            t.abort()

    def _close_listeners(self):
        for fd, s in list(self.listeners.items()):
            self.loop.remove_native(fd)
            s.close()
        self.listeners.clear()

    def counters(self):
        return {"streams.open": len(self.conns), "streams.accepted": self.accepted}

    def close(self):
        self._close_listeners()
        for t in list(self.conns.values()):
            t.abort()


def _connect_error(err, host, port):
    text = f"connect to {host}:{port}: {os.strerror(err)}"
    if err == errno.ECONNREFUSED:
        return ConnectionRefusedError(err, text)
    if err == errno.ETIMEDOUT:
        return TimeoutError(err, text)
    return OSError(err, text)


def raise_nofile_limit():
    """Soft RLIMIT_NOFILE up to the hard limit: one fd per connection adds up fast."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
