"""Bulk transfer pieces shared by every server of the benchmark, plus the client.

Server side: two asyncio-style protocols (CONTRACTS section 5, so the same classes run
on the framework's user stack, its ``--stack kernel`` loop and plain uvloop):

- ``Discard`` (port 9009): reads and drops everything; on EOF closes, which tells the
  uploading client that every byte was consumed.
- ``Source`` (port 9019): sends an endless stream of one 256 KiB chunk until the peer
  goes away; it tops its write buffer up on ``resume_writing`` (user stack, uvloop) and
  from a short timer (the kernel loop has no write flow-control callbacks).

Client side: ``upload``/``download`` move bytes over one kernel-socket connection for
at most ``seconds`` or ``nbytes`` and return Gbit/s (run in the client namespace,
pinned to the load generator's core).
"""
import socket
import time

DISCARD_PORT = 9009
SOURCE_PORT = 9019
CHUNK = b"x" * (256 * 1024)
HIGH = 1 << 20            # keep at most this much queued in the transport
TICK = 0.0005             # seconds between two top-ups when no callback comes


class Discard:
    __slots__ = ("t",)

    def connection_made(self, t):
        self.t = t

    def data_received(self, data):
        pass

    def eof_received(self):
        return False       # close our side: the uploader's recv() returns b""

    def connection_lost(self, exc):
        pass


class Source:
    __slots__ = ("t", "call_later", "live", "timer", "paused")

    def __init__(self, call_later):
        self.call_later = call_later
        self.live = False
        self.timer = False     # one pending top-up timer at most
        self.paused = False

    def connection_made(self, t):
        self.t = t
        self.live = True
        self.pump()

    def _tick(self):
        self.timer = False
        self.pump()

    def pump(self):
        t = self.t
        if not self.live or t.is_closing():
            return
        n = 0
        while t.get_write_buffer_size() < HIGH and n < 16:
            t.write(CHUNK)
            n += 1
        # transports with flow control call resume_writing; the timer is for the rest
        if not self.timer and not self.paused:
            self.timer = True
            self.call_later(TICK, self._tick)

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        if self.live:
            self.pump()

    def data_received(self, data):
        pass

    def eof_received(self):
        self.live = False
        return False

    def connection_lost(self, exc):
        self.live = False


# ---- client --------------------------------------------------------------------------------

def _connect(ip, port, timeout=10.0):
    s = socket.create_connection((ip, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def upload(ip, seconds, nbytes):
    """Send until ``nbytes`` or ``seconds``, half-close, wait for the server's close.
    Returns (bytes, seconds, Gbit/s)."""
    s = _connect(ip, DISCARD_PORT)
    buf = memoryview(b"u" * (1 << 20))
    sent = 0
    t0 = time.monotonic()
    end = t0 + seconds
    try:
        while sent < nbytes and time.monotonic() < end:
            s.sendall(buf)
            sent += len(buf)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(30)
        while s.recv(65536):
            pass
        dt = time.monotonic() - t0
    finally:
        s.close()
    return sent, dt, sent * 8 / dt / 1e9


def download(ip, seconds, nbytes):
    """Receive until ``nbytes`` or ``seconds``. Returns (bytes, seconds, Gbit/s)."""
    s = _connect(ip, SOURCE_PORT)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    buf = bytearray(1 << 20)
    mv = memoryview(buf)
    got = 0
    t0 = time.monotonic()
    end = t0 + seconds
    try:
        while got < nbytes:
            n = s.recv_into(mv)
            if not n:
                break
            got += n
            if time.monotonic() >= end:
                break
        dt = time.monotonic() - t0
    finally:
        s.close()
    return got, dt, got * 8 / dt / 1e9
