"""The Internet checksum (RFC 1071).

Compiled, the sum is a C loop over the bytes (32-bit big-endian words into a 64-bit
accumulator). As plain Python, summing 16-bit words one by one would run a Python loop per
word; reading the whole buffer as one big integer and taking it mod 0xffff does the work in
C and gives the same ones'-complement sum.
"""
try:
    import cython
except ImportError:
    from framework import _cython_shim as cython

_from_bytes = int.from_bytes


def word_sum(p, n):
    """Sum of the ``n`` bytes at ``p`` as big-endian 16-bit words (a trailing odd byte is
    padded with zero), not folded. Compiled modules cimport it to sum a frame in place."""
    s = 0
    i = 0
    end4 = n - (n & 3)
    # a 32-bit word is two 16-bit words, and 2**16 == 1 (mod 0xffff): folding the sum of
    # 32-bit words gives the sum of the 16-bit ones
    while i < end4:
        s += (cython.cast(cython.uint, p[i]) << 24) | (p[i + 1] << 16) | (p[i + 2] << 8) | p[i + 3]
        i += 4
    if n & 2:
        s += (p[i] << 8) | p[i + 1]
        i += 2
    if n & 1:
        s += p[i] << 8
    return s


def fold(s):
    """A word sum folded to 16 bits, end-around carries added (0 only for a zero sum)."""
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ones_sum(data):
    """Ones'-complement sum of ``data`` as 16-bit words, folded to 16 bits (not inverted)."""
    if cython.compiled:
        if type(data) is bytes or type(data) is bytearray:
            p = data
            return fold(word_sum(p, len(data)))
        if isinstance(data, int):
            raise TypeError("ones_sum() takes a bytes-like object, not int")
        try:
            PyObject_GetBuffer(data, cython.address(view), PyBUF_SIMPLE)
        except BufferError:                   # not contiguous: sum a copy
            data = bytes(data)
            p = data
            return fold(word_sum(p, len(data)))
        try:
            s = word_sum(cython.cast(cython.p_uchar, view.buf), view.len)
        finally:
            PyBuffer_Release(cython.address(view))
        return fold(s)
    if len(data) & 1:
        data = bytes(data) + b"\0"
    if not data:
        return 0
    n = _from_bytes(data, "big")
    s = n % 0xFFFF
    # a non-zero multiple of 0xffff is 0xffff in ones'-complement, not 0
    return 0xFFFF if s == 0 and n else s


def checksum(data):
    """The value to put in a checksum field: the inverted ones'-complement sum."""
    return ~ones_sum(data) & 0xFFFF


def add(a, b):
    """Ones'-complement addition of two folded 16-bit sums."""
    s = a + b
    return (s & 0xFFFF) + (s >> 16)


def pseudo_header_sum(src, dst, proto, length):
    """Folded sum of the IPv4 pseudo-header (addresses as ints)."""
    s = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + length
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def l4_checksum(src, dst, proto, segment):
    """Checksum field value for a TCP/UDP segment whose checksum field is zero."""
    return ~add(pseudo_header_sum(src, dst, proto, len(segment)), ones_sum(segment)) & 0xFFFF


def verify_l4(src, dst, proto, segment):
    """True when the segment (checksum field included) sums to all ones."""
    return add(pseudo_header_sum(src, dst, proto, len(segment)), ones_sum(segment)) in (0xFFFF, 0)
