# cython: infer_types=True, annotation_typing=False
"""Loss recovery and congestion control helpers of a Connection: RACK-TLP loss detection
(RFC 8985) over the transmit queue, Proportional Rate Reduction (RFC 6937, PRR-SSRB), the
SACK scoreboard (RFC 2018), D-SACK (RFC 2883) and timestamp (Eifel, RFC 3522) undo of
spurious recoveries, NewReno without SACK (RFC 5681, RFC 6582), RTT estimation (RFC 6298); the congestion
controller's part is cc.py.

The transmit queue (Connection.txq, SACK connections only) holds one entry per data segment
sent and not cumulatively acknowledged, in sequence order: [start, end, xmit_ts, flags],
where xmit_ts is the layer's clock at the last (re)transmission. sacked_out and lost_out
count the bytes of entries flagged S_SACKED and S_LOST; what is in flight (pipe) is the
rest: a retransmitted entry counts once, its original being gone."""
from bisect import bisect_right

try:
    import cython
except ImportError:         # plain Python on a machine without Cython
    from framework import _cython_shim as cython

from .bits import _EMPTY
from .cc import _on_loss
from .output import _tx, output

if not cython.compiled:        # compiled: C constants (bits.pxd, output.pxd)
    from ..wire.tcp import ACK, FIN
    from .bits import B_RECOVERY, B_TLP, B_TS, HALF, M, WRAP
    from .output import S_LOST, S_RTX, S_SACKED
    DUPTHRESH = 3


# --------------------------------------------------------------------- NewReno (no SACK)
def _dupack(self):
    """A duplicate ACK on a connection without SACK (RFC 5681 §3.2, RFC 6582)."""
    if self.bits & B_RECOVERY:
        self.cwnd += self.mss            # inflate (RFC 6582 §3.2 step 5)
        self._want_output()
        return
    self.dupacks += 1
    if self.dupacks >= DUPTHRESH and self.snd_una >= self.recover:
        L = self.layer
        L.counters["tcp.fast_retransmits"] += 1
        self.ssthresh = _on_loss(self, self.snd_max - self.snd_una)
        self.recover = self.snd_max
        self.bits |= B_RECOVERY
        self.rtt_seq = None
        _retransmit_head(self)
        self.cwnd = self.ssthresh + 3 * self.mss
        self._want_output()


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


# --------------------------------------------------------------------- SACK and D-SACK
def _sack_update(self, blocks, ack, tsecr, now):
    """The peer's SACK blocks (RFC 2018): a D-SACK first block (RFC 2883) is handed to
    _dsack; the parts of the others not SACKed before are marked in the transmit queue and
    merged into the scoreboard. Returns the bytes newly SACKed."""
    sb = self.scoreboard
    if sb is None:
        sb = []
    smax = self.snd_max
    una = self.snd_una
    delivered = 0
    first = True
    new = []
    for left, right in blocks:
        d = (left - ack) & M
        ln = (right - left) & M
        if first:
            first = False
            if d >= HALF and ln and ln < HALF:
                s = ack + d - WRAP
                _dsack(self, s, s + ln)          # below the cumulative ACK (RFC 2883 §4.1.1)
                continue
            if len(blocks) > 1 and ln:
                l2, r2 = blocks[1]
                if ((left - l2) & M) < HALF and ((r2 - right) & M) < HALF:
                    s = ack + d
                    _dsack(self, s, s + ln)      # inside the second block (§4.1.2)
                    continue
        if d >= HALF or d == 0:
            continue                     # at or below the cumulative ACK
        s = ack + d
        e = s + ln
        if e > smax or e <= s:
            continue
        # an old ACK (reordered, below SND.UNA) may SACK what has been cumulatively acked
        # since: stale, and in the scoreboard it would start a recovery with nothing in
        # flight whose bogus pipe keeps cwnd shut, with no ACK left to end it (a stall)
        if e <= una:
            continue
        if s < una:
            s = una
        # only what the scoreboard did not hold is new to the transmit queue
        pos = s
        for bs, be in sb:
            if be <= pos:
                continue
            if bs >= e:
                break
            if bs > pos:
                delivered += _txq_sack(self, pos, bs, tsecr, now)
            pos = be
            if pos >= e:
                break
        if pos < e:
            delivered += _txq_sack(self, pos, e, tsecr, now)
        new.append([s, e])
    if not new:
        return delivered
    sb.extend(new)
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
    return delivered



