"""The default link: where the user-level stack meets the host when no --iface is given.

veth (port type ``afpacket``)::

    host namespace                          namespace fw-<id>
    fw<id>h  198.18.0.1/24   <--veth-->     fw<id>s  (no kernel IP; the stack is 198.18.0.2)

The stack's end lives in a namespace of its own with no kernel address on it, so the
kernel there never answers for the stack's address (no RST, no ICMP, no ARP) and, with
ip_forward on, never forwards the stack's frames back out. Workers open their AF_PACKET
socket inside the namespace (framework/nic/nsenter.py) and otherwise stay where the
supervisor runs.

tap (port type ``tap``): a multi-queue TAP device ``fw<id>t`` on the host with
198.18.0.1/24; its user side is the stack's end, so no namespace is needed (the host
kernel has no address for the stack's side either). The supervisor holds one fd per
queue (``framework.nic.tap.TapDevice``) and each worker a dup of its own: a worker that
dies does not detach its queue, and the device vanishes with the supervisor, even one
killed with SIGKILL.

The host gets one interface and its connected 198.18.0.0/24 route (like docker0); nothing
else on the host changes. Every name carries the supervisor's pid in hex, which is how a
stale link of a crashed run is recognised (name pattern + alias + dead owner) and removed
at the next start.
"""
import ctypes
import fcntl
import ipaddress
import logging
import os
import re
import socket
import struct
import subprocess
import zlib

from framework.nic.tap import TapDevice

from . import netns

log = logging.getLogger("framework.link")

NS_PREFIX = "fw-"
ALIAS_PREFIX = "framework run "
DEFAULT_SUBNET = "198.18.0.0/24"
ALLOWED = ipaddress.ip_network("198.18.0.0/15")

_NS_RE = re.compile(r"^fw-([0-9a-f]{1,8})$")
_LINK_RE = re.compile(r"^fw([0-9a-f]{1,8})[hst]$")


class LinkError(RuntimeError):
    pass


def parse_subnet(text):
    """A /24 inside 198.18.0.0/15 (the benchmarking range); raises ValueError otherwise."""
    net = ipaddress.ip_network(text, strict=True)
    if net.version != 4 or net.prefixlen != 24 or not net.subnet_of(ALLOWED):
        raise ValueError(f"{text}: must be a /24 inside {ALLOWED}")
    return net


def make_mac(seed):
    """A locally administered unicast MAC (02:...) derived from the run's pid."""
    b = (seed & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes([0x02, 0x66]) + b  # 0x66 = 'f'; bit 1 of the first byte: locally administered


def mac_str(mac):
    return ":".join(f"{x:02x}" for x in mac)


class LinkInfo:
    """What a worker needs to open its port: picklable, no handles."""

    __slots__ = ("port_type", "ifname", "netns", "mac", "ip", "prefix", "gateway",
                 "host_ifname", "host_ip", "kernel_ip", "vips")

    def __init__(self, port_type, ifname, netns, mac, ip, prefix, gateway=None,
                 host_ifname=None, host_ip=None, kernel_ip=False):
        self.port_type = port_type
        self.ifname = ifname        # the stack's end (veth end / TAP device / --iface)
        self.netns = netns          # namespace to enter before opening the port, or None
        self.mac = mac              # bytes(6): the stack's MAC
        self.ip = ip                # "198.18.0.2"
        self.prefix = prefix
        self.gateway = gateway
        self.host_ifname = host_ifname
        self.host_ip = host_ip      # where a client on the host talks from
        self.kernel_ip = kernel_ip  # True for --stack kernel: the kernel owns self.ip
        self.vips = []              # --vip: extra addresses routed to the stack (hooks.py)

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, st):
        for k, v in st.items():
            setattr(self, k, v)


# --- ethtool (legacy ioctls; no ethtool binary needed) -------------------------------

SIOCETHTOOL = 0x8946
ETHTOOL_GTSO = 0x1E
ETHTOOL_STSO = 0x1F


def _ethtool_value(ifname, cmd, value=0):
    buf = ctypes.create_string_buffer(struct.pack("II", cmd, value))
    ifr = struct.pack("16sP", ifname.encode(), ctypes.addressof(buf)) + bytes(16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)
    return struct.unpack_from("II", buf.raw)[1]


