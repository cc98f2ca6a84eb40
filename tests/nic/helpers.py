"""Shared helpers for the nic tests: a two-namespace veth link and a flow generator."""
import select
import socket
import time

from framework.master import netns
from framework.net.wire import vnet
from framework.nic import steer
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
        # no IPv6 chatter (router solicitations, MLD) on either end: before the links go up
        for ns, dev in ((self.S, self.a), (self.C, self.b)):
            netns.run_in(ns, ["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=False)
        netns.ip("link", "set", self.a, "up", netns=self.S)
        netns.ip("addr", "add", f"{HOST_IP}/24", "dev", self.b, netns=self.C)
        netns.ip("link", "set", self.b, "up", netns=self.C)
        netns.ip("neigh", "add", STACK_IP, "lladdr", STACK_MAC, "dev", self.b, netns=self.C)

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


class KernelTcpSender:
    """Receive a bulk transfer from the Linux kernel's TCP over a port, with just enough
    TCP (scapy handshake, cumulative ACKs with a huge window) to let the kernel build
    its largest GSO frames. Used to check that ring slots and queues take them."""

    def __init__(self, port, peer_mac, peer_ip, peer_port, my_ip, my_mac, my_port=50000):
        self.port, self.peer_mac, self.peer_ip, self.peer_port = port, peer_mac, peer_ip, peer_port
        self.my_ip, self.my_mac, self.my_port = my_ip, my_mac, my_port

    def _seg(self, flags, seq, ack, **kw):
        from scapy.all import IP, TCP, Ether, raw
        return vnet.PLAIN + raw(Ether(src=self.my_mac, dst=self.peer_mac) /
                                IP(src=self.my_ip, dst=self.peer_ip) /
                                TCP(sport=self.my_port, dport=self.peer_port, flags=flags,
                                    seq=seq, ack=ack, window=65535, **kw))

    def _tcp_frames(self, timeout=0.5):
        got = drain([self.port], lambda g: bool(g[self.port.queue]), quiet=0.0, limit=timeout)
        out = []
        for f in got[self.port.queue]:
            fl = flow_of(f)
            if fl and fl[0] == 6 and fl[2][1] == self.my_port:
                out.append(f)
        return out

    def run(self, nbytes, timeout=10.0):
        """Handshake, then ACK everything until ``nbytes`` arrived. Returns (data, frames)."""
        self.port.tx_burst([self._seg("S", 1000, 0, options=[("MSS", 1460), ("WScale", 10)])])
        synack = None
        end = time.monotonic() + 3
        while synack is None and time.monotonic() < end:
            for f in self._tcp_frames():
                o = vnet.VNET_LEN + 14 + (f[vnet.VNET_LEN + 14] & 15) * 4
                if f[o + 13] & 0x12 == 0x12:
                    synack = f
        assert synack is not None, "no SYN-ACK from the kernel"
        o = vnet.VNET_LEN + 14 + (synack[vnet.VNET_LEN + 14] & 15) * 4
        rcv_nxt = int.from_bytes(synack[o + 4:o + 8], "big") + 1
        isn = rcv_nxt
        self.port.tx_burst([self._seg("A", 1001, rcv_nxt)])
        data = {}
        frames = []
        end = time.monotonic() + timeout
        while rcv_nxt - isn < nbytes and time.monotonic() < end:
            for f in self._tcp_frames(0.2):
                ip = vnet.VNET_LEN + 14
                ihl = (f[ip] & 15) * 4
                tot = int.from_bytes(f[ip + 2:ip + 4], "big")
                o = ip + ihl
                doff = (f[o + 12] >> 4) * 4
                seq = int.from_bytes(f[o + 4:o + 8], "big")
                pay = f[o + doff:ip + tot]
                if pay:
                    frames.append(f)
                    data[seq] = pay
                while rcv_nxt in data:
                    rcv_nxt += len(data[rcv_nxt])
            self.port.tx_burst([self._seg("A", 1001, rcv_nxt)])
        self.port.tx_burst([self._seg("R", 1001, 0)])
        out = b""
        s = isn
        while s in data:
            out += data[s]
            s += len(data[s])
        return out, frames


def kernel_download(port, peer_mac, listen_sock, host_ip, stack_ip, stack_mac, size=2_000_000):
    """The peer kernel's TCP (listening on ``listen_sock``) sends ``size`` random bytes to a
    minimal receiver on ``port``; returns (sent, received, frames seen)."""
    import os
    import threading
    payload = os.urandom(size)
    listen_sock.listen(1)
    listen_sock.settimeout(5)

    def serve():
        try:
            c, _ = listen_sock.accept()
            c.sendall(payload)
            c.close()
        except OSError:
            pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        port_no = listen_sock.getsockname()[1]
        data, frames = KernelTcpSender(port, peer_mac, host_ip, port_no, stack_ip,
                                       stack_mac).run(len(payload))
    finally:
        listen_sock.close()
        t.join(5)
    return payload, data, frames
