"""Outbound connections from a shard (framework/shard/connect.py, reached through
``ctx.open_connection``) through Streams and a user-level stack, against a second stack
over an in-memory wire."""
import pytest

from framework.context import ShardContext
from framework.nic import memory
from framework.nic.steer import shard_of
from framework.net.stack import Stack
from framework.shard.streams import Streams
from framework.vtime import VirtualClockLoop

A, B = "198.18.9.1", "198.18.9.2"


_rigs = []


@pytest.fixture(autouse=True)
def _close_rigs():
    """The in-memory wire's descriptors are closed after each test (a long session must
    not accumulate them: forked servers in later tests inherit every open fd)."""
    yield
    while _rigs:
        rig = _rigs.pop()
        rig.pa.close()
        rig.pb.close()
        rig.loop.close()


def ip_int(s):
    return int.from_bytes(bytes(map(int, s.split("."))), "big")


class Rig:
    """Client shard k of n (Stack + Streams + an asyncio loop on a virtual clock) <-> a
    server Stack that echoes upper-cased data on port 7 and closes after ``bye``."""

    def __init__(self, shard=0, n=1):
        self.pa, self.pb = memory.pair()
        _rigs.append(self)
        self.client = Stack(mac=b"\x02\0\0\0\0\x01", ip=A, prefix=24)
        self.server = Stack(mac=b"\x02\0\0\0\0\x02", ip=B, prefix=24)
        self.server.tcp.listen(7)
        self.loop = VirtualClockLoop(start=100.0)
        self.ctx = ShardContext(self.loop, shard, n)
        self.streams = Streams(self.client.tcp, self.ctx, {})
        # what a shard loop does at attach: ctx.open_connection goes through this stack
        self.ctx.bind(connector=self.streams.connector.create_connection)
        self.server_alive = True

    def turn(self):
        self.loop.advance(0.002)          # the clock moves on; due timers fire
        self.now = self.loop.time()
        self.client.process(self.pa.rx_burst(), self.now)
        ev = self.client.tcp.events[:]
        del self.client.tcp.events[:]
        self.streams.deliver(ev)
        self.loop.run_ready()
        self.pa.tx_burst(self.client.dispatch(self.now))
        frames = self.pb.rx_burst()
        if self.server_alive:
            self.server.process(frames, self.now)
            for kind, c in self.server.tcp.events[:]:
                data = c.recv() if c.state is not None else b""
                if data:
                    c.send(data.upper())
                    if b"bye" in data:
                        c.close()
            del self.server.tcp.events[:]
            self.pb.tx_burst(self.server.dispatch(self.now))

    def run(self, task, turns=3000):
        t = self.loop.create_task(task)
        for _ in range(turns):
            self.turn()
            if t.done():
                return t.result()
        raise AssertionError("task did not finish")


def test_echo_over_an_outbound_connection():
    rig = Rig()

    async def main():
        conn = await rig.ctx.open_connection(B, 7)
        assert conn.get_extra_info("peername") == (B, 7)
        conn.write(b"hello\n")
        line = await conn.readuntil(b"\n")
        conn.write(b"bye")
        rest = await conn.read_until_eof()
        conn.close()
        return line, rest

    assert rig.run(main()) == (b"HELLO\n", b"BYE")
    assert rig.streams.connector.counters["connect.started"] == 1
    assert rig.streams.accepted == 0          # outbound connections are not accepts


def test_refused_and_timeout():
    rig = Rig()

    async def refused():
        try:
            await rig.ctx.open_connection(B, 8)   # nobody listens: RST
        except ConnectionRefusedError as e:
            return "refused", str(e)

    assert rig.run(refused())[0] == "refused"
    rig.server_alive = False

    async def silent():
        try:
            await rig.ctx.open_connection(B, 7, timeout=0.5)
        except TimeoutError as e:
            return str(e)

    assert "timed out after 0.5 s" in rig.run(silent())
    assert rig.streams.connector.counters["connect.failed"] == 2
    assert rig.streams.outbound == {}


@pytest.mark.parametrize("shard,n", [(0, 2), (1, 2), (2, 4)])
def test_source_port_steers_back_to_the_caller(shard, n):
    rig = Rig(shard, n)
    ports = []

    async def main():
        for _ in range(20):
            conn = await rig.ctx.open_connection(B, 7)
            ports.append(conn.get_extra_info("sockname")[1])
            conn.write(b"bye")
            await conn.read_until_eof()
            conn.close()

    rig.run(main(), turns=20000)
    assert len(set(ports)) == 20
    for p in ports:
        # the reply's 4-tuple (server -> us) hashes to the calling shard
        assert shard_of(ip_int(B), ip_int(A), 7, p, n) == shard
