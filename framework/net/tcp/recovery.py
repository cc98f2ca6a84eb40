# cython: infer_types=True, annotation_typing=False
"""Loss recovery and congestion control helpers of a Connection: fast retransmit,
NewReno (RFC 5681, RFC 6582), SACK scoreboard and RFC 6675-style hole retransmission,
tail loss probes (RFC 8985 §7), RTT estimation (RFC 6298)."""
try:
    import cython
except ImportError:         # plain Python on a machine without Cython
    from framework import _cython_shim as cython

from .bits import _EMPTY
from .output import _tx

if not cython.compiled:        # compiled: C constants (bits.pxd)
    from ..wire.tcp import ACK, FIN
    from .bits import B_RECOVERY, B_SACK, B_TLP, HALF, M


def _dupack(self):
    mss = self.mss
    if self.bits & B_RECOVERY:
        if self.bits & B_SACK:
            _sack_rtx(self)
        else:
            self.cwnd += mss             # inflate (RFC 6582 §3.2 step 5)
        self._want_output()
        return
    self.dupacks += 1
    if self.dupacks >= 3 and self.snd_una >= self.recover:
        _enter_recovery(self)


def _enter_recovery(self):
    """Fast retransmit (RFC 5681 §3.2); NewReno (RFC 6582 §3.2 step 2) or, with SACK,
    a conservative RFC 6675 recovery that retransmits the holes while pipe < cwnd."""
    L = self.layer
    mss = self.mss
    L.counters["tcp.fast_retransmits"] += 1
    self.ssthresh = _on_loss(self, self.snd_max - self.snd_una)
    self.recover = self.snd_max
    self.bits |= B_RECOVERY
    self.rtt_seq = None
    self.dupacks = 3
    if self.bits & B_SACK:
        self.cwnd = self.ssthresh
        self.rtx_high = self.snd_una
        if not _sack_rtx(self):
            _retransmit_head(self)      # nothing SACKed yet: the head is the hole
            self.rtx_high = self.snd_una + self.mss
        self._arm_rtx(L.now)
    else:
        _retransmit_head(self)
        self.cwnd = self.ssthresh + 3 * mss
    self._want_output()


def _sack_loss_check(self):
    """RFC 6675 IsLost(snd_una): 3 segments' worth SACKed above the head; or a tail loss
    probe was answered with a SACK of the flight's end, so the holes before it are lost
    (RFC 8985 §7.4, without RACK's time-based reordering window)."""
    sb = self.scoreboard
    if self.snd_una < self.recover:
        return
    sacked = 0
    for s, e in sb:
        sacked += e - s
    if sacked >= 3 * self.mss or (self.bits & B_TLP and sb[-1][1] >= self.snd_max):
        self.bits &= ~B_TLP
        _enter_recovery(self)


def _sack_update(self, blocks, ack):
    """Merge the peer's SACK blocks (RFC 2018) into the scoreboard."""
    sb = self.scoreboard
    if sb is None:
        sb = []
    smax = self.snd_max
    una = self.snd_una
    changed = False
    for left, right in blocks:
        d = (left - ack) & M
        if d >= HALF or d == 0:
            continue                     # at or below the cumulative ACK (or D-SACK)
        s = ack + d
        e = s + ((right - left) & M)
        if e > smax or e <= s:
            continue
        # an old ACK (reordered, below SND.UNA) may SACK what has been cumulatively acked
        # since: stale, and in the scoreboard it would start a recovery with nothing in
        # flight whose bogus pipe keeps cwnd shut, with no ACK left to end it (a stall)
        if e <= una:
            continue
        if s < una:
            s = una
        sb.append([s, e])
        changed = True
    if not changed:
        return
    sb.sort(key=_first)
    merged = [sb[0]]
    for s, e in sb[1:]:
        last = merged[-1]
        if s <= last[1]:
            if e > last[1]:
                last[1] = e
        else:
            merged.append([s, e])
    self.scoreboard = merged[-64:]


def _pipe(self):
    """RFC 6675 §4 pipe, simplified: everything above the highest SACK is in flight,
    holes below it count only once retransmitted."""
    sb = self.scoreboard
    if not sb:
        return self.snd_max - self.snd_una
    hi = sb[-1][1]
    rh = self.rtx_high
    pipe = self.snd_max - hi
    if rh > self.snd_una:
        pos = self.snd_una
        for s, e in sb:
            if s >= rh:
                break
            if s > pos:
                pipe += s - pos
            pos = e
        if pos < rh:
            pipe += rh - pos
    return pipe


