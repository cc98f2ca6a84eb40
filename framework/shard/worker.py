"""One worker process: process setup, then one shard served by framework/shard/run.py.

``worker_main`` is what the supervisor runs in each child (gunicorn's ``init_process``
apart from ``run``): it names itself, dies with the supervisor, pins itself to its core,
sets up logging and SIGUSR1 (reopen logs), opens its port or sockets inside the link's
namespace while the process itself stays where the supervisor runs (so a handler's own
kernel-socket clients, e.g. a database driver, reach what the host reaches), and serves
until SIGTERM (graceful: connections finish, at most the grace period) or SIGQUIT.
"""
import ctypes
import gc
import logging
import os
import signal

import psutil

from framework.master import logs
from framework.net.stack import Stack, counter_names
from framework.net.tcp import TcpConfig
from framework.nic.afpacket import AfPacketPort
from framework.nic.nsenter import netns as in_netns
from framework.pcap import PcapPort, PcapWriter
from framework.shard import handoff
from framework.shard.forward import ForwardingPort, for_shard
from framework.shard.kernelstack import KernelProvider, raise_nofile_limit
from framework.shard.loop import GRACE, LOOP_STATS, XSHARD_STATS
from framework.shard.run import serve_shard
from framework.shard.userstack import UserStackProvider, stat_names as user_stat_names
from framework.web.lifespan import StartupFailed
from framework.web import accesslog, health
from framework.web.loader import load_app
from framework.web.tls import STATS as TLS_STATS

log = logging.getLogger("framework.worker")

PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1


def stat_names(stack_kind="user"):
    """Every counter a shard of ``stack_kind`` publishes in its stats block."""
    names = list(LOOP_STATS) + list(XSHARD_STATS) + list(TLS_STATS)
    if stack_kind == "user":
        names += ["fwd.out", "fwd.in", "fwd.drops"] + user_stat_names(counter_names())
    seen = set()
    return [n for n in names if not (n in seen or seen.add(n))]


class WorkerSpec:
    """Everything a worker needs; plain data, so it pickles for any start method."""

    __slots__ = ("app_spec", "stack_kind", "link", "http_port", "shard_count", "cores",
                 "log_level", "run_id", "supervisor_pid", "stats", "device", "fwd", "mesh",
                 "bells", "log_file", "grace", "pcap", "web", "handover", "max_requests",
                 "tcp_cc")

    def __init__(self, app_spec, stack_kind, link, http_port, shard_count, cores,
                 log_level="info", run_id=None, supervisor_pid=None, stats=None, device=None,
                 fwd=None, mesh=None, bells=None, log_file=None, grace=GRACE, pcap=None,
                 web=None, handover=False, max_requests=0, tcp_cc=None):
        self.app_spec = app_spec
        self.stack_kind = stack_kind    # "user" | "kernel"
        self.link = link                # framework.master.link.LinkInfo
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
        self.web = web                  # framework.web.serving.WebOptions, or None (defaults)
        self.handover = handover        # spawned beside its predecessor (shard/handoff.py)
        self.max_requests = max_requests  # recycle after this many responses (0: never)
        self.tcp_cc = tcp_cc            # congestion control (--tcp-cc), None: the default

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


def open_port(link, shard_id, shard_count, device=None):
    """The port of shard ``shard_id`` on the link (CONTRACTS section 2).

    afpacket: a socket of its own with the shard's steering filter (restart-safe), made
    inside the link's namespace. tap: a dup of queue ``shard_id`` of the TapDevice the
    supervisor holds (inherited)."""
    if link.port_type == "afpacket":
        with in_netns(link.netns):
            return AfPacketPort(link.ifname, shard_id, shard_count)
    if link.port_type == "tap":
        if device is None:
            raise RuntimeError("tap port: the supervisor's TapDevice was not passed down")
        return device.port(shard_id)
    raise ValueError(f"unknown port type {link.port_type!r}")


def _setup_logging(level, shard_id, path=None):
    logs.setup(level, shard_id, path)

    def reopen(signum, frame):  # SIGUSR1, forwarded by the supervisor
        logs.reopen()
        accesslog.reopen_all()  # --access-log files: each shard's loop reopens its own

    signal.signal(signal.SIGUSR1, reopen)


