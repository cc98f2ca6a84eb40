"""One TCP connection: the RFC 9293 state machine (this file: creation, the app API, segment
input, handshake, ACK processing, endings). The rest of the class lives in sibling modules
and is bound into it at the end of the class body: receive.py (reassembly, delayed ACK),
output.py (segmentation, header template), recovery.py (fast retransmit, NewReno, SACK,
tail loss probes, RTT), timers.py (RTO, persist, keep-alive, TIME_WAIT).

Pure: the owning TcpLayer passes segment fields in (``process``), asks for output
(``output``) and fires timers (``on_timer``); ``now`` is the layer's latest passed-in
clock. Nothing here reads a clock or touches a socket.

Sequence numbers are kept *unwrapped* (Python ints that keep growing past 2**32):
every incoming 32-bit number is unwrapped once against the nearest reference
(rcv_nxt for SEG.SEQ, snd_una for SEG.ACK), after which all comparisons are plain
integer comparisons; numbers are masked with 0xFFFFFFFF only when written out.
"""
from ..wire.tcp import ACK, FIN, RST, SYN, TS_PREFIX, parse_options
from .bits import (B_ACK_NOW, B_APP_CLOSED, B_CWLTD, B_DONE, B_ESTAB, B_KA, B_NAGLE, B_PASSIVE,
                   B_PENDING, B_PTO, B_RD_EV, B_RECOVERY, B_SACK, B_TLP, B_TS, B_WANT_WR, B_WS,
                   HALF, M, WRAP, _EMPTY, _ii_unpack)