def _dsack(self, s, e):
    """A D-SACK for [s, e): the peer got that data twice. Grows RACK's reordering window once
    per round trip (RFC 8985 §6.2 step 4); when every retransmission of the last recovery is
    reported so, the recovery was spurious and is undone (RFC 2883 §5, as Linux)."""
    L = self.layer
    L.counters["tcp.dsack_rx"] += 1
    if self.dsack_round and self.snd_una >= self.dsack_round:
        self.dsack_round = 0
    if not self.dsack_round:
        self.dsack_round = self.snd_nxt
        if self.reo_mult < 16:
            self.reo_mult += 1
        self.reo_persist = 16
    if self.undo_retrans > 0 and s >= self.undo_marker:
        q = self.txq
        if q is not None and e > self.snd_una:
            # still queued: a duplicate of an original the network copied proves nothing
            i = bisect_right(q, s, key=_first) - 1
            if i >= 0 and not q[i][3] & S_RTX:
                return
        mss = self.mss
        self.undo_retrans -= (e - s + mss - 1) // mss
        if self.undo_retrans <= 0:
            L.counters["tcp.dsack_undos"] += 1
            _undo(self)


def _undo(self):
    """The last cwnd reduction was for nothing: restore cwnd and ssthresh (RFC 2883 §5,
    RFC 3522 §3.2)."""
    if self.cwnd < self.undo_cwnd:
        self.cwnd = self.undo_cwnd
    if self.ssthresh < self.undo_ssthresh:
        self.ssthresh = self.undo_ssthresh
    self.undo_retrans = -1
    self.retrans_stamp = -1
    if self.bits & B_RECOVERY and not self.lost_out:
        self.bits &= ~B_RECOVERY
        self.dupacks = 0
        self.recover = self.snd_una


# --------------------------------------------------------------------- the transmit queue
def _txq_sack(self, s, e, tsecr, now):
    """Mark the entries in [s, e) SACKed (splitting those the range cuts); returns the bytes
    marked."""
    q = self.txq
    if q is None:
        return 0
    i = bisect_right(q, s, key=_first) - 1
    if i < 0:
        i = 0
    n = len(q)
    delivered = 0
    while i < n:
        x = q[i]
        if x[0] >= e:
            break
        f = x[3]
        if x[1] <= s or f & S_SACKED:
            i += 1
            continue
        if x[0] < s:                     # the range starts inside: split it off
            q.insert(i + 1, [s, x[1], x[2], f])
            x[1] = s
            n += 1
            i += 1
            continue
        if x[1] > e:
            q.insert(i + 1, [e, x[1], x[2], f])
            x[1] = e
            n += 1
        sz = x[1] - x[0]
        if f & S_LOST:
            self.lost_out -= sz
        x[3] = (f & ~S_LOST) | S_SACKED
        self.sacked_out += sz
        delivered += sz
        _rack_update(self, x, tsecr, now)
        i += 1
    return delivered


def _txq_ack(self, ack, tsecr, now):
    """The cumulative ACK reached ack: drop the entries below it. Returns the bytes delivered
    that were not SACKed before."""
    q = self.txq
    n = 0
    ln = len(q)
    delivered = 0
    while n < ln:
        x = q[n]
        if x[0] >= ack:
            break
        f = x[3]
        end = x[1]
        sz = (end if end < ack else ack) - x[0]
        if f & S_SACKED:
            self.sacked_out -= sz
        else:
            if f & S_LOST:
                self.lost_out -= sz
            delivered += sz
            _rack_update(self, x, tsecr, now)
        if end > ack:                    # partly acknowledged
            x[0] = ack
            break
        n += 1
    if n:
        if n == ln:
            self.txq = None
        else:
            del q[:n]
    return delivered


