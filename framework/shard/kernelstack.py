"""``--stack kernel``: the same App on ordinary kernel sockets, one epoll loop per worker.

Each worker opens its own SO_REUSEPORT listening socket per listener port (the kernel
spreads connections over the workers), accepts non-blocking sockets and adapts each
to the Protocol/Transport interface of CONTRACTS section 5, driving the shard's Reactor
in the same loop. This is the baseline the user-level stack is compared against, so
the loop is kept lean:

- writes are corked: ``transport.write`` only appends; after each batch of events
  (and reactor callbacks) every written-to connection gets one ``send`` of the joined
  bytes (pipelined responses leave in one segment);
- a close whose peer may still be sending (unread data, or an error response) is a
  lingering close: shut down our side, discard input until EOF or a short timeout, so
  the kernel does not answer the client's late data with an RST that destroys the
  response we just sent.

Stopping: pass ``stop_event`` (anything with ``is_set()``, e.g. a threading or
multiprocess Event; checked at least every 0.2 s and after every batch). Without one,
and when called in the main thread, SIGTERM/SIGINT stop the loop (the signal wakes
epoll at once through a wake-up pipe). Either way the worker stops accepting, lets
in-flight requests finish (up to 5 s), closes everything and returns.
``ready``: a callable (called with no arguments) or an Event (``.set()``), signalled
once all listening sockets are bound.
"""
import errno
import logging
import os
import select
import signal
import socket
import struct
import _socket
import threading
import time

from .context import ShardContext
from .reactor import Reactor

log = logging.getLogger("framework.kernel")

_AF_INET = int(socket.AF_INET)
_SOCK_STREAM = int(socket.SOCK_STREAM)
_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_EPOLLERR_HUP = select.EPOLLERR | select.EPOLLHUP
_RECV = 256 * 1024
_BACKLOG = 1024
_ACCEPT_BATCH = 64
_STOP_POLL = 0.2            # how often a stop_event is looked at when idle
_GRACE = 5.0                # in-flight requests get this long at shutdown
_LINGER_TIME = 2.0          # lingering close: wait this long for the peer's EOF ...
_LINGER_BYTES = 64 << 20    # ... and discard at most this much of its data
_LINGER_OFF = struct.pack("ii", 1, 0)
_HIGH_WATER = 256 * 1024    # unsent bytes above which the protocol's pause_writing() is called
_LOW_WATER = 64 * 1024      # ... and below which resume_writing() is


class KernelTransport:
    """One accepted socket as a Transport (CONTRACTS section 5)."""

    __slots__ = ("sock", "fd", "loop", "protocol", "wbuf", "closing", "closed", "reading",
                 "out_registered", "peer", "lingering", "eof", "wlen", "wpaused", "discarded",
                 "linger_handle")

    def __init__(self, sock, loop, peer):
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop
        self.protocol = None
        self.wbuf = []
        self.wlen = 0
        self.wpaused = False
        self.closing = False
        self.closed = False
        self.reading = True
        self.out_registered = False
        self.peer = peer
        self.lingering = False
        self.eof = False
        self.discarded = 0
        self.linger_handle = None

    # ---- Transport interface -----------------------------------------------------------
    def write(self, data):
        if self.closing or self.closed or not data:
            return
        if not self.wbuf:
            self.loop.dirty.append(self)
        self.wbuf.append(data)
        self.wlen += len(data)
        if self.wlen > _HIGH_WATER and not self.wpaused:
            self.wpaused = True
            pause = getattr(self.protocol, "pause_writing", None)
            if pause is not None:
                pause()

    def close(self):
        """Close after pending data is sent; linger if the peer may still be sending."""
        if self.closing or self.closed:
            return
        self.closing = True
        linger = False
        try:
            linger = bool(self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:
            pass
        self.lingering = linger
        if not self.wbuf:
            self.loop.finish_close(self)

    def lingering_close(self):
        """Close after an error response: the peer is probably still sending."""
        if self.closing or self.closed:
            return
        self.closing = True
        self.lingering = True
        if not self.wbuf:
            self.loop.finish_close(self)

    def abort(self):
        if self.closed:
            return
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_OFF)
        except OSError:
            pass
        self.wbuf = []
        self.wlen = 0
        self.loop.finalize(self, None)

    def is_closing(self):
        return self.closing or self.closed

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
        if self.reading and not self.closed:
            self.reading = False
            self.loop.update_events(self)

    def resume_reading(self):
        if not self.reading and not self.closed and not self.eof:   # (EOF: nothing left)
            self.reading = True
            self.loop.update_events(self)

    def get_write_buffer_size(self):
        return self.wlen

    def __repr__(self):
        return f"<KernelTransport fd={self.fd} peer={self.peer}>"


