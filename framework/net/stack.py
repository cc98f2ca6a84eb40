"""The stack of one shard: Ethernet demux, ARP, IPv4, ICMP and the TCP layer
(CONTRACTS.md sections 3 and 6).

Pure: ``process(frames, now)`` takes received frames, ``dispatch(now)`` fires timers and
returns the frames to send. No sockets, no clock reads, no globals: every test drives it
with crafted frames and a fake ``now``.

Extra local addresses (``vips``: service addresses routed to this node, never ARPed
for) each get a TcpLayer and an IcmpLayer of their own, answering from that address;
the TCP layers share the primary one's listeners, event list and counters, so above
the stack one TCP layer is seen (``tcp``), and every listening port answers on every
address. ``tcp_layers`` is the primary one first, then one per VIP.

Every frame is ``vnet header (10 bytes) + Ethernet``. Every malformed frame is counted
under one reason in ``counters`` and dropped; nothing raises out of ``process``.
"""
try:
    import cython
except ImportError:
    from framework import _cython_shim as cython

from . import arp, icmp, ipv4, reassembly
from .arp import ArpLayer
from .icmp import IcmpLayer
from .ipv4 import Ipv4Layer
from .tcp import TcpLayer
from .tcp import layer as tcp_layer
from .tcp import icmperr
from .wire.ethernet import ETH_P_ARP, mac_to_bytes
from .wire.ipv4 import ip_to_int
from .wire.vnet import VNET_LEN

COUNTERS = ("rx.frames", "tx.frames", "drop.eth.short", "drop.eth.unknown_type", "drop.internal")

_L3 = VNET_LEN + 14


