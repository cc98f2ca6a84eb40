"""The supervisor's side of a zero-downtime replacement of one worker (HUP's rolling
restart, --max-requests): the new worker starts beside the old one on the same queue
(framework/shard/handoff.py is the workers' side; framework/net/tcp/handover.py who
answers which segment), then

1. new worker ready          -> SIGWINCH to the old one: it stops taking new flows, writes
                                its flows for the successor, reports "retired" and drains
                                (each connection closes after its next response);
2. "retired" (or it died)    -> SIGTTIN to the new one: new flows are its own;
3. the old one has exited    -> SIGTTOU to the new one: the queue is its alone (it attaches
                                the cross-shard mesh and the doorbell), and the mesh
                                learns its pid.

Everywhere: on AF_PACKET each socket with the shard's filter gets every frame of the
shard, the kernel stack has SO_REUSEPORT, and a TAP queue, whose frames go to one reader,
is read by one worker at a time (the old one until SIGWINCH, the new one from SIGTTIN),
the new one handing the old one its flows' segments (framework/shard/handoff.py).
"""
import logging
import os
import signal

log = logging.getLogger("framework.supervisor")


def lossless(stack, port_type, forwarding):
    """Whether a worker of this kind can hand over without loss."""
    if stack == "kernel" or port_type == "tap":
        return True
    return port_type == "afpacket" and not forwarding


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class Handover:
    """One shard's replacement in progress. ``old``: the retiring worker's process."""

    def __init__(self, shard, old):
        self.shard = shard
        self.old = old
        self.old_pid = old.pid
        self.retire_sent = False
        self.retired = False
        self.took_over_pid = None     # the new worker that got SIGTTIN

    def report(self, pid, status):
        """A worker's report; True when it was the old worker's."""
        if pid != self.old_pid:
            return False
        if status == "retired":
            self.retired = True
        return True

    def sentinels(self):
        return [self.old.sentinel] if self.old is not None else []

    def step(self, new_pid, new_ready):
        """Move on as far as the workers allow; True when the handover is complete."""
        old = self.old
        if old is not None and old.exitcode is not None:
            old.join(0)
            self.old = None
            self.retired = True       # dead or done: its flows are gone with it
            log.info("shard %d: the old worker (pid %d) has exited", self.shard, self.old_pid)
        if new_pid is None or not new_ready:
            return False              # (a new worker that died is respawned in standby)
        if self.old is not None and not self.retire_sent:
            self.retire_sent = True
            _signal(self.old_pid, signal.SIGWINCH)
            return False
        if self.retired and self.took_over_pid != new_pid:
            self.took_over_pid = new_pid
            _signal(new_pid, signal.SIGTTIN)
        if self.old is None and self.took_over_pid == new_pid:
            _signal(new_pid, signal.SIGTTOU)
            return True
        return False

    def kill(self, sig):
        if self.old is not None and self.old.exitcode is None:
            _signal(self.old_pid, sig)

    def join(self, timeout):
        if self.old is not None:
            self.old.join(timeout)
            if self.old.exitcode is None:
                self.old.kill()
                self.old.join(2.0)
            self.old = None


class RollingRestart:
    """The shards still to be replaced (HUP: all of them, in order; --max-requests: the
    one that asked), one at a time: by a handover where ``lossless``, else by stopping
    the old worker and starting a new one."""

    def __init__(self):
        self.pending = []         # shards, the first one being replaced
        self.handovers = {}       # shard -> Handover in progress
        self.rolled = None        # pid of the stop-then-start replacement waited for
        self.reloading = False    # the restart is a HUP's (it says when it is over)

    def step(self, sup):
        if not self.pending:
            return
        w = sup.workers[self.pending[0]]
        ho = self.handovers.get(w.shard)
        if ho is not None:
            if ho.step(w.pid if w.proc is not None else None, w.ready):
                del self.handovers[w.shard]
                if sup.mesh is not None:
                    sup.mesh.mark_started(w.shard, w.pid)
                log.info("shard %d handed over to pid %d", w.shard, w.pid)
                self._next()
            return
        if w.replacing:
            return                       # waiting for it to exit (then it is respawned)
        if w.proc is None:
            return                       # dead or restarting anyway: wait for the restart
        if not w.ready:
            return                       # the previous replacement is still starting
        if self.rolled == w.pid:
            self._next()                 # this one is the fresh worker: next shard
            return
        if lossless(sup.stack, sup.port_type, sup.fwd is not None):
            # the new worker beside the old one; Handover takes it from here
            self.handovers[w.shard] = Handover(w.shard, w.proc)
            w.proc = None
            sup._spawn(w, standby=True)
            return
        # no handover possible (software forwarding on AF_PACKET): stop the old worker
        # first (graceful: its connections finish or are closed, new ones on its flows
        # are refused meanwhile); the supervisor respawns it at once (Worker.replacing)
        w.replacing = True
        _signal(w.pid, signal.SIGTERM)

    def _next(self):
        self.pending.pop(0)
        self.rolled = None
        if not self.pending and self.reloading:
            self.reloading = False
            log.warning("SIGHUP: every worker replaced")
