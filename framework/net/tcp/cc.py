# cython: infer_types=True, annotation_typing=False
"""Congestion control of a Connection: the multiplicative decrease at a congestion event
(NewReno, RFC 5681; CUBIC, RFC 9438) and CUBIC's window growth in congestion avoidance;
BBR's model of the path (cc="bbr": the delivery rate and the minimum RTT set the window, a
loss alone does not shrink it). Slow start and NewReno's additive increase are in
segments._on_ack."""
try:
    import cython
except ImportError:         # plain Python on a machine without Cython
    from framework import _cython_shim as cython

if not cython.compiled:        # compiled: C constants (bits.pxd)
    from .bits import B_CWLTD


CUBIC_C = 0.4
CUBIC_BETA = 0.7
CUBIC_ALPHA = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)   # Reno-friendly slope (RFC 9438 §4.3)

BBR_CWND_GAIN = 2.0        # cwnd = 2 x the estimated bandwidth-delay product (BBR v1)
BBR_BW_ROUNDS = 10         # the bandwidth estimate: the maximum of the last 10 rounds' rates
BBR_FULL_BW_GROWTH = 1.25  # startup ends after 3 cwnd-limited rounds grew the rate < 25%
BBR_FULL_BW_ROUNDS = 3
# RTT samples come from millisecond timestamps, so a LAN's minimum RTT reads 0: the model
# takes at least one tick (a larger window than the path needs, never a window of nothing)
BBR_MIN_RTT_FLOOR = 0.001


class BbrState:
    """BBR's path model of one connection (draft-ietf-ccwg-bbr, v1's core, without pacing:
    sending is clocked by ACKs, the window bounds the burst; no ProbeRTT: the minimum RTT is
    the connection's own, RACK's). A round's delivery rate is the bytes delivered
    (cumulatively or by SACK) over its duration."""
    __slots__ = ("round_start", "round_dlv", "round_end", "dlv", "bw", "samples", "full_bw",
                 "full_cnt", "filled")

    def __init__(self, now):
        self.round_start = now
        self.round_dlv = 0
        self.round_end = 0         # the round ends when snd_una reaches it
        self.dlv = 0
        self.bw = 0.0              # bytes per second, max-filtered
        self.samples = []
        self.full_bw = 0.0
        self.full_cnt = 0
        self.filled = False        # startup is over: the window follows the model


def _on_loss(self, flight):
    """Multiplicative decrease at a congestion event: the new ssthresh. NewReno halves the
    flight (RFC 5681 eq. 4); CUBIC keeps 70% of cwnd and remembers W_max (RFC 9438 §4.6-4.7)."""
    mss = self.mss
    b = self.bbr
    if b is not None:
        # BBR takes loss as no sign of congestion: recovery (PRR) holds the pipe at the
        # model's window, at least the current window while startup has not filled the pipe
        t = _bbr_target(self)
        cw = self.cwnd
        return t if b.filled or cw < t else cw
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


def _bbr_sample(self, delivered, now):
    """Every ACK: ``delivered`` bytes newly delivered (cumulatively or by SACK). A round
    ends when the data outstanding at its start is acknowledged (BBR's round counting, so
    a round is one real round trip whatever the RTT estimate says); its delivery rate goes
    into the bandwidth filter, and startup ends once three window-limited rounds grew the
    rate by less than 25%."""
    b = self.bbr
    b.dlv += delivered
    if self.snd_una < b.round_end:
        return
    dt = now - b.round_start
    if dt > 0.0 and b.round_end > 0:
        rate = (b.dlv - b.round_dlv) / dt
        q = b.samples
        q.append(rate)
        if len(q) > BBR_BW_ROUNDS:
            del q[0]
        bw = 0.0
        for r in q:
            if r > bw:
                bw = r
        b.bw = bw
        if not b.filled and self.bits & B_CWLTD:     # an app-limited round proves nothing
            if bw >= b.full_bw * BBR_FULL_BW_GROWTH:
                b.full_bw = bw
                b.full_cnt = 0
            else:
                b.full_cnt += 1
                if b.full_cnt >= BBR_FULL_BW_ROUNDS:
                    b.filled = True
    b.round_start = now
    b.round_dlv = b.dlv
    b.round_end = self.snd_max if self.snd_max > self.snd_una else self.snd_una + 1


def _bbr_target(self):
    """The model's window: BBR_CWND_GAIN x bandwidth x min RTT, plus 3 segments for ACKs
    that come in bunches, at least 4 segments."""
    b = self.bbr
    mss = self.mss
    t = 4 * mss
    rtt = self.min_rtt
    if rtt < 1e8:
        if rtt < BBR_MIN_RTT_FLOOR:
            rtt = BBR_MIN_RTT_FLOOR
        bdp = cython.cast(cython.longlong, BBR_CWND_GAIN * b.bw * rtt) + 3 * mss
        if bdp > t:
            t = bdp
    return t


def _bbr_grow(self, acked):
    """Outside recovery: startup doubles the window per round (slow start); once the pipe is
    full the window moves toward the model's (up by what was delivered, down at once)."""
    b = self.bbr
    cw = self.cwnd + acked
    if b.filled:
        t = _bbr_target(self)
        if cw > t:
            cw = t
    self.cwnd = cw
