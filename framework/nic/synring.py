"""A second RX ring for a port's bare SYNs, so a SYN flood cannot overflow the main ring.

Why: the main TPACKET_V2 ring has 512 slots of 64 KiB (each must hold a GSO frame), 33 MB
for 512 frames. A flood of 40-byte SYNs (hping3 --flood: ~85k/s here) fills it in 6 ms;
whenever the worker is off its core a little longer (a loaded machine), the kernel drops
whatever comes next: the flood's SYNs, but also a legitimate client's SYN (it retries after
1 s) and the ACKs and data of established flows. Measured before this: ~7% of frames
dropped at the ring, 1 in ~1000 legitimate connects took 1 s.

So the port opens two sockets with complementary filters, each behind the shard's steering
program (steer.filter_program):

- the main ring takes everything except bare SYNs (IPv4, TCP, SYN set, ACK/RST/FIN clear,
  not a fragment);
- this ring takes only those, in small slots (SLOT bytes: a SYN with 40 bytes of options is
  under 160 with the ring's headers), SLOTS of them (8192: 4 MB, about 100 ms of that
  flood), so scheduling gaps are absorbed and a full SYN ring drops only SYNs.

``AfPacketPort.rx_burst(max)`` reads up to ``max`` frames of the main ring first, then up
to ``max`` of this one: established flows go first in every turn, and SYNs get a bounded
share of it. The port's ``fileno()`` becomes an epoll fd over both sockets, so the loop
wakes for a SYN as for any frame.
"""
import mmap
import select

from ..net.wire.vnet import VNET_LEN
from . import steer
from .steer import BPF_K, BPF_RET, bare_syn_test

SLOT = 256
SLOTS = 8192
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_LOSING = 4
def _then_steer(prefix, n, shard, non_ip):
    """``prefix`` (labels 'steer' and 'reject') followed by the shard's steering program
    (its jumps are relative: prepending keeps them right)."""
    head = steer._assemble(prefix + [("reject",), (BPF_RET | BPF_K, None, None, 0), ("steer",)])
    return head + steer.filter_program(n, shard, non_ip)


def syn_filter(n, shard):
    """This ring: the shard's bare SYNs only."""
    return _then_steer(bare_syn_test("steer", "reject"), n, shard, False)


def main_filter(n, shard, non_ip=True):
    """The main ring: the shard's frames but bare SYNs."""
    return _then_steer(bare_syn_test("reject", "steer"), n, shard, non_ip)


class SynRing:
    """The bare-SYN socket and its TPACKET_V2 ring (open inside the device's namespace)."""

    def __init__(self, ifname, n, shard, qdisc_bypass, open_socket, ring_spec):
        spec = ring_spec(2, SLOTS, SLOT)
        self.sock = open_socket(ifname, spec, syn_filter(n, shard), qdisc_bypass)
        try:
            self.mm = mmap.mmap(self.sock.fileno(), spec.rx_bytes, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            self.sock.close()
            raise
        mv = memoryview(self.mm)
        self.u32 = mv.cast("I")
        self.u16 = mv.cast("H")
        mv.release()
        fpb = spec.block_size // spec.frame_size
        self.words = [(b * spec.block_size + i * spec.frame_size) >> 2
                      for b in range(spec.blocks) for i in range(fpb)]
        self.head = 0
        self.truncated = 0
        self.losing = False          # the kernel flagged a drop: read PACKET_STATISTICS

    def rx(self, out, max):
        """Append up to ``max`` frames to ``out``; each slot goes back at once."""
        u32, u16, mm, words = self.u32, self.u16, self.mm, self.words
        n = len(words)
        i = self.head
        append = out.append
        try:
            for _ in range(max):
                w = words[i]
                st = u32[w]
                if not st & TP_STATUS_USER:
                    break
                snap = u32[w + 2]
                if snap == u32[w + 1]:
                    start = (w << 2) + u16[(w << 1) + 6] - VNET_LEN
                    append(mm[start:start + VNET_LEN + snap])
                else:
                    self.truncated += 1
                if st & TP_STATUS_LOSING:
                    self.losing = True
                u32[w] = TP_STATUS_KERNEL
                i += 1
                if i == n:
                    i = 0
        finally:
            self.head = i

    def close(self):
        for v in (self.u32, self.u16):
            v.release()
        self.mm.close()
        self.sock.close()


def poller(*socks):
    """An epoll fd readable when any of ``socks`` is (the port's fileno())."""
    ep = select.epoll()
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN | select.EPOLLERR)
    return ep
