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

On TAP (``HandoverPort``) a queue gives each frame to one reader, so the two workers
take turns on it: the standby worker does not read it; at SIGWINCH the old one stops
reading it (and the rings other shards forward into it) and from SIGTTIN on the new
one reads both, handing the old one the segments of its flows over a ring of its own.
A TAP port's SYN queue is read with its data queue (one ``rx_burst``), so it changes
readers at the same points: its SYNs are new flows', the successor's from SIGTTIN on.
"""
import logging
import os
import signal

import posix_ipc

from framework.net.tcp import handover
from framework.shard.xshard import XShard
from framework.shm import Ring, naming
from framework.shm.segment import unlink_quiet
from framework.web.httpserver import served_requests

log = logging.getLogger("framework.worker")

CHECK_EVERY = 0.5       # seconds between looks at the request count (--max-requests)


def flows_path(run_id, shard):
    """Where the retiring worker of ``shard`` leaves its flows for the successor."""
    return naming.shm_path(run_id, f"handover.{shard}")


def frames_purpose(shard):
    """The ring on which the successor hands the retiring worker of ``shard`` its frames."""
    return f"handover.{shard}.frames"


NORMAL, STANDBY, SUCCESSOR, RETIRED = "normal", "standby", "successor", "retired"
RING_CAPACITY = 1 << 22    # 4 MiB: room for ~60 GSO frames of 64 KiB, thousands of small
RING_POLL = 0.002          # seconds: how often a successor looks at rings no bell rings for


class HandoverPort:
    """A port whose queue has one reader (TAP), through a handover (see the module).

    ``reading`` says whether the queue's fd should be watched; the provider follows it.
    - standby (new worker, until SIGTTIN): reads nothing, the old worker reads the queue;
    - retired (old worker, from SIGWINCH): reads only the ring ``frames_purpose(shard)``,
      which it makes (its doorbell is the shard's, which the old worker sleeps on);
    - successor (new worker, SIGTTIN to SIGTTOU): reads the queue and the forwarding
      rings, keeps what ``handover.frame_owner`` says is its own and pushes the old
      worker's segments (and a copy of ARP) onto that ring. Its loop has no doorbell
      yet (the old worker is that doorbell's consumer), so ``wake_within`` makes it
      look at the forwarding rings every RING_POLL seconds.
    Both write to the queue (any holder of the fd may). ``rx_burst``/``tx_burst`` are
    the inner port's own methods outside a handover: nothing between."""

    def __init__(self, port, run_id, shard, bell=None):
        self.inner = port
        self.run_id = run_id
        self.shard = shard
        self.bell = bell              # the shard's Doorbell (the retired worker's ring's)
        self.ring = None
        self.layers = {}
        self.theirs = {}
        self.passed = 0               # frames handed to the old worker (successor)
        self.pass_drops = 0           # ... that its ring had no room for
        self.tx_burst = port.tx_burst
        self._mode(NORMAL)

    def __getattr__(self, name):     # queue, csum_offload, gso, mtu, stats, counters, idle
        return getattr(self.inner, name)

    def _mode(self, mode):
        self.mode = mode
        self.reading = mode in (NORMAL, SUCCESSOR)
        self.rx_burst = {NORMAL: self.inner.rx_burst, STANDBY: self._nothing,
                         SUCCESSOR: self._successor_rx, RETIRED: self._retired_rx}[mode]

    def _nothing(self, max=64):
        return []

    def _retired_rx(self, max=64):
        return self.ring.pop_many(max) if self.ring is not None else []

    def _successor_rx(self, max=64):
        frames = self.inner.rx_burst(max)
        if not frames or self.ring is None:
            return frames
        keep, out = [], []
        owner, layers, theirs = handover.frame_owner, self.layers, self.theirs
        for f in frames:
            o = owner(f, layers, theirs)
            if o == handover.KEEP:
                keep.append(f)
            elif o == handover.PASS:
                out.append(f)
            else:
                keep.append(f)
                out.append(f)
        if out:
            n = self.ring.push_many(out)     # rings the old worker's bell if it sleeps
            self.passed += n
            self.pass_drops += len(out) - n  # its ring is full: as a full NIC queue
        return keep

    def rx_pending(self):
        if self.mode == RETIRED:
            return self.ring is not None and not self.ring.empty()
        if self.mode == STANDBY:
            return False
        fn = getattr(self.inner, "rx_pending", None)
        return fn is not None and fn()

    def wake_within(self):
        """Seconds within which the loop must turn again to see frames no fd announces,
        or None."""
        if self.mode == SUCCESSOR and hasattr(self.inner, "rx_pending"):
            return RING_POLL
        if self.mode == RETIRED and self.bell is None:
            return RING_POLL
        return None

    # ---- the steps (called by the provider, which watches the fd as ``reading`` says) ----
    def standby(self):
        self._mode(STANDBY)

    def retire(self):
        """Stop reading the queue; make the ring the successor will fill."""
        purpose = frames_purpose(self.shard)
        unlink_quiet(naming.shm_path(self.run_id, purpose))   # a dead run's or worker's
        self.ring = Ring.create(self.run_id, purpose, RING_CAPACITY, doorbell=self.bell)
        self._mode(RETIRED)

    def take_over(self, layers, theirs):
        """Read the queue from now on. ``layers``: {local ip: TcpLayer};
        ``theirs``: the old worker's flows (``handover.read_flows``)."""
        purpose = frames_purpose(self.shard)
        # none: the old worker exited (or died before it retired: it makes the ring
        # before reporting), and its flows with it
        try:
            self.ring = Ring.attach(self.run_id, purpose)
        except posix_ipc.ExistentialError:
            self.ring = None
        self.layers = layers
        self.theirs = theirs if self.ring is not None else {}
        self._mode(SUCCESSOR)

    def alone(self):
        if self.mode == SUCCESSOR and self.ring is not None:
            log.info("shard %d: %d frames handed to the old worker (%d dropped)",
                     self.shard, self.passed, self.pass_drops)
        self._close_ring()
        self.layers = self.theirs = {}
        self._mode(NORMAL)

    def _close_ring(self):
        ring, self.ring = self.ring, None
        if ring is not None:
            ring.close()      # (its name only: an attached ring's doorbell is the shard's)
            unlink_quiet(naming.shm_path(self.run_id, ring.purpose))

    def fileno(self):
        return self.inner.fileno()

    def close(self):
        self._close_ring()
        self.inner.close()


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
            if path:
                unlink_quiet(path)    # read: a later handover must not find these flows
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
