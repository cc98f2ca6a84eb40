"""virtio_net_hdr: the 10-byte header every frame carries across the port boundary.

Both AF_PACKET (PACKET_VNET_HDR) and TAP (IFF_VNET_HDR) speak it, so every port
hands the stack ``vnet header + Ethernet frame`` and takes the same back. That
lets the stack ask for checksum offload and GSO without knowing the device.
"""
import struct

VNET_HDR = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_LEN = 10

F_NEEDS_CSUM = 1   # L4 checksum field holds the pseudo-header sum; finish it on the way out
F_DATA_VALID = 2   # checksum already verified (or the frame never left this host)

GSO_NONE = 0
GSO_TCPV4 = 1

PLAIN = bytes(VNET_LEN)  # no offload: a complete frame


def csum_partial_hdr(csum_start: int, csum_offset: int) -> bytes:
    return VNET_HDR.pack(F_NEEDS_CSUM, GSO_NONE, 0, 0, csum_start, csum_offset)


def gso_tcpv4_hdr(hdr_len: int, gso_size: int, csum_start: int) -> bytes:
    return VNET_HDR.pack(F_NEEDS_CSUM, GSO_TCPV4, hdr_len, gso_size, csum_start, 16)


def csum_trusted(frame) -> bool:
    """True when the receiver must not verify the L4 checksum of this frame."""
    return bool(frame[0] & (F_NEEDS_CSUM | F_DATA_VALID))
