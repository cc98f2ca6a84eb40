"""Heartbeats: telling a worker whose loop stopped turning from one that is just idle.

Every worker publishes ``pid`` and ``heartbeat_ms`` (its CLOCK_MONOTONIC in ms, the same
clock in every process) into its stats block at least every ``MAX_SLEEP_MS`` + a little,
busy or idle (framework/shard/loop.py: STATS_EVERY, MAX_SLEEP). A handler stuck in a loop stops
the loop, so the heartbeat ages; past ``--timeout`` seconds the supervisor kills the
worker (SIGKILL: a spinning Python handler would never get to a SIGTERM handler's work)
and restarts it like any other death.

A freshly started worker has not published yet (the block still holds its
predecessor's pid and heartbeat), so its age counts from its start instead.
"""

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
