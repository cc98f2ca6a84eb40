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

TX: ``send()`` per frame on a non-blocking socket with PACKET_QDISC_BYPASS (ENOBUFS /
EAGAIN = stop the burst, the caller keeps the rest): as cheap as the TX ring without
a second 34 MB ring; the ring stays available (``tx="ring"``). The kernel refuses
Ethernet frames over 65,535 bytes.
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
from . import steer
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
TP_STATUS_SEND_REQUEST = 1

MAX_FRAME = 65536 + 14 + VNET_LEN   # RX slot: a 64 KiB GSO frame (IP total length <= 65535)
MAX_TX = 65535 + VNET_LEN           # send() refuses (ENOBUFS) Ethernet frames over 65535 bytes
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
    """Geometry of the RX (and optional TX) ring of one socket."""
    __slots__ = ("version", "frame_size", "frames", "block_size", "blocks", "timeout_ms",
                 "tx_frames", "tx_block_size", "tx_blocks")

    def __init__(self, version=2, frames=512, frame_size=None, blocks=32, block_size=1 << 20,
                 timeout_ms=1, tx_frames=0):
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
        self.tx_frames = tx_frames
        if tx_frames:
            per_block = 16
            self.tx_block_size = _align(fs * per_block, PAGE)
            self.tx_blocks = max(1, (tx_frames + per_block - 1) // per_block)
            self.tx_frames = self.tx_blocks * (self.tx_block_size // fs)
        else:
            self.tx_block_size = self.tx_blocks = 0

    @property
    def rx_bytes(self):
        return self.block_size * self.blocks

    @property
    def tx_bytes(self):
        return self.tx_block_size * self.tx_blocks

    def req(self, tx=False):
        if tx:
            if self.version == 2:
                return struct.pack("IIII", self.tx_block_size, self.tx_blocks, self.frame_size,
                                   self.tx_frames)
            return struct.pack("IIIIIII", self.tx_block_size, self.tx_blocks, self.frame_size,
                               self.tx_frames, 0, 0, 0)
        if self.version == 2:
            return struct.pack("IIII", self.block_size, self.blocks, self.frame_size, self.frames)
        fs = 2048  # V3 ignores tp_frame_size for packing, but checks frame_nr consistency
        return struct.pack("IIIIIII", self.block_size, self.blocks, fs,
                           self.block_size // fs * self.blocks, self.timeout_ms, 0, 0)


def open_socket(ifname, spec: RingSpec, filter_insns=None, qdisc_bypass=True):
    """An AF_PACKET socket configured in the only order the kernel accepts:
    filter, vnet header, version, rings (all before bind), then bind."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: receives nothing yet
    try:
        if filter_insns is not None:
            attach_filter(s, filter_insns)
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)      # before the ring, or EBUSY
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2 if spec.version == 2 else TPACKET_V3)
        if spec.tx_frames:
            s.setsockopt(SOL_PACKET, PACKET_LOSS, 1)      # skip a malformed TX frame, don't stall
        s.setsockopt(SOL_PACKET, PACKET_RX_RING, spec.req())
        if spec.tx_frames:
            s.setsockopt(SOL_PACKET, PACKET_TX_RING, spec.req(tx=True))
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


class AfPacketPort:
    """One shard's AF_PACKET port. See the module docstring for steering and rings.

    ``AfPacketPort(ifname, queue, nqueues)`` opens its own filtered socket (restart-safe);
    ``FanoutGroup(...).port(k)`` attaches to a fanout member held by the supervisor.
    """

    def __init__(self, ifname, queue=0, nqueues=1, fanout_group=None, version=2, *,
                 netns=None, frames=512, frame_size=None, blocks=32, block_size=1 << 20,
                 timeout_ms=1, tx="send", tx_frames=512, qdisc_bypass=True, mtu=None,
                 csum_offload=True, gso=True, sock=None, spec=None, non_ip=True):
        if fanout_group is not None and sock is None:
            raise ValueError("fanout: create a FanoutGroup(...) and call .port(queue)")
        if not 0 <= queue < nqueues:
            raise ValueError("queue out of range")
        self.ifname = ifname
        self.queue = queue
        self.nqueues = nqueues
        self.csum_offload = csum_offload
        self.gso = gso
        self.stats = {"rx": 0, "tx": 0, "rx_drops": 0, "tx_drops": 0, "rx_truncated": 0,
                      "rx_kernel_drops": 0, "tx_busy": 0}
        self._mm = None
        self._owns_sock = sock is None
        if sock is None:
            spec = RingSpec(version, frames, frame_size, blocks, block_size, timeout_ms,
                            tx_frames if tx == "ring" else 0)
            with _in_netns(netns):
                self.sock = open_socket(ifname, spec, steer.filter_program(nqueues, queue, non_ip),
                                        qdisc_bypass)
                self.mtu = mtu or _get_mtu(self.sock, ifname)
            self._resync = False
        else:
            self.sock = sock
            self.mtu = mtu or 1500
            self._resync = True  # re-attaching to a ring someone else consumed
        self.spec = spec
        self.version = spec.version
        self._tx_ring = bool(spec.tx_frames)
        try:
            self._map()
        except BaseException:
            self.close()
            raise

    # -- setup --------------------------------------------------------------------
    def _map(self):
        spec = self.spec
        self._mm = mmap.mmap(self.sock.fileno(), spec.rx_bytes + spec.tx_bytes,
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
        if self._tx_ring:
            fpb = spec.tx_block_size // spec.frame_size
            base = spec.rx_bytes
            self._txoffs = [base + b * spec.tx_block_size + i * spec.frame_size
                            for b in range(spec.tx_blocks) for i in range(fpb)]
            self._txhead = 0
            if spec.version == 2:
                self._tx_st, self._tx_len, self._tx_data = 0, 4, 32
            else:
                self._tx_st, self._tx_len, self._tx_data = 20, 16, 48
        self._send = self.sock.send
        self.rx_burst = self._rx_v2 if spec.version == 2 else self._rx_v3
        self.tx_burst = self._tx_ring_burst if self._tx_ring else self._tx_send

    # -- interface ----------------------------------------------------------------
    def fileno(self):
        return self.sock.fileno()

    def close(self):
        for name in ("_u32", "_u16"):
            v = getattr(self, name, None)
            if v is not None:
                v.release()
                setattr(self, name, None)
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self.sock is not None:
            self.sock.close()   # a FanoutGroup port closes only its dup; the group keeps the member
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def kernel_stats(self):
        """PACKET_STATISTICS since the last call: (packets, drops) seen by the kernel."""
        p, d = _STATS.unpack(self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        self.stats["rx_kernel_drops"] += d
        self.stats["rx_drops"] += d
        return p, d

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
        try:
            for f in frames:
                try:
                    send(f)
                    sent += 1
                except (BlockingIOError, InterruptedError):
                    self.stats["tx_busy"] += 1
                    break
                except OSError as e:
                    if e.errno == errno.ENOBUFS and len(f) <= MAX_TX:
                        self.stats["tx_busy"] += 1   # device queue full (QDISC_BYPASS)
                        break
                    self.stats["tx_drops"] += 1   # EINVAL/EMSGSIZE/too big: this frame is bad
                n += 1
        finally:
            self.stats["tx"] += sent
        return n

    def _tx_ring_burst(self, frames):
        u32, mm, offs = self._u32, self._mm, self._txoffs
        st_w, len_w, data = self._tx_st >> 2, self._tx_len >> 2, self._tx_data
        cap = self.spec.frame_size - data
        nt = len(offs)
        i = self._txhead
        n = 0
        for f in frames:
            off = offs[i]
            w = off >> 2
            if u32[w + st_w]:          # slot still owned by the kernel
                break
            ln = len(f)
            if ln > cap:
                self.stats["tx_drops"] += 1
                n += 1
                continue
            mm[off + data:off + data + ln] = f
            u32[w + len_w] = ln
            u32[w + st_w] = TP_STATUS_SEND_REQUEST
            n += 1
            i += 1
            if i == nt:
                i = 0
        self._txhead = i
        if n:
            try:
                self._send(b"", socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                self.stats["tx_busy"] += 1
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                self.stats["tx_busy"] += 1
        self.stats["tx"] += n
        return n


class FanoutGroup:
    """A PACKET_FANOUT_CBPF group of ``n`` sockets, created in member order and held by
    the process that outlives the workers, so no member ever leaves (see module doc)."""

    def __init__(self, ifname, n, group_id=None, version=2, *, netns=None, frames=512,
                 frame_size=None, blocks=32, block_size=1 << 20, timeout_ms=1, tx="send",
                 tx_frames=512, qdisc_bypass=True, mtu=None):
        self.ifname, self.n = ifname, n
        self.group_id = group_id if group_id is not None else (os.getpid() & 0xFFFF)
        self.spec = RingSpec(version, frames, frame_size, blocks, block_size, timeout_ms,
                             tx_frames if tx == "ring" else 0)
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
        """Attach shard ``k`` to its member socket (a dup: closing the port keeps the member)."""
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
