"""The Internet checksum (RFC 1071) with Python's big integers.

Summing 16-bit words one by one runs a Python loop per word; reading the whole
buffer as one big integer and taking it mod 0xffff does the work in C and gives the
same ones'-complement sum.
"""

_from_bytes = int.from_bytes


def ones_sum(data) -> int:
    """Ones'-complement sum of ``data`` as 16-bit words, folded to 16 bits (not inverted)."""
    if len(data) & 1:
        data = bytes(data) + b"\0"
    if not data:
        return 0
    n = _from_bytes(data, "big")
    s = n % 0xFFFF
    # a non-zero multiple of 0xffff is 0xffff in ones'-complement, not 0
    return 0xFFFF if s == 0 and n else s


def checksum(data) -> int:
    """The value to put in a checksum field: the inverted ones'-complement sum."""
    return ~ones_sum(data) & 0xFFFF


def add(a: int, b: int) -> int:
    """Ones'-complement addition of two folded 16-bit sums."""
    s = a + b
    return (s & 0xFFFF) + (s >> 16)


def pseudo_header_sum(src: int, dst: int, proto: int, length: int) -> int:
    """Folded sum of the IPv4 pseudo-header (addresses as ints)."""
    s = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + length
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def l4_checksum(src: int, dst: int, proto: int, segment) -> int:
    """Checksum field value for a TCP/UDP segment whose checksum field is zero."""
    return ~add(pseudo_header_sum(src, dst, proto, len(segment)), ones_sum(segment)) & 0xFFFF


def verify_l4(src: int, dst: int, proto: int, segment) -> bool:
    """True when the segment (checksum field included) sums to all ones."""
    return add(pseudo_header_sum(src, dst, proto, len(segment)), ones_sum(segment)) in (0xFFFF, 0)
