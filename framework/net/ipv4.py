"""IPv4 layer (RFC 791, RFC 1122 host requirements): input validation and demux,
output with next-hop choice and per-destination header templates.

Pure: frames and ``now`` in, frames out (appended to the stack's ``tx`` list).

Input checks, in order, each with its own drop counter: destination MAC, version, IHL,
total length against the frame (Ethernet padding trimmed: the segment ends at
``24 + total length``, not at the end of the frame), header checksum, fragments
(reassembled: ``_fragment``, below), destination address (ours, or one of the extra
local addresses in ``local_extra``; broadcast and multicast are dropped quietly), source
address, protocol.

Extra local addresses (service addresses, VIPs: CONTRACTS section 3) are never ARPed for:
their traffic arrives routed to our MAC. Each has its own TCP and ICMP input (set by the
stack) and its own output ``alias``: an Ipv4Layer that shares this one's link (MAC,
subnet, gateway, ARP, tx list, counters) but writes the extra address as the source.
Fragments leave the per-frame path after the header checksum (``_fragment``: the same
address and protocol checks, then reassembly.py); a datagram they complete goes up in a
frame of its own, as if it had come whole. On output a datagram larger than the MTU is
fragmented (ICMP echo replies: TCP keeps to its MSS and sets DF, so a TCP segment too
big without GSO is a bug, counted and dropped).
TTL is not checked on input: RFC 1122 3.2.1.7 says a host MUST NOT discard a datagram
just because its TTL is below 2; TTL matters on output (64, never 0).

Offsets handed to TCP/ICMP index the frame as received (vnet header included), so
no layer copies the segment out of the frame.
"""
import struct

try:
    import cython
except ImportError:
    from framework import _cython_shim as cython

from .reassembly import Reassembler
from .wire.ethernet import ETH_LEN
from .wire.ipv4 import (BROADCAST, DEFAULT_TTL, FLAG_DF, FLAG_MF, MAX_TOTAL_LENGTH, PROTO_ICMP,
                        PROTO_TCP, header, prefix_mask)
from .wire.vnet import PLAIN, VNET_LEN

COUNTERS = (
    "drop.eth.not_for_us",
    "drop.ipv4.short", "drop.ipv4.bad_version", "drop.ipv4.bad_ihl", "drop.ipv4.bad_length",
    "drop.ipv4.bad_checksum", "drop.ipv4.not_for_us",
    "drop.ipv4.broadcast", "drop.ipv4.bad_src", "drop.ipv4.unknown_proto",
    "drop.ipv4.no_route", "drop.ipv4.bad_dst", "drop.ipv4.too_big",
    "ipv4.tx_queued_arp",
)

L3 = VNET_LEN + ETH_LEN          # 24: where the IPv4 header starts in a port frame
L4_NO_OPTIONS = L3 + 20          # 44
# dst MAC, (src MAC skipped), ethertype, then the IPv4 fields the input path needs:
# ver_ihl, total length, flags+fragment, proto, src, dst (pad bytes: no unused ints made)
_RX = struct.Struct("!6s6xHBxH2xH1xB2xII")
_rx = _RX.unpack_from
# vnet | dst MAC src MAC ethertype ver_ihl tos (16, from the template) | total length |
# id | flags+fragment | ttl+proto | checksum | src dst (8, from the template)
_TX = struct.Struct("!10s16sHHHHH8s")
_tx = _TX.pack
_from_bytes = int.from_bytes
_TTL_PROTO = DEFAULT_TTL << 8
_MAX_TEMPLATES = 4096
_MAX_GOOD_SRC = 65536
MULTICAST = 0xE0000000           # 224.0.0.0 and up: multicast (class D) and reserved (class E)
LOOPBACK_NET = 127


