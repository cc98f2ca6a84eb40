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
With ``shard_of`` steering the device has a second set of queues, one per shard, for bare
SYNs (``syn_queues``): the program returns n + ``shard_of`` for those, so a SYN flood fills
the shard's SYN queue and never the one its established flows arrive on (each queue is a
ring of ``txqueuelen`` frames; the kernel drops what a full one cannot take). The port
reads its data queue first, then a bounded number of SYNs, as the AF_PACKET port reads
its SYN ring (synring.py). Kernel steering keeps one queue set (the kernel's hash spreads
over all queues, it cannot single out SYNs).
Either way a shard must be ready to get a frame of a flow it does not own (kernel
steering, or frames in flight while a queue detaches): the shard layer forwards it
to the owner over the shm rings.
"""
import errno
import fcntl
import os
import select
import socket
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
SIOCSIFTXQLEN = 0x8943
# frames per queue (the kernel's default is 500): the length of the SYN queues, which
# must absorb a flood while the worker is off its core (see TapDevice)
TXQUEUELEN = 4096

READ_SIZE = VNET_LEN + 14 + 65535 + 64


class TapDevice:
    """A multi-queue TAP device with ``nqueues`` queue fds, held by whoever creates it
    (the supervisor): a queue whose fds are all closed detaches and the kernel re-spreads
    flows, so workers get dups (``port(k)``) and the device keeps the originals."""

    def __init__(self, name, nqueues=1, *, netns=None, offload=TUN_F_CSUM | TUN_F_TSO4,
                 steering="shard_of", syn_queues=True, txqueuelen=TXQUEUELEN):
        if len(name) > 15:
            raise ValueError("interface name too long")
        self.name = name
        self.nqueues = nqueues
        self.offload = offload
        self.fds = []
        self.syn_fds = []            # queue n + k: shard k's bare SYNs (shard_of steering)
        self.steering = "kernel"
        self.steering_error = None
        self._prog_fd = -1
        try:
            with _in_netns(netns):
                for _ in range(nqueues):
                    self.fds.append(self._attach())
                if steering == "shard_of":
                    try:
                        self._set_steering(syn_queues)
                    except OSError as e:   # no bpf() rights: the kernel's own flow hash
                        self.steering_error = str(e)
                if txqueuelen:
                    _set_txqueuelen(name, txqueuelen)
        except BaseException:
            self.close()
            raise

    def _attach(self):
        """One more queue (the kernel numbers them in the order they attach)."""
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack(
                "16sH22x", self.name.encode(),
                IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE | IFF_VNET_HDR))
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_LEN))
            fcntl.ioctl(fd, TUNSETOFFLOAD, self.offload)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _set_steering(self, syn_queues):
        from . import ebpf      # (start-up cost: the assembler is loaded only for TAP)
        # loaded before the SYN queues attach: without bpf() rights there are none, and
        # the kernel's hash spreads over the data queues only
        self._prog_fd = ebpf.load_steering(self.nqueues, syn_queues)
        try:
            if syn_queues:
                for _ in range(self.nqueues):
                    self.syn_fds.append(self._attach())
            fcntl.ioctl(self.fds[0], TUNSETSTEERINGEBPF, struct.pack("i", self._prog_fd))
        except OSError:
            for fd in self.syn_fds:
                os.close(fd)     # detaches the queue
            self.syn_fds = []
            os.close(self._prog_fd)
            self._prog_fd = -1
            raise
        self.steering = "shard_of"

    def port(self, k, **kw):
        syn_fd = os.dup(self.syn_fds[k]) if self.syn_fds else -1
        return TapPort(os.dup(self.fds[k]), k, self.offload, syn_fd=syn_fd, **kw)

    def close(self):
        for fd in self.fds + self.syn_fds:
            os.close(fd)
        self.fds = []
        self.syn_fds = []
        if self._prog_fd >= 0:
            os.close(self._prog_fd)
            self._prog_fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _set_txqueuelen(name, qlen):
    """The length of every queue's ring (the kernel resizes those attached)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCSIFTXQLEN, struct.pack("16si20x", name.encode(), qlen))


def _read_into(out, fd, max):
    """Up to ``max`` frames of one queue appended to ``out``: one frame per read()."""
    read, append = os.read, out.append
    try:
        for _ in range(max):
            append(read(fd, READ_SIZE))
    except BlockingIOError:
        pass


class TapPort:
    """One queue of a TAP device, and its SYN queue when it has one (see CONTRACTS.md 2)."""
    __slots__ = ("fd", "syn_fd", "queue", "csum_offload", "gso", "mtu", "stats", "_ep")

    def __init__(self, fd, queue, offload=TUN_F_CSUM | TUN_F_TSO4, mtu=1500, syn_fd=-1):
        self.fd = fd
        self.syn_fd = syn_fd
        self.queue = queue
        self.csum_offload = bool(offload & TUN_F_CSUM)
        self.gso = bool(offload & TUN_F_TSO4)
        self.mtu = mtu
        self.stats = {"rx": 0, "tx": 0, "rx_drops": 0, "tx_drops": 0, "tx_busy": 0, "rx_syn": 0}
        self._ep = None
        if syn_fd >= 0:
            try:
                self._ep = select.epoll()     # the loop wakes for a SYN as for any frame
                for f in (fd, syn_fd):
                    self._ep.register(f, select.EPOLLIN | select.EPOLLERR)
            except BaseException:
                self.close()
                raise

    def fileno(self):
        """What the loop polls: the queue's fd, or an epoll fd over it and the SYN queue."""
        return self._ep.fileno() if self._ep is not None else self.fd

    def rx_burst(self, max=64):
        """Up to ``max`` frames of the data queue, then up to ``max`` bare SYNs: the turn's
        established flows first, SYNs a bounded share of it."""
        out = []
        _read_into(out, self.fd, max)
        if self.syn_fd >= 0:
            n = len(out)
            _read_into(out, self.syn_fd, max)
            self.stats["rx_syn"] += len(out) - n
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
        if self._ep is not None:
            self._ep.close()
            self._ep = None
        for name in ("fd", "syn_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
