# cython: infer_types=True, annotation_typing=False
"""TcpLayer: the flow table, listeners, timers and output queue of one shard (CONTRACTS §4, §6).

Pure: ``input`` takes a frame and the offsets of its TCP segment, ``poll`` fires due
timers, ``flush`` runs output for every connection with something to say; segments
leave through ``ip_output(dst, 6, segment, vnet_hdr)``. ``now`` is always passed in.

Timers live in one heap of (deadline, tiebreak, connection) entries, pushed only when a
connection's earliest deadline moves *earlier*; later moves are lazy (the old entry
fires, finds nothing due, and re-arms). That keeps per-segment timer work to one
comparison while 10,000 idle connections cost nothing per loop. TIME_WAIT entries, all of
the same length, wait in a FIFO of their own (``tw_queue``) instead: O(1), and they do
not bloat the heap the live connections' timers use.
"""
import hashlib
import os
import struct
from collections import deque

try:
    import cython
except ImportError:         # plain Python on a machine without Cython
    from framework import _cython_shim as cython

from ..checksum import ones_sum
from ..wire import vnet
from ..wire.tcp import TCP_HDR, parse_options
from .config import TcpConfig
from .connection import Connection
from .cookies import check_cookie, send_cookie
from . import handover as _handover
from .consts import STATE_NAMES, TIMER_HEAP_MIN
from .output import flush_pending
from .segments import passive_open, process
from .timers import fire_timers, next_deadline

if not cython.compiled:        # compiled: C constants (bits.pxd, consts.pxd)
    from ..wire.tcp import ACK, FIN, RST, SYN
    from .bits import B_TS, HALF, M
    from .consts import EV_ACCEPT, SYN_RECEIVED, SYN_SENT, TIME_WAIT

_unpack = TCP_HDR.unpack_from
_pack = TCP_HDR.pack
_key_pack = struct.Struct("!IHHI").pack

COUNTERS = (
    "tcp.rx", "tcp.tx", "tcp.active_opens", "tcp.passive_opens", "tcp.rst_sent", "tcp.resets_rx",
    "tcp.retransmits", "tcp.rto", "tcp.fast_retransmits", "tcp.zero_window_probes",
    "tcp.keepalive_probes", "tcp.challenge_acks", "tcp.time_wait_expired", "tcp.tw_reuse",
    "tcp.timeouts", "tcp.rx_ooo", "tcp.tail_loss_probes", "tcp.recovery_probes", "tcp.syncookies_sent", "tcp.syncookies_ok",
    "tcp.rack_losses", "tcp.dsack_rx", "tcp.dsack_tx", "tcp.dsack_undos", "tcp.ts_undos",
    "drop.tcp.short", "drop.tcp.bad_header", "drop.tcp.bad_checksum", "drop.tcp.no_listener",
    "drop.tcp.syn_queue_full", "drop.tcp.accept_queue_full", "drop.tcp.paws",
    "drop.tcp.unacceptable", "drop.tcp.synack_timeout", "drop.tcp.ooo_full", "drop.tcp.time_wait",
    "drop.tcp.time_wait_overflow", "drop.tcp.handover",
)


_UNPARSED = object()     # a SYN's options not parsed yet


def _derive(seed: bytes, purpose: bytes, size: int) -> bytes:
    """``size`` bytes for one purpose, derived from the layer's seed (independent per purpose)."""
    return hashlib.blake2b(seed, digest_size=size, person=purpose).digest()


# SipHash's constants as module globals: compiled they are C uint64 (the .pxd), which an
# integer literal this wide would not be
_M64 = 0xFFFFFFFFFFFFFFFF
_M32 = 0xFFFFFFFF
_SIP0, _SIP1, _SIP2, _SIP3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573
_SIP_LEN12 = 12 << 56       # the last block's top byte: the message length


def _siphash_3u32(k0, k1, a, b, c):
    """SipHash-2-4 (Aumasson, Bernstein) of the 12 bytes a, b, c (little-endian u32s) under
    the key (k0, k1), truncated to 32 bits; Linux's siphash_3u32. The masks are for plain
    Python; compiled, the words are C uint64 and they cost nothing."""
    v0 = k0 ^ _SIP0
    v1 = k1 ^ _SIP1
    v2 = k0 ^ _SIP2
    v3 = k1 ^ _SIP3
    m = ((b & _M32) << 32) | (a & _M32)
    for i in range(2):
        v3 ^= m
        for j in range(2):
            v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
        v0 ^= m
        m = _SIP_LEN12 | (c & _M32)      # the last block: the length, then the tail
    v2 ^= 0xFF
    for j in range(4):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return (v0 ^ v1 ^ v2 ^ v3) & _M32


