"""The stack against a real peer: the Linux kernel in a namespace of its own, over a
veth pair, through a plain AF_PACKET socket with PACKET_VNET_HDR (no framework port
code involved, so this checks only the protocol layers). Kernel ping must get its
replies; our own echo request must be resolved (ARP) and answered by the kernel.
Without iputils ping on the machine, tests/integration/pyping.py stands in for it."""
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from framework.master import netns
from framework.net.checksum import checksum
from framework.net.stack import Stack
from framework.net.wire.icmp import ECHO_REQUEST, ICMP_ECHO
from framework.net.wire.ipv4 import ip_to_int

SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
ETH_P_ALL = 3
PYPING = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "integration", "pyping.py")

STACK_IP = "198.18.0.2"
PEER_IP = "198.18.0.1"
STACK_MAC = "02:00:00:5e:10:02"


def open_packet_socket(ns, ifname):
    """An AF_PACKET socket inside ``ns`` (made in a helper thread: setns is per thread)."""
    box = {}

    def run():
        try:
            netns.setns(ns)
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            s.bind((ifname, 0))
            box["s"] = s
        except Exception as e:   # reported in the test's thread
            box["e"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["s"]


class Runner:
    """Drives a Stack from a socket in a background thread (the worker loop, minimal)."""

    def __init__(self, sock, stack):
        self.sock = sock
        self.stack = stack
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        s = self.sock
        s.settimeout(0.01)
        while not self.stop.is_set():
            frames = []
            try:
                frames.append(s.recv(70000))
                s.setblocking(False)
                while len(frames) < 64:
                    frames.append(s.recv(70000))
            except (socket.timeout, BlockingIOError):
                pass
            finally:
                s.settimeout(0.01)
            now = time.monotonic()
            with self.lock:
                if frames:
                    self.stack.process(frames, now)
                out = self.stack.dispatch(now)
            for f in out:
                s.send(f)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def peer_link(lab):
    ns_peer = lab.netns("fwnp")
    ns_stack = lab.netns("fwns")
    a, b = lab.veth(ns_peer, ns_stack)
    netns.ip("addr", "add", PEER_IP + "/24", "dev", a, netns=ns_peer)
    netns.ip("link", "set", a, "up", netns=ns_peer)
    netns.ip("link", "set", b, "up", netns=ns_stack)
    sock = open_packet_socket(ns_stack, b)
    try:
        yield ns_peer, a, sock
    finally:
        sock.close()


def ping_cmd():
    """iputils ping when the machine has it, else the stand-in pyping.py (as
    tests/integration/serve_helpers.py; FRAMEWORK_TEST_PYPING=1 forces the stand-in)."""
    p = shutil.which("ping")
    if p and not os.environ.get("FRAMEWORK_TEST_PYPING"):
        return [p]
    return [sys.executable, PYPING]


def wait_for(pred, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


@pytest.mark.timeout(60)
def test_kernel_peer_arp_and_ping(peer_link):
    ns_peer, ifname, sock = peer_link
    stack = Stack(mac=STACK_MAC, ip=STACK_IP, prefix=24)
    with Runner(sock, stack) as r:
        # 1. we speak first: ARP for the kernel, then an echo request it answers
        body = b"from the stack"
        req = ICMP_ECHO.pack(ECHO_REQUEST, 0, 0, 0x4242, 1) + body
        req = req[:2] + checksum(req).to_bytes(2, "big") + req[4:]
        with r.lock:
            stack.ip_output(ip_to_int(PEER_IP), 1, req)
        assert wait_for(lambda: stack.counters["icmp.rx_other"] >= 1), stack.counters
        c = stack.counters
        assert c["arp.tx_request"] >= 1 and c["arp.resolved"] == 1

        # 2. kernel ping, small and full-MTU (-w: without a deadline iputils ping waits
        # for the last reply only max(2 x max RTT, interval) once any reply came)
        for size in ("56", "1472"):
            cmd = ping_cmd() + ["-c", "5", "-i", "0.05", "-W", "2", "-w", "8", "-s", size, STACK_IP]
            p = netns.run_in(ns_peer, cmd, capture_output=True, text=True, timeout=20)
            assert p.returncode == 0, p.stdout + p.stderr
            assert " 5 received" in p.stdout, p.stdout
        neigh = netns.ip("neigh", "show", STACK_IP, netns=ns_peer)
        assert STACK_MAC in neigh.lower(), neigh

        # 3. a UDP datagram is counted as an unknown protocol, never answered
        netns.run_in(ns_peer, ["bash", "-c", f"echo hi > /dev/udp/{STACK_IP}/9"], check=True, timeout=5)
        assert wait_for(lambda: stack.counters["drop.ipv4.unknown_proto"] >= 1)

    c = stack.counters
    assert c["icmp.rx_echo_request"] == 10 and c["icmp.tx_echo_reply"] == 10
    assert c["drop.internal"] == 0
    # nothing malformed arrived from a real kernel (IPv6 noise may count as unknown type)
    bad = {k: v for k, v in c.items() if k.startswith("drop.") and v and k not in
           ("drop.eth.unknown_type", "drop.ipv4.unknown_proto", "drop.ipv4.broadcast")}
    assert bad == {}, bad
