"""Multi-queue TAP port: one queue fd per shard.

The TAP device is the kernel's side of the link (it gets the host address); the
stack reads what the kernel transmits into the device and writes what the kernel
should receive. IFF_VNET_HDR + TUNSETOFFLOAD(csum|tso4) lets the kernel hand us
checksum-partial and 64 KiB GSO frames and take ours the same way.

Steering with TAP is the kernel's, not ``steer.shard_of``:
- without a steering program (``steering="kernel"``) the kernel picks the queue from its own symmetric flow
  hash (random key per boot, not computable from Python) -- and it *learns*: when a
  shard writes a frame of a flow into its queue, the kernel sends that flow's next
  frames to the same queue (tun flow table, entries expire after ~3 s idle). So a
  connection we open (connect(): the SYN is written by the calling shard) comes back
  to the caller as long as we keep writing; a connection the kernel opens lands
  where its hash says.
- ``steering="shard_of"`` (default) loads an eBPF socket-filter program (hand-assembled from the
  same function as the AF_PACKET cBPF program, see ``ebpf.py``) with TUNSETSTEERINGEBPF:
  the queue is then exactly ``shard_of`` (the program's return value mod the number of
  queues), like with AF_PACKET. If that load fails (no bpf() rights), the port
  falls back to the kernel's choice and ``TapDevice.steering`` says "kernel".
Either way a shard must be ready to get a frame of a flow it does not own (kernel
steering, or frames in flight while a queue detaches): the shard layer forwards it
to the owner over the shm rings.
"""
import errno
import fcntl
import os
import struct

from ..net.wire.vnet import VNET_LEN
from .nsenter import netns as _in_netns

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUNSETSTEERINGEBPF = 0x800454E0
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02

READ_SIZE = VNET_LEN + 14 + 65535 + 64


class TapDevice:
    """A multi-queue TAP device with ``nqueues`` queue fds, held by whoever creates it
    (the supervisor): a queue whose fds are all closed detaches and the kernel re-spreads
    flows, so workers get dups (``port(k)``) and the device keeps the originals."""

    def __init__(self, name, nqueues=1, *, netns=None, offload=TUN_F_CSUM | TUN_F_TSO4,
                 steering="shard_of"):
        if len(name) > 15:
            raise ValueError("interface name too long")
        self.name = name
        self.nqueues = nqueues
        self.offload = offload
        self.fds = []
        self.steering = "kernel"
        self.steering_error = None
        self._prog_fd = -1
        try:
            with _in_netns(netns):
                for _ in range(nqueues):
                    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
                    self.fds.append(fd)
                    fcntl.ioctl(fd, TUNSETIFF, struct.pack(
                        "16sH22x", name.encode(), IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE | IFF_VNET_HDR))
                    fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_LEN))
                    fcntl.ioctl(fd, TUNSETOFFLOAD, offload)
            if steering == "shard_of":
                try:
                    self._set_steering()
                except OSError as e:       # no bpf() rights: the kernel's own flow hash
                    self.steering_error = str(e)
        except BaseException:
            self.close()
            raise

    def _set_steering(self):
        from . import ebpf      # (start-up cost: the assembler is loaded only for TAP)
        self._prog_fd = ebpf.load_steering(self.nqueues)
        fcntl.ioctl(self.fds[0], TUNSETSTEERINGEBPF, struct.pack("i", self._prog_fd))
        self.steering = "shard_of"

    def port(self, k, **kw):
        return TapPort(os.dup(self.fds[k]), k, self.offload, **kw)

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        if self._prog_fd >= 0:
            os.close(self._prog_fd)
            self._prog_fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TapPort:
    """One queue of a TAP device (see CONTRACTS.md 2)."""
    __slots__ = ("fd", "queue", "csum_offload", "gso", "mtu", "stats")

    def __init__(self, fd, queue, offload=TUN_F_CSUM | TUN_F_TSO4, mtu=1500):
        self.fd = fd
        self.queue = queue
        self.csum_offload = bool(offload & TUN_F_CSUM)
        self.gso = bool(offload & TUN_F_TSO4)
        self.mtu = mtu
        self.stats = {"rx": 0, "tx": 0, "rx_drops": 0, "tx_drops": 0, "tx_busy": 0}

    def fileno(self):
        return self.fd

    def rx_burst(self, max=64):
        read, fd = os.read, self.fd
        out = []
        append = out.append
        try:
            for _ in range(max):
                append(read(fd, READ_SIZE))   # one frame per read
        except BlockingIOError:
            pass
        self.stats["rx"] += len(out)
        return out

    def tx_burst(self, frames):
        write, fd = os.write, self.fd
        n = 0
        for f in frames:
            try:
                write(fd, f)
            except BlockingIOError:
                self.stats["tx_busy"] += 1
                break
            except OSError as e:
                if e.errno in (errno.ENOBUFS, errno.EAGAIN):
                    self.stats["tx_busy"] += 1
                    break
                self.stats["tx_drops"] += 1   # EINVAL: malformed vnet header / frame
                n += 1
                continue
            n += 1
            self.stats["tx"] += 1
        return n

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
