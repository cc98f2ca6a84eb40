# cython: infer_types=True, annotation_typing=False
"""Segment arrival for a Connection (RFC 9293 §3.10.7): header prediction's fast paths, the
full processing, SYN_SENT, option negotiation, entering ESTABLISHED, RSTs, challenge ACKs
and the ACK processing (SND.UNA, RTT, congestion window, FIN states). Bound into the
Connection class as methods (connection.py); called as functions between the modules so
that the compiled modules call each other directly.

Sequence numbers are kept *unwrapped* (integers that keep growing past 2**32): every
incoming 32-bit number is unwrapped once against the nearest reference (rcv_nxt for
SEG.SEQ, snd_una for SEG.ACK), after which all comparisons are plain integer comparisons;
numbers are masked with 0xFFFFFFFF only when written out.
"""
try:
    import cython
except ImportError:         # plain Python on a machine without Cython
    from framework import _cython_shim as cython

from ..wire.tcp import TS_PREFIX, parse_options
from .bits import _EMPTY, _ii_unpack
from .output import _send_syn, _tx
from .receive import _in_data, _in_fin
from .cc import BbrState, _bbr_grow, _bbr_sample, _cubic_ack
from .recovery import (_dupack, _partial_undo, _rack_ack, _recovery_exit, _retransmit_head,
                       _rtt_sample, _sack_update, _txq_ack)

if not cython.compiled:        # compiled: C constants (bits.pxd, consts.pxd)
    from ..wire.tcp import ACK, FIN, RST, SYN
    from .bits import (B_ACK_NOW, B_APP_CLOSED, B_CWLTD, B_DONE, B_ESTAB, B_KA, B_PASSIVE, B_PENDING,
                       B_PTO, B_RD_EV, B_RECOVERY, B_SACK, B_TLP, B_TS, B_WANT_WR, B_WS, HALF, M,
                       WRAP)
    from .consts import (CLOSED, CLOSING, ESTABLISHED, EV_CLOSED, EV_CONNECTED, EV_READABLE,
                         EV_RESET, EV_WRITABLE,
                         FIN_WAIT_1, FIN_WAIT_2, LAST_ACK, SYN_RECEIVED, SYN_SENT, TIME_WAIT)


def passive_open(self, lst, seq, win, opts):
    """A new connection in SYN_RECEIVED for a listener's SYN: the SYN's fields and options,
    a place in the SYN queue and the flow table, our SYN-ACK."""
    L = self.layer
    self.bits |= B_PASSIVE
    self.listener = lst
    self.irs = seq
    self.rcv_nxt = seq + 1
    self.last_ack_sent = seq + 1
    _negotiate(self, opts, opts.tsval if opts is not None else None)
    self.snd_wnd = win
    self.max_sndwnd = win
    self.snd_wl1 = seq
    lst.syn_count += 1
    L.flows[self.key] = self
    L.counters["tcp.passive_opens"] += 1
    _send_syn(self)


def _usual_options(self, buf, ooff, doff):
    """For the fast paths: (usable, tsval, tsecr). Usable when the options are just the
    timestamp (or none, when timestamps are off) and PAWS accepts its value; anything
    else goes through the full processing."""
    if self.bits & B_TS:
        if doff - ooff != 12:
            return False, None, None
        if cython.compiled:
            # the option bytes read in place (no slice, no unpack)
            hb = buf if type(buf) is bytes or type(buf) is bytearray else bytes(buf)
            if ooff >= 0 and doff <= len(hb):
                b = hb
                if b[ooff] != 1 or b[ooff + 1] != 1 or b[ooff + 2] != 8 or b[ooff + 3] != 10:
                    return False, None, None
                tsval = ((cython.cast(cython.longlong, b[ooff + 4]) << 24) | (b[ooff + 5] << 16)
                         | (b[ooff + 6] << 8) | b[ooff + 7])
                tsecr = ((cython.cast(cython.longlong, b[ooff + 8]) << 24) | (b[ooff + 9] << 16)
                         | (b[ooff + 10] << 8) | b[ooff + 11])
                return (tsval - self.ts_recent) & M < HALF, tsval, tsecr   # PAWS
        if buf[ooff:ooff + 4] == TS_PREFIX:
            tsval, tsecr = _ii_unpack(buf, ooff + 4)
            return (tsval - self.ts_recent) & M < HALF, tsval, tsecr   # PAWS
        return False, None, None
    return doff == ooff, None, None


