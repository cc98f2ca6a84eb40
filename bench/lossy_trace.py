"""What the relay of bench.lossy saw, per direction (``python -m bench.lossy --trace``).

The relay records the TCP header of every frame it gets (before its faults) and what the
faults did to it: ``record`` is called in the relay's loop, ``analyze`` afterwards. Both
servers cross the very same path and the client is Linux's in both runs, so the two
directions tell apart the two halves of our stack:

    up    the Linux client sends the body: our stack (or Linux's) is the receiver
    down  the server sends the echo: our stack (or Linux's) is the sender

The relay knows which copies it delivered, so a retransmission of bytes already delivered
once is counted spurious; a sender silent for ``STALL`` seconds or more before it
retransmits, with data outstanding, is counted as a stall (an RTO or a late probe)."""
import bisect
import struct

M = 0xFFFFFFFF
STALL = 0.15
_HDR = struct.Struct("!HHIIBBH")
FIN, SYN, RST = 1, 2, 4


def record(log, now, side, frame, fates):
    """One TCP frame from `side` (0: the client's end, 1: the server's); `fates` are the
    copies forwarded, each True when it left uncorrupted."""
    ihl = (frame[14] & 15) * 4
    tl = (frame[16] << 8) | frame[17]
    t = 14 + ihl
    doff = (frame[t + 12] >> 4) * 4
    log.append((now, side, frame[t:t + doff], tl - ihl - doff, sum(fates), len(fates)))


def _options(h):
    """(tsval or None, number of SACK blocks) of a TCP header's options."""
    i, end = 20, len(h)
    ts, nsack = None, 0
    while i < end:
        k = h[i]
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        if i + 1 >= end:
            break
        ln = h[i + 1]
        if ln < 2:
            break
        if k == 8 and ln == 10:
            ts = struct.unpack_from("!I", h, i + 2)[0]
        elif k == 5:
            nsack = (ln - 2) // 8
        i += ln
    return ts, nsack


class _Dir:
    """One direction of one connection, from its sender's SYN on."""

    def __init__(self):
        self.isn = None
        self.snd_max = 0            # relative: the SYN is 0, data from 1
        self.fin_end = None
        self.acked = 0
        self.delivered = []         # disjoint sorted [s, e) intervals that got through once
        self.t_first = self.t_done = None
        self.last_tx = None
        self.segs = self.lost = self.rtx = self.rtx_bytes = self.spurious = 0
        self.stalls = 0
        self.stall_time = 0.0
        self.bytes = 0
        self.t_mark = None          # time-weighted flight: bytes outstanding x seconds
        self.flight_area = 0.0

    def mark(self, now):
        if self.t_mark is not None and self.t_done is None:
            self.flight_area += (now - self.t_mark) * (self.snd_max - self.acked)
        self.t_mark = now

    def covered(self, s, e):
        d = self.delivered
        i = bisect.bisect_right(d, [s, M + 1]) - 1
        return i >= 0 and d[i][0] <= s and d[i][1] >= e

    def deliver(self, s, e):
        d = self.delivered
        i = bisect.bisect_left(d, [s, -1])
        if i > 0 and d[i - 1][1] >= s:
            i -= 1
        j = i
        while j < len(d) and d[j][0] <= e:
            s = min(s, d[j][0])
            e = max(e, d[j][1])
            j += 1
        d[i:j] = [[s, e]]