def set_tso(ifname, on):
    """TSO off on the host end: the kernel then segments before the veth, so no frame
    bigger than the MTU ever reaches the stack's RX ring."""
    _ethtool_value(ifname, ETHTOOL_STSO, 1 if on else 0)


def get_tso(ifname):
    return bool(_ethtool_value(ifname, ETHTOOL_GTSO))


# --- the link --------------------------------------------------------------------------

def _host_addrs():
    """(ifname, ip_interface) of every IPv4 address in the host namespace."""
    out = netns.ip("-4", "-o", "addr", "show")
    res = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "inet":
            res.append((parts[1], ipaddress.ip_interface(parts[3])))
    return res


def subnet_in_use(subnet):
    """Name of a host interface that already has an address in ``subnet``, or None."""
    for ifname, iface in _host_addrs():
        if iface.network.overlaps(subnet):
            return ifname
    return None


class DefaultLink:
    """Creates and removes the default link of one run."""

    def __init__(self, owner_pid=None, port_type="afpacket", subnet=DEFAULT_SUBNET,
                 kernel_ip=False, tso_off=False, queues=1):
        self.pid = owner_pid if owner_pid is not None else os.getpid()
        self.short = f"{self.pid:x}"
        self.port_type = port_type
        self.subnet = parse_subnet(subnet) if isinstance(subnet, str) else subnet
        self.kernel_ip = kernel_ip
        self.tso_off = tso_off
        hosts = list(self.subnet.hosts())
        self.host_ip, self.stack_ip = str(hosts[0]), str(hosts[1])
        self.prefix = self.subnet.prefixlen
        self.mac = make_mac(self.pid)
        self.alias = f"{ALIAS_PREFIX}{self.pid}"
        if port_type == "tap":
            self.netns = None
            self.host_ifname = f"fw{self.short}t"
            self.stack_ifname = self.host_ifname
        else:
            self.netns = f"{NS_PREFIX}{self.short}"
            self.host_ifname = f"fw{self.short}h"
            self.stack_ifname = f"fw{self.short}s"
        self.queues = queues
        self.device = None      # the TapDevice (tap only), held for the workers
        self.created = False

    def info(self):
        return LinkInfo(self.port_type, self.stack_ifname, self.netns, self.mac,
                        self.stack_ip, self.prefix, None, self.host_ifname, self.host_ip,
                        self.kernel_ip)

    def setup(self):
        other = subnet_in_use(self.subnet)
        if other:
            raise LinkError(f"{self.subnet} is already in use on {other} "
                            f"(another framework serve running? pick another /24 with --link-subnet)")
        self.created = True  # from here on, teardown() removes whatever exists
        try:
            if self.port_type == "tap":
                self._setup_tap()
            else:
                self._setup_veth()
        except Exception:
            self.teardown()
            raise

    def _setup_veth(self):
        h, s, ns = self.host_ifname, self.stack_ifname, self.netns
        netns.add_netns(ns)
        netns.ip("link", "add", h, "type", "veth", "peer", "name", s)
        for dev in (h, s):
            netns.ip("link", "set", "dev", dev, "alias", self.alias)
            # no IPv6 link-local address: no DAD / router solicitations / MLD noise
            netns.ip("link", "set", "dev", dev, "addrgenmode", "none")
        netns.ip("link", "set", "dev", s, "address", mac_str(self.mac))
        netns.ip("link", "set", s, "netns", ns)
        # the move resets it: again, so the namespace's kernel sends no DAD/RS/MLD from
        # the stack's end and owns no IPv6 address there
        netns.ip("link", "set", "dev", s, "addrgenmode", "none", netns=ns)
        if self.tso_off:
            try:
                set_tso(h, False)
            except OSError as e:  # not fatal: the port may take 64 KiB frames anyway
                log.warning("could not turn TSO off on %s: %s", h, e)
        netns.ip("addr", "add", f"{self.host_ip}/{self.prefix}", "dev", h)
        if self.kernel_ip:
            netns.ip("addr", "add", f"{self.stack_ip}/{self.prefix}", "dev", s, netns=ns)
            # the rolling restart: a retiring worker's closed SO_REUSEPORT listener hands
            # its accept queue to its successor's instead of resetting it (Linux 5.14)
            netns.run_in(ns, ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/tcp_migrate_req"],
                         capture_output=True)
        netns.ip("link", "set", s, "up", netns=ns)
        netns.ip("link", "set", h, "up")

    def _setup_tap(self):
        t = self.host_ifname
        # FRAMEWORK_TAP_STEERING=kernel (tests): the kernel's flow hash, as without bpf()
        # rights, so every IPv4 frame may reach the wrong shard and be forwarded
        self.device = TapDevice(t, self.queues,
                                steering=os.environ.get("FRAMEWORK_TAP_STEERING", "shard_of"))
        netns.ip("link", "set", "dev", t, "alias", self.alias)
        netns.ip("link", "set", "dev", t, "addrgenmode", "none")
        netns.ip("addr", "add", f"{self.host_ip}/{self.prefix}", "dev", t)
        netns.ip("link", "set", t, "up")

    def teardown(self):
        if not self.created:
            return
        if self.port_type == "tap":
            if self.device is not None:
                self.device.close()  # the last fd of a non-persistent TAP removes it
                self.device = None
            if netns.link_exists(self.host_ifname):
                netns.del_link(self.host_ifname)
        else:
            netns.del_link(self.host_ifname)  # removes both ends of the veth
            netns.del_netns(self.netns)
        self.created = False

    def exists(self):
        """True while any piece of this link is still there (tests use it)."""
        if netns.link_exists(self.host_ifname):
            return True
        return bool(self.netns and netns.netns_exists(self.netns))


