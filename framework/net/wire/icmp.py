"""ICMP (RFC 792) format (no logic)."""
import struct

ICMP = struct.Struct("!BBH")          # type, code, checksum
ICMP_ECHO = struct.Struct("!BBHHH")   # type, code, checksum, identifier, sequence
ICMP_HDR_LEN = 8                      # every ICMP message has at least 8 bytes

ECHO_REPLY = 0
DEST_UNREACH = 3
ECHO_REQUEST = 8
TIME_EXCEEDED = 11

# DEST_UNREACH codes
UNREACH_PROTOCOL = 2
UNREACH_PORT = 3
UNREACH_FRAG_NEEDED = 4


def parse_echo(buf, off: int = 0):
    """-> (type, code, checksum, identifier, sequence)"""
    return ICMP_ECHO.unpack_from(buf, off)
