"""The benchmark's own network and servers.

    client namespace fwbc<id>  (wrk, ab, the bulk and idle clients; pinned to core 1)
      |-- fw<pid>h 198.18.A.1  <-veth->  fw<pid>s in fw-<pid>   framework, user stack (afpacket)
      |-- fw<pid>t 198.18.B.1  (TAP)    <- worker's queue ->    framework, user stack (tap)
      |-- fw<pid>h 198.18.C.1  <-veth->  fw<pid>s 198.18.C.2    framework --stack kernel
      `-- bu<id>c  198.18.D.1  <-veth->  bu<id>s  198.18.D.2     a peer: uvloop, uvicorn,
                                                               granian, nginx (ns fwbs<id>)

Each framework server is a real ``framework serve`` started *inside* the client
namespace on its own ``--link-subnet``: it builds its default link exactly as for a
user (veth + namespace, or TAP) but in our namespace, so nothing touches the host and
nothing collides with a server someone else runs. Each peer (bench/baselines/peers.py)
gets the same shape of link, made here. Every server runs under ``taskset -c 0`` (the
framework pins its worker to core 0 as well; a peer's threads and worker processes
inherit the mask).

RPS (bench/README.md): the server-side veth's receive work goes to core 0, inside the
server's namespace. With ``--client-rps`` the client side's receive work is also
steered, to core 1 (for TAP: the TAP's kernel side). Off by default: measured here, steering it made the kernel-socket servers' cost per
keep-alive request higher (uvloop 12.7-13.3 us vs 7.7-8.3 us; the user stack's
unchanged at ~18 us), so the default is the stronger baseline. For TAP the server's
receive is the worker's own read() on core 0.
Nothing outside our namespaces is changed; ``close()`` removes everything.
"""
import glob
import os
import random
import resource
import select
import signal
import subprocess
import sys
import time
import uuid

import psutil

from bench.baselines import peers
from framework.master import netns

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_CORE = 0
CLIENT_CORE = 1
NOFILE = 65536
NICE = 0          # python -m bench --nice N: priority of servers and load generators
CLIENT_RPS = False  # python -m bench --client-rps: True


def _raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(NOFILE, hard if hard != resource.RLIM_INFINITY else NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, max(want, NOFILE)))
    except (ValueError, OSError):
        pass


CLONE_NEWNS = 0x00020000
MNT_DETACH = 2


def _enter_client_ns(ns):
    """Enter network namespace ``ns`` with a sysfs of its own, the way ``ip netns exec``
    does, but without making every mount a slave: the netns bind mounts a supervisor
    makes under /run/netns (a shared mount) must stay visible outside, and its look at
    /sys/class/net must show the client namespace's links."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    netns.setns(ns)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    # /sys is a private mount here (checked: no propagation to the host); if it were
    # shared, make it a slave first so the new sysfs never shows up outside
    libc.mount(None, b"/sys", None, 0x40000 | 0x4000, None)    # MS_SLAVE | MS_REC
    if libc.umount2(b"/sys", MNT_DETACH) != 0:
        raise OSError(ctypes.get_errno(), "umount /sys")
    if libc.mount(b"sysfs", b"/sys", b"sysfs", 0, None) != 0:
        raise OSError(ctypes.get_errno(), "mount sysfs")


def _child_setup(ns):
    _raise_nofile()
    if ns:
        _enter_client_ns(ns)


def set_rps(ifname, mask, ns):
    """Write ``mask`` to every rx queue's rps_cpus of ``ifname`` inside namespace ``ns``."""
    cmd = f"for f in /sys/class/net/{ifname}/queues/rx-*/rps_cpus; do echo {mask:x} > $f; done"
    netns.run_in(ns, ["sh", "-c", cmd], check=True, capture_output=True)


def get_rps(ifname, ns):
    r = netns.run_in(ns, ["sh", "-c", f"cat /sys/class/net/{ifname}/queues/rx-*/rps_cpus"],
                     capture_output=True, text=True)
    return r.stdout.split()


