"""ICMP layer (RFC 792): echo request -> echo reply; everything else is counted.

Not on the hot path: clarity over speed. Pure: the reply goes out through ip_output.
"""
from .checksum import checksum, ones_sum
from .wire.icmp import ECHO_REPLY, ECHO_REQUEST, ICMP, ICMP_HDR_LEN
from .wire.ipv4 import PROTO_ICMP

COUNTERS = (
    "icmp.rx_echo_request", "icmp.tx_echo_reply", "icmp.rx_other",
    "drop.icmp.short", "drop.icmp.bad_checksum",
)


class IcmpLayer:
    __slots__ = ("ip_output", "counters")

    def __init__(self, ip_output, counters: dict):
        self.ip_output = ip_output
        self.counters = counters
        for k in COUNTERS:
            counters.setdefault(k, 0)

    def input(self, f, src: int, dst: int, off: int, end: int, trusted: bool) -> None:
        """The ICMP message is f[off:end] (IPv4 already validated it is for us)."""
        c = self.counters
        if end - off < ICMP_HDR_LEN:
            c["drop.icmp.short"] += 1
            return
        msg = f[off:end]
        # a checksum-partial frame (vnet NEEDS_CSUM) carries no final checksum to verify
        if not trusted and ones_sum(msg) != 0xFFFF:
            c["drop.icmp.bad_checksum"] += 1
            return
        if msg[0] != ECHO_REQUEST:
            c["icmp.rx_other"] += 1
            return
        c["icmp.rx_echo_request"] += 1
        # same code, identifier, sequence and data; only the type and checksum change
        body = msg[4:]
        csum = checksum(ICMP.pack(ECHO_REPLY, msg[1], 0) + body)
        self.ip_output(src, PROTO_ICMP, ICMP.pack(ECHO_REPLY, msg[1], csum) + body)
        c["icmp.tx_echo_reply"] += 1
