"""Integration helpers: a Stack + TcpLayer served over a real AF_PACKET port in a thread,
small raw TCP apps on top of it, and a seeded fault-injecting port wrapper (no netem on
this kernel has no netem)."""
import hashlib
import queue
import random
import select
import threading
import time
import traceback

from framework.net.stack import Stack
from framework.net.tcp import (EV_ACCEPT, EV_CLOSED, EV_CONNECTED, EV_EOF, EV_ERROR, EV_READABLE,
                               EV_RESET, EV_WRITABLE, TcpConfig)

STACK_IP = "198.18.0.2"
PEER_IP = "198.18.0.1"
STACK_MAC = "02:00:00:5e:20:02"

ECHO, SINK, SOURCE, HTTP = 7, 9, 19, 80
DISCARD, ZEROS = 5009, 5019     # measurement ports: no hashing, no big buffers
SHUT_FIRST = 13                 # we greet and half-close at once, then hash what arrives
_ZERO = bytes(1 << 20)
HTTP_BODY = 1 << 20


def pattern(n, seed=0):
    """Deterministic bytes the client can check by hash."""
    r = random.Random(seed)
    return r.randbytes(n)


# Linux's own TCP as the echo peer: ``python -c ECHO_SERVER HOST PORT [CC]`` (prints
# "ready"); CC sets TCP_CONGESTION on the listener, which accepted sockets inherit
ECHO_SERVER = """
import socket, socketserver, sys
class H(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            b = self.request.recv(65536)
            if not b:
                break
            self.request.sendall(b)
        self.request.shutdown(socket.SHUT_WR)
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128
    def server_bind(self):
        if len(sys.argv) > 3 and sys.argv[3]:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION,
                                   sys.argv[3].encode())
        super().server_bind()
s = S((sys.argv[1], int(sys.argv[2])), H)
print("ready", flush=True)
s.serve_forever()
"""

class FaultPort:
    """Wraps a port: seeded loss, duplication, reordering and delay, in both directions
    (like smoltcp's phy::FaultInjector). Delayed frames are released by ``rx_burst`` /
    ``tx_burst`` calls once due; ``next_release`` tells the loop when to wake up."""

    def __init__(self, port, seed=1, loss=0.05, dup=0.01, reorder=0.25, delay=0.005,
                 reorder_extra=0.004):
        self.port = port
        self.rng = random.Random(seed)
        self.loss, self.dup, self.reorder = loss, dup, reorder
        self.delay, self.reorder_extra = delay, reorder_extra
        self.csum_offload = port.csum_offload
        self.gso = port.gso
        self.mtu = port.mtu
        self.queue = port.queue
        self._rxq = []     # (due, seq, frame)
        self._txq = []
        self._n = 0
        self.stats = {"lost": 0, "dup": 0, "reordered": 0}

    def fileno(self):
        return self.port.fileno()

    def _mangle(self, frames, q, now):
        rng = self.rng
        for f in frames:
            if f[22:24] != b"\x08\x00" or f[33] != 6:
                q.append((now, 0, f))     # only TCP is mangled: ARP must not fail the test
                continue
            if rng.random() < self.loss:
                self.stats["lost"] += 1
                continue
            copies = 2 if rng.random() < self.dup else 1
            if copies == 2:
                self.stats["dup"] += 1
            for _ in range(copies):
                d = self.delay
                if rng.random() < self.reorder:
                    d += rng.random() * self.reorder_extra
                    self.stats["reordered"] += 1
                self._n += 1
                q.append((now + d, self._n, f))

    @staticmethod
    def _due(q, now):
        if not q:
            return []
        q.sort()
        i = 0
        while i < len(q) and q[i][0] <= now:
            i += 1
        out = [f for _, _, f in q[:i]]
        del q[:i]
        return out

    def rx_burst(self, max=64):
        now = time.monotonic()
        self._mangle(self.port.rx_burst(max), self._rxq, now)
        return self._due(self._rxq, now)

    def tx_burst(self, frames):
        now = time.monotonic()
        self._mangle(frames, self._txq, now)
        due = self._due(self._txq, now)
        if due:
            n = self.port.tx_burst(due)
            if n < len(due):             # device busy: keep the rest for the next call
                self._txq[:0] = [(now, 0, f) for f in due[n:]]
        return len(frames)

    def next_release(self):
        ts = [q[0][0] for q in (self._rxq, self._txq) if q]
        if not ts:
            return None
        return min(min(t for t, _, _ in q) for q in (self._rxq, self._txq) if q)

    def close(self):
        self.port.close()