def process(self, flags, seq, ack, win, buf, ooff, doff, dend):
    """One segment for this connection: header fields plus buf[ooff:doff] options and
    buf[doff:dend] data (RFC 9293 §3.10.7)."""
    L = self.layer
    tsval = tsecr = None
    opts = None
    # Header prediction (Van Jacobson's fast path, as in BSD and Linux): an in-order
    # segment on an ESTABLISHED connection carrying only ACK/PSH, the usual options,
    # data that fits the window and an ACK that is new or carries data. Everything
    # else (and any doubt) falls through to the full RFC 9293 processing below.
    if self.state == ESTABLISHED and flags & 0x37 == ACK and seq == self.rcv_nxt & M:
        bits = self.bits
        fast, tsval, tsecr = _usual_options(self, buf, ooff, doff)
        rcv_nxt = self.rcv_nxt
        dlen = dend - doff
        una = self.snd_una
        da = (ack - una) & M
        if (fast and self.ooo is None and not bits & B_RECOVERY and dlen <= self.rcv_adv - rcv_nxt
                and da <= self.snd_max - una and (da or dlen)):
            now = L.now
            if tsval is not None and rcv_nxt <= self.last_ack_sent:
                self.ts_recent = tsval
            if da:
                sack = una + da
                _on_ack(self, sack, da, tsecr, now)
                self.snd_wl1 = rcv_nxt
                self.snd_wl2 = sack
                wnd = win << self.snd_ws
                self.snd_wnd = wnd
                if wnd > self.max_sndwnd:
                    self.max_sndwnd = wnd
            elif self.snd_wl1 < rcv_nxt or self.snd_wl2 <= una:
                wnd = win << self.snd_ws
                self.snd_wnd = wnd
                if wnd > self.max_sndwnd:
                    self.max_sndwnd = wnd
                self.snd_wl1 = rcv_nxt
                self.snd_wl2 = una
            bits = self.bits
            if self.sbuf_seq + len(self.sndbuf) > self.snd_nxt and not bits & B_PENDING:
                bits |= B_PENDING
                L._pending.append(self)
            if bits & B_KA:
                self.ka_probes = 0
                self.t_ka = now + self.ka_idle
                self._arm(self.t_ka)
            if dlen:
                if not bits & B_APP_CLOSED:
                    # a view of the frame (no copy) for bulk data; small payloads are
                    # sliced (for them a copy is cheaper than a view, and frees the frame)
                    self.rcvq.append(memoryview(buf)[doff:dend] if dlen >= 1024 and
                                     type(buf) is bytes else buf[doff:dend])
                    self.rcvlen += dlen
                    if not bits & B_RD_EV:
                        bits |= B_RD_EV
                        L.events.append((EV_READABLE, self))
                self.rcv_nxt = rcv_nxt + dlen
                un = self.unacked + dlen
                self.unacked = un
                if un >= 2 * self.mss:
                    bits |= B_ACK_NOW
                    if not bits & B_PENDING:
                        bits |= B_PENDING
                        L._pending.append(self)
                elif self.t_delack is None:
                    self.t_delack = t = now + L.delack
                    h = self.heap_at
                    if h is None or t < h:
                        self.bits = bits
                        self._arm(t)
                        return
            self.bits = bits
            return
        tsval = tsecr = None
    elif (self.state == SYN_RECEIVED and flags & 0x37 == ACK and dend == doff
          and seq == self.rcv_nxt & M and ack == (self.snd_una + 1) & M):
        # The handshake's final ACK, in order, acknowledging exactly our SYN, no data:
        # what the full processing below does for it, without the tests that cannot
        # apply (one per passive open, so short connections gain the most)
        fast, tsval, tsecr = _usual_options(self, buf, ooff, doff)
        if fast:
            if tsval is not None:
                self.ts_recent = tsval
            sack = self.snd_una + 1
            if _established(self, win, self.rcv_nxt, sack):
                _on_ack(self, sack, 1, tsecr, L.now)
            return
        tsval = tsecr = None
    elif (self.state == FIN_WAIT_1 and flags & 0x37 == ACK | FIN and dend == doff
          and seq == self.rcv_nxt & M and ack == self.snd_max & M
          and self.snd_max > self.fin_seq and self.rcv_adv > self.rcv_nxt
          and self.ooo is None and not self.bits & B_RECOVERY):
        # The peer's FIN, in order, without data, acknowledging all we sent, our FIN
        # included (how every server-closed short connection ends): what the full
        # processing below does for it, without the tests that cannot apply
        fast, tsval, tsecr = _usual_options(self, buf, ooff, doff)
        if fast:
            rcv_nxt = self.rcv_nxt
            if tsval is not None and rcv_nxt <= self.last_ack_sent:
                self.ts_recent = tsval
            now = L.now
            sack = self.snd_max
            _on_ack(self, sack, sack - self.snd_una, tsecr, now)   # -> FIN_WAIT_2
            if self.snd_wl1 < rcv_nxt or (self.snd_wl1 == rcv_nxt and self.snd_wl2 <= sack):
                wnd = win << self.snd_ws
                self.snd_wnd = wnd
                if wnd > self.max_sndwnd:
                    self.max_sndwnd = wnd
                self.snd_wl1 = rcv_nxt
                self.snd_wl2 = sack
            if self.bits & B_KA:
                self.ka_probes = 0
                self.t_ka = now + self.ka_idle
                self._arm(self.t_ka)
            _in_fin(self, now)                                      # -> TIME_WAIT
            return
        tsval = tsecr = None
    if doff > ooff:
        if doff - ooff == 12 and buf[ooff:ooff + 4] == TS_PREFIX:
            tsval, tsecr = _ii_unpack(buf, ooff + 4)
        else:
            opts = parse_options(buf, ooff, doff)
            tsval = opts.tsval
            tsecr = opts.tsecr
    st = self.state
    if st == SYN_SENT:
        return _in_syn_sent(self, flags, seq, ack, win, opts, tsval)
    bits = self.bits
    rcv_nxt = self.rcv_nxt
    d = (seq - rcv_nxt) & M
    if d >= HALF:
        d -= WRAP
    dlen = dend - doff
    seglen = dlen
    if flags & (SYN | FIN):
        seglen += (flags & SYN) // SYN + (flags & FIN)
    # PAWS (RFC 7323 §5.3): a timestamp older than ts_recent marks an old duplicate;
    # one tick older is let in, as Linux (TCP_PAWS_WINDOW): a segment reordered behind a
    # retransmission sent a millisecond later is no old duplicate, and dropping it costs
    # the peer one more retransmission
    if (bits & B_TS and tsval is not None and not flags & RST
            and (tsval - self.ts_recent) & M >= HALF):
        # ...except a reordered pure ACK at rcv_nxt: old ACKs carry no data PAWS could
        # let in, and dropping them starves fast recovery of its duplicate ACKs and SACKs
        # (Linux's tcp_disordered_ack makes the same exception)
        if (seglen or d) and (self.ts_recent - tsval) & M > 1:
            L.counters["drop.tcp.paws"] += 1
            _tx(self, ACK, self.snd_nxt)
            return
        tsval = None                     # accepted, but it must not move ts_recent
    if flags & SYN and d == -1 and st == SYN_RECEIVED:
        if flags & ACK and not bits & B_PASSIVE:
            # simultaneous open (RFC 9293 figure 8): the peer's SYN-ACK repeats its SYN;
            # its ACK completes our handshake
            flags &= ~SYN
            d = 0
            seglen -= 1
            seq = (seq + 1) & M
        else:
            # a retransmitted SYN: our SYN-ACK was lost. Echo this SYN's timestamp, as
            # Linux's tcp_check_req: echoing the first SYN's, the peer's first RTT sample
            # would include its SYN timeout (1 s), and its RTO become ~3 s
            if tsval is not None and bits & B_TS:
                self.ts_recent = tsval
            _send_syn(self)
            return
    # Acceptability test (RFC 9293 §3.10.7.4) against the window we advertised
    wnd = self.rcv_adv - rcv_nxt
    if seglen == 0:
        ok = d == 0 if wnd <= 0 else 0 <= d < wnd
    elif wnd <= 0:
        ok = False
    else:
        ok = 0 <= d < wnd or 0 <= d + seglen - 1 < wnd
    probe = False
    if not ok:
        if flags & RST:
            L.counters["drop.tcp.unacceptable"] += 1
            return
        if d == 0 and wnd <= 0 and flags & ACK and not flags & SYN:
            # zero window: the data is refused, but the ACK (and window) still count
            probe = True
            dlen = 0
            dend = doff
            flags &= ~FIN
        else:
            if st == TIME_WAIT and flags & FIN:
                self._time_wait(L.now)  # retransmitted FIN: re-ACK and restart 2MSL
            L.counters["drop.tcp.unacceptable"] += 1
            if dlen and d < 0 and d + dlen <= 0 and bits & B_SACK:
                self.dsack_tx = (rcv_nxt + d, rcv_nxt + d + dlen)   # a duplicate (RFC 2883)
            _tx(self, ACK, self.snd_nxt)
            return
    if tsval is not None and bits & B_TS and d <= self.last_ack_sent - rcv_nxt:
        self.ts_recent = tsval           # RFC 7323 §4.3
    # Trim to the window: old bytes at the front, bytes beyond the right edge
    if d < 0:
        cut = -d
        if dlen > 0 and bits & B_SACK:
            self.dsack_tx = (rcv_nxt + d, rcv_nxt if cut < dlen else rcv_nxt + d + dlen)
            self.bits |= B_ACK_NOW       # a D-SACK goes at once
            self._want_output()
        if flags & SYN:
            cut -= 1
            flags &= ~SYN
        doff += cut
        dlen -= cut
        d = 0
    if d + dlen > wnd:
        over = d + dlen - wnd
        dend -= over
        dlen -= over
        flags &= ~FIN
    sseq = rcv_nxt + d
    if flags & RST:
        if d == 0:
            _in_rst(self)
        else:
            _challenge_ack(self)       # RFC 5961 §3.2: in window but not exact
        return
    if flags & SYN:
        _challenge_ack(self)           # RFC 5961 §4
        return
    if not flags & ACK:
        return
    now = L.now
    una = self.snd_una
    da = (ack - una) & M
    if da >= HALF:
        da -= WRAP
    sack = una + da
    if st == SYN_RECEIVED:
        if da <= 0 or sack > self.snd_max:
            L._send_rst(self.key, ack, 0, RST)
            return
        if not _established(self, win, sseq, sack):
            return
        st = self.state
    if sack > self.snd_max:
        _tx(self, ACK, self.snd_nxt)      # ACK of data never sent (RFC 9293 / 5961 §5.2)
        return
    if da < 0 and -da > self.max_sndwnd:
        _tx(self, ACK, self.snd_nxt)      # too old to be a duplicate (RFC 5961 §5.2)
        return
    wscaled = win << self.snd_ws
    sacked = opts is not None and opts.sack and self.bits & B_SACK
    if sacked:
        self.delivered = _sack_update(self, opts.sack, sack, tsecr, now)
    if da > 0:
        _on_ack(self, sack, da, tsecr, now)
        st = self.state
        if st == CLOSED:
            return
    elif self.bits & B_SACK:
        if sacked and da == 0:
            if self.bbr is not None:
                _bbr_sample(self, self.delivered, now)
            _rack_ack(self, now)        # RACK: what the SACKs say is lost (RFC 8985 §6.2)
    elif (da == 0 and dlen == 0 and not flags & FIN and wscaled == self.snd_wnd
          and self.snd_max > una):
        _dupack(self)
    if self.snd_wl1 < sseq or (self.snd_wl1 == sseq and self.snd_wl2 <= sack):
        if wscaled != self.snd_wnd:
            self.snd_wnd = wscaled
            if wscaled > self.max_sndwnd:
                self.max_sndwnd = wscaled
        self.snd_wl1 = sseq
        self.snd_wl2 = sack
    if self.snd_max == self.snd_una:
        self.retries = 0                 # an answer to a zero-window probe
    if self.sbuf_seq + len(self.sndbuf) > self.snd_nxt or self.fin_seq == self.snd_nxt:
        self._want_output()
    if self.bits & B_KA:
        self.ka_probes = 0
        self.t_ka = now + self.ka_idle
        self._arm(self.t_ka)
    if dlen or flags & FIN:
        if ESTABLISHED <= st <= FIN_WAIT_2:
            _in_data(self, buf, doff, dend, dlen, d, flags & FIN, now)
    if probe:
        _tx(self, ACK, self.snd_nxt)


