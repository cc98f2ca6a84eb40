"""AF_PACKET port: an mmap RX ring per shard, steering decided by ``steer.shard_of``.

Frames cross the boundary as ``virtio_net_hdr + Ethernet`` (PACKET_VNET_HDR), see
CONTRACTS.md 1-2.

Steering (restart-safe by construction, two ways):

- ``steering="filter"`` (default): every shard has its own socket with a classic-BPF
  socket filter that accepts only the flows of that shard (``steer.filter_program``)
  plus every non-IPv4 frame (ARP reaches every shard, so each keeps its own ARP cache).
  No fanout group, so there is no join order to lose: a restarted worker opens a
  fresh socket and gets exactly its flows back. Cost: the kernel runs n small filters
  per frame (JITed; tens of ns each), which is fine for a handful of cores.
- ``FanoutGroup`` (``steering="fanout"``): one PACKET_FANOUT_CBPF group whose program
  returns ``shard_of``. The member index is the join order, and a member that leaves
  moves the last member into its slot, so a worker must never leave. The group's
  sockets are therefore created once, in order, by the process that outlives the
  workers (the supervisor); a worker maps the ring of socket k (inherited fd) with
  ``FanoutGroup.port(k)``. A dead worker's socket stays in the group and its frames
  wait in its ring until the restarted worker re-attaches and resynchronises with the
  kernel's ring position. Non-IPv4 frames go to shard 0 only.

RX: TPACKET_V2 by default: a frame is visible as soon as the kernel wrote it.
TPACKET_V3 (``version=3``) makes a block visible only when it is full or its retire
timer (>= 1 ms) fires: a little less Python per frame, but on a lightly loaded link
every frame waits for the timer -- not worth it for request/response. V2 slots take a
64 KiB GSO frame from a peer with TSO on (512 slots = 34 MB per port; ``frame_size`` can
shrink them if the peer's TSO is off or its gso_max_size is lowered). See
framework/nic/README.md.

TX: ``tx="ring"`` (default): a TPACKET_V2 TX ring on a second, send-only socket of the
port (protocol 0: it receives nothing), mapped beside the RX ring. ``tx_burst`` copies
each frame (virtio-net header first: PACKET_VNET_HDR is on for the TX ring too) into the
next free slot, marks it TP_STATUS_SEND_REQUEST, and one ``send(b"", MSG_DONTWAIT)``
hands the whole run to the driver (a burst of one frame is a plain ``send()``: one
syscall either way, with less to do). The slot's vnet ``hdr_len`` is set to the whole
frame, so the kernel copies the frame into the skb as ``send()`` does instead of lending
the skb the slot's page (a local receiver copies such pages again, at a higher cost).
A separate socket because a socket with a TX ring sends only from the ring, and because
a fresh socket's ring always starts at slot 0 (a ring inherited from a dead worker
would leave the kernel's position unknown). Slots hold one MTU-sized frame (2 KiB for a
1500-byte MTU, 512 slots = 1 MiB); a frame that does not fit (a GSO frame, up to
64 KiB) is sent with a plain ``send()`` on the RX socket, which has no TX ring, right
after the slots before it were flushed, so frames leave in order. After each flush the
slots the kernel did not take are looked at: TP_STATUS_WRONG_FORMAT is a malformed
frame (dropped, counted in ``tx_drops``; the frames after it are written again from
that slot, where the kernel's position stays); a slot still TP_STATUS_SEND_REQUEST
after ENOBUFS/EAGAIN means the driver queue or the socket's send buffer is full: the
burst stops there and the caller keeps the rest, as with ``send()``. No free slot (all
still TP_STATUS_SENDING: the device has not finished them) also stops the burst
(``tx_ring_full``): the caller keeps the frames for the next turn instead of dropping
them, since the device gives slots back as soon as it has sent them while a dropped
TCP segment would cost a retransmission.
``tx="send"``: one ``send()`` per frame on the RX socket (QDISC_BYPASS, ENOBUFS/EAGAIN
end the burst). The kernel refuses Ethernet frames over 65,535 bytes either way.
``stats["tx_syscalls"]`` counts the syscalls TX made. After ``close()`` a port receives
nothing and drops (and counts) whatever it is given.
"""
import ctypes
import errno
import fcntl
import mmap
import os
import select
import socket
import struct

