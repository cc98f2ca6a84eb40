"""Shared helpers for the nic tests: a two-namespace veth link and a flow generator."""
import select
import socket
import time

from framework import netns
from framework.nic import steer, vnet
from framework.nic.nsenter import netns as in_netns

HOST_IP, STACK_IP = "198.18.77.1", "198.18.77.2"
STACK_MAC = "02:00:00:00:00:02"


def ip2int(s):
    return int.from_bytes(socket.inet_aton(s), "big")


class VethLink:
    """'S' holds the stack's veth end (no address); 'C' the client end with HOST_IP."""

    def __init__(self, lab):
        self.S = lab.netns("fwns")
        self.C = lab.netns("fwnc")
        self.a, self.b = lab.veth(self.S, self.C)
        netns.ip("link", "set", self.a, "up", netns=self.S)
        netns.ip("addr", "add", f"{HOST_IP}/24", "dev", self.b, netns=self.C)
        netns.ip("link", "set", self.b, "up", netns=self.C)
        netns.ip("neigh", "add", STACK_IP, "lladdr", STACK_MAC, "dev", self.b, netns=self.C)
        # no IPv6 chatter (router solicitations etc.) on either end
        for ns, dev in ((self.S, self.a), (self.C, self.b)):
            netns.run_in(ns, ["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=False)

    def client_socket(self, *args):
        with in_netns(self.C):
            return socket.socket(*args)


def flow_of(frame, off=vnet.VNET_LEN):
    """(proto, (src, sport), (dst, dport)) of an IPv4 TCP/UDP frame, else None."""
    if frame[off + 12:off + 14] != b"\x08\x00":
        return None
    ihl = (frame[off + 14] & 15) * 4
    proto = frame[off + 23]
    if proto not in (6, 17):
        return None
    l4 = off + 14 + ihl
    src, dst = frame[off + 26:off + 30], frame[off + 30:off + 34]
    sport = int.from_bytes(frame[l4:l4 + 2], "big")
    dport = int.from_bytes(frame[l4 + 2:l4 + 4], "big")
    return proto, (int.from_bytes(src, "big"), sport), (int.from_bytes(dst, "big"), dport)


def drain(ports, until, quiet=0.15, limit=5.0):
    """Collect frames from every port until ``until(collected)`` holds and nothing
    arrived for ``quiet`` seconds (or ``limit`` passed). Returns {queue: [frames]}."""
    got = {p.queue: [] for p in ports}
    fds = {p.fileno(): p for p in ports}
    t_end = time.monotonic() + limit
    last = time.monotonic()
    while time.monotonic() < t_end:
        r, _, _ = select.select(list(fds), [], [], 0.05)
        for fd in r:
            p = fds[fd]
            fr = p.rx_burst(256)
            if fr:
                got[p.queue] += fr
                last = time.monotonic()
        if until(got) and time.monotonic() - last > quiet:
            break
    return got


def check_steering(got, n):
    """Every TCP/UDP flow is on exactly one shard, the one shard_of names.
    Returns {flow: shard}."""
    where = {}
    for q, frames in got.items():
        for f in frames:
            fl = flow_of(f)
            if fl is None:
                continue
            proto, (s, sp), (d, dp) = fl
            assert steer.shard_of(s, d, sp, dp, n) == q, (fl, q)
            assert where.setdefault(fl, q) == q, f"flow {fl} on two shards"
    return where
