"""Ring semantics in one process: wraparound at every offset, full ring, limits."""
import os

import pytest

from framework.shm import Ring, RingCorrupted


def advance(ring, n):
    """Move head and tail forward by exactly n bytes (n == 0 or n >= 4)."""
    assert n == 0 or n >= 4
    while n:
        c = min(n, 4 + ring.max_record // 2)
        if n - c in (1, 2, 3):
            c -= 4
        assert ring.push(b"f" * (c - 4))
        assert ring.pop() == b"f" * (c - 4)
        n -= c


def test_wraparound_at_every_offset_and_size(runid):
    cap = 64
    ring = Ring.create(runid, "wrap", cap, doorbell=None)
    try:
        assert ring.capacity == cap and ring.max_record == cap - 4
        checked = 0
        for off in range(cap):
            for ln in range(0, ring.max_record + 1):
                pos = ring.stats()["head"]
                d = (off - pos) % cap
                advance(ring, d + cap if d in (1, 2, 3) else d)
                assert ring.stats()["head"] % cap == off
                rec = os.urandom(ln)
                assert ring.push(rec)
                assert ring.used() == ln + 4
                assert ring.pop() == rec
                assert ring.empty() and ring.pop() is None
                checked += 1
        assert checked == cap * (cap - 3)
    finally:
        ring.close()


def test_two_records_straddling_every_offset(runid):
    # The record after a split one must start where the split one ended.
    cap = 32
    ring = Ring.create(runid, "wrap2", cap, doorbell=None)
    try:
        for off in range(cap):
            for a in range(0, 12):
                pos = ring.stats()["head"]
                d = (off - pos) % cap
                advance(ring, d + cap if d in (1, 2, 3) else d)
                recs = [os.urandom(a), os.urandom(11 - a), os.urandom(3)]
                assert ring.push_many(recs) == 3
                assert ring.pop_many(10) == recs
    finally:
        ring.close()


def test_full_ring_never_overwrites(runid):
    ring = Ring.create(runid, "full", 1024, doorbell=None)
    try:
        recs = [bytes([i]) * 60 for i in range(20)]      # 64 bytes each with prefix
        assert ring.push_many(recs) == 16                  # exactly 1024 / 64
        assert ring.free() == 0 and len(ring) == 16
        assert ring.push(b"x") is False
        assert ring.push(b"") is False                     # even an empty record needs 4 bytes
        assert ring.stats()["full"] == 3                    # three pushes came back short
        assert ring.pop_many(1) == recs[:1]
        assert ring.push_many(recs[16:]) == 1               # room for exactly one more
        assert ring.pop_many(100) == recs[1:17]
        assert ring.empty() and ring.free() == 1024
    finally:
        ring.close()


def test_partial_batch_then_rest(runid):
    ring = Ring.create(runid, "partial", 256, doorbell=None)
    try:
        recs = [os.urandom(n) for n in (100, 100, 100, 10)]
        n = ring.push_many(recs)
        assert n == 2                                       # stops at the first misfit, keeps order
        assert ring.pop_many(1) == recs[:1]
        assert ring.push_many(recs[n:]) == 2                # 104 free after one pop: 104 + 14
        assert ring.free() == 256 - 2 * 104 - 14
        assert ring.pop_many(10) == recs[1:]
    finally:
        ring.close()


def test_record_larger_than_ring_is_a_clear_error(runid):
    ring = Ring.create(runid, "big", 1000, doorbell=None)   # rounded up to 1024
    try:
        assert ring.capacity == 1024
        biggest = os.urandom(1020)
        assert ring.push(biggest)                         # exactly fills an empty ring
        assert ring.free() == 0
        assert ring.pop() == biggest
        with pytest.raises(ValueError, match="does not fit"):
            ring.push(b"x" * 1021)
        with pytest.raises(ValueError):
            ring.push_many([b"a", b"x" * 5000])
        assert ring.empty()                                 # nothing of the failed batch went in
    finally:
        ring.close()


def test_pop_many_respects_max_and_bytes_like_inputs(runid):
    ring = Ring.create(runid, "mx", 4096, doorbell=None)
    try:
        recs = [bytes([i]) * i for i in range(50)]
        assert ring.push_many([bytearray(r) for r in recs[:25]] + [memoryview(r) for r in recs[25:]]) == 50
        assert ring.pop_many(7) == recs[:7]
        assert ring.pop_many(0) == []
        assert ring.pop_many(100) == recs[7:]
        assert ring.pop_many() == []
        assert ring.push_many([]) == 0
    finally:
        ring.close()


def test_attach_by_name_shares_state(runid):
    a = Ring.create(runid, "att", 4096)
    b = Ring.attach(runid, "att")
    try:
        assert b.capacity == 4096 and b.bell is not None
        a.push_many([b"one", b"two"])
        assert b.pop() == b"one"
        assert a.pop() == b"two"
        assert a.stats() == b.stats()
    finally:
        b.close()
        a.close()


def test_foreign_writer_is_detected(runid):
    ring = Ring.create(runid, "bad", 256, doorbell=None)
    try:
        ring.push(b"abc")
        ring._data[0:4] = (200).to_bytes(4, "little")     # length beyond head
        with pytest.raises(RingCorrupted):
            ring.pop_many()
    finally:
        ring.close()


def test_bad_names(runid):
    with pytest.raises(ValueError):
        Ring.create(runid, "a/b", 64)
    with pytest.raises(ValueError):
        Ring.create("nopid", "x", 64)
    with pytest.raises(ValueError):
        Ring.create(runid, "small", 8)
