"""Per-shard counters in shared memory: a worker writes, anyone reads.

Segment ``framework.<runid>.stats.<shard>``::

    0  magic "FWSTAT1\\0"   8 count (u64)   16 names length (u64)   24 names (utf-8, "\\n"-joined)
    then, 64-byte aligned: count u64 counters in the order of the names

Each counter is read and written through a memoryview cast to 'Q' (one aligned
8-byte load or store, atomic on x86-64; struct.pack_into would zero-fill first and
a reader could see a counter drop to 0), so a reader never sees a torn value; a snapshot is not one instant across counters (it does
not need to be for metrics). One writer per block (the shard); ``add`` is a
read-modify-write and is not safe with two writers.
"""
import os

import posix_ipc

from .naming import PREFIX, SHM_DIR, runid_pid, shm_path
from .segment import map_segment, open_segment, unlink_quiet

_MAGIC = b"FWSTAT1\0"
_MASK = (1 << 64) - 1


def _purpose(shard):
    return f"stats.{int(shard)}"


class StatsBlock:
    __slots__ = ("runid", "shard", "names", "_mm", "_q", "_idx", "__weakref__")

    def __init__(self, runid, shard, names, mm, base):
        self.runid = runid
        self.shard = shard
        self.names = tuple(names)
        self._mm = mm
        self._q = memoryview(mm)[base:base + 8 * len(self.names)].cast("Q")
        self._idx = {n: i for i, n in enumerate(self.names)}

    def index(self, name):
        """The slot of a counter in ``q``, for hot loops: ``q[i] += 1`` skips the name lookup."""
        return self._idx[name]

    @property
    def q(self):
        """The counters as a u64 memoryview (index with ``index(name)``)."""
        return self._q

    @classmethod
    def create(cls, runid, shard, names):
        names = list(names)
        if len(set(names)) != len(names):
            raise ValueError("duplicate counter names")
        for n in names:
            if not n or "\n" in n:
                raise ValueError(f"bad counter name {n!r}")
        blob = "\n".join(names).encode()
        base = (24 + len(blob) + 63) // 64 * 64
        size = base + 8 * max(1, len(names))
        shm = open_segment(runid, _purpose(shard), size)
        try:
            mm = map_segment(shm, size)
        finally:
            shm.close_fd()
        mm[8:16] = len(names).to_bytes(8, "little")
        mm[16:24] = len(blob).to_bytes(8, "little")
        mm[24:24 + len(blob)] = blob
        mm[0:8] = _MAGIC
        return cls(runid, shard, names, mm, base)

    @classmethod
    def attach(cls, runid, shard):
        shm = open_segment(runid, _purpose(shard))
        try:
            mm = map_segment(shm, shm.size)
        finally:
            shm.close_fd()
        if mm[0:8] != _MAGIC:
            mm.close()
            raise ValueError(f"{shm_path(runid, _purpose(shard))} is not a stats block")
        count = int.from_bytes(mm[8:16], "little")
        blen = int.from_bytes(mm[16:24], "little")
        names = mm[24:24 + blen].decode().split("\n") if count else []
        base = (24 + blen + 63) // 64 * 64
        return cls(runid, shard, names, mm, base)

    @classmethod
    def attach_all(cls, runid):
        """Every stats block of a run: {shard: StatsBlock}."""
        runid_pid(runid)
        head = f"{PREFIX}.{runid}.stats."
        out = {}
        for n in os.listdir(SHM_DIR):
            if n.startswith(head) and n[len(head):].isdigit():
                shard = int(n[len(head):])
                try:
                    out[shard] = cls.attach(runid, shard)
                except (posix_ipc.ExistentialError, ValueError):
                    pass   # removed (or not finished) meanwhile: skip it
        return dict(sorted(out.items()))

    def __reduce__(self):
        return (StatsBlock.attach, (self.runid, self.shard))

    def set(self, name, value):
        self._q[self._idx[name]] = value & _MASK

    def add(self, name, delta=1):
        q = self._q
        i = self._idx[name]
        q[i] = (q[i] + delta) & _MASK

    def get(self, name):
        return self._q[self._idx[name]]

    def update(self, values):
        """set() for every item of a mapping (names not in the block raise KeyError)."""
        q = self._q
        idx = self._idx
        for k, v in values.items():
            q[idx[k]] = v & _MASK

    def snapshot(self):
        return dict(zip(self.names, self._q.tolist()))

    def close(self):
        if not self._mm.closed:
            self._q.release()
            self._mm.close()

    def unlink(self):
        unlink_quiet(shm_path(self.runid, _purpose(self.shard)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