def worker_main(spec, shard_id, report=None):
    """Entry point of a worker process. ``report(shard_id, pid, status)`` tells the
    supervisor "ready", "error: TEXT" or "fatal: TEXT" (the app refused to start:
    StartupFailed; the server stops with exit code 3)."""
    _prctl_setup(shard_id, spec.supervisor_pid)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    _setup_logging(spec.log_level, shard_id, spec.log_file)
    # until the loop installs its handlers: Ctrl-C is the supervisor's to interpret
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        psutil.Process().cpu_affinity([spec.cores[shard_id]])
        app = load_app(spec.app_spec, spec.web)
        provider = (_kernel_provider(spec) if spec.stack_kind == "kernel"
                    else _user_provider(spec, shard_id))

        def ready():
            if spec.handover:
                provider.skip_backlog()
            if report:
                report(shard_id, os.getpid(), "ready")
            log.info("shard %d serving (%s stack, core %d)", shard_id, spec.stack_kind,
                     spec.cores[shard_id])

        if spec.handover:
            provider.standby()       # before the first frame: the old worker answers

        def before_serve(loop):
            _before_serve(loop)
            handoff.install(loop, spec, shard_id, report, spec.handover)

        # a standby worker attaches the mesh and the doorbell once alone (handoff.py)
        serve_shard(app, provider, spec.http_port, shard_id, spec.shard_count,
                    grace=spec.grace, stats=spec.stats.get(shard_id) if spec.stats else None,
                    mesh=None if spec.handover else spec.mesh,
                    bell=spec.bells[shard_id] if spec.bells and not spec.handover else None,
                    ready=ready, before_serve=before_serve)
    except StartupFailed as exc:
        # the app refused to start (ASGI lifespan startup failed): restarting would only
        # fail again; "fatal:" tells the supervisor to stop the server (exit code 3)
        log.error("shard %d: %s", shard_id, exc)
        if report:
            report(shard_id, os.getpid(), f"fatal: {exc}")
        os._exit(3)
    except Exception as exc:
        log.exception("shard %d failed", shard_id)
        if report:
            report(shard_id, os.getpid(), f"error: {type(exc).__name__}: {exc}")
        os._exit(3)
    log.info("shard %d stopped", shard_id)
    os._exit(0)


def _before_serve(loop):
    _settle_heap()
    # the supervisor's drain (--drain-delay): report unhealthy, keep serving
    loop.add_signal_handler(signal.SIGUSR2, health.begin_drain, loop)


def _user_provider(spec, shard_id):
    link = spec.link
    port = open_port(link, shard_id, spec.shard_count, spec.device)
    if spec.pcap:
        directory, max_bytes, max_files = spec.pcap
        port = PcapPort(port, PcapWriter(directory, shard_id, max_bytes, max_files))
    if spec.fwd:
        mode, bells, rings = spec.fwd
        port = ForwardingPort(port, for_shard(shard_id, spec.shard_count, bells, rings, mode))
    if link.port_type == "tap" and spec.run_id:
        # a TAP queue has one reader: a handover takes turns on it (handoff.py)
        port = handoff.HandoverPort(port, spec.run_id, shard_id,
                                    spec.bells[shard_id] if spec.bells else None)
    stack = Stack(mac=link.mac, ip=link.ip, prefix=link.prefix, gateway=link.gateway,
                  csum_offload=getattr(port, "csum_offload", False),
                  gso=getattr(port, "gso", False), mtu=getattr(port, "mtu", 1500),
                  tcp_config=_tcp_config(spec.tcp_cc), vips=getattr(link, "vips", ()))
    return UserStackProvider(port, stack)


def _tcp_config(cc=None):
    """--tcp-cc, and FRAMEWORK_TX_BURST (data frames per turn, 0 = unbounded): for the
    bench that compares the TX batch's ordering on and off (bench/tx_priority.py)."""
    burst = os.environ.get("FRAMEWORK_TX_BURST")
    if burst is None and cc is None:
        return None
    config = TcpConfig()
    if burst is not None:
        config.tx_burst = int(burst)
    if cc is not None:
        config.cc = cc
    return config


def _kernel_provider(spec):
    raise_nofile_limit()
    # default link: the kernel owns the stack's address in the namespace; --iface: the
    # user's own interface, in our namespace
    return KernelProvider(spec.link.ip, netns=spec.link.netns,
                          vips=getattr(spec.link, "vips", ()), cc=spec.tcp_cc)


def _settle_heap():
    """Move what start-up allocated (modules, the app, the stack) out of the collector's
    sight and collect young objects less often: a short connection leaves a few objects
    and no cycles, yet the default thresholds run full collections that walk every
    TIME_WAIT entry under close load."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50000, 20, 100)
