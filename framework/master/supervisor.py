"""The supervisor ("master"): knows processes, not packets.

It cleans up what crashed earlier runs left behind, sets up the default link (or attaches
to --iface), creates the run's shm segments (stats blocks, doorbells, rings), spawns one
worker per core with ``multiprocess`` (fork), pins worker k to core k, restarts a dead
worker on its core (backoff; more than 5 deaths in 10 s stops everything with exit code
1) and kills one whose heartbeat stopped (--timeout). A worker whose app refuses to start
(ASGI lifespan startup failed) stops the server with exit code 3, at start or later.
Signals: TERM graceful stop, INT/QUIT fast stop, HUP rolling restart with the app imported
afresh (each new worker starts beside the old one and takes the new flows while the old
one finishes its own: master/handover.py), USR1 reopen log files. --max-requests recycles
a worker the same way. At exit the link and every shm segment of the run are removed (exit code 0).
"""
import collections
import logging
import os
import random
import select
import signal
import sys
import time

import multiprocess
import psutil

from framework import native
from framework.nic.tap import TapDevice
from framework.shard import forward
from framework.shard.worker import WorkerSpec, stat_names, worker_main
from .reload import reimport
from framework.shard.xshard import Mesh
from framework.shm import StatsBlock, naming

from . import link as linkmod
from . import handover, hooks, logs, watchdog
from . import metrics as metricsmod

log = logging.getLogger("framework.supervisor")

FATAL = "fatal: "        # a worker's report: the app refused to start, stop the server
STARTUP_FAILED = 3      # ... with this exit code (as uvicorn)
MAX_DEATHS = 5          # more than this many deaths ...
DEATH_WINDOW = 10.0     # ... within this many seconds: give up
READY_TIMEOUT = 20.0    # a worker that is not ready by then counts as failed at start
STOP_TIMEOUT = 3.0      # SIGTERM -> SIGKILL this long after the workers' grace period


class ServeError(Exception):
    """A problem to report in one line (exit code ``code``)."""

    def __init__(self, msg, code=1):
        super().__init__(msg)
        self.code = code


class Worker:
    __slots__ = ("shard", "core", "proc", "started", "ready", "restart_at", "pid", "restarts",
                 "replacing")

    def __init__(self, shard, core):
        self.shard = shard
        self.core = core
        self.proc = None
        self.pid = None
        self.started = 0.0
        self.ready = False
        self.restart_at = None
        self.restarts = 0
        self.replacing = False   # stopped on purpose by a rolling restart (HUP)