def _in_syn_sent(self, flags, seq, ack, win, opts, tsval):
    L = self.layer
    ack_ok = False
    if flags & ACK:
        da = (ack - self.iss) & M
        if da == 0 or self.iss + da > self.snd_max:
            if not flags & RST:
                L._send_rst(self.key, ack, 0, RST)
            return
        ack_ok = True
    if flags & RST:
        if ack_ok:
            self.error = "connection refused"
            L.counters["tcp.resets_rx"] += 1
            self._finish(EV_RESET)
        return
    if not flags & SYN:
        return
    self.irs = seq
    self.rcv_nxt = seq + 1
    self.rcv_adv = seq + 1
    self.last_ack_sent = seq + 1
    _negotiate(self, opts, tsval)
    self.snd_wnd = win                  # never scaled in a SYN
    self.max_sndwnd = win
    self.snd_wl1 = seq
    self.snd_wl2 = ack
    if ack_ok:
        if self.retries == 0 and self.rtt_seq is not None:
            _rtt_sample(self, L.now - self.rtt_time)
        self.rtt_seq = None
        self.snd_una = self.iss + 1
        self.t_rtx = None
        self.retries = 0
        self.bits |= B_ACK_NOW
        _established(self, win, seq, self.snd_una, syn=True)
    else:
        # simultaneous open (RFC 9293 §3.5, figure 7): SYN-ACK with our original ISS
        self.state = SYN_RECEIVED
        _send_syn(self)