class Ipv4Layer:
    __slots__ = ("mac", "ip", "mask", "net", "bcast", "gateway", "mtu", "counters", "tx", "arp",
                 "tcp_input", "icmp_input", "other", "good_src", "templates", "ip_id", "now",
                 "local_extra", "aliases", "reasm")

    def __init__(self, mac: bytes, ip: int, prefix: int, gateway, mtu: int, counters: dict,
                 tx: list, arp):
        self.mac = mac
        self.ip = ip
        self.mask = prefix_mask(prefix)
        self.net = ip & self.mask
        self.bcast = self.net | (~self.mask & 0xFFFFFFFF)
        if gateway is not None and (gateway & self.mask) != self.net:
            raise ValueError("gateway is not on the local subnet")
        self.gateway = gateway
        self.mtu = mtu
        self.counters = counters
        self.tx = tx
        self.arp = arp
        self.tcp_input = None      # set by the stack: tcp.input(frame, src, dst, l4_off, l4_end, trusted, now)
        self.icmp_input = None     # set by the stack: icmp.input(frame, src, dst, l4_off, l4_end, trusted)
        self.other = None          # set by the stack: other(frame, now) for every non-IPv4 frame
        self.good_src = set()      # source addresses already found valid
        # dst -> (valid_until, 16-byte prefix, 8-byte addresses, partial checksum)
        self.templates = {}
        self.ip_id = 0
        self.now = 0.0
        self.local_extra = {}      # extra local address -> (tcp_input, icmp_input) (set by the stack)
        self.aliases = []          # the output aliases made by alias()
        self.reasm = Reassembler(counters)    # fragments waiting for their datagram (reassembly.py)
        for k in COUNTERS:
            counters.setdefault(k, 0)

    # -- input ---------------------------------------------------------------------------
    def rx(self, frames, now):
        """The receive loop of a batch of port frames (vnet + Ethernet).

        It lives here, not in the stack, because IPv4 -> TCP is the hot path: compiled, the
        headers are read byte by byte from the frame; as plain Python one Struct covers
        Ethernet + IPv4 (one unpack costs less than several); either way no call is spent
        before the TCP hand-off. Every other frame goes to ``self.other`` (the stack's
        Ethernet demux: ARP, short, unknown types)."""
        c = self.counters
        mymac = self.mac
        myip = self.ip
        ip_obj = self.ip           # compiled: boxed once per batch, handed to TCP as dst
        good_src = self.good_src
        tcp_input = self.tcp_input
        other = self.other
        extra = self.local_extra
        if cython.compiled:
            mp = mymac
        for f in frames:
            try:
                n = len(f)
                if n < L4_NO_OPTIONS:
                    other(f, now)
                    continue
                if cython.compiled:
                    if type(f) is not bytes:
                        f = bytes(f)
                    p = f
                    etype = (p[22] << 8) | p[23]
                    for_us = memcmp(p + VNET_LEN, mp, 6) == 0 \
                        or p[VNET_LEN] & 1
                    vhl = p[24]
                    tot = (p[26] << 8) | p[27]
                    frag = (p[30] << 8) | p[31]
                    proto = p[33]
                    src = (cython.cast(cython.uint, p[36]) << 24) | (p[37] << 16) | (p[38] << 8) | p[39]
                    dst = (cython.cast(cython.uint, p[40]) << 24) | (p[41] << 16) | (p[42] << 8) | p[43]
                else:
                    dmac, etype, vhl, tot, frag, proto, src, dst = _rx(f, VNET_LEN)
                    for_us = dmac == mymac or dmac[0] & 1
                if etype != 0x0800:
                    other(f, now)
                    continue
                if not for_us:
                    c["drop.eth.not_for_us"] += 1
                    continue
                if vhl == 0x45:
                    l4 = L4_NO_OPTIONS
                else:
                    if vhl >> 4 != 4:
                        c["drop.ipv4.bad_version"] += 1
                        continue
                    if vhl & 15 < 5:
                        c["drop.ipv4.bad_ihl"] += 1
                        continue
                    l4 = L3 + (vhl & 15) * 4          # options are skipped, not interpreted
                    if l4 > n:
                        c["drop.ipv4.short"] += 1
                        continue
                end = L3 + tot                        # anything past it is Ethernet padding
                if end < l4 or end > n:
                    c["drop.ipv4.bad_length"] += 1
                    continue
                # the ones'-complement sum of a correct header is 0xffff, i.e. 0 mod 0xffff
                # (and the header is never all zero: its version is 4)
                if cython.compiled:
                    bad_sum = fold(word_sum(p + L3, l4 - L3)) != 0xFFFF
                else:
                    bad_sum = _from_bytes(f[L3:l4], "big") % 0xFFFF
                if bad_sum:
                    c["drop.ipv4.bad_checksum"] += 1
                    continue
                if frag & 0x3FFF:                     # MF or a fragment offset
                    self._fragment(f, l4, end, frag, proto, src, dst, now)
                    continue
                inputs = None
                if dst != myip:
                    inputs = extra.get(dst) if extra else None
                    if inputs is None:
                        if dst == BROADCAST or dst == self.bcast or dst >= MULTICAST:
                            c["drop.ipv4.broadcast"] += 1
                        else:
                            c["drop.ipv4.not_for_us"] += 1
                        continue
                # trusted: vnet flags F_NEEDS_CSUM | F_DATA_VALID
                if cython.compiled:
                    bad_src = self._martian(src)      # five C compares: no cache needed
                    trusted = p[0] & 3 != 0
                else:
                    bad_src = src not in good_src and not self._src_ok(src)   # a set hit instead of five compares
                    trusted = f[0] & 3 != 0
                if bad_src:
                    c["drop.ipv4.bad_src"] += 1
                    continue
                if inputs is not None:          # an extra local address (a VIP)
                    if proto == PROTO_TCP:
                        inputs[0](f, src, dst, l4, end, trusted, now)
                    elif proto == PROTO_ICMP:
                        inputs[1](f, src, dst, l4, end, trusted)
                    else:
                        c["drop.ipv4.unknown_proto"] += 1
                elif proto == PROTO_TCP:
                    tcp_input(f, src, ip_obj, l4, end, trusted, now)
                elif proto == PROTO_ICMP:
                    self.icmp_input(f, src, ip_obj, l4, end, trusted)
                else:
                    c["drop.ipv4.unknown_proto"] += 1
            except Exception:
                # last resort, never relied upon: every known malformation has its counter
                c["drop.internal"] += 1

    def _fragment(self, f, l4, end, frag, proto, src, dst, now):
        """A fragment (header checksum already good): the checks the per-frame path does
        after that point, then reassembly; a completed datagram goes up in a frame of its
        own (vnet PLAIN + this fragment's Ethernet header + a 20-byte IPv4 header), its
        transport checksum verified over the whole (never trusted)."""
        c = self.counters
        tcp_input = self.tcp_input
        icmp_input = self.icmp_input
        if dst != self.ip:
            inputs = self.local_extra.get(dst) if self.local_extra else None
            if inputs is None:
                if dst == BROADCAST or dst == self.bcast or dst >= MULTICAST:
                    c["drop.ipv4.broadcast"] += 1
                else:
                    c["drop.ipv4.not_for_us"] += 1
                return
            tcp_input, icmp_input = inputs            # an extra local address (a VIP)
        if self._martian(src):
            c["drop.ipv4.bad_src"] += 1
            return
        if proto != PROTO_TCP and proto != PROTO_ICMP:
            c["drop.ipv4.unknown_proto"] += 1     # nothing above would take it: not stored
            return
        data = self.reasm.add(src, dst, proto, (f[28] << 8) | f[29], (frag & 0x1FFF) << 3,
                              frag & FLAG_MF, l4 - L3, f[l4:end], now)
        if data is None:
            return
        whole = PLAIN + f[VNET_LEN:L3] + header(src, dst, proto, len(data), 0, flags=0) + data
        if proto == PROTO_TCP:
            tcp_input(whole, src, dst, L4_NO_OPTIONS, len(whole), False, now)
        else:
            icmp_input(whole, src, dst, L4_NO_OPTIONS, len(whole), False)

    def expire(self, now):
        """Drop the reassembly datagrams whose 30 s are up (Stack.dispatch, when any wait)."""
        self.reasm.expire(now)

    def _martian(self, src):
        """RFC 1122 3.2.1.3: a datagram from a broadcast, multicast, loopback, 0/8 or our
        own address is discarded."""
        return src >= MULTICAST or src == self.bcast or src == self.ip or src >> 24 == 0 \
            or src >> 24 == LOOPBACK_NET

    def _src_ok(self, src):
        """Not a martian; good sources are remembered (bounded)."""
        if self._martian(src):
            return False
        good = self.good_src
        if len(good) >= _MAX_GOOD_SRC:
            good.clear()
        good.add(src)
        return True

    def alias(self, ip):
        """An output for the extra local address ``ip``: an Ipv4Layer sharing this one's
        link and neighbours, whose frames carry ``ip`` as their source. Next hops are
        chosen on this layer's subnet (a VIP is usually off it: replies go through the
        gateway, the way the request came)."""
        a = Ipv4Layer(self.mac, self.ip, bin(self.mask).count("1"), self.gateway, self.mtu,
                      self.counters, self.tx, self.arp)
        a.ip = ip
        a.good_src = self.good_src
        self.aliases.append(a)
        return a

    # -- output --------------------------------------------------------------------------
    def output(self, dst, proto, payload, vnet_hdr=PLAIN):
        """Prepend Ethernet + IPv4 (DF, TTL 64) to ``payload`` and queue the frame.
        Unresolved next hop: the frame waits in ARP's queue (bounded, drops counted)."""
        t = self.templates.get(dst)
        if t is None:
            return self._output_slow(dst, proto, payload, vnet_hdr)
        valid_until = t[0]
        if self.now >= valid_until:
            return self._output_slow(dst, proto, payload, vnet_hdr)
        tot = 20 + len(payload)
        if tot > self.mtu and (tot > MAX_TOTAL_LENGTH or not vnet_hdr[1]):   # vnet_hdr[1]: gso_type
            if tot <= MAX_TOTAL_LENGTH and proto != PROTO_TCP:
                self._output_fragments(t, proto, payload)
                return
            self.counters["drop.ipv4.too_big"] += 1
            return
        ident = (self.ip_id + 1) & 0xFFFF
        self.ip_id = ident
        s = t[3]
        s += tot + ident + proto
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        if cython.compiled:
            self.tx.append(_frame(vnet_hdr, t[1], tot, ident, proto, s ^ 0xFFFF, t[2], payload))
        else:
            self.tx.append(_tx(vnet_hdr, t[1], tot, ident, FLAG_DF, _TTL_PROTO | proto, s ^ 0xFFFF,
                               t[2]) + payload)

    def _output_fragments(self, t, proto, payload):
        """RFC 791 3.2: the datagram in MTU-sized fragments of one identification, every
        one but the last carrying MF and a multiple of 8 bytes (DF clear: it is fragmented)."""
        ident = (self.ip_id + 1) & 0xFFFF
        self.ip_id = ident
        step = (self.mtu - 20) & ~7
        n = len(payload)
        base = t[3] - FLAG_DF + ident + proto
        off = 0
        while off < n:
            chunk = payload[off:off + step]
            ff = off >> 3
            if off + step < n:
                ff |= FLAG_MF
            tot = 20 + len(chunk)
            s = base + tot + ff
            s = (s & 0xFFFF) + (s >> 16)
            s = (s & 0xFFFF) + (s >> 16)
            self.tx.append(_TX.pack(PLAIN, t[1], tot, ident, ff, _TTL_PROTO | proto, s ^ 0xFFFF,
                                    t[2]) + bytes(chunk))
            self.counters["ipv4.frag_tx"] += 1
            off += step

    def _output_slow(self, dst, proto, payload, vnet_hdr):
        c = self.counters
        if dst == self.ip or dst == self.bcast or dst >= MULTICAST or not dst:
            c["drop.ipv4.bad_dst"] += 1
            return
        if (dst & self.mask) == self.net:
            nh = dst
        elif self.gateway is not None:
            nh = self.gateway
        else:
            c["drop.ipv4.no_route"] += 1
            return
        now = self.now
        e = self.arp.lookup(nh, now)
        if e is None:
            c["ipv4.tx_queued_arp"] += 1
            # the layer rides along: an alias's frame must leave with the alias's source
            self.arp.enqueue(nh, (dst, proto, payload, vnet_hdr, self), now)
            return
        templates = self.templates
        if len(templates) >= _MAX_TEMPLATES:
            templates.clear()
        src = self.ip
        base = (0x4500 + FLAG_DF + _TTL_PROTO + (src >> 16) + (src & 0xFFFF)
                + (dst >> 16) + (dst & 0xFFFF))
        # valid until the ARP entry wants a refresh (or expires), so the fast path never
        # needs to look at the neighbour cache
        templates[dst] = (e.refresh_at, e.mac + self.mac + b"\x08\x00\x45\x00",
                          src.to_bytes(4, "big") + dst.to_bytes(4, "big"), base)
        self.output(dst, proto, payload, vnet_hdr)

    def neighbour_changed(self, ip, queued):
        """ARP learned ``ip`` or saw it change its MAC: drop stale templates, send what waited."""
        self.templates.clear()     # rare; templates of gateway-routed dsts depend on it too
        for a in self.aliases:
            a.templates.clear()
        for dst, proto, payload, vnet_hdr, layer in queued:
            layer.output(dst, proto, payload, vnet_hdr)


