"""One worker process: one core, one NIC queue, one user-level stack, the app's handlers.

The loop (DESIGN.md), run to completion once per turn:

    rx_burst -> [frames of other shards to their rings, frames forwarded to us]
    -> stack.process -> TCP events to the app's protocols (streams.py)
    -> cross-shard calls and replies (xshard.py) -> reactor.run_once (handlers' timers
    and callbacks) -> stack.dispatch (TCP output, stack timers) -> tx_burst

A turn that moved anything is followed at once by another (a busy worker never sleeps).
A turn that moved nothing sleeps in poll() on the port's fd, the shard's doorbell (all
shm rings into this shard ring it) and the signal wake-up pipe, until the earliest of
``stack.poll_at()``, ``reactor.next_deadline()`` and the cross-shard deadline, at most
MAX_SLEEP_MS: an idle worker costs ~0% CPU and still publishes a heartbeat.

``worker_main`` is what the supervisor runs in each child: it pins itself, enters the
link's namespace, opens its port and runs the loop until SIGTERM (graceful: connections
finish, at most the grace period) or SIGQUIT (at once).
"""
import ctypes
import gc
import logging
import math
import os
import select
import signal
import time

from framework.shard.context import ShardContext
from framework.shard.reactor import Reactor
from framework.shard.streams import Streams

log = logging.getLogger("framework.worker")

RX_BATCH = 64
GRACE = 5.0             # graceful stop: open connections get this long to finish
MAX_SLEEP_MS = 1000     # an idle worker still turns once a second (heartbeat, stats)
STATS_EVERY = 0.5       # seconds between two publications of the shard's counters
# the per-shard stats block (framework/shm StatsBlock) the supervisor creates
STAT_NAMES = ("pid", "heartbeat_ms", "loop.turns", "loop.sleeps", "port.rx", "port.tx",
              "port.rx_drops", "port.tx_drops", "streams.open", "streams.accepted",
              "stack.rx_frames", "stack.tx_frames", "fwd.out", "fwd.in", "fwd.drops",
              "xshard.calls_out", "xshard.calls_in", "xshard.failed", "xshard.timeouts")
XSHARD_STATS = ("xshard.calls_out", "xshard.calls_in", "xshard.failed", "xshard.timeouts")


def stat_names():
    """Every counter a user-stack shard publishes: the loop's (STAT_NAMES), port bytes,
    every stack counter (drops by reason, tcp.*), and open connections by TCP state."""
    names = list(STAT_NAMES) + ["port.rx_bytes", "port.tx_bytes"]
    try:
        from framework.net.stack import Stack
        from framework.net.tcp import STATE_NAMES
        names += sorted(Stack(mac=b"\x02\0\0\0\0\x01").counters)
        names += [f"state.{n}" for n in sorted(set(STATE_NAMES.values()))]
    except Exception:  # an older stack: the loop's own counters only
        log.debug("stack counters unavailable for the stats block", exc_info=True)
    seen = set()
    return [n for n in names if not (n in seen or seen.add(n))]


TX_BACKLOG_MAX = 4096
PORT_ERROR_LIMIT = 100  # consecutive failed polls of the port fd before giving up
_POLLBAD = select.POLLERR | select.POLLHUP | select.POLLNVAL


class PortGone(RuntimeError):
    """The port's device disappeared (e.g. its link was deleted under the worker)."""
PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1
_POLLIN = select.POLLIN | select.POLLERR | select.POLLHUP


