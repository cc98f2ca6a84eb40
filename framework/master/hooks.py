"""Telling the balancer in front of the node (docs/DEPLOY.md): ``--on-ready``,
``--on-drain``, ``--drain-delay``, and the VIPs the kernel stack needs on the loopback.

``Lifecycle`` is the supervisor's part of it, driven from its monitor loop (no threads):

- ``ready()``: once, when every worker serves for the first time, ``--on-ready CMD``
  runs (e.g. ``birdc enable vip``: announce the VIP);
- ``request_drain()`` (SIGTERM with ``--drain-delay S``) starts the drain at the next
  ``step``: ``--on-drain CMD`` runs (e.g. ``birdc disable vip``: withdraw it), every ready
  worker gets SIGUSR2 (its ``--health-path`` answers 503, it keeps serving), and S
  seconds later ``step`` says the graceful stop is due. A TERM without a delay drains
  too: ``begin_drain`` from the supervisor's stop, so ``--on-drain`` runs either way.

Commands run through ``/bin/sh -c`` with FRAMEWORK_EVENT (ready|drain) and FRAMEWORK_VIPS
in their environment, are not waited for (a slow ``birdc`` must not delay the drain),
and are reaped; at exit ``close`` gives them HOOK_WAIT seconds to finish.
"""
import ipaddress
import logging
import os
import signal
import subprocess
import time

log = logging.getLogger("framework.supervisor")

DRAIN_SIGNAL = signal.SIGUSR2   # supervisor -> worker: report unhealthy, keep serving
HOOK_WAIT = 5.0                 # at exit: seconds a hook still running may take


class Lifecycle:
    def __init__(self, on_ready=None, on_drain=None, drain_delay=None, vips=()):
        self.on_ready = on_ready
        self.on_drain = on_drain
        self.drain_delay = drain_delay or 0.0
        self.vips = list(vips or ())
        self.was_ready = False
        self.drain_requested = False
        self.drain_until = None         # monotonic time the graceful stop is due
        self.draining = False
        self._told = set()              # worker pids that got DRAIN_SIGNAL
        self._procs = []

    # --- events ------------------------------------------------------------------------
    def ready(self):
        if not self.was_ready:
            self.was_ready = True
            self._run(self.on_ready, "ready")

    def request_drain(self):
        """From the TERM handler: only a flag (the monitor loop does the work)."""
        self.drain_requested = True

    def begin_drain(self, now=None):
        if self.draining:
            return
        self.draining = True
        now = time.monotonic() if now is None else now
        self.drain_until = now + self.drain_delay
        if self.drain_delay:
            log.warning("draining: unhealthy now, graceful stop in %.1f s", self.drain_delay)
        self._run(self.on_drain, "drain")

    def step(self, now, ready_pids):
        """One monitor-loop turn: start a requested drain, tell workers (also ones that
        became ready since), reap hooks. True once the graceful stop is due."""
        if self.drain_requested and not self.draining:
            self.begin_drain(now)
        if self.draining:
            for pid in ready_pids:
                if pid not in self._told:
                    self._told.add(pid)
                    try:
                        os.kill(pid, DRAIN_SIGNAL)
                    except ProcessLookupError:
                        pass
        self._reap()
        return self.draining and now >= self.drain_until

    def next_deadline(self):
        return self.drain_until if self.draining else None

    # --- commands ----------------------------------------------------------------------
    def _run(self, cmd, event):
        if not cmd:
            return
        env = dict(os.environ, FRAMEWORK_EVENT=event, FRAMEWORK_VIPS=",".join(self.vips))
        try:
            p = subprocess.Popen(["/bin/sh", "-c", cmd], env=env, stdin=subprocess.DEVNULL)
        except OSError as e:
            log.error("--on-%s %r: %s", event, cmd, e)
            return
        log.info("--on-%s: %s (pid %d)", event, cmd, p.pid)
        self._procs.append((p, event, cmd))

    def _reap(self):
        left = []
        for p, event, cmd in self._procs:
            code = p.poll()
            if code is None:
                left.append((p, event, cmd))
            elif code != 0:
                log.error("--on-%s %r exited with code %d", event, cmd, code)
        self._procs = left

    def close(self, wait=HOOK_WAIT):
        deadline = time.monotonic() + wait
        for p, event, cmd in self._procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("--on-%s %r still running at exit; killed", event, cmd)
                p.kill()
                p.wait()
        self._reap()


# --- the kernel stack: VIPs must be local addresses of the namespace -------------------

def _local_addresses(ns):
    out = subprocess.run((["ip", "-n", ns] if ns else ["ip"]) + ["-4", "-o", "addr", "show"],
                         capture_output=True, text=True, check=True).stdout
    return {line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3}


def add_loopback_vips(vips, ns=None):
    """Add each VIP not yet local to ``lo`` (as /32) in namespace ``ns``, so the kernel
    accepts what is routed to it; returns those added (``remove_loopback_vips`` takes
    them away at exit). arp_ignore=1 on the real interfaces keeps the kernel from
    answering ARP for them there (docs/DEPLOY.md)."""
    have = _local_addresses(ns)
    added = []
    for vip in vips:
        ipaddress.IPv4Address(vip)
        if vip in have:
            continue
        subprocess.run((["ip", "-n", ns] if ns else ["ip"])
                       + ["addr", "add", f"{vip}/32", "dev", "lo"], check=True,
                       capture_output=True)
        added.append(vip)
    if added:
        subprocess.run((["ip", "-n", ns] if ns else ["ip"]) + ["link", "set", "lo", "up"],
                       capture_output=True)
    return added


def remove_loopback_vips(vips, ns=None):
    for vip in vips:
        subprocess.run((["ip", "-n", ns] if ns else ["ip"])
                       + ["addr", "del", f"{vip}/32", "dev", "lo"], capture_output=True)
