"""Port measurements: ping RTT through a tiny responder (V2 vs V3, AF_PACKET vs TAP),
TX cost per frame (AF_PACKET send() per frame vs the batched TX ring vs TAP write()),
RX cost per frame.

    python -m bench.ports [rtt|tx|rx|steer|tap|all]

Runs in namespaces of its own (198.18.77.0/24), removes them at exit. Not part of the tests.
"""
import contextlib
import os
import re
import select
import socket
import statistics
import sys
import threading
import time
import uuid

from framework.master import netns
from framework.nic.afpacket import AfPacketPort
from framework.nic.nsenter import netns as in_netns

STACK_MAC = bytes.fromhex("020000000002")
HOST_IP, STACK_IP = "198.18.77.1", "198.18.77.2"


class Link:
    """Two namespaces: 'stack' holds one veth end (no IP), 'client' the other with an IP."""

    def __init__(self, tap=False):
        u = uuid.uuid4().hex[:6]
        self.S, self.C = f"fwps{u}", f"fwpc{u}"
        netns.add_netns(self.S)
        netns.add_netns(self.C)
        self.a, self.b = f"fp{u}a", f"fp{u}b"
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


def ping_stats(ns, count=200, interval=0.01):
    """(median, p90, loss %) of ping RTTs in ms, from the per-reply lines."""
    r = netns.run_in(ns, ["ping", "-c", str(count), "-i", str(interval), STACK_IP],
                     capture_output=True, text=True)
    t = sorted(float(x) for x in re.findall(r"time=([\d.]+) ms", r.stdout))
    loss = re.search(r"([\d.]+)% packet loss", r.stdout)
    if not t:
        return None, None, loss.group(1) if loss else "?"
    return statistics.median(t), t[int(len(t) * 0.9)], loss.group(1) if loss else "?"


def ping_rtt(link, count=200, interval=0.01):
    return ping_stats(link.C, count, interval)


def fmt(res):
    med, p90, loss = res
    return f"median {med:.3f} ms, p90 {p90:.3f} ms, loss {loss}%" if med is not None else f"no reply ({loss}% loss)"


def afpacket_rtt(version):
    link = Link()
    try:
        port = AfPacketPort(link.a, 0, 1, netns=link.S, version=version)
        stop = threading.Event()
        t = threading.Thread(target=responder, args=([port], stop), daemon=True)
        t.start()
        res = ping_rtt(link)
        stop.set()
        t.join()
        port.close()
        return res
    finally:
        link.close()


def kernel_rtt():
    link = Link()
    try:
        netns.ip("addr", "add", f"{STACK_IP}/24", "dev", link.a, netns=link.S)
        netns.ip("neigh", "del", STACK_IP, "dev", link.b, netns=link.C, check=False)
        return ping_rtt(link)
    finally:
        link.close()


def rtt(rounds=3):
    """Interleaved runs, 200 pings each; the responder runs in a thread of this process."""
    for r in range(rounds):
        print(f"round {r + 1}:")
        print(f"  afpacket TPACKET_V2: {fmt(afpacket_rtt(2))}")
        print(f"  afpacket TPACKET_V3: {fmt(afpacket_rtt(3))}")
        print(f"  tap:                 {fmt(tap_rtt())}")
        print(f"  kernel (same veth):  {fmt(kernel_rtt())}")


@contextlib.contextmanager
def tap_in_netns():
    """(namespace, TapDevice, its queue-0 port): the TAP's kernel side has HOST_IP in a
    namespace of its own and knows STACK_IP's MAC; all removed on exit."""
    from framework.nic.tap import TapDevice
    u = uuid.uuid4().hex[:6]
    ns = f"fwpt{u}"
    netns.add_netns(ns)
    try:
        with in_netns(ns):
            dev = TapDevice(f"fpt{u}", 1)
        netns.ip("addr", "add", f"{HOST_IP}/24", "dev", dev.name, netns=ns)
        netns.ip("link", "set", dev.name, "up", netns=ns)
        netns.ip("neigh", "add", STACK_IP, "lladdr", "02:00:00:00:00:02", "dev", dev.name, netns=ns)
        port = dev.port(0)
        try:
            yield ns, dev, port
        finally:
            port.close()
            dev.close()
    finally:
        netns.del_netns(ns)