class UserShard:
    """The user-stack loop of one shard; ports, stack and app are handed in."""

    def __init__(self, port, stack, ctx, listeners, clock=time.monotonic):
        self.port = port
        self.stack = stack
        self.ctx = ctx
        self.reactor = ctx.reactor
        self.clock = clock
        self.streams = Streams(stack.tcp, ctx, listeners, eof_next_turn=True)
        self.tx_backlog = []
        self.stopping = False      # leave the loop now
        self.draining = False      # graceful stop asked: finish connections, then leave
        self._drain_until = None
        self.grace = GRACE
        self.pcap = None           # a framework.pcap.PcapWriter, or None
        self.turns = 0
        self.sleeps = 0
        self._extra_fds = []
        self.stats = None          # a framework.shm StatsBlock, or None
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.fwd = None            # a forward.Forwarder when frames cross shards
        self.xs = None             # the xshard.XShard of this shard (ctx.submit_to)
        self.bell = None           # this shard's Doorbell (all rings into it share it)
        self._next_stats = 0.0
        self._names = None
        self._port_errors = 0      # consecutive failed polls of the port fd

    def request_stop(self, graceful=True):
        """graceful: protocols finish, new connections are refused, at most GRACE
        seconds (asking again changes nothing); otherwise stop at once."""
        if graceful:
            self.draining = True
        else:
            self.stopping = True

    def _drain_step(self, now):
        if self._drain_until is None:
            self._drain_until = now + self.grace
            self.streams.shutdown()
            return
        done = self.streams.all_done() and not self.tx_backlog
        if done or now >= self._drain_until:
            if not done:
                # grace is over: reset what is still open, so its clients learn at once
                # instead of waiting on a peer that is about to vanish with the link
                for t in list(self.streams.transports):
                    try:
                        t.abort()
                    except Exception:  # a broken protocol must not stop the stop
                        log.exception("aborting %r at the end of the grace period", t)
            # one more turn sends what the last closes queued (FIN, ACK, RST)
            self.run_once()
            self.stopping = True

    def _port_error(self, fd, ev):
        """The port's fd polls as failed (POLLERR/POLLHUP) with nothing to read. A socket
        error is read (which clears it); if the fd keeps failing, the device is gone (the
        link was removed under us) and spinning on it would burn the core: give up, the
        supervisor restarts the shard or stops."""
        err = 0
        import socket
        dfd = os.dup(fd)
        try:
            s = socket.socket(fileno=dfd)
        except OSError:         # not a socket (a TAP fd): socket() did not take the dup
            os.close(dfd)
        else:
            with s:
                try:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                except OSError:
                    pass
        self._port_errors += 1
        if self._port_errors > PORT_ERROR_LIMIT:
            raise PortGone(f"port fd failing (poll events {ev:#x}, last error "
                           f"{os.strerror(err) if err else 'none'}): is the link gone?")

    def add_wakeup_fd(self, fd):
        """Another fd that ends a sleep (signal wake-up pipe, shard doorbell)."""
        self._extra_fds.append(fd)

    def run_once(self):
        """One turn of the loop. Returns True when it moved anything."""
        now = self.clock()
        # protocols read the time from the reactor (CONTRACTS 5), never from a clock
        self.reactor.now = now
        stack = self.stack
        tcp = stack.tcp
        frames = self.port.rx_burst(RX_BATCH)
        busy = bool(frames)
        if frames:
            self._port_errors = 0
            self.rx_bytes += sum(map(len, frames))
            pcap = self.pcap
            if pcap is not None:
                pcap.write(frames)
        fwd = self.fwd
        if fwd is not None:
            if frames:
                frames = fwd.steer(frames)
            got = fwd.receive(RX_BATCH)
            if got:
                busy = True
                frames = frames + got if frames else got
        if frames:
            stack.process(frames, now)
        streams = self.streams
        if streams.new_turn():     # FINs held back last turn (streams.py: eof_next_turn)
            busy = True
        events = tcp.events
        if events:
            busy = True
            deliver = streams.deliver
            # a handler's reaction may queue new events (e.g. close -> closed): drain them
            # too, a bounded number of times
            for _ in range(8):
                batch = events[:]
                del events[:]
                deliver(batch)
                if not events:
                    break
        xs = self.xs
        if xs is not None and xs.drain(now):   # cross-shard calls and replies
            busy = True
        reactor = self.reactor
        if reactor._ready:
            busy = True
        reactor.run_once(now)
        if xs is not None and xs.busy():       # calls made this turn: push them next turn
            busy = True
        out = stack.dispatch(now)
        backlog = self.tx_backlog
        if backlog:
            out = backlog + out if out else backlog
            backlog = self.tx_backlog = []
        if out:
            busy = True
            if self.pcap is not None:
                self.pcap.write(out)
            n = self.port.tx_burst(out)
            self.tx_bytes += sum(map(len, out[:n])) if n < len(out) else sum(map(len, out))
            if n < len(out):
                # driver queue full: keep the rest for the next turn, bounded
                self.tx_backlog = out[n:n + TX_BACKLOG_MAX]
        if tcp.events or reactor._ready or streams.eofs_waiting():
            busy = True
        self.turns += 1
        return busy

    def _rings_pending(self):
        if self.fwd is not None and self.fwd.pending():
            return True
        xs = self.xs
        if xs is not None:
            for r in xs.inbound:
                if not r.empty():
                    return True
        return False

    def publish(self, now):
        """Copy the loop's counters into the shared stats block (one writer: this shard)."""
        self._next_stats = now + STATS_EVERY
        st = self.stats
        if st is None:
            return
        ps = getattr(self.port, "stats", None) or {}
        sc = getattr(self.stack, "counters", None) or {}
        names = self._names
        if names is None:
            names = self._names = frozenset(st.names)
        vals = {k: v for k, v in sc.items() if k in names}
        flows = getattr(self.stack.tcp, "flows", None)
        if flows is not None and "state.ESTABLISHED" in names:
            from framework.net.tcp import STATE_NAMES
            by = dict.fromkeys((n for n in names if n.startswith("state.")), 0)
            for c in flows.values():
                k = "state." + STATE_NAMES.get(c.state, "?")
                if k in by:
                    by[k] += 1
            vals.update(by)
        vals["port.rx_bytes"] = self.rx_bytes
        vals["port.tx_bytes"] = self.tx_bytes
        st.update({k: v for k, v in vals.items() if k in names})
        st.update({
            "pid": os.getpid(), "heartbeat_ms": int(now * 1000), "loop.turns": self.turns,
            "loop.sleeps": self.sleeps, "port.rx": ps.get("rx", 0), "port.tx": ps.get("tx", 0),
            "port.rx_drops": ps.get("rx_drops", 0), "port.tx_drops": ps.get("tx_drops", 0),
            "streams.open": max(0, self.streams.open), "streams.accepted": self.streams.accepted,
            "stack.rx_frames": sc.get("rx.frames", 0), "stack.tx_frames": sc.get("tx.frames", 0),
        })
        if self.fwd is not None:
            st.update(self.fwd.counters)
        if self.xs is not None:
            c = self.xs.counters
            st.update({k: c.get(k, 0) for k in XSHARD_STATS})

    def sleep_timeout(self, now):
        """poll() timeout in ms until the next stack or reactor deadline, at most
        MAX_SLEEP_MS."""
        if self.tx_backlog:
            return 1
        d = self.stack.poll_at()
        for d2 in (self.reactor.next_deadline(),
                   self.xs.next_deadline(now) if self.xs is not None else None):
            if d2 is not None and (d is None or d2 < d):
                d = d2
        if d is None:
            return MAX_SLEEP_MS
        # round up: waking a little late is fine, waking early would spin until due
        return min(MAX_SLEEP_MS, max(0, math.ceil((d - now) * 1000.0)))

    def run(self):
        poller = select.poll()
        port_fd = self.port.fileno()
        poller.register(port_fd, _POLLIN)
        for fd in self._extra_fds:
            poller.register(fd, _POLLIN)
        bell = self.bell
        if bell is None and self.fwd is not None:
            bell = self.bell = self.fwd.bell
        bell_fd = -1
        if bell is not None:
            bell_fd = bell.fileno()
            poller.register(bell_fd, _POLLIN)
        run_once = self.run_once
        while not self.stopping:
            if self.draining:
                self._drain_step(self.clock())
                if self.stopping:
                    break
            if run_once():
                if self.turns & 63 == 0:
                    now = self.clock()
                    if now >= self._next_stats:
                        self.publish(now)
                continue
            now = self.clock()
            if now >= self._next_stats:
                self.publish(now)
            timeout = self.sleep_timeout(now)
            if self.draining:
                timeout = min(timeout, 50)  # look at the drain deadline now and then
            if timeout == 0:
                continue
            if bell is not None:
                # announce the sleep, then look again: a producer that pushed before
                # seeing the announcement did not ring (no lost wake-up)
                bell.prepare_sleep()
                if self._rings_pending():
                    bell.awake()
                    continue
            self.sleeps += 1
            if self.pcap is not None:
                self.pcap.flush()  # an idle moment: what was captured is on disk
            for fd, ev in poller.poll(timeout):
                if fd == bell_fd:
                    bell.drain()
                elif fd in self._extra_fds:
                    _drain(fd)
                elif fd == port_fd and ev & _POLLBAD:
                    self._port_error(fd, ev)
            if bell is not None:
                bell.awake()


