"""Cross-shard calls over shared-memory rings (Seastar's ``submit_to``).

    value = await ctx.submit_to(k, fn, *args)       # run fn(*args) on shard k
    values = await ctx.broadcast(fn, *args)          # [result of shard 0, 1, ...]
    value = await ctx.map_reduce(fn, reduce, *args)  # reduce(reduce(r0, r1), r2) ...

(framework/context.py; ``XShard`` is what a multi-shard ShardContext calls.) ``fn`` runs
inside shard k's loop, where ``framework.current_shard()`` is that shard's ShardContext
(its ``state``, its loop). ``fn`` may return a value, a future or a coroutine (run as a
task on shard k); the caller's asyncio future gets the value or the exception raised
there (re-raised by type when it pickles, else a RemoteError).

Wire: one SPSC ring (framework/shm) per ordered pair of shards, all rings into one
shard share that shard's doorbell. A call is the record ``b"C" + pickle((id, fn, args,
kwargs))``: ``fn`` pickles by reference (module + qualified name), so it must be a
module-level function (no lambda, no closure: TypeError at submit time); a reply is
``b"R" + pickle((id, ok, value))``. Records are batched: submit_to only appends to a
per-destination outbox, ``drain()`` (called by the shard loop once per turn) pushes each
outbox with one ``push_many`` and pops and runs everything that arrived. A call to the
calling shard itself runs on the next loop turn, without pickling its arguments.

Liveness (no hanging futures): the supervisor is the single writer of a small control
segment ``xs.ctl`` with, per shard, the worker's pid (0 while dead or restarting) and a
generation number bumped at every start and death (``Mesh.mark_started`` /
``mark_dead``, which also rings every doorbell so waiting shards look at once). A call
records the target's generation; if the target dies or is replaced while the call is in
flight, or is dead when the call is made, the Future fails with ShardUnavailable; a call
not answered within ``timeout`` seconds (a stuck handler) fails with ShardTimeout.
Delivery is at most once per incarnation: a shard killed after popping a call but
before answering it never answers, a call still in its inbound ring when it dies is
run by its successor (whose answer the caller, having failed the call, ignores).
"""
import functools
import itertools
import logging
import os
import pickle
import struct
import time

from framework.context import (ShardTimeout, ShardUnavailable, run_local, settle,
                               when_ready)
from framework.shm import Doorbell, Ring
from framework.shm.naming import shm_path
from framework.shm.segment import map_segment, open_segment, unlink_quiet

log = logging.getLogger("framework.xshard")

CALL = 0x43      # b"C"
REPLY = 0x52     # b"R"
DEFAULT_TIMEOUT = 10.0
CHECK_EVERY = 0.05          # seconds between two liveness/timeout scans while calls pend
POP_BATCH = 256
RING_CAPACITY = 1 << 20

_PROTO = pickle.HIGHEST_PROTOCOL
_U64x2 = struct.Struct("<QQ")
_CTL_MAGIC = b"FWXCTL1\0"
_CTL_HDR = 64


class RemoteError(RuntimeError):
    """An exception raised on the other shard that could not be pickled back."""


# --- the shared part: rings, doorbells, control block --------------------------------

class Mesh:
    """Every ring, doorbell and the control block of a run. The supervisor creates it
    before forking (the workers inherit the mappings) and removes it at the end."""

    def __init__(self, runid, n, rings, bells, ctl, own_bells):
        self.runid = runid
        self.n = n
        self.rings = rings          # {(src, dst): Ring}
        self.bells = bells          # {shard: Doorbell}
        self._ctl = ctl             # mmap of the control segment
        self._own_bells = own_bells

    @classmethod
    def create(cls, runid, n, capacity=RING_CAPACITY, bells=None):
        """``bells``: {shard: Doorbell} to share with other rings into the same shard
        (one fd for the loop to poll); by default the mesh makes its own."""
        own = bells is None
        made = []
        try:
            if own:
                bells = {}
                for k in range(n):
                    bells[k] = Doorbell.create(runid, f"xs.bell.{k}")
                    made.append(bells[k])
            rings = {}
            for src in range(n):
                for dst in range(n):
                    if src != dst:
                        r = Ring.create(runid, f"xs.{src}.{dst}", capacity, bells[dst])
                        rings[(src, dst)] = r
                        made.append(r)
            size = _CTL_HDR + 16 * n
            shm = open_segment(runid, "xs.ctl", size)
            try:
                ctl = map_segment(shm, size)
            finally:
                shm.close_fd()
            ctl[0:8] = _CTL_MAGIC
        except BaseException:
            for obj in made:
                obj.close()
                obj.unlink()
            raise
        return cls(runid, n, rings, bells, ctl, own)

    # supervisor side (the single writer of the control block)
    def mark_started(self, k, pid):
        pid0, gen = self.state(k)
        _U64x2.pack_into(self._ctl, _CTL_HDR + 16 * k, pid, gen + 1)

    def mark_dead(self, k):
        pid, gen = self.state(k)
        _U64x2.pack_into(self._ctl, _CTL_HDR + 16 * k, 0, gen + 1)
        for j, bell in self.bells.items():   # callers waiting on k look now, not later
            if j != k:
                bell.ring()

    def state(self, k):
        """(pid, generation) of shard k; pid 0 = not running."""
        return _U64x2.unpack_from(self._ctl, _CTL_HDR + 16 * k)

    def close(self):
        for r in self.rings.values():
            r.close()
        if self._own_bells:
            for b in self.bells.values():
                b.close()
        if not self._ctl.closed:
            self._ctl.close()

    def unlink(self):
        for r in self.rings.values():
            r.unlink()
        if self._own_bells:
            for b in self.bells.values():
                b.unlink()
        unlink_quiet(shm_path(self.runid, "xs.ctl"))


