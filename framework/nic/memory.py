"""An in-process wire: two ports whose frames go straight into each other's queue.

For unit tests of everything above the NIC. Frames pass unchanged (like a veth:
a checksum-partial or GSO frame arrives as such). ``fileno()`` is an eventfd that is
readable while frames are waiting, so a loop can sleep on it like on a real port.
"""
import collections
import os

_eventfd_read = os.eventfd_read
_eventfd_write = os.eventfd_write


class MemoryPort:
    __slots__ = ("queue", "csum_offload", "gso", "mtu", "stats", "peer", "capacity",
                 "_q", "_efd", "_armed")

    def __init__(self, queue=0, csum_offload=False, gso=False, mtu=1500, capacity=65536):
        self.queue = queue
        self.csum_offload = csum_offload
        self.gso = gso
        self.mtu = mtu
        self.capacity = capacity
        self.stats = {"rx": 0, "tx": 0, "rx_drops": 0, "tx_drops": 0}
        self.peer = None
        self._q = collections.deque()
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._armed = False   # eventfd counter is non-zero

    def fileno(self):
        return self._efd

    def rx_burst(self, max=64):
        q = self._q
        n = len(q)
        if max < n:
            n = max
        popleft = q.popleft
        out = [popleft() for i in range(n)]
        if not q and self._armed:
            self._armed = False
            try:
                _eventfd_read(self._efd)
            except BlockingIOError:
                pass
            if q:   # a producer thread slipped in between: stay readable
                self._ring()
        self.stats["rx"] += n
        return out

    def _ring(self):
        if not self._armed:
            self._armed = True
            _eventfd_write(self._efd, 1)

    def tx_burst(self, frames):
        peer = self.peer
        if peer is None or peer._efd < 0:
            self.stats["tx_drops"] += len(frames)
            return len(frames)
        room = peer.capacity - len(peer._q)
        n = len(frames) if len(frames) <= room else max(room, 0)
        if n:
            peer._q.extend(frames if n == len(frames) else frames[:n])
            peer._ring()
        self.stats["tx"] += n
        return n

    def inject(self, frames):
        """Put frames on this port's receive queue as if they came off the wire."""
        self._q.extend(frames)
        if frames:
            self._ring()

    def close(self):
        if self._efd >= 0:
            os.close(self._efd)
            self._efd = -1
        self._q.clear()


def pair(csum_offload=False, gso=False, mtu=1500, queues=(0, 0), capacity=65536):
    """Two connected ports: what one sends, the other receives."""
    a = MemoryPort(queues[0], csum_offload, gso, mtu, capacity)
    b = MemoryPort(queues[1], csum_offload, gso, mtu, capacity)
    a.peer, b.peer = b, a
    return a, b