def _drain(fd):
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:
        pass


# --- the worker process -----------------------------------------------------------------

class WorkerSpec:
    """Everything a worker needs; plain data, so it pickles for any start method."""

    __slots__ = ("app_spec", "stack_kind", "link", "http_port", "shard_count", "cores",
                 "log_level", "run_id", "supervisor_pid", "stats", "device", "fwd", "mesh",
                 "bells", "log_file", "grace", "pcap")

    def __init__(self, app_spec, stack_kind, link, http_port, shard_count, cores,
                 log_level="info", run_id=None, supervisor_pid=None, stats=None, device=None,
                 fwd=None, mesh=None, bells=None, log_file=None, grace=GRACE, pcap=None):
        self.app_spec = app_spec
        self.stack_kind = stack_kind    # "user" | "kernel"
        self.link = link                # framework.link.LinkInfo
        self.http_port = http_port
        self.shard_count = shard_count
        self.cores = cores              # cores[k] is shard k's core
        self.log_level = log_level
        self.run_id = run_id
        self.supervisor_pid = supervisor_pid
        self.stats = stats              # {shard: StatsBlock} created by the supervisor
        self.device = device            # TapDevice held by the supervisor (tap), inherited
        self.fwd = fwd                  # (mode, bells, rings) for forward.for_shard, or None
        self.mesh = mesh                # xshard.Mesh (cross-shard calls), or None
        self.bells = bells              # {shard: Doorbell}, one per shard, or None
        self.log_file = log_file
        self.grace = grace              # graceful stop: seconds connections get to finish
        self.pcap = pcap                # (directory, max bytes, files kept) or None

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, st):
        for k, v in st.items():
            setattr(self, k, v)


