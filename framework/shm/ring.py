"""Single-producer single-consumer ring of variable-size records in POSIX shm.

Layout of segment ``framework.<runid>.<purpose>``::

    page 0: header
      0  magic "FWRING2\\0"     8  capacity (u64)      16 doorbell purpose (48 s, NUL padded)
      128 producer line: head, records in, full events, rings      (written by producer)
      256 consumer line: tail, records out, release                 (written by consumer)
    page 1..: data, ``capacity`` bytes (a power of two)

The data is a stream of frames, one per ``push_many`` call (at most 256 records)::

    u32 count n | u32 length[0] .. length[n-1] | record 0 | record 1 | ... (no padding)

The lengths of a batch sit together so that both ends handle a whole batch in a
few C calls and no Python loop per record: the producer packs the lengths with
one Struct and joins the records with one ``bytes.join``; the consumer unpacks
the lengths with one Struct and cuts all records out of the mmap with one
``struct.unpack_from("5s0s12s...")``; both keep the headers of frames seen before
in a small cache (same lengths -> no packing, no format building); a per-record
length-prefix walk in Python would cost several times more per record
(bench/shm_ring.py measures it). A frame that runs past the end
of the data area continues at offset 0 (split copy, no wrap marker), so any
record up to ``capacity - 8`` bytes fits in an empty ring.

Counters are free-running u64 byte positions (offset = position & (capacity-1)):
- ``head``: end of the last published frame (producer).
- ``release``: start of the oldest frame the consumer still needs; the producer
  may reuse everything before it.
- ``tail``: the consumer's read position: ``release`` itself (nothing of that
  frame taken yet), ``frame + 4 + 4*j`` (records 0..j-1 of the frame taken: the
  address of length[j], unambiguous even for empty records), or the frame's end.
  pop_many stores tail, then release: a consumer killed in between leaves
  ``release <= tail`` and its successor walks the frames from ``release`` to
  find tail. Delivery is at most once: a record counts as taken once ``tail``
  passes it, which happens before pop_many returns it (a consumer dying after
  that loses it); a record not yet returned is never lost or overwritten.

Memory ordering (x86-64, TSO): the producer copies records, then stores head;
the consumer loads head, then copies records, then stores tail/release. x86 does
not reorder store/store or load/load, nor a load with a later store, and
CPython's C calls are opaque to the compiler, so this is enough for the data. The
doorbell needs a store->load ordering and gets an explicit fence (segment.fence).
The producer and consumer lines sit on separate cache lines (no false sharing).

Both ends read the counters from shm at every batch rather than trusting a copy
kept in the process: a restarted consumer (or one forked from a supervisor that
created the ring long ago) continues exactly where the ring says.
"""
import functools
import struct
from bisect import bisect_right
from itertools import accumulate
from operator import add

from .doorbell import Doorbell
from .naming import check_purpose, shm_path
from .segment import PAGE, _fence_acquire, _fence_release, map_segment, open_segment, unlink_quiet

_MAGIC = b"FWRING2\0"
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
_REL = 34
_HDR = PAGE  # data starts on its own page (mmap offsets must be page aligned)

_u32 = struct.Struct("<I").unpack_from
MAX_FRAME = 256          # records per frame; bigger batches become several frames


@functools.lru_cache(maxsize=None)
def _lens_struct(n):
    return struct.Struct(f"<{n}I")


@functools.lru_cache(maxsize=None)
def _fmt_template(n):
    return "%ds" * n       # % lengths -> "64s64s..." (cheaper than joining strs)