def _pipe(self):
    """Bytes in flight (RFC 6675 §4 pipe with RACK's marks): not SACKed, not lost."""
    return self.snd_max - self.snd_una - self.sacked_out - self.lost_out


# --------------------------------------------------------------------- RACK (RFC 8985)
def _rack_update(self, x, tsecr, now):
    """§6.2 steps 1-3 for a newly delivered entry: the most recently sent delivered segment
    (RACK.xmit_ts, RACK.end_seq, RACK.rtt), the highest delivered end (RACK.fack) and
    whether the path reorders."""
    ts = x[2]
    f = x[3]
    rtt = now - ts
    if f & S_RTX and rtt < self.min_rtt:
        # delivered sooner than any round trip: the original was (as Linux decides; the
        # TSecr test of §6.2 step 2 fails for SACKed data, the echo is of in-order data)
        return
    if ts > self.rack_ts or (ts == self.rack_ts and x[1] > self.rack_end):
        self.rack_ts = ts
        self.rack_end = x[1]
        self.rack_rtt = rtt
    if x[1] > self.rack_fack:
        self.rack_fack = x[1]
    elif not f & S_RTX and x[1] < self.rack_fack:
        self.reo_seen = True


def _reo_wnd(self):
    """§6.2 step 4: no reordering window while the path has not been seen reordering and
    DupThresh segments are SACKed (or in recovery); else min_RTT / 4 per D-SACKed round."""
    if not self.reo_seen and (self.bits & B_RECOVERY or self.sacked_out >= DUPTHRESH * self.mss):
        return 0.0
    w = self.reo_mult * self.min_rtt / 4
    srtt = self.srtt
    if srtt is None:
        return 0.0
    return w if w < srtt else srtt


def _rack_detect(self, now):
    """§6.2 step 5: an entry sent before RACK.xmit_ts and not delivered RACK.rtt + reo_wnd
    after it was sent is lost; for the ones not yet that old, the reorder timer."""
    q = self.txq
    if q is None:
        self.t_reo = None
        return
    rts = self.rack_ts
    rend = self.rack_end
    limit = self.rack_rtt + _reo_wnd(self)
    timeout = 0.0
    lost = 0
    for x in q:
        f = x[3]
        if f & (S_SACKED | S_LOST):
            continue
        ts = x[2]
        if ts > rts or (ts == rts and (x[1] >= rend or f & S_RTX)):
            if f & S_RTX:
                continue             # retransmissions are out of sequence order
            break                    # originals are in order: the rest were sent later
        rem = ts + limit - now
        if rem <= 0:
            x[3] = f | S_LOST
            lost += x[1] - x[0]
            self.layer.counters["tcp.rack_losses"] += 1
        elif rem > timeout:
            timeout = rem
    self.lost_out += lost
    if timeout > 0:
        self.t_reo = now + timeout
        self._arm(self.t_reo)
    else:
        self.t_reo = None


def _rack_ack(self, now):
    """After an ACK's SACK and cumulative parts were applied (or the reorder timer fired):
    detect losses, enter recovery on the first, set the PRR sending amount, retransmit."""
    delivered = self.delivered
    self.delivered = 0
    bits = self.bits
    if self.txq is None:
        self.t_reo = None
    elif self.sacked_out or self.lost_out or bits & B_RECOVERY:
        _rack_detect(self, now)
    if self.lost_out and not bits & B_RECOVERY and self.snd_una >= self.recover:
        _enter_recovery(self)
    if self.bits & B_RECOVERY:
        _prr(self, delivered)
    if self.lost_out:
        _rtx_lost(self, now)


def _rack_timeout(self, now):
    """The reorder timer (RFC 8985 §6.3): what it marks lost leaves the pipe, so cwnd as the
    last ACK set it has room for the retransmissions (PRR's count waits for ACKs)."""
    self.delivered = 0
    if self.txq is None:
        return
    _rack_detect(self, now)
    if not self.lost_out:
        return
    if not self.bits & B_RECOVERY and self.snd_una >= self.recover:
        _enter_recovery(self)
        _prr(self, 0)
    _rtx_lost(self, now)
    if self.lost_out or self.sbuf_seq + len(self.sndbuf) > self.snd_nxt:
        self._want_output()