def _prctl_setup(shard_id, supervisor_pid):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(f"fw-shard-{shard_id}".encode()[:15]), 0, 0, 0)
    # a worker must not outlive a supervisor killed with SIGKILL
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if supervisor_pid and os.getppid() != supervisor_pid:
        os._exit(1)  # the supervisor died before prctl took effect


def pin_to(core):
    import psutil
    psutil.Process().cpu_affinity([core])


def open_port(link, shard_id, shard_count, device=None):
    """The port of shard ``shard_id`` on the link (CONTRACTS §2).

    afpacket: a socket of its own with the shard's steering filter (restart-safe).
    tap: a dup of queue ``shard_id`` of the TapDevice the supervisor holds (inherited)."""
    if link.port_type == "afpacket":
        from framework.nic.afpacket import AfPacketPort
        return AfPacketPort(link.ifname, shard_id, shard_count)
    if link.port_type == "tap":
        if device is None:
            raise RuntimeError("tap port: the supervisor's TapDevice was not passed down")
        return device.port(shard_id)
    raise ValueError(f"unknown port type {link.port_type!r}")


def load_app(spec):
    """framework.web.loader.load_app (module:attr or file.py:attr)."""
    from framework.web.loader import load_app as _load
    return _load(spec)


def _setup_logging(level, shard_id, path=None):
    from framework.master import logs
    logs.setup(level, shard_id, path)

    def reopen(signum, frame):  # SIGUSR1, forwarded by the supervisor
        logs.reopen()

    signal.signal(signal.SIGUSR1, reopen)


def worker_main(spec, shard_id, report=None):
    """Entry point of a worker process. ``report(shard_id, pid, status)`` tells the
    supervisor "ready" or an error text."""
    _prctl_setup(shard_id, spec.supervisor_pid)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    _setup_logging(spec.log_level, shard_id, spec.log_file)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until _install_stop: see there
    try:
        pin_to(spec.cores[shard_id])
        if spec.link.netns:
            from framework.master import netns
            netns.setns(spec.link.netns)
        if spec.stack_kind == "kernel":
            _run_kernel(spec, shard_id, report)
        else:
            _run_user(spec, shard_id, report)
    except Exception as exc:
        log.exception("shard %d failed", shard_id)
        if report:
            report(shard_id, os.getpid(), f"error: {type(exc).__name__}: {exc}")
        os._exit(3)
    os._exit(0)