from ..net.wire.vnet import VNET_LEN
from . import steer, synring
from .nsenter import netns as _in_netns

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_LOSS = 14
PACKET_TX_RING = 13
PACKET_VNET_HDR = 15
PACKET_FANOUT = 18
PACKET_QDISC_BYPASS = 20
PACKET_FANOUT_DATA = 22
PACKET_IGNORE_OUTGOING = 23
TPACKET_V2 = 1
TPACKET_V3 = 2
PACKET_FANOUT_CBPF = 6
SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
ETH_P_ALL = 0x0003

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_LOSING = 4
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 1
TP_STATUS_SENDING = 2
TP_STATUS_WRONG_FORMAT = 4
TX_OWNED = TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING | TP_STATUS_WRONG_FORMAT  # not ours to write
TX_UNSENT = TP_STATUS_SEND_REQUEST | TP_STATUS_WRONG_FORMAT   # the kernel did not take it
SO_SNDBUFFORCE = 32

MAX_FRAME = 65536 + 14 + VNET_LEN   # RX slot: a 64 KiB GSO frame (IP total length <= 65535)
MAX_TX = 65535 + VNET_LEN           # send() refuses (ENOBUFS) Ethernet frames over 65535 bytes
TX_DATA = 32                        # a TX slot's frame starts after the tpacket2_hdr (aligned)
TX_HDR_LEN = (TX_DATA + 2) >> 1    # the slot's vnet hdr_len, as a 16-bit index into the slot
TX_SLOT = 2048                      # smallest TX slot: a 1500-MTU frame + vnet + VLAN tag fits
TX_SKB_OVERHEAD = 1024              # send-buffer charge of one in-flight frame beyond its bytes
PAGE = mmap.PAGESIZE

_FPROG = struct.Struct("HxxxxxxQ")
_STATS = struct.Struct("II")   # tpacket_stats: packets, drops


def _align(x, a):
    return (x + a - 1) // a * a


def attach_filter(sock, insns):
    """SO_ATTACH_FILTER with a classic-BPF program (list of (code, jt, jf, k))."""
    buf = ctypes.create_string_buffer(steer.pack_program(insns))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                    _FPROG.pack(len(insns), ctypes.addressof(buf)))


def set_fanout_program(sock, insns):
    buf = ctypes.create_string_buffer(steer.pack_program(insns))
    sock.setsockopt(SOL_PACKET, PACKET_FANOUT_DATA, _FPROG.pack(len(insns), ctypes.addressof(buf)))


