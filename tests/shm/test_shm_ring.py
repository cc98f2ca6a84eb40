"""Ring semantics in one process: wraparound at every offset, full ring, limits."""
import collections
import os
import random

import pytest

from framework.shm import Ring, RingCorrupted


def advance(ring, n):
    """Move head, tail and release forward by exactly n bytes (n == 0 or n >= 8)."""
    assert n == 0 or n >= 8
    while n:
        c = min(n, 8 + ring.max_record // 2)
        if 0 < n - c < 8:
            c = n - 8
        assert ring.push(b"f" * (c - 8))                   # one frame: count, length, data
        assert ring.pop() == b"f" * (c - 8)
        n -= c


def place(ring, off):
    """Put the ring's head (and tail) at data offset ``off``."""
    cap = ring.capacity
    d = (off - ring.stats()["head"]) % cap
    advance(ring, d + cap if 0 < d < 8 else d)
    assert ring.stats()["head"] % cap == off


def test_wraparound_at_every_offset_and_size(runid):
    cap = 64
    ring = Ring.create(runid, "wrap", cap, doorbell=None)
    try:
        assert ring.capacity == cap and ring.max_record == cap - 8
        checked = 0
        for off in range(cap):
            for ln in range(0, ring.max_record + 1):
                place(ring, off)
                rec = os.urandom(ln)
                assert ring.push(rec)
                assert ring.used() == ln + 8
                assert ring.pop() == rec
                assert ring.empty() and ring.pop() is None
                checked += 1
        assert checked == cap * (cap - 7)
    finally:
        ring.close()


def test_batches_straddling_every_offset(runid):
    # Several records in one frame: header, lengths and data split at every point.
    cap = 64
    ring = Ring.create(runid, "wrap2", cap, doorbell=None)
    try:
        for off in range(cap):
            for a in range(0, 12):
                place(ring, off)
                recs = [os.urandom(a), os.urandom(11 - a), b"", os.urandom(3)]
                assert ring.push_many(recs) == 4
                assert ring.pop_many(10) == recs
                place(ring, off)                            # and taken out in pieces
                assert ring.push_many(recs) == 4
                assert ring.pop_many(1) == recs[:1]
                assert ring.pop_many(2) == recs[1:3]
                assert ring.pop_many(5) == recs[3:]
    finally:
        ring.close()


def test_random_batches_against_a_model(runid):
    # Random push_many / pop_many sizes on small rings: every record comes out once,
    # in order, whatever the frame and wrap boundaries.
    rng = random.Random(3)
    for cap in (64, 128, 1024):
        ring = Ring.create(runid, f"model{cap}", cap, doorbell=None)
        try:
            model = collections.deque()
            seq = 0
            for _ in range(20_000):
                if rng.random() < 0.5:
                    recs = []
                    for _ in range(rng.randrange(1, 10)):
                        ln = rng.randrange(0, min(40, ring.max_record))
                        recs.append(seq.to_bytes(4, "little")[:ln] + bytes(max(0, ln - 4)))
                        seq += 1
                    free = ring.free()
                    k = ring.push_many(recs)
                    model.extend(recs[:k])
                    seq -= len(recs) - k

                    def need(j):                            # a frame of the first j records
                        return 4 + 4 * j + sum(map(len, recs[:j]))
                    assert need(k) <= free or k == 0        # took the longest prefix that fits
                    assert k == len(recs) or need(k + 1) > free
                    assert ring.free() == free - (need(k) if k else 0)
                else:
                    mx = rng.randrange(1, 12)
                    got = ring.pop_many(mx)
                    assert len(got) <= mx
                    assert got == [model.popleft() for _ in range(len(got))]
                    if not got:
                        assert not model
            assert ring.pop_many(10 ** 6) == list(model)
            st = ring.stats()
            assert st["records_in"] == st["records_out"] and ring.used() == 0
        finally:
            ring.close()


def test_full_ring_never_overwrites(runid):
    ring = Ring.create(runid, "full", 1024, doorbell=None)
    try:
        recs = [bytes([i]) * 60 for i in range(20)]
        assert ring.push_many(recs) == 15                  # 4 + 15 * (4 + 60) = 964 <= 1024
        assert ring.free() == 60 and len(ring) == 15
        assert ring.push(b"y" * 53) is False               # needs 4 + 4 + 53 = 61
        assert ring.push(b"y" * 52) is True                # exactly fills the ring
        assert ring.free() == 0
        assert ring.push(b"") is False                     # even an empty record needs 8 bytes
        assert ring.stats()["full"] == 3                   # three pushes came back short
        assert ring.pop_many(1) == recs[:1]
        assert ring.free() == 0                            # space comes back a frame at a time
        assert ring.pop_many(14) == recs[1:15]
        assert ring.free() == 964
        assert ring.push_many(recs[15:]) == 5
        assert ring.pop_many(100) == [b"y" * 52] + recs[15:]
        assert ring.empty() and ring.free() == 1024
    finally:
        ring.close()


def test_partial_batch_then_rest(runid):
    ring = Ring.create(runid, "partial", 256, doorbell=None)
    try:
        recs = [os.urandom(n) for n in (100, 100, 100, 10)]
        n = ring.push_many(recs)
        assert n == 2                                       # 4 + 2 * 104 = 212; a third: 316
        assert ring.free() == 44
        assert ring.pop_many(1) == recs[:1]
        assert ring.push_many(recs[n:]) == 0                # that frame still holds its space
        assert ring.pop_many(1) == recs[1:2]
        assert ring.free() == 256
        assert ring.push_many(recs[n:]) == 2
        assert ring.pop_many(10) == recs[2:]
    finally:
        ring.close()


def test_big_batches_become_several_frames(runid):
    ring = Ring.create(runid, "many", 1 << 16, doorbell=None)
    try:
        recs = [i.to_bytes(2, "little") for i in range(1000)]
        assert ring.push_many(recs) == 1000
        assert ring.used() == 1000 * 6 + 4 * 4               # four frames (256 + 256 + 256 + 232)
        assert ring.pop_many(300) == recs[:300]
        assert ring.pop_many(10 ** 6) == recs[300:]
    finally:
        ring.close()


def test_record_larger_than_ring_is_a_clear_error(runid):
    ring = Ring.create(runid, "big", 1000, doorbell=None)   # rounded up to 1024
    try:
        assert ring.capacity == 1024
        biggest = os.urandom(1016)
        assert ring.push(biggest)                         # exactly fills an empty ring
        assert ring.free() == 0
        assert ring.pop() == biggest
        with pytest.raises(ValueError, match="does not fit"):
            ring.push(b"x" * 1017)
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
        ring._data[4:8] = (200).to_bytes(4, "little")     # length beyond head
        with pytest.raises(RingCorrupted):
            ring.pop_many()
        ring._data[0:4] = (0).to_bytes(4, "little")       # a frame of no records
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


def test_consumer_killed_between_its_two_stores(runid):
    # pop_many stores tail, then release. A kill in between leaves release behind
    # tail: the next consumer must walk from release to tail, lose nothing, repeat nothing.
    from framework.shm import ring as ringmod
    ring = Ring.create(runid, "halfstore", 1024, doorbell=None)
    try:
        ring.push_many([b"a", b"bb"])
        ring.push_many([b"ccc"])
        ring.push_many([b"dddd", b"eeeee"])
        assert ring.pop_many(3) == [b"a", b"bb", b"ccc"]
        ring._hdr[ringmod._REL] = 0                        # as if killed before the 2nd store
        assert ring.free() == 1024 - ring.stats()["head"]   # the producer stays conservative
        assert ring.pop_many(1) == [b"dddd"]                # walks two frames to reach tail
        st = ring.stats()
        assert st["release"] < st["tail"] and ring.used() == st["head"] - st["release"]
        assert ring.pop_many(10) == [b"eeeee"]
        ring._hdr[ringmod._REL] = 0                        # killed after taking everything
        assert ring.free() < 1024
        assert ring.pop_many() == []                        # ... and the next pop repairs it
        assert ring.free() == 1024
    finally:
        ring.close()


def test_pickles_by_name_for_spawned_processes(runid):
    import pickle
    from framework.shm import StatsBlock
    ring = Ring.create(runid, "pick", 4096)
    st = StatsBlock.create(runid, 0, ["a"])
    r2 = pickle.loads(pickle.dumps(ring))
    s2 = pickle.loads(pickle.dumps(st))
    try:
        ring.push(b"via name")
        assert r2.pop() == b"via name"
        assert r2.bell.purpose == ring.bell.purpose
        s2.add("a", 5)
        assert st.get("a") == 5
    finally:
        for o in (r2, s2, ring, st):
            o.close()
