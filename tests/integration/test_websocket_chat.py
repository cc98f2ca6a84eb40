"""examples/websocket_chat.py as its docstring runs it (`framework serve ... --cores 2`),
on both stacks: what one member says reaches every member of the room, on both shards
(on the user stack the clients' source ports are picked so that both shards have
members: steering is framework.nic.steer.shard_of; the kernel's SO_REUSEPORT spreads
them its own way)."""
import asyncio
import ipaddress
import os
import socket

import pytest
from websockets.asyncio.client import connect

from framework.nic.steer import shard_of

from .serve_helpers import ROOT

EXAMPLE = os.path.join(ROOT, "examples", "websocket_chat.py") + ":app"


def bound_socket(src_ip, dst_ip, port, shard, n):
    """A TCP socket bound to a source port the server steers to ``shard``."""
    a, b = int(ipaddress.IPv4Address(src_ip)), int(ipaddress.IPv4Address(dst_ip))
    for sport in range(41000, 60000):
        if shard is not None and shard_of(a, b, sport, port, n) != shard:
            continue
        s = socket.socket()
        try:
            s.bind((src_ip, sport))
        except OSError:
            s.close()
            continue
        s.settimeout(5)
        s.connect((dst_ip, port))
        s.setblocking(False)
        return s
    raise RuntimeError("no source port")


@pytest.mark.parametrize("stack", ["user", "kernel"])
def test_chat_reaches_every_member_on_every_shard(serve, stack):
    s = serve(app=EXAMPLE, cores=2, extra=("--stack", stack))
    s.wait_workers(2)
    url = f"ws://{s.ip}:8080/chat/room1"
    shards = [0, 1, 0, 1] if stack == "user" else [None] * 4

    async def go():
        clients = []
        for k in shards:
            sock = bound_socket(s.host_ip, s.ip, 8080, k, 2)
            clients.append(await connect(url, sock=sock, proxy=None))
        try:
            welcome = [await c.recv() for c in clients]
            await clients[0].send("/nick alice")
            await clients[3].send("hello from the last one")
            seen = []
            for c in clients:
                lines = []
                while not ("hello from the last one" in " ".join(lines)
                           and "is now alice" in " ".join(lines)):
                    lines.append(await asyncio.wait_for(c.recv(), 5))
                seen.append(lines)
            return welcome, seen
        finally:
            for c in clients:
                await c.close()

    welcome, seen = asyncio.run(asyncio.wait_for(go(), 30))
    assert all(w.startswith("* welcome to room1") for w in welcome)
    if stack == "user":
        assert [w.endswith(f"(shard {k})") for w, k in zip(welcome, shards)] == [True] * 4
    for lines in seen:
        assert any(line.endswith(": hello from the last one") for line in lines)
        assert any(line.endswith("is now alice") for line in lines)
