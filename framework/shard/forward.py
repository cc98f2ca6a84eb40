"""Frames that reach one shard but belong to (or must also be seen by) another.

Steering puts almost every frame on the shard that owns its flow, but not all:
- multi-queue TAP hands each non-IPv4 frame (ARP) to ONE queue, yet every shard keeps
  its own ARP cache and must see the host's ARP replies (or a shard other than that
  one could never resolve the host and would never answer its SYNs);
- with the kernel's own TAP flow hash (no bpf() rights) IPv4 flows land anywhere.

The shard loop hands its received batch to ``steer``: frames it owns stay, frames of
other shards go to their rings (one SPSC ring per ordered pair of shards, in /dev/shm,
created by the supervisor before forking), non-IPv4 frames stay AND go to every other
shard. ``receive`` pops what the other shards forwarded. All rings into one shard share
its doorbell, which the loop polls next to the NIC fd when it goes to sleep; a busy
pair of shards makes no syscalls for this (see framework/shm/doorbell.py).
"""
from framework.nic.steer import NON_IP, classify
from framework.shm import Doorbell, Ring

MODE_NON_IP = 1      # only non-IPv4 frames are copied to every other shard
MODE_CLASSIFY = 2    # every frame is classified (steering not predictable)

_IPV4 = b"\x08\x00"
_ETYPE = slice(10 + 12, 10 + 14)   # vnet header, then dst+src MAC


class Forwarder:
    __slots__ = ("shard", "n", "mode", "out", "inbound", "bell", "counters", "_others")

    def __init__(self, shard, n, rings_out, rings_in, bell, mode=MODE_NON_IP):
        self.shard = shard
        self.n = n
        self.mode = mode
        self.out = dict(rings_out)      # dst shard -> Ring (we produce)
        self.inbound = list(rings_in)   # Rings we consume
        self.bell = bell                # our Doorbell (shared by self.inbound)
        self._others = [self.out[k] for k in sorted(self.out)]
        self.counters = {"fwd.out": 0, "fwd.in": 0, "fwd.drops": 0}

    def steer(self, frames):
        """Split a received batch: returns the frames this shard processes itself."""
        if self.mode == MODE_NON_IP:
            bcast = None
            for f in frames:
                if f[_ETYPE] != _IPV4:
                    if bcast is None:
                        bcast = []
                    bcast.append(f)
            if bcast:
                for ring in self._others:
                    self._push(ring, bcast)
            return frames
        keep = []
        by_dst = {}
        me, n = self.shard, self.n
        for f in frames:
            k = classify(f, n, 10)
            if k == me:
                keep.append(f)
            elif k == NON_IP:
                keep.append(f)
                for dst in self.out:
                    by_dst.setdefault(dst, []).append(f)
            else:
                by_dst.setdefault(k, []).append(f)
        for dst, fs in by_dst.items():
            self._push(self.out[dst], fs)
        return keep

    def _push(self, ring, frames):
        n = ring.push_many(frames)   # rings the consumer's doorbell if it sleeps
        self.counters["fwd.out"] += n
        if n < len(frames):
            self.counters["fwd.drops"] += len(frames) - n  # the owner is behind: drop
            # (like a full NIC queue; TCP retransmits, ARP asks again)

    def receive(self, max=64):
        got = None
        for ring in self.inbound:
            fs = ring.pop_many(max)
            if fs:
                if got is None:
                    got = fs
                else:
                    got += fs
        if got:
            self.counters["fwd.in"] += len(got)
        return got

    def pending(self):
        for ring in self.inbound:
            if not ring.empty():
                return True
        return False


def create_bells(run_id, n):
    """One doorbell per shard, shared by every ring into that shard (forwarded frames,
    cross-shard calls): the loop sleeps on one fd for all of them."""
    return {k: Doorbell.create(run_id, f"bell.{k}") for k in range(n)}


def create_all(run_id, n, mode, capacity=1 << 18, bells=None):
    """Supervisor side: one ring per ordered pair (and the doorbells unless given).
    Returns (bells, rings) with rings[(src, dst)]; the caller owns (and removes) them."""
    if bells is None:
        bells = create_bells(run_id, n)
    rings = {}
    for src in range(n):
        for dst in range(n):
            if src != dst:
                rings[(src, dst)] = Ring.create(run_id, f"fwd.{src}.{dst}", capacity, bells[dst])
    return bells, rings


def for_shard(k, n, bells, rings, mode):
    return Forwarder(k, n, {dst: rings[(k, dst)] for dst in range(n) if dst != k},
                     [rings[(src, k)] for src in range(n) if src != k], bells[k], mode)


class ForwardingPort:
    """A port wrapped with its shard's Forwarder (as smoltcp wraps a Device): what
    ``rx_burst`` returns is the batch this shard owns plus what other shards forwarded
    to it; frames of other shards leave for their rings on the way. The wrapper's
    rings share the shard's doorbell, which the loop polls beside the port's fd."""

    def __init__(self, port, forwarder):
        self.inner = port
        self.fwd = forwarder
        self.bell = forwarder.bell
        self.counters = forwarder.counters

    def __getattr__(self, name):     # queue, csum_offload, gso, mtu, stats
        return getattr(self.inner, name)

    def rx_burst(self, max=64):
        frames = self.inner.rx_burst(max)
        if frames:
            frames = self.fwd.steer(frames)
        got = self.fwd.receive(max)
        if got:
            return frames + got if frames else got
        return frames

    def tx_burst(self, frames):
        return self.inner.tx_burst(frames)

    def rx_pending(self):
        return self.fwd.pending()

    def fileno(self):
        return self.inner.fileno()

    def close(self):
        self.inner.close()
