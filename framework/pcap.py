"""Per-shard packet capture: every frame in and out, as a standard pcap file.

``--pcap DIR`` gives each shard ``DIR/shard<k>.pcap`` (classic libpcap format, magic
0xa1b2c3d4, microsecond timestamps, LINKTYPE_ETHERNET), readable by tcpdump, Wireshark
and scapy's rdpcap. Frames cross the port boundary with a 10-byte virtio_net_hdr in front
(CONTRACTS 1); the writer strips it, so the file holds plain Ethernet frames.

What the file shows is what crossed the port, as tcpdump on the interface would: a TX
frame with ``F_NEEDS_CSUM`` still carries the partial (pseudo-header) TCP checksum, and a
GSO frame is one big frame, not its segments.

Size cap and rotation: when a file would grow past ``max_bytes`` it is renamed to
``shard<k>.pcap.1`` (older ones shift to .2, ...; beyond ``max_files`` they are removed)
and a fresh file with its own header starts, so every file is a complete capture on its
own. Disk use per shard stays below ``max_files * max_bytes`` (+ one frame).

Cost: one Struct.pack and two buffered writes per frame, the wall clock read once per
batch (the loop passes it in); the buffer goes to the kernel at ``flush()`` (the worker
calls it when it publishes its stats) and when it fills.
"""
import os
import struct
import time

from framework.net.wire.vnet import VNET_LEN

MAGIC_US = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
SNAPLEN = 262144            # GSO frames reach 64 KiB + headers
_FILE_HDR = struct.Struct("<IHHiIII")
_REC_HDR = struct.Struct("<IIII")
FILE_HDR_LEN = _FILE_HDR.size   # 24
REC_HDR_LEN = _REC_HDR.size     # 16


def file_header(snaplen=SNAPLEN, linktype=LINKTYPE_ETHERNET):
    return _FILE_HDR.pack(MAGIC_US, 2, 4, 0, 0, snaplen, linktype)


class PcapWriter:
    """One shard's capture. ``write(frames, ts)`` with vnet-headed frames."""

    __slots__ = ("directory", "shard", "path", "max_bytes", "max_files", "strip",
                 "snaplen", "_f", "_size", "frames", "rotations", "_pack")

    def __init__(self, directory, shard, max_bytes=64 << 20, max_files=4, strip=VNET_LEN,
                 snaplen=SNAPLEN):
        if max_bytes < FILE_HDR_LEN + REC_HDR_LEN + 64:
            raise ValueError(f"pcap size cap {max_bytes} is too small")
        if max_files < 1:
            raise ValueError("max_files must be at least 1")
        self.directory = directory
        self.shard = shard
        self.path = os.path.join(directory, f"shard{shard}.pcap")
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.strip = strip
        self.snaplen = snaplen
        self.frames = 0
        self.rotations = 0
        self._pack = _REC_HDR.pack
        self._f = None
        os.makedirs(directory, exist_ok=True)
        # a capture of a previous incarnation of the shard (a crash, a restart) is rotated
        # away, not overwritten: the frames before a crash are the interesting ones
        if os.path.exists(self.path) and os.path.getsize(self.path) > FILE_HDR_LEN:
            self._shift()
        self._open_fresh()

    def _open_fresh(self):
        # buffered: one write() syscall per ~64 KiB
        self._f = open(self.path, "wb", buffering=1 << 16)
        self._f.write(file_header(self.snaplen))
        self._size = FILE_HDR_LEN

    def _shift(self):
        """shard.pcap -> .1 -> .2 ...; the oldest beyond max_files is removed."""
        keep = self.max_files - 1      # rotated files kept besides the live one
        if keep <= 0:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            return
        oldest = f"{self.path}.{keep}"
        try:
            os.unlink(oldest)
        except FileNotFoundError:
            pass
        for i in range(keep - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i + 1}")
        if os.path.exists(self.path):
            os.replace(self.path, f"{self.path}.1")

    def rotate(self):
        self._f.close()
        self._shift()
        self.rotations += 1
        self._open_fresh()

    def write(self, frames, ts=None):
        """Append frames (each with the vnet header unless strip=0), all stamped ``ts``
        (seconds since the epoch; default: now)."""
        if not frames:
            return
        if ts is None:
            ts = time.time()
        sec = int(ts)
        usec = int((ts - sec) * 1_000_000)
        if usec >= 1_000_000:   # float rounding at the top of a second
            sec, usec = sec + 1, usec - 1_000_000
        strip = self.strip
        snap = self.snaplen
        pack = self._pack
        w = self._f.write
        size = self._size
        cap = self.max_bytes
        for fr in frames:
            orig = len(fr) - strip
            if orig <= 0:
                continue
            incl = orig if orig <= snap else snap
            rec = REC_HDR_LEN + incl
            if size + rec > cap and size > FILE_HDR_LEN:
                self._size = size
                self.rotate()
                w = self._f.write
                size = self._size
            w(pack(sec, usec, incl, orig))
            w(memoryview(fr)[strip:strip + incl])
            size += rec
        self._size = size
        self.frames += len(frames)

    def flush(self):
        if self._f is not None:
            self._f.flush()

    def reopen(self):
        """After an outside rotation (logrotate, SIGUSR1): start a fresh file at path."""
        if self._f is not None:
            self._f.close()
        if os.path.exists(self.path) and os.path.getsize(self.path) > FILE_HDR_LEN:
            self._shift()
        self._open_fresh()

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None




class PcapPort:
    """A port wrapped with a PcapWriter (smoltcp's ``PcapWriter<D: Device>``): every
    frame received or offered for sending is captured; the capture reaches the disk
    whenever the shard goes idle."""

    def __init__(self, port, writer):
        self.inner = port
        self.writer = writer

    def __getattr__(self, name):     # queue, csum_offload, gso, mtu, stats
        return getattr(self.inner, name)

    def rx_burst(self, max=64):
        frames = self.inner.rx_burst(max)
        if frames:
            self.writer.write(frames)
        return frames

    def tx_burst(self, frames):
        self.writer.write(frames)
        return self.inner.tx_burst(frames)

    def idle(self):
        self.writer.flush()

    def fileno(self):
        return self.inner.fileno()

    def close(self):
        self.writer.close()
        self.inner.close()