def _owner_alive(pid):
    """Any live process with that pid counts as the owner: a supervisor may be started
    through a wrapper whose command line does not say "framework", and removing a live
    run's link breaks it, while keeping a stale one after pid reuse only costs an
    interface until that process ends (the shm cleanup follows the same rule)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _link_alias(ifname):
    try:
        with open(f"/sys/class/net/{ifname}/ifalias") as f:
            return f.read().strip()
    except OSError:
        return ""


def cleanup_stale(keep_pid=None):
    """Remove links and namespaces of framework runs whose supervisor is dead.

    Only ours: the name must match our pattern, host links must carry our alias, and the
    pid in the name must not be a running framework process. Returns what was removed.
    """
    removed = []
    for name in netns.list_netns(NS_PREFIX):
        m = _NS_RE.match(name)
        if not m:
            continue
        pid = int(m.group(1), 16)
        if pid == keep_pid or _owner_alive(pid):
            continue
        netns.del_netns(name)
        removed.append(name)
    try:
        ifnames = os.listdir("/sys/class/net")
    except OSError:
        ifnames = []
    for ifname in ifnames:
        m = _LINK_RE.match(ifname)
        if not m:
            continue
        pid = int(m.group(1), 16)
        if pid == keep_pid or _owner_alive(pid):
            continue
        if not _link_alias(ifname).startswith(ALIAS_PREFIX):
            continue
        if ifname.endswith("t"):
            netns.ip("tuntap", "del", "dev", ifname, "mode", "tap", "multi_queue", check=False)
        netns.del_link(ifname)
        removed.append(ifname)
    if removed:
        log.info("removed stale links of crashed runs: %s", ", ".join(removed))
    return removed


def attached(port_type, iface, ip_with_prefix, gateway=None, owner_pid=None):
    """LinkInfo for --iface: an existing interface in the host namespace.

    The stack takes a MAC of its own (generated, locally administered), not the
    interface's: frames for it are then "other host" to the kernel, which drops them
    before its IP layer instead of routing or forwarding them (it would, with
    ip_forward on, for frames addressed to its own MAC). On a veth or TAP that is all;
    a physical NIC must also be in promiscuous mode to deliver them.
    """
    itf = ipaddress.ip_interface(ip_with_prefix)
    if not os.path.exists(f"/sys/class/net/{iface}"):
        raise LinkError(f"--iface {iface}: no such interface")
    # the same interface and address give the same MAC: a restarted server (a node coming
    # back behind a router, docs/DEPLOY.md) is reached at once, not after the neighbours'
    # ARP entries for the old MAC expire
    seed = zlib.crc32(f"{iface} {itf.ip}".encode()) if owner_pid is None else owner_pid
    mac = make_mac(seed)
    return LinkInfo(port_type, iface, None, mac, str(itf.ip), itf.network.prefixlen, gateway)