def _settle_heap():
    """Move what start-up allocated (modules, the app, the stack) out of the collector's
    sight and collect young objects less often. A short connection leaves ~6 objects and
    no cycles, but the default thresholds still ran full collections that walked every
    TIME_WAIT entry under close load (micro_stack: 54-56 -> 52.7-53.6 us per connection,
    the same as with the collector off)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50000, 20, 100)


def _install_stop(on_stop):
    """SIGTERM -> on_stop(graceful=True), SIGQUIT -> on_stop(graceful=False); the wake-up
    pipe ends any poll() sleep at once.

    SIGINT is ignored: Ctrl-C reaches the whole process group, and the supervisor
    decides what it means for the workers (it sends SIGQUIT for a fast stop). Likewise a
    repeated SIGTERM (e.g. one to the group, one from the supervisor) stays graceful.
    """
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)

    def handler(signum, frame):
        on_stop(signum == signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGQUIT, handler)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return r


def _run_user(spec, shard_id, report):
    from framework.net.stack import Stack
    link = spec.link
    app = load_app(spec.app_spec)
    port = open_port(link, shard_id, spec.shard_count, spec.device)
    stack = Stack(mac=link.mac, ip=link.ip, prefix=link.prefix, gateway=link.gateway,
                  csum_offload=getattr(port, "csum_offload", False),
                  gso=getattr(port, "gso", False), mtu=getattr(port, "mtu", 1500))
    reactor = Reactor(time.monotonic())
    ctx = ShardContext(reactor, shard_id, spec.shard_count)
    listeners = app.listeners(spec.http_port)
    shard = UserShard(port, stack, ctx, listeners)
    if spec.stats:
        shard.stats = spec.stats.get(shard_id)
    if spec.fwd:
        from framework.shard.forward import for_shard
        mode, bells, rings = spec.fwd
        shard.fwd = for_shard(shard_id, spec.shard_count, bells, rings, mode)
    if spec.bells:
        shard.bell = spec.bells[shard_id]
    shard.grace = spec.grace
    if spec.pcap:
        from framework.pcap import PcapWriter
        directory, max_bytes, max_files = spec.pcap
        shard.pcap = PcapWriter(directory, shard_id, max_bytes, max_files)
    if spec.mesh is not None:
        from framework.shard.xshard import XShard
        shard.xs = XShard(spec.mesh, shard_id, ctx)   # sets ctx.submit_to

    on_start = getattr(app, "on_shard_start", None)
    if on_start is not None:
        on_start(ctx)  # builds ctx.state, runs the app's on_start hooks (may submit_to)
    shard.add_wakeup_fd(_install_stop(shard.request_stop))
    if report:
        report(shard_id, os.getpid(), "ready")
    log.info("shard %d serving on %s (%s, core %d)", shard_id, link.ifname, link.port_type,
             spec.cores[shard_id])
    _settle_heap()
    try:
        shard.run()
    finally:
        on_stop = getattr(app, "on_shard_stop", None)
        if on_stop is not None:
            on_stop(ctx)
        if shard.pcap is not None:
            shard.pcap.close()
        port.close()
    log.info("shard %d stopped", shard_id)


def _run_kernel(spec, shard_id, report):
    """--stack kernel: the web layer's KernelLoop (framework/shard/kernel.py), extended
    through its hooks with what the supervisor expects of every worker: cross-shard
    calls (the run's xshard Mesh) and the heartbeat + counters in the stats block."""
    import threading
    from framework.shard import kernel
    app = load_app(spec.app_spec)
    stop_event = threading.Event()
    _install_stop(lambda graceful: stop_event.set())  # the kernel loop drains (5 s) itself
    stats = spec.stats.get(shard_id) if spec.stats else None

    def setup(loop):
        if spec.mesh is not None:
            from framework.shard.xshard import kernel_setup
            kernel_setup(spec.mesh, shard_id)(loop)
        if stats is None:
            return
        names = frozenset(stats.names)
        st = {"next": 0.0, "turns": 0}

        def turn(now):
            st["turns"] += 1
            if now >= st["next"]:
                st["next"] = now + STATS_EVERY
                vals = {"pid": os.getpid(), "heartbeat_ms": int(now * 1000),
                        "loop.turns": st["turns"], "streams.open": len(loop.conns)}
                xs = getattr(loop, "xshard", None)
                if xs is not None:
                    vals.update((k, v) for k, v in xs.counters.items() if k in names)
                stats.update(vals)
            return False

        loop.add_turn_hook(turn)
        loop.add_deadline_hook(lambda now: st["next"])  # idle: still publish (heartbeat)

    def ready(*_a, **_k):
        if report:
            report(shard_id, os.getpid(), "ready")

    host = spec.link.ip  # default link: the kernel owns it in the namespace; --iface: the user's
    kernel.raise_nofile_limit()
    loop = kernel.KernelLoop(app, host, spec.http_port, shard_id, spec.shard_count,
                             stop_event=stop_event, setup=setup)
    _settle_heap()
    loop.run(ready)
