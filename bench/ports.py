"""Port measurements: ping RTT through a tiny responder (V2 vs V3, AF_PACKET vs TAP),
TX rate of send() vs the TX ring, RX cost per frame.

    python -m bench.ports [rtt|tx|rx|all]

Runs in namespaces of its own (198.18.77.0/24), removes them at exit. Not part of the tests.
"""
import os
import re
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid

from framework import netns
from framework.nic import steer
from framework.nic.afpacket import AfPacketPort
from framework.nic.nsenter import netns as in_netns

STACK_MAC = bytes.fromhex("020000000002")
HOST_IP, STACK_IP = "198.18.77.1", "198.18.77.2"


class Link:
    """Two namespaces: 'stack' holds one veth end (no IP), 'client' the other with an IP."""

    def __init__(self, tap=False):
        u = uuid.uuid4().hex[:6]
        self.S, self.C = f"fwbs{u}", f"fwbc{u}"
        netns.add_netns(self.S)
        netns.add_netns(self.C)
        self.a, self.b = f"fb{u}a", f"fb{u}b"
        netns.add_veth(self.a, self.b, self.S, self.C)
        netns.ip("link", "set", self.a, "up", netns=self.S)
        netns.ip("addr", "add", f"{HOST_IP}/24", "dev", self.b, netns=self.C)
        netns.ip("link", "set", self.b, "up", netns=self.C)
        netns.ip("neigh", "add", STACK_IP, "lladdr", "02:00:00:00:00:02", "dev", self.b, netns=self.C)

    def close(self):
        netns.del_netns(self.S)
        netns.del_netns(self.C)


def icmp_reply(f):
    """Turn a vnet+eth+ipv4 ICMP echo request into its reply (None if not one)."""
    if len(f) < 10 + 34 + 8 or f[22:24] != b"\x08\x00" or f[33] != 1:
        return None
    ihl = (f[24] & 15) * 4
    o = 24 + ihl
    if f[o] != 8:
        return None
    b = bytearray(f)
    b[0:10] = bytes(10)
    b[10:16], b[16:22] = f[16:22], f[10:16]
    b[36:40], b[40:44] = f[40:44], f[36:40]
    b[o] = 0
    c = int.from_bytes(b[o + 2:o + 4], "big") + 0x0800   # RFC 1624: type 8 -> 0
    c = (c & 0xFFFF) + (c >> 16)
    b[o + 2:o + 4] = c.to_bytes(2, "big")
    return bytes(b)


def responder(ports, stop):
    fds = {p.fileno(): p for p in ports}
    while not stop.is_set():
        r, _, _ = select.select(list(fds), [], [], 0.1)
        for fd in r:
            p = fds[fd]
            out = [x for x in map(icmp_reply, p.rx_burst(64)) if x]
            if out:
                p.tx_burst(out)


def ping_rtt(link, count=200, interval=0.01):
    r = netns.run_in(link.C, ["ping", "-q", "-c", str(count), "-i", str(interval), STACK_IP],
                     capture_output=True, text=True)
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", r.stdout)
    loss = re.search(r"([\d.]+)% packet loss", r.stdout)
    return (float(m.group(1)), float(m.group(2)), float(m.group(3))) if m else None, loss.group(1) if loss else "?"


def rtt():
    for version in (2, 3):
        link = Link()
        try:
            port = AfPacketPort(link.a, 0, 1, netns=link.S, version=version)
            stop = threading.Event()
            t = threading.Thread(target=responder, args=([port], stop), daemon=True)
            t.start()
            res, loss = ping_rtt(link)
            stop.set()
            t.join()
            port.close()
            print(f"afpacket TPACKET_V{version}: ping min/avg/max {res} ms, loss {loss}%")
        finally:
            link.close()
    # the kernel itself, same link, for reference
    link = Link()
    try:
        netns.ip("addr", "add", f"{STACK_IP}/24", "dev", link.a, netns=link.S)
        netns.ip("neigh", "del", STACK_IP, "dev", link.b, netns=link.C, check=False)
        res, loss = ping_rtt(link)
        print(f"kernel: ping min/avg/max {res} ms, loss {loss}%")
    finally:
        link.close()
    try:
        from framework.nic.tap import TapPort, create_tap  # noqa
        tap_rtt()
    except ImportError:
        pass


