"""cc="bbr": the window follows the path's model (the delivery rate times the minimum RTT),
so a random loss is repaired without shrinking it, where NewReno halves its window.

A small event simulation stands in for the path: 5 ms each way and a bottleneck that
delivers one 1000-byte segment per 0.5 ms (2 MB/s, a bandwidth-delay product of 20 KB);
the receiver ACKs every segment, with SACK blocks for what arrived above a hole."""
import heapq

import pytest

from framework.net.tcp import TcpConfig, TcpLayer

from .harness import Harness

P = 1001
SACK_SYN = [("MSS", 1000), ("SAckOK", b"")]
ONE_WAY = 0.005
SERVICE = 0.0005               # the bottleneck's time per segment
BDP = 20_000


class Path:
    def __init__(self, cc, lose=()):
        self.h = h = Harness(cc=cc)
        h.send("S", seq=P - 1, options=SACK_SYN)
        self.iss = h.reply().seq
        h.now += 2 * ONE_WAY + SERVICE                 # the handshake's RTT is the path's
        h.send("A", seq=P, ack=self.iss + 1)
        self.conn = h.tcp.take_events()[-1][1]
        self.lose = set(lose)          # offsets whose first transmission is lost
        self.seen = set()
        self.got = []                  # delivered [start, end) offsets, merged
        self.events = []               # (time, n, ack blocks)
        self.n = 0
        self.link_free = h.now
        self.cwnds = []                # (time, cwnd) after every ACK

    def _sent(self):
        for s in self.h.replies():
            off, ln = s.seq - self.iss - 1, len(s.payload)
            if not ln:
                continue
            first = off not in self.seen
            self.seen.add(off)
            if first and off in self.lose:
                continue
            arrive = max(self.h.now + ONE_WAY, self.link_free) + SERVICE
            self.link_free = arrive
            self.n += 1
            heapq.heappush(self.events, (arrive + ONE_WAY, self.n, off, ln))

    def _deliver(self, off, ln):
        got = self.got + [[off, off + ln]]
        got.sort()
        merged = [got[0]]
        for s, e in got[1:]:
            if s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        self.got = merged

    def run(self, until):
        h = self.h
        self._sent()
        while self.events and self.events[0][0] < until:
            t, _, off, ln = heapq.heappop(self.events)
            h.now = t
            self._deliver(off, ln)
            cum = self.got[0][1] if self.got[0][0] == 0 else 0
            blocks = [(s, e) for s, e in reversed(self.got) if s > cum][:3]
            opts = [("NOP", None), ("NOP", None),
                    ("SAck", tuple(x for s, e in blocks for x in (self.iss + 1 + s, self.iss + 1 + e)))] \
                if blocks else []
            h.send("A", seq=P, ack=self.iss + 1 + cum, options=opts)
            self._sent()
            self.cwnds.append((t, self.conn.cwnd))
        return self

    def cwnd_at(self, t):
        return [c for x, c in self.cwnds if x <= t][-1]


def test_bbr_window_follows_the_model_after_startup():
    p = Path("bbr")
    p.conn.send(b"x" * 3_000_000)
    p.run(p.h.now + 0.5)
    b = p.conn.bbr
    assert b.filled                                   # startup saw the rate stop growing
    assert b.bw == pytest.approx(1000 / SERVICE, rel=0.15)
    # 2 x BDP (+3 segments for ACKs in bunches): enough to keep the bottleneck busy, and
    # not the ever-growing window a loss-based sender fills the queue with
    assert 1.5 * BDP <= p.conn.cwnd <= 3 * BDP, p.conn.cwnd


@pytest.mark.parametrize("cc", ["bbr", "newreno"])
def test_a_random_loss_shrinks_newreno_not_bbr(cc):
    p = Path(cc)
    p.conn.send(b"x" * 3_000_000)
    t0 = p.h.now
    p.run(t0 + 0.4)
    before = p.conn.cwnd
    lost = max(p.seen) + 5000                          # a segment not yet sent
    p.lose.add(lost)
    p.run(t0 + 0.8)
    assert lost in p.seen and p.h.tcp.counters["tcp.fast_retransmits"] + \
        p.h.tcp.counters["tcp.rack_losses"] >= 1
    assert p.h.tcp.counters["tcp.rto"] == 0            # repaired by SACK, not a timeout
    after = p.conn.cwnd
    low = min(c for t, c in p.cwnds if t > t0 + 0.4)
    if cc == "bbr":
        assert low >= 0.75 * before and after >= 0.9 * before, (before, low, after)
    else:
        assert after <= 0.6 * before, (before, after)


def test_newreno_is_the_default_and_unknown_cc_rejected():
    assert TcpConfig().cc == "newreno"
    for cc in ("newreno", "cubic", "bbr"):
        TcpLayer(lambda *a: None, 1, 1500, False, False, TcpConfig(cc=cc))
    with pytest.raises(ValueError):
        TcpLayer(lambda *a: None, 1, 1500, False, False, TcpConfig(cc="vegas"))
