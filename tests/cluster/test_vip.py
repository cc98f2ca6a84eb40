"""--vip on both stacks, one node and one client, no routing daemon: the client routes the
VIP via the node's address; the node answers on the VIP (and on its own address), from
the VIP, with --health-path; the kernel stack's VIP goes on lo for the run only."""
import os
import signal
import socket
import subprocess
import sys

import pytest

from framework.nic.nsenter import netns as in_netns

from .topology import ROOT, sh, wait_until

VIP = "198.19.252.1"
KERNEL_IP = "198.18.252.2"      # the node's kernel (and --stack kernel's --ip)
USER_IP = "198.18.252.3"        # --stack user's own address
CLIENT_IP = "198.18.252.1"


@pytest.fixture
def pair():
    if os.geteuid() != 0:
        pytest.fail("needs root (CI runs as root)")
    tag = f"fwvip{os.getpid()}"
    client, node = tag + "c", tag + "n"
    made = []
    try:
        for ns in (client, node):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "eth0", "netns", client, "type", "veth", "peer", "name", "eth0",
           "netns", node)
        sh("ip", "-n", client, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        sh("ip", "-n", node, "addr", "add", f"{KERNEL_IP}/24", "dev", "eth0")
        for ns in (client, node):
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        yield client, node
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        left = set(sh("ip", "netns", "list").split()) & set(made)
        assert not left, left


def get(ns, addr, path):
    with in_netns(ns):
        s = socket.create_connection((addr, 8080), timeout=2)
    with s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        local = s.getpeername()[0]
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(), local


@pytest.mark.parametrize("stack", ["kernel", "user"])
def test_vip_answered_on_both_stacks(pair, stack):
    client, node = pair
    ip = KERNEL_IP if stack == "kernel" else USER_IP
    sh("ip", "-n", client, "route", "add", f"{VIP}/32", "via", ip)
    p = subprocess.Popen(["ip", "netns", "exec", node, sys.executable, "-m", "framework",
                          "serve", "tests/cluster/nodeapp.py:app", "--stack", stack,
                          "--iface", "eth0", "--ip", f"{ip}/24", "--vip", VIP,
                          "--health-path", "/healthz", "--graceful-timeout", "2"],
                         cwd=ROOT, env={**os.environ, "CLUSTER_NODE": "solo", "PYTHONPATH": ROOT},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        def answered():
            try:
                return get(client, VIP, "/")
            except OSError:
                return None
        status, body, peer = wait_until("the VIP to answer", answered, timeout=20.0, interval=0.1)
        assert (status, body, peer) == (200, "solo", VIP)
        assert get(client, VIP, "/healthz")[:2] == (200, "ok\n")
        assert get(client, ip, "/")[:2] == (200, "solo")           # its own address too
        on_lo = VIP in sh("ip", "-n", node, "-4", "addr", "show", "dev", "lo")
        assert on_lo == (stack == "kernel")        # the user stack needs no kernel address
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0, p.stderr.read()
        assert VIP not in sh("ip", "-n", node, "-4", "addr", "show", "dev", "lo")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
