# cython: infer_types=True, annotation_typing=False
"""Receive side of a Connection: in-order delivery, the out-of-order queue and its
reassembly (overlaps and duplicates trimmed), delayed ACKs, the peer's FIN, and the
SACK blocks we report for our queue (RFC 9293 §3.10.7.4, RFC 1122 §4.2.3.2, RFC 2018)."""
try:
    import cython
except ImportError:         # plain Python on a machine without Cython
    from framework import _cython_shim as cython

from bisect import bisect_right

from .bits import _ii_pack
from .output import _tx

if not cython.compiled:        # compiled: C constants (bits.pxd, consts.pxd)
    from ..wire.tcp import ACK
    from .bits import B_ACK_NOW, B_APP_CLOSED, B_EOF, B_PENDING, B_RD_EV, B_SACK, M
    from .consts import CLOSE_WAIT, CLOSING, ESTABLISHED, EV_EOF, EV_READABLE, FIN_WAIT_1, FIN_WAIT_2


def _in_data(self, buf, doff, dend, dlen, d, fin, now):
    L = self.layer
    if d == 0:
        closed = self.bits & B_APP_CLOSED
        if dlen:
            if not closed:
                self.rcvq.append(memoryview(buf)[doff:dend] if dlen >= 1024 and type(buf) is bytes
                                 else buf[doff:dend])
                self.rcvlen += dlen
            self.rcv_nxt += dlen
            self.unacked += dlen
            gap = self.ooo is not None
            if gap:
                _ooo_merge(self)
            if not closed and not self.bits & B_RD_EV:
                self.bits |= B_RD_EV
                L.events.append((EV_READABLE, self))
            # delayed ACK (RFC 1122 §4.2.3.2, RFC 5681 §4.2): every second full segment,
            # at once when a gap was (partly) filled
            if gap or self.unacked >= 2 * self.mss:
                self.bits |= B_ACK_NOW
                if not self.bits & B_PENDING:
                    self.bits |= B_PENDING
                    L._pending.append(self)
            elif self.t_delack is None:
                self.t_delack = now + L.delack
                self._arm(self.t_delack)
        if fin:
            _in_fin(self, now)
        elif self.ooo_fin is not None and self.ooo_fin == self.rcv_nxt:
            _in_fin(self, now)
    else:
        # out of order: queue it and send a duplicate ACK at once (RFC 5681 §4.2)
        L.counters["tcp.rx_ooo"] += 1
        sseq = self.rcv_nxt + d
        self.sack_last = sseq
        if dlen and not _ooo_insert(self, sseq, bytes(buf[doff:dend])) and self.bits & B_SACK:
            self.dsack_tx = (sseq, sseq + dlen)      # all of it was queued already (RFC 2883)
        if fin:
            self.ooo_fin = sseq + dlen
        _tx(self, ACK, self.snd_nxt)


def _ooo_insert(self, s, data):
    """Insert [s, s+len) keeping the queue sorted and non-overlapping (only new bytes kept).
    Returns whether any byte was new."""
    q = self.ooo
    if q is None:
        self.ooo = [[s, data]]
        return True
    e = s + len(data)
    i = bisect_right(q, s, key=_first) - 1       # the last entry starting at or before s
    if i < 0:
        i = 0
    n = len(q)
    pos = s
    new = []
    while i < n:
        x = q[i]
        bs = x[0]
        be = bs + len(x[1])
        i += 1
        if be <= pos:
            continue
        if bs >= e:
            break
        if bs > pos:
            new.append([pos, data[pos - s:bs - s]])
        pos = be
        if pos >= e:
            break
    if pos < e:
        new.append([pos, data[pos - s:]])
    if not new:
        return False
    # bound the bookkeeping a hostile peer can cause with tiny segments; a window of
    # full-sized ones (rcvbuf / MSS entries) always fits, or a loss would waste the rest
    lim = self.layer.rcvbuf >> 9
    if n + len(new) > (lim if lim > 256 else 256):
        self.layer.counters["drop.tcp.ooo_full"] += 1
        return True
    if len(new) == 1:
        x = new[0]
        q.insert(bisect_right(q, x[0], key=_first), x)
    else:
        q.extend(new)
        q.sort(key=_first)
    return True


def _ooo_merge(self):
    q = self.ooo
    nxt = self.rcv_nxt
    closed = self.bits & B_APP_CLOSED
    start = nxt
    n = len(q)
    k = 0
    while k < n:
        x = q[k]
        bs = x[0]
        if bs > nxt:
            break
        bd = x[1]
        be = bs + len(bd)
        if be > nxt:
            if not closed:
                self.rcvq.append(bd if nxt == bs else bd[nxt - bs:])
                self.rcvlen += be - nxt
            nxt = be
        k += 1
    if k:
        del q[:k]
    self.unacked += nxt - start
    self.rcv_nxt = nxt
    if not q:
        self.ooo = None


def _in_fin(self, now):
    L = self.layer
    self.ooo_fin = None
    self.rcv_nxt += 1
    self.bits |= B_ACK_NOW | B_EOF
    self._want_output()
    if not self.bits & B_APP_CLOSED:
        L.events.append((EV_EOF, self))
    st = self.state
    if st == ESTABLISHED:
        self.state = CLOSE_WAIT
    elif st == FIN_WAIT_1:
        self.state = CLOSING         # simultaneous close (our FIN is not acked yet)
    elif st == FIN_WAIT_2:
        self._time_wait(now)


def _sack_option(self, nmax):
    """SACK option for our out-of-order queue (RFC 2018 §4): a D-SACK block for a duplicate
    just received first (RFC 2883 §4, sent once), then the block holding the latest arrival,
    then the blocks of the last option in their order (each block is repeated, so one lost
    ACK does not lose it, and a sender told of many holes learns of them all), then the
    others from the highest down."""
    blocks = []
    dup = self.dsack_tx
    if dup is not None:
        self.dsack_tx = None
        self.layer.counters["tcp.dsack_tx"] += 1
    for s, d in self.ooo or ():
        e = s + len(d)
        if blocks and blocks[-1][1] == s:
            blocks[-1][1] = e
        else:
            blocks.append([s, e])
    fin = self.ooo_fin
    if fin is not None:
        # the FIN beyond a hole has its sequence number: SACKed as Linux does, so the
        # sender sees its last segment arrive and RACK marks the hole lost at once (a
        # block that stops short of the FIN leaves that segment unsacked: an RTO later)
        if blocks and blocks[-1][1] == fin:
            blocks[-1][1] = fin + 1
        else:
            blocks.append([fin, fin + 1])
    n = nmax - 1 if dup is not None else nmax
    chosen = []
    recent = self.sack_recent
    for seq in [self.sack_last] + recent if recent is not None else (self.sack_last,):
        for b in blocks:
            if b[0] <= seq < b[1]:
                if b not in chosen:
                    chosen.append(b)
                break
        if len(chosen) >= n:
            break
    if len(chosen) < n:
        for b in reversed(blocks):
            if b not in chosen:
                chosen.append(b)
                if len(chosen) >= n:
                    break
    self.sack_recent = [b[0] for b in chosen]
    out = [list(dup)] + chosen if dup is not None else chosen
    out = out[:nmax]
    o = bytearray(b"\x01\x01\x05")
    o.append(2 + 8 * len(out))
    for s, e in out:
        o += _ii_pack(s & M, e & M)
    return bytes(o)


def _first(x):
    return x[0]