class Server:
    """One server under test. ``kind``: user-afpacket | user-tap | kernel, or one of
    bench/baselines/peers.py's KINDS."""

    def __init__(self, lab, kind, app="apps.hello:app", rps=True, client_rps=None):
        self.lab = lab
        self.kind = kind
        self.app = app
        self.subnet = lab.new_subnet()
        prefix = self.subnet.rsplit(".", 1)[0]              # "198.18.N"
        self.client_ip, self.ip = prefix + ".1", prefix + ".2"
        self.port = 8080
        self.proc = None
        self.uv_ns = None
        self.peer = kind in peers.KINDS
        lab.started += 1
        self.logpath = os.path.join(lab.tmp, f"{lab.started:02d}-{kind}.log")
        self.errlog = open(self.logpath, "w+")
        self.rps = rps
        self.client_rps = CLIENT_RPS if client_rps is None else client_rps

    def start(self):
        lab, kind, app = self.lab, self.kind, self.app
        env = dict(os.environ, PYTHONPATH=ROOT)
        taskset = ["taskset", "-c", str(SERVER_CORE)]
        if NICE:
            taskset = ["nice", "-n", str(NICE)] + taskset
        if self.peer:
            u = uuid.uuid4().hex[:6]
            self.uv_ns = f"fwbs{u}"
            self.c_if, self.s_if = f"bu{u}c", f"bu{u}s"
            netns.add_netns(self.uv_ns)
            lab.namespaces.append(self.uv_ns)
            netns.add_veth(self.c_if, self.s_if, lab.client_ns, self.uv_ns)
            for ifn, ns, ip in ((self.c_if, lab.client_ns, self.client_ip),
                                (self.s_if, self.uv_ns, self.ip)):
                netns.ip("link", "set", "dev", ifn, "addrgenmode", "none", netns=ns)
                netns.ip("addr", "add", f"{ip}/24", "dev", ifn, netns=ns)
                netns.ip("link", "set", ifn, "up", netns=ns)
            workdir = os.path.splitext(self.logpath)[0]     # nginx's config, pid, logs
            cmd = ["ip", "netns", "exec", self.uv_ns, *taskset,
                   *peers.command(kind, self.ip, self.port, workdir)]
            self.server_ns, self.server_if = self.uv_ns, self.s_if
            enter = None
        else:
            stack = "kernel" if kind == "kernel" else "user"
            # not `ip netns exec`: it makes every mount a slave, so the namespace the
            # supervisor adds would be invisible outside (see _enter_client_ns)
            enter = lab.client_ns
            cmd = [*taskset, sys.executable, "-m", "framework", "serve", app, "--cores", "1", "--stack", stack,
                   "--link-subnet", self.subnet, "--log-level", "warning"]
            if kind.startswith("user-"):
                cmd += ["--port-type", kind[len("user-"):]]
        # a peer's stdout goes to its log: nobody reads a pipe while it serves
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env,
                                     stdout=self.errlog if self.peer else subprocess.PIPE,
                                     stderr=self.errlog, text=True,
                                     preexec_fn=lambda: _child_setup(enter))
        self.url = f"http://{self.ip}:{self.port}/"
        if self.peer:
            self._wait_http()
        else:
            self._wait_banner()
        if not self.peer:
            short = f"{self.proc.pid:x}"
            if kind == "user-tap":
                self.c_if = f"fw{short}t"
                self.server_ns, self.server_if = None, None   # the worker reads the TAP itself
            else:
                self.c_if = f"fw{short}h"
                self.server_ns, self.server_if = f"fw-{short}", f"fw{short}s"
        if self.rps and self.server_if:
            set_rps(self.server_if, 1 << SERVER_CORE, self.server_ns)
        if self.client_rps:
            set_rps(self.c_if, 1 << CLIENT_CORE, lab.client_ns)

    def _wait_banner(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                line = self.proc.stdout.readline()
                if line.startswith("serving "):
                    return line
                if not line and self.proc.poll() is not None:
                    break
            elif self.proc.poll() is not None:
                break
        self.errlog.seek(0)
        raise RuntimeError(f"{self.kind} server did not start (rc={self.proc.poll()}):\n"
                           f"{self.errlog.read()[-3000:]}")

    def _wait_http(self, timeout=30.0):
        """Until ``GET /`` from the client namespace answers 200 (a peer prints no banner
        of ours; a master may bind its socket before its worker serves)."""
        r = self.lab.run_client([sys.executable, "-c", _WAIT_HTTP, self.ip, str(self.port),
                                 str(timeout)], timeout=timeout + 30)
        if r.returncode != 0 or self.proc.poll() is not None:
            self.errlog.seek(0)
            raise RuntimeError(f"{self.kind} server did not answer (rc={self.proc.poll()}, "
                               f"probe: {(r.stdout + r.stderr).strip()[-300:]}):\n"
                               f"{self.errlog.read()[-3000:]}")

    def worker(self):
        """The process that serves: its RSS is the server's memory, its threads' CPU time
        and syscalls the server's (the framework's shard 0, a peer's worker)."""
        if self.peer and self.kind not in peers.WORKER_IS_CHILD:
            return psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 5.0
        while True:
            try:
                for p in psutil.Process(self.proc.pid).children():
                    if p.status() == psutil.STATUS_ZOMBIE:
                        continue
                    if self.peer or p.name().startswith("fw-shard-0"):
                        return p
            except psutil.Error:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind}: no worker process")
            time.sleep(0.05)

    def alive(self):
        return self.proc.poll() is None

    def rps_state(self):
        s = get_rps(self.server_if, self.server_ns) if self.server_if else ["(tap: worker read)"]
        c = get_rps(self.c_if, self.lab.client_ns)
        return s, c

    def stop(self):
        if self.proc is None:
            if self.peer and getattr(self, "c_if", None):
                self._del_uv_link()     # failed before the server process started
            return
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # workers that outlived their master (or a master killed above)
        for p in children:
            try:
                p.wait(2)
            except psutil.TimeoutExpired:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        if not self.peer:
            # the supervisor removes its link on SIGTERM; make sure even after a crash
            short = f"{self.proc.pid:x}"
            for ifn in (f"fw{short}h", f"fw{short}t"):
                if netns.link_exists(ifn, self.lab.client_ns):
                    netns.del_link(ifn, self.lab.client_ns)
            netns.del_netns(f"fw-{short}")
            for f in glob.glob(f"/dev/shm/*framework.{self.proc.pid}-*"):
                try:
                    os.unlink(f)
                except OSError:
                    pass
        else:
            self._del_uv_link()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def _del_uv_link(self):
        netns.del_link(self.c_if, self.lab.client_ns)
        # interrupted between creating the pair and moving it: still in the host namespace
        for ifn in (self.c_if, self.s_if):
            if netns.link_exists(ifn):
                netns.del_link(ifn)

    def log_tail(self, n=2000):
        self.errlog.seek(0)
        return self.errlog.read()[-n:]


