"""Open N keep-alive HTTP connections, one request each, then hold them idle.

    python -m bench.idle_client IP PORT N [--sources A,B,...] [--window 250]

Prints ``ready <held> <seconds>`` once all are open and answered; then reads commands
on stdin: ``check`` -> ``alive <k>`` (connections the server has not closed),
``quit`` -> close all and exit.

A process holds as many sockets as its descriptor limit allows (RLIMIT_NOFILE: raised
to N if the hard limit or CAP_SYS_RESOURCE allows; on this workplace's machines the hard
limit is 20,000 and cannot be raised). Past that the connections are split over child
processes of this same program, each with its share and one source address; this one
adds their answers up.

One source address reaches one server address and port through at most the
namespace's ephemeral port range (~64k with ``ip_local_port_range 1024 65535``), so more
connections need more source addresses: ``--sources`` names them; by default this
namespace's addresses .10, .11, ... of the server's /24 are used (``add_sources`` adds
them, see bench/__main__.py's idle phase), and without any the kernel chooses. Each socket binds its source address and a port of its
own (``--first-port`` on): the kernel's own choice searches the ports in use on every
connect(), which grows with them, and was measured slowing to ~140 connections/s past
150k. At most ``--window`` connections are being set up at once (opened, request sent,
response awaited), so a listen backlog is never the limit.

``app`` is the server side of the scenario: apps.hello's routes with an idle timeout
long enough that the first connections of a big run are still open when the last one is
(``framework serve bench.idle_client:app``).
"""
import argparse
import ipaddress
import resource
import select
import socket
import subprocess
import sys
import time

REQ = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
BODY = b"Hello, World!"
WINDOW = 250
PER_SOURCE = 60000      # connections per source address, on ports FIRST_PORT...
FIRST_PORT = 2000
FIRST_SOURCE = 10       # extra sources are .10, .11, ... of the server's /24
TIMEOUT = 10.0          # for one connection's setup (SYN retransmissions included)
SPARE_FDS = 64          # descriptors of a process besides its sockets


