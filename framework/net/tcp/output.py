# cython: infer_types=True, annotation_typing=False
"""Output of a Connection: segmentation by MSS, windows and GSO, Nagle, sender SWS
avoidance, SYN/SYN-ACK options, and the per-connection header template (_tx)."""
try:
    import cython
except ImportError:         # plain Python on a machine without Cython
    from framework import _cython_shim as cython

from ..checksum import ones_sum
from ..wire import vnet
from ..wire.tcp import TS_PREFIX, build_options
from .bits import _EMPTY, _ii_pack, _pack, _ts_pack

_UNBOUNDED = 1 << 62      # TcpLayer.tx_left outside a flush

if not cython.compiled:        # compiled: C constants (bits.pxd, consts.pxd, output.pxd)
    # flags of a transmit queue entry (Connection.txq, see recovery.py)
    S_SACKED = 1        # SACKed by the peer
    S_LOST = 2          # marked lost and not retransmitted since
    S_RTX = 4           # retransmitted at least once: its delivery may be the original's
    from ..wire.tcp import ACK, FIN, PSH, SYN
    from .bits import B_ACK_NOW, B_CWLTD, B_NAGLE, B_PENDING, B_RECOVERY, B_SACK, B_TS, B_WS, M
    from .consts import ESTABLISHED, LAST_ACK, SYN_SENT


def flush_pending(L, pending, deferred, now):
    """Output for the layer's pending connections and those deferred last turn
    (TcpLayer.flush): first connections with no data to send (ACKs, FINs, window updates),
    then short responses (up to 4 segments each), then bulk senders, round robin: those
    deferred last turn, then fresh ones, at most ``L.tx_burst`` frames in all; whoever the
    budget cuts short waits in ``L._deferred``, the one it cut behind the ones it did not
    reach, so no sender starves."""
    burst = L.tx_burst
    if burst <= 0:
        for conn in pending:
            conn.bits &= ~B_PENDING
            if conn.state:
                output(conn, now)
        return
    bulk = []
    short = []
    for conn in pending:
        conn.bits &= ~B_PENDING
        if conn.state:
            unsent = conn.sbuf_seq + len(conn.sndbuf) - conn.snd_nxt
            if unsent <= 0:
                output(conn, now)
            elif unsent <= conn.mss << 2:
                short.append(conn)
            else:
                bulk.append(conn)
    for conn in short:
        output(conn, now)
    if deferred:
        for conn in deferred:
            conn.bits &= ~B_PENDING
        bulk = deferred + bulk if bulk else deferred
    if not bulk:
        return
    cut = None
    L.tx_left = burst
    try:
        for conn in bulk:
            if not conn.state:
                continue
            if L.tx_left > 0:
                output(conn, now)
                if L.tx_left > 0:
                    continue
                cut = conn
            elif not conn.bits & B_PENDING:
                conn.bits |= B_PENDING
                L._deferred.append(conn)
    finally:
        L.tx_left = _UNBOUNDED
    if cut is not None and not cut.bits & B_PENDING and cut.state:
        cut.bits |= B_PENDING
        L._deferred.append(cut)


