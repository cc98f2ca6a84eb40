# cython: infer_types=True, annotation_typing=False
"""One TCP connection: the RFC 9293 state machine (this file: the fields, the app API, timer
arming, endings). The rest of the class lives in sibling modules as functions of the
connection, bound into the class at the end of its body: output.py (segmentation, header
template), recovery.py (fast retransmit, NewReno, SACK, tail loss probes, RTT), receive.py
(reassembly, delayed ACK), segments.py (segment input, handshake, ACK processing),
timers.py (RTO, persist, keep-alive, TIME_WAIT expiry). Compiled, Connection is an
extension type (connection.pxd) and those modules call each other as C functions, in that
order (a module calls only the ones before it directly, later ones as methods).

Pure: the owning TcpLayer passes segment fields in (``process``), asks for output
(``output``) and fires timers (``on_timer``); ``now`` is the layer's latest passed-in
clock. Nothing here reads a clock or touches a socket.

Sequence numbers are kept *unwrapped* (integers that keep growing past 2**32; see
segments.py), masked with 0xFFFFFFFF only when written out.
"""
from heapq import heapify, heappush

try:
    import cython
except ImportError:         # plain Python on a machine without Cython
    from framework import _cython_shim as cython

from .bits import _EMPTY
from .consts import TIMER_HEAP_MIN, ConnectionClosed, STATE_NAMES

if not cython.compiled:        # compiled: C constants (bits.pxd, consts.pxd)
    from ..wire.tcp import ACK, RST
    from .bits import (B_ACK_NOW, B_APP_CLOSED, B_DONE, B_ESTAB, B_KA, B_NAGLE, B_PASSIVE,
                       B_PENDING, B_PTO, B_RD_EV, B_RECOVERY, B_SACK, B_TLP, B_WANT_WR)
    from .consts import (CLOSED, CLOSE_WAIT, CLOSING, ESTABLISHED, EV_CLOSED, EV_ERROR, FIN_WAIT_1,
                         FIN_WAIT_2, LAST_ACK, SYN_RECEIVED, SYN_SENT, TIME_WAIT)


_join = _EMPTY.join


