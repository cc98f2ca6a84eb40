"""Figures for the TCP issue note (not a test): our Stack + TcpLayer (one thread, AF_PACKET
port) against the kernel's TCP (a uvloop server, one process), same client, same run.

    python -m bench.measure [--bulk-mb 200] [--cps-seconds 5]

Each server sits in its own namespace pair joined by a veth; the clients (uvloop, in a
subprocess) run in the peer namespace. Bulk: one connection, N MB each way (discard /
zero source, no hashing). cps: connect, send 64 B, receive the 64 B echo, close, with 32
clients in parallel for a fixed time. Server on core 0 (RPS of its veth too), clients on
core 1, as bench/README.md asks."""
import argparse
import json
import os
import subprocess
import sys
import textwrap

from framework.master import netns
from framework.net.tcp import TcpConfig
from framework.nic.afpacket import AfPacketPort
# the test suite's namespace lab and stack runner (run from the repo root: tests/ is a
# namespace package there)
from tests.conftest import Lab
from tests.net.tcp.linux_peer import PEER_IP, STACK_IP, StackRunner

CLIENT = textwrap.dedent('''
    import asyncio, json, sys, time, uvloop
    host, mb, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    async def upload():
        r, w = await asyncio.open_connection(host, 5009)
        chunk = bytes(1 << 20); t0 = time.monotonic()
        for _ in range(mb):
            w.write(chunk); await w.drain()
        w.write_eof(); n = int(await r.read()); dt = time.monotonic() - t0
        w.close(); assert n == mb << 20, n
        return n * 8 / dt / 1e9
    async def download():
        r, w = await asyncio.open_connection(host, 5019)
        t0 = time.monotonic(); w.write(b"%d\\n" % (mb << 20)); n = 0
        while True:
            b = await r.read(1 << 20)
            if not b: break
            n += len(b)
        dt = time.monotonic() - t0; w.close(); assert n == mb << 20, n
        return n * 8 / dt / 1e9
    async def cps():
        end = time.monotonic() + secs; done = 0; msg = b"x" * 64
        async def one():
            nonlocal done
            while time.monotonic() < end:
                r, w = await asyncio.open_connection(host, 7)
                w.write(msg); got = await r.readexactly(64); assert got == msg
                w.close(); await w.wait_closed(); done += 1
        t0 = time.monotonic()
        await asyncio.gather(*[one() for _ in range(32)])
        return done / (time.monotonic() - t0)
    async def main():
        out = {"upload_gbps": await upload(), "download_gbps": await download(), "cps": await cps()}
        print(json.dumps(out))
    uvloop.run(main())
''')

KERNEL_SERVER = textwrap.dedent('''
    import asyncio, uvloop
    Z = bytes(1 << 20)
    class Echo(asyncio.Protocol):
        def connection_made(self, t): self.t = t
        def data_received(self, d): self.t.write(d)
        def eof_received(self): self.t.close()
    class Discard(asyncio.Protocol):
        n = 0
        def connection_made(self, t): self.t = t
        def data_received(self, d): self.n += len(d)
        def eof_received(self): self.t.write(b"%d" % self.n); self.t.close()
    class Zeros(asyncio.Protocol):
        def connection_made(self, t): self.t = t; self.req = b""; self.left = None
        def data_received(self, d):
            self.req += d
            if self.left is None and b"\\n" in self.req:
                self.left = int(self.req.split(b"\\n")[0]); self.pump()
        def pump(self):
            while self.left and self.t.get_write_buffer_size() < (4 << 20):
                n = min(self.left, len(Z)); self.t.write(Z[:n]); self.left -= n
            if not self.left: self.t.close()
        def pause_writing(self): pass
        def resume_writing(self): self.pump()
    async def main():
        loop = asyncio.get_running_loop()
        for port, p in ((7, Echo), (5009, Discard), (5019, Zeros)):
            await loop.create_server(p, "0.0.0.0", port, backlog=1024)
        print("ready", flush=True)
        await asyncio.sleep(3600)
    uvloop.run(main())
''')


SERVER_CORE, CLIENT_CORE = 0, 1     # bench/README.md: server on core 0, load on core 1


def client(ns, host, mb, secs):
    p = netns.run_in(ns, ["taskset", "-c", str(CLIENT_CORE), sys.executable, "-c", CLIENT,
                          host, str(mb), str(secs)],
                     capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bulk-mb", type=int, default=200)
    ap.add_argument("--cps-seconds", type=float, default=5.0)
    ap.add_argument("--buf-kb", type=int, default=1024, help="our rcvbuf/sndbuf per connection")
    a = ap.parse_args()
    lab = Lab()
    try:
        # ours: the stack's end has no kernel address
        c1, s1 = lab.netns("fwmc"), lab.netns("fwms")
        x1, y1 = lab.veth(c1, s1, prefix="fm")
        netns.ip("addr", "add", PEER_IP + "/24", "dev", x1, netns=c1)
        netns.ip("link", "set", x1, "up", netns=c1)
        netns.ip("link", "set", y1, "up", netns=s1)
        # kernel: the same addresses in another pair of namespaces
        c2, s2 = lab.netns("fwkc"), lab.netns("fwks")
        x2, y2 = lab.veth(c2, s2, prefix="fk")
        netns.ip("addr", "add", PEER_IP + "/24", "dev", x2, netns=c2)
        netns.ip("addr", "add", STACK_IP + "/24", "dev", y2, netns=s2)
        netns.ip("link", "set", x2, "up", netns=c2)
        netns.ip("link", "set", y2, "up", netns=s2)
        # the server side's receive work on the server's core (RPS, inside our namespaces)
        netns.set_rps(y1, 1 << SERVER_CORE, netns=s1)
        netns.set_rps(y2, 1 << SERVER_CORE, netns=s2)
        srv = subprocess.Popen(["ip", "netns", "exec", s2, "taskset", "-c", str(SERVER_CORE),
                                sys.executable, "-c", KERNEL_SERVER],
                               stdout=subprocess.PIPE, text=True)
        try:
            assert srv.stdout.readline().strip() == "ready"
            kernel = client(c2, STACK_IP, a.bulk_mb, a.cps_seconds)
        finally:
            srv.kill()
            srv.wait()
        port = AfPacketPort(y1, netns=s1)
        try:
            cfg = TcpConfig(rcvbuf=a.buf_kb << 10, sndbuf=a.buf_kb << 10)
            os.sched_setaffinity(0, {SERVER_CORE})      # the stack thread inherits this
            with StackRunner(port, cfg) as r:
                ours = client(c1, STACK_IP, a.bulk_mb, a.cps_seconds)
            assert r.error is None, r.error
            port.kernel_stats()
            print("ours:", {k: v for k, v in r.tcp.counters.items() if v}, port.stats)
        finally:
            port.close()
    finally:
        lab.cleanup()
    print(f"{'':24}{'framework TCP':>16}{'kernel (uvloop)':>18}")
    for k, unit in (("upload_gbps", "Gbit/s"), ("download_gbps", "Gbit/s"), ("cps", "conn/s")):
        print(f"{k:24}{ours[k]:>12.2f} {unit:6}{kernel[k]:>12.2f} {unit}")


if __name__ == "__main__":
    main()
