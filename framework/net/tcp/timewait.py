"""TIME_WAIT as a small object of its own (as Linux's tw buckets): when a Connection
reaches TIME_WAIT it leaves the flow table and a TimeWait of ~0.3 KB takes its 4-tuple
for the 2*MSL wait. A server that closes first (HTTP `Connection: close`) keeps one per
closed connection for 60 s: at 5,000 closes/s that is 300,000 entries, affordable at this
size but not as full Connections holding the app's objects. Beyond config.max_time_wait
entries a connection skips TIME_WAIT (counted), as Linux does past tcp_max_tw_buckets.

It answers a retransmitted FIN (ACK, restart the timer), data or out-of-window segments
(ACK), an exact RST (gone), a SYN without a reusable listener (challenge ACK, RFC 5961);
the layer hands SYNs that may reuse the tuple (RFC 6191) to a listener first.
"""
try:
    import cython
except ImportError:         # plain Python on a machine without Cython
    from framework import _cython_shim as cython

from ..wire.tcp import ts_option

if not cython.compiled:        # compiled: C constants (bits.pxd, consts.pxd)
    from ..wire.tcp import ACK, FIN, RST, SYN
    from .bits import B_TS, HALF, M
    from .consts import CLOSED, TIME_WAIT


def time_wait(conn, now):
    """The TimeWait that takes ``conn``'s 4-tuple from ``now`` (a function, not __init__,
    so that compiled it reads the Connection's C fields: timewait.pxd types ``conn``)."""
    L = conn.layer
    tw = TimeWait.__new__(TimeWait)
    tw.layer = L
    tw.key = conn.key
    tw.state = TIME_WAIT
    tw.bits = conn.bits & B_TS
    tw.rcv_nxt = conn.rcv_nxt
    tw.snd_nxt = conn.snd_nxt
    tw.ts_recent = conn.ts_recent
    w = (conn.rcv_adv - conn.rcv_nxt) >> conn.rcv_ws
    tw.win = 0 if w < 0 else 65535 if w > 65535 else w
    tw.heap_at = None
    tw.t_rtx = now + L.time_wait
    tw._arm(tw.t_rtx)
    return tw


class TimeWait:
    __slots__ = ("layer", "key", "state", "bits", "rcv_nxt", "snd_nxt", "ts_recent", "win",
                 "t_rtx", "heap_at")

    def __repr__(self):
        return f"<TimeWait {self.key}>"

    def process(self, flags, seq, ack, win, buf, ooff, doff, dend):
        L = self.layer
        d = (seq - self.rcv_nxt) & M
        if d >= HALF:
            d -= 0x100000000
        if flags & RST:
            if d == 0:
                L.counters["tcp.resets_rx"] += 1
                self._finish(None)
            return
        if flags & FIN and d + (dend - doff) == -1:
            self.t_rtx = L.now + L.time_wait   # retransmitted FIN: our ACK was lost
            self._arm(self.t_rtx)
        elif not flags & (SYN | FIN) and dend == doff and 0 <= d <= self.win:
            return                                     # a stray ACK: nothing to say
        L.counters["drop.tcp.time_wait"] += 1
        self._ack()

    def _ack(self):
        L = self.layer
        opts = ts_option((int(L.now * 1000) + L.ts_off) & M, self.ts_recent) if self.bits else b""
        L._send_raw(self.key, self.snd_nxt, self.rcv_nxt, ACK, self.win, opts)

    def _arm(self, when):
        # Every TIME_WAIT lasts config.time_wait from now, so deadlines arrive in order: a
        # FIFO (the layer's tw_queue, O(1)) holds them instead of the timer heap, which
        # they would otherwise dominate (60 s x the close rate: 300,000 entries at 5,000
        # closes/s), making every push and pop of the live connections' timers dearer.
        # A restarted wait appends a new entry; the old one is skipped (heap_at moved).
        self.heap_at = when
        self.layer.tw_queue.append((when, self))

    def poll_at(self):
        return self.t_rtx

    def on_timer(self, now):
        if self.t_rtx is not None and self.t_rtx <= now:
            self.layer.counters["tcp.time_wait_expired"] += 1
            self._finish(None)

    def _finish(self, ev=None):
        L = self.layer
        self.state = CLOSED
        self.t_rtx = None
        self.heap_at = None
        if L.flows.get(self.key) is self:
            del L.flows[self.key]
        L.tw_count -= 1
