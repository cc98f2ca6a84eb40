"""ICMP layer (RFC 792): echo request -> echo reply; destination unreachable quoting a
TCP segment of ours -> TCP (``tcp_error``, tcp/icmperr.py); everything else is counted.

Not on the hot path: clarity over speed. Pure: the reply goes out through ip_output
(a reply larger than the MTU leaves in fragments: Ipv4Layer.output).
"""
from .checksum import checksum, ones_sum
from .wire.icmp import DEST_UNREACH, ECHO_REPLY, ECHO_REQUEST, ICMP, ICMP_HDR_LEN
from .wire.ipv4 import PROTO_ICMP, PROTO_TCP

COUNTERS = (
    "icmp.rx_echo_request", "icmp.tx_echo_reply", "icmp.rx_other", "icmp.rx_unreachable",
    "drop.icmp.short", "drop.icmp.bad_checksum", "drop.icmp.bad_quote",
)


class IcmpLayer:
    __slots__ = ("ip_output", "counters", "tcp_error")

    def __init__(self, ip_output, counters: dict):
        self.ip_output = ip_output
        self.counters = counters
        # set by the stack: tcp_error(rip, rport, lport, seq, code, next_hop_mtu, quoted_len)
        self.tcp_error = None
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
        if msg[0] == DEST_UNREACH:
            self._unreachable(msg, dst)
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

    def _unreachable(self, msg, me):
        """Destination unreachable (RFC 792): unused(2) next-hop MTU(2) (RFC 1191), then the
        quoted datagram: its IPv4 header and at least 8 bytes of what it carried. A quote
        that is short or not of a datagram we sent is dropped (``drop.icmp.bad_quote``)."""
        c = self.counters
        q = ICMP_HDR_LEN
        if len(msg) < q + 20 + 8:
            c["drop.icmp.bad_quote"] += 1
            return
        vhl = msg[q]
        ihl = (vhl & 15) * 4
        if vhl >> 4 != 4 or ihl < 20 or len(msg) < q + ihl + 8 \
                or int.from_bytes(msg[q + 12:q + 16], "big") != me:
            c["drop.icmp.bad_quote"] += 1
            return
        c["icmp.rx_unreachable"] += 1
        if msg[q + 9] != PROTO_TCP or self.tcp_error is None:
            return
        t = q + ihl
        self.tcp_error(int.from_bytes(msg[q + 16:q + 20], "big"),       # remote address
                       (msg[t + 2] << 8) | msg[t + 3],                  # remote port
                       (msg[t] << 8) | msg[t + 1],                      # our port
                       int.from_bytes(msg[t + 4:t + 8], "big"),         # sequence number
                       msg[1], (msg[6] << 8) | msg[7],                  # code, next-hop MTU
                       (msg[q + 2] << 8) | msg[q + 3])                  # quoted total length