def output(self, now, force=False):
    """Send what the windows allow, plus a pending ACK (RFC 9293 §3.8.6, RFC 5681)."""
    st = self.state
    sent = False
    if ESTABLISHED <= st <= LAST_ACK:
        buf = self.sndbuf
        base = self.sbuf_seq
        end = base + len(buf)
        nxt = self.snd_nxt
        fs = self.fin_seq
        if nxt < end or (fs is not None and nxt == fs):
            L = self.layer
            una = self.snd_una
            mss = self.mss
            if self.bits & B_SACK and (self.ooo is not None or self.dsack_tx is not None
                                       or self.ooo_fin is not None):
                # the SACK blocks _tx adds take room from the data, as Linux's
                # tcp_current_mss: a full-sized segment with them would exceed the path MTU
                mss -= 4 + 8 * (3 if self.bits & B_TS else 4)
            if una == self.snd_max and self.last_send and now - self.last_send > self.rto:
                # restart after idle (RFC 5681 §4.1): the path may have changed
                iw = min(L.initial_window * mss, max(2 * mss, 14600))
                if self.cwnd > iw:
                    self.cwnd = iw
                self.epoch = None            # CUBIC: a new growth epoch after idle
            if self.lost_out:
                self._rtx_lost(now)          # what RACK marked lost goes before new data
            wnd = self.snd_wnd
            cw = self.cwnd
            if self.bits & B_SACK and (self.sacked_out or self.lost_out or self.bits & B_RECOVERY):
                # what is in flight is the pipe, not all above SND.UNA (RFC 6675 §5, as
                # Linux's in_flight): new data while pipe < cwnd, within the peer's window
                edge = nxt + cw - self._pipe()
                if edge > una + wnd:
                    edge = una + wnd
            else:
                edge = una + (wnd if wnd < cw else cw)
            # GSO frames as large as the windows allow, not a fraction of cwnd as Linux's
            # TSO autosizing cuts them: our cost is per frame, so fewer, larger frames win
            # even when a loss takes a whole frame.
            maxseg = L.gso_max if L.gso else mss
            nagle = self.bits & B_NAGLE
            sack_on = self.bits & B_SACK
            # segments are cut from a view of the send buffer: one copy (into the
            # segment) instead of two; released before anything can resize the buffer
            view = memoryview(buf)
            try:
                while nxt < end:
                    n = end - nxt
                    usable = edge - nxt
                    if n > usable:
                        if usable <= 0:
                            break
                        n = usable
                        if n < mss and not force and n < self.max_sndwnd >> 1:
                            break        # sender SWS avoidance: wait for a useful window
                    if n > maxseg:
                        n = maxseg - maxseg % mss if maxseg > mss else maxseg
                    elif n < mss and nagle and nxt > una and nxt + n == end and not force:
                        break            # Nagle: one small segment in flight at a time
                    off = nxt - base
                    f = ACK
                    if nxt + n == end:
                        f = ACK | PSH
                        if fs is not None:
                            f = ACK | PSH | FIN
                    if self.rtt_seq is None and nxt >= self.snd_max and not self.bits & B_TS:
                        self.rtt_seq = nxt + n
                        self.rtt_time = now
                    if L.tx_left <= 0:
                        break            # this turn's data budget is spent (flush_pending)
                    L.tx_left -= 1
                    _tx(self, f, nxt, view[off:off + n])
                    if sack_on:
                        _txq_add(self, nxt, nxt + n + (f & FIN), now)
                        if self.bits & B_RECOVERY:
                            self.prr_out += n
                    nxt += n
                    if f & FIN:
                        nxt += 1
                    sent = True
                    if force:
                        break
            finally:
                view.release()
            # cwnd validation (RFC 7661, simplified): the window grows only while in use
            if nxt < end and cw <= wnd and edge - nxt < mss:
                self.bits |= B_CWLTD
            elif nxt >= end and 2 * (self.snd_max - una) < cw:
                self.bits &= ~B_CWLTD
            if fs is not None and nxt == fs:
                _tx(self, ACK | FIN, nxt)
                if sack_on:
                    _txq_add(self, nxt, nxt + 1, now)
                nxt += 1
                sent = True
            self.snd_nxt = nxt
            if nxt > self.snd_max:
                self.snd_max = nxt
            if sent:
                self.last_send = now
                self.backoff = 0
                if self.t_rtx is None:
                    self._arm_rtx(now)
            elif self.t_rtx is None and self.snd_max == una and nxt < end and L.tx_left > 0:
                # nothing in flight and nothing sendable: persist timer
                t = self.rto * (1 << min(self.backoff, 12))
                self.t_rtx = now + (t if t < L.max_rto else L.max_rto)
                self._arm(self.t_rtx)
    if not sent and self.bits & B_ACK_NOW and st >= ESTABLISHED:
        _tx(self, ACK, self.snd_nxt)