class Supervisor:
    def __init__(self, app_spec, cores, stack="user", port_type=None, http_port=8080,
                 iface=None, ip=None, gateway=None, link_subnet=linkmod.DEFAULT_SUBNET,
                 log_level="info", out=sys.stdout, log_file=None, graceful_timeout=5.0,
                 timeout=30.0, metrics=None, metrics_netns=None, pcap=None,
                 pcap_size=64 << 20, pcap_files=4, web=None, reload=False, vips=(),
                 lifecycle=None, max_requests=0, max_requests_jitter=0, tcp_cc=None):
        self.app_spec = app_spec
        self.web = web              # framework.web.serving.WebOptions (None: defaults)
        self.reload = reload        # --reload: a CodeWatcher (framework/master/reload.py)
        self.watcher = None
        self.cores = list(cores)
        self.vips = list(vips or ())        # --vip: extra addresses the stack answers on
        # --on-ready/--on-drain/--drain-delay (framework/master/hooks.py)
        self.lifecycle = lifecycle or hooks.Lifecycle(vips=self.vips)
        self._loopback_vips = []            # --stack kernel: VIPs we put on lo
        self.stack = stack
        # the default link's TAP device is the faster port (README, "Port types"); an
        # existing interface is a NIC or veth unless it is named as a TAP
        self.port_type = port_type or ("afpacket" if iface else "tap")
        self.http_port = http_port
        self.iface = iface
        self.ip = ip
        self.gateway = gateway
        self.link_subnet = link_subnet
        self.log_level = log_level
        self.log_file = log_file
        self.graceful_timeout = graceful_timeout
        self.timeout = timeout              # heartbeat watchdog (0/None: off)
        self.metrics_addr = metrics         # (host, port) or None
        self.metrics_netns = metrics_netns
        self.metrics = None
        self.pcap = (pcap, pcap_size, pcap_files) if pcap else None
        self.out = out
        self.started_at = time.time()
        self.run_id = naming.new_runid()
        self.link = None
        self.link_info = None
        self.workers = [Worker(k, c) for k, c in enumerate(self.cores)]
        self.deaths = collections.deque()
        self.stopping = False
        self.fast_stop = False
        self.reload_requested = False
        self.roll = handover.RollingRestart()
        self.rolling = self.roll.pending          # shards still to be replaced, in order
        self.handovers = self.roll.handovers      # shard -> handover.Handover in progress
        self.max_requests = max_requests
        self.tcp_cc = tcp_cc            # "newreno" | "cubic" | "bbr", or None (the default)
        self.max_requests_jitter = max_requests_jitter
        self.exit_code = 0
        self._ctx = multiprocess.get_context("fork")
        self._report_r = self._report_w = None
        self._wake_r = None
        self.stats = {}
        self.device = None
        self.fwd = None
        self.mesh = None
        self.bells = None
        self._fwd_objs = []
        self._link_checked = 0.0

    # --- lifecycle ----------------------------------------------------------------------
    def run(self):
        """Serve until a signal or a restart storm; returns the exit code."""
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
                                                 signal.SIGUSR1, signal.SIGHUP)}
        try:
            self._install_signals()
            self._cleanup_stale()
            self._setup_link()
            self._create_shm()
            self._report_r, self._report_w = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(self._report_r, False)
            for w in self.workers:
                self._spawn(w)
            if self.reload:     # before the workers start: an edit from now on counts
                from .reload import CodeWatcher
                self.watcher = CodeWatcher.for_app(self.app_spec)
            self._wait_ready()
            if not self.stopping:
                self._start_metrics()
                self._announce()
                self.lifecycle.ready()
                self._monitor()
        except ServeError as e:
            print(f"framework: {e}", file=sys.stderr, flush=True)
            self.exit_code = e.code
        finally:
            self._shutdown()
            for s, h in old.items():
                signal.signal(s, h)
            signal.set_wakeup_fd(-1)
        return self.exit_code

    def _install_signals(self):
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake_r = r
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)

        def handler(signum, frame):
            if signum == signal.SIGTERM and self.lifecycle.drain_delay and not self.stopping:
                self.lifecycle.request_drain()    # unhealthy first; the monitor stops later
                return
            if not self.stopping:
                log.info("got %s, stopping", signal.Signals(signum).name)
            self.stopping = True
            if signum != signal.SIGTERM:
                self.fast_stop = True

        # TERM: graceful (workers finish their connections, up to 5 s);
        # INT/QUIT: fast (gunicorn's meanings)
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGQUIT, handler)

        def reopen(signum, frame):
            # USR1: reopen log files (after logrotate), here and in every worker
            logs.reopen()
            for w in self.workers:
                if w.proc is not None and w.proc.exitcode is None:
                    try:
                        os.kill(w.proc.pid, signal.SIGUSR1)
                    except ProcessLookupError:
                        pass

        signal.signal(signal.SIGUSR1, reopen)

        def hup(signum, frame):
            self.reload_requested = True  # rolling restart, done by the monitor loop

        signal.signal(signal.SIGHUP, hup)

    def _cleanup_stale(self):
        me = os.getpid()
        linkmod.cleanup_stale(keep_pid=me)
        try:
            removed = naming.cleanup_stale()
            if removed:
                log.info("removed shm segments of crashed runs: %s", ", ".join(removed))
        except Exception:
            log.warning("shm cleanup of stale runs failed", exc_info=True)

    def _setup_link(self):
        n = len(self.workers)
        if self.iface:
            self.link_info = linkmod.attached(self.port_type, self.iface, self.ip, self.gateway)
            self._setup_vips()
            if self.port_type == "tap" and self.stack == "user":
                try:
                    self.device = TapDevice(self.iface, n)
                except OSError as e:
                    raise ServeError(f"--iface {self.iface}: cannot attach {n} TAP queues: {e}",
                                     code=2)
            return
        port_type = self.port_type if self.stack == "user" else "afpacket"  # kernel: veth
        self.link = linkmod.DefaultLink(os.getpid(), port_type, self.link_subnet,
                                        kernel_ip=(self.stack == "kernel"), queues=n)
        try:
            self.link.setup()
        except linkmod.LinkError as e:
            raise ServeError(str(e), code=2)
        except Exception as e:
            raise ServeError(f"could not create the default link: {e}")
        self.link_info = self.link.info()
        self.device = self.link.device
        self._setup_vips()

    def _setup_vips(self):
        self.link_info.vips = self.vips
        if self.vips and self.stack == "kernel":
            try:
                self._loopback_vips = hooks.add_loopback_vips(self.vips, self.link_info.netns)
            except Exception as e:
                raise ServeError(f"--vip: cannot add the VIPs to lo: {e}", code=2)

    def _create_shm(self):
        """One stats block per shard, made before any fork: the workers inherit the
        mappings, a restarted worker writes into the same block."""
        names = stat_names(self.stack)
        for w in self.workers:
            self.stats[w.shard] = StatsBlock.create(self.run_id, w.shard, names)
        n = len(self.workers)
        # one doorbell per shard for every ring into it: one fd for the loop to sleep on
        bells = forward.create_bells(self.run_id, n)
        self._fwd_objs += list(bells.values())
        if self.stack == "user" and n > 1 and self.port_type == "tap":
            # TAP gives each ARP frame to one queue only; with the kernel's flow hash
            # (no bpf() rights) IPv4 flows land anywhere too: forward over shm rings
            mode = (forward.MODE_CLASSIFY if getattr(self.device, "steering", "") == "kernel"
                    else forward.MODE_NON_IP)
            _, rings = forward.create_all(self.run_id, n, mode, bells=bells)
            self._fwd_objs += list(rings.values())
            self.fwd = (mode, bells, rings)
        # cross-shard calls (ctx.submit_to); the supervisor writes who is alive
        self.mesh = Mesh.create(self.run_id, n, bells=bells)
        self._fwd_objs.append(self.mesh)
        self.bells = bells

    def _start_metrics(self):
        if not self.metrics_addr:
            return
        host, port = self.metrics_addr

        def collect():
            ws = [(w.shard, w.core, w.pid, w.proc is not None and w.proc.exitcode is None,
                   w.restarts) for w in self.workers]
            fams = metricsmod.supervisor_families(ws, sum(w.restarts for w in self.workers),
                                                  self.started_at)
            return metricsmod.render_blocks(dict(self.stats), extra=fams)

        try:
            self.metrics = metricsmod.MetricsServer((host, port), collect,
                                                    netns=self.metrics_netns).start()
        except OSError as e:
            raise ServeError(str(e))

    def url(self):
        scheme = "https" if self.web is not None and self.web.certfile else "http"
        return f"{scheme}://{self.link_info.ip}:{self.http_port}"

    def _announce(self):
        n = len(self.workers)
        kind = f"{self.stack}-stack worker{'s' if n != 1 else ''}"
        extra = f", {self.port_type}" if self.stack == "user" else ""
        print(f"serving {self.app_spec} on {self.url()} ({n} {kind}{extra})",
              file=self.out, flush=True)
        # which hot path the workers run, on stderr: stdout carries only the banner above,
        # which scripts read and then close (a stale build falls back to source: a warning)
        if "rebuild" in native.REASON:
            log.warning("%s", native.REASON)
        else:
            print(f"framework: {native.REASON}", file=sys.stderr, flush=True)

    # --- workers ------------------------------------------------------------------------
    def _spec(self, standby=False):
        limit = self.max_requests
        if limit:
            limit += random.randint(0, self.max_requests_jitter)   # not all at once
        return WorkerSpec(self.app_spec, self.stack, self.link_info, self.http_port,
                          len(self.workers), self.cores, self.log_level, self.run_id,
                          os.getpid(), self.stats, self.device, self.fwd, self.mesh,
                          self.bells, log_file=self.log_file, grace=self.graceful_timeout,
                          pcap=self.pcap, web=self.web, handover=standby,
                          max_requests=limit, tcp_cc=self.tcp_cc)

    def _spawn(self, w, standby=False):
        """Start shard ``w``'s worker; ``standby``: beside the old one (a handover)."""
        spec = self._spec(standby)
        report_w = self._report_w

        def report(shard, pid, status):
            # one short write: atomic on a pipe
            os.write(report_w, f"{shard} {pid} {status}".replace("\n", " ")[:500].encode() + b"\n")

        p = self._ctx.Process(target=worker_main, args=(spec, w.shard, report),
                              name=f"fw-shard-{w.shard}", daemon=False)
        # fork inherits the CPU affinity: pinning ourselves around the fork makes the
        # worker pinned from its first instruction (it pins itself again, to be sure)
        me = psutil.Process()
        mine = me.cpu_affinity()
        me.cpu_affinity([w.core])
        try:
            p.start()
        finally:
            me.cpu_affinity(mine)
        w.proc = p
        w.pid = p.pid
        if self.mesh is not None and not standby:   # a standby one: when alone
            self.mesh.mark_started(w.shard, p.pid)
        w.started = time.monotonic()
        w.ready = False
        w.restart_at = None
        log.debug("shard %d: pid %d on core %d", w.shard, p.pid, w.core)

    def _read_reports(self):
        out = []
        try:
            data = os.read(self._report_r, 65536)
        except BlockingIOError:
            return out
        for line in data.decode(errors="replace").splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
                out.append((int(parts[0]), int(parts[1]), parts[2]))
        for shard, pid, status in out:
            w = self.workers[shard] if shard < len(self.workers) else None
            ho = self.handovers.get(shard)
            if ho is not None and ho.report(pid, status):
                continue
            if w is None or w.pid != pid:
                continue
            if status == "ready":
                w.ready = True
            elif status == "recycle":         # --max-requests reached
                if shard not in self.rolling:
                    self.rolling.append(shard)
            elif status.startswith(FATAL) and not self.stopping:
                # also from a restarted worker: a restart loop would only repeat it
                print(f"framework: {status.removeprefix(FATAL)} (shard {shard}); stopping",
                      file=sys.stderr, flush=True)
                self.exit_code = STARTUP_FAILED
                self.stopping = True
            else:
                log.error("shard %d: %s", shard, status)
        return out

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.stopping:
            errors = []
            for shard, pid, status in self._read_reports():
                if status != "ready":
                    errors.append((shard, status))
            if self.exit_code == STARTUP_FAILED:
                return          # _read_reports printed it and stops the server
            if errors:
                shard, status = errors[0]
                raise ServeError(f"shard {shard} failed to start: {status.removeprefix('error: ')}")
            for w in self.workers:
                if not w.ready and w.proc.exitcode is not None:
                    # it may have reported just before dying
                    reports = self._read_reports()
                    if self.exit_code == STARTUP_FAILED:
                        return
                    for s, pid, status in reports:
                        if status != "ready":
                            raise ServeError(f"shard {s} failed to start: "
                                             f"{status.removeprefix('error: ')}")
                    raise ServeError(f"shard {w.shard} exited during start "
                                     f"(exit code {w.proc.exitcode})")
            if all(w.ready for w in self.workers):
                return
            if time.monotonic() > deadline:
                raise ServeError(f"workers not ready after {READY_TIMEOUT:.0f} s")
            self._sleep([self._report_r] + [w.proc.sentinel for w in self.workers], 0.1)

    def _sleep(self, fds, timeout):
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        ready = poller.poll(None if timeout is None else max(0, int(timeout * 1000)))
        for fd, _ in ready:
            if fd == self._wake_r:
                try:
                    while os.read(self._wake_r, 512):
                        pass
                except BlockingIOError:
                    pass

    # --- rolling restart (SIGHUP, --max-requests): master/handover.py -------------------
    def _rolling_step(self, now):
        if self.reload_requested and not self.rolling:
            self.reload_requested = False
            if reimport(self.app_spec, self.web):
                log.warning("SIGHUP: replacing the workers one at a time")
                self.rolling[:] = [w.shard for w in self.workers]
                self.roll.reloading = True
        self.roll.step(self)

    def _monitor(self):
        while not self.stopping:
            now = time.monotonic()
            self._read_reports()
            if self.stopping:       # a fatal report (the app refused to start)
                return
            if self.watcher is not None and self.watcher.poll(now):
                self.reload_requested = True    # as SIGHUP: import afresh, roll the workers
            self._rolling_step(now)
            if self.lifecycle.step(now, [w.pid for w in self.workers if w.ready]):
                self.stopping = True        # the drain delay is over: graceful stop
                return
            for w in self.workers:
                if w.proc is not None and w.proc.exitcode is not None:
                    self._on_death(w, now)
                    if self.stopping:
                        return
                if w.proc is None and w.restart_at is not None and w.restart_at <= now:
                    self._spawn(w, standby=w.shard in self.handovers)
            timeout = 1.0 if self.watcher is None else self.watcher.interval
            pending = [w.restart_at for w in self.workers if w.proc is None and w.restart_at]
            drain_at = self.lifecycle.next_deadline()
            if drain_at is not None:
                pending.append(drain_at)
            if pending:
                timeout = max(0.0, min(pending) - time.monotonic())
            fds = [self._report_r] + [w.proc.sentinel for w in self.workers if w.proc is not None]
            for ho in self.handovers.values():
                fds += ho.sentinels()
            self._sleep(fds, timeout)
            self._watchdog()
            if self.link is not None and now - self._link_checked >= 1.0:
                self._link_checked = now
                if not os.path.exists(f"/sys/class/net/{self.link.host_ifname}"):
                    print(f"framework: the link {self.link.host_ifname} was removed from "
                          f"under the server; stopping", file=sys.stderr, flush=True)
                    self.exit_code = 1
                    self.stopping = True

    def _watchdog(self):
        """Kill (and so restart) a worker whose loop stopped turning: a handler stuck in
        a loop never gets back to the loop, so its heartbeat in the stats block ages."""
        if not self.timeout or not self.stats:
            return
        live = [(w.shard, w.pid, w.started, w.ready) for w in self.workers
                if w.proc is not None and w.proc.exitcode is None]
        for shard, pid, age in watchdog.stuck(live, self.stats, self.timeout, time.monotonic()):
            log.error("shard %d (pid %d): no heartbeat for %.1f s (stuck handler?); killing it",
                      shard, pid, age)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _on_death(self, w, now):
        code = w.proc.exitcode
        w.proc.join(0)
        w.proc = None
        w.ready = False
        if self.mesh is not None and w.shard not in self.handovers:
            self.mesh.mark_dead(w.shard)  # calls in flight to it fail instead of hanging
        if w.replacing:                   # rolling restart: not a crash, replace it now
            w.replacing = False
            w.restart_at = None
            self._spawn(w)
            self.roll.rolled = w.pid
            log.info("shard %d replaced (pid %d)", w.shard, w.pid)
            return
        deaths = self.deaths
        deaths.append(now)
        while deaths and deaths[0] < now - DEATH_WINDOW:
            deaths.popleft()
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        if len(deaths) > MAX_DEATHS:
            print(f"framework: workers died {len(deaths)} times within {DEATH_WINDOW:.0f} s "
                  f"(last: shard {w.shard}, pid {w.pid}, {how}); stopping",
                  file=sys.stderr, flush=True)
            self.exit_code = 1
            self.stopping = True
            return
        # backoff: at once for the first death in the window, then 50, 100, 200, 400 ms
        n = len(deaths)
        delay = 0.0 if n <= 1 else min(0.05 * 2 ** (n - 2), 0.8)
        w.restart_at = now + delay
        w.restarts += 1
        log.warning("shard %d (pid %d) died (%s); restarting on core %d in %.2f s",
                    w.shard, w.pid, how, w.core, delay)

    def _shutdown(self):
        self.stopping = True
        if self.metrics is not None:
            try:
                self.metrics.close()
            except Exception:
                log.exception("closing the metrics server failed")
            self.metrics = None
        alive = [w for w in self.workers if w.proc is not None and w.proc.exitcode is None]
        sig = signal.SIGQUIT if self.fast_stop or self.exit_code else signal.SIGTERM
        if sig == signal.SIGTERM and alive:
            self.lifecycle.begin_drain()    # --on-drain, also without a drain delay
        for w in alive:
            try:
                os.kill(w.proc.pid, sig)
            except ProcessLookupError:
                pass
        for ho in self.handovers.values():
            ho.kill(sig)
        timeout = (self.graceful_timeout + STOP_TIMEOUT) if sig == signal.SIGTERM else 2.0
        deadline = time.monotonic() + timeout
        for w in alive:
            # a second INT/QUIT while we wait turns a graceful stop into a fast one
            while w.proc.exitcode is None and time.monotonic() < deadline:
                w.proc.join(min(0.1, max(0.0, deadline - time.monotonic())))
                if self.fast_stop and sig == signal.SIGTERM:
                    sig = signal.SIGQUIT
                    for v in alive:
                        if v.proc.exitcode is None:
                            os.kill(v.proc.pid, sig)
            if w.proc.exitcode is None:
                log.warning("shard %d did not stop in %.0f s; killing it", w.shard, timeout)
                w.proc.kill()
                w.proc.join(2.0)
        for ho in self.handovers.values():
            ho.join(max(0.0, deadline - time.monotonic()))
        self.handovers.clear()
        for w in self.workers:
            w.proc = None
        if self.device is not None and self.link is None:  # --iface tap: our queues only
            self.device.close()
        self.device = None
        if self.link is not None:
            try:
                self.link.teardown()
            except Exception:
                log.exception("removing the link failed")
        if self._loopback_vips:
            hooks.remove_loopback_vips(self._loopback_vips, self.link_info.netns)
            self._loopback_vips = []
        self.lifecycle.close()
        for st in self.stats.values():
            st.close()
        self.stats = {}
        for obj in self._fwd_objs:
            try:
                obj.close()
            except Exception:
                pass
        self._fwd_objs = []
        self.fwd = self.mesh = self.bells = None
        try:
            naming.cleanup_run(self.run_id)
        except Exception:
            log.exception("removing shm segments failed")
        for fd in (self._report_r, self._report_w, self._wake_r):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._report_r = self._report_w = self._wake_r = None