from .consts import (CLOSED, CLOSE_WAIT, CLOSING, ConnectionClosed, ESTABLISHED, EV_CLOSED,
                     EV_CONNECTED, EV_ERROR, EV_READABLE, EV_RESET, EV_WRITABLE, FIN_WAIT_1,
                     FIN_WAIT_2, LAST_ACK, STATE_NAMES, SYN_RECEIVED, SYN_SENT, TIME_WAIT)


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
        "scoreboard", "rtx_high", "sack_last",
        "w_max", "k", "epoch", "w_est",
    )

    def __init__(self, layer, key, iss, state):
        cfg = layer.config
        self.layer = layer
        self.state = state
        self.key = key                      # (remote ip, remote port, local port)
        self.user = None
        self.error = None
        self.listener = None
        self.bits = B_NAGLE if cfg.nagle else 0
        self.psum = layer._psum(key[0])     # pseudo-header sum without the length
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
        self.rcv_mss = layer.mss
        self.snd_ws = 0
        self.rcv_ws = 0
        self.ts_recent = 0
        self.srtt = None
        self.rttvar = 0.0
        self.rto = cfg.initial_rto
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
        self.ka_idle = cfg.ka_idle
        self.ka_intvl = cfg.ka_intvl
        self.ka_cnt = cfg.ka_cnt
        self.ka_probes = 0
        self.scoreboard = None              # sender: SACKed ranges above snd_una, [[start, end], ...]
        self.rtx_high = 0                   # sender: highest sequence retransmitted in this recovery
        self.sack_last = 0                  # receiver: start of the latest out-of-order arrival
        self.w_max = 0                      # CUBIC: window before the last reduction (bytes)
        self.k = 0.0                        # CUBIC: time to get back to w_max (s)
        self.epoch = None                   # CUBIC: start of the current growth epoch
        self.w_est = 0.0                    # CUBIC: Reno-friendly estimate (bytes)
        if cfg.keepalive:
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
        return max(self.layer.config.sndbuf - len(self.sndbuf), 0)

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
        room = self.layer.config.sndbuf - len(buf)
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
            cap = self.layer.config.rcvbuf
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
        self.layer._want_output(self)

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

    # ------------------------------------------------------------------ input
    def _usual_options(self, buf, ooff, doff):
        """For the fast paths: (usable, tsval, tsecr). Usable when the options are just the
        timestamp (or none, when timestamps are off) and PAWS accepts its value; anything
        else goes through the full processing."""
        if self.bits & B_TS:
            if doff - ooff == 12 and buf[ooff:ooff + 4] == TS_PREFIX:
                tsval, tsecr = _ii_unpack(buf, ooff + 4)
                return (tsval - self.ts_recent) & M < HALF, tsval, tsecr   # PAWS
            return False, None, None
        return doff == ooff, None, None

    # ------------------------------------------------------------------ input
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
            fast, tsval, tsecr = self._usual_options(buf, ooff, doff)
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
                    self._on_ack(sack, da, tsecr, now)
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
            fast, tsval, tsecr = self._usual_options(buf, ooff, doff)
            if fast:
                if tsval is not None:
                    self.ts_recent = tsval
                sack = self.snd_una + 1
                if self._established(win, self.rcv_nxt, sack):
                    self._on_ack(sack, 1, tsecr, L.now)
                return
            tsval = tsecr = None
        elif (self.state == FIN_WAIT_1 and flags & 0x37 == ACK | FIN and dend == doff
              and seq == self.rcv_nxt & M and ack == self.snd_max & M
              and self.snd_max > self.fin_seq and self.rcv_adv > self.rcv_nxt
              and self.ooo is None and not self.bits & B_RECOVERY):
            # The peer's FIN, in order, without data, acknowledging all we sent, our FIN
            # included (how every server-closed short connection ends): what the full
            # processing below does for it, without the tests that cannot apply
            fast, tsval, tsecr = self._usual_options(buf, ooff, doff)
            if fast:
                rcv_nxt = self.rcv_nxt
                if tsval is not None and rcv_nxt <= self.last_ack_sent:
                    self.ts_recent = tsval
                now = L.now
                sack = self.snd_max
                self._on_ack(sack, sack - self.snd_una, tsecr, now)   # -> FIN_WAIT_2
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
                self._in_fin(now)                                      # -> TIME_WAIT
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
            return self._in_syn_sent(flags, seq, ack, win, opts, tsval)
        bits = self.bits
        rcv_nxt = self.rcv_nxt
        d = (seq - rcv_nxt) & M
        if d >= HALF:
            d -= WRAP
        dlen = dend - doff
        seglen = dlen
        if flags & (SYN | FIN):
            seglen += (flags & SYN) // SYN + (flags & FIN)
        # PAWS (RFC 7323 §5.3): a timestamp older than ts_recent marks an old duplicate
        if bits & B_TS and tsval is not None and not flags & RST and (tsval - self.ts_recent) & M >= HALF:
            # ...except a reordered pure ACK at rcv_nxt: old ACKs carry no data PAWS could
            # let in, and dropping them starves fast recovery of its duplicate ACKs and SACKs
            # (Linux's tcp_disordered_ack makes the same exception)
            if seglen or d:
                L.counters["drop.tcp.paws"] += 1
                self._tx(ACK, self.snd_nxt)
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
                self._send_syn()            # retransmitted SYN: our SYN-ACK was lost
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
                self._tx(ACK, self.snd_nxt)
                return
        if tsval is not None and bits & B_TS and d <= self.last_ack_sent - rcv_nxt:
            self.ts_recent = tsval           # RFC 7323 §4.3
        # Trim to the window: old bytes at the front, bytes beyond the right edge
        if d < 0:
            cut = -d
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
                self._in_rst()
            else:
                self._challenge_ack()       # RFC 5961 §3.2: in window but not exact
            return
        if flags & SYN:
            self._challenge_ack()           # RFC 5961 §4
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
            if not self._established(win, sseq, sack):
                return
            st = self.state
        if sack > self.snd_max:
            self._tx(ACK, self.snd_nxt)      # ACK of data never sent (RFC 9293 / 5961 §5.2)
            return
        if da < 0 and -da > self.max_sndwnd:
            self._tx(ACK, self.snd_nxt)      # too old to be a duplicate (RFC 5961 §5.2)
            return
        wscaled = win << self.snd_ws
        sacked = opts is not None and opts.sack and self.bits & B_SACK
        if sacked:
            self._sack_update(opts.sack, sack)
        if da > 0:
            self._on_ack(sack, da, tsecr, now)
            st = self.state
            if st == CLOSED:
                return
        elif (da == 0 and dlen == 0 and not flags & FIN and wscaled == self.snd_wnd
              and self.snd_max > una):
            self._dupack()
        elif sacked and self.scoreboard and da == 0 and self.bits & B_RECOVERY:
            self._sack_rtx()                 # new SACK info on an ACK that changed the window
        if sacked and self.scoreboard and not self.bits & B_RECOVERY:
            self._sack_loss_check()
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
            L._want_output(self)
        if self.bits & B_KA:
            self.ka_probes = 0
            self.t_ka = now + self.ka_idle
            self._arm(self.t_ka)
        if dlen or flags & FIN:
            if ESTABLISHED <= st <= FIN_WAIT_2:
                self._in_data(buf, doff, dend, dlen, d, flags & FIN, now)
        if probe:
            self._tx(ACK, self.snd_nxt)

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
        self._negotiate(opts, tsval)
        self.snd_wnd = win                  # never scaled in a SYN
        self.max_sndwnd = win
        self.snd_wl1 = seq
        self.snd_wl2 = ack
        if ack_ok:
            if self.retries == 0 and self.rtt_seq is not None:
                self._rtt_sample(L.now - self.rtt_time)
            self.rtt_seq = None
            self.snd_una = self.iss + 1
            self.t_rtx = None
            self.retries = 0
            self.bits |= B_ACK_NOW
            self._established(win, seq, self.snd_una, syn=True)
        else:
            # simultaneous open (RFC 9293 §3.5, figure 7): SYN-ACK with our original ISS
            self.state = SYN_RECEIVED
            self._send_syn()

    def _negotiate(self, opts, tsval):
        """Options from the peer's SYN (RFC 9293 §3.7.1, RFC 7323)."""
        L = self.layer
        cfg = L.config
        peer_mss = opts.mss if opts is not None and opts.mss else 536
        if cfg.timestamps and tsval is not None:
            self.bits |= B_TS
            self.ts_recent = tsval
            olen = 12
        else:
            olen = 0
        if cfg.sack and opts is not None and opts.sack_perm:
            self.bits |= B_SACK
        if cfg.window_scale and opts is not None and opts.wscale is not None:
            self.bits |= B_WS
            self.snd_ws = opts.wscale
            self.rcv_ws = L.rcv_ws
        mss = min(peer_mss, L.mss) - olen
        self.mss = mss
        self.rcv_mss = L.mss - olen
        self.cwnd = min(cfg.initial_window * mss, max(2 * mss, 14600))   # RFC 6928

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
            L._accepted(self)
        elif not self.bits & B_APP_CLOSED:
            L.events.append((EV_CONNECTED, self))
        L._want_output(self)
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
            self._tx(ACK, self.snd_nxt)

    def _on_ack(self, sack, acked, tsecr, now):
        """SND.UNA advances to sack (acked bytes of sequence space)."""
        L = self.layer
        if self.snd_una == self.iss:
            acked -= 1                       # the SYN is not data: no cwnd credit
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
                    self._rtt_sample(r / 1000.0)
        elif self.rtt_seq is not None and sack >= self.rtt_seq:
            self._rtt_sample(now - self.rtt_time)
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
        if self.bits & B_RECOVERY:
            if sack >= self.recover:
                # full ACK: leave fast recovery (RFC 6582 §3.2 step 3, option 2)
                flight = self.snd_max - sack
                self.cwnd = min(self.ssthresh, max(flight, mss) + mss)
                self.bits &= ~B_RECOVERY
                self.dupacks = 0
            elif self.bits & B_SACK:
                self.bits &= ~B_TLP          # progress: the recovery probe may fire again
                if self.rtx_high < sack:
                    self.rtx_high = sack
                self._sack_rtx()             # RFC 6675 §5: holes while pipe < cwnd
            else:
                # partial ACK: retransmit the next hole, deflate by the amount acked (step 4)
                self._retransmit_head()
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
            if not self.bits & B_CWLTD and 2 * (self.snd_max - sack + acked) < self.cwnd:
                pass        # application-limited: a window not in use is not grown (RFC 7661)
            elif self.cwnd < self.ssthresh:
                self.cwnd += acked if acked < 2 * mss else 2 * mss   # slow start, ABC L=2 (RFC 3465)
            elif L.cubic:
                self._cubic_ack(acked, now)
            else:
                self.ca_acc += acked
                if self.ca_acc >= self.cwnd:
                    self.ca_acc -= self.cwnd
                    self.cwnd += mss
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

    # ------------------------------------------------------------------ endings
    def _time_wait(self, now):
        """Enter TIME_WAIT: a small TimeWait object takes the 4-tuple for 2*MSL (timewait.py);
        this Connection leaves the flow table (it still sends the pending ACK of the FIN)."""
        L = self.layer
        if self.state == TIME_WAIT:
            return
        self.state = TIME_WAIT
        self.t_rtx = self.t_delack = self.t_ka = None
        self.heap_at = None
        self.ooo = None
        self.sndbuf = _EMPTY
        self.bits &= ~B_RECOVERY
        if L.flows.get(self.key) is self:
            if L.tw_count < L.config.max_time_wait:
                L.tw_count += 1
                L.flows[self.key] = TimeWait(self, now)
            else:
                L.counters["drop.tcp.time_wait_overflow"] += 1
                del L.flows[self.key]
        self._final_event(EV_CLOSED)

    def _fw2_timer(self):
        # an orphaned FIN_WAIT_2 (app closed) does not wait forever for the peer's FIN
        self.t_rtx = self.layer.now + self.layer.config.fin_wait2
        self._arm(self.t_rtx)

    def _final_event(self, ev):
        if ev is not None and not self.bits & B_DONE:
            self.layer.events.append((ev, self))
        self.bits |= B_DONE

    def _finish(self, ev):
        """Move to CLOSED, drop out of the flow table, deliver the final event."""
        self.state = CLOSED
        self.t_rtx = self.t_delack = self.t_ka = None
        self.heap_at = None
        self.layer._remove(self)
        self._final_event(ev)

    def _fail(self, reason, send_rst=True):
        if send_rst and SYN_RECEIVED <= self.state < TIME_WAIT:
            self._tx(RST | ACK, self.snd_nxt)
        self.error = reason
        self.layer.counters["tcp.timeouts"] += 1
        self._finish(EV_ERROR)

    # ------------------------------------------------------------------ the other parts
    # (methods defined in sibling modules, bound here: one class, small files)
    from .receive import _in_data, _ooo_insert, _ooo_merge, _in_fin, _sack_option
    from .recovery import (_dupack, _enter_recovery, _sack_loss_check, _sack_update, _pipe,
                           _sack_rtx, _retransmit_head, _arm_rtx, _tail_probe, _rtt_sample,
                           _on_loss, _cubic_ack, _recovery_probe)
    from .timers import _arm, poll_at, on_timer, _rtx_timeout, _ka_timeout
    from .output import output, _send_syn, _tx


from .timewait import TimeWait  # noqa: E402  (imports bits/consts only; no cycle)