def _txq_add(self, seq, end, now):
    """Record a data segment [seq, end) sent at now in the transmit queue (RFC 8985 §5.2)."""
    q = self.txq
    f = S_RTX if seq < self.snd_max else 0
    if q is None:
        self.txq = [[seq, end, now, f]]
        return
    if q[-1][1] > seq:
        # sending from below what was sent (go back N after an RTO or a smaller MTU):
        # the entries from seq on describe transmissions superseded by this one
        while q and q[-1][0] >= seq:
            q.pop()
        if q and q[-1][1] > seq:
            q[-1][1] = seq
        sacked = lost = 0
        for x in q:
            if x[3] & S_SACKED:
                sacked += x[1] - x[0]
            elif x[3] & S_LOST:
                lost += x[1] - x[0]
        self.sacked_out = sacked
        self.lost_out = lost
    q.append([seq, end, now, f])


def _send_syn(self):
    """SYN (SYN_SENT) or SYN-ACK (SYN_RECEIVED) with our options (RFC 9293 §3.7.1)."""
    L = self.layer
    now = L.now
    if self.state == SYN_SENT:
        flags = SYN
        tkey = SYN
    else:
        flags = SYN | ACK
        tkey = self.bits & (B_TS | B_WS | B_SACK)
    # the option bytes depend only on the layer's config and what was negotiated:
    # built once per kind, only the timestamp values are filled in per SYN
    t = L.syn_opts.get(tkey)
    if t is None:
        t = L.syn_opts[tkey] = _syn_template(L, tkey)
    opts, at = t
    if at:
        opts = opts[:at] + _ii_pack((int(now * 1000) + L.ts_off) & M, self.ts_recent) + opts[at + 8:]
    if self.retries == 0:
        self.rtt_seq = self.iss + 1
        self.rtt_time = now
    _tx(self, flags, self.iss, _EMPTY, opts)
    if self.t_rtx is None:
        self.t_rtx = now + self.rto
        self._arm(self.t_rtx)


def _syn_template(L, tkey):
    """(option bytes, offset of the TS values or 0) of our SYN (tkey == SYN) or of a
    SYN-ACK answering a SYN that negotiated the B_TS/B_WS/B_SACK bits in tkey."""
    cfg = L.config
    if tkey == SYN:
        ts, ws, sack = cfg.timestamps, cfg.window_scale, cfg.sack
    else:
        ts, ws, sack = tkey & B_TS, tkey & B_WS, tkey & B_SACK
    opts = build_options(mss=L.mss, ts=(0, 0) if ts else None, wscale=L.rcv_ws if ws else None,
                         sack_perm=bool(sack))
    return opts, (opts.index(b"\x08\x0a", 4) + 2 if ts else 0)   # after the 4-byte MSS


def _tx(self, flags, seq, data=_EMPTY, opts=None):
    """Build one segment from the connection's template and hand it to ip_output."""
    L = self.layer
    ack = self.rcv_nxt
    if flags & (ACK | SYN):
        bits = self.bits
        cap = L.rcvbuf
        free = cap - self.rcvlen
        if free < 0:
            free = 0
        adv = self.rcv_adv
        if flags & SYN:
            win = free if free < 65535 else 65535
            self.rcv_adv = ack + win
        else:
            edge = ack + free
            # receiver SWS avoidance (RFC 1122 §4.2.3.3): move the right edge only by a
            # useful amount; never move it left
            if edge > adv and (edge - adv >= self.rcv_mss or edge - adv >= cap >> 1):
                adv = edge
                lim = ack + (65535 << self.rcv_ws)
                if adv > lim:
                    adv = lim
                self.rcv_adv = adv
            win = (adv - ack) >> self.rcv_ws
            if win < 0:
                win = 0
        self.last_ack_sent = ack
        self.bits = bits & ~B_ACK_NOW
        self.unacked = 0
        self.t_delack = None
    else:
        win = 0
    dlen = len(data)
    seg_mss = self.mss                 # payload per segment of a GSO frame
    if opts is None:
        if self.bits & B_TS:
            tsval = (int(L.now * 1000) + L.ts_off) & M
            if cython.compiled:
                opts = _ts_opt(tsval, self.ts_recent)
            else:
                opts = _ts_pack(TS_PREFIX, tsval, self.ts_recent)
        else:
            opts = _EMPTY
        if ((self.ooo is not None or self.dsack_tx is not None or self.ooo_fin is not None)
                and self.bits & B_SACK and flags & ACK):
            nmax = 3 if opts else 4
            if dlen and not L.gso:
                # beside the data, as many blocks as fit in the peer's MSS (a retransmission
                # of a full segment has no room: the blocks wait for the next segment)
                room = (self.mss - dlen - 4) >> 3
                if room < nmax:
                    nmax = room
            if nmax > 0:
                sk = self._sack_option(nmax)
                opts += sk
                seg_mss -= len(sk)
    hl = 20 + len(opts)
    tl = hl + dlen
    seq &= M
    ack &= M
    key = self.key
    rport = key[1]
    lport = key[2]
    if L.csum_offload or (dlen > seg_mss and L.gso):
        s = self.psum + tl
        csum = (s & 0xFFFF) + (s >> 16)
        if dlen > seg_mss and L.gso:
            vh = vnet.gso_tcpv4_hdr(34 + hl, seg_mss, 34)
        else:
            vh = L.vh_partial
    else:
        s = (self.psum + tl + rport + lport + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16)
             + (ack & 0xFFFF) + ((hl << 10) | flags) + win)
        if opts:
            s += ones_sum(opts)
        if dlen:
            s += ones_sum(data)
        s %= 0xFFFF
        csum = (~s & 0xFFFF) if s else 0
        vh = vnet.PLAIN
    L.counters["tcp.tx"] += 1
    if cython.compiled:
        seg = _segment(lport, rport, seq, ack, hl, flags, win, csum, opts, data)
    else:
        seg = _pack(lport, rport, seq, ack, hl << 2, flags, win, csum, 0) + opts + data
    ip4 = L.ip4
    if ip4 is not None:         # the stack's own IPv4 layer: a C call when compiled
        ip4.output(key[0], 6, seg, vh)
    else:
        L.ip_output(key[0], 6, seg, vh)


