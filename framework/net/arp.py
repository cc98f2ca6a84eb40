"""ARP layer (RFC 826): answer for our address, a neighbour cache with expiry, and
resolution of a new neighbour before sending (frames queued meanwhile).

Pure: frames and ``now`` in, frames out (appended to the stack's ``tx`` list).

Cache policy, modelled on Linux's REACHABLE -> PROBE -> FAILED walk, simplified:
- an entry lives ``ttl`` seconds from the last ARP packet that confirmed it;
- an entry still in use shortly before it expires (the last ``refresh`` seconds) gets one
  unicast request, so a busy flow never stalls on a broadcast re-resolution;
- after expiry the next send starts a fresh resolution (broadcast, frames queued).
Learning follows RFC 826's merge rule: an existing entry is updated by any ARP packet
from that address; a new entry is created only from packets addressed to us.
"""
from .wire import arp as warp
from .wire.arp import ETH_ARP, HLEN_ETHER, HTYPE_ETHER, OP_REPLY, OP_REQUEST, PLEN_IPV4, PTYPE_IPV4
from .wire.ethernet import BROADCAST, ETH_P_ARP, ZERO_MAC
from .wire.vnet import PLAIN

COUNTERS = (
    "rx.arp", "arp.rx_request", "arp.rx_reply", "arp.tx_request", "arp.tx_reply",
    "arp.learned", "arp.changed", "arp.refresh", "arp.resolved", "arp.failed", "arp.conflict",
    "arp.probe",
    "drop.arp.short", "drop.arp.bad", "drop.arp.bad_op", "drop.arp.bad_sender",
    "drop.arp.not_for_us", "drop.arp.conflict", "drop.arp.queue_full", "drop.arp.unresolved",
    "drop.arp.too_many_pending",
)

_VNET_ETH_ARP_LEN = 10 + 42
_unpack = ETH_ARP.unpack_from
_pack = ETH_ARP.pack


class Neighbour:
    __slots__ = ("mac", "expires", "refresh_at")

    def __init__(self, mac, expires, refresh_at):
        self.mac = mac
        self.expires = expires
        self.refresh_at = refresh_at   # first use at/after this sends a unicast refresh

    def __repr__(self):
        return f"Neighbour({self.mac.hex(':')}, expires={self.expires}, refresh_at={self.refresh_at})"


class Pending:
    """A neighbour being resolved: frames waiting for it and the retry timer."""
    __slots__ = ("queue", "tries", "next_at")

    def __init__(self, next_at):
        self.queue = []
        self.tries = 1
        self.next_at = next_at


