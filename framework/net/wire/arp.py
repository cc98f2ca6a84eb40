"""ARP for IPv4 over Ethernet (RFC 826) format (no logic)."""
import struct

from .ethernet import BROADCAST, ETH_P_ARP, ZERO_MAC

ARP = struct.Struct("!HHBBH6sI6sI")  # htype, ptype, hlen, plen, op, sha, spa, tha, tpa
ARP_LEN = 28
# Ethernet + ARP in one Struct: dst, src, ethertype, then the ARP fields (42 bytes).
ETH_ARP = struct.Struct("!6s6sHHHBBH6sI6sI")
ETH_ARP_LEN = 42

HTYPE_ETHER = 1
PTYPE_IPV4 = 0x0800
HLEN_ETHER = 6
PLEN_IPV4 = 4

OP_REQUEST = 1
OP_REPLY = 2


def build(op: int, sha: bytes, spa: int, tha: bytes, tpa: int, eth_dst: bytes = None) -> bytes:
    """Ethernet + ARP (42 bytes, no vnet header). Requests default to broadcast."""
    if eth_dst is None:
        eth_dst = BROADCAST if op == OP_REQUEST else tha
    return ETH_ARP.pack(eth_dst, sha, ETH_P_ARP, HTYPE_ETHER, PTYPE_IPV4, HLEN_ETHER,
                        PLEN_IPV4, op, sha, spa, tha, tpa)


def request(sha: bytes, spa: int, tpa: int, eth_dst: bytes = BROADCAST) -> bytes:
    return build(OP_REQUEST, sha, spa, ZERO_MAC, tpa, eth_dst)


def parse(buf, off: int = 0):
    """-> (htype, ptype, hlen, plen, op, sha, spa, tha, tpa) of the ARP body at ``off``."""
    return ARP.unpack_from(buf, off)
