"""A minimal stand-in for iputils ping, used only when the machine has no `ping`.

Supports what the tests use: -n -q -f -c COUNT -i INTERVAL -w DEADLINE -W TIMEOUT -s SIZE, and
prints iputils' reply lines and summary line, so the same parser reads both.
"""
import argparse
import os
import select
import socket
import struct
import sys
import time


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("-n", action="store_true")
    p.add_argument("-q", action="store_true")
    p.add_argument("-f", action="store_true")
    p.add_argument("-c", type=int, default=0)
    p.add_argument("-i", type=float, default=1.0)
    p.add_argument("-w", type=int, default=0)
    p.add_argument("-W", type=float, default=1.0)
    p.add_argument("-s", type=int, default=56)
    p.add_argument("dst")
    a = p.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    payload = bytes(i & 0xFF for i in range(a.s))
    sent, got, outstanding = 0, 0, {}
    start = time.monotonic()
    next_send = start
    interval = 0.01 if a.f else a.i
    while True:
        now = time.monotonic()
        if a.w and now - start >= a.w:
            break
        for seq, t in list(outstanding.items()):
            if now - t > a.W:
                del outstanding[seq]
        if a.c and sent >= a.c and not outstanding:
            break
        may_send = (not a.c or sent < a.c) and now >= next_send and not (a.f and outstanding)
        if may_send:
            sent += 1
            seq = sent & 0xFFFF
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            ck = checksum(hdr + payload)
            sock.sendto(struct.pack("!BBHHH", 8, 0, ck, ident, seq) + payload, (a.dst, 0))
            outstanding[seq] = now
            next_send = now + interval
        wait = max(0.0, min(next_send - now, 0.05)) if (not a.c or sent < a.c) else 0.05
        r, _, _ = select.select([sock], [], [], wait)
        if not r:
            continue
        data, addr = sock.recvfrom(65535)
        ihl = (data[0] & 15) * 4
        typ, _, _, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
        if typ != 0 or rid != ident or addr[0] != a.dst or rseq not in outstanding:
            continue
        rtt = (time.monotonic() - outstanding.pop(rseq)) * 1000
        got += 1
        if a.f:
            next_send = time.monotonic()
        if not a.q:
            print(f"{len(data) - ihl} bytes from {a.dst}: icmp_seq={rseq} ttl={data[8]} "
                  f"time={rtt:.3f} ms", flush=True)
    loss = 0 if not sent else round(100 * (sent - got) / sent)
    print(f"\n--- {a.dst} ping statistics ---")
    print(f"{sent} packets transmitted, {got} received, {loss}% packet loss, "
          f"time {int((time.monotonic() - start) * 1000)}ms", flush=True)
    return 0 if got else 1


if __name__ == "__main__":
    sys.exit(main())