# --- one shard's end -----------------------------------------------------------------

class _Pending:
    __slots__ = ("fut", "dst", "gen", "deadline", "what")

    def __init__(self, fut, dst, gen, deadline, what):
        self.fut = fut
        self.dst = dst
        self.gen = gen
        self.deadline = deadline
        self.what = what


def _describe(fn):
    return getattr(fn, "__qualname__", None) or repr(fn)


def _check_fn(fn):
    if not callable(fn):
        raise TypeError(f"submit_to: {fn!r} is not callable")
    q = getattr(fn, "__qualname__", "")
    if "<lambda>" in q or "<locals>" in q:
        raise TypeError(f"submit_to: {q} is not a module-level function; cross-shard calls "
                        f"send functions by qualified name")


class XShard:
    """Shard ``shard_id``'s end of the mesh; lives in that worker's process."""

    def __init__(self, mesh, shard_id, ctx, timeout=DEFAULT_TIMEOUT, clock=time.monotonic):
        self.mesh = mesh
        self.shard = shard_id
        self.n = mesh.n
        self.ctx = ctx
        self.loop = ctx.loop
        self.timeout = timeout
        self.clock = clock
        self.bell = mesh.bells[shard_id]
        self.out = {d: mesh.rings[(shard_id, d)] for d in range(self.n) if d != shard_id}
        self.inbound = [mesh.rings[(s, shard_id)] for s in range(self.n) if s != shard_id]
        self.inbound_from = {s: mesh.rings[(s, shard_id)] for s in range(self.n)
                             if s != shard_id}
        self.outbox = {d: [] for d in self.out}
        self.pending = {}
        # ids unique across incarnations of this shard: a reply meant for a dead
        # predecessor is never taken for ours
        self._ids = itertools.count((os.getpid() & 0xFFFFFFFF) << 32 | 1)
        self._next_check = 0.0
        self.counters = {"xshard.calls_out": 0, "xshard.calls_in": 0, "xshard.replies_out": 0,
                         "xshard.replies_in": 0, "xshard.batches": 0, "xshard.failed": 0,
                         "xshard.timeouts": 0, "xshard.stale_replies": 0, "xshard.ring_full": 0}

    # -- calling -------------------------------------------------------------------------
    def submit_to(self, k, fn, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` on shard ``k``; an asyncio future of the result."""
        _check_fn(fn)
        if not 0 <= k < self.n:
            raise ValueError(f"submit_to: no shard {k} (0..{self.n - 1})")
        if k == self.shard:
            return run_local(self.loop, fn, args, kwargs)
        fut = self.loop.create_future()
        pid, gen = self.mesh.state(k)
        if pid == 0:
            self.counters["xshard.failed"] += 1
            fut.set_exception(ShardUnavailable(
                f"shard {k} is not running (dead or restarting): {_describe(fn)} not sent"))
            return fut
        cid = next(self._ids)
        try:
            rec = b"C" + pickle.dumps((cid, fn, args, kwargs), _PROTO)
        except Exception as e:
            raise TypeError(f"submit_to({k}, {_describe(fn)}): cannot pickle the call: {e}")
        if len(rec) > self.out[k].max_record:
            raise ValueError(f"submit_to({k}, {_describe(fn)}): call of {len(rec)} bytes "
                             f"exceeds the ring's {self.out[k].max_record}")
        now = self.clock()
        self.pending[cid] = _Pending(fut, k, gen, now + self.timeout, _describe(fn))
        self.outbox[k].append(rec)
        self.counters["xshard.calls_out"] += 1
        return fut

    # -- the loop's side -----------------------------------------------------------------
    def drain(self, now=None):
        """Once per loop turn: run the calls that arrived, resolve replies, push the
        outboxes, fail calls whose shard died or that timed out. True if it did work."""
        busy = False
        for ring in self.inbound:
            recs = ring.pop_many(POP_BATCH)
            if recs:
                busy = True
                self._handle(recs, ring)
        if self._flush():
            busy = True
        if self.pending:
            if now is None:
                now = self.clock()
            if now >= self._next_check:
                self._next_check = now + CHECK_EVERY
                self._check(now)
        return busy

    def _handle(self, recs, ring):
        src = None
        for rec in recs:
            kind = rec[0]
            try:
                msg = pickle.loads(rec[1:])
            except Exception:
                # a function the importing side does not have (a new module after HUP?)
                log.exception("shard %d: cannot unpickle a cross-shard record", self.shard)
                if kind == CALL:
                    cid = _peek_id(rec)
                    if cid is not None:
                        if src is None:
                            src = self._source_of(ring)
                        self._reply(src, cid, False, RemoteError(
                            f"shard {self.shard} could not unpickle the call"))
                continue
            if kind == CALL:
                self.counters["xshard.calls_in"] += 1
                if src is None:
                    src = self._source_of(ring)
                cid, fn, args, kwargs = msg
                try:
                    res = fn(*args, **kwargs)
                except Exception as e:
                    self._reply(src, cid, False, e)
                    continue
                when_ready(self.loop, res, functools.partial(self._reply, src, cid))
            elif kind == REPLY:
                self.counters["xshard.replies_in"] += 1
                cid, ok, value = msg
                p = self.pending.pop(cid, None)
                if p is None:
                    self.counters["xshard.stale_replies"] += 1
                    continue
                settle(p.fut, ok, value)

    def _source_of(self, ring):
        for s, r in self.inbound_from.items():
            if r is ring:
                return s
        raise KeyError("unknown ring")

    def _reply(self, dst, cid, ok, value):
        try:
            rec = b"R" + pickle.dumps((cid, ok, value), _PROTO)
        except Exception as e:
            what = "result" if ok else f"exception {type(value).__name__}: {value}"
            rec = b"R" + pickle.dumps((cid, False, RemoteError(
                f"shard {self.shard}: cannot pickle the {what} back: {e}")), _PROTO)
        self.outbox[dst].append(rec)
        self.counters["xshard.replies_out"] += 1

    def _flush(self):
        moved = False
        for dst, box in self.outbox.items():
            if box:
                n = self.out[dst].push_many(box)   # rings dst's doorbell if it sleeps
                if n:
                    moved = True
                    self.counters["xshard.batches"] += 1
                    del box[:n]
                if box:
                    self.counters["xshard.ring_full"] += 1
        return moved

    def _check(self, now):
        state = self.mesh.state
        seen = {}
        failed = []
        for cid, p in self.pending.items():
            st = seen.get(p.dst)
            if st is None:
                st = seen[p.dst] = state(p.dst)
            pid, gen = st
            if gen != p.gen:
                how = "died" if pid == 0 else f"was restarted (now pid {pid})"
                failed.append((cid, ShardUnavailable(
                    f"shard {p.dst} {how} while {p.what} was in flight")))
            elif now >= p.deadline:
                self.counters["xshard.timeouts"] += 1
                failed.append((cid, ShardTimeout(
                    f"shard {p.dst} did not answer {p.what} within {self.timeout:g} s")))
        for cid, exc in failed:
            p = self.pending.pop(cid)
            self.counters["xshard.failed"] += 1
            # a call still in our outbox is not sent any more
            box = self.outbox.get(p.dst)
            if box and isinstance(exc, ShardUnavailable):
                box[:] = [r for r in box if r[0] != CALL or _peek_id(r) != cid]
            settle(p.fut, False, exc)

    def busy(self):
        """Work left for the next turn (an outbox the ring could not take)."""
        return any(self.outbox.values())

    def next_deadline(self, now):
        """When the loop must turn again at the latest (liveness/timeout scan), or None."""
        if self.busy():
            return now + 0.001
        if self.pending:
            return max(now, self._next_check)
        return None

    # -- sleeping ------------------------------------------------------------------------
    def fileno(self):
        return self.bell.fileno()

    def prepare_sleep(self):
        """Announce sleep on the doorbell; False (and awake again) if work arrived."""
        self.bell.prepare_sleep()
        for r in self.inbound:
            if not r.empty():
                self.bell.awake()
                return False
        return True

    def awake(self):
        self.bell.drain()
        self.bell.awake()


def _peek_id(rec):
    try:
        return pickle.loads(rec[1:])[0]
    except Exception:
        return None
