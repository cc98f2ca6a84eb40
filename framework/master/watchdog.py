"""Heartbeats: telling a worker whose loop stopped turning from one that is just idle.

Every worker publishes ``pid`` and ``heartbeat_ms`` (its CLOCK_MONOTONIC in ms, the same
clock in every process) into its stats block at least every ``MAX_SLEEP_MS`` + a little,
busy or idle (worker.py: STATS_EVERY, MAX_SLEEP_MS). A handler stuck in a loop stops
the loop, so the heartbeat ages; past ``--timeout`` seconds the supervisor kills the
worker (SIGKILL: a spinning Python handler would never get to a SIGTERM handler's work)
and restarts it like any other death.

A freshly started worker has not published yet (the block still holds its
predecessor's pid and heartbeat), so its age counts from its start instead.
"""
import os
import time


def heartbeat_age(snapshot, pid, started, now):
    """Seconds since worker ``pid`` (started at monotonic ``started``) last showed life,
    judged from its stats-block ``snapshot`` at monotonic time ``now``."""
    if snapshot.get("pid") != pid or not snapshot.get("heartbeat_ms"):
        return max(0.0, now - started)
    hb = snapshot["heartbeat_ms"] / 1000.0
    return max(0.0, now - max(hb, started))


def stuck(workers, blocks, timeout, now):
    """[(shard, pid, age)] of live workers whose heartbeat is older than ``timeout``.

    ``workers``: iterable of (shard, pid, started, ready); not-ready workers are left to
    the start-up timeout. ``blocks``: {shard: StatsBlock}."""
    if not timeout:
        return []
    out = []
    for shard, pid, started, ready in workers:
        if not ready or pid is None:
            continue
        b = blocks.get(shard)
        if b is None:
            continue
        snap = b.snapshot()
        age = heartbeat_age(snap, pid, started, now)
        if age > timeout:
            out.append((shard, pid, age))
    return out


PUBLISH_EVERY = 0.5     # seconds between two heartbeats of a busy loop
WAKE_EVERY = 1.0        # an idle loop still turns this often


def kernel_heartbeat_setup(block, publish_every=PUBLISH_EVERY, wake_every=WAKE_EVERY):
    """``setup`` for framework.shard.kernel.KernelLoop: publish ``pid`` and
    ``heartbeat_ms`` into the shard's stats block from the loop itself (a turn hook),
    and make an idle loop turn at least every ``wake_every`` s (a deadline hook), so
    --timeout can tell a stuck kernel-stack worker from an idle one as well."""
    state = {"next": 0.0}
    pid = os.getpid()

    def setup(loop):
        def turn(now):
            if now >= state["next"]:
                state["next"] = now + publish_every
                block.update({"pid": pid, "heartbeat_ms": int(time.monotonic() * 1000)})
            return False

        loop.add_turn_hook(turn)
        loop.add_deadline_hook(lambda now: now + wake_every)
    return setup


def chain(*setups):
    """One KernelLoop ``setup`` that runs several (None entries are skipped)."""
    fns = [s for s in setups if s is not None]

    def setup(loop):
        for fn in fns:
            fn(loop)
    return setup if fns else None