def tap_rtt():
    with tap_in_netns() as (ns, dev, port):
        stop = threading.Event()
        t = threading.Thread(target=responder, args=([port], stop), daemon=True)
        t.start()
        res = ping_stats(ns)
        stop.set()
        t.join()
        return res


def _sink_frames(dst_mac, batch, size=60):
    """``batch`` vnet(PLAIN) + UDP frames of ``size`` Ethernet bytes from the stack to a
    UDP socket of the client side that never reads (the kernel's receive path, then a
    full socket queue drops them)."""
    from scapy.all import Ether, IP, UDP, raw
    return [bytes(10) + raw(Ether(src="02:00:00:00:00:02", dst=dst_mac) /
                            IP(src=STACK_IP, dst=HOST_IP) / UDP(sport=1000 + i, dport=9) /
                            (b"\0" * max(0, size - 42))) for i in range(batch)]


def _tx_loop(port, frames, seconds):
    """tx_burst the same batch for ``seconds``; (frames/s, us CPU per frame (user, sys),
    bursts, frames)."""
    n = bursts = 0
    t0 = time.perf_counter()
    c0 = os.times()
    while time.perf_counter() - t0 < seconds:
        n += port.tx_burst(frames)
        bursts += 1
    dt = time.perf_counter() - t0
    c1 = os.times()
    n = max(n, 1)
    return n / dt, (c1.user - c0.user) / n * 1e6, (c1.system - c0.system) / n * 1e6, bursts, n


def _afpacket_tx(mode, batch, seconds, other_host):
    link = Link()
    try:
        out = netns.ip("-o", "link", "show", link.b, netns=link.C)
        mac = out.split("link/ether ")[1].split()[0]
        if other_host:       # not the peer's MAC: its IP layer drops each frame at once
            mac = "02:00:00:00:00:99"
        with in_netns(link.C):
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind((HOST_IP, 9))
        port = AfPacketPort(link.a, 0, 1, netns=link.S, tx=mode)
        try:
            rate, user, system, bursts, n = _tx_loop(port, _sink_frames(mac, batch), seconds)
            calls = port.stats["tx_syscalls"] / bursts
            held = port.stats["tx_busy"] + port.stats["tx_ring_full"]
        finally:
            port.close()
            sink.close()
        return rate, user, system, calls, held
    finally:
        link.close()


def _tap_tx(batch, seconds):
    with tap_in_netns() as (ns, dev, port):
        mac = netns.ip("-o", "link", "show", dev.name, netns=ns).split("link/ether ")[1].split()[0]
        with in_netns(ns):
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind((HOST_IP, 9))
        try:
            rate, user, system, bursts, n = _tx_loop(port, _sink_frames(mac, batch), seconds)
            calls = (n + port.stats["tx_busy"]) / bursts      # one write() per frame
            held = port.stats["tx_busy"]
        finally:
            sink.close()
        return rate, user, system, calls, held


