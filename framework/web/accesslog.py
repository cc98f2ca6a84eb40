"""``--access-log FILE|-``: one line per response in gunicorn's format, plus the request
time in microseconds (gunicorn's ``%(D)s``):

    %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s
    198.18.0.1 - bob [02/Dec/2026:18:27:43 +0000] "GET /a?b=1 HTTP/1.1" 200 5 "-" "curl/8.5.0" 412

h the client (after --forwarded-allow-ips), l always "-", u the Basic-auth user or "-",
t the local time the response was complete, r the request line, s the status, b the
body bytes sent, f the Referer, a the User-Agent, D microseconds from the request's
complete head to its complete response (the shard's clock). A ``"``, ``\\`` or a byte
that is not printable ASCII in a header-borne field is written as ``\\xHH`` (as nginx
escapes), so a client cannot forge a line or a field.

Lines are buffered per shard and written with one ``write`` about once a second (and
when the buffer passes BUFFER_MAX bytes, and when the shard stops), not one write per
request; the file is opened O_APPEND, so the workers of a server share it without
tearing each other's lines. SIGUSR1 reopens it (after logrotate moved it): the worker's
handler calls ``reopen_all()``, the shard's loop reopens before its next write.

``enable(app, opts)`` switches it on for any App (ours, ASGI, WSGI): every response goes
through ``HttpProtocol._response_done``, which hands it to ``HttpShared.access_log``.
"""
import base64
import binascii
import logging
import os
import re
import time
import weakref

log = logging.getLogger("framework.access")

FLUSH_EVERY = 1.0           # seconds a line may wait in the buffer
BUFFER_MAX = 64 * 1024      # bytes of lines that are written at once, without waiting
_UNSAFE = re.compile(rb'[^\x20-\x7e]|["\\]')
_open_sinks = weakref.WeakSet()     # every ShardAccessLog of this process (reopen_all)


def enable(app, opts):
    """Log ``app``'s responses to ``opts.access_log`` (a path, or "-" for stderr)."""
    access = AccessLog(opts.access_log)
    app.config.access_log = access
    app.on_stop(access.stop_shard)
    return access


def reopen_all():
    """Reopen every access log file of this process (SIGUSR1; safe in a signal handler:
    each shard's loop does it before its next write)."""
    for sink in list(_open_sinks):
        sink.request_reopen()


class AccessLog:
    """The access log of one App: a ShardAccessLog per shard, made on first use."""

    def __init__(self, target, clock=time.time, flush_every=FLUSH_EVERY):
        self.target = target        # a path, or "-" (stderr)
        self.clock = clock          # wall clock for %(t)s
        self.flush_every = flush_every
        self._sinks = {}            # ctx -> ShardAccessLog

    def for_shard(self, shared):
        """The shard's sink (HttpShared calls this once per shard and listener)."""
        sink = self._sinks.get(shared.ctx)
        if sink is None:
            sink = self._sinks[shared.ctx] = ShardAccessLog(
                self.target, shared.loop, self.clock, self.flush_every)
        return sink

    def stop_shard(self, ctx):
        """Write what is buffered and close (the app's on_stop hook)."""
        sink = self._sinks.pop(ctx, None)
        if sink is not None:
            sink.close()

    def __repr__(self):
        return f"AccessLog({self.target!r})"


class ShardAccessLog:
    """One shard's buffer of lines and its file descriptor (only the loop touches them)."""

    def __init__(self, target, loop, clock=time.time, flush_every=FLUSH_EVERY):
        self.target = target
        self.loop = loop
        self.clock = clock
        self.flush_every = flush_every
        self.lines = []
        self.size = 0
        self.fd = None
        self._timer = None
        self._reopen = False
        self._second = -1           # the wall second _stamp is for
        self._stamp = ""
        self._open()
        _open_sinks.add(self)

    # ---- the hook HttpProtocol calls ----------------------------------------------------
    def record(self, req, status, nbytes):
        """One response is complete: queue its line."""
        micros = int((self.loop.time() - req.start_time) * 1e6)
        line = format_line(req, status, nbytes, self._now(), micros)
        self.lines.append(line)
        self.size += len(line)
        if self.size >= BUFFER_MAX:
            self.flush()
        elif self._timer is None:
            self._timer = self.loop.call_later(self.flush_every, self.flush)

    # ---- writing --------------------------------------------------------------------
    def flush(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._reopen:
            self._reopen = False
            self._close_fd()
            self._open()
        if not self.lines:
            return
        data = b"".join(self.lines)
        self.lines = []
        self.size = 0
        if self.fd is None:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as e:
            log.error("access log %s: %s (%d bytes lost)", self.target, e, len(view))

    def request_reopen(self):
        self._reopen = True
        try:
            self.loop.call_soon_threadsafe(self.flush)
        except RuntimeError:        # the loop is closed: nothing more will be written
            pass

    def close(self):
        self.flush()
        self._close_fd()
        _open_sinks.discard(self)

    def _open(self):
        if self.target == "-":
            self.fd = 2
            return
        try:
            self.fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT |
                              os.O_CLOEXEC, 0o644)
        except OSError as e:
            self.fd = None
            log.error("access log %s: cannot open: %s", self.target, e)

    def _close_fd(self):
        fd, self.fd = self.fd, None
        if fd is not None and fd != 2:
            os.close(fd)

    def _now(self):
        """%(t)s, made once per wall second."""
        wall = self.clock()
        second = int(wall)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second))
        return self._stamp


def format_line(req, status, nbytes, stamp, micros):
    """The line (bytes, with its newline) of one response."""
    referer = agent = user = None
    for name, value in req.raw_headers:
        n = len(name)
        if n == 7 and name.lower() == b"referer":
            referer = value
        elif n == 10 and name.lower() == b"user-agent":
            agent = value
        elif n == 13 and name.lower() == b"authorization":
            user = basic_user(value)
    head = "%s - %s %s \"%s %s %s\" %d %s " % (
        req.remote_ip or "-", _field(user), stamp, req.method, _text(req.uri), req.version,
        status, nbytes if nbytes >= 0 else "-")
    return b'%s"%s" "%s" %d\n' % (head.encode("latin-1", "replace"), _field(referer, True),
                                  _field(agent, True), micros)


def basic_user(value):
    """The user name of a Basic Authorization header value (bytes), or None."""
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        user = base64.b64decode(token.strip(), validate=True).partition(b":")[0]
    except (binascii.Error, ValueError):
        return None
    return user or None


def _escape(m):
    return b"\\x%02X" % m.group()[0]


def _field(value, as_bytes=False):
    """A header-borne field: "-" when absent, unsafe bytes as \\xHH."""
    if not value:
        return b"-" if as_bytes else "-"
    safe = _UNSAFE.sub(_escape, value)
    return safe if as_bytes else safe.decode("ascii")


def _text(text):
    """The request target (str of latin-1 bytes), escaped like a header field."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return _UNSAFE.sub(_escape, text.encode("latin-1")).decode("ascii")
