"""Five namespaces: a client, a router running BIRD 2, three nodes each running BIRD 2 and
``framework serve --vip`` on the user-level stack (docs/DEPLOY.md draws it).

    client 198.18.250.2 ── router 198.18.250.1 │ br0 198.18.251.1 ──┬── n1: kernel .11 (BIRD), framework .21
                           (BIRD, nhsync,       │                    ├── n2: kernel .12, framework .22
                            resilient group)    │                    └── n3: kernel .13, framework .23
    VIP 198.19.250.1: announced by each node's BIRD with its framework address as next hop

Each node has one veth to the router's bridge; its kernel holds the BGP address and the
user stack attaches to the same veth (--iface) with an address and MAC of its own.
Every link is created inside its namespace, so no name is ever visible on the host;
``close`` kills every process (by process group) and deletes the namespaces, which takes
their links with them.
"""
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from bench import apt
from framework.nic.nsenter import netns as in_netns

from .nhsync import Sync

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

VIP = "198.19.250.1"
PORT = 8080
CLIENT_IP, ROUTER_CLIENT_IP = "198.18.250.2", "198.18.250.1"
ROUTER_IP = "198.18.251.1"
NODES = ("n1", "n2", "n3")
HOLD_TIME = 3.0                 # the BGP hold time of every session (bird-*.conf)
DRAIN_DELAY = 3.0
IDLE_TIMER = 1                  # resilient group: a bucket idle this long may move


def kernel_ip(name):
    return f"198.18.251.{10 + int(name[1:])}"


def node_ip(name):
    return f"198.18.251.{20 + int(name[1:])}"


def ensure_bird():
    """BIRD 2 from Debian (no service started while apt runs: bench/apt.py)."""
    if not (shutil.which("bird") and shutil.which("birdc")):
        apt.ensure("bird", "bird2")


def sh(*args, check=True):
    return subprocess.run(args, capture_output=True, text=True, check=check).stdout