def _frame(vnet_hdr, prefix, tot, ident, proto, csum, addrs, payload):
    """Compiled only: what ``_TX`` packs plus the payload, written into one new bytes."""
    if len(vnet_hdr) != VNET_LEN:
        vnet_hdr = (vnet_hdr + PLAIN)[:VNET_LEN]          # as the Struct's "10s" pads or cuts
    if type(payload) is not bytes:
        payload = bytes(payload)
    plen = len(payload)
    vp = vnet_hdr
    pp = prefix
    ap = addrs
    dp = payload
    frame = PyBytes_FromStringAndSize(cython.NULL, L4_NO_OPTIONS + plen)
    q = cython.cast(cython.p_uchar, PyBytes_AS_STRING(frame))
    memcpy(q, vp, VNET_LEN)
    memcpy(q + VNET_LEN, pp, 16)
    q[26] = tot >> 8
    q[27] = tot & 0xFF
    q[28] = ident >> 8
    q[29] = ident & 0xFF
    q[30] = FLAG_DF >> 8
    q[31] = 0
    q[32] = DEFAULT_TTL
    q[33] = proto
    q[34] = csum >> 8
    q[35] = csum & 0xFF
    memcpy(q + 36, ap, 8)
    memcpy(q + L4_NO_OPTIONS, dp, plen)
    return frame
