"""Single-producer single-consumer ring of variable-size records in POSIX shm.

Layout of segment ``framework.<runid>.<purpose>``::

    page 0: header
      0  magic "FWRING1\\0"     8  capacity (u64)      16 doorbell purpose (48 s, NUL padded)
      128 producer line: head, records in, full events, rings      (written by producer)
      256 consumer line: tail, records out                          (written by consumer)
    page 1..: data, ``capacity`` bytes (a power of two)

``head`` and ``tail`` are free-running byte counters (u64, never wrap in practice);
the offset in the data area is ``counter & (capacity - 1)``. A record is a 4-byte
little-endian length followed by its bytes, unpadded: a record (or its length
prefix) that runs past the end of the data area continues at offset 0 (split
copy), so no space is wasted on wrap markers and any record up to
``capacity - 4`` bytes fits in an empty ring.

Memory ordering (x86-64, TSO): the producer copies records, then stores head;
the consumer loads head, then copies records, then stores tail. x86 does not
reorder store/store or load/load, nor a load with a later store, and CPython's
C calls are opaque to the compiler, so this is enough for the data itself. The
doorbell needs a store->load ordering and gets an explicit fence (segment.fence).
The producer and consumer lines sit on separate cache lines (no false sharing).

Both ends read the counters from shm at every batch rather than trusting a copy
kept in the process: a restarted consumer (or one forked from a supervisor that
created the ring long ago) continues exactly where the ring says.

Costs: per record one struct.pack_into/unpack_from and one slice copy on the
mmap (~100-150 ns); per batch two counter loads, one store, one fence.
"""
import struct

from .doorbell import Doorbell
from .naming import check_purpose, shm_path
from .segment import PAGE, fence, map_segment, open_segment, unlink_quiet

_MAGIC = b"FWRING1\0"
_BELL = 16
_BELL_LEN = 48
# Counters, as indexes of the header seen as an array of u64 (byte offset / 8).
_CAP = 1
_HEAD = 16     # byte 128: producer line
_IN = 17
_FULL = 18
_RINGS = 19
_TAIL = 32     # byte 256: consumer line
_OUT = 33
_HDR = PAGE  # data starts on its own page (mmap offsets must be page aligned)

_U32 = struct.Struct("<I")
_pk32 = _U32.pack

MIN_CAPACITY = 16


def _pow2(n):
    return 1 << max(0, (n - 1).bit_length())


class RingCorrupted(RuntimeError):
    pass


