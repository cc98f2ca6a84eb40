"""One TCP connection: the RFC 9293 state machine, its buffers, timers and congestion control.

Pure: the owning TcpLayer passes segment fields in (``process``), asks for output
(``output``) and fires timers (``on_timer``); ``now`` is the layer's latest passed-in
clock. Nothing here reads a clock or touches a socket.

Sequence numbers are kept *unwrapped* (Python ints that keep growing past 2**32):
every incoming 32-bit number is unwrapped once against the nearest reference
(rcv_nxt for SEG.SEQ, snd_una for SEG.ACK), after which all comparisons are plain
integer comparisons; numbers are masked with 0xFFFFFFFF only when written out.
"""
import struct
from heapq import heappush

from ...nic import vnet
from ..checksum import ones_sum
from ..wire.tcp import ACK, FIN, PSH, RST, SYN, TCP_HDR, TS_PREFIX, build_options, parse_options
from .consts import (CLOSE_WAIT, CLOSED, CLOSING, ESTABLISHED, EV_ACCEPT, EV_CLOSED, EV_CONNECTED,
                     EV_EOF, EV_ERROR, EV_READABLE, EV_RESET, EV_WRITABLE, FIN_WAIT_1, FIN_WAIT_2,
                     LAST_ACK, STATE_NAMES, SYN_RECEIVED, SYN_SENT, TIME_WAIT, ConnectionClosed)

M = 0xFFFFFFFF
HALF = 0x80000000
WRAP = 0x100000000

_pack = TCP_HDR.pack
_ts_pack = struct.Struct("!4sII").pack
_ii_unpack = struct.Struct("!II").unpack_from
_ii_pack = struct.Struct("!II").pack

# Connection.bits
B_PENDING = 0x1      # queued in layer._pending for output
B_ACK_NOW = 0x2      # an ACK must go out at the next output
B_RD_EV = 0x4        # EV_READABLE queued and not yet followed by recv()
B_WANT_WR = 0x8      # send() was short: EV_WRITABLE when the buffer drains
B_APP_CLOSED = 0x10  # close() called: discard further data, no more data events
B_PASSIVE = 0x20     # created by a listener
B_TS = 0x40          # timestamps negotiated
B_DONE = 0x80        # final event (CLOSED/RESET/ERROR) delivered, or aborted by the app
B_RECOVERY = 0x100   # NewReno fast recovery
B_KA = 0x200         # keep-alive on
B_NAGLE = 0x400      # Nagle on
B_WS = 0x800         # window scaling negotiated (peer sent WS)
B_EOF = 0x1000       # peer FIN received
B_ESTAB = 0x2000     # reached ESTABLISHED at least once
B_SACK = 0x4000      # SACK negotiated (both sent SACK-permitted)
B_PTO = 0x8000       # t_rtx is a tail-loss-probe timeout, not the RTO
B_TLP = 0x10000      # a tail loss probe is out, not yet answered

_EMPTY = b""