class RingSpec:
    """Geometry of the RX ring of one socket."""
    __slots__ = ("version", "frame_size", "frames", "block_size", "blocks", "timeout_ms")

    def __init__(self, version=2, frames=512, frame_size=None, blocks=32, block_size=1 << 20,
                 timeout_ms=1):
        if version not in (2, 3):
            raise ValueError("version must be 2 or 3")
        self.version = version
        self.timeout_ms = timeout_ms
        # V2: one frame per slot, slot big enough for a 64 KiB GSO frame plus headers
        # (tpacket2_hdr + sockaddr_ll + vnet header come before the MAC header).
        fs = frame_size or _align(MAX_FRAME + 128, 16)
        self.frame_size = fs
        if version == 2:
            per_block = 16
            self.block_size = _align(fs * per_block, PAGE)
            self.blocks = max(1, (frames + per_block - 1) // per_block)
            self.frames = self.blocks * (self.block_size // fs)
        else:
            # V3: variable-size packets packed into blocks; a block must hold a 64 KiB frame
            self.block_size = max(_align(block_size, PAGE), _align(MAX_FRAME + 256, PAGE) * 2)
            self.blocks = blocks
            self.frames = 0

    @property
    def rx_bytes(self):
        return self.block_size * self.blocks

    def req(self):
        if self.version == 2:
            return struct.pack("IIII", self.block_size, self.blocks, self.frame_size, self.frames)
        fs = 2048  # V3 ignores tp_frame_size for packing, but checks frame_nr consistency
        return struct.pack("IIIIIII", self.block_size, self.blocks, fs,
                           self.block_size // fs * self.blocks, self.timeout_ms, 0, 0)


def open_socket(ifname, spec: RingSpec, filter_insns=None, qdisc_bypass=True):
    """An AF_PACKET socket configured in the only order the kernel accepts:
    filter, vnet header, version, ring (all before bind), then bind."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: receives nothing yet
    try:
        if filter_insns is not None:
            attach_filter(s, filter_insns)
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)      # before the ring, or EBUSY
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2 if spec.version == 2 else TPACKET_V3)
        s.setsockopt(SOL_PACKET, PACKET_RX_RING, spec.req())
        try:
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # not our own (or siblings') TX
        except OSError:
            pass
        if qdisc_bypass:
            s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        s.bind((ifname, ETH_P_ALL))
        s.setblocking(False)
        return s
    except BaseException:
        s.close()
        raise


def tx_slot_for(mtu):
    """TX slot for one frame of this MTU: tpacket2_hdr, vnet header, Ethernet + VLAN tag."""
    return max(TX_SLOT, _align(TX_DATA + VNET_LEN + 18 + mtu, 16))


class TxRing:
    """A send-only AF_PACKET socket (protocol 0, bound to the device) and its TPACKET_V2 TX
    ring: ``slots`` slots of ``slot_size`` bytes, each a tpacket2_hdr (status at word 0,
    tp_len at word 1) and the frame at ``TX_DATA``. Open it inside the device's namespace."""
    __slots__ = ("sock", "mm", "u32", "u16", "words", "head", "capacity", "slot_size", "kick")

    def __init__(self, ifname, slots=512, slot_size=TX_SLOT, qdisc_bypass=True):
        if slot_size % 16 or slot_size < TX_SLOT:
            raise ValueError(f"TX slot size must be a multiple of 16, at least {TX_SLOT}")
        per_block = max(1, PAGE // slot_size)
        block = _align(slot_size * per_block, PAGE)
        blocks = max(1, (slots + per_block - 1) // per_block)
        nslots = blocks * per_block
        self.slot_size = slot_size
        self.capacity = slot_size - TX_DATA      # the kernel's limit for tp_len
        self.head = 0                            # a new ring: the kernel starts at slot 0 too
        self.mm = self.u32 = self.u16 = None
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.sock = s
        try:
            s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)      # before the ring, or EBUSY
            s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
            s.setsockopt(SOL_PACKET, PACKET_TX_RING,
                         struct.pack("IIII", block, blocks, slot_size, nslots))
            if qdisc_bypass:
                s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            # a frame in flight is charged to the send buffer until the device is done with
            # it: room for a whole ring, or the kernel stops a flush halfway (EAGAIN)
            want = nslots * (slot_size + TX_SKB_OVERHEAD)
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, want)
            except PermissionError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, want)
            s.bind((ifname, 0))          # protocol 0: no receive hook, sends on ifname
            s.setblocking(False)
            self.mm = mmap.mmap(s.fileno(), block * blocks, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            self.close()
            raise
        mv = memoryview(self.mm)
        self.u32 = mv.cast("I")
        self.u16 = mv.cast("H")
        mv.release()
        self.words = [(b * block + k * slot_size) >> 2 for b in range(blocks)
                      for k in range(per_block)]
        self.kick = s.send

    def taken(self, start, run):
        """How many of the ``run`` slots from ``start`` the kernel took (it takes them in
        order and stops at the first it cannot send)."""
        u32, words = self.u32, self.words
        n = len(words)
        i = start
        for k in range(run):
            if u32[words[i]] & TX_UNSENT:
                return k
            i += 1
            if i == n:
                i = 0
        return run

    def rewind(self, at, count):
        """Give back ``count`` untaken slots from ``at``; the kernel's position is ``at``."""
        u32, words = self.u32, self.words
        n = len(words)
        i = at
        for _ in range(count):
            u32[words[i]] = TP_STATUS_AVAILABLE
            i += 1
            if i == n:
                i = 0
        self.head = at

    def in_flight(self):
        """Slots the kernel still holds (SEND_REQUEST or SENDING)."""
        u32 = self.u32
        return sum(1 for w in self.words if u32[w] & TX_OWNED)

    def close(self):
        if self.u32 is not None:
            self.u32.release()
            self.u16.release()
            self.u32 = self.u16 = None
        if self.mm is not None:
            self.mm.close()    # frames in flight keep their pages: the kernel holds references
            self.mm = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class AfPacketPort:
    """One shard's AF_PACKET port. See the module docstring for steering and rings.

    ``AfPacketPort(ifname, queue, nqueues)`` opens its own filtered socket (restart-safe);
    ``FanoutGroup(...).port(k)`` attaches to a fanout member held by the supervisor.
    ``tx="ring"`` (default) batches a burst into one syscall, ``tx="send"`` sends each frame.
    """

    def __init__(self, ifname, queue=0, nqueues=1, fanout_group=None, version=2, *,
                 netns=None, frames=512, frame_size=None, blocks=32, block_size=1 << 20,
                 timeout_ms=1, tx="ring", tx_frames=512, tx_slot_size=None, qdisc_bypass=True,
                 mtu=None, csum_offload=True, gso=True, sock=None, spec=None, non_ip=True,
                 syn_ring=True):
        if fanout_group is not None and sock is None:
            raise ValueError("fanout: create a FanoutGroup(...) and call .port(queue)")
        if not 0 <= queue < nqueues:
            raise ValueError("queue out of range")
        if tx not in ("ring", "send"):
            raise ValueError('tx must be "ring" or "send"')
        self.ifname = ifname
        self.queue = queue
        self.nqueues = nqueues
        self.csum_offload = csum_offload
        self.gso = gso
        self.tx_mode = tx
        self.stats = {"rx": 0, "tx": 0, "rx_drops": 0, "tx_drops": 0, "rx_truncated": 0,
                      "rx_kernel_drops": 0, "tx_busy": 0, "tx_ring_full": 0, "tx_syscalls": 0,
                      "rx_syn": 0, "rx_syn_drops": 0}
        self._mm = None
        self._syn = None          # the bare-SYN ring (synring.py), own-socket V2 ports only
        self._ep = None
        self._empty = 0
        self._u32 = self._u16 = None
        self._txr = None
        self._owns_sock = sock is None
        try:
            with _in_netns(netns):
                if sock is None:
                    spec = RingSpec(version, frames, frame_size, blocks, block_size, timeout_ms)
                    syn_ring = syn_ring and version == 2
                    prog = (synring.main_filter(nqueues, queue, non_ip) if syn_ring else
                            steer.filter_program(nqueues, queue, non_ip))
                    self.sock = open_socket(ifname, spec, prog, qdisc_bypass)
                    if syn_ring:
                        self._syn = synring.SynRing(ifname, nqueues, queue, qdisc_bypass,
                                                    open_socket, RingSpec)
                        self._ep = synring.poller(self.sock, self._syn.sock)
                    self.mtu = mtu or _get_mtu(self.sock, ifname)
                    self._resync = False
                else:
                    self.sock = sock
                    self.mtu = mtu or 1500
                    self._resync = True  # re-attaching to a ring someone else consumed
                self.spec = spec
                self.version = spec.version
                if tx == "ring":
                    self._txr = TxRing(ifname, tx_frames, tx_slot_size or tx_slot_for(self.mtu),
                                       qdisc_bypass)
            self._map()
        except BaseException:
            self.close()
            raise

    # -- setup --------------------------------------------------------------------
    def _map(self):
        spec = self.spec
        self._mm = mmap.mmap(self.sock.fileno(), spec.rx_bytes,
                             mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        mv = memoryview(self._mm)
        self._u32 = mv.cast("I")    # index access is cheaper than unpack_from on the mmap
        self._u16 = mv.cast("H")
        mv.release()
        if spec.version == 2:
            fpb = spec.block_size // spec.frame_size
            self._offs = [b * spec.block_size + i * spec.frame_size
                          for b in range(spec.blocks) for i in range(fpb)]
            self._words = [o >> 2 for o in self._offs]
            self._head = 0
        else:
            self._boffs = [b * spec.block_size for b in range(spec.blocks)]
            self._blk = 0
            self._pkt_left = 0   # packets left in the current (user-owned) block
            self._pkt_off = 0
        self._send = self.sock.send
        self.rx_burst = self._rx_v2 if spec.version == 2 else self._rx_v3
        if self._syn is not None:
            self.rx_burst = self._rx_with_syns
        self.tx_burst = self._tx_ring if self._txr is not None else self._tx_send

    # -- interface ----------------------------------------------------------------
    def fileno(self):
        """What the loop polls: the socket, or an epoll fd over both with a SYN ring."""
        return self._ep.fileno() if self._ep is not None else self.sock.fileno()

    def close(self):
        """Idempotent. Frames already flushed still leave (the kernel holds them); afterwards
        rx_burst returns nothing and tx_burst drops and counts."""
        self.rx_burst = self._rx_closed
        self.tx_burst = self._tx_closed
        for name in ("_u32", "_u16"):
            v = getattr(self, name, None)
            if v is not None:
                v.release()
                setattr(self, name, None)
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._txr is not None:
            self._txr.close()
            self._txr = None
        if self._syn is not None:
            self._syn.close()
            self._syn = None
        if self._ep is not None:
            self._ep.close()
            self._ep = None
        if getattr(self, "sock", None) is not None:
            self.sock.close()   # a FanoutGroup port closes only its dup; the group keeps the member
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def kernel_stats(self):
        """PACKET_STATISTICS since the last call: (packets, drops) seen by the kernel."""
        p, d = _STATS.unpack(self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        if self._syn is not None:
            sp, sd = _STATS.unpack(self._syn.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            self._syn.losing = False
            self.stats["rx_syn_drops"] += sd
            p += sp
            d += sd
        self.stats["rx_kernel_drops"] += d
        self.stats["rx_drops"] += d
        return p, d

    def tx_in_flight(self):
        """TX ring slots the kernel still holds (0 with ``tx="send"`` or once closed)."""
        return self._txr.in_flight() if self._txr is not None else 0

    # -- RX -----------------------------------------------------------------------
    def _rx_v2(self, max=64):
        """Copy up to ``max`` frames out of the ring; each slot goes back at once."""
        u32, u16, mm, words = self._u32, self._u16, self._mm, self._words
        n = len(words)
        i = self._head
        out = []
        append = out.append
        if self._resync:
            i = self._find_head_v2()
        try:
            for _ in range(max):
                w = words[i]                 # tpacket2_hdr as 32-bit words
                st = u32[w]
                if not st & TP_STATUS_USER:
                    break
                snap = u32[w + 2]
                if snap == u32[w + 1]:
                    start = (w << 2) + u16[(w << 1) + 6] - VNET_LEN   # tp_mac - vnet header
                    append(mm[start:start + VNET_LEN + snap])
                else:   # truncated: slot too small for this frame
                    self.stats["rx_truncated"] += 1
                    self.stats["rx_drops"] += 1
                if st & TP_STATUS_LOSING:
                    self.kernel_stats()
                u32[w] = TP_STATUS_KERNEL
                i += 1
                if i == n:
                    i = 0
        finally:
            self._head = i
        self.stats["rx"] += len(out)
        return out

    def _rx_with_syns(self, max=64):
        """Up to ``max`` frames of the main ring, then up to ``max`` bare SYNs (synring.py):
        the turn's established flows first, SYNs a bounded share of it."""
        out = self._rx_v2(max)
        n = len(out)
        syn = self._syn
        syn.rx(out, max)
        got = len(out) - n
        if got:
            self.stats["rx"] += got
            self.stats["rx_syn"] += got
            if syn.truncated:
                self.stats["rx_truncated"] += syn.truncated
                self.stats["rx_drops"] += syn.truncated
                syn.truncated = 0
            if syn.losing:
                self.kernel_stats()
            self._empty = 0
        elif not n:
            self._empty += 1
            if self._empty >= 64:
                self._check_gone()
        else:
            self._empty = 0
        return out

    def _check_gone(self):
        """The loop polls an epoll fd, which reports a socket's error only as readable:
        after many empty polls in a row read the main socket's error (clears it) and
        raise ENODEV (the link was removed), as the loop does for a failing port fd."""
        self._empty = 0
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == errno.ENODEV:
            raise OSError(err, f"AF_PACKET port {self.ifname}: {os.strerror(err)}")

    def _find_head_v2(self):
        """After re-attaching: the kernel's next slot is the first user-owned slot after a
        kernel-owned one (or unknown if all are free: then keep looking on later calls)."""
        u32, offs = self._u32, self._offs
        n = len(offs)
        user = [bool(u32[o >> 2] & TP_STATUS_USER) for o in offs]
        if all(user):
            self._resync = False
            return self._head
        for i in range(n):
            if user[i] and not user[i - 1]:
                self._resync = False
                return i
        return self._head

    def _rx_v3(self, max=64):
        u32, u16, mm, boffs = self._u32, self._u16, self._mm, self._boffs
        nb = len(boffs)
        out = []
        append = out.append
        if self._resync:
            self._find_block_v3()
        left, off, b = self._pkt_left, self._pkt_off, self._blk
        try:
            while len(out) < max:
                if not left:
                    boff = boffs[b]
                    bw = boff >> 2
                    st = u32[bw + 2]
                    if not st & TP_STATUS_USER:
                        break
                    if st & TP_STATUS_LOSING:
                        self.kernel_stats()
                    left = u32[bw + 3]
                    off = boff + u32[bw + 4]
                    if not left:        # empty block (timer retired it with nothing in)
                        u32[bw + 2] = TP_STATUS_KERNEL
                        b += 1
                        if b == nb:
                            b = 0
                        continue
                w = off >> 2
                snap = u32[w + 3]
                mac = u16[(off >> 1) + 12]
                if snap == u32[w + 4]:
                    start = off + mac - VNET_LEN
                    append(mm[start:start + VNET_LEN + snap])
                else:
                    self.stats["rx_truncated"] += 1
                    self.stats["rx_drops"] += 1
                off += u32[w]
                left -= 1
                if not left:            # block consumed: give it back now
                    u32[(boffs[b] >> 2) + 2] = TP_STATUS_KERNEL
                    b += 1
                    if b == nb:
                        b = 0
        finally:
            self._pkt_left, self._pkt_off, self._blk = left, off, b
        self.stats["rx"] += len(out)
        return out

    def _find_block_v3(self):
        u32, boffs = self._u32, self._boffs
        user = [bool(u32[(o >> 2) + 2] & TP_STATUS_USER) for o in boffs]
        if all(user):
            self._resync = False
            return
        for i in range(len(boffs)):
            if user[i] and not user[i - 1]:
                self._blk, self._pkt_left, self._resync = i, 0, False
                return

    # -- TX -----------------------------------------------------------------------
    def _tx_send(self, frames):
        """send() each frame (vnet header + Ethernet). Returns frames consumed; a full
        device queue (ENOBUFS/EAGAIN) ends the burst, a malformed frame is dropped."""
        send = self._send
        n = 0
        sent = 0
        busy = 0
        try:
            for f in frames:
                try:
                    send(f)
                    sent += 1
                except (BlockingIOError, InterruptedError):
                    busy = 1
                    break
                except OSError as e:
                    if e.errno == errno.ENOBUFS and len(f) <= MAX_TX:
                        busy = 1                      # device queue full (QDISC_BYPASS)
                        break
                    self.stats["tx_drops"] += 1   # EINVAL/EMSGSIZE/too big: this frame is bad
                n += 1
        finally:
            self.stats["tx"] += sent
            self.stats["tx_busy"] += busy
            self.stats["tx_syscalls"] += n + busy
        return n

    def _tx_ring(self, frames):
        """Copy frames into free TX slots, flush each run of slots with one send(); a frame
        too big for a slot goes out with send() on the RX socket after the run before it.
        Returns frames consumed (sent or dropped as malformed); see TX in the module doc."""
        if len(frames) == 1:     # one frame, one syscall either way: send() has less to do
            return self._tx_send(frames)
        ring = self._txr
        u32 = ring.u32
        u16 = ring.u16
        mm = ring.mm
        words = ring.words
        kick = ring.kick
        nslots = len(words)
        cap = ring.capacity
        stats = self.stats
        total = len(frames)
        done = 0
        while done < total:
            start = ring.head
            i = start
            j = done
            while j < total:                 # the per-frame loop: one copy, three stores
                f = frames[j]
                ln = len(f)
                if ln > cap or ln < VNET_LEN:
                    break
                w = words[i]
                if u32[w] & TX_OWNED:
                    break
                off = (w << 2) + TX_DATA
                mm[off:off + ln] = f
                # hdr_len = the whole frame: the kernel copies it into the skb, as send()
                # does, instead of lending it the slot's page (which a local receiver
                # must then copy, at a higher cost)
                u16[(w << 1) + TX_HDR_LEN] = ln - VNET_LEN
                u32[w + 1] = ln              # tp_len, then the status that hands it over
                u32[w] = TP_STATUS_SEND_REQUEST
                j += 1
                i += 1
                if i == nslots:
                    i = 0
            run = j - done
            if run:
                ring.head = i
                err = 0
                try:
                    kick(b"", socket.MSG_DONTWAIT)
                except OSError as e:
                    err = e.errno
                stats["tx_syscalls"] += 1
                if not u32[words[i - 1]] & TX_UNSENT:    # the last slot went: all of them did
                    stats["tx"] += run
                    done = j
                    continue
                k = ring.taken(start, run)
                stats["tx"] += k
                at = (start + k) % nslots
                bad = u32[words[at]] & TP_STATUS_WRONG_FORMAT
                ring.rewind(at, run - k)
                if bad:                      # the frames after it go again from slot ``at``
                    stats["tx_drops"] += 1
                    done += k + 1
                    continue
                if err == 0 or err == errno.EAGAIN or err == errno.ENOBUFS:
                    stats["tx_busy"] += 1    # send buffer or driver queue full: keep the rest
                    return done + k
                stats["tx_drops"] += run - k   # the device refuses everything (down, gone)
                done += run
                continue
            ln = len(frames[done])
            if ln > cap or ln < VNET_LEN:
                if not self._send_unslotted(frames[done]):
                    return done
                done += 1
                continue
            stats["tx_ring_full"] += 1       # every slot still SENDING: keep the rest
            return done
        return done

    def _send_unslotted(self, f):
        """send() one frame that a TX slot does not take (a GSO frame too big for it, or
        too short to be a frame) on the RX socket, which has no TX ring. False: the
        device queue is full, keep it."""
        stats = self.stats
        stats["tx_syscalls"] += 1
        try:
            self._send(f)
        except (BlockingIOError, InterruptedError):
            stats["tx_busy"] += 1
            return False
        except OSError as e:
            if e.errno == errno.ENOBUFS and len(f) <= MAX_TX:
                stats["tx_busy"] += 1
                return False
            stats["tx_drops"] += 1
            return True
        stats["tx"] += 1
        return True

    def _rx_closed(self, max=64):
        return []

    def _tx_closed(self, frames):
        self.stats["tx_drops"] += len(frames)
        return len(frames)


class FanoutGroup:
    """A PACKET_FANOUT_CBPF group of ``n`` sockets, created in member order and held by
    the process that outlives the workers, so no member ever leaves (see module doc).
    The group holds the receive side only: each port opens its own TX ring."""

    def __init__(self, ifname, n, group_id=None, version=2, *, netns=None, frames=512,
                 frame_size=None, blocks=32, block_size=1 << 20, timeout_ms=1,
                 qdisc_bypass=True, mtu=None):
        self.ifname, self.n = ifname, n
        self.netns = netns
        self.group_id = group_id if group_id is not None else (os.getpid() & 0xFFFF)
        self.spec = RingSpec(version, frames, frame_size, blocks, block_size, timeout_ms)
        self.socks = []
        prog = steer.fanout_program(n)
        try:
            with _in_netns(netns):
                for k in range(n):
                    # until every member has joined, the kernel spreads by member count:
                    # a per-socket filter keeps foreign flows out meanwhile
                    s = open_socket(ifname, self.spec, steer.filter_program(n, k), qdisc_bypass)
                    self.socks.append(s)
                    s.setsockopt(SOL_PACKET, PACKET_FANOUT,
                                 self.group_id | (PACKET_FANOUT_CBPF << 16))
                    set_fanout_program(s, prog)
            for s in self.socks:
                s.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
            self.mtu = mtu or _get_mtu(self.socks[0], ifname)
        except BaseException:
            self.close()
            raise

    def port(self, k, **caps):
        """Attach shard ``k`` to its member socket (a dup: closing the port keeps the member).
        The port's TX ring socket is opened in the group's namespace."""
        caps.setdefault("netns", self.netns)
        s = self.socks[k].dup()
        s.setblocking(False)
        return AfPacketPort(self.ifname, k, self.n, fanout_group=self.group_id, sock=s,
                            spec=self.spec, mtu=self.mtu, **caps)

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = []


def _get_mtu(sock, ifname):
    """SIOCGIFMTU through the port's own socket (it lives in the interface's namespace;
    /sys/class/net shows the namespace /sys was mounted in)."""
    try:
        r = fcntl.ioctl(sock.fileno(), 0x8921, struct.pack("16si12x", ifname.encode(), 0))
        return struct.unpack_from("i", r, 16)[0]
    except OSError:
        return 1500


def wait_readable(port, timeout):
    """Block until the port has frames (test/bench helper)."""
    r, _, _ = select.select([port.fileno()], [], [], timeout)
    return bool(r)
