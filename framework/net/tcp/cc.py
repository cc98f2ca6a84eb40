# cython: infer_types=True, annotation_typing=False
"""Congestion control of a Connection: the multiplicative decrease at a congestion event
(NewReno, RFC 5681; CUBIC, RFC 9438) and CUBIC's window growth in congestion avoidance.
Slow start and NewReno's additive increase are in segments._on_ack."""
try:
    import cython
except ImportError:         # plain Python on a machine without Cython
    from framework import _cython_shim as cython


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