def tap_rtt():
    from framework.nic.tap import TapDevice
    u = uuid.uuid4().hex[:6]
    ns = f"fwbt{u}"
    netns.add_netns(ns)
    try:
        with in_netns(ns):
            dev = TapDevice(f"fbt{u}", 1)
        netns.ip("addr", "add", f"{HOST_IP}/24", "dev", dev.name, netns=ns)
        netns.ip("link", "set", dev.name, "up", netns=ns)
        netns.ip("neigh", "add", STACK_IP, "lladdr", "02:00:00:00:00:02", "dev", dev.name, netns=ns)
        port = dev.port(0)
        stop = threading.Event()
        t = threading.Thread(target=responder, args=([port], stop), daemon=True)
        t.start()
        r = netns.run_in(ns, ["ping", "-q", "-c", "200", "-i", "0.01", STACK_IP],
                         capture_output=True, text=True)
        stop.set()
        t.join()
        m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)", r.stdout)
        print(f"tap: ping min/avg/max {m.groups() if m else r.stdout} ms")
        dev.close()
    finally:
        netns.del_netns(ns)


def udp_frame(sport, size=60):
    """vnet(PLAIN) + a UDP/IPv4 frame from the stack to the client, ``size`` bytes of Ethernet."""
    from scapy.all import Ether, IP, UDP, raw
    pay = b"\0" * max(0, size - 42)
    f = raw(Ether(src="02:00:00:00:00:02", dst="ff:ff:ff:ff:ff:ff") /
            IP(src=STACK_IP, dst=HOST_IP) / UDP(sport=sport, dport=9))
    return bytes(10) + f + pay if False else bytes(10) + raw(
        Ether(src="02:00:00:00:00:02", dst="ff:ff:ff:ff:ff:ff") /
        IP(src=STACK_IP, dst=HOST_IP) / UDP(sport=sport, dport=9) / pay)


def tx(seconds=2.0, batch=64):
    frames = [udp_frame(1000 + i) for i in range(batch)]
    for mode in ("send", "ring"):
        link = Link()
        try:
            port = AfPacketPort(link.a, 0, 1, netns=link.S, tx=mode)
            n = 0
            t0 = time.perf_counter()
            c0 = time.process_time()
            while time.perf_counter() - t0 < seconds:
                n += port.tx_burst(frames)
            dt = time.perf_counter() - t0
            dc = time.process_time() - c0
            print(f"tx {mode}: {n / dt / 1e3:.0f} kframes/s (60 B, batch {batch}), "
                  f"{dc / n * 1e6:.2f} us CPU/frame, busy {port.stats['tx_busy']}")
            port.close()
        finally:
            link.close()


def rx(seconds=2.0):
    """A blaster in the client namespace (AF_PACKET send of 60-byte frames) feeds one port."""
    for version in (2, 3):
        link = Link()
        try:
            port = AfPacketPort(link.a, 0, 1, netns=link.S, version=version, frames=1024)
            stop = threading.Event()

            def blast():
                with in_netns(link.C):
                    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                s.bind((link.b, 0))
                from scapy.all import Ether, IP, UDP, raw
                fr = raw(Ether(dst="02:00:00:00:00:02") / IP(src=HOST_IP, dst=STACK_IP) /
                         UDP(sport=5, dport=9) / (b"\0" * 18))
                while not stop.is_set():
                    for _ in range(256):
                        s.send(fr)
                s.close()
            t = threading.Thread(target=blast, daemon=True)
            t.start()
            time.sleep(0.2)
            n = 0
            busy = 0.0
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                select.select([port], [], [], 0.1)
                a = time.perf_counter()
                got = port.rx_burst(256)
                busy += time.perf_counter() - a
                n += len(got)
            stop.set()
            t.join()
            print(f"rx V{version}: {n / seconds / 1e3:.0f} kframes/s received, "
                  f"{busy / max(n, 1) * 1e6:.2f} us wall in rx_burst per frame (GIL shared with "
                  f"the sender thread), kernel drops {port.kernel_stats()[1]}")
            port.close()
        finally:
            link.close()


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("rtt", "all"):
        rtt()
    if what in ("tx", "all"):
        tx()
    if what in ("rx", "all"):
        rx()
