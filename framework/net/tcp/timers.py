# cython: infer_types=True, annotation_typing=False
"""Timers of a Connection and the layer's timer heap: retransmission (RFC 6298) with
backoff, persist probes, TIME_WAIT and FIN_WAIT_2 expiry, delayed ACK, keep-alive.
(Arming is Connection._arm / _arm_rtx.)"""
from heapq import heappop

try:
    import cython
except ImportError:         # plain Python on a machine without Cython
    from framework import _cython_shim as cython

from .output import _send_syn, _tx, output
from .cc import _on_loss
from .recovery import _rack_timeout, _tail_probe

if not cython.compiled:        # compiled: C constants (bits.pxd, consts.pxd)
    from ..wire.tcp import ACK
    from .bits import B_ACK_NOW, B_DONE, B_KA, B_PASSIVE, B_PTO, B_RECOVERY, B_TLP
    from .consts import (CLOSED, CLOSE_WAIT, ESTABLISHED, EV_CLOSED, FIN_WAIT_2, LAST_ACK,
                         SYN_RECEIVED, SYN_SENT, TIME_WAIT)


def fire_timers(L, now):
    """TcpLayer.poll: pop the heap entries due by now and fire their connections' timers;
    then the TIME_WAIT FIFO."""
    heap = L._timers
    while heap and heap[0][0] <= now:
        when, _, conn = heappop(heap)
        if conn.heap_at != when:
            continue                         # superseded by an earlier entry
        conn.heap_at = None
        on_timer(conn, now)
        nxt = poll_at(conn)
        if nxt is not None and conn.state:
            conn._arm(nxt)
    q = L.tw_queue
    while q and q[0][0] <= now:
        when, tw = q.popleft()
        if tw.heap_at == when:               # else: restarted or gone
            tw.heap_at = None
            tw.on_timer(now)


def next_deadline(L):
    """TcpLayer.poll_at without pending output: the earliest live deadline, dropping stale
    heap entries and re-arming connections whose deadline moved later."""
    q = L.tw_queue
    while q and q[0][1].heap_at != q[0][0]:
        q.popleft()                          # restarted or gone
    tw = q[0][0] if q else None
    heap = L._timers
    while heap:
        when, _, conn = heap[0]
        if conn.heap_at != when:
            heappop(heap)                    # superseded
            continue
        real = poll_at(conn)
        if real is not None and real <= when:
            return when if tw is None or when < tw else tw
        heappop(heap)
        conn.heap_at = None
        if real is not None and conn.state:
            conn._arm(real)
    return tw


def poll_at(self):
    t = self.t_rtx
    for x in (self.t_delack, self.t_ka, self.t_reo):
        if x is not None and (t is None or x < t):
            t = x
    return t


def on_timer(self, now):
    t = self.t_delack
    if t is not None and t <= now:
        self.t_delack = None
        self.bits |= B_ACK_NOW
        self._want_output()
    t = self.t_reo
    if t is not None and t <= now:
        self.t_reo = None
        if ESTABLISHED <= self.state <= LAST_ACK:
            _rack_timeout(self, now)
    t = self.t_rtx
    if t is not None and t <= now:
        self.t_rtx = None
        _rtx_timeout(self, now)
    t = self.t_ka
    if t is not None and t <= now and self.state != CLOSED:
        self.t_ka = None
        _ka_timeout(self, now)


def _rtx_timeout(self, now):
    L = self.layer
    cfg = L.config
    st = self.state
    if st == TIME_WAIT:
        L.counters["tcp.time_wait_expired"] += 1
        self._finish(None)
        return
    if st == FIN_WAIT_2:
        self._finish(EV_CLOSED)
        return
    una = self.snd_una
    if self.bits & B_PTO:
        self.bits &= ~B_PTO
        if self.snd_max > una and ESTABLISHED <= st <= LAST_ACK:
            _tail_probe(self, now)
            return
    if self.snd_max > una:
        self.retries += 1
        limit = (cfg.syn_retries if st == SYN_SENT else
                 cfg.synack_retries if st == SYN_RECEIVED else cfg.max_retries)
        if self.retries > limit:
            if st == SYN_RECEIVED and self.bits & B_PASSIVE:
                L.counters["drop.tcp.synack_timeout"] += 1
                self.bits |= B_DONE
                self._finish(None)
            elif st == SYN_SENT:
                self._fail("connection timed out", send_rst=False)
            else:
                self._fail("retransmission timed out")
            return
        rto = self.rto * 2               # exponential backoff (RFC 6298 §5.5)
        self.rto = rto if rto < cfg.max_rto else cfg.max_rto
        L.counters["tcp.rto"] += 1
        self.t_rtx = now + self.rto
        self._arm(self.t_rtx)
        self.rtt_seq = None              # Karn
        if st == SYN_SENT or st == SYN_RECEIVED:
            _send_syn(self)
            return
        mss = self.mss
        if self.retries == 1:            # RFC 5681 eq. 4, once per loss episode
            self.ssthresh = _on_loss(self, self.snd_max - una)
        self.cwnd = mss
        self.ca_acc = 0
        self.dupacks = 0
        self.bits &= ~B_RECOVERY
        self.recover = self.snd_max      # RFC 6582 §4.1: no fast retransmit on old dupacks
        self.scoreboard = None           # start over: go back N from snd_una
        self.txq = None
        self.sacked_out = self.lost_out = 0
        self.t_reo = None
        self.undo_retrans = -1
        self.bits &= ~B_TLP
        self.snd_nxt = una               # go back N
        L.counters["tcp.retransmits"] += 1
        output(self, now)
    elif self.sbuf_seq + len(self.sndbuf) > self.snd_nxt and ESTABLISHED <= st <= LAST_ACK:
        if self.snd_wnd == 0:
            # persist: a zero-window probe (seq una-1, no data) makes the peer ACK its window
            self.retries += 1
            if self.retries > cfg.max_retries:
                self._fail("zero window probe timed out")
                return
            L.counters["tcp.zero_window_probes"] += 1
            _tx(self, ACK, una - 1)
            self.backoff += 1
            t = self.rto * (1 << min(self.backoff, 12))
            self.t_rtx = now + (t if t < cfg.max_rto else cfg.max_rto)
            self._arm(self.t_rtx)
        else:
            output(self, now, force=True)  # sender SWS override timeout (RFC 9293 §3.8.6.2.1)


def _ka_timeout(self, now):
    st = self.state
    if not self.bits & B_KA or not (st == ESTABLISHED or st == CLOSE_WAIT or st == FIN_WAIT_2):
        return
    if self.snd_max > self.snd_una:      # data in flight: the retransmission timer watches
        self.t_ka = now + self.ka_idle
        self._arm(self.t_ka)
        return
    if self.ka_probes >= self.ka_cnt:
        self._fail("keepalive timed out")
        return
    self.ka_probes += 1
    self.layer.counters["tcp.keepalive_probes"] += 1
    _tx(self, ACK, self.snd_una - 1)
    self.t_ka = now + self.ka_intvl
    self._arm(self.t_ka)