# Frame headers seen before (per process): lengths tuple -> header bytes (producer),
# header bytes -> (count, lengths, size, Struct) (consumer). Bounded: cleared when full.
_HDR_CACHE = {}
_FRAME_CACHE = {}
_CACHE_MAX = 4096

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
        # target before writing, so a reader in the other process can see head == 0
        # (torn reads).
        self._hdr = memoryview(hdr).cast("Q")
        self._data = data
        self.capacity = capacity
        self._mask = capacity - 1
        self.max_record = capacity - 8   # one record, one frame
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
        n = len(records)
        if not n:
            return 0
        lens = tuple(map(len, records))
        total = sum(lens)
        if total > self.max_record and max(lens) > self.max_record:
            raise ValueError(f"record of {max(lens)} bytes does not fit in a ring of "
                             f"{self.capacity} bytes (max {self.max_record})")
        q = self._hdr
        data = self._data
        cap = self.capacity
        mask = self._mask
        head = q[_HEAD]
        free = cap - (head - q[_REL])
        done = 0
        partial = False
        while done < n:
            if done == 0 and n <= MAX_FRAME:
                ls, recs, size = lens, records, total
            else:
                ls, recs = lens[done:done + MAX_FRAME], records[done:done + MAX_FRAME]
                size = sum(ls)
            m = len(ls)
            need = 4 + 4 * m + size
            if need > free:
                free = cap - (head - q[_REL])   # the consumer may have moved on
                if need > free:
                    # the longest prefix of this frame that fits, if any
                    k = bisect_right(list(map(add, accumulate(ls), range(8, 4 * m + 8, 4))), free)
                    if not k:
                        break
                    ls, recs = ls[:k], recs[:k]
                    m = k
                    partial = True
                    need = 4 + 4 * m + sum(ls)
            # The frame header (count + lengths) as bytes, from a cache: batches
            # of the same shape (fixed-size messages) skip packing the lengths.
            key = ls
            hb = _HDR_CACHE.get(key)
            if hb is None:
                hb = _lens_struct(m + 1).pack(m, *ls)
                if len(_HDR_CACHE) >= _CACHE_MAX:
                    _HDR_CACHE.clear()
                _HDR_CACHE[key] = hb
            off = head & mask
            end = off + need
            if end <= cap:
                lh = off + 4 + 4 * m
                data[off:lh] = hb
                data[lh:end] = b"".join(recs)
            else:
                blob = hb + b"".join(recs)
                first = cap - off
                data[off:cap] = blob[:first]
                data[0:end - cap] = blob[first:]
            head += need
            free -= need
            done += m
            if partial:
                break
        if done:
            q[_HEAD] = head  # publish: the records are written before this store
            q[_IN] += done
            bell = self.bell
            if bell is not None:
                # fence: the head store before the sleep-flag load (see doorbell);
                # then Doorbell.notify(), inlined (this runs once per batch)
                _fence_acquire()
                _fence_release()
                s = bell._q[1]
                if s & 1 and s != bell._rung:
                    bell._rung = s
                    bell.ring()
                    q[_RINGS] += 1
        if done < n:
            q[_FULL] += 1
        return done

    def push(self, record):
        """Append one record; False if the ring is full."""
        return self.push_many((record,)) == 1

    def free(self):
        """Bytes the producer may write now (a frame of k records needs 4 + 4k + their sizes)."""
        q = self._hdr
        return self.capacity - (q[_HEAD] - q[_REL])

    # -- consumer ------------------------------------------------------------
    def _frame(self, pos):
        """(count, lengths, size, Struct cutting all records) of the frame at ``pos``.

        Keyed on the raw header bytes: a frame shaped like an earlier one (same
        lengths) costs one slice and one dict lookup instead of unpacking the
        lengths and building a format.
        """
        data = self._data
        cap = self.capacity
        off = pos & self._mask
        if off + 4 <= cap:
            n = _u32(data, off)[0]
        else:
            n = _u32(self._read(pos, 4))[0]
        if not 0 < n <= MAX_FRAME:
            raise RingCorrupted(f"ring {self.purpose}: frame of {n} records at {pos}")
        lh = 4 + 4 * n
        hb = data[off:off + lh] if off + lh <= cap else self._read(pos, lh)
        ent = _FRAME_CACHE.get(hb)
        if ent is None:
            lens = _lens_struct(n).unpack_from(hb, 4)
            ent = (n, lens, sum(lens), struct.Struct(_fmt_template(n) % lens))
            if len(_FRAME_CACHE) >= _CACHE_MAX:
                _FRAME_CACHE.clear()
            _FRAME_CACHE[hb] = ent
        return ent

    def _read(self, pos, length):
        """``length`` bytes from position ``pos`` (a copy, split at the edge)."""
        data = self._data
        cap = self.capacity
        off = pos & self._mask
        if off + length <= cap:
            return data[off:off + length]
        return data[off:cap] + data[0:off + length - cap]

    def pop_many(self, max=64):
        """Remove and return up to ``max`` records, oldest first ([] if empty)."""
        q = self._hdr
        head = q[_HEAD]
        tail = q[_TAIL]
        if tail == head:
            if q[_REL] != tail:   # a consumer killed between its two stores
                q[_REL] = tail
            return []
        if max <= 0:
            return []
        rel = q[_REL]
        data = self._data
        cap = self.capacity
        mask = self._mask
        frame = rel
        out = []
        left = max
        while left:
            # the common case of _frame() inlined: header in one piece, seen before
            off = frame & mask
            ent = None
            if off + 4 <= cap:
                n = _u32(data, off)[0]
                lh = off + 4 + 4 * n
                if lh <= cap and 0 < n <= MAX_FRAME:
                    ent = _FRAME_CACHE.get(data[off:lh])
            n, lens, size, cut = ent or self._frame(frame)
            lh = 4 + 4 * n
            end = frame + lh + size
            if end > head or tail > end:
                if tail > end and end < head:   # a killed consumer's half-stored
                    frame = end                 # progress: walk to tail's frame
                    continue
                raise RingCorrupted(f"ring {self.purpose}: frame {frame}..{end} "
                                    f"past head {head} (tail {tail}): two producers?")
            if tail == end:                    # (only after a kill) frame done
                frame = end
                if end == head:
                    break
                continue
            j = 0 if tail == frame else (tail - frame - 4) >> 2
            k = n - j
            if k > left:
                k = left
            if k == n:
                dpos = frame + lh
                dlen = size
            else:
                sel = lens[j:j + k]
                dpos = frame + lh + sum(lens[:j])
                dlen = sum(sel)
                cut = struct.Struct(_fmt_template(k) % sel)
            off = dpos & mask
            if off + dlen <= cap:
                out += cut.unpack_from(data, off)
            else:
                out += cut.unpack(self._read(dpos, dlen))
            left -= k
            if j + k < n:
                tail = frame + 4 + 4 * (j + k)
                break
            tail = frame = end
            if end == head:
                break
        # tail first: a kill between the two stores leaves release behind tail,
        # never ahead (which would let the producer overwrite untaken records)
        q[_TAIL] = tail
        if frame != rel:
            q[_REL] = frame
        q[_OUT] += len(out)
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
        """Bytes held in the ring (frame headers included)."""
        hdr = self._hdr
        return hdr[_HEAD] - hdr[_REL]

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
            "head": hdr[_HEAD], "tail": hdr[_TAIL], "release": hdr[_REL],
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