def _enter_recovery(self):
    """Fast recovery with SACK: ssthresh from the congestion controller, PRR from here on
    (RFC 6937 §3), and what is needed to undo it should it prove spurious."""
    L = self.layer
    L.counters["tcp.fast_retransmits"] += 1
    flight = self.snd_max - self.snd_una
    self.undo_cwnd = self.cwnd
    self.undo_ssthresh = self.ssthresh
    self.undo_marker = self.snd_una
    self.undo_retrans = 0
    self.retrans_stamp = -1
    self.ssthresh = _on_loss(self, flight)
    self.recover = self.snd_max
    self.bits |= B_RECOVERY
    self.rtt_seq = None
    self.dupacks = DUPTHRESH
    self.prr_delivered = 0
    self.prr_out = 0
    self.recover_fs = flight if flight > 0 else 1
    self._arm_rtx(L.now)


def _recovery_exit(self, tsecr):
    """A full ACK ends SACK recovery: cwnd = ssthresh (RFC 6937 §3), unless the timestamp
    echo says the first retransmission was not needed (Eifel, RFC 3522): then undo."""
    self.bits &= ~B_RECOVERY
    self.dupacks = 0
    if self.cwnd > self.ssthresh or not self.lost_out:
        self.cwnd = self.ssthresh
    rs = self.retrans_stamp
    if (tsecr is not None and rs >= 0 and self.bits & B_TS and self.undo_retrans > 0
            and (tsecr - rs) & M >= HALF):
        self.layer.counters["tcp.ts_undos"] += 1
        _undo(self)
    if self.reo_persist > 0:
        self.reo_persist -= 1
        if self.reo_persist == 0:
            self.reo_mult = 1


def _partial_undo(self, tsecr):
    """A partial ACK in SACK recovery whose timestamp echo is older than the first
    retransmission: the hole was filled by a delayed original, not by our retransmission
    (Eifel, RFC 3522, at each partial ACK as Linux's tcp_try_undo_partial). Once no
    retransmission is in flight the reduction was for reordering: undo it, forget the loss
    marks (RACK marks again what stays missing, now with the reordering seen) and leave
    recovery."""
    rs = self.retrans_stamp
    if (tsecr is None or rs < 0 or self.undo_retrans <= 0 or not self.bits & B_TS
            or (tsecr - rs) & M < HALF):
        return
    self.reo_seen = True
    q = self.txq
    if q is not None:
        for x in q:
            if x[3] & S_RTX and not x[3] & (S_SACKED | S_LOST):
                return                   # a retransmission is still out: wait for it
        for x in q:
            x[3] &= ~S_LOST
    self.lost_out = 0
    self.layer.counters["tcp.ts_undos"] += 1
    _undo(self)


def _prr(self, delivered):
    """RFC 6937 §3 (PRR-SSRB): how much this ACK lets out, as cwnd = pipe + sndcnt."""
    self.prr_delivered += delivered
    pipe = _pipe(self)
    ss = self.ssthresh
    mss = self.mss
    if pipe > ss:
        fs = self.recover_fs
        sndcnt = (self.prr_delivered * ss + fs - 1) // fs - self.prr_out
    else:
        lim = self.prr_delivered - self.prr_out
        if lim < delivered:
            lim = delivered
        lim += mss
        sndcnt = ss - pipe
        if sndcnt > lim:
            sndcnt = lim
    if sndcnt <= 0:
        sndcnt = 0
        if self.prr_out == 0 and self.lost_out:
            sndcnt = mss                 # the fast retransmit itself always goes
    else:
        sndcnt = (sndcnt + mss - 1) // mss * mss     # whole segments, as Linux counts
    self.cwnd = pipe + sndcnt