def tx(seconds=1.0, rounds=5, batches=(1, 8, 64, 256)):
    """TX cost per 60-byte frame: afpacket tx="send" (a send() per frame) vs tx="ring"
    (one send() per batch) vs TAP (a write() per frame; no batched write), each into a
    kernel UDP socket that never reads, and afpacket to a MAC address that is not the
    peer's (its IP layer drops each frame at once: closer to the port's own cost).
    Interleaved rounds, median per cell. CPU is this process's user and system time (on
    a veth the peer's receive work runs in the sender's system time). "stops": bursts
    that ended early (ENOBUFS/EAGAIN, ring full)."""
    cases = [("afpacket send", lambda b: _afpacket_tx("send", b, seconds, False)),
             ("afpacket ring", lambda b: _afpacket_tx("ring", b, seconds, False)),
             ("tap write", lambda b: _tap_tx(b, seconds)),
             ("afpacket send, other MAC", lambda b: _afpacket_tx("send", b, seconds, True)),
             ("afpacket ring, other MAC", lambda b: _afpacket_tx("ring", b, seconds, True))]
    res = {}
    for _ in range(rounds):
        for b in batches:
            for name, fn in cases:
                res.setdefault((name, b), []).append(fn(b))
    print(f"TX, 60-byte frames, {rounds} rounds of {seconds:.1f} s, medians "
          "(CPU us/frame = user + system)")
    print(f"{'path':26} {'batch':>5} {'kframes/s':>9} {'CPU us/frame':>12} {'user':>6} "
          f"{'sys':>6} {'syscalls/batch':>14} {'stops':>6}")
    for b in batches:
        for name, _ in cases:
            rows = res[(name, b)]
            rate, user, system, calls, held = (statistics.median(r[i] for r in rows)
                                               for i in range(5))
            print(f"{name:26} {b:>5} {rate / 1e3:>9.0f} {user + system:>12.2f} {user:>6.2f} "
                  f"{system:>6.2f} {calls:>14.2f} {held:>6.0f}")


