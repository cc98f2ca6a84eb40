"""Zero-downtime reload: wrk (keep-alive and Connection: close, -c50) against two workers
while three HUPs (each importing the app afresh) and --max-requests recycles happen, on
both stacks and both port types (AF_PACKET: two readers of a queue; TAP: one reader at a
time, the new worker handing the old one its flows' segments): no socket error, no non-2xx, and every request answered by the code that
was current: the app's import generation (genapp.py) never goes back on a shard, and
after a reload has finished every request gets the new one.

The load is paced (wrk's delay(): 50 connections, a few ms between requests each) so
the recycles come every second or two whatever the machine's speed."""
import http.client
import os
import re
import socket
import struct
import subprocess
import threading
import time

import pytest

from bench import apt
from framework.nic.steer import shard_of

from .test_serve import ip_int

WRK_SECONDS = 9
HUPS = 3
MAX_REQUESTS = 2500

PACED = """
wrk.headers["Connection"] = {close}
function delay() return 5 end
"""


class Checker(threading.Thread):
    """Sequential requests, a new connection each: (sent, shard, generation) per answer,
    and the errors."""

    def __init__(self, ip, host_ip, port=8080):
        super().__init__(daemon=True)
        self.ip, self.host_ip, self.port = ip, host_ip, port
        self.answers = []
        self.errors = []
        self.slowest_connect = 0.0
        self.syn_retransmits = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            sent = time.monotonic()
            c = http.client.HTTPConnection(self.ip, self.port, timeout=5)
            try:
                c.connect()
                self.slowest_connect = max(self.slowest_connect, time.monotonic() - sent)
                self.syn_retransmits += syn_retransmits(c.sock)
                sport = c.sock.getsockname()[1]
                c.request("GET", "/")
                r = c.getresponse()
                body = r.read()
                gen = r.getheader("X-Generation")
                if r.status != 200 or body.decode() != gen:
                    self.errors.append(f"{r.status} {gen!r} {body[:60]!r}")
                shard = shard_of(ip_int(self.host_ip), ip_int(self.ip), sport, self.port, 2)
                self.answers.append((sent, shard, int(gen)))
            except (OSError, http.client.HTTPException) as e:
                self.errors.append(repr(e))
            finally:
                c.close()
            time.sleep(0.002)


def syn_retransmits(sock):
    """Retransmissions of a socket that just connected (tcp_info.tcpi_total_retrans): the
    SYNs nobody answered."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("I", info, 100)[0]


def wrk_errors(out):
    """Socket errors and non-2xx responses wrk reports (it prints the lines only when
    there are any)."""
    errs = {}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errs.update(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errs["non-2xx"] = int(m.group(1))
    return {k: v for k, v in errs.items() if v}


def count(s, text):
    return s.stderr().count(text)


def wait_for(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("close", [False, True], ids=["keepalive", "close"])
@pytest.mark.parametrize("stack,port_type", [("user", "afpacket"), ("user", "tap"),
                                             ("user", "tap-kernel-steering"), ("kernel", None)],
                         ids=["user-afpacket", "user-tap", "user-tap-fwd", "kernel"])
def test_hup_and_max_requests_lose_nothing(serve, tmp_path, stack, port_type, close):
    """``tap-kernel-steering``: the kernel's own TAP flow hash (as without bpf() rights),
    so frames of every flow also arrive through the other shard's forwarding ring."""
    env = {"FW_GENERATION_FILE": str(tmp_path / "generation")}
    if port_type == "tap-kernel-steering":
        port_type = "tap"
        env["FRAMEWORK_TAP_STEERING"] = "kernel"
    wrk = apt.ensure("wrk")
    gen_file = tmp_path / "generation"
    gen_file.write_text("1")
    script = tmp_path / "paced.lua"
    script.write_text(PACED.format(close='"close"' if close else '"keep-alive"'))
    s = serve("genapp:app", cores=2,
              extra=("--stack", stack, "--max-requests", str(MAX_REQUESTS),
                     "--max-requests-jitter", "500", "--graceful-timeout", "10")
              + (("--port-type", port_type) if port_type else ()),
              env=env)
    url = f"http://{s.ip}:8080/"
    load = subprocess.Popen([wrk, "-t1", "-c50", f"-d{WRK_SECONDS}s", "--timeout", "3s",
                             "-s", str(script), url],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checker = Checker(s.ip, s.host_ip)
    checker.start()
    try:
        time.sleep(1.5)
        reloads = []            # (HUP sent, reload finished, new generation)
        for gen in range(2, 2 + HUPS):
            before = count(s, "SIGHUP: every worker replaced")
            gen_file.write_text(str(gen))
            sent = time.monotonic()
            os.kill(s.pid, 1)
            wait_for(lambda: count(s, "SIGHUP: every worker replaced") > before, 30,
                     f"reload to generation {gen}\n{s.stderr()[-3000:]}")
            reloads.append((sent, time.monotonic(), gen))
        out, _ = load.communicate(timeout=WRK_SECONDS + 30)
    finally:
        checker.stop.set()
        checker.join(10)
        if load.poll() is None:
            load.kill()
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    recycles = count(s, "(--max-requests); recycling")
    print(f"\n{stack} {port_type or ''} {'close' if close else 'keep-alive'}: wrk {requests} requests, "
          f"{recycles} max-requests recycles, checker {len(checker.answers)} requests, "
          f"slowest connect {checker.slowest_connect * 1000:.1f} ms, SYN retransmissions "
          f"{checker.syn_retransmits}\n{out}")
    assert wrk_errors(out) == {}, out
    assert requests > 1000, out
    assert recycles >= 1, s.stderr()[-3000:]
    assert checker.errors == [], checker.errors[:5]
    # every SYN was answered the first time: none fell between the two workers
    assert checker.syn_retransmits == 0
    # generations: never back on a shard (the user stack's: shard_of tells which; the
    # kernel's SO_REUSEPORT group spreads by a hash of its own); from a reload's end on,
    # only the new one
    last = {}
    for sent, shard, gen in checker.answers:
        if stack == "user":
            assert gen >= last.get(shard, 1), (shard, gen, last)
        last[shard] = max(gen, last.get(shard, 1))
        for hup_sent, done, new in reloads:
            if sent < hup_sent:
                assert gen < new, (sent, gen, reloads)
            if sent > done:
                assert gen >= new, (sent, gen, reloads)
    assert set(last.values()) == {1 + HUPS}, last
    assert s.proc.poll() is None, s.stderr()[-2000:]
    if port_type == "tap":
        # the handovers took their turns on the queue (not the stop-first replacement)
        assert count(s, "handed over to pid") >= 2 * HUPS, s.stderr()[-3000:]
