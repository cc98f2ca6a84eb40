"""IPv4 reassembly (RFC 791 section 3.2, RFC 815) with bounded memory.

Pure: fragments and ``now`` in, a whole datagram's payload out; no clock, no I/O. The
IPv4 layer hands over every fragment addressed to us (``Ipv4Layer._fragment``) and sends
what comes back up as if it had arrived unfragmented.

A datagram is keyed by (source, destination, protocol, identification) and kept as its
received pieces, sorted by offset. It is whole when its last fragment (MF clear) fixed
the total length and the pieces add up to it: no overlap is ever stored, so the sum
alone proves there is no hole (RFC 815's hole list, without the list).

What is refused, each under its own counter (a counter counts fragments, so every
fragment received ends in exactly one place: a reassembled datagram, a duplicate, one
drop reason, or still waiting):

- ``drop.ipv4.frag_overlap``: a fragment overlapping another one with different bytes or
  bounds (teardrop and its kin). As RFC 5722 does for IPv6, the whole datagram goes,
  fragments that arrive later included: the datagram stays as a tombstone until its
  timeout and every later fragment of it is counted under the reason it died for.
  An identical copy of a stored fragment is a duplicate: ``ipv4.frag_duplicate``, kept once.
- ``drop.ipv4.frag_too_big``: offset + length beyond 65,535 bytes of datagram.
- ``drop.ipv4.frag_short_first``: a first fragment without its whole transport header
  (TCP 20, UDP 8, ICMP 8 bytes; RFC 1858's tiny-fragment attack).
- ``drop.ipv4.frag_bad``: a fragment other than the last whose length is not a multiple of
  8 (or is 0), or one that disagrees with the datagram's known end (a second, different
  last fragment; data past the end).
- ``drop.ipv4.frag_timeout``: not whole ``timeout`` (30 s, as Linux) after its first
  fragment arrived.
- ``drop.ipv4.frag_limit``: the memory bounds. Memory is charged per stored fragment
  (its payload plus ``OVERHEAD`` bytes, so a flood of 8-byte fragments is bounded too).
  A source over its own share (``max_datagrams_per_source``, ``max_bytes_per_source``)
  loses the fragment that would exceed it; beyond the totals (``max_datagrams``,
  ``max_bytes``) the oldest datagrams are evicted. One source flooding cannot take more
  than its share, and a legitimate datagram, whose fragments come in a burst, completes
  even while spoofed sources churn the rest. A datagram of more than ``max_fragments``
  pieces goes too.
"""
from collections import OrderedDict

COUNTERS = (
    "ipv4.frag_rx", "ipv4.reassembled", "ipv4.frag_duplicate", "ipv4.frag_tx",
    "drop.ipv4.frag_overlap", "drop.ipv4.frag_timeout", "drop.ipv4.frag_too_big",
    "drop.ipv4.frag_short_first", "drop.ipv4.frag_bad", "drop.ipv4.frag_limit",
)

MAX_DATAGRAM = 65535
OVERHEAD = 128                       # bytes charged per stored fragment beyond its payload
                                     # (about what its Python objects take)
# the transport header a first fragment must hold in full (by IP protocol number)
MIN_FIRST = {6: 20, 17: 8, 1: 8}

OVERLAP = "drop.ipv4.frag_overlap"
TIMEOUT = "drop.ipv4.frag_timeout"
TOO_BIG = "drop.ipv4.frag_too_big"
SHORT_FIRST = "drop.ipv4.frag_short_first"
BAD = "drop.ipv4.frag_bad"
LIMIT = "drop.ipv4.frag_limit"


class _Datagram:
    __slots__ = ("src", "deadline", "pieces", "total", "got", "charge", "dead")

    def __init__(self, src, deadline):
        self.src = src
        self.deadline = deadline
        self.pieces = []             # [[start, end, payload], ...] sorted, never overlapping
        self.total = None            # payload length, once the last fragment came
        self.got = 0                 # payload bytes stored
        self.charge = OVERHEAD       # bytes charged to the bounds (a tombstone's too)
        self.dead = None             # the drop reason, once discarded (a tombstone)