def _sack_rtx(self):
    """Retransmit not-yet-retransmitted holes below the highest SACK while pipe < cwnd.
    Returns whether anything was sent."""
    sb = self.scoreboard
    if not sb:
        return False
    L = self.layer
    mss = self.mss
    maxseg = L.gso_max - L.gso_max % mss if L.gso and L.gso_max > mss else mss
    pipe = _pipe(self)
    cwnd = self.cwnd
    pos = max(self.rtx_high, self.snd_una)
    hi = sb[-1][1]
    sent = False
    base = self.sbuf_seq
    buf = self.sndbuf
    for s, e in sb:
        if pipe >= cwnd:
            break
        if e <= pos:
            continue
        if s > pos:
            while pos < s and pipe < cwnd:
                room = cwnd - pipe
                n = s - pos
                if n > maxseg:
                    n = maxseg
                if n > room and room >= mss:
                    n = room - room % mss
                off = pos - base
                _tx(self, ACK, pos, buf[off:off + n])
                L.counters["tcp.retransmits"] += 1
                pos += n
                pipe += n
                sent = True
        if pos < e:
            pos = e
    if pos > self.rtx_high:
        self.rtx_high = pos if pos < hi else hi
    return sent


def _retransmit_head(self):
    """Resend the first unacknowledged segment (one MSS, or the FIN)."""
    una = self.snd_una
    off = una - self.sbuf_seq
    n = len(self.sndbuf) - off
    if n > self.mss:
        n = self.mss
    flags = ACK
    if self.fin_seq is not None and una + n == self.fin_seq:
        flags |= FIN
    if n <= 0 and not flags & FIN:
        return
    self.layer.counters["tcp.retransmits"] += 1
    _tx(self, flags, una, self.sndbuf[off:off + n] if n > 0 else _EMPTY)


def _recovery_probe(self, now):
    """The probe timer fired in SACK recovery: the holes' retransmissions are lost too."""
    self.layer.counters["tcp.recovery_probes"] += 1
    self.bits |= B_TLP
    self.rtx_high = self.snd_una
    if not _sack_rtx(self):
        _retransmit_head(self)
    self.t_rtx = now + self.rto
    self._arm(self.t_rtx)


def _tail_probe(self, now):
    """TLP: resend the last MSS of the flight (RFC 8985 §7.3) to get a SACK back."""
    L = self.layer
    L.counters["tcp.tail_loss_probes"] += 1
    self.bits |= B_TLP
    end = self.sbuf_seq + len(self.sndbuf)
    hi = self.snd_max if self.snd_max < end else end
    seq = hi - self.mss
    if seq < self.snd_una:
        seq = self.snd_una
    off = seq - self.sbuf_seq
    flags = ACK
    if self.fin_seq is not None and self.snd_max > self.fin_seq:
        flags |= FIN
    if hi > seq or flags & FIN:
        _tx(self, flags, seq, self.sndbuf[off:off + hi - seq])
    self.t_rtx = now + self.rto
    self._arm(self.t_rtx)


def _rtt_sample(self, r):
    """RFC 6298 §2."""
    L = self.layer
    if self.srtt is None:
        self.srtt = r
        self.rttvar = r / 2
    else:
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
        self.srtt = 0.875 * self.srtt + 0.125 * r
    rto = self.srtt + max(0.001, 4 * self.rttvar)
    self.rto = L.min_rto if rto < L.min_rto else L.max_rto if rto > L.max_rto else rto


def _first(x):
    return x[0]


CUBIC_C = 0.4
CUBIC_BETA = 0.7
CUBIC_ALPHA = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)   # Reno-friendly slope (RFC 9438 §4.3)


def _on_loss(self, flight):
    """Multiplicative decrease at a congestion event: the new ssthresh. NewReno halves the
    flight (RFC 5681 eq. 4); CUBIC keeps 70% of cwnd and remembers W_max (RFC 9438 §4.6-4.7)."""
    mss = self.mss
    if self.layer.cubic:
        cw = self.cwnd
        # fast convergence: release bandwidth when the window keeps shrinking
        self.w_max = cw * (1 + CUBIC_BETA) / 2 if cw < self.w_max else cw
        self.epoch = None
        ss = int(cw * CUBIC_BETA)
    else:
        ss = flight // 2
    return ss if ss > 2 * mss else 2 * mss


def _cubic_ack(self, acked, now):
    """CUBIC congestion avoidance for `acked` new bytes (RFC 9438 §4.2-4.4): grow toward
    W_cubic(t + RTT), never slower than the Reno-friendly estimate, at most 1.5x per RTT."""
    mss = self.mss
    cw = self.cwnd
    if self.epoch is None:
        self.epoch = now
        if self.w_max <= cw:
            self.k = 0.0
            self.w_max = cw
        else:
            self.k = ((self.w_max - cw) / mss / CUBIC_C) ** (1 / 3)
        self.w_est = cw
        self.ca_acc = 0
    t = now - self.epoch + (self.srtt or 0.0) - self.k
    target = self.w_max + CUBIC_C * t * t * t * mss
    self.w_est += CUBIC_ALPHA * acked * mss / cw
    if self.w_est > target:
        target = self.w_est
    if target > 1.5 * cw:
        target = 1.5 * cw
    if target > cw:
        self.ca_acc += (target - cw) * acked / cw
        if self.ca_acc >= 1:
            inc = int(self.ca_acc)
            self.ca_acc -= inc
            self.cwnd = cw + inc
