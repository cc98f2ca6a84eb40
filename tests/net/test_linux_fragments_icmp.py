"""Fragments and ICMP errors against Linux in namespaces (the stack over a plain AF_PACKET
socket, as test_kernel_peer.py):

- ``ping -s 8000`` from a Linux peer: its fragments are reassembled, and our 8008-byte
  reply leaves in fragments that Linux reassembles; every ping is answered.
- Through a Linux router: ``ctx.open_connection`` to an address the router has a
  ``prohibit`` / ``unreachable`` route for fails at once (no SYN retransmission) with the
  reason; behind a router link of MTU 1280, the router's "fragmentation needed" lowers
  the connection's MSS and a 300 KB upload arrives whole.
"""
import asyncio
import socket
import threading
import time

import pytest

from framework.context import ShardContext
from framework.master import netns
from framework.net.stack import Stack
from framework.shard.streams import Streams

from .test_kernel_peer import (PEER_IP, STACK_IP, STACK_MAC, Runner, open_packet_socket,
                               peer_link, ping_cmd)  # noqa: F401  (peer_link: a fixture)

NET_A = "198.18.71"          # stack <-> router
NET_B = "198.18.72"          # router <-> target (MTU 1280 on the router's side)
PROHIBITED = "198.18.73.5"
UNREACHABLE = "198.18.73.6"
TARGET = NET_B + ".2"