class Connection:
    __slots__ = (
        "layer", "state", "key", "user", "error", "listener", "bits", "psum",
        "iss", "irs",
        "snd_una", "snd_nxt", "snd_max", "snd_wnd", "max_sndwnd", "snd_wl1", "snd_wl2",
        "sbuf_seq", "sndbuf", "fin_seq",
        "rcv_nxt", "rcv_adv", "rcvq", "rcvlen", "ooo", "ooo_fin", "last_ack_sent", "unacked",
        "mss", "rcv_mss", "snd_ws", "rcv_ws", "ts_recent",
        "srtt", "rttvar", "rto", "rtt_seq", "rtt_time", "retries", "backoff",
        "cwnd", "ssthresh", "dupacks", "recover", "ca_acc", "last_send",
        "t_rtx", "t_delack", "t_ka", "heap_at",
        "ka_idle", "ka_intvl", "ka_cnt", "ka_probes",
        "scoreboard", "sack_last", "sack_recent", "dsack_tx",
        "txq", "sacked_out", "lost_out", "delivered", "t_reo",
        "rack_ts", "rack_end", "rack_rtt", "rack_fack", "min_rtt", "reo_seen", "reo_mult",
        "reo_persist", "dsack_round", "prr_delivered", "prr_out", "recover_fs",
        "undo_cwnd", "undo_ssthresh", "undo_marker", "undo_retrans", "retrans_stamp",
        "w_max", "k", "epoch", "w_est",
        "bbr",
    )

    def __init__(self, layer, key, iss, state):
        self.layer = layer
        L = self.layer
        self.state = state
        self.key = key                      # (remote ip, remote port, local port)
        self.user = None
        self.error = None
        self.listener = None
        self.bits = B_NAGLE if L.nagle else 0
        self.psum = L._psum(key[0])     # pseudo-header sum without the length
        self.iss = iss
        self.irs = 0
        self.snd_una = iss
        self.snd_nxt = iss + 1              # the SYN
        self.snd_max = iss + 1
        self.snd_wnd = 0
        self.max_sndwnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = iss
        self.sbuf_seq = iss + 1             # sequence number of sndbuf[0]
        self.sndbuf = _EMPTY                # unacknowledged data: a bytearray while there is any
        self.fin_seq = None                 # sequence number of our FIN once shutdown() was called
        self.rcv_nxt = 0
        self.rcv_adv = 0                    # right edge of the window we advertised
        self.rcvq = []                      # received in-order data: bytes / memoryview chunks
        self.rcvlen = 0                     # bytes in rcvq
        self.ooo = None                     # out-of-order queue: sorted [[seq, bytes], ...]
        self.ooo_fin = None                 # sequence number of an out-of-order FIN
        self.last_ack_sent = 0
        self.unacked = 0                    # bytes received since our last ACK
        self.mss = 536                      # effective send MSS (payload bytes, options excluded)
        self.rcv_mss = L.mss
        self.snd_ws = 0
        self.rcv_ws = 0
        self.ts_recent = 0
        self.srtt = None
        self.rttvar = 0.0
        self.rto = L.initial_rto
        self.rtt_seq = None                 # Karn: the one timed sequence number (no timestamps)
        self.rtt_time = 0.0
        self.retries = 0                    # unanswered retransmissions / probes
        self.backoff = 0                    # persist-timer backoff exponent
        self.cwnd = 0
        self.ssthresh = 1 << 30
        self.dupacks = 0
        self.recover = iss                  # NewReno: snd_max when recovery started
        self.ca_acc = 0
        self.last_send = 0.0
        self.t_rtx = None                   # retransmit / persist / TIME_WAIT / FIN_WAIT_2 deadline
        self.t_delack = None
        self.t_ka = None
        self.heap_at = None                 # earliest live entry of ours in the layer's timer heap
        self.ka_idle = L.ka_idle
        self.ka_intvl = L.ka_intvl
        self.ka_cnt = L.ka_cnt
        self.ka_probes = 0
        self.scoreboard = None              # sender: SACKed ranges above snd_una, [[start, end], ...]
        self.sack_last = 0                  # receiver: start of the latest out-of-order arrival
        self.sack_recent = None             # receiver: starts of the blocks last reported
        self.dsack_tx = None                # receiver: (start, end) of a duplicate to D-SACK
        # sender, SACK connections: the transmit queue and RACK (RFC 8985), see recovery.py
        self.txq = None                     # [[start, end, xmit_ts, flags], ...] in flight
        self.sacked_out = 0                 # bytes of txq entries SACKed
        self.lost_out = 0                   # bytes of txq entries marked lost, not resent
        self.delivered = 0                  # bytes this ACK delivered (scratch, for PRR)
        self.t_reo = None                   # RACK reorder timer deadline
        self.rack_ts = 0.0                  # RACK.xmit_ts
        self.rack_end = 0                   # RACK.end_seq
        self.rack_rtt = 0.0                 # RACK.rtt
        self.rack_fack = 0                  # RACK.fack: highest end delivered
        self.min_rtt = 1e9
        self.reo_seen = False               # RACK.reordering_seen
        self.reo_mult = 1                   # RACK.reo_wnd_mult
        self.reo_persist = 0                # RACK.reo_wnd_persist
        self.dsack_round = 0                # RACK.dsack_round (0: none)
        self.prr_delivered = 0              # PRR (RFC 6937)
        self.prr_out = 0
        self.recover_fs = 1                 # PRR RecoverFS
        self.undo_cwnd = 0                  # cwnd and ssthresh before the last reduction
        self.undo_ssthresh = 0
        self.undo_marker = 0                # snd_una when that recovery started
        self.undo_retrans = -1              # its retransmissions not D-SACKed yet (-1: none)
        self.retrans_stamp = -1             # TSval of its first retransmission (-1: none)
        self.w_max = 0                      # CUBIC: window before the last reduction (bytes)
        self.k = 0.0                        # CUBIC: time to get back to w_max (s)
        self.epoch = None                   # CUBIC: start of the current growth epoch
        self.w_est = 0.0                    # CUBIC: Reno-friendly estimate (bytes)
        self.bbr = None                     # BBR's model (cc.BbrState), cc="bbr" only
        if L.keepalive:
            self.bits |= B_KA

    # ------------------------------------------------------------------ app API
    @property
    def local(self):
        return (self.layer.local_ip, self.key[2])

    @property
    def remote(self):
        return (self.key[0], self.key[1])

    @property
    def state_name(self):
        return STATE_NAMES[self.state]

    @property
    def nagle(self):
        return bool(self.bits & B_NAGLE)

    @nagle.setter
    def nagle(self, on):
        self.bits = (self.bits | B_NAGLE) if on else (self.bits & ~B_NAGLE)

    def __repr__(self):
        return f"<Connection {self.remote}->{self.key[2]} {STATE_NAMES[self.state]}>"

    def readable(self) -> int:
        return self.rcvlen

    def send_space(self) -> int:
        return max(self.layer.sndbuf - len(self.sndbuf), 0)

    def set_keepalive(self, on=True, idle=None, intvl=None, cnt=None):
        """Keep-alive per connection (RFC 1122 §4.2.3.6); times in seconds."""
        if idle is not None:
            self.ka_idle = idle
        if intvl is not None:
            self.ka_intvl = intvl
        if cnt is not None:
            self.ka_cnt = cnt
        if on:
            self.bits |= B_KA
            if self.state != CLOSED:
                self.ka_probes = 0
                self.t_ka = self.layer.now + self.ka_idle
                self._arm(self.t_ka)
        else:
            self.bits &= ~B_KA
            self.t_ka = None

    def send(self, data) -> int:
        """Buffer data; returns how many bytes were taken (0 when the buffer is full)."""
        st = self.state
        if self.fin_seq is not None or not (SYN_SENT <= st <= ESTABLISHED or st == CLOSE_WAIT):
            raise ConnectionClosed(self.error or f"cannot send in state {STATE_NAMES[st]}")
        buf = self.sndbuf
        room = self.layer.sndbuf - len(buf)
        n = len(data)
        if n > room:
            self.bits |= B_WANT_WR
            if room <= 0:
                return 0
            data = memoryview(data)[:room]
            n = room
        if buf:
            buf += data
        else:
            self.sndbuf = bytearray(data)
        L = self.layer
        if not self.bits & B_PENDING:
            self.bits |= B_PENDING
            L._pending.append(self)
        return n

    def recv(self, max: int = -1) -> bytes:
        """Take up to max bytes (all with -1) from the receive buffer."""
        q = self.rcvq
        self.bits &= ~B_RD_EV
        n = self.rcvlen
        if not n:
            return _EMPTY
        if max < 0 or max >= n:
            # chunks are slices of the received frames: the one copy happens here
            data = q[0] if len(q) == 1 else _join(q)
            if type(data) is not bytes:
                data = bytes(data)
            q.clear()
            self.rcvlen = 0
        else:
            out = []
            need = max
            while need:
                c = q[0]
                ln = len(c)
                if ln <= need:
                    out.append(c)
                    del q[0]
                    need -= ln
                else:
                    out.append(c[:need])
                    q[0] = c[need:]
                    need = 0
            data = _join(out)
            self.rcvlen = n - max
        # Window update (RFC 9293 §3.8.6.2.2): tell the peer when draining opened the window
        # by a useful amount and the window it knows about has become small.
        st = self.state
        if ESTABLISHED <= st <= FIN_WAIT_2:
            cap = self.layer.rcvbuf
            free = cap - self.rcvlen
            adv = self.rcv_adv - self.rcv_nxt
            if free - adv >= min(cap >> 1, self.rcv_mss) and adv < (cap >> 1):
                self.bits |= B_ACK_NOW
                if not self.bits & B_PENDING:
                    self.bits |= B_PENDING
                    self.layer._pending.append(self)
        return data

    def shutdown(self):
        """Half-close: FIN after the buffered data; receiving continues."""
        if self.fin_seq is not None:
            return
        st = self.state
        if st == CLOSED or st >= FIN_WAIT_1 and st != CLOSE_WAIT:
            return
        self.fin_seq = self.sbuf_seq + len(self.sndbuf)
        if st == ESTABLISHED:
            self.state = FIN_WAIT_1
        elif st == CLOSE_WAIT:
            self.state = LAST_ACK
        # SYN_SENT / SYN_RECEIVED: the FIN waits for the handshake (see _established)
        self._want_output()

    def close(self):
        """Full close. Unread data makes it an abort (RST), as RFC 2525 §2.17 and Linux do."""
        st = self.state
        if st == CLOSED:
            return
        self.bits |= B_APP_CLOSED
        if self.rcvlen or self.ooo:
            self.abort()
            return
        if st == SYN_SENT:
            self._finish(None)
            return
        self.shutdown()
        if self.state == FIN_WAIT_2:
            self._fw2_timer()

    def abort(self):
        """Send RST (in synchronized states) and forget the connection; no event follows."""
        st = self.state
        if st == CLOSED:
            return
        if SYN_RECEIVED <= st < TIME_WAIT:
            self._tx(RST | ACK, self.snd_nxt)
        self.bits |= B_DONE | B_APP_CLOSED
        self._finish(None)

    # ------------------------------------------------------------------ timers, output queue
    def _want_output(self):
        if not self.bits & B_PENDING:
            self.bits |= B_PENDING
            self.layer._pending.append(self)

    def _arm(self, when):
        h = self.heap_at
        if h is None or when < h:
            L = self.layer
            self.heap_at = when
            L._tseq += 1
            heap = L._timers
            heappush(heap, (when, L._tseq, self))
            if len(heap) > L._timers_max:
                # drop the superseded entries (a SYN-ACK's 1 s timer, left behind by each
                # short connection, kept the heap at ~1 s of connections); the heap then
                # doubles at most before the next pass, so this is O(1) per push
                live = [e for e in heap if e[2].heap_at == e[0]]
                heapify(live)
                L._timers = live
                L._timers_max = max(TIMER_HEAP_MIN, 2 * len(live))

    def _arm_rtx(self, now):
        """Arm the retransmission timer, or the shorter probe timer (PTO = 2*SRTT, at least
        10 ms) when SACK is on: outside recovery a tail loss probe (RFC 8985 §7) turns a tail
        loss into fast recovery; inside SACK recovery the same timer declares the holes'
        retransmissions lost (RACK's idea, RFC 8985 §6, without per-segment send times) instead
        of waiting for the RTO. One probe per ACK that makes progress; a lone segment outside
        recovery is left to the RTO (the peer may delay its ACK), except after the peer's FIN
        (LAST_ACK, CLOSING): a peer that has closed has nothing to delay its ACK of our last
        segment for (Linux in FIN_WAIT_2 and CLOSING ACKs a FIN at once), so a lost tail or
        FIN there is probed at 2*SRTT instead of waiting out the RTO."""
        t = now + self.rto
        bits = self.bits & ~B_PTO
        srtt = self.srtt
        if (srtt is not None and bits & B_SACK and not bits & B_TLP
                and (self.scoreboard if bits & B_RECOVERY else
                     self.snd_max - self.snd_una > self.mss or self.state == LAST_ACK
                     or self.state == CLOSING)):
            pto = 2 * srtt
            if pto < 0.01:
                pto = 0.01
            if now + pto < t:
                t = now + pto
                bits |= B_PTO
        self.bits = bits
        self.t_rtx = t
        self._arm(t)

    # ------------------------------------------------------------------ endings
    def _time_wait(self, now):
        """Enter TIME_WAIT: a small TimeWait object takes the 4-tuple for 2*MSL (timewait.py);
        this Connection leaves the flow table (it still sends the pending ACK of the FIN)."""
        L = self.layer
        if self.state == TIME_WAIT:
            return
        self.state = TIME_WAIT
        self.t_rtx = self.t_delack = self.t_ka = self.t_reo = None
        self.heap_at = None
        self.ooo = None
        self.sndbuf = _EMPTY
        self.bits &= ~B_RECOVERY
        if L.flows.get(self.key) is self:
            if L.tw_count < L.max_time_wait:
                L.tw_count += 1
                L.flows[self.key] = time_wait(self, now)
            else:
                L.counters["drop.tcp.time_wait_overflow"] += 1
                del L.flows[self.key]
        self._final_event(EV_CLOSED)

    def _fw2_timer(self):
        # an orphaned FIN_WAIT_2 (app closed) does not wait forever for the peer's FIN
        self.t_rtx = self.layer.now + self.layer.fin_wait2
        self._arm(self.t_rtx)

    def _final_event(self, ev):
        if ev is not None and not self.bits & B_DONE:
            self.layer.events.append((ev, self))
        self.bits |= B_DONE

    def _finish(self, ev):
        """Move to CLOSED, drop out of the flow table, deliver the final event."""
        self.state = CLOSED
        self.t_rtx = self.t_delack = self.t_ka = self.t_reo = None
        self.heap_at = None
        L = self.layer
        if L.flows.get(self.key) is self:
            del L.flows[self.key]
        lst = self.listener
        if lst is not None and self.bits & B_PASSIVE and not self.bits & B_ESTAB:
            lst.syn_count -= 1           # it was still in the SYN queue
            self.listener = None
        self._final_event(ev)

    def _fail(self, reason, send_rst=True):
        if send_rst and SYN_RECEIVED <= self.state < TIME_WAIT:
            self._tx(RST | ACK, self.snd_nxt)
        # a soft error an ICMP message left (tcp/icmperr.py) says why it timed out
        self.error = reason if self.error is None else f"{reason} ({self.error})"
        self.layer.counters["tcp.timeouts"] += 1
        self._finish(EV_ERROR)

    # ------------------------------------------------------------------ the other parts
    # (methods defined in sibling modules, bound here: one class, small files)
    from .output import output, _send_syn, _tx
    from .recovery import (_dupack, _enter_recovery, _sack_update, _pipe, _rtx_lost,
                           _retransmit_head, _tail_probe, _rtt_sample, _rack_ack, _rack_timeout)
    from .cc import _on_loss, _cubic_ack
    from .receive import _in_data, _ooo_insert, _ooo_merge, _in_fin, _sack_option
    from .segments import (process, _usual_options, _in_syn_sent, _negotiate, _established,
                           _in_rst, _challenge_ack, _on_ack)
    from .timers import poll_at, on_timer, _rtx_timeout, _ka_timeout


from .timewait import time_wait  # noqa: E402  (imports bits/consts only; no cycle)