class Apps:
    """Raw TCP apps driven by TcpLayer events:
    7 echo (echo everything; shutdown after the peer's FIN once all is sent),
    9 sink (hash everything; after the peer's FIN send the sha256 hex digest and close),
    19 source (read "N\\n", send pattern(N, seed=N) and close),
    80 a minimal HTTP/1.0-style responder: any GET gets pattern(1 MiB, seed=80), then close."""

    def __init__(self, tcp, syn_backlog=None):
        self.tcp = tcp
        for p in (ECHO, SINK, SOURCE, HTTP, DISCARD, ZEROS, SHUT_FIRST):
            tcp.listen(p, backlog=1024, syn_backlog=syn_backlog)
        self.accepted = 0
        self.closed = 0
        self.errors = []
        self.shut_first_digests = []     # sha256 of what each SHUT_FIRST client sent us
        self.client_results = []         # our active opens: (echo matched, bytes)

    def start_clients(self, now, n, size, dst, dport):
        """Active opens to a Linux echo server: send pattern(size, 1000+k), half-close,
        expect the same bytes back."""
        for k in range(n):
            data = pattern(size, seed=1000 + k)
            c = self.tcp.connect(dst, dport, now)
            c.user = {"role": "client", "out": bytearray(data), "eof_after": True,
                      "want": hashlib.sha256(data).digest(), "h": hashlib.sha256(), "n": 0}
            self._pump(c)

    def handle(self, events):
        for ev, c in events:
            try:
                self._handle(ev, c)
            except Exception:
                self.errors.append(traceback.format_exc())

    def _handle(self, ev, c):
        port = c.key[2]
        if ev == EV_ACCEPT:
            self.accepted += 1
            c.user = {"out": bytearray(), "eof": False, "h": hashlib.sha256(), "req": b""}
            if port == SHUT_FIRST:
                c.user["out"] += b"hello\n"
                c.user["eof_after"] = True
                self._pump(c)
            return
        u = c.user
        if u is None:
            return
        if u.get("role") == "client":
            return self._client(ev, c, u)
        if port == SHUT_FIRST and ev in (EV_READABLE, EV_EOF):
            u["h"].update(c.recv())
            if ev == EV_EOF:
                self.shut_first_digests.append(u["h"].hexdigest())
                c.close()
            return
        if ev == EV_READABLE:
            data = c.recv()
            if port == ECHO:
                u["out"] += data
            elif port == SINK:
                u["h"].update(data)
            elif port == DISCARD:
                u["n"] = u.get("n", 0) + len(data)
            elif port == ZEROS and "left" not in u:
                u["req"] += data
                if b"\n" in u["req"]:
                    u["left"] = int(u["req"].split(b"\n")[0])
                    u["eof_after"] = True
            elif port == HTTP and "n" not in u:
                u["req"] += data
                if b"\r\n\r\n" in u["req"]:
                    u["n"] = HTTP_BODY
                    u["out"] += (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n"
                                 b"Content-Type: application/octet-stream\r\n\r\n" % HTTP_BODY)
                    u["out"] += pattern(HTTP_BODY, seed=80)
                    u["eof_after"] = True
            elif port == SOURCE and "n" not in u:
                u["req"] += data
                if b"\n" in u["req"]:
                    n = int(u["req"].split(b"\n")[0])
                    u["n"] = n
                    u["out"] += pattern(n, seed=n)
                    u["eof_after"] = True
        elif ev == EV_EOF:
            data = c.recv()
            if port == ECHO:
                u["out"] += data
            elif port == SINK:
                u["h"].update(data)
                u["out"] += u["h"].hexdigest().encode()
            elif port == DISCARD:
                u["out"] += b"%d" % (u.get("n", 0) + len(data))
            u["eof"] = True
            u["eof_after"] = True
        elif ev in (EV_CLOSED, EV_RESET, EV_ERROR):
            self.closed += 1
            if ev != EV_CLOSED:
                self.errors.append(f"{c}: {c.error}")
            c.user = None
            return
        self._pump(c)

    def _client(self, ev, c, u):
        if ev in (EV_READABLE, EV_EOF):
            data = c.recv()
            u["h"].update(data)
            u["n"] += len(data)
            if ev == EV_EOF:
                self.client_results.append((u["h"].digest() == u["want"], u["n"]))
                c.close()
        elif ev in (EV_RESET, EV_ERROR):
            self.errors.append(f"client {c}: {c.error}")
            self.client_results.append((False, u["n"]))
        elif ev in (EV_CONNECTED, EV_WRITABLE):
            self._pump(c)

    def _pump(self, c):
        u = c.user
        out = u["out"]
        left = u.get("left")
        while left:
            n = c.send(_ZERO if left >= len(_ZERO) else _ZERO[:left])
            if not n:
                break
            left -= n
            u["left"] = left
        if out:
            n = c.send(out)
            del out[:n]
        if not out and not left and u.get("eof_after") and not u.get("shut"):
            u["shut"] = True
            if c.key[2] in (ECHO, SHUT_FIRST) or u.get("role") == "client":
                c.shutdown()                  # half-close: keep reading
            else:
                c.close()