class Connection:
    __slots__ = (
        "layer", "state", "key", "user", "error", "listener", "bits", "psum",
        "iss", "irs",
        "snd_una", "snd_nxt", "snd_max", "snd_wnd", "max_sndwnd", "snd_wl1", "snd_wl2",
        "sbuf_seq", "sndbuf", "fin_seq",
        "rcv_nxt", "rcv_adv", "rcvbuf", "ooo", "ooo_fin", "last_ack_sent", "unacked",
        "mss", "rcv_mss", "snd_ws", "rcv_ws", "ts_recent",
        "srtt", "rttvar", "rto", "rtt_seq", "rtt_time", "retries", "backoff",
        "cwnd", "ssthresh", "dupacks", "recover", "ca_acc", "last_send",
        "t_rtx", "t_delack", "t_ka", "heap_at",
        "ka_idle", "ka_intvl", "ka_cnt", "ka_probes",
        "scoreboard", "rtx_high", "sack_last",
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
        self.sndbuf = bytearray()
        self.fin_seq = None                 # sequence number of our FIN once shutdown() was called
        self.rcv_nxt = 0
        self.rcv_adv = 0                    # right edge of the window we advertised
        self.rcvbuf = bytearray()
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
        return len(self.rcvbuf)

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
        buf += data
        L = self.layer
        if not self.bits & B_PENDING:
            self.bits |= B_PENDING
            L._pending.append(self)
        return n

    def recv(self, max: int = -1) -> bytes:
        """Take up to max bytes (all with -1) from the receive buffer."""
        buf = self.rcvbuf
        self.bits &= ~B_RD_EV
        if not buf:
            return _EMPTY
        if max < 0 or max >= len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:max])
            del buf[:max]
        # Window update (RFC 9293 §3.8.6.2.2): tell the peer when draining opened the window
        # by a useful amount and the window it knows about has become small.
        st = self.state
        if ESTABLISHED <= st <= FIN_WAIT_2:
            cap = self.layer.config.rcvbuf
            free = cap - len(buf)
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
        if self.rcvbuf or self.ooo:
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
            if bits & B_TS:
                if doff - ooff == 12 and buf[ooff:ooff + 4] == TS_PREFIX:
                    tsval, tsecr = _ii_unpack(buf, ooff + 4)
                    fast = (tsval - self.ts_recent) & M < HALF
                else:
                    fast = False
            else:
                fast = doff == ooff
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
                        # slicing copies once more, but beats a memoryview below ~1 KB
                        self.rcvbuf += buf[doff:dend] if dlen < 1024 else memoryview(buf)[doff:dend]
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
            if self.cwnd < self.ssthresh:
                self.cwnd += acked if acked < 2 * mss else 2 * mss   # slow start, ABC L=2 (RFC 3465)
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

    def _dupack(self):
        L = self.layer
        mss = self.mss
        if self.bits & B_RECOVERY:
            if self.bits & B_SACK:
                self._sack_rtx()
            else:
                self.cwnd += mss             # inflate (RFC 6582 §3.2 step 5)
            L._want_output(self)
            return
        self.dupacks += 1
        if self.dupacks >= 3 and self.snd_una >= self.recover:
            self._enter_recovery()

    def _enter_recovery(self):
        """Fast retransmit (RFC 5681 §3.2); NewReno (RFC 6582 §3.2 step 2) or, with SACK,
        a conservative RFC 6675 recovery that retransmits the holes while pipe < cwnd."""
        L = self.layer
        mss = self.mss
        L.counters["tcp.fast_retransmits"] += 1
        self.ssthresh = max((self.snd_max - self.snd_una) // 2, 2 * mss)
        self.recover = self.snd_max
        self.bits |= B_RECOVERY
        self.rtt_seq = None
        self.dupacks = 3
        if self.bits & B_SACK:
            self.cwnd = self.ssthresh
            self.rtx_high = self.snd_una
            if not self._sack_rtx():
                self._retransmit_head()      # nothing SACKed yet: the head is the hole
                self.rtx_high = self.snd_una + self.mss
        else:
            self._retransmit_head()
            self.cwnd = self.ssthresh + 3 * mss
        L._want_output(self)

    def _sack_loss_check(self):
        """RFC 6675 IsLost(snd_una): 3 segments' worth SACKed above the head; or a tail loss
        probe was answered with a SACK of the flight's end, so the holes before it are lost
        (RFC 8985 §7.4, without RACK's time-based reordering window)."""
        sb = self.scoreboard
        if self.snd_una >= self.recover and (sum(e - s for s, e in sb) >= 3 * self.mss
                                             or (self.bits & B_TLP and sb[-1][1] >= self.snd_max)):
            self.bits &= ~B_TLP
            self._enter_recovery()

    def _sack_update(self, blocks, ack):
        """Merge the peer's SACK blocks (RFC 2018) into the scoreboard."""
        sb = self.scoreboard
        if sb is None:
            sb = []
        smax = self.snd_max
        changed = False
        for left, right in blocks:
            d = (left - ack) & M
            if d >= HALF or d == 0:
                continue                     # at or below the cumulative ACK (or D-SACK)
            s = ack + d
            e = s + ((right - left) & M)
            if e > smax or e <= s:
                continue
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
        pipe = self._pipe()
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
                    self._tx(ACK, pos, buf[off:off + n])
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
        self._tx(flags, una, self.sndbuf[off:off + n] if n > 0 else _EMPTY)

    def _in_data(self, buf, doff, dend, dlen, d, fin, now):
        L = self.layer
        if d == 0:
            closed = self.bits & B_APP_CLOSED
            if dlen:
                if not closed:
                    self.rcvbuf += buf[doff:dend] if dlen < 1024 else memoryview(buf)[doff:dend]
                self.rcv_nxt += dlen
                self.unacked += dlen
                gap = self.ooo is not None
                if gap:
                    self._ooo_merge()
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
                    self.t_delack = now + L.config.delack
                    self._arm(self.t_delack)
            if fin:
                self._in_fin(now)
            elif self.ooo_fin is not None and self.ooo_fin == self.rcv_nxt:
                self.ooo_fin = None
                self._in_fin(now)
        else:
            # out of order: queue it and send a duplicate ACK at once (RFC 5681 §4.2)
            L.counters["tcp.rx_ooo"] += 1
            sseq = self.rcv_nxt + d
            self.sack_last = sseq
            if dlen:
                self._ooo_insert(sseq, bytes(buf[doff:dend]))
            if fin:
                self.ooo_fin = sseq + dlen
            self._tx(ACK, self.snd_nxt)

    def _ooo_insert(self, s, data):
        """Insert [s, s+len) keeping the queue sorted and non-overlapping (only new bytes kept)."""
        q = self.ooo
        if q is None:
            self.ooo = [[s, data]]
            return
        e = s + len(data)
        pos = s
        new = []
        for bs, bd in q:
            be = bs + len(bd)
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
        if new:
            if len(q) + len(new) > 256:      # bound the bookkeeping a hostile peer can cause
                self.layer.counters["drop.tcp.ooo_full"] += 1
                return
            q.extend(new)
            q.sort(key=_first)

    def _ooo_merge(self):
        q = self.ooo
        nxt = self.rcv_nxt
        closed = self.bits & B_APP_CLOSED
        start = nxt
        while q and q[0][0] <= nxt:
            bs, bd = q.pop(0)
            be = bs + len(bd)
            if be > nxt:
                if not closed:
                    self.rcvbuf += memoryview(bd)[nxt - bs:]
                nxt = be
        self.unacked += nxt - start
        self.rcv_nxt = nxt
        if not q:
            self.ooo = None

    def _in_fin(self, now):
        L = self.layer
        self.rcv_nxt += 1
        self.bits |= B_ACK_NOW | B_EOF
        L._want_output(self)
        if not self.bits & B_APP_CLOSED:
            L.events.append((EV_EOF, self))
        st = self.state
        if st == ESTABLISHED:
            self.state = CLOSE_WAIT
        elif st == FIN_WAIT_1:
            self.state = CLOSING         # simultaneous close (our FIN is not acked yet)
        elif st == FIN_WAIT_2:
            self._time_wait(now)

    # ------------------------------------------------------------------ endings
    def _time_wait(self, now):
        L = self.layer
        if self.state != TIME_WAIT:
            self.state = TIME_WAIT
            self.t_delack = None
            self.t_ka = None
            self.ooo = None
            self.sndbuf = bytearray()
            self.bits &= ~B_RECOVERY
            self._final_event(EV_CLOSED)
        self.t_rtx = now + L.config.time_wait
        self._arm(self.t_rtx)

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

    # ------------------------------------------------------------------ timers
    def _arm(self, when):
        h = self.heap_at
        if h is None or when < h:
            L = self.layer
            self.heap_at = when
            L._tseq += 1
            heappush(L._timers, (when, L._tseq, self))

    def poll_at(self):
        t = self.t_rtx
        for x in (self.t_delack, self.t_ka):
            if x is not None and (t is None or x < t):
                t = x
        return t

    def on_timer(self, now):
        t = self.t_delack
        if t is not None and t <= now:
            self.t_delack = None
            self.bits |= B_ACK_NOW
            self.layer._want_output(self)
        t = self.t_rtx
        if t is not None and t <= now:
            self.t_rtx = None
            self._rtx_timeout(now)
        t = self.t_ka
        if t is not None and t <= now and self.state != CLOSED:
            self.t_ka = None
            self._ka_timeout(now)

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
                self._tail_probe(now)
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
                self._send_syn()
                return
            mss = self.mss
            if self.retries == 1:            # RFC 5681 eq. 4, once per loss episode
                self.ssthresh = max((self.snd_max - una) // 2, 2 * mss)
            self.cwnd = mss
            self.ca_acc = 0
            self.dupacks = 0
            self.bits &= ~B_RECOVERY
            self.recover = self.snd_max      # RFC 6582 §4.1: no fast retransmit on old dupacks
            self.scoreboard = None           # start over: go back N from snd_una
            self.bits &= ~B_TLP
            self.snd_nxt = una               # go back N
            L.counters["tcp.retransmits"] += 1
            self.output(now)
        elif self.sbuf_seq + len(self.sndbuf) > self.snd_nxt and ESTABLISHED <= st <= LAST_ACK:
            if self.snd_wnd == 0:
                # persist: a zero-window probe (seq una-1, no data) makes the peer ACK its window
                self.retries += 1
                if self.retries > cfg.max_retries:
                    self._fail("zero window probe timed out")
                    return
                L.counters["tcp.zero_window_probes"] += 1
                self._tx(ACK, una - 1)
                self.backoff += 1
                t = self.rto * (1 << min(self.backoff, 12))
                self.t_rtx = now + (t if t < cfg.max_rto else cfg.max_rto)
                self._arm(self.t_rtx)
            else:
                self.output(now, force=True)  # sender SWS override timeout (RFC 9293 §3.8.6.2.1)

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
        self._tx(ACK, self.snd_una - 1)
        self.t_ka = now + self.ka_intvl
        self._arm(self.t_ka)

    # ------------------------------------------------------------------ output
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
                if una == self.snd_max and self.last_send and now - self.last_send > self.rto:
                    # restart after idle (RFC 5681 §4.1): the path may have changed
                    iw = min(L.config.initial_window * mss, max(2 * mss, 14600))
                    if self.cwnd > iw:
                        self.cwnd = iw
                wnd = self.snd_wnd
                cw = self.cwnd
                edge = una + (wnd if wnd < cw else cw)
                if self.bits & B_RECOVERY and self.bits & B_SACK:
                    e2 = nxt + cw - self._pipe()     # RFC 6675: new data while pipe < cwnd
                    if e2 < edge:
                        edge = e2
                # GSO frames as large as the windows allow. (Sizing them to a fraction of cwnd,
                # as Linux's TSO autosizing does, was measured 2-4x slower under the
                # fault-injection test, which loses whole frames.)
                maxseg = L.gso_max if L.gso else mss
                nagle = self.bits & B_NAGLE
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
                        self._tx(f, nxt, view[off:off + n])
                        nxt += n
                        if f & FIN:
                            nxt += 1
                        sent = True
                        if force:
                            break
                finally:
                    view.release()
                if fs is not None and nxt == fs:
                    self._tx(ACK | FIN, nxt)
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
                elif self.t_rtx is None and self.snd_max == una and nxt < end:
                    # nothing in flight and nothing sendable: persist timer
                    t = self.rto * (1 << min(self.backoff, 12))
                    self.t_rtx = now + (t if t < L.config.max_rto else L.config.max_rto)
                    self._arm(self.t_rtx)
        if not sent and self.bits & B_ACK_NOW and st >= ESTABLISHED:
            self._tx(ACK, self.snd_nxt)

    def _send_syn(self):
        """SYN (SYN_SENT) or SYN-ACK (SYN_RECEIVED) with our options (RFC 9293 §3.7.1)."""
        L = self.layer
        cfg = L.config
        now = L.now
        ts = ((int(now * 1000) + L.ts_off) & M, self.ts_recent) if cfg.timestamps else None
        if self.state == SYN_SENT:
            opts = build_options(mss=L.mss, ts=ts, wscale=L.rcv_ws if cfg.window_scale else None,
                                 sack_perm=cfg.sack)
            flags = SYN
        else:
            opts = build_options(mss=L.mss, ts=ts if self.bits & B_TS else None,
                                 wscale=L.rcv_ws if self.bits & B_WS else None,
                                 sack_perm=bool(self.bits & B_SACK))
            flags = SYN | ACK
        if self.retries == 0:
            self.rtt_seq = self.iss + 1
            self.rtt_time = now
        self._tx(flags, self.iss, _EMPTY, opts)
        if self.t_rtx is None:
            self.t_rtx = now + self.rto
            self._arm(self.t_rtx)

    def _tx(self, flags, seq, data=_EMPTY, opts=None):
        """Build one segment from the connection's template and hand it to ip_output."""
        L = self.layer
        ack = self.rcv_nxt
        if flags & (ACK | SYN):
            bits = self.bits
            cap = L.rcvbuf
            free = cap - len(self.rcvbuf)
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
        if opts is None:
            if self.bits & B_TS:
                opts = _ts_pack(TS_PREFIX, (int(L.now * 1000) + L.ts_off) & M, self.ts_recent)
            else:
                opts = _EMPTY
            if self.ooo is not None and self.bits & B_SACK and flags & ACK:
                opts += self._sack_option(3 if opts else 4)
        hl = 20 + len(opts)
        dlen = len(data)
        tl = hl + dlen
        seq &= M
        ack &= M
        key = self.key
        if L.csum_offload or (dlen > self.mss and L.gso):
            s = self.psum + tl
            csum = (s & 0xFFFF) + (s >> 16)
            if dlen > self.mss and L.gso:
                vh = vnet.gso_tcpv4_hdr(34 + hl, self.mss, 34)
            else:
                vh = L.vh_partial
        else:
            s = (self.psum + tl + key[1] + key[2] + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16)
                 + (ack & 0xFFFF) + ((hl << 10) | flags) + win)
            if opts:
                s += ones_sum(opts)
            if dlen:
                s += ones_sum(data)
            s %= 0xFFFF
            csum = (~s & 0xFFFF) if s else 0
            vh = vnet.PLAIN
        L.counters["tcp.tx"] += 1
        L.ip_output(key[0], 6, _pack(key[2], key[1], seq, ack, hl << 2, flags, win, csum, 0)
                    + opts + data, vh)

    def _arm_rtx(self, now):
        """Arm the retransmission timer, or the shorter tail-loss-probe timer (RFC 8985 §7:
        PTO = 2*SRTT, at least 10 ms) when SACK can turn the probe's answer into fast
        recovery; a lone segment is left to the RTO (the peer may delay its ACK)."""
        t = now + self.rto
        bits = self.bits & ~B_PTO
        srtt = self.srtt
        if (srtt is not None and bits & B_SACK and not bits & (B_RECOVERY | B_TLP)
                and self.snd_max - self.snd_una > self.mss):
            pto = 2 * srtt
            if pto < 0.01:
                pto = 0.01
            if now + pto < t:
                t = now + pto
                bits |= B_PTO
        self.bits = bits
        self.t_rtx = t
        self._arm(t)

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
            self._tx(flags, seq, self.sndbuf[off:off + hi - seq])
        self.t_rtx = now + self.rto
        self._arm(self.t_rtx)

    def _sack_option(self, nmax):
        """SACK option for our out-of-order queue (RFC 2018 §4): the block holding the latest
        arrival first, then the others from the highest down."""
        blocks = []
        for s, d in self.ooo:
            e = s + len(d)
            if blocks and blocks[-1][1] == s:
                blocks[-1][1] = e
            else:
                blocks.append([s, e])
        last = self.sack_last
        first = None
        for b in blocks:
            if b[0] <= last < b[1]:
                first = b
                break
        out = [first] if first is not None else []
        for b in reversed(blocks):
            if b is not first:
                out.append(b)
        out = out[:nmax]
        o = bytearray(b"\x01\x01\x05")
        o.append(2 + 8 * len(out))
        for s, e in out:
            o += _ii_pack(s & M, e & M)
        return bytes(o)

    def _rtt_sample(self, r):
        """RFC 6298 §2."""
        cfg = self.layer.config
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        rto = self.srtt + max(0.001, 4 * self.rttvar)
        self.rto = cfg.min_rto if rto < cfg.min_rto else cfg.max_rto if rto > cfg.max_rto else rto


def _first(x):
    return x[0]