def _negotiate(self, opts, tsval):
    """Options from the peer's SYN (RFC 9293 §3.7.1, RFC 7323)."""
    L = self.layer
    peer_mss = opts.mss if opts is not None and opts.mss else 536
    if L.timestamps and tsval is not None:
        self.bits |= B_TS
        self.ts_recent = tsval
        olen = 12
    else:
        olen = 0
    if L.sack and opts is not None and opts.sack_perm:
        self.bits |= B_SACK
    if L.window_scale and opts is not None and opts.wscale is not None:
        self.bits |= B_WS
        self.snd_ws = opts.wscale
        self.rcv_ws = L.rcv_ws
    mss = min(peer_mss, L.mss) - olen
    self.mss = mss
    self.rcv_mss = L.mss - olen
    self.cwnd = min(L.initial_window * mss, max(2 * mss, 14600))   # RFC 6928
    if L.config.cc == "bbr":
        self.bbr = BbrState(L.now)


def _established(self, win, sseq, sack, syn=False):
    """SYN_RECEIVED/SYN_SENT -> ESTABLISHED. False when a full accept queue refuses it."""
    L = self.layer
    lst = self.listener
    if self.bits & B_PASSIVE and not syn:
        if not L._accept_room(lst):
            L.counters["drop.tcp.accept_queue_full"] += 1
            return False            # stay in SYN_RECEIVED; the SYN-ACK timer retries
        lst.syn_count -= 1
    self.state = ESTABLISHED
    self.bits |= B_ESTAB
    if self.bits & B_TS:
        self.rtt_seq = None         # timestamps time every ACK: the SYN's number is moot
    if not syn:
        self.snd_wnd = win << self.snd_ws
        if self.snd_wnd > self.max_sndwnd:
            self.max_sndwnd = self.snd_wnd
        self.snd_wl1 = sseq
        self.snd_wl2 = sack
    if self.fin_seq is not None:
        self.state = FIN_WAIT_1     # shutdown() was called during the handshake
    if self.bits & B_KA:
        self.t_ka = L.now + self.ka_idle
        self._arm(self.t_ka)
    if self.bits & B_PASSIVE:
        L._accepted(self, lst)
    elif not self.bits & B_APP_CLOSED:
        L.events.append((EV_CONNECTED, self))
    self._want_output()
    return True