class Stack:
    __slots__ = ("mac", "ip", "prefix", "gateway", "mtu", "csum_offload", "gso", "now",
                 "_counters", "_tx", "arp", "ipv4", "icmp", "tcp", "ip_output", "vips",
                 "tcp_layers")

    def __init__(self, mac, ip="198.18.0.2", prefix=24, gateway=None, csum_offload=True,
                 gso=False, mtu=1500, tcp_config=None, tcp_factory=TcpLayer, arp_ttl=60.0,
                 arp_retry=1.0, arp_tries=3, arp_queue=4, arp_max_pending=256, vips=()):
        self.mac = mac_to_bytes(mac)
        self.ip = ip_to_int(ip)
        self.prefix = prefix
        self.gateway = None if gateway is None else ip_to_int(gateway)
        if not 68 <= mtu <= 65535:         # RFC 791: every host takes 68-byte datagrams
            raise ValueError(f"bad MTU {mtu}")
        self.mtu = mtu
        self.csum_offload = csum_offload
        self.gso = gso
        self.now = 0.0
        c = self._counters = {k: 0 for k in COUNTERS}
        tx = self._tx = []
        self.arp = ArpLayer(self.mac, self.ip, c, tx, ttl=arp_ttl, retry=arp_retry,
                            tries=arp_tries, qlen=arp_queue, max_pending=arp_max_pending)
        self.ipv4 = Ipv4Layer(self.mac, self.ip, prefix, self.gateway, mtu, c, tx, self.arp)
        ipv4_obj = cython.cast(object, self.ipv4)     # bound methods of a C-typed layer
        self.arp.on_neighbour = ipv4_obj.neighbour_changed
        # the bound method itself: TCP's calls go straight to IPv4, no extra hop
        self.ip_output = ipv4_obj.output
        self.icmp = IcmpLayer(self.ip_output, c)
        self.ipv4.icmp_input = self.icmp.input
        # tcp_factory: TcpLayer's signature; tests pass a fake to see what the stack hands TCP
        self.tcp = tcp_factory(self.ip_output, self.ip, mtu, csum_offload, gso, tcp_config)
        self.ipv4.tcp_input = self.tcp.input
        if isinstance(self.tcp, TcpLayer):    # ICMP errors quoting our segments (tcp/icmperr.py)
            self.icmp.tcp_error = icmperr.handler(self.tcp)
            self.tcp.ip4 = self.ipv4          # its segments go straight to our IPv4 layer
        self.ipv4.other = self._rx_other
        self.vips = [ip_to_int(v) for v in vips]
        self.tcp_layers = [self.tcp]
        for vip in self.vips:
            self._add_vip(vip, tcp_factory, mtu, csum_offload, gso, tcp_config)

    def _add_vip(self, vip, tcp_factory, mtu, csum_offload, gso, tcp_config):
        if vip == self.ip or vip in self.ipv4.local_extra:
            raise ValueError("a VIP is given twice or is the stack's own address")
        alias = self.ipv4.alias(vip)
        out = cython.cast(object, alias).output
        tcp = tcp_factory(out, vip, mtu, csum_offload, gso, tcp_config)
        primary = self.tcp
        # one TCP layer as seen from above: the same listeners, events and counters
        tcp.listeners = primary.listeners
        tcp.events = primary.events
        tcp.counters = primary.counters
        icmp_layer = IcmpLayer(out, self._counters)
        if isinstance(tcp, TcpLayer):
            icmp_layer.tcp_error = icmperr.handler(tcp)
            tcp.ip4 = alias
        self.ipv4.local_extra[vip] = (tcp.input, icmp_layer.input)
        self.tcp_layers.append(tcp)

    @property
    def counters(self) -> dict:
        """All counters, TCP's merged in (a fresh dict: for reading, not on the hot path)."""
        d = dict(self._counters)
        d.update(self.tcp.counters)
        return d

    def process(self, frames, now):
        """RX: demultiplex a batch of received frames (the loop is Ipv4Layer.rx: IPv4 is
        the hot path; every other frame comes back to ``_rx_other``)."""
        self.now = self.ipv4.now = now
        self._counters["rx.frames"] += len(frames)
        self.ipv4.rx(frames, now)

    def _rx_other(self, f, now):
        c = self._counters
        if len(f) < _L3:
            c["drop.eth.short"] += 1
            return
        if f[10:16] != self.mac and not f[10] & 1:
            c["drop.eth.not_for_us"] += 1
            return
        etype = f[22] << 8 | f[23]
        if etype == ETH_P_ARP:
            self.arp.input(f, now)
        elif etype == 0x0800:
            c["drop.ipv4.short"] += 1       # shorter than a minimal IPv4 header
        else:
            c["drop.eth.unknown_type"] += 1

    def dispatch(self, now):
        """TX: fire due timers, let TCP emit, and return every queued frame."""
        self.now = self.ipv4.now = now
        self.arp.poll(now)
        if self.ipv4.reasm.datagrams:
            self.ipv4.expire(now)
        tcp = self.tcp
        tcp.poll(now)
        tcp.flush(now)
        if len(self.tcp_layers) > 1:
            for tcp in self.tcp_layers[1:]:
                tcp.poll(now)
                tcp.flush(now)
        tx = self._tx
        if not tx:
            return []
        out = tx[:]
        tx.clear()          # the layers hold this list: empty it, never replace it
        self._counters["tx.frames"] += len(out)
        return out

    def output_pending(self):
        """Frames queued or TCP output waiting (what the next ``dispatch`` would send,
        timers aside): cheap, for a loop deciding whether to dispatch now."""
        if self._tx or self.tcp.output_pending():
            return True
        if len(self.tcp_layers) > 1:
            for tcp in self.tcp_layers[1:]:
                if tcp.output_pending():
                    return True
        return False

    def poll_at(self):
        """The next absolute deadline (ARP retries, TCP timers), or None."""
        best = self.arp.poll_at()
        for tcp in self.tcp_layers:
            t = tcp.poll_at()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def announce(self):
        """Queue a gratuitous ARP so neighbours (re)learn our MAC, e.g. after a start."""
        self.arp.announce()


def counter_names():
    """Every key ``Stack.counters`` can hold, without building a stack (the stats block
    is sized before any worker starts)."""
    return sorted(set(COUNTERS) | set(arp.COUNTERS) | set(icmp.COUNTERS)
                  | set(ipv4.COUNTERS) | set(reassembly.COUNTERS) | set(tcp_layer.COUNTERS)
                  | set(icmperr.COUNTERS))
