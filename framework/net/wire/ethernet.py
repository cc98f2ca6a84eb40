"""Ethernet II header format (no logic).

Frames at the port boundary are ``vnet header (10 bytes) + Ethernet`` (CONTRACTS 1),
so the Ethernet header of a received frame starts at ``VNET_LEN``.
"""
import struct

ETH = struct.Struct("!6s6sH")  # dst, src, ethertype
ETH_LEN = 14

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_IPV6 = 0x86DD

BROADCAST = b"\xff" * 6
ZERO_MAC = bytes(6)


def mac_to_bytes(mac) -> bytes:
    """``"02:00:00:00:00:01"`` or 6 bytes -> 6 bytes."""
    if isinstance(mac, (bytes, bytearray)):
        if len(mac) != 6:
            raise ValueError(f"MAC must be 6 bytes, got {len(mac)}")
        return bytes(mac)
    b = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(b) != 6:
        raise ValueError(f"bad MAC {mac!r}")
    return b


def mac_to_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def is_multicast(mac: bytes) -> bool:
    """Group bit set: broadcast or multicast."""
    return bool(mac[0] & 1)


def build(dst: bytes, src: bytes, ethertype: int) -> bytes:
    return ETH.pack(dst, src, ethertype)


def parse(buf, off: int = 0):
    """-> (dst, src, ethertype)"""
    return ETH.unpack_from(buf, off)