def _in_rst(self):
    L = self.layer
    L.counters["tcp.resets_rx"] += 1
    st = self.state
    if st == SYN_RECEIVED and self.bits & B_PASSIVE:
        self.bits |= B_DONE          # back to LISTEN: the app never saw it
        self._finish(None)
    elif st >= CLOSING:
        self._finish(EV_CLOSED)
    else:
        self.error = "connection refused" if st == SYN_RECEIVED else "connection reset by peer"
        self._finish(EV_RESET)


def _challenge_ack(self):
    if self.layer._challenge_ok():
        self.layer.counters["tcp.challenge_acks"] += 1
        _tx(self, ACK, self.snd_nxt)


def _on_ack(self, sack, acked, tsecr, now):
    """SND.UNA advances to sack (acked bytes of sequence space)."""
    L = self.layer
    if self.snd_una == self.iss:
        acked -= 1                       # the SYN is not data: no cwnd credit
    if self.error is not None:
        self.error = None                # something got through: forget an ICMP soft error (as Linux)
    self.snd_una = sack
    if sack > self.snd_nxt:
        self.snd_nxt = sack
    n = sack - self.sbuf_seq
    if n > 0:
        buf = self.sndbuf
        blen = len(buf)
        if n > blen:
            n = blen            # the rest is our FIN
        if n:
            if n == blen:
                self.sndbuf = _EMPTY    # an idle connection keeps no buffer
            else:
                del buf[:n]
            self.sbuf_seq += n
    # RTT: timestamps give a sample per ACK (RFC 7323 §4); otherwise one timed segment (Karn)
    if self.bits & B_TS:
        if tsecr:
            r = ((int(now * 1000) + L.ts_off - tsecr) & M)
            if r < HALF:
                _rtt_sample(self, r / 1000.0)
    elif self.rtt_seq is not None and sack >= self.rtt_seq:
        _rtt_sample(self, now - self.rtt_time)
        self.rtt_seq = None
    self.retries = 0
    mss = self.mss
    sb = self.scoreboard
    if sb is not None:
        while sb and sb[0][1] <= sack:
            del sb[0]
        if sb and sb[0][0] < sack:
            sb[0][0] = sack
        if not sb:
            self.scoreboard = sb = None
    if self.txq is not None:
        self.delivered += _txq_ack(self, sack, tsecr, now)
    bits = self.bits
    if self.bbr is not None:
        _bbr_sample(self, self.delivered if bits & B_SACK else acked, now)
    if bits & B_RECOVERY:
        if sack >= self.recover:
            if bits & B_SACK:
                _recovery_exit(self, tsecr)
            else:
                # full ACK: leave fast recovery (RFC 6582 §3.2 step 3, option 2)
                flight = self.snd_max - sack
                self.cwnd = min(self.ssthresh, max(flight, mss) + mss)
                self.bits &= ~B_RECOVERY
                self.dupacks = 0
        elif bits & B_SACK:
            self.bits &= ~B_TLP          # progress: the probe may fire again
            _partial_undo(self, tsecr)
        else:
            # partial ACK: retransmit the next hole, deflate by the amount acked (step 4)
            _retransmit_head(self)
            cw = self.cwnd - acked
            if acked >= mss:
                cw += mss
            self.cwnd = cw if cw > mss else mss
            if self.dupacks >= 0:
                self.dupacks = -1        # marks "first partial ACK seen": reset timer once
                self.t_rtx = now + self.rto
                self._arm(self.t_rtx)
    elif acked > 0:
        self.dupacks = 0
        if not bits & B_CWLTD and 2 * (self.snd_max - sack + acked) < self.cwnd:
            pass        # application-limited: a window not in use is not grown (RFC 7661)
        elif self.bbr is not None:
            _bbr_grow(self, acked)
        elif self.cwnd < self.ssthresh:
            self.cwnd += acked if acked < 2 * mss else 2 * mss   # slow start, ABC L=2 (RFC 3465)
        elif L.cubic:
            _cubic_ack(self, acked, now)
        else:
            self.ca_acc += acked
            if self.ca_acc >= self.cwnd:
                self.ca_acc -= self.cwnd
                self.cwnd += mss
    if self.bits & B_SACK:
        if self.sacked_out or self.lost_out or self.bits & B_RECOVERY:
            _rack_ack(self, now)
        else:
            self.delivered = 0
            self.t_reo = None
    if self.scoreboard is None:
        self.bits &= ~B_TLP
    if sack >= self.snd_max:
        self.t_rtx = None
        self.bits &= ~(B_PTO | B_TLP)
    elif not self.bits & B_RECOVERY or self.dupacks != -1 or self.bits & B_SACK:
        self._arm_rtx(now)               # RFC 6298 §5.3
    fs = self.fin_seq
    if fs is not None and sack > fs:
        st = self.state
        if st == FIN_WAIT_1:
            self.state = FIN_WAIT_2
            if self.bits & B_APP_CLOSED:
                self._fw2_timer()
        elif st == CLOSING:
            self._time_wait(now)
        elif st == LAST_ACK:
            self._finish(EV_CLOSED)
            return
    if self.bits & B_WANT_WR and len(self.sndbuf) <= L.lowat:
        self.bits &= ~B_WANT_WR
        if not self.bits & B_APP_CLOSED:
            L.events.append((EV_WRITABLE, self))