class ArpLayer:
    __slots__ = ("mac", "ip", "counters", "tx", "ttl", "refresh", "retry", "tries", "qlen",
                 "cache", "pending", "on_neighbour", "max_entries", "max_pending")

    def __init__(self, mac: bytes, ip: int, counters: dict, tx: list, ttl: float = 60.0,
                 retry: float = 1.0, tries: int = 3, qlen: int = 4, on_neighbour=None,
                 max_entries: int = 4096, max_pending: int = 256):
        self.mac = mac
        self.ip = ip
        self.counters = counters
        self.tx = tx
        self.ttl = ttl
        # refresh window: a quarter of the lifetime, at most 5 s (Linux probes after ~5 s stale)
        self.refresh = min(ttl / 4.0, 5.0)
        self.retry = retry
        self.tries = tries
        self.qlen = qlen
        self.cache = {}      # ip -> Neighbour
        self.pending = {}    # ip -> Pending
        # on_neighbour(ip, queued_items): a neighbour was learned or changed its MAC;
        # queued_items are the frames that waited for it (possibly empty).
        self.on_neighbour = on_neighbour
        self.max_entries = max_entries
        # bounded, so replies to many spoofed on-link sources cannot grow it without end
        self.max_pending = max_pending
        for k in COUNTERS:
            counters.setdefault(k, 0)

    # -- input -------------------------------------------------------------------------
    def input(self, f, now):
        """One received frame (vnet + Ethernet) whose ethertype is ARP."""
        c = self.counters
        c["rx.arp"] += 1
        if len(f) < _VNET_ETH_ARP_LEN:
            c["drop.arp.short"] += 1
            return
        (_, _, _, htype, ptype, hlen, plen, op, sha, spa, tha, tpa) = _unpack(f, 10)
        if htype != HTYPE_ETHER or ptype != PTYPE_IPV4 or hlen != HLEN_ETHER or plen != PLEN_IPV4:
            c["drop.arp.bad"] += 1
            return
        if op != OP_REQUEST and op != OP_REPLY:
            c["drop.arp.bad_op"] += 1
            return
        # A group (multicast/broadcast) or all-zero sender hardware address is never a host;
        # our own MAC as sender is our own frame looped back or a clash.
        if sha[0] & 1 or sha == ZERO_MAC or sha == self.mac:
            c["drop.arp.bad_sender"] += 1
            return
        # Sender protocol addresses that are never a neighbour (broadcast, multicast,
        # loopback). 0.0.0.0 is an RFC 5227 probe: allowed for requests, never learned.
        if spa >= 0xE0000000 or (spa >> 24) == 127 or (spa == 0 and op != OP_REQUEST):
            c["drop.arp.bad_sender"] += 1
            return
        myip = self.ip
        if spa == myip:
            # someone else claims our address (RFC 5227 conflict); do not learn it
            c["arp.conflict"] += 1
            c["drop.arp.conflict"] += 1
            return
        for_us = tpa == myip
        if spa:
            e = self.cache.get(spa)
            if e is not None or for_us:            # RFC 826 merge, then add if for us
                self._learn(spa, sha, e, now)
        if not for_us:
            c["drop.arp.not_for_us"] += 1
            return
        if op == OP_REPLY:
            c["arp.rx_reply"] += 1
        else:
            c["arp.rx_request"] += 1
            if spa == 0:
                c["arp.probe"] += 1
            # reply unicast to the asker (for a probe tpa stays 0.0.0.0, as Linux does)
            self.tx.append(PLAIN + _pack(sha, self.mac, ETH_P_ARP, HTYPE_ETHER, PTYPE_IPV4,
                                         HLEN_ETHER, PLEN_IPV4, OP_REPLY, self.mac, myip, sha, spa))
            c["arp.tx_reply"] += 1

    def seed(self, ip, mac, now):
        """A neighbour the worker we take over from knew (a handover): its first frames
        need no resolution, and the SYN-ACKs kept for the takeover do not overflow the
        queue of a resolution in progress."""
        self._learn(ip, mac, self.cache.get(ip), now)

    def _learn(self, ip, mac, e, now):
        expires = now + self.ttl
        if e is None:
            cache = self.cache
            if len(cache) >= self.max_entries:
                self._purge(now)
            cache[ip] = Neighbour(mac, expires, expires - self.refresh)
            self.counters["arp.learned"] += 1
            changed = True
        else:
            changed = e.mac != mac
            if changed:
                self.counters["arp.changed"] += 1
                e.mac = mac
            e.expires = expires
            e.refresh_at = expires - self.refresh
        p = self.pending.pop(ip, None)
        if p is not None:
            self.counters["arp.resolved"] += 1
        if (changed or p is not None) and self.on_neighbour is not None:
            self.on_neighbour(ip, p.queue if p is not None else ())

    def _purge(self, now):
        cache = self.cache
        for ip in [ip for ip, e in cache.items() if e.expires <= now]:
            del cache[ip]
        if len(cache) >= self.max_entries:      # still full: forget the oldest half
            for ip in sorted(cache, key=lambda k: cache[k].expires)[: len(cache) // 2]:
                del cache[ip]

    # -- output side ---------------------------------------------------------------------
    def lookup(self, ip, now):
        """The live Neighbour for ``ip`` or None. May send a unicast refresh request."""
        e = self.cache.get(ip)
        if e is None:
            return None
        if now >= e.expires:
            del self.cache[ip]
            return None
        if now >= e.refresh_at:
            e.refresh_at = e.expires          # one refresh per lifetime
            self._request(ip, e.mac)
            self.counters["arp.refresh"] += 1
        return e

    def enqueue(self, ip, item, now):
        """Queue ``item`` until ``ip`` resolves; starts the resolution if needed.
        A full queue drops its oldest item (the newest is the most useful to TCP)."""
        p = self.pending.get(ip)
        if p is None:
            if len(self.pending) >= self.max_pending:
                self.counters["drop.arp.too_many_pending"] += 1
                return
            p = self.pending[ip] = Pending(now + self.retry)
            self._request(ip, BROADCAST)
        q = p.queue
        if self.qlen <= 0:
            self.counters["drop.arp.queue_full"] += 1
            return
        if len(q) >= self.qlen:
            del q[0]
            self.counters["drop.arp.queue_full"] += 1
        q.append(item)

    def _request(self, tpa, eth_dst):
        self.tx.append(PLAIN + warp.request(self.mac, self.ip, tpa, eth_dst))
        self.counters["arp.tx_request"] += 1

    def announce(self) -> None:
        """Queue a gratuitous ARP request for our address (RFC 5227 announcement)."""
        self.tx.append(PLAIN + warp.request(self.mac, self.ip, self.ip, BROADCAST))
        self.counters["arp.tx_request"] += 1

    # -- timers ------------------------------------------------------------------------
    def poll(self, now):
        """Retry due requests; give up on neighbours that never answered."""
        pending = self.pending
        if not pending:
            return
        for ip, p in list(pending.items()):
            if now >= p.next_at:
                if p.tries >= self.tries:
                    del pending[ip]
                    self.counters["arp.failed"] += 1
                    self.counters["drop.arp.unresolved"] += len(p.queue)
                else:
                    p.tries += 1
                    p.next_at = now + self.retry
                    self._request(ip, BROADCAST)

    def poll_at(self):
        if not self.pending:
            return None
        return min(p.next_at for p in self.pending.values())
