"""Network namespaces and veth pairs through iproute2, and entering a namespace.

Used by the supervisor (the default link) and by the tests. Every name made here
starts with a caller-chosen prefix so stale objects of a crashed run can be found.
"""
import ctypes
import os
import subprocess

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    pass


def ip(*args, netns=None, check=True):
    cmd = ["ip"]
    if netns:
        cmd += ["-n", netns]
    cmd += [str(a) for a in args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


def run_in(netns, cmd, **kw):
    """Run a command inside a namespace (``ip netns exec``)."""
    return subprocess.run(["ip", "netns", "exec", netns, *cmd], **kw)


def setns(name):
    """Move the calling thread into namespace ``name`` (Python 3.11 has no os.setns)."""
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def netns_exists(name):
    return os.path.exists(f"/var/run/netns/{name}")


def add_netns(name):
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def del_netns(name):
    if netns_exists(name):
        ip("netns", "del", name, check=False)


def link_exists(ifname, netns=None):
    return subprocess.run(["ip"] + (["-n", netns] if netns else []) + ["link", "show", ifname],
                          capture_output=True).returncode == 0


def add_veth(a, b, a_netns=None, b_netns=None):
    """Create a veth pair a<->b (made on the host, then moved)."""
    ip("link", "add", a, "type", "veth", "peer", "name", b)
    if a_netns:
        ip("link", "set", a, "netns", a_netns)
    if b_netns:
        ip("link", "set", b, "netns", b_netns)


def del_link(ifname, netns=None):
    ip("link", "del", ifname, netns=netns, check=False)


def set_rps(ifname, cpumask, netns=None):
    """Steer a veth's receive work to the given cores (RPS: a fair two-core benchmark, bench/README.md)."""
    cmd = f"echo {cpumask:x} > /sys/class/net/{ifname}/queues/rx-0/rps_cpus"
    if netns:
        run_in(netns, ["sh", "-c", cmd], check=True)
    else:
        subprocess.run(["sh", "-c", cmd], check=True)


def list_netns(prefix=""):
    try:
        return sorted(n for n in os.listdir("/var/run/netns") if n.startswith(prefix))
    except FileNotFoundError:
        return []