class Reassembler:
    """The fragments waiting for their datagrams, of one stack (one shard)."""

    def __init__(self, counters: dict, timeout=30.0, max_bytes=4 << 20, max_datagrams=1024,
                 max_bytes_per_source=512 << 10, max_datagrams_per_source=64,
                 max_fragments=128):
        if max_bytes_per_source < MAX_DATAGRAM + max_fragments * OVERHEAD:
            raise ValueError("max_bytes_per_source must hold one datagram of 65,535 bytes")
        if max_bytes < max_bytes_per_source or max_datagrams < max_datagrams_per_source:
            raise ValueError("a total bound below the per-source one")
        self.counters = counters
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_datagrams = max_datagrams
        self.max_bytes_per_source = max_bytes_per_source
        self.max_datagrams_per_source = max_datagrams_per_source
        self.max_fragments = max_fragments
        self.datagrams = OrderedDict()   # key -> _Datagram, oldest first (= deadline order)
        self.bytes = 0                   # memory charged, all datagrams
        self.per_source = {}             # src -> [datagrams, bytes]
        for k in COUNTERS:
            counters.setdefault(k, 0)

    @property
    def pending(self) -> int:
        """Datagrams waiting (tombstones included)."""
        return len(self.datagrams)

    def fragments_waiting(self) -> int:
        return sum(len(d.pieces) for d in self.datagrams.values())

    def add(self, src, dst, proto, ident, offset, more, hdr_len, payload, now):
        """One fragment: ``offset`` in bytes, ``more`` its MF flag, ``hdr_len`` its IPv4
        header length. Returns the datagram's payload (bytes) when this fragment
        completed it, else None."""
        c = self.counters
        c["ipv4.frag_rx"] += 1
        self.expire(now)
        key = (src, dst, proto, ident)
        dg = self.datagrams.get(key)
        if dg is not None and dg.dead is not None:
            c[dg.dead] += 1
            return None
        n = len(payload)
        end = offset + n
        reason = None
        if hdr_len + end > MAX_DATAGRAM:
            reason = TOO_BIG
        elif offset == 0 and n < MIN_FIRST.get(proto, 0):
            reason = SHORT_FIRST
        elif more and (n == 0 or n & 7):
            c[BAD] += 1                  # this fragment only: the datagram may still come whole
            return None
        if dg is None:
            if reason is not None:
                self._new(key, src, now).dead = reason   # later fragments go the same way
                c[reason] += 1
                return None
            ps = self.per_source.get(src)
            if ps is not None and ps[0] >= self.max_datagrams_per_source:
                c[LIMIT] += 1
                return None
            dg = self._new(key, src, now)
        elif reason is not None:
            self._kill(key, dg, reason, 1)
            return None
        pieces = dg.pieces
        # where the new piece goes, and whether it touches a neighbour
        i = len(pieces)
        while i and pieces[i - 1][0] > offset:
            i -= 1
        if i and pieces[i - 1][1] > offset:
            p = pieces[i - 1]
            if p[0] == offset and p[1] == end and p[2] == payload:
                c["ipv4.frag_duplicate"] += 1
                return None
            self._kill(key, dg, OVERLAP, 1)
            return None
        if i < len(pieces) and pieces[i][0] < end:
            self._kill(key, dg, OVERLAP, 1)
            return None
        total = dg.total
        if not more:
            if (total is not None and total != end) or (pieces and pieces[-1][1] > end):
                self._kill(key, dg, BAD, 1)
                return None
            dg.total = total = end
        elif total is not None and end > total:
            self._kill(key, dg, BAD, 1)
            return None
        if len(pieces) >= self.max_fragments:
            self._kill(key, dg, LIMIT, 1)
            return None
        charge = n + OVERHEAD
        ps = self.per_source[src]
        if ps[1] + charge > self.max_bytes_per_source:
            c[LIMIT] += 1
            return None
        while self.bytes + charge > self.max_bytes:
            self._evict_oldest(key)
        pieces.insert(i, [offset, end, bytes(payload)])
        dg.got += n
        dg.charge += charge
        ps[1] += charge
        self.bytes += charge
        if total is None or dg.got != total:
            return None
        self._remove(key, dg)
        c["ipv4.reassembled"] += 1
        return b"".join([p[2] for p in pieces])

    def expire(self, now):
        """Discard the datagrams whose time is up (oldest first: creation order is
        deadline order, the timeout being fixed)."""
        d = self.datagrams
        while d:
            key, dg = next(iter(d.items()))
            if dg.deadline > now:
                return
            if dg.dead is None:
                self.counters[TIMEOUT] += len(dg.pieces)
            self._remove(key, dg)

    # -- internals ---------------------------------------------------------------------
    def _new(self, key, src, now):
        while len(self.datagrams) >= self.max_datagrams or self.bytes + OVERHEAD > self.max_bytes:
            self._evict_oldest(None)
        dg = _Datagram(src, now + self.timeout)
        self.datagrams[key] = dg
        ps = self.per_source.get(src)
        if ps is None:
            ps = self.per_source[src] = [0, 0]
        ps[0] += 1
        ps[1] += OVERHEAD
        self.bytes += OVERHEAD
        return dg

    def _kill(self, key, dg, reason, extra):
        """Discard the datagram's fragments (plus ``extra`` not stored: the one that
        killed it); it stays as a tombstone for the ones still to come."""
        self.counters[reason] += len(dg.pieces) + extra
        freed = dg.charge - OVERHEAD
        dg.pieces = []
        dg.got = 0
        dg.charge = OVERHEAD
        dg.dead = reason
        self.bytes -= freed
        self.per_source[dg.src][1] -= freed

    def _evict_oldest(self, keep):
        for key, dg in self.datagrams.items():
            if key != keep:
                break
        else:
            raise AssertionError("bounds smaller than one datagram")
        if dg.dead is None:
            self.counters[LIMIT] += len(dg.pieces)
        self._remove(key, dg)

    def _remove(self, key, dg):
        del self.datagrams[key]
        self.bytes -= dg.charge
        ps = self.per_source[dg.src]
        ps[0] -= 1
        ps[1] -= dg.charge
        if not ps[0]:
            del self.per_source[dg.src]