def analyze(log):
    """Per-direction and per-body totals of one run's relay log."""
    flows = {}
    done = []
    stalls = []
    for now, side, h, plen, ok, copies in log:
        sp, dp, seq, ack, off, fl, win = _HDR.unpack_from(h)
        cport = sp if side == 0 else dp
        f = flows.get(cport)
        if fl & SYN and side == 0 and f is not None and f["dirs"][0].isn != seq:
            done.append(f)               # the client's port taken again by a new connection
            f = None
        if f is None:
            if not fl & SYN or side != 0:
                continue
            f = flows[cport] = {"syn": now, "estab": None, "dirs": (_Dir(), _Dir()),
                                "pure_acks": [0, 0], "sack_acks": [0, 0]}
        d = f["dirs"][side]           # the direction this frame's sender sends in
        r = f["dirs"][1 - side]       # the one its ACK field acknowledges
        if fl & SYN:
            if d.isn is None or ((seq - d.isn) & M) > (1 << 31):
                d.isn = seq
            if d.isn == seq:
                d.segs += 1
        if fl & RST or d.isn is None:
            continue
        if side == 0 and f["estab"] is None and not fl & SYN:
            f["estab"] = now
        s = (seq - d.isn) & M
        e = s + plen + (1 if fl & FIN else 0)
        if plen or fl & FIN:
            d.segs += 1
            if d.t_first is None:
                d.t_first = now
            if fl & FIN:
                d.fin_end = e
            if s < d.snd_max:
                d.rtx += 1
                d.rtx_bytes += min(e, d.snd_max) - s
                if d.covered(s, min(e, d.snd_max)):
                    d.spurious += 1
                if d.last_tx is not None and now - d.last_tx >= STALL and d.acked < d.snd_max:
                    d.stalls += 1
                    d.stall_time += now - d.last_tx
                    stalls.append((round(now - d.last_tx, 3), "up" if side == 0 else "down",
                                   cport, round(now - f["syn"], 3), s, d.snd_max - d.acked))
            else:
                d.bytes += e - s
            d.mark(now)
            if e > d.snd_max:
                d.snd_max = e
            d.last_tx = now
            if ok:
                d.deliver(s, e)
            else:
                d.lost += 1
        elif not fl & SYN:
            f["pure_acks"][side] += 1
            if _options(h)[1]:
                f["sack_acks"][side] += 1
        if fl & 16 and r.isn is not None:
            a = (ack - r.isn) & M
            if a < (1 << 31) and a > r.acked:
                r.mark(now)
                r.acked = a
                if r.fin_end is not None and a >= r.fin_end and r.t_done is None:
                    r.t_done = now
    out = {"bodies": 0, "connect": 0.0, "up": 0.0, "down_tail": 0.0, "total": 0.0,
           "incomplete": 0, "stalls (s, dir, port, at, seq, outstanding)": sorted(stalls)[-8:]}
    dirs = {}
    for name, side in (("up", 0), ("down", 1)):
        dirs[name] = {"time": 0.0, "flight_area": 0.0, "segs": 0, "bytes": 0, "lost": 0, "rtx": 0, "rtx_bytes": 0,
                      "spurious": 0, "stalls": 0, "stall_time": 0.0,
                      "receiver_pure_acks": 0, "receiver_sack_acks": 0}
    for f in done + list(flows.values()):
        up, down = f["dirs"]
        for name, side, d in (("up", 0, up), ("down", 1, down)):
            x = dirs[name]
            if d.t_first is not None and d.t_done is not None:
                x["time"] += d.t_done - d.t_first
            for k in ("flight_area", "segs", "bytes", "lost", "rtx", "rtx_bytes", "spurious", "stalls",
                      "stall_time"):
                x[k] += getattr(d, k)
            x["receiver_pure_acks"] += f["pure_acks"][1 - side]
            x["receiver_sack_acks"] += f["sack_acks"][1 - side]
        if up.t_done is None or down.t_done is None or f["estab"] is None:
            out["incomplete"] += 1
            continue
        out["bodies"] += 1
        out["connect"] += f["estab"] - f["syn"]
        out["up"] += up.t_done - f["estab"]
        out["down_tail"] += max(0.0, down.t_done - up.t_done)
        out["total"] += down.t_done - f["syn"]
    out["dirs"] = dirs
    return out


def format_report(a):
    """Lines for one run's analysis."""
    lines = [f"      bodies {a['bodies']} (+{a['incomplete']} unmatched): sum of body times "
             f"{a['total']:.1f} s = connect {a['connect']:.1f} + upload done {a['up']:.1f} "
             f"+ echo after it {a['down_tail']:.1f}"]
    for name, who in (("up", "Linux client sends"), ("down", "server sends")):
        d = a["dirs"][name]
        lines.append(
            f"      {name:4s} ({who}): {d['time']:.1f} s first data to FIN acked (mean flight "
            f"{d['flight_area'] / max(d['time'], 1e-9) / 1e3:.1f} KB), {d['segs']} segs, "
            f"{d['lost']} lost by the relay, "
            f"{d['rtx']} rtx ({d['rtx_bytes'] / 1e3:.0f} KB, {d['spurious']} spurious), "
            f"{d['stalls']} stalls {d['stall_time']:.2f} s; receiver's pure ACKs "
            f"{d['receiver_pure_acks']} ({d['receiver_sack_acks']} with SACK)")
    lines.append(f"      longest stalls (s, dir, client port, since SYN, seq, outstanding): "
                 f"{a['stalls (s, dir, port, at, seq, outstanding)']}")
    return lines
