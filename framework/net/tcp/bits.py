"""Shared constants of the TCP connection modules: sequence-space arithmetic, the
Connection.bits flags and precompiled Structs."""
import struct

try:
    import cython
except ImportError:         # plain Python on a machine without Cython
    from framework import _cython_shim as cython

from ..wire.tcp import TCP_HDR

if not cython.compiled:        # compiled: the same values as C constants (bits.pxd)
    M = 0xFFFFFFFF
    HALF = 0x80000000
    WRAP = 0x100000000

    # Connection.bits
    B_PENDING = 0x1      # queued in layer._pending for output
    B_ACK_NOW = 0x2      # an ACK must go out at the next output
    B_RD_EV = 0x4        # EV_READABLE queued and not yet followed by recv()
    B_WANT_WR = 0x8      # send() was short: EV_WRITABLE when the buffer drains
    B_APP_CLOSED = 0x10  # close() called: discard further data, no more data events
    B_PASSIVE = 0x20     # created by a listener
    B_TS = 0x40          # timestamps negotiated
    B_DONE = 0x80        # final event (CLOSED/RESET/ERROR) delivered, or aborted by the app
    B_RECOVERY = 0x100   # NewReno fast recovery
    B_KA = 0x200         # keep-alive on
    B_NAGLE = 0x400      # Nagle on
    B_WS = 0x800         # window scaling negotiated (peer sent WS)
    B_EOF = 0x1000       # peer FIN received
    B_ESTAB = 0x2000     # reached ESTABLISHED at least once
    B_SACK = 0x4000      # SACK negotiated (both sent SACK-permitted)
    B_PTO = 0x8000       # t_rtx is a tail-loss-probe timeout, not the RTO
    B_TLP = 0x10000      # a tail loss probe is out, not yet answered
    B_CWLTD = 0x20000    # the last output stopped at cwnd with data left (cwnd is in use)

_pack = TCP_HDR.pack
_ts_pack = struct.Struct("!4sII").pack
_ii_unpack = struct.Struct("!II").unpack_from
_ii_pack = struct.Struct("!II").pack

_EMPTY = b""
