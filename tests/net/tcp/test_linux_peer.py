"""The TCP stack against the Linux kernel's TCP: Stack + TcpLayer over an AF_PACKET port
in a namespace with no kernel address, Python socket clients in another namespace joined
by a veth. Data is checked by sha256. The fault test injects seeded loss, duplication,
reordering and delay in both directions at the stack's port (no netem on this kernel).

The clean run uses the issue's sizes (1,000 connections, 50 MB each way, an HTTP GET of
1 MiB as curl did). The fault run is scaled down (200 connections, 5 MB each way) to keep
this area under a minute: the injector loses whole 64 KB GSO frames (5% of frames, both
ways), and at 5% loss and a ~12 ms RTT a Reno-style sender moves only ~1 MB/s."""
import hashlib
import ipaddress
import json
import os
import subprocess
import sys
import time

import pytest

from framework.master import netns
from framework.net.tcp import TcpConfig
from framework.nic.afpacket import AfPacketPort

from .linux_peer import ECHO_SERVER, HTTP_BODY, PEER_IP, STACK_IP, FaultPort, StackRunner, pattern

CLIENT = os.path.join(os.path.dirname(__file__), "peer_client.py")
# what ``curl -sS --max-time 30 -o - URL`` did, with no curl binary: GET on a fresh
# connection, the body to stdout; exit status 1 if the transfer fails or the body is
# shorter than its Content-Length (http.client raises IncompleteRead)
FETCH = """
import http.client, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
c.request("GET", u.path or "/", headers={"User-Agent": "fetch/1", "Accept": "*/*"})
sys.stdout.buffer.write(c.getresponse().read())
"""


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
            got = netns.run_in(ns_cli, [sys.executable, "-c", FETCH, f"http://{STACK_IP}/file"],
                               capture_output=True, timeout=40)
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
            res = run_client(ns_cli, {"conns": 200, "parallel": 50, "upload": 5_000_000,
                                      "download": 5_000_000})
        _check(r)
    finally:
        port.close()
    print("\n", res, port.stats, {k: v for k, v in r.tcp.counters.items() if v})
    assert res["conns_ok"] == 200
    assert res["upload_ok"] and res["download_ok"]
    assert port.stats["lost"] > 50 and port.stats["reordered"] > 100
    assert r.tcp.counters["tcp.retransmits"] > 0




@pytest.mark.timeout(120)
def test_linux_peer_active_open_and_server_half_close(link):
    """Our connect() against a Linux listener (data both ways, we half-close first and keep
    reading), and a listener of ours that half-closes before the client has sent anything."""
    ns_cli, a, ns_stack, b = link
    srv = subprocess.Popen(["ip", "netns", "exec", ns_cli, sys.executable, "-c", ECHO_SERVER,
                            PEER_IP, "7007"], stdout=subprocess.PIPE, text=True)
    port = AfPacketPort(b, netns=ns_stack)
    try:
        assert srv.stdout.readline().strip() == "ready"
        with StackRunner(port) as r:
            dst = int(ipaddress.IPv4Address(PEER_IP))
            r.call(lambda now: r.apps.start_clients(now, 20, 300_000, dst, 7007))
            res = run_client(ns_cli, {"shut_first": 10})
            deadline = time.monotonic() + 30
            while len(r.apps.client_results) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
        _check(r)
    finally:
        port.close()
        srv.kill()
        srv.wait()
    assert r.apps.client_results == [(True, 300_000)] * 20
    assert res["shut_first_ok"]
    assert sorted(res["shut_first_digests"]) == sorted(r.apps.shut_first_digests)
    assert r.tcp.counters["tcp.active_opens"] == 20


@pytest.mark.timeout(60)
def test_linux_peer_syn_cookies(link):
    """A listener with a SYN queue of 2 against 50 parallel Linux clients: the overflow is
    answered with SYN cookies (WS/SACK carried in the timestamps) and every connection works."""
    ns_cli, a, ns_stack, b = link
    port = AfPacketPort(b, netns=ns_stack)
    try:
        with StackRunner(port, syn_backlog=2) as r:
            res = run_client(ns_cli, {"conns": 200, "parallel": 50})
        _check(r)
    finally:
        port.close()
    assert res["conns_ok"] == 200
    c = r.tcp.counters
    assert c["tcp.syncookies_sent"] > 0 and c["tcp.syncookies_ok"] > 0