def _sipround(v0, v1, v2, v3):
    v0 = (v0 + v1) & _M64
    v1 = ((v1 << 13) | (v1 >> 51)) & _M64
    v1 ^= v0
    v0 = ((v0 << 32) | (v0 >> 32)) & _M64
    v2 = (v2 + v3) & _M64
    v3 = ((v3 << 16) | (v3 >> 48)) & _M64
    v3 ^= v2
    v0 = (v0 + v3) & _M64
    v3 = ((v3 << 21) | (v3 >> 43)) & _M64
    v3 ^= v0
    v2 = (v2 + v1) & _M64
    v1 = ((v1 << 17) | (v1 >> 47)) & _M64
    v1 ^= v2
    v2 = ((v2 << 32) | (v2 >> 32)) & _M64
    return v0, v1, v2, v3


_UNBOUNDED = 1 << 62      # tx_left outside a flush (timers, input): no budget

class Listener:
    """A listening port: SYN queue (connections in SYN_RECEIVED) and accept queue
    (established connections whose EV_ACCEPT the shard has not drained yet), both
    bounded by ``backlog``."""

    __slots__ = ("port", "backlog", "syn_backlog", "syn_count", "acc_count", "cookie_time")

    def __init__(self, port, backlog, syn_backlog=None):
        self.port = port
        self.backlog = backlog
        self.syn_backlog = backlog if syn_backlog is None else syn_backlog
        self.syn_count = 0
        self.acc_count = 0
        self.cookie_time = None      # when a SYN cookie was last sent (SYN queue overflow)


