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

Only where two workers can see one queue: the user stack on AF_PACKET (each socket with
the shard's filter gets every frame of the shard) and the kernel stack (SO_REUSEPORT).
A TAP queue is one file: its frames go to one reader, so there the old worker stops
first (``lossless`` is False).
"""
import logging
import os
import signal

log = logging.getLogger("framework.supervisor")


def lossless(stack, port_type, forwarding):
    """Whether a worker of this kind can hand over without loss."""
    if stack == "kernel":
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
