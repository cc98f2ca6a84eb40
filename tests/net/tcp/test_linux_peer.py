"""The TCP stack against the Linux kernel's TCP: Stack + TcpLayer over an AF_PACKET port
in a namespace with no kernel address, Python socket clients in another namespace joined
by a veth. Data is checked by sha256. The fault test injects seeded loss, duplication,
reordering and delay in both directions at the stack's port (no netem on this kernel).

The clean run uses the issue's sizes (1,000 connections, 50 MB each way, curl fetching
1 MiB). The fault run is scaled down (60 connections, 2 MB each way): without SACK a lost
64 KB GSO frame is recovered one MSS per RTT (NewReno), so lossy bulk transfers are slow."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from framework import netns
from framework.net.tcp import TcpConfig
from framework.nic.afpacket import AfPacketPort

from .linux_peer import HTTP_BODY, PEER_IP, STACK_IP, FaultPort, StackRunner, pattern

CLIENT = os.path.join(os.path.dirname(__file__), "peer_client.py")


@pytest.fixture
def link(lab):
    ns_cli = lab.netns("fwtc")
    ns_stack = lab.netns("fwts")
    a, b = lab.veth(ns_cli, ns_stack, prefix="ft")
    netns.ip("addr", "add", PEER_IP + "/24", "dev", a, netns=ns_cli)
    netns.ip("link", "set", a, "up", netns=ns_cli)
    netns.ip("link", "set", b, "up", netns=ns_stack)
    return ns_cli, a, ns_stack, b


def run_client(ns, spec, timeout=120):
    p = netns.run_in(ns, [sys.executable, CLIENT, json.dumps(spec)], capture_output=True,
                     text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def _check(runner):
    assert runner.error is None, runner.error
    assert runner.apps.errors == [], runner.apps.errors[:5]


@pytest.mark.timeout(120)
def test_linux_peer_many_connections_and_bulk(link):
    ns_cli, a, ns_stack, b = link
    port = AfPacketPort(b, netns=ns_stack)
    try:
        with StackRunner(port) as r:
            res = run_client(ns_cli, {"conns": 1000, "parallel": 50, "upload": 50_000_000,
                                      "download": 50_000_000})
            got = netns.run_in(ns_cli, ["curl", "-sS", "--max-time", "30", "-o", "-",
                                        f"http://{STACK_IP}/file"], capture_output=True, timeout=40)
        _check(r)
    finally:
        port.close()
    print("\n", res, {k: v for k, v in r.tcp.counters.items() if v})
    assert res["conns_ok"] == 1000
    assert res["upload_ok"] and res["download_ok"]
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256(got.stdout).digest() == hashlib.sha256(pattern(HTTP_BODY, 80)).digest()
    assert r.apps.accepted == 1003


@pytest.mark.timeout(120)
def test_linux_peer_with_faults(link):
    ns_cli, a, ns_stack, b = link
    port = FaultPort(AfPacketPort(b, netns=ns_stack), seed=5, loss=0.05, dup=0.01,
                     reorder=0.25, delay=0.005)
    try:
        with StackRunner(port, TcpConfig(time_wait=1.0)) as r:
            res = run_client(ns_cli, {"conns": 60, "parallel": 20, "upload": 2_000_000,
                                      "download": 2_000_000})
        _check(r)
    finally:
        port.close()
    print("\n", res, port.stats, {k: v for k, v in r.tcp.counters.items() if v})
    assert res["conns_ok"] == 60
    assert res["upload_ok"] and res["download_ok"]
    assert port.stats["lost"] > 50 and port.stats["reordered"] > 100
    assert r.tcp.counters["tcp.retransmits"] > 0
