"""The worker's side of a zero-downtime reload (HUP, --max-requests): signals from the
supervisor move a worker through the handover (framework/net/tcp/handover.py says who
answers what on the user stack; the kernel stack hands its accept queue over by closing
its SO_REUSEPORT listener after the successor has opened its own).

    old worker                          new worker (spawned beside it, standby)
                                        ready ->
    SIGWINCH: retire, write its flows,
    report "retired", drain softly
                                        SIGTTIN: take over (new flows are ours)
    exits when its connections are done
                                        SIGTTOU: alone (the cross-shard mesh and the
                                        shard's doorbell are attached only now: their
                                        rings have one consumer each)

--max-requests: after that many responses a worker reports "recycle" once and the
supervisor replaces it the same way.
"""
import logging
import os
import signal

from framework.shard.xshard import XShard
from framework.shm import naming
from framework.web.httpserver import served_requests

log = logging.getLogger("framework.worker")

CHECK_EVERY = 0.5       # seconds between looks at the request count (--max-requests)


def flows_path(run_id, shard):
    """Where the retiring worker of ``shard`` leaves its flows for the successor."""
    return naming.shm_path(run_id, f"handover.{shard}")


def install(loop, spec, shard_id, report, standby):
    """Signal handlers of one worker. ``standby``: this worker was spawned beside its
    predecessor and waits for SIGTTIN, then SIGTTOU."""
    path = flows_path(spec.run_id, shard_id) if spec.run_id else None
    provider = loop.provider

    def retire():
        if loop.draining:
            return
        log.info("shard %d: handing over to the new worker", shard_id)
        loop.stats = None            # the successor publishes into the block from now on
        loop.retire(path)
        if report:
            report(shard_id, os.getpid(), "retired")

    loop.add_signal_handler(signal.SIGWINCH, retire)
    if standby:
        state = {"took": False}

        def take_over():
            if not state["took"]:
                state["took"] = True
                provider.take_over(path, loop.time())

        def alone():
            take_over()
            provider.alone()
            if spec.mesh is not None and loop.xs is None:
                loop.attach_mesh(XShard(spec.mesh, shard_id, loop.ctx))
            if spec.bells:
                loop.use_doorbell(spec.bells[shard_id])
            log.info("shard %d: handover done", shard_id)

        loop.add_signal_handler(signal.SIGTTIN, take_over)
        loop.add_signal_handler(signal.SIGTTOU, alone)
    limit = getattr(spec, "max_requests", 0) or 0
    if limit > 0 and report:
        def look():
            if served_requests() >= limit:
                log.info("shard %d: %d requests served (--max-requests); recycling",
                         shard_id, limit)
                report(shard_id, os.getpid(), "recycle")
            else:
                loop.call_later(CHECK_EVERY, look)
        loop.call_later(CHECK_EVERY, look)
