"""TCP header and options: the wire format only (RFC 9293 §3.1, RFC 7323, RFC 2018).

No state lives here. One precompiled Struct reads or writes the fixed 20-byte
header in one call (one unpack costs less than three), options
are parsed by a small loop with a fast path for the timestamps-only layout every
established Linux segment carries (NOP NOP TS). Compiled, the loop reads the frame's
bytes in place (tcp.pxd); as plain Python the usual layouts take one Struct unpack.
"""
import struct

try:
    import cython
except ImportError:
    from framework import _cython_shim as cython

# sport, dport, seq, ack, data offset byte, flags, window, checksum, urgent pointer
TCP_HDR = struct.Struct("!HHIIBBHHH")
TCP_HDR_LEN = 20

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

if not cython.compiled:        # compiled: the same values as C constants (tcp.pxd)
    OPT_EOL = 0
    OPT_NOP = 1
    OPT_MSS = 2
    OPT_WS = 3
    OPT_SACK_PERM = 4
    OPT_SACK = 5
    OPT_TS = 8

_H = struct.Struct("!H")
_II = struct.Struct("!II")
_TS_FULL = struct.Struct("!4sII")

# MSS(4) SACK-permitted(2) TS(10) NOP WS(3): what every Linux SYN and SYN-ACK carries
_LINUX_SYN = struct.Struct("!2xH4xII3xB")
_LINUX_SYN_MID = b"\x04\x02\x08\x0a"

# NOP NOP kind=8 len=10: the layout of a timestamps-only option block (12 bytes)
TS_PREFIX = b"\x01\x01\x08\x0a"
if not cython.compiled:
    TS_OPT_LEN = 12


def ts_option(val: int, ecr: int) -> bytes:
    """The 12-byte NOP NOP TS option block."""
    return _TS_FULL.pack(TS_PREFIX, val, ecr)


class Options:
    """Parsed options of one segment. ``None`` means the option was absent."""

    __slots__ = ("mss", "wscale", "sack_perm", "tsval", "tsecr", "sack")

    def __init__(self):
        self.mss = None
        self.wscale = None
        self.sack_perm = False
        self.tsval = None
        self.tsecr = None
        self.sack = None

    def __repr__(self):
        return (f"Options(mss={self.mss}, wscale={self.wscale}, sack_perm={self.sack_perm}, "
                f"ts={self.tsval, self.tsecr if self.tsval is not None else None}, sack={self.sack})")


def parse_options(buf, off, end):
    """Parse the option bytes buf[off:end]. Malformed trailing options are ignored
    (as Linux does): whatever parsed cleanly before them is kept."""
    o = Options()
    n = end - off
    if cython.compiled:
        if type(buf) is not bytes and type(buf) is not bytearray:
            buf = bytes(buf)
        if off < 0:
            return o
        if end > len(buf):                    # never read past the buffer
            end = len(buf)
            n = end - off
        b = buf
        if n == TS_OPT_LEN and b[off] == 1 and b[off + 1] == 1 and b[off + 2] == 8 \
                and b[off + 3] == 10:
            o.tsval = _be32(b, off + 4)
            o.tsecr = _be32(b, off + 8)
            return o
    else:
        b = buf
        if n == TS_OPT_LEN and buf[off:off + 4] == TS_PREFIX:
            o.tsval, o.tsecr = _II.unpack_from(buf, off + 4)
            return o
        if n == 20 and buf[off:off + 2] == b"\x02\x04" and buf[off + 4:off + 8] == _LINUX_SYN_MID \
                and buf[off + 16:off + 19] == b"\x01\x03\x03":
            # the SYN layout of Linux: MSS, SACK-permitted, TS, NOP, WS in one unpack
            o.mss, o.tsval, o.tsecr, ws = _LINUX_SYN.unpack_from(buf, off)
            o.sack_perm = True
            o.wscale = ws if ws < 14 else 14
            return o
    i = off
    while i < end:
        kind = b[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= end:
            break
        ln = b[i + 1]
        if ln < 2 or i + ln > end:
            break
        if kind == OPT_MSS and ln == 4:
            o.mss = _be16(b, i + 2)
        elif kind == OPT_WS and ln == 3:
            o.wscale = min(b[i + 2], 14)  # RFC 7323 §2.3: larger shifts are treated as 14
        elif kind == OPT_SACK_PERM and ln == 2:
            o.sack_perm = True
        elif kind == OPT_TS and ln == 10:
            o.tsval = _be32(b, i + 2)
            o.tsecr = _be32(b, i + 6)
        elif kind == OPT_SACK and ln >= 10 and (ln - 2) % 8 == 0:
            o.sack = [(_be32(b, j), _be32(b, j + 4)) for j in range(i + 2, i + ln, 8)]
        i += ln
    return o


def _be16(b, i):
    return (b[i] << 8) | b[i + 1]


def _be32(b, i):
    return (cython.cast(cython.uint, b[i]) << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]


def build_options(mss=None, wscale=None, sack_perm=False, ts=None, sack=None) -> bytes:
    """Options in Linux's order, NOP-padded to a multiple of 4 bytes.

    ``ts`` is a (val, ecr) pair; ``sack`` a list of (left, right) sequence pairs.
    """
    out = bytearray()
    if mss is not None:
        out += b"\x02\x04" + _H.pack(mss)
    if sack_perm and ts is not None:
        out += b"\x04\x02\x08\x0a" + _II.pack(*ts)
    else:
        if sack_perm:
            out += b"\x01\x01\x04\x02"
        if ts is not None:
            out += ts_option(*ts)
    if wscale is not None:
        out += b"\x01\x03\x03" + bytes((wscale,))
    if sack:
        out += b"\x01\x01\x05" + bytes((2 + 8 * len(sack),))
        for left, right in sack:
            out += _II.pack(left & 0xFFFFFFFF, right & 0xFFFFFFFF)
    while len(out) % 4:
        out += b"\x01"
    return bytes(out)