def _rtx_lost(self, now):
    """Retransmit the entries marked lost, in sequence order, while pipe < cwnd."""
    q = self.txq
    if q is None:
        return False
    L = self.layer
    mss = self.mss
    maxseg = L.gso_max - L.gso_max % mss if L.gso and L.gso_max > mss else mss
    pipe = _pipe(self)
    cwnd = self.cwnd
    base = self.sbuf_seq
    buf = self.sndbuf
    fs = self.fin_seq
    sent = False
    i = 0
    n = len(q)
    while i < n and self.lost_out > 0:
        if pipe >= cwnd or L.tx_left <= 0:
            break
        x = q[i]
        f = x[3]
        i += 1
        if not f & S_LOST:
            continue
        s = x[0]
        e = x[1]
        if e - s > maxseg:               # cut at the old size (the MSS shrank)
            q.insert(i, [s + maxseg, e, x[2], f])
            n += 1
            e = x[1] = s + maxseg
        sz = e - s
        flags = ACK
        dlen = sz
        if fs is not None and e > fs:
            flags = ACK | FIN
            dlen -= 1
        off = s - base
        L.tx_left -= 1
        _tx(self, flags, s, buf[off:off + dlen] if dlen > 0 else _EMPTY)
        L.counters["tcp.retransmits"] += 1
        x[2] = now
        x[3] = (f & ~S_LOST) | S_RTX
        self.lost_out -= sz
        pipe += sz
        if self.bits & B_RECOVERY:
            self.prr_out += sz
        if self.undo_retrans >= 0:
            self.undo_retrans += (sz + mss - 1) // mss
            if self.retrans_stamp < 0:
                self.retrans_stamp = (cython.cast(cython.longlong, now * 1000) + L.ts_off) & M
        sent = True
    return sent


# --------------------------------------------------------------------- tail loss probe
def _tail_probe(self, now):
    """TLP (RFC 8985 §7.3): one new segment if the peer's window allows, else a resend of the
    highest segment not SACKed, to get an ACK back that RACK turns into loss detection of
    whatever is missing before it."""
    L = self.layer
    if self.bits & B_RECOVERY:
        L.counters["tcp.recovery_probes"] += 1
    else:
        L.counters["tcp.tail_loss_probes"] += 1
    self.bits |= B_TLP
    self.t_rtx = now + self.rto
    self._arm(self.t_rtx)
    nxt = self.snd_nxt
    mss = self.mss
    end = self.sbuf_seq + len(self.sndbuf)
    if nxt < end and nxt + (mss if end - nxt > mss else end - nxt) <= self.snd_una + self.snd_wnd:
        cw = self.cwnd
        self.cwnd = nxt - self.snd_una + _pipe(self) + mss     # past cwnd, this once
        output(self, now, True)
        self.cwnd = cw
        if self.snd_nxt > nxt:
            return
    hi = self.snd_max if self.snd_max < end else end
    q = self.txq
    if q is not None:
        # the highest entry not SACKed: resending a SACKed one would only bring a D-SACK
        i = len(q) - 1
        while i >= 0 and q[i][3] & S_SACKED:
            i -= 1
        if i < 0:
            return
        x = q[i]
        if x[0] == self.fin_seq and i > 0:
            # a lone FIN is never SACKed (blocks cover data): its ACK would tell RACK nothing
            # about the data below it, so the highest data segment not SACKed goes instead
            i -= 1
            while i >= 0 and q[i][3] & S_SACKED:
                i -= 1
            if i < 0:
                i = len(q) - 1
            x = q[i]
        if x[1] < hi:
            hi = x[1]
        if x[3] & S_LOST:
            self.lost_out -= x[1] - x[0]
        x[3] = (x[3] & ~S_LOST) | S_RTX
        x[2] = now
        seq = x[0]
        if hi - seq > mss:
            seq = hi - mss
    else:
        seq = hi - mss
    if seq < self.snd_una:
        seq = self.snd_una
    off = seq - self.sbuf_seq
    flags = ACK
    if self.fin_seq is not None and self.snd_max > self.fin_seq and hi >= self.fin_seq:
        flags |= FIN
        hi = self.fin_seq
    if hi > seq or flags & FIN:
        L.counters["tcp.retransmits"] += 1
        _tx(self, flags, seq, self.sndbuf[off:off + hi - seq])


def _rtt_sample(self, r):
    """RFC 6298 §2; and the minimum RTT (RACK's reordering window)."""
    L = self.layer
    if r < self.min_rtt:
        self.min_rtt = r
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