class TcpLayer:
    def __init__(self, ip_output, local_ip: int, mtu: int = 1500, csum_offload: bool = False,
                 gso: bool = False, config: TcpConfig | None = None):
        cfg = config or TcpConfig()
        self.config = cfg
        self.ip_output = ip_output
        self.ip4 = None          # the stack sets its Ipv4Layer when ip_output is its output
        self.local_ip = local_ip
        self.mtu = mtu
        self.mss = cfg.mss or (mtu - 40)
        self.csum_offload = csum_offload
        self.gso = gso
        self.gso_max = cfg.gso_max
        self.delack = cfg.delack
        # the per-connection tunables, read by every connection (config is plain Python)
        self.sndbuf = cfg.sndbuf
        self.initial_rto = cfg.initial_rto
        self.min_rto = cfg.min_rto
        self.max_rto = cfg.max_rto
        self.initial_window = cfg.initial_window
        self.fin_wait2 = cfg.fin_wait2
        self.time_wait = cfg.time_wait
        self.max_time_wait = cfg.max_time_wait
        self.challenge_ack_limit = cfg.challenge_ack_limit
        self.timestamps = cfg.timestamps
        self.window_scale = cfg.window_scale
        self.sack = cfg.sack
        self.nagle = cfg.nagle
        self.keepalive = cfg.keepalive
        self.ka_idle = cfg.ka_idle
        self.ka_intvl = cfg.ka_intvl
        self.ka_cnt = cfg.ka_cnt
        if cfg.cc not in ("newreno", "cubic", "bbr"):
            raise ValueError(f"unknown congestion control {cfg.cc!r}")
        self.cubic = cfg.cc == "cubic"
        self.rcvbuf = cfg.rcvbuf
        self.vh_partial = vnet.csum_partial_hdr(34, 16)
        self.lowat = cfg.sndbuf_lowat if cfg.sndbuf_lowat is not None else cfg.sndbuf // 2
        ws = 0
        if cfg.window_scale:
            while (cfg.rcvbuf >> ws) > 65535 and ws < 14:
                ws += 1
        self.rcv_ws = ws
        self.flows = {}          # (remote ip, remote port, local port) -> Connection | TimeWait
        self.tw_count = 0        # TimeWait entries in flows
        self.listeners = {}      # local port -> Listener
        self.syn_opts = {}       # SYN/SYN-ACK option templates (output._send_syn)
        self.events = []
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.now = 0.0
        self._timers = []
        self._timers_max = TIMER_HEAP_MIN   # compact the heap beyond this (Connection._arm)
        self.tw_queue = deque()  # (deadline, TimeWait) in deadline order (timewait.py)
        self._tseq = 0
        self._pending = []
        # mTCP's TX manager: per flush, control segments and pure ACKs leave first and at
        # most tx_burst data frames follow, so one bulk sender cannot hold back the turn's
        # SYN-ACKs, ACKs and short responses; connections cut short wait in _deferred and
        # go after the next turn's fresh ones (round robin). 0: no bound, in order.
        self.tx_burst = cfg.tx_burst
        self.tx_left = _UNBOUNDED
        self._deferred = []
        # Every secret and offset below comes from one seed (TcpConfig.random_seed), so a
        # test can fix it; without one, the only randomness the layer draws is here.
        seed = cfg.random_seed if cfg.random_seed is not None else os.urandom(32)
        # RFC 6528 key. Compiled, F is SipHash-2-4 in C (as Linux's secure_tcp_seq); as
        # plain Python that costs ~10 us, so F is a keyed blake2s whose state is copied per
        # SYN (~1 us) instead. Either is a keyed PRF of the 4-tuple, which is all RFC 6528 asks.
        isn_key = _derive(seed, b"isn", 16)
        self._isn_hash = hashlib.blake2s(digest_size=4, key=isn_key)
        self._isn_k0 = int.from_bytes(isn_key[:8], "little")
        self._isn_k1 = int.from_bytes(isn_key[8:], "little")
        self._cookie_secret = _derive(seed, b"syncookie", 16)     # cookies.py
        # a per-layer TSval offset, so TSval does not reveal our clock (RFC 7323, security)
        self.ts_off = int.from_bytes(_derive(seed, b"ts_offset", 4), "big")
        # RFC 6056: the ephemeral port search starts at an unpredictable point of the range
        self._eph = cfg.ephemeral[0] + int.from_bytes(_derive(seed, b"ephemeral", 2), "big") % (
            cfg.ephemeral[1] - cfg.ephemeral[0] + 1)
        self._acc_item = None    # the last EV_ACCEPT tuple (tells whether events were drained)
        self._acc_pos = -1
        self._chack_sec = -1
        self._chack_n = 0
        self._psum_base = (local_ip >> 16) + (local_ip & 0xFFFF) + 6
        # zero-downtime reload (handover.py): which part of the flows this worker answers
        # while another worker sees the same queue; NONE outside a handover
        self.handover = _handover.NONE
        self.held_syns = None    # STANDBY: SYNs kept for the takeover
        self.predecessor = None  # SUCCESSOR: the retiring worker's flows (left to it)

    # ------------------------------------------------------------------ app side
    def listen(self, port: int, backlog: int = 128, syn_backlog: int | None = None) -> None:
        """Listen on port. backlog bounds the accept queue and, unless syn_backlog is given,
        the SYN queue too; beyond the SYN queue, SYN cookies answer (config.syncookies)."""
        lst = self.listeners.get(port)
        if lst is not None:
            lst.backlog = backlog
            lst.syn_backlog = backlog if syn_backlog is None else syn_backlog
        else:
            self.listeners[port] = Listener(port, backlog, syn_backlog)

    def unlisten(self, port: int) -> None:
        self.listeners.pop(port, None)

    def connect(self, dst: int, dport: int, now: float, sport: int | None = None) -> Connection:
        self.now = now
        if sport is None:
            sport = self._ephemeral(dst, dport)
        key = (dst, dport, sport)
        old = self.flows.get(key)
        if old is not None:
            if old.state != TIME_WAIT:
                raise OSError(98, f"4-tuple in use (port {sport})")
            old._finish(None)                      # our own TIME_WAIT: the ISN clock moved on
        c = Connection(self, key, self._isn(key, now), SYN_SENT)
        self.flows[key] = c
        self.counters["tcp.active_opens"] += 1
        c._send_syn()
        return c

    def take_events(self) -> list:
        """Return the queued events and start a fresh list (the preferred way to drain)."""
        ev = self.events
        self.events = []
        return ev

    # ------------------------------------------------------------------ stack side
    def input(self, frame, src: int, dst: int, l4_off: int, l4_end: int, csum_trusted: bool,
              now: float) -> None:
        self.now = now
        c = self.counters
        c["tcp.rx"] += 1
        if l4_end - l4_off < 20:
            c["drop.tcp.short"] += 1
            return
        if cython.compiled:
            # the header fields straight from the frame's bytes into C ints
            hb = frame if type(frame) is bytes or type(frame) is bytearray else bytes(frame)
            h = l4_off
            if h < 0 or h + 20 > len(hb):
                sport, dport, seq, ack, offb, flags, win, _, _ = _unpack(frame, l4_off)
            else:
                b = hb
                sport = (b[h] << 8) | b[h + 1]
                dport = (b[h + 2] << 8) | b[h + 3]
                seq = ((cython.cast(cython.longlong, b[h + 4]) << 24) | (b[h + 5] << 16)
                       | (b[h + 6] << 8) | b[h + 7])
                ack = ((cython.cast(cython.longlong, b[h + 8]) << 24) | (b[h + 9] << 16)
                       | (b[h + 10] << 8) | b[h + 11])
                offb = b[h + 12]
                flags = b[h + 13]
                win = (b[h + 14] << 8) | b[h + 15]
        else:
            sport, dport, seq, ack, offb, flags, win, _, _ = _unpack(frame, l4_off)
        doff = l4_off + ((offb >> 4) << 2)
        if doff < l4_off + 20 or doff > l4_end:
            c["drop.tcp.bad_header"] += 1
            return
        if not csum_trusted:
            seg = memoryview(frame)[l4_off:l4_end]
            s = (self._psum(src) + (l4_end - l4_off) + ones_sum(seg)) % 0xFFFF
            if s != 0:
                c["drop.tcp.bad_checksum"] += 1
                return
        key = (src, sport, dport)
        conn = self.flows.get(key)
        opts = _UNPARSED
        if conn is not None:
            if conn.state == TIME_WAIT and flags & (SYN | ACK | RST) == SYN and dport in self.listeners:
                if self.handover == _handover.RETIRING:    # a new flow: the successor's
                    c["drop.tcp.handover"] += 1
                    return
                opts = parse_options(frame, l4_off + 20, doff) if doff > l4_off + 20 else None
                if not self._tw_reusable(conn, seq, opts):
                    c["drop.tcp.time_wait"] += 1
                    return
                c["tcp.tw_reuse"] += 1
                conn._finish(None)
            elif type(conn) is Connection:
                process(conn, flags, seq, ack, win, frame, l4_off + 20, doff, l4_end)
                return
            else:
                conn.process(flags, seq, ack, win, frame, l4_off + 20, doff, l4_end)
                return
        lst = self.listeners.get(dport)
        if lst is not None and flags & (SYN | ACK | RST) == SYN:
            if self.handover and not _handover.take_syn(self, key, frame, src, dst, l4_off,
                                                        l4_end, csum_trusted, now):
                return
            self._passive_open(lst, key, seq, win, frame, l4_off + 20, doff, opts)
            return
        if flags & RST:
            return
        if lst is not None and flags & (SYN | ACK) == ACK and lst.cookie_time is not None:
            conn = check_cookie(self, lst, key, seq, ack, win, frame,
                                l4_off + 20, doff)
            if conn:                     # the handshake's ACK may carry data or a FIN
                process(conn, flags, seq, ack, win, frame, l4_off + 20, doff, l4_end)
                return
            if conn is False:
                return
        if self.handover:                  # the other worker's flow: never reset it
            c["drop.tcp.handover"] += 1
            return
        c["drop.tcp.no_listener"] += 1
        # RFC 9293 §3.10.7.1: reset for a segment to no connection
        if flags & ACK:
            self._send_rst(key, ack, 0, RST)
        else:
            seglen = l4_end - doff + (1 if flags & SYN else 0) + (flags & FIN)
            self._send_rst(key, 0, seq + seglen, RST | ACK)

    def poll(self, now: float) -> None:
        """Fire due timers."""
        self.now = now
        fire_timers(self, now)

    def flush(self, now: float) -> None:
        """Output for every connection with pending data, FIN or ACK."""
        self.now = now
        p = self._pending
        d = self._deferred
        if not p and not d:
            return
        self._pending = []
        if d:
            self._deferred = []
        flush_pending(self, p, d, now)

    def output_pending(self) -> bool:
        """A connection has data, FIN or ACK waiting for ``flush``."""
        return bool(self._pending) or bool(self._deferred)

    def poll_at(self):
        """The next deadline, exact: stale heap entries and entries whose connection moved
        its deadline later are fixed up here, so an idle loop sleeps until a real timer."""
        if self._pending or self._deferred:
            return self.now
        return next_deadline(self)

    # ------------------------------------------------------------------ internals
    def _psum(self, rip):
        s = self._psum_base + (rip >> 16) + (rip & 0xFFFF)
        return (s & 0xFFFF) + (s >> 16)

    def _isn(self, key, now):
        """RFC 6528: ISN = M + F(4-tuple, secret), M a 4-microsecond clock."""
        if cython.compiled:
            return (int(now * 250000) + _siphash_3u32(self._isn_k0, self._isn_k1, key[0],
                                                      (key[1] << 16) | key[2], self.local_ip)) & M
        h = self._isn_hash.copy()
        h.update(_key_pack(key[0], key[1], key[2], self.local_ip))
        return (int(now * 250000) + int.from_bytes(h.digest(), "big")) & M

    def _ephemeral(self, dst, dport):
        lo, hi = self.config.ephemeral
        span = hi - lo + 1
        for _ in range(span):
            p = self._eph
            self._eph = lo + (p - lo + 1) % span
            if (dst, dport, p) not in self.flows and p not in self.listeners:
                return p
        raise OSError(99, "no free ephemeral port")

    def _passive_open(self, lst, key, seq, win, frame, ooff, doff, opts):
        c = self.counters
        if opts is _UNPARSED:
            opts = parse_options(frame, ooff, doff) if doff > ooff else None
        if lst.syn_count >= lst.syn_backlog:
            c["drop.tcp.syn_queue_full"] += 1
            if self.config.syncookies:
                send_cookie(self, lst, key, seq, opts)
            return
        conn = Connection(self, key, self._isn(key, self.now), SYN_RECEIVED)
        passive_open(conn, lst, seq, win, opts)

    def _tw_reusable(self, conn, seq, opts):
        """RFC 6191: a new SYN may reuse a TIME_WAIT 4-tuple when its timestamp (or, without
        timestamps, its sequence number) is beyond what the old incarnation used."""
        tsval = opts.tsval if opts is not None else None
        if conn.bits & B_TS and tsval is not None and self.config.timestamps:
            return 0 < ((tsval - conn.ts_recent) & M) < HALF
        return 0 < ((seq - conn.rcv_nxt) & M) < HALF

    def _accept_room(self, lst):
        ev = self.events
        pos = self._acc_pos
        if pos < 0 or pos >= len(ev) or ev[pos] is not self._acc_item:
            # the shard drained the events since the last EV_ACCEPT: those were all taken
            for l in self.listeners.values():
                l.acc_count = 0
            self._acc_item = None
        return lst.acc_count < lst.backlog

    def _accepted(self, conn, lst):
        item = (EV_ACCEPT, conn)
        self.events.append(item)
        self._acc_item = item
        self._acc_pos = len(self.events) - 1
        if lst is not None:
            lst.acc_count += 1

    def _challenge_ok(self):
        """RFC 5961 §7: at most challenge_ack_limit challenge ACKs per second."""
        sec = cython.cast(cython.longlong, self.now)
        if sec != self._chack_sec:
            self._chack_sec = sec
            self._chack_n = 0
        self._chack_n += 1
        return self._chack_n <= self.challenge_ack_limit

    def _send_rst(self, key, seq, ack, flags):
        """A RST not tied to a connection's template (closed port, bad ACK in SYN states)."""
        self.counters["tcp.rst_sent"] += 1
        self._send_raw(key, seq, ack, flags, 0, b"")

    def _send_raw(self, key, seq, ack, flags, win, opts):
        """A segment without a connection (RSTs, SYN-cookie SYN-ACKs)."""
        seq &= M
        ack &= M
        rip, rport, lport = key
        hl = 20 + len(opts)
        s = self._psum(rip) + hl
        if self.csum_offload:
            csum = (s & 0xFFFF) + (s >> 16)
            vh = self.vh_partial
        else:
            s = (s + rport + lport + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF)
                 + ((hl << 10) | flags) + win + (ones_sum(opts) if opts else 0)) % 0xFFFF
            csum = (~s & 0xFFFF) if s else 0
            vh = vnet.PLAIN
        self.counters["tcp.tx"] += 1
        self.ip_output(rip, 6, _pack(lport, rport, seq, ack, hl << 2, flags, win, csum, 0) + opts, vh)

    # ------------------------------------------------------------------ introspection
    def stats(self):
        """Connections per state name (for /metrics and tests)."""
        out = {}
        for conn in self.flows.values():
            n = STATE_NAMES[conn.state]
            out[n] = out.get(n, 0) + 1
        return out