_WAIT_HTTP = """
import socket, sys, time
host, port, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
last = ""
while time.monotonic() < deadline:
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.1\\r\\nHost: bench\\r\\nConnection: close\\r\\n\\r\\n")
            last = s.recv(64).decode("latin-1")
            if last.startswith("HTTP/1.1 200"):
                sys.exit(0)
    except OSError as e:
        last = str(e)
    time.sleep(0.05)
print(last)
sys.exit(1)
"""


class Lab:
    def __init__(self, tmp):
        self.tmp = tmp
        self.client_ns = f"fwbc{uuid.uuid4().hex[:6]}"
        self.namespaces = []
        self.servers = []
        self.started = 0
        self._subnets = set()
        netns.add_netns(self.client_ns)
        self.namespaces.append(self.client_ns)
        # A load generator's usual settings, in our client namespace only: tens of
        # thousands of short connections a round to one server address exhaust the
        # default 28k ephemeral ports while the client-side closes sit in TIME_WAIT
        # (seen: ab stuck in connect() at 100% CPU, 594 req/s against uvloop).
        for kv in ("net.ipv4.ip_local_port_range=1024 65535", "net.ipv4.tcp_tw_reuse=1"):
            netns.run_in(self.client_ns, ["sysctl", "-q", "-w", kv], check=True,
                         capture_output=True)

    def new_subnet(self):
        while True:
            n = random.randint(140, 249)
            if n not in self._subnets:
                self._subnets.add(n)
                return f"198.18.{n}.0/24"

    def start(self, kind, **kw):
        s = Server(self, kind, **kw)
        self.servers.append(s)     # stopped by stop_servers() even if start() fails
        s.start()
        return s

    def client_cmd(self, cmd):
        """A command line run in the client namespace on the load generator's core."""
        nice = ["nice", "-n", str(NICE)] if NICE else []
        return ["ip", "netns", "exec", self.client_ns, *nice, "taskset", "-c", str(CLIENT_CORE),
                *cmd]

    def run_client(self, cmd, timeout):
        return subprocess.run(self.client_cmd(cmd), capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                              preexec_fn=_raise_nofile)

    def popen_client(self, cmd, **kw):
        return subprocess.Popen(self.client_cmd(cmd), cwd=ROOT,
                                env=dict(os.environ, PYTHONPATH=ROOT),
                                preexec_fn=_raise_nofile, **kw)

    def stop_servers(self):
        for s in self.servers:
            try:
                s.stop()
            except Exception as e:  # keep cleaning up
                print(f"bench: stopping {s.kind}: {e}", file=sys.stderr)
        self.servers = []

    def close(self):
        self.stop_servers()
        for ns in reversed(self.namespaces):
            netns.del_netns(ns)
        self.namespaces = []