def sources_needed(n):
    return max(1, -(-n // PER_SOURCE))


def add_sources(netns_mod, ns, ifname, server_ip, n):
    """Give interface ``ifname`` of namespace ``ns`` the extra source addresses that ``n``
    connections need (in the server's /24); returns them. They go with the interface."""
    prefix = server_ip.rsplit(".", 1)[0]
    out = []
    for k in range(sources_needed(n)):
        ip = f"{prefix}.{FIRST_SOURCE + k}"
        netns_mod.ip("addr", "add", f"{ip}/24", "dev", ifname, netns=ns)
        out.append(ip)
    return out


def local_sources(server_ip):
    """This namespace's extra source addresses in the server's /24 (.10, .11, ...)."""
    net = ipaddress.ip_network(server_ip + "/24", strict=False)
    r = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True)
    found = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            ip = parts[parts.index("inet") + 1].split("/")[0]
            if ipaddress.ip_address(ip) in net and int(ip.rsplit(".", 1)[1]) >= FIRST_SOURCE:
                found.append(ip)
    return sorted(found, key=ipaddress.ip_address)


class Opener:
    """Sets up connections with at most ``window`` in flight; ``held`` the answered ones."""

    def __init__(self, ip, port, window=WINDOW):
        self.addr = (ip, port)
        self.window = window
        self.ep = select.epoll()
        self.flight = {}        # fd -> [socket, state (0 connecting, 1 sent), deadline, buf]
        self.held = []
        self.failed = 0

    def _start(self, src):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if src is not None:
            try:
                s.bind(src)
            except OSError:
                s.close()
                self.failed += 1
                return
        s.connect_ex(self.addr)
        self.flight[s.fileno()] = [s, 0, time.monotonic() + TIMEOUT, b""]
        self.ep.register(s.fileno(), select.EPOLLOUT)

    def _drop(self, fd, keep):
        s = self.flight.pop(fd)[0]
        self.ep.unregister(fd)
        if keep:
            self.held.append(s)
        else:
            s.close()
            self.failed += 1

    def run(self, ends, max_failed=1000):
        """Open a connection from each of ``ends``: (address, port), or None for the
        kernel's choice."""
        plan = list(reversed(ends))
        last_sweep = time.monotonic()
        while (plan or self.flight) and self.failed < max_failed:
            while plan and len(self.flight) < self.window:
                self._start(plan.pop())
            for fd, ev in self.ep.poll(0.2):
                entry = self.flight.get(fd)
                if entry is None:
                    continue
                s = entry[0]
                if entry[1] == 0:
                    if ev & (select.EPOLLERR | select.EPOLLHUP) or s.getsockopt(
                            socket.SOL_SOCKET, socket.SO_ERROR):
                        self._drop(fd, False)
                        continue
                    s.send(REQ)
                    entry[1] = 1
                    self.ep.modify(fd, select.EPOLLIN)
                    continue
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self._drop(fd, False)
                    continue
                entry[3] += data
                if entry[3].endswith(BODY):
                    self._drop(fd, True)
            now = time.monotonic()
            if now - last_sweep > 0.5:
                last_sweep = now
                for fd in [fd for fd, e in self.flight.items() if e[2] < now]:
                    self._drop(fd, False)
        for fd in list(self.flight):
            self._drop(fd, False)
        self.ep.close()
        return self.held


def alive(socks):
    """Connections the server has not closed (no EOF/RST waiting on them)."""
    p = select.poll()
    for s in socks:
        p.register(s.fileno(), select.POLLIN)
    gone = 0
    for fd, ev in p.poll(0):
        s = socket.socket(fileno=socket.dup(fd))
        try:
            if not s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                gone += 1
        except BlockingIOError:
            pass
        except OSError:
            gone += 1
        finally:
            s.close()
    return len(socks) - gone


def nofile_for(n):
    """Raise the descriptor limit towards ``n`` sockets; returns the sockets it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + SPARE_FDS
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            soft = hard = want
        except (ValueError, OSError):     # no CAP_SYS_RESOURCE: up to the hard limit
            pass
    if soft < min(want, hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return n if hard == resource.RLIM_INFINITY else max(hard - SPARE_FDS, 1)


def shares(n, sources, per_process, first_port=FIRST_PORT):
    """(source, first port, count) for each process: every source up to PER_SOURCE
    connections, in pieces one process can hold."""
    out = []
    left = n
    for src in sources:
        room = min(PER_SOURCE, left)
        left -= room
        port = first_port
        while room > 0:
            k = min(room, per_process)
            out.append((src, port, k))
            port += k
            room -= k
        if not left:
            break
    return out


def endpoints(jobs):
    out = []
    for src, port, k in jobs:
        out += [None] * k if src is None else [(src, port + i) for i in range(k)]
    return out


def split(ip, port, jobs, window):
    """Run one child per (source, count); answer for all of them."""
    t0 = time.monotonic()
    procs = []
    for src, first, k in jobs:
        cmd = [sys.executable, "-m", "bench.idle_client", ip, str(port), str(k),
               "--window", str(max(10, window // len(jobs)))]
        if src is not None:
            cmd += ["--sources", src, "--first-port", str(first)]
        procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True))
    held = 0
    for p in procs:
        line = p.stdout.readline().split()
        held += int(line[1]) if line and line[0] == "ready" else 0
    print("ready", held, f"{time.monotonic() - t0:.2f}", flush=True)
    try:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "check":
                total = 0
                for p in procs:
                    p.stdin.write("check\n")
                    p.stdin.flush()
                    ans = p.stdout.readline().split()
                    total += int(ans[1]) if ans and ans[0] == "alive" else 0
                print("alive", total, flush=True)
            elif cmd == "quit":
                break
    finally:
        for p in procs:
            try:
                p.stdin.write("quit\n")
                p.stdin.close()
            except OSError:
                pass
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.idle_client", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ip")
    p.add_argument("port", type=int)
    p.add_argument("n", type=int)
    p.add_argument("--sources", help="comma list of source addresses (default: this "
                                     "namespace's .10, .11, ... of the server's /24)")
    p.add_argument("--first-port", type=int, default=FIRST_PORT,
                   help="source ports from here on, for each source address")
    p.add_argument("--window", type=int, default=WINDOW)
    a = p.parse_args(argv)
    n = a.n
    per_process = nofile_for(n)
    sources = a.sources.split(",") if a.sources else local_sources(a.ip)
    # no extra address: the kernel's choice of address and port, as many as it allows
    jobs = shares(n, sources or [None], per_process, a.first_port)
    if len(jobs) > 1:
        split(a.ip, a.port, jobs, a.window)
        return
    t0 = time.monotonic()
    held = Opener(a.ip, a.port, a.window).run(endpoints(jobs))
    print("ready", len(held), f"{time.monotonic() - t0:.2f}", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "check":
            print("alive", alive(held), flush=True)
        elif cmd == "quit":
            break
    for s in held:
        s.close()


def __getattr__(name):
    # the server side (framework serve bench.idle_client:app), built on first use so the
    # client itself never imports the framework
    if name == "app":
        global app
        from framework import App
        from apps.hello import Hello
        app = App(idle_timeout=600.0)
        app.add_route("/", Hello)
        return app
    raise AttributeError(name)


if __name__ == "__main__":
    main()