class StackRunner:
    """One shard loop in a thread: rx_burst -> stack.process -> app events -> dispatch ->
    tx_burst; sleeps on the port fd until the next timer."""

    def __init__(self, port, config=None, syn_backlog=None):
        self.port = port
        self.stack = Stack(mac=STACK_MAC, ip=STACK_IP, prefix=24, csum_offload=port.csum_offload,
                           gso=port.gso, mtu=port.mtu, tcp_config=config or TcpConfig())
        self.tcp = self.stack.tcp
        self.apps = Apps(self.tcp, syn_backlog)
        self.stop = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.backlog = []
        self.calls = queue.SimpleQueue()     # fn(now) to run inside the loop thread

    def call(self, fn):
        self.calls.put(fn)

    def _run(self):
        try:
            self._loop()
        except Exception:
            self.error = traceback.format_exc()

    def _loop(self):
        port, stack, tcp, apps = self.port, self.stack, self.tcp, self.apps
        fd = port.fileno()
        mono = time.monotonic
        while not self.stop.is_set():
            now = mono()
            t = stack.poll_at()
            rel = getattr(port, "next_release", None)
            r = rel() if rel else None
            if r is not None and (t is None or r < t):
                t = r
            timeout = 0.05 if t is None else min(max(t - now, 0.0), 0.05)
            if timeout > 0 and not self.backlog:
                select.select([fd], [], [], timeout)
            frames = port.rx_burst(256)
            now = mono()
            if frames:
                stack.process(frames, now)
            while not self.calls.empty():
                self.calls.get()(now)
            ev = tcp.take_events()
            if ev:
                apps.handle(ev)
            out = stack.dispatch(now)
            if self.backlog:
                out = self.backlog + out
                self.backlog = []
            if out or rel:                # a fault port releases delayed frames on tx_burst
                n = port.tx_burst(out)
                if n < len(out):
                    self.backlog = out[n:]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