class Ring:
    """One SPSC ring. Any process may hold it; one pushes, one pops.

    push_many(records) -> int     records taken (stops at the first that does not fit)
    push(record) -> bool
    pop_many(max=64) -> list[bytes]
    pop() -> bytes | None
    wait(timeout=None) -> bool    consumer: sleep on the doorbell until data
    """

    __slots__ = ("runid", "purpose", "capacity", "max_record", "bell", "_mm", "_hdr", "_data",
                 "_mask", "_own_bell", "__weakref__")

    def __init__(self, runid, purpose, hdr, data, capacity, bell, own_bell):
        self.runid = runid
        self.purpose = purpose
        self._mm = hdr
        # The counters are read and written through a memoryview cast to 'Q': its
        # item access is one fixed-size 8-byte memcpy, i.e. a single aligned load
        # or store, atomic on x86-64. struct.pack_into is NOT: it zero-fills the
        # target before writing, and a reader in the other process was measured
        # seeing head == 0 (hundreds of thousands of times in 5 s of hammering).
        self._hdr = memoryview(hdr).cast("Q")
        self._data = data
        self.capacity = capacity
        self._mask = capacity - 1
        self.max_record = capacity - 4
        self.bell = bell
        self._own_bell = own_bell

    # -- construction --------------------------------------------------------
    @classmethod
    def create(cls, runid, purpose, capacity=1 << 20, doorbell=True):
        """Create a ring of ``capacity`` data bytes (rounded up to a power of two).

        doorbell: True = a doorbell of its own (``<purpose>.bell``), a Doorbell =
        share that one (all rings into one consumer), None/False = none.
        """
        check_purpose(purpose)
        if capacity < MIN_CAPACITY:
            raise ValueError(f"ring capacity must be at least {MIN_CAPACITY} bytes")
        capacity = _pow2(capacity)
        own = False
        bell = None
        if doorbell is True:
            bell = Doorbell.create(runid, purpose + ".bell")
            own = True
        elif doorbell:
            bell = doorbell
        bell_name = bell.purpose.encode() if bell is not None else b""
        if len(bell_name) > _BELL_LEN:
            raise ValueError("doorbell purpose too long")
        try:
            shm = open_segment(runid, purpose, _HDR + capacity)
            try:
                hdr = map_segment(shm, _HDR)
                data = map_segment(shm, capacity, _HDR)
            finally:
                shm.close_fd()
        except BaseException:
            if own:
                bell.close()
                bell.unlink()
            raise
        memoryview(hdr).cast("Q")[_CAP] = capacity
        hdr[_BELL:_BELL + len(bell_name)] = bell_name
        hdr[0:8] = _MAGIC  # last: an attacher never sees a half-made header
        return cls(runid, purpose, hdr, data, capacity, bell, own)

    @classmethod
    def attach(cls, runid, purpose):
        """Open an existing ring (and its doorbell) by name."""
        shm = open_segment(runid, purpose)
        try:
            hdr = map_segment(shm, _HDR)
            if hdr[0:8] != _MAGIC:
                hdr.close()
                raise ValueError(f"{shm_path(runid, purpose)} is not a ring")
            capacity = int.from_bytes(hdr[8:16], "little")
            data = map_segment(shm, capacity, _HDR)
        finally:
            shm.close_fd()
        bell_name = hdr[_BELL:_BELL + _BELL_LEN].rstrip(b"\0").decode()
        bell = Doorbell.attach(runid, bell_name) if bell_name else None
        return cls(runid, purpose, hdr, data, capacity, bell, bell is not None)

    def __reduce__(self):  # spawn-started processes reattach by name
        return (Ring.attach, (self.runid, self.purpose))

    # -- producer ------------------------------------------------------------
    def push_many(self, records):
        """Append records (a sequence of bytes-like objects) in order.

        Returns how many were taken: all, or the ones before the first that did
        not fit (the ring is full; nothing is overwritten). A record longer than
        ``max_record`` raises ValueError before anything is pushed.
        """
        if not records:
            return 0
        if max(map(len, records)) > self.max_record:
            raise ValueError(f"record of {max(map(len, records))} bytes does not fit in a "
                             f"ring of {self.capacity} bytes (max {self.max_record})")
        hdr = self._hdr
        data = self._data
        cap = self.capacity
        mask = self._mask
        pack32 = _U32.pack_into
        head = hdr[_HEAD]
        limit = hdr[_TAIL] + cap
        n = 0
        for rec in records:
            ln = len(rec)
            end = head + 4 + ln
            if end > limit:
                limit = hdr[_TAIL] + cap  # the consumer may have moved on
                if end > limit:
                    break
            off = head & mask
            e = off + 4 + ln
            if e <= cap:
                pack32(data, off, ln)
                data[off + 4:e] = rec
            else:
                # Runs past the end: split the prefix+record at the edge.
                blob = _pk32(ln) + bytes(rec)
                first = cap - off
                data[off:cap] = blob[:first]
                data[0:e - cap] = blob[first:]
            head = end
            n += 1
        if n:
            hdr[_HEAD] = head  # publish: the records are written before this store
            hdr[_IN] = hdr[_IN] + n
            bell = self.bell
            if bell is not None:
                fence()  # head store before the sleep-flag load (see doorbell)
                if bell.notify():
                    hdr[_RINGS] = hdr[_RINGS] + 1
        if n < len(records):
            hdr[_FULL] = hdr[_FULL] + 1
        return n

    def push(self, record):
        """Append one record; False if the ring is full."""
        return self.push_many((record,)) == 1

    def free(self):
        """Bytes free (a record of n bytes needs n + 4)."""
        hdr = self._hdr
        return self.capacity - (hdr[_HEAD] - hdr[_TAIL])

    # -- consumer ------------------------------------------------------------
    def pop_many(self, max=64):
        """Remove and return up to ``max`` records, oldest first ([] if empty)."""
        hdr = self._hdr
        head = hdr[_HEAD]
        tail = hdr[_TAIL]
        if tail == head:
            return []
        data = self._data
        cap = self.capacity
        mask = self._mask
        u32 = _U32.unpack_from
        out = []
        ap = out.append
        for _ in range(max):
            off = tail & mask
            if off + 4 <= cap:
                ln = u32(data, off)[0]
                s = off + 4
                e = s + ln
                if e <= cap:
                    ap(data[s:e])
                else:
                    ap(data[s:cap] + data[0:e - cap])
            else:
                # The length prefix itself is split; the record then starts near 0.
                first = cap - off
                ln = u32(data[off:cap] + data[0:4 - first])[0]
                s = 4 - first
                ap(data[s:s + ln])
            tail += 4 + ln
            if tail >= head:
                break
        if tail > head:
            raise RingCorrupted(f"ring {self.purpose}: record runs past head "
                                f"(tail {tail}, head {head}): two producers, or a foreign writer?")
        hdr[_TAIL] = tail  # release the space: the copies above are done
        hdr[_OUT] = hdr[_OUT] + len(out)
        return out

    def pop(self):
        """Remove and return the oldest record, or None if the ring is empty."""
        r = self.pop_many(1)
        return r[0] if r else None

    def empty(self):
        hdr = self._hdr
        return hdr[_HEAD] == hdr[_TAIL]

    def __len__(self):
        """Records waiting (from the counters; exact when no push/pop is in flight)."""
        hdr = self._hdr
        return hdr[_IN] - hdr[_OUT]

    def used(self):
        """Bytes waiting, prefixes included."""
        hdr = self._hdr
        return hdr[_HEAD] - hdr[_TAIL]

    def wait(self, timeout=None):
        """Consumer: sleep until the ring has data or ``timeout`` s pass; True if data.

        Needs a doorbell; a ring sharing its doorbell with others should rather be
        waited on through ``bell.wait(timeout, rings)``.
        """
        if self.bell is None:
            raise RuntimeError(f"ring {self.purpose} has no doorbell")
        return self.bell.wait(timeout, (self,))

    def stats(self):
        hdr = self._hdr
        return {
            "head": hdr[_HEAD], "tail": hdr[_TAIL],
            "records_in": hdr[_IN], "records_out": hdr[_OUT],
            "full": hdr[_FULL], "rings": hdr[_RINGS],
            "capacity": self.capacity,
        }

    # -- lifetime ------------------------------------------------------------
    def close(self):
        """Unmap (and close the doorbell if this ring opened it)."""
        if not self._data.closed:
            self._hdr.release()
            self._data.close()
            self._mm.close()
        if self._own_bell and self.bell is not None:
            self.bell.close()

    def unlink(self):
        """Remove the names of the ring (and of its own doorbell)."""
        unlink_quiet(shm_path(self.runid, self.purpose))
        if self._own_bell and self.bell is not None:
            self.bell.unlink()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