@pytest.mark.timeout(60)
def test_ping_8000_answered_in_full(peer_link):
    ns_peer, ifname, sock = peer_link
    stack = Stack(mac=STACK_MAC, ip=STACK_IP, prefix=24)
    with Runner(sock, stack):
        cmd = ping_cmd() + ["-c", "5", "-i", "0.05", "-W", "2", "-w", "10", "-s", "8000", STACK_IP]
        p = netns.run_in(ns_peer, cmd, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    assert " 5 received" in p.stdout, p.stdout
    c = stack.counters
    # 8028-byte datagrams over MTU 1500: 6 fragments each way
    assert c["ipv4.reassembled"] == 5 and c["icmp.tx_echo_reply"] == 5
    assert c["ipv4.frag_rx"] == 30 and c["ipv4.frag_tx"] == 30
    assert stack.ipv4.reasm.pending == 0
    bad = {k: v for k, v in c.items() if k.startswith("drop.ipv4.frag") and v}
    assert bad == {} and c["drop.internal"] == 0


class Pump:
    """One shard, minimal: the stack on an AF_PACKET socket, Streams and an asyncio loop
    (what framework/shard/loop.py does per turn: frames in, events delivered, frames out)."""

    def __init__(self, sock, stack):
        self.sock = sock
        self.stack = stack
        sock.setblocking(False)
        self.loop = asyncio.new_event_loop()
        self.ctx = ShardContext(self.loop, 0, 1)
        self.streams = Streams(stack.tcp, self.ctx, {})
        self.ctx.bind(connector=self.streams.connector.create_connection)

    def turn(self):
        frames = []
        try:
            while len(frames) < 256:
                frames.append(self.sock.recv(70000))
        except BlockingIOError:
            pass
        now = self.loop.time()
        st = self.stack
        if frames:
            st.process(frames, now)
        ev = st.tcp.take_events()
        if ev:
            self.streams.deliver(ev)
        for f in st.dispatch(now):
            self.sock.send(f)
        self.loop.call_later(0.0005, self.turn)

    def run(self, coro, timeout=20):
        self.loop.call_soon(self.turn)
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def close(self):
        self.loop.close()


class TargetServer(threading.Thread):
    """A kernel TCP server in the target namespace: reads to EOF, answers the byte count."""

    def __init__(self, ns, port):
        super().__init__(daemon=True)
        self.ns, self.port = ns, port
        self.ready = threading.Event()
        self.error = None

    def run(self):
        try:
            netns.setns(self.ns)
            srv = socket.socket()
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind((TARGET, self.port))
            srv.listen(4)
            srv.settimeout(20)
            self.ready.set()
            c, _ = srv.accept()
            c.settimeout(20)
            n = 0
            while True:
                b = c.recv(65536)
                if not b:
                    break
                n += len(b)
            c.sendall(str(n).encode())
            c.close()
            srv.close()
        except Exception as e:          # reported by the test
            self.error = e
            self.ready.set()


@pytest.fixture
def routed(lab):
    """stack --- router --- target, the router with prohibit/unreachable routes and a
    1280-byte MTU towards the target."""
    ns_stack = lab.netns("fwis")
    ns_router = lab.netns("fwir")
    ns_target = lab.netns("fwit")
    ra, sb = lab.veth(ns_router, ns_stack)
    rb, tb = lab.veth(ns_router, ns_target)
    ip = netns.ip
    ip("addr", "add", NET_A + ".1/24", "dev", ra, netns=ns_router)
    ip("addr", "add", NET_B + ".1/24", "dev", rb, netns=ns_router)
    ip("link", "set", rb, "mtu", "1280", netns=ns_router)
    ip("addr", "add", TARGET + "/24", "dev", tb, netns=ns_target)
    for ifn, ns in ((ra, ns_router), (rb, ns_router), (sb, ns_stack), (tb, ns_target)):
        ip("link", "set", ifn, "up", netns=ns)
    ip("route", "add", "default", "via", NET_B + ".1", netns=ns_target)
    ip("route", "add", "prohibit", PROHIBITED + "/32", netns=ns_router)
    ip("route", "add", "unreachable", UNREACHABLE + "/32", netns=ns_router)
    netns.run_in(ns_router, ["sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
    sock = open_packet_socket(ns_stack, sb)
    stack = Stack(mac=STACK_MAC, ip=NET_A + ".2", prefix=24, gateway=NET_A + ".1")
    pump = Pump(sock, stack)
    try:
        yield pump, ns_target
    finally:
        pump.close()
        sock.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("dst, reason, errno_", [
    (PROHIBITED, "administratively prohibited", 113), (UNREACHABLE, "host unreachable", 113)])
def test_connect_through_router_fails_at_once(routed, dst, reason, errno_):
    pump, _ = routed

    async def main():
        t0 = pump.loop.time()
        try:
            await pump.ctx.open_connection(dst, 80, timeout=10)
        except OSError as e:
            return e, pump.loop.time() - t0
        raise AssertionError("connected")

    err, took = pump.run(main())
    assert err.errno == errno_ and reason in str(err), err
    c = pump.stack.counters
    assert c["tcp.icmp_unreachable"] == 1 and c["tcp.rto"] == 0   # no SYN sent twice
    assert took < 1.0                      # before the first SYN retransmission (1 s)
    assert pump.streams.outbound == {} and pump.stack.tcp.flows == {}


@pytest.mark.timeout(60)
def test_frag_needed_from_router_lowers_mss(routed):
    pump, ns_target = routed
    srv = TargetServer(ns_target, 9100)
    srv.start()
    srv.ready.wait(10)
    assert srv.error is None, srv.error
    data = bytes(range(256)) * 1200                      # 307,200 bytes

    async def main():
        conn = await pump.ctx.open_connection(TARGET, 9100, timeout=10)
        tcp_conn = next(iter(pump.stack.tcp.flows.values()))
        first = tcp_conn.mss                             # 1460 - options: the target's link is 1500
        conn.write(data)
        conn.write_eof()
        answer = await conn.read_until_eof()
        conn.close()
        return answer, first, tcp_conn.mss

    answer, first, mss = pump.run(main())
    srv.join(10)
    assert srv.error is None, srv.error
    assert answer == str(len(data)).encode()
    assert first in (1460, 1448) and mss == 1280 - 40 - (1460 - first)   # timestamps: 12 bytes
    assert pump.stack.counters["tcp.icmp_frag_needed"] >= 1
