"""The same requests on both stacks get the same bytes back (issue 4: "Responses are
identical byte for byte"), and the connection ends the same way (FIN or RST).

Each script is sent to a server on the kernel stack and to one on the user stack (each
in its own pair of namespaces, same addresses); what comes back until the server closes
is compared raw, with only the Date header's value normalised.
"""
import re
import socket
import time

from .conftest import SERVER_IP, TESTAPP, Net
from .servers import connect, start_server

CLOSE = b"GET /seq/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

# a script: bytes to send, ("wait", marker) until the reply contains marker,
# ("sleep", s), ("shut_wr",); afterwards everything is read until the server closes
SCRIPTS = {
    "routes and errors, pipelined": [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
        b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /teapot HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /redirect HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /seq/7?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /info?a=1&b=x%20y&a=2 HTTP/1.1\r\nHost: x\r\nUser-Agent: same\r\nX-Test: yes\r\n\r\n"
        + CLOSE],
    "bodies": [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
        b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        b"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"u" * 100000 + CLOSE],
    "streamed response": [b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", ("sleep", 0.3), CLOSE],
    "big responses": [b"GET /bigsync?size=300000 HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /big?n=4 HTTP/1.1\r\nHost: x\r\n\r\n" + CLOSE],
    "100-continue": [b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
                     ("wait", b"100 Continue\r\n\r\n"), b"abcde", CLOSE],
    "http/1.0": [b"GET / HTTP/1.0\r\n\r\n"],
    "http/1.0 streamed (body ends at close)": [b"GET /stream HTTP/1.0\r\n\r\n"],
    "http/1.0 keep-alive": [b"GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                            ("wait", b"}"), b"GET / HTTP/1.0\r\n\r\n"],
    "connection close mid-pipeline": [b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                      b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n"],
    "400 malformed": [b"GARBAGE\x01 / HTTP/1.1\r\nHost: x\r\n\r\n"],
    "431 header block": [b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"],
    "431 never finished": [b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000],
    "413 body": [b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n" + b"y" * 200000],
    "408 slowloris": [b"GET / HTTP/1.1\r\nHost: x\r\n", ("sleep", 0.25), b"X-a: b\r\n"],
    "idle keep-alive timeout": [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"],
    # the Connection: close request is among those queued while reading is paused (16
    # queued), and more arrives meanwhile: the close happens with unread input
    "close while reading is paused": [
        b"GET /slow/1?t=0.3 HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"".join(b"GET /seq/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(15))
        + b"GET /seq/c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ("sleep", 0.1), b"GET /seq/after HTTP/1.1\r\nHost: x\r\n\r\n"],
    # the FIN comes right behind the body: the kernel reports it on a later recv(), so
    # the handler answers first ("Connection: close" is not in the response)
    "body then half-close": [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n" + b"v" * 60000,
        ("shut_wr",)],
    "async handler, then FIN": [b"GET /big?n=1 HTTP/1.1\r\nHost: x\r\n\r\n", ("shut_wr",)],
    "413 before 100-continue": [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\nExpect: 100-continue\r\n\r\n"],
    "half-close after pipelined requests": [
        b"".join(b"GET /seq/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)), ("shut_wr",)],
}

# the raw TCP echo (StreamHandler on port 8007)
ECHO_SCRIPTS = {
    "echo, then half-close": [b"hello\n" * 1000, ("wait", b"hello\n" * 1000),
                              b"x" * 200000, ("shut_wr",)],
}

_DATE = re.compile(rb"\r\nDate: [^\r\n]*\r\n")


def normalise(data):
    return _DATE.sub(b"\r\nDate: <date>\r\n", data)


def run_script(ns, steps, timeout=5.0, port=8080):
    """Returns (bytes received, how the server ended it: "fin" | "rst" | "open")."""
    s = connect(ns, SERVER_IP, port)
    s.settimeout(timeout)
    got = bytearray()
    try:
        for step in steps:
            if isinstance(step, bytes):
                s.sendall(step)
            elif step[0] == "sleep":
                time.sleep(step[1])
            elif step[0] == "shut_wr":
                s.shutdown(socket.SHUT_WR)
            elif step[0] == "wait":
                while step[1] not in got:
                    b = s.recv(65536)
                    assert b, f"closed while waiting for {step[1]!r}"
                    got += b
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(1 << 20)
            except ConnectionResetError:
                return bytes(got), "rst"
            except socket.timeout:
                break
            if not b:
                return bytes(got), "fin"
            got += b
        return bytes(got), "open"
    finally:
        s.close()


def test_same_bytes_on_both_stacks(lab):
    nets = {stack: Net(lab, kernel_ip=stack == "kernel") for stack in ("kernel", "user")}
    handles = {}
    try:
        for stack, net in nets.items():
            handles[stack] = start_server(stack, TESTAPP, net.server_ns, SERVER_IP, 8080,
                                          ifname=net.server_if)
        results = {}
        for stack in ("kernel", "user"):
            ns = nets[stack].client_ns
            results[stack] = {name: run_script(ns, steps) for name, steps in SCRIPTS.items()}
            results[stack].update((name, run_script(ns, steps, port=8007))
                                  for name, steps in ECHO_SCRIPTS.items())
    finally:
        for h in handles.values():
            h.stop()
    diffs = []
    for name in [*SCRIPTS, *ECHO_SCRIPTS]:
        (kb, kend), (ub, uend) = results["kernel"][name], results["user"][name]
        assert kb, f"{name}: no response from the kernel stack"
        if normalise(kb) != normalise(ub) or kend != uend:
            diffs.append(f"{name}: kernel {len(kb)} B, {kend}; user {len(ub)} B, {uend}\n"
                         f"  kernel: {normalise(kb)[:300]!r}\n  user:   {normalise(ub)[:300]!r}")
    assert not diffs, "the stacks answered differently:\n" + "\n".join(diffs)
