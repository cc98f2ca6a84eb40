"""Client side of the Linux-peer tests, run inside the client namespace
(``ip netns exec NS python peer_client.py SPEC_JSON``); prints a JSON result."""
import hashlib
import json
import random
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from linux_peer import ECHO, SHUT_FIRST, SINK, SOURCE, STACK_IP, pattern  # noqa: E402


def recv_all(s):
    chunks = []
    while True:
        b = s.recv(1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def echo_one(i, size, mode):
    """mode: short (send, half-close, read echo), long (several writes with pauses),
    half (we half-close first and keep reading)."""
    data = pattern(size, seed=i)
    s = socket.create_connection((STACK_IP, ECHO), timeout=60)
    try:
        if mode == "long":
            step = max(size // 4, 1)
            for k in range(0, size, step):
                s.sendall(data[k:k + step])
                time.sleep(0.01)
        else:
            s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s)
    finally:
        s.close()
    return hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest(), len(got)


def shut_first(i, size):
    """The server greets and half-closes first; we read to EOF, then send and close."""
    data = pattern(size, seed=5000 + i)
    s = socket.create_connection((STACK_IP, SHUT_FIRST), timeout=60)
    try:
        greeting = recv_all(s)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        rest = recv_all(s)
    finally:
        s.close()
    return greeting == b"hello\n" and rest == b"", hashlib.sha256(data).hexdigest()


def upload(size):
    data = pattern(size, seed=7)
    s = socket.create_connection((STACK_IP, SINK), timeout=120)
    t0 = time.monotonic()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    digest = recv_all(s).decode()
    dt = time.monotonic() - t0
    s.close()
    return digest == hashlib.sha256(data).hexdigest(), dt


def download(size):
    s = socket.create_connection((STACK_IP, SOURCE), timeout=120)
    t0 = time.monotonic()
    s.sendall(b"%d\n" % size)
    got = recv_all(s)
    dt = time.monotonic() - t0
    s.close()
    return hashlib.sha256(got).digest() == hashlib.sha256(pattern(size, seed=size)).digest(), dt


def main():
    spec = json.loads(sys.argv[1])
    out = {}
    if spec.get("conns"):
        n, par = spec["conns"], spec.get("parallel", 50)
        rng = random.Random(1)
        jobs = [(i, rng.choice([0, 1, 100, 1460, 5000, 30000, 100000]),
                 ("short", "long", "half")[i % 3]) for i in range(n)]
        t0 = time.monotonic()
        with ThreadPoolExecutor(par) as ex:
            res = list(ex.map(lambda j: echo_one(*j), jobs))
        out["conns_ok"] = sum(1 for ok, _ in res if ok)
        out["conns_time"] = time.monotonic() - t0
        out["conns_bytes"] = sum(n for _, n in res)
    if spec.get("shut_first"):
        res = [shut_first(i, 20000 * i) for i in range(spec["shut_first"])]
        out["shut_first_ok"] = all(ok for ok, _ in res)
        out["shut_first_digests"] = [d for _, d in res]
    if spec.get("upload"):
        ok, dt = upload(spec["upload"])
        out["upload_ok"], out["upload_s"] = ok, dt
    if spec.get("download"):
        ok, dt = download(spec["download"])
        out["download_ok"], out["download_s"] = ok, dt
    print(json.dumps(out))


if __name__ == "__main__":
    main()