def wait_until(what, fn, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


class Cluster:
    def __init__(self, workdir):
        tag = f"fwcl{os.getpid()}"
        self.dir = str(workdir)
        self.ns = {"client": tag + "c", "router": tag + "r", **{n: tag + n for n in NODES}}
        self.procs = {}         # "bird-n1", "fw-n1", ... -> Popen (own process group)
        self.supervisors = []   # every framework supervisor's pid (names its shm segments)
        self.sync = None
        self._stop = threading.Event()
        self._thread = None
        self.log_lines = []

    # --- building ------------------------------------------------------------------------
    def setup(self):
        ensure_bird()
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        r, c = self.ns["router"], self.ns["client"]
        sh("ip", "link", "add", "eth0", "netns", c, "type", "veth", "peer", "name", "client",
           "netns", r)
        sh("ip", "-n", c, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        sh("ip", "-n", c, "link", "set", "eth0", "up")
        sh("ip", "-n", c, "route", "add", "default", "via", ROUTER_CLIENT_IP)
        sh("ip", "-n", r, "addr", "add", f"{ROUTER_CLIENT_IP}/24", "dev", "client")
        sh("ip", "-n", r, "link", "set", "client", "up")
        sh("ip", "-n", r, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", r, "addr", "add", f"{ROUTER_IP}/24", "dev", "br0")
        sh("ip", "-n", r, "link", "set", "br0", "up")
        for name in NODES:
            n = self.ns[name]
            sh("ip", "link", "add", "eth0", "netns", n, "type", "veth", "peer", "name", name,
               "netns", r)
            sh("ip", "-n", r, "link", "set", name, "master", "br0", "up")
            sh("ip", "-n", n, "addr", "add", f"{kernel_ip(name)}/24", "dev", "eth0")
            sh("ip", "-n", n, "link", "set", "eth0", "up")
        # the router only: forwarding, and an L4 (5-tuple) multipath hash
        sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1",
           "net.ipv4.fib_multipath_hash_policy=1")
        self._start_router_bird()
        self.sync = Sync(VIP, "br0", table=100, group_id=100, buckets=120,
                         idle_timer=IDLE_TIMER, netns=r, health_port=PORT,
                         log=self.log_lines.append)
        self._thread = threading.Thread(target=self.sync.run, args=(self._stop,),
                                        name="nhsync", daemon=True)
        self._thread.start()
        for name in NODES:
            self.start_bird(name)
            self.start_node(name)
        for name in NODES:
            self.wait_active(name, timeout=20.0)

    def _conf(self, template, out, **values):
        text = open(os.path.join(HERE, template)).read()
        for k, v in values.items():
            text = text.replace(f"@{k}@", v)
        path = os.path.join(self.dir, out)
        with open(path, "w") as f:
            f.write(text)
        return path

    def _spawn(self, key, ns, argv, env=None):
        log = open(os.path.join(self.dir, f"{key}.out"), "ab")
        p = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL, start_new_session=True,
                             env={**os.environ, **(env or {})}, cwd=ROOT)
        log.close()
        self.procs[key] = p
        if key.startswith("fw-"):
            self.supervisors.append(p.pid)
        return p

    def _sock(self, name):
        return os.path.join(self.dir, f"bird-{name}.ctl")

    def _start_router_bird(self):
        neighbors = "\n".join(f"protocol bgp {n} from node {{ neighbor {kernel_ip(n)} as 65001; }}"
                              for n in NODES)
        conf = self._conf("bird-router.conf", "bird-router.conf", DIR=self.dir,
                          ROUTER_IP=ROUTER_IP, VIP=VIP, NEIGHBORS=neighbors)
        self._spawn("bird-router", self.ns["router"],
                    ["bird", "-f", "-c", conf, "-s", self._sock("router")])

    def start_bird(self, name):
        conf = self._conf("bird-node.conf", f"bird-{name}.conf", DIR=self.dir, NAME=name,
                          KERNEL_IP=kernel_ip(name), ROUTER_IP=ROUTER_IP, VIP=VIP,
                          NODE_IP=node_ip(name))
        self._spawn(f"bird-{name}", self.ns[name],
                    ["bird", "-f", "-c", conf, "-s", self._sock(name)])

    def start_node(self, name):
        birdc = f"birdc -s {self._sock(name)}"
        argv = [sys.executable, "-m", "framework", "serve", "tests/cluster/nodeapp.py:app",
                "--cores", "1", "--iface", "eth0", "--ip", f"{node_ip(name)}/24",
                "--gateway", ROUTER_IP, "--vip", VIP, "--port", str(PORT),
                "--health-path", "/healthz", "--drain-delay", str(DRAIN_DELAY),
                "--graceful-timeout", "5",
                # BIRD may still be starting: retry the enable until its socket answers
                "--on-ready", f"for i in $(seq 50); do {birdc} enable vip && break; sleep 0.1; done",
                "--on-drain", f"{birdc} disable vip"]
        self._spawn(f"fw-{name}", self.ns[name], argv,
                    env={"CLUSTER_NODE": name, "PYTHONPATH": ROOT})

    def kill(self, name):
        """The node dies as a machine does: its kernel falls silent (its address goes, so
        not even the FIN of BIRD's dying socket leaves: only the hold timer tells the
        router), then kill -9 of its framework (supervisor and workers) and its BIRD."""
        sh("ip", "-n", self.ns[name], "addr", "flush", "dev", "eth0")
        for key in (f"fw-{name}", f"bird-{name}"):
            self._killpg(key, signal.SIGKILL)

    def revive(self, name):
        """The machine is back: its kernel address, then BIRD (framework: start_node)."""
        n = self.ns[name]
        if f"{kernel_ip(name)}/24" not in sh("ip", "-n", n, "-4", "addr", "show", "dev", "eth0"):
            sh("ip", "-n", n, "addr", "add", f"{kernel_ip(name)}/24", "dev", "eth0")
        if self.procs[f"bird-{name}"].poll() is not None:
            self.start_bird(name)

    def term(self, name):
        """SIGTERM to the node's supervisor only (what systemd's KillMode=mixed and
        Kubernetes send)."""
        p = self.procs[f"fw-{name}"]
        os.kill(p.pid, signal.SIGTERM)      # `ip netns exec` execs: p.pid is the supervisor
        return p

    def _killpg(self, key, sig):
        p = self.procs.get(key)
        if p is None:
            return
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)

    # --- state ---------------------------------------------------------------------------
    def members(self):
        return dict(self.sync.state) if self.sync else {}

    def wait_active(self, name, timeout):
        gw = node_ip(name)
        wait_until(f"{name} active in the resilient group",
                   lambda: self.members().get(gw) == "active", timeout)

    def wait_gone(self, name, timeout):
        gw = node_ip(name)
        wait_until(f"{name} out of the resilient group",
                   lambda: gw not in self.members(), timeout, interval=0.02)

    def client(self):
        """A context manager: sockets created inside are the client namespace's."""
        return in_netns(self.ns["client"])

    # --- teardown ------------------------------------------------------------------------
    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for key in list(self.procs):
            if key.startswith("fw-") and self.procs[key].poll() is None:
                self._killpg(key, signal.SIGTERM)      # graceful: it cleans its shm
        for key in list(self.procs):
            self._killpg(key, signal.SIGKILL)
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def leftovers(self):
        names = set(sh("ip", "netns", "list").split())
        left = [ns for ns in self.ns.values() if ns in names]
        left += [k for k, p in self.procs.items() if p.poll() is None]
        for pid in self.supervisors:
            left += glob.glob(f"/dev/shm/framework.{pid}-*")
        return left


# --- a small HTTP/1.1 client on raw sockets (keep-alive, resets visible) ---------------

class Flow:
    """One TCP connection from the client namespace to the VIP."""

    def __init__(self, cluster, timeout=3.0):
        with cluster.client():
            self.sock = socket.create_connection((VIP, PORT), timeout=timeout)
        self.buf = b""
        self.node = None

    def send(self, path="/", close=False):
        extra = b"Connection: close\r\n" if close else b""
        self.sock.sendall(b"GET %s HTTP/1.1\r\nHost: vip\r\n%s\r\n" % (path.encode(), extra))

    def read(self):
        """(status, body); raises ConnectionError (reset, EOF) or socket.timeout."""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v)
        while len(rest) < length:
            self.buf = rest
            self._more()
            rest = self.buf
        body, self.buf = rest[:length], rest[length:]
        return status, body.decode()

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("EOF")
        self.buf += data

    def get(self, path="/", close=False):
        self.send(path, close)
        status, body = self.read()
        if path == "/" and status == 200:
            self.node = body
        return status, body

    def close(self):
        self.sock.close()


def one_request(cluster, path="/"):
    """A new connection, one request, closed: (status, body)."""
    f = Flow(cluster)
    try:
        return f.get(path, close=True)
    finally:
        f.close()