class KernelLoop:
    """The loop of one kernel-stack worker (``run_kernel_worker`` builds and runs one).

    Extension points for whoever embeds it (e.g. cross-shard rings), all optional:
    ``setup(loop)`` runs after ``loop.ctx`` exists and before ``app.on_shard_start``;
    ``add_reader(fd, fn)`` calls ``fn()`` when fd is readable; ``add_turn_hook(fn)``
    calls ``fn(now)`` once per turn (a true result = more work: poll without sleeping);
    ``add_deadline_hook(fn)``: ``fn(now)`` -> absolute time to wake by, or None;
    ``add_sleep_hooks(before, after)`` bracket each blocking poll (doorbell protocols).
    """

    def __init__(self, app, host, http_port, shard_id, shard_count, stop_event=None,
                 setup=None):
        self.app = app
        self.host = host
        self.stop_event = stop_event
        self.stopping = False
        self.reactor = Reactor(time.monotonic())
        self.ctx = ShardContext(self.reactor, shard_id, shard_count)
        self.ep = select.epoll()
        self.conns = {}          # fd -> KernelTransport
        self.listeners = {}      # fd -> (socket, factory)
        self.readers = {}        # fd -> fn(): extra fds (add_reader)
        self.turn_hooks = []
        self.deadline_hooks = []
        self.sleep_hooks = []
        self.dirty = []
        self.wake_r = None
        self._accept_warned = -1e9
        if setup is not None:
            setup(self)
        app.on_shard_start(self.ctx)
        for port, factory in app.listeners(http_port).items():
            self.listen(port, factory)

    def add_reader(self, fd, fn):
        self.readers[fd] = fn
        self.ep.register(fd, _EPOLLIN)

    def remove_reader(self, fd):
        if self.readers.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except OSError:
                pass

    def add_turn_hook(self, fn):
        self.turn_hooks.append(fn)

    def add_deadline_hook(self, fn):
        self.deadline_hooks.append(fn)

    def add_sleep_hooks(self, before, after):
        self.sleep_hooks.append((before, after))

    def listen(self, port, factory):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((self.host, port))
            s.listen(_BACKLOG)
            s.setblocking(False)
        except OSError as e:
            s.close()
            raise OSError(e.errno, f"cannot listen on {self.host}:{port}: {e.strerror}") from e
        self.listeners[s.fileno()] = (s, factory)
        self.ep.register(s.fileno(), _EPOLLIN)

    # ---- connection plumbing -----------------------------------------------------------
    def accept(self, lsock, factory):
        ctx = self.ctx
        raw_accept = lsock._accept
        for _ in range(_ACCEPT_BATCH):
            try:
                # _accept + the C socket type: socket.accept() builds a Python-level
                # socket through enum conversions (~6 us per connection, measured)
                fd, peer = raw_accept()
                sock = _socket.socket(_AF_INET, _SOCK_STREAM, 0, fd)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                # EMFILE/ENFILE/ENOBUFS: the listener stays readable, so a level-triggered
                # epoll would spin; stop watching it for a moment
                now = self.reactor.now
                if now - self._accept_warned >= 10.0:      # not 10 lines a second
                    self._accept_warned = now
                    log.warning("accept failed: %s; pausing accepts for 0.1 s at a time", e)
                fd = lsock.fileno()
                try:
                    self.ep.unregister(fd)
                except OSError:
                    pass
                self.reactor.call_later(0.1, self._rearm, fd)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = KernelTransport(sock, self, peer)
            self.conns[t.fd] = t
            self.ep.register(t.fd, _EPOLLIN)
            try:
                proto = t.protocol = factory(ctx)
                proto.connection_made(t)
            except Exception:
                log.exception("protocol setup failed")
                t.abort()

    def _rearm(self, fd):
        if fd in self.listeners:
            try:
                self.ep.register(fd, _EPOLLIN)
            except OSError:
                pass

    def update_events(self, t):
        if t.closed:
            return
        mask = (_EPOLLIN if t.reading or (t.lingering and not t.eof) else 0) | (_EPOLLOUT if t.out_registered else 0)
        try:
            self.ep.modify(t.fd, mask)
        except OSError:
            pass

    def readable(self, t):
        try:
            data = t.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.finalize(t, e)
            return
        if t.closing:           # lingering: discard, wait for the peer's EOF
            t.discarded += len(data)
            if not data or t.discarded > _LINGER_BYTES:
                self.finalize(t, None)
            return
        if data:
            t.protocol.data_received(data)
            return
        # EOF: the peer sends no more; stop reading (level-triggered epoll would spin)
        t.eof = True
        t.reading = False
        self.update_events(t)
        try:
            keep = t.protocol.eof_received()
        except Exception:
            log.exception("eof_received failed")
            keep = False
        if not keep:
            t.close()

    def flush(self):
        dirty, self.dirty = self.dirty, []
        for t in dirty:
            if t.closed or not t.wbuf:
                continue
            self.send(t)

    def send(self, t):
        wbuf = t.wbuf
        data = wbuf[0] if len(wbuf) == 1 else b"".join(wbuf)
        try:
            n = t.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            t.wbuf = []
            self.finalize(t, e)
            return
        if n == len(data):
            t.wbuf = []
            t.wlen = 0
            if t.out_registered:
                t.out_registered = False
                self.update_events(t)
            if t.closing:
                self.finish_close(t)
        else:
            t.wbuf = [memoryview(data)[n:]] if n else [data]
            t.wlen = len(data) - n
            if not t.out_registered:
                t.out_registered = True
                self.update_events(t)
        if t.wpaused and t.wlen <= _LOW_WATER and not t.closed:
            t.wpaused = False
            resume = getattr(t.protocol, "resume_writing", None)
            if resume is not None:
                try:
                    resume()
                except Exception:
                    log.exception("resume_writing failed")

    def finish_close(self, t):
        """All data sent and close() was asked: close now or linger."""
        if t.closed:
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
        t.linger_handle = self.reactor.call_later(_LINGER_TIME, self.finalize, t, None)

    def finalize(self, t, exc):
        if t.closed:
            return
        t.closed = True
        t.closing = True
        if t.linger_handle is not None:
            t.linger_handle.cancel()
            t.linger_handle = None
        self.conns.pop(t.fd, None)
        try:
            self.ep.unregister(t.fd)
        except (OSError, ValueError):
            pass
        t.sock.close()
        if t.protocol is not None:
            self.reactor.call_soon(t.protocol.connection_lost, exc)

    # ---- the loop ----------------------------------------------------------------------
    def _stop_requested(self):
        return self.stopping or (self.stop_event is not None and self.stop_event.is_set())

    def install_signals(self):
        """SIGTERM/SIGINT stop the loop; a wake-up pipe in the epoll set ends the wait."""
        if threading.current_thread() is not threading.main_thread():
            return
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake_r = r
        self._wake_w = w
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self.ep.register(r, _EPOLLIN)

        def on_signal(signum, frame):
            self.stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def run(self, ready=None):
        if self.stop_event is None:
            self.install_signals()
        if ready is not None:
            (ready.set if hasattr(ready, "set") else ready)()
        self._serve(stop_at=None)
        self._shutdown()

    def _serve(self, stop_at):
        reactor = self.reactor
        conns = self.conns
        listeners = self.listeners
        ep = self.ep
        readable = self.readable
        send = self.send
        cap = _STOP_POLL if (self.stop_event is not None or stop_at is not None) else 3600.0
        monotonic = time.monotonic
        now = monotonic()
        while True:
            if stop_at is None:
                if self.stopping or (self.stop_event is not None and self.stop_event.is_set()):
                    return
            elif not conns or now >= stop_at:
                return
            busy = False
            for hook in self.turn_hooks:
                if hook(now):
                    busy = True
            if reactor._ready or busy or self.dirty:   # (writes made while flushing)
                timeout = 0
            else:
                d = reactor.next_deadline()
                for hook in self.deadline_hooks:
                    e = hook(now)
                    if e is not None and (d is None or e < d):
                        d = e
                timeout = cap if d is None else min(cap, max(0.0, d - now))
            if timeout and self.sleep_hooks:
                for before, _after in self.sleep_hooks:
                    before()
                events = ep.poll(timeout, 1024)
                for _before, after in self.sleep_hooks:
                    after()
            else:
                events = ep.poll(timeout, 1024)
            now = monotonic()
            reactor.now = now
            for fd, ev in events:
                t = conns.get(fd)
                if t is not None:
                    if ev & _EPOLLIN:
                        readable(t)
                    elif ev & _EPOLLERR_HUP:
                        # error or both directions gone (reported even when not asked
                        # for): read once for the error / EOF; after EOF it is final
                        if t.eof:
                            self.finalize(t, ConnectionResetError("connection closed"))
                        else:
                            readable(t)
                    if ev & _EPOLLOUT and not t.closed and t.wbuf:
                        send(t)
                    continue
                lis = listeners.get(fd)
                if lis is not None:
                    self.accept(*lis)
                elif fd in self.readers:
                    try:
                        self.readers[fd]()
                    except Exception:
                        log.exception("reader callback for fd %d failed", fd)
                elif fd == self.wake_r:
                    try:
                        os.read(fd, 512)
                    except OSError:
                        pass
            reactor.run_once(now)
            if self.dirty:
                self.flush()

    def _shutdown(self):
        for fd, (s, _f) in list(self.listeners.items()):
            try:
                self.ep.unregister(fd)
            except OSError:
                pass
            s.close()
        self.listeners.clear()
        # let in-flight requests finish: protocols that know how stop reading and close
        # after their current response; the rest are closed (their data is flushed)
        for t in list(self.conns.values()):
            shutdown = getattr(t.protocol, "shutdown", None)
            if shutdown is not None:
                try:
                    shutdown()
                except Exception:
                    log.exception("protocol shutdown failed")
                    t.close()
            else:
                t.close()
        self.reactor.run_once(time.monotonic())
        self.flush()
        self._serve(stop_at=time.monotonic() + _GRACE)
        for t in list(self.conns.values()):
            t.abort()
        self.reactor.run_once(time.monotonic())
        try:
            self.app.on_shard_stop(self.ctx)
        except Exception:
            log.exception("on_shard_stop failed")
        if self.wake_r is not None:
            signal.set_wakeup_fd(-1)
            os.close(self.wake_r)
            os.close(self._wake_w)
        self.ep.close()


def raise_nofile_limit():
    """Soft RLIMIT_NOFILE up to the hard limit: one fd per connection adds up fast."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def run_kernel_worker(app, host: str, http_port: int, shard_id: int, shard_count: int,
                      stop_event=None, ready=None):
    """Serve ``app`` on kernel sockets in this thread until stopped (see module doc)."""
    raise_nofile_limit()
    loop = KernelLoop(app, host, http_port, shard_id, shard_count, stop_event)
    loop.run(ready)
