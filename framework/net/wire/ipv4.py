"""IPv4 header format (RFC 791) (no logic)."""
import socket
import struct

from ..checksum import checksum

IPV4 = struct.Struct("!BBHHHBBHII")  # ver_ihl, tos, total length, id, flags+frag, ttl, proto, csum, src, dst
IPV4_LEN = 20
# Ethernet + IPv4 in one Struct: one unpack costs less than three.
ETH_IPV4 = struct.Struct("!6s6sHBBHHHBBHII")
ETH_IPV4_LEN = 34

VER_IHL_NO_OPTIONS = 0x45

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

FLAG_DF = 0x4000
FLAG_MF = 0x2000
FRAG_MASK = 0x3FFF       # MF + fragment offset: non-zero means "a fragment"
OFFSET_MASK = 0x1FFF

DEFAULT_TTL = 64
MAX_TOTAL_LENGTH = 0xFFFF

BROADCAST = 0xFFFFFFFF


def ip_to_int(addr) -> int:
    """``"198.18.0.2"``, 4 bytes or an int -> int."""
    if isinstance(addr, int):
        if not 0 <= addr <= 0xFFFFFFFF:
            raise ValueError(f"bad IPv4 address {addr}")
        return addr
    if isinstance(addr, (bytes, bytearray)):
        if len(addr) != 4:
            raise ValueError("IPv4 address must be 4 bytes")
        return int.from_bytes(addr, "big")
    return int.from_bytes(socket.inet_aton(addr), "big")


def int_to_ip(addr: int) -> str:
    return socket.inet_ntoa(addr.to_bytes(4, "big"))


def prefix_mask(prefix: int) -> int:
    if not 0 <= prefix <= 32:
        raise ValueError(f"bad prefix length {prefix}")
    return (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF


def header(src: int, dst: int, proto: int, payload_len: int, ident: int = 0,
           ttl: int = DEFAULT_TTL, flags: int = FLAG_DF, tos: int = 0) -> bytes:
    """A 20-byte header with its checksum (slow path / tests; the stack uses templates)."""
    h = IPV4.pack(VER_IHL_NO_OPTIONS, tos, IPV4_LEN + payload_len, ident, flags, ttl, proto, 0, src, dst)
    c = checksum(h)
    return h[:10] + c.to_bytes(2, "big") + h[12:]


def parse(buf, off: int = 0):
    """-> (ver_ihl, tos, total_length, id, flags_frag, ttl, proto, csum, src, dst)"""
    return IPV4.unpack_from(buf, off)