def _blaster(ns, ifname, size, stop_fd):
    """Forked child: AF_PACKET send() of ``size``-byte frames (many flows) until stop_fd closes."""
    from scapy.all import Ether, IP, UDP, raw
    with in_netns(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((ifname, 0))
    frs = [raw(Ether(dst="02:00:00:00:00:02") / IP(src=HOST_IP, dst=STACK_IP) /
               UDP(sport=1000 + i, dport=9) / (b"\0" * max(18, size - 42))) for i in range(64)]
    os.set_blocking(stop_fd, False)
    while True:
        for f in frs:
            try:
                s.send(f)
            except OSError:
                pass
        try:
            if os.read(stop_fd, 1) == b"":
                os._exit(0)
        except BlockingIOError:
            pass


def rx(seconds=2.0, size=60):
    """Frames/s one port receives from a blaster in another process, and the receiving
    process's CPU time per frame (rx_burst + select; the kernel's copy into the ring
    runs in the sender's context on a veth)."""
    for version in (2, 3, 2, 3):
        link = Link()
        try:
            port = AfPacketPort(link.a, 0, 1, netns=link.S, version=version, frames=1024)
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(w)
                    _blaster(link.C, link.b, size, r)
                finally:
                    os._exit(0)
            os.close(r)
            time.sleep(0.3)
            port.rx_burst(1 << 20)
            port.kernel_stats()
            n = 0
            c0, t0 = time.process_time(), time.perf_counter()
            got = 0
            while time.perf_counter() - t0 < seconds:
                if not got:     # like the worker loop: sleep only when the last burst was empty
                    select.select([port], [], [], 0.1)
                got = len(port.rx_burst(256))
                n += got
            cpu = time.process_time() - c0
            dt = time.perf_counter() - t0
            os.close(w)
            os.waitpid(pid, 0)
            drops = port.kernel_stats()[1]
            print(f"rx V{version} {size} B: {n / dt / 1e3:.0f} kframes/s, {cpu / max(n, 1) * 1e6:.2f} us "
                  f"CPU/frame in the receiver, ring drops {drops}")
            port.close()
        finally:
            link.close()


def rx_loop_cost(nframes=100000):
    """Pure cost of the rx_burst loop: fill the ring once, time reading it back."""
    for version in (2, 3):
        link = Link()
        try:
            port = AfPacketPort(link.a, 0, 1, netns=link.S, version=version, frames=4096,
                                blocks=64)
            with in_netns(link.C):
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            s.bind((link.b, 0))
            from scapy.all import Ether, IP, UDP, raw
            f = raw(Ether(dst="02:00:00:00:00:02") / IP(src=HOST_IP, dst=STACK_IP) /
                    UDP(sport=1, dport=9) / (b"\0" * 18))
            total, cpu = 0, 0.0
            while total < nframes:
                for _ in range(2000):
                    s.send(f)
                time.sleep(0.01)
                c0 = time.perf_counter()
                while True:
                    got = port.rx_burst(256)
                    if not got:
                        break
                    total += len(got)
                cpu += time.perf_counter() - c0
            s.close()
            print(f"rx_burst V{version}: {cpu / total * 1e9:.0f} ns per 60-byte frame "
                  f"(batches of 256, ring pre-filled)")
            port.close()
        finally:
            link.close()


def tap_costs(seconds=1.5):
    """TAP: write() of 60-byte frames into the kernel, read() of frames the kernel sends."""
    with tap_in_netns() as (ns, dev, port):
        from scapy.all import Ether, IP, UDP, raw
        mac = netns.ip("-o", "link", "show", dev.name, netns=ns).split("link/ether ")[1].split()[0]
        # to a UDP socket that never reads: the kernel takes each frame up to the socket
        with in_netns(ns):
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind((HOST_IP, 9))
        frames = [bytes(10) + raw(Ether(src="02:00:00:00:00:02", dst=mac) / IP(src=STACK_IP, dst=HOST_IP) /
                                  UDP(sport=1000 + i, dport=9) / (b"\0" * 18)) for i in range(64)]
        n = 0
        c0, t0 = time.process_time(), time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            n += port.tx_burst(frames)
        print(f"tap tx: {n / (time.perf_counter() - t0) / 1e3:.0f} kframes/s, "
              f"{(time.process_time() - c0) / n * 1e6:.2f} us CPU/frame")
        sink.close()
        # kernel -> tap: a forked sender in the namespace
        pid = os.fork()
        if pid == 0:
            try:
                with in_netns(ns):
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                end = time.monotonic() + seconds + 0.5
                while time.monotonic() < end:
                    for _ in range(256):
                        try:
                            s.sendto(b"\0" * 18, (STACK_IP, 9))
                        except OSError:
                            pass
            finally:
                os._exit(0)
        time.sleep(0.2)
        n = 0
        busy = 0.0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            select.select([port], [], [], 0.1)
            a = time.perf_counter()
            n += len(port.rx_burst(256))
            busy += time.perf_counter() - a
        os.waitpid(pid, 0)
        print(f"tap rx: {n / seconds / 1e3:.0f} kframes/s, {busy / max(n, 1) * 1e6:.2f} us in rx_burst per frame")


def steer_cost(nframes=60000):
    """Kernel cost of steering: CPU per frame (send + kernel receive + rx_burst, all in this
    process) with n per-socket filters vs one fanout group of n members."""
    from scapy.all import Ether, IP, UDP, raw
    from framework.nic.afpacket import FanoutGroup
    frs = [raw(Ether(dst="02:00:00:00:00:02") / IP(src=HOST_IP, dst=STACK_IP) /
               UDP(sport=1000 + i, dport=9) / (b"\0" * 18)) for i in range(256)]
    for n in (1, 2, 4, 8):
        for mode in ("filter", "fanout"):
            link = Link()
            group = None
            try:
                if mode == "filter":
                    ports = [AfPacketPort(link.a, q, n, netns=link.S) for q in range(n)]
                else:
                    group = FanoutGroup(link.a, n, netns=link.S)
                    ports = [group.port(q) for q in range(n)]
                with in_netns(link.C):
                    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                s.bind((link.b, 0))
                got = 0
                sent = nframes // len(frs) * len(frs)
                c0 = time.process_time()
                for _ in range(sent // len(frs)):
                    for f in frs:
                        s.send(f)
                    for p in ports:
                        got += len(p.rx_burst(512))
                for p in ports:
                    got += len(p.rx_burst(512))
                cpu = time.process_time() - c0
                print(f"steering {mode:6} n={n}: {cpu / sent * 1e6:.2f} us CPU/frame "
                      f"(send + kernel + rx_burst), received {got}/{sent}")
                s.close()
                for p in ports:
                    p.close()
            finally:
                if group:
                    group.close()
                link.close()


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("rtt", "all"):
        rtt()
    if what in ("tx", "all"):
        tx()
    if what in ("rx", "all"):
        rx()
        rx_loop_cost()
    if what in ("steer", "all"):
        steer_cost()
    if what in ("tap", "all"):
        tap_costs()