def _ts_opt(tsval, tsecr):
    """Compiled only: NOP, NOP, timestamps (RFC 7323), as ``_ts_pack(TS_PREFIX, ...)``."""
    opt = PyBytes_FromStringAndSize(cython.NULL, 12)
    q = cython.cast(cython.p_uchar, PyBytes_AS_STRING(opt))
    q[0] = 1
    q[1] = 1
    q[2] = 8
    q[3] = 10
    _put32(q + 4, tsval)
    _put32(q + 8, tsecr)
    return opt


def _segment(lport, rport, seq, ack, hl, flags, win, csum, opts, data):
    """Compiled only: the header, ``opts`` and ``data`` written into one new bytes (what
    ``_pack(...) + opts + data`` builds, without its two intermediate objects)."""
    olen = len(opts)
    op = opts
    if type(data) is bytes:
        dlen = len(data)
        seg = PyBytes_FromStringAndSize(cython.NULL, 20 + olen + dlen)
        q = cython.cast(cython.p_uchar, PyBytes_AS_STRING(seg))
        if dlen:
            memcpy(q + 20 + olen, PyBytes_AS_STRING(data), dlen)
    else:                       # a memoryview of the send buffer
        PyObject_GetBuffer(data, cython.address(pb), PyBUF_SIMPLE)
        try:
            seg = PyBytes_FromStringAndSize(cython.NULL, 20 + olen + pb.len)
            q = cython.cast(cython.p_uchar, PyBytes_AS_STRING(seg))
            memcpy(q + 20 + olen, pb.buf, pb.len)
        finally:
            PyBuffer_Release(cython.address(pb))
    q[0] = lport >> 8
    q[1] = lport & 0xFF
    q[2] = rport >> 8
    q[3] = rport & 0xFF
    _put32(q + 4, seq)
    _put32(q + 8, ack)
    q[12] = hl << 2
    q[13] = flags
    q[14] = win >> 8
    q[15] = win & 0xFF
    q[16] = csum >> 8
    q[17] = csum & 0xFF
    q[18] = 0
    q[19] = 0
    if olen:
        memcpy(q + 20, op, olen)
    return seg


def _put32(q, v):
    """Compiled only: ``v`` big-endian at ``q``."""
    q[0] = (v >> 24) & 0xFF
    q[1] = (v >> 16) & 0xFF
    q[2] = (v >> 8) & 0xFF
    q[3] = v & 0xFF
