"""Loss recovery against Linux's (not a test): the same request/response bodies through the
same seeded fault-injecting relay, served once by our Stack + TcpLayer and once by Linux's
TCP; prints both times and their ratio.

    python -m bench.lossy [--rounds 3] [--bodies 150] [--parallel 8] [--seed 1]

Topology (per run, built and removed again):

    client ns (Linux TCP, 8 threads) --veth-- relay ns --veth-- server ns

The relay is a separate process with an AF_PACKET socket on each of its two veth ends; it
forwards every frame the other way, and TCP frames through seeded faults in both directions
(5% loss, 1% duplication, 25% reordered by up to 4 ms extra, 0.1% corrupted, 5 ms delay;
FaultPort's rules plus corruption). There is no netem on this kernel, and a relay in user
space lets both stacks cross the very same path. The server namespace holds either our
stack (AF_PACKET port, no kernel address) or a Linux echo server on a kernel address.

GSO is off on both senders (``gso_max_segs 1`` on the Linux ends, ``gso=False`` on our
port): loss hits MTU-sized frames, as on a wire, and not whole 64 KB GSO frames. The relay
finishes the checksum of frames that leave with a partial one, so a corrupted frame is
caught by the receiver's checksum check.

Each body (150 seeded sizes, log-uniform from 1 KB to 1 MB) is one connection: the client
sends it, half-closes and reads the echo, checked by sha256. Rounds alternate the two
servers; the report gives the median of each and the ratio of the medians.

Both servers run the same congestion control: by default the Linux server's (the system's,
bbr on a kernel built with CONFIG_DEFAULT_TCP_CONG="bbr"), ours set to match (``--cc``).
Under 5% random loss a loss-based window (NewReno, CUBIC) settles near the Mathis bound of
a few segments while BBR's does not, so comparing across the two measures the algorithm,
not the recovery. ``--trace`` prints the relay's view of each direction (bench.lossy_trace).
"""
import argparse
import heapq
import json
import os
import random
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import textwrap
import time

RELAY_IPS = ("198.18.0.1", "198.18.0.2")   # client, server (tests.net.tcp.linux_peer's)
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_STATISTICS = 6
_STATS = struct.Struct("II")     # tpacket_stats: packets, drops
VNET_LEN = 10
ZERO_VNET = bytes(VNET_LEN)


# --------------------------------------------------------------------------- the relay
class FaultRules:
    """FaultPort's seeded rules (tests/net/tcp/linux_peer.py) for one direction, plus
    corruption: returns the (delay, frame) copies to forward for one TCP frame."""

    def __init__(self, rng, loss=0.05, dup=0.01, reorder=0.25, delay=0.005,
                 reorder_extra=0.004, corrupt=0.001):
        self.rng = rng
        self.loss, self.dup, self.reorder, self.corrupt = loss, dup, reorder, corrupt
        self.delay, self.reorder_extra = delay, reorder_extra
        self.stats = {"frames": 0, "lost": 0, "dup": 0, "reordered": 0, "corrupted": 0}

    def apply(self, frame):
        rng = self.rng
        st = self.stats
        st["frames"] += 1
        if rng.random() < self.loss:
            st["lost"] += 1
            return ()
        copies = 2 if rng.random() < self.dup else 1
        if copies == 2:
            st["dup"] += 1
        out = []
        for _ in range(copies):
            d = self.delay
            if rng.random() < self.reorder:
                d += rng.random() * self.reorder_extra
                st["reordered"] += 1
            f = frame
            if rng.random() < self.corrupt:
                st["corrupted"] += 1
                f = bytearray(frame)
                at = 34 + rng.randrange(len(frame) - 34)     # in the TCP segment
                f[at] ^= 1 << rng.randrange(8)
                f = bytes(f)
            out.append((d, f))
        return out


def _finish_checksum(frame, csum_start, csum_offset):
    """A frame that left its sender with CHECKSUM_PARTIAL: the field holds the pseudo-header
    sum; the one's complement sum from csum_start on completes it."""
    from framework.net.checksum import ones_sum
    b = bytearray(frame)
    at = csum_start + csum_offset
    s = ones_sum(memoryview(b)[csum_start:])
    c = ~s & 0xFFFF
    b[at] = c >> 8
    b[at + 1] = c & 0xFF
    return bytes(b)


def _packet_socket(ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


def relay_main(if_a, if_b, seed, trace=False):
    """Forward frames between two interfaces until SIGTERM; print the fault stats (and with
    `trace`, bench.lossy_trace's analysis of every TCP frame) as JSON."""
    sa, sb = _packet_socket(if_a), _packet_socket(if_b)
    rng = random.Random(seed)
    rules = {sa: FaultRules(random.Random(rng.random())), sb: FaultRules(random.Random(rng.random()))}
    other = {sa: sb, sb: sa}
    heap = []          # (due, n, out socket, vnet + frame)
    n = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    print("ready", flush=True)
    unpack = __import__("struct").Struct("<BBHHHH").unpack_from
    gso_seen = 0
    unsendable = 0
    log = [] if trace else None
    side = {sa: 0, sb: 1}
    if trace:
        from bench.lossy_trace import analyze, record
    while not stop:
        now = time.monotonic()
        timeout = 0.05 if not heap else max(0.0, min(heap[0][0] - now, 0.05))
        try:
            r, _, _ = select.select([sa, sb], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for s in r:
            out = other[s]
            for _ in range(512):
                try:
                    pkt = s.recv(70000)
                except (BlockingIOError, InterruptedError):
                    break
                flags, gso, _, _, cs, co = unpack(pkt, 0)
                frame = pkt[VNET_LEN:]
                if gso:
                    gso_seen += 1        # not expected with GSO off at both senders
                    n += 1
                    heapq.heappush(heap, (now, n, out, pkt))
                    continue
                if flags & 1:
                    frame = _finish_checksum(frame, cs, co)
                if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
                    n += 1
                    heapq.heappush(heap, (now, n, out, ZERO_VNET + frame))   # ARP etc.
                    continue
                copies = rules[s].apply(frame)
                if log is not None:
                    record(log, now, side[s], frame, [f is frame for d, f in copies])
                for d, f in copies:
                    n += 1
                    heapq.heappush(heap, (now + d, n, out, ZERO_VNET + f))
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            due, k, out, pkt = heap[0]
            try:
                out.send(pkt)
            except (BlockingIOError, InterruptedError):
                break                      # the device queue is full: retry next turn
            except OSError:
                unsendable += 1            # e.g. EMSGSIZE (larger than the MTU): dropped
            heapq.heappop(heap)
    if trace and os.environ.get("LOSSY_TRACE_DUMP"):
        import pickle
        with open(os.environ["LOSSY_TRACE_DUMP"], "wb") as fp:
            pickle.dump(log, fp)
    drops = [_STATS.unpack(x.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))[1] for x in (sa, sb)]
    print(json.dumps({"a_to_b": rules[sa].stats, "b_to_a": rules[sb].stats, "gso": gso_seen,
                      "relay_drops": {"kernel": drops, "unsendable": unsendable},
                      "trace": analyze(log) if trace else None}),
          flush=True)


# --------------------------------------------------------------------------- the client
CLIENT = textwrap.dedent('''
    import hashlib, json, random, socket, sys, threading, time
    from concurrent.futures import ThreadPoolExecutor
    host, n, par, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    sizes = [int(1024 * 1024 ** rng.random()) for _ in range(n)]
    sizes[:3] = [1 << 20] * 3
    took = []
    def one(i):
        data = random.Random(i).randbytes(sizes[i])
        t0 = time.monotonic()
        s = socket.create_connection((host, 7), timeout=120)
        t1 = time.monotonic()
        def send():                      # read while sending: a blocked echo must not
            s.sendall(data)              # stop our sendall (a deadlock, not a loss)
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send); t.start()
        h = hashlib.sha256(); got = 0
        while True:
            b = s.recv(1 << 20)
            if not b: break
            h.update(b); got += len(b)
        t.join(); s.close()
        took.append((round(time.monotonic() - t0, 3), round(t1 - t0, 3), sizes[i]))
        return h.digest() == hashlib.sha256(data).digest()
    t0 = time.monotonic()
    with ThreadPoolExecutor(par) as ex:
        ok = sum(ex.map(one, range(n)))
    print(json.dumps({"ok": ok, "n": n, "seconds": time.monotonic() - t0,
                      "bytes_each_way": sum(sizes), "slowest": sorted(took)[-5:]}))
''')



def _ns_popen(ns, args, **kw):
    return subprocess.Popen(["ip", "netns", "exec", ns] + args, **kw)


def _nstat(ns, keys):
    """A namespace's nonzero TCP/TcpExt counters whose names contain one of `keys`."""
    out = subprocess.run(["ip", "netns", "exec", ns, "nstat", "-az"],
                         capture_output=True, text=True).stdout
    return {w[0]: int(w[1]) for w in (l.split() for l in out.splitlines())
            if len(w) >= 2 and w[1].isdigit() and int(w[1]) and any(k in w[0] for k in keys)}


def one_run(stack, args, seed):
    """One transfer of the bodies through a fresh relay; returns (seconds, details)."""
    from framework.master import netns
    from tests.conftest import Lab
    lab = Lab()
    procs = []
    try:
        ns_c, ns_r, ns_s = lab.netns("fwlc"), lab.netns("fwlr"), lab.netns("fwls")
        c_if, ra = lab.veth(ns_c, ns_r, prefix="flc")
        rb, s_if = lab.veth(ns_r, ns_s, prefix="fls")
        for ifn, ns in ((c_if, ns_c), (ra, ns_r), (rb, ns_r), (s_if, ns_s)):
            netns.ip("link", "set", ifn, "gso_max_segs", "1", "gso_max_size", "1500", "up",
                     netns=ns)
        netns.ip("addr", "add", RELAY_IPS[0] + "/24", "dev", c_if, netns=ns_c)
        relay = _ns_popen(ns_r, [sys.executable, "-m", "bench.lossy", "--relay", ra, rb,
                                 str(seed)] + (["--trace"] if args.trace else []),
                          stdout=subprocess.PIPE, text=True)
        procs.append(relay)
        assert relay.stdout.readline().strip() == "ready"
        client = [sys.executable, "-c", CLIENT, RELAY_IPS[1], str(args.bodies),
                  str(args.parallel), str(args.seed)]
        counters = {}
        if stack == "linux":
            from tests.net.tcp.linux_peer import ECHO_SERVER
            netns.ip("addr", "add", RELAY_IPS[1] + "/24", "dev", s_if, netns=ns_s)
            srv = _ns_popen(ns_s, [sys.executable, "-c", ECHO_SERVER, RELAY_IPS[1], "7",
                                   args.linux_cc or ""], stdout=subprocess.PIPE, text=True)
            procs.append(srv)
            assert srv.stdout.readline().strip() == "ready"
            res = netns.run_in(ns_c, client, capture_output=True, text=True, timeout=900)
        else:
            from framework.net.tcp import TcpConfig
            from framework.nic.afpacket import AfPacketPort
            from tests.net.tcp.linux_peer import StackRunner
            port = AfPacketPort(s_if, netns=ns_s, gso=False)
            try:
                with StackRunner(port, TcpConfig(time_wait=1.0, cc=args.cc)) as r:
                    res = netns.run_in(ns_c, client, capture_output=True, text=True, timeout=900)
                assert r.error is None, r.error
                counters = {k: v for k, v in r.tcp.counters.items()
                            if v and k.startswith(("tcp.", "drop."))}
                counters["port.rx_kernel_drops"] = port.kernel_stats()[1]
                counters.update({"port." + k: v for k, v in port.stats.items() if v and "drop" in k})
            finally:
                port.close()
        assert res.returncode == 0, res.stdout + res.stderr
        if args.verbose:
            # the Linux client's view: its drops and recovery events (TcpExt MIB)
            keys = ("Drop", "Err", "PAWS", "Retrans", "Loss", "Timeout", "Undo", "Probe",
                    "OFO", "Prune", "Collapse", "DSACK", "Recovery", "Reorder", "PureAcks",
                    "DelayedACK", "QuickAck")
            counters["client"] = _nstat(ns_c, keys)
            if stack == "linux":
                counters["server"] = _nstat(ns_s, keys)
        out = json.loads(res.stdout.strip().splitlines()[-1])
        assert out["ok"] == out["n"], out
        relay.send_signal(signal.SIGTERM)
        faults = json.loads(relay.communicate(timeout=10)[0].strip().splitlines()[-1])
        counters["slowest (s, connect s, bytes)"] = out["slowest"]
        return out["seconds"], {"faults": faults, "counters": counters,
                                "bytes_each_way": out["bytes_each_way"]}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        lab.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bodies", type=int, default=150)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stacks", default="framework,linux")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--cc", default=None,
                    help="our stack's congestion control (default: the one the Linux server "
                         "runs, so both run the same algorithm: bbr, cubic, else newreno)")
    ap.add_argument("--linux-cc", default=None,
                    help="the Linux server's congestion control (default: the system's)")
    ap.add_argument("--trace", action="store_true",
                    help="the relay's per-direction view of every round (bench.lossy_trace)")
    ap.add_argument("--relay", nargs=3, metavar=("IF_A", "IF_B", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.relay:
        relay_main(args.relay[0], args.relay[1], int(args.relay[2]), args.trace)
        return
    if os.geteuid() != 0:
        sys.exit("bench.lossy needs root (namespaces, veths, AF_PACKET)")
    from framework import native
    with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
        linux_cc = f.read().strip()
    if args.cc is None:
        server_cc = args.linux_cc or linux_cc
        args.cc = server_cc if server_cc in ("bbr", "cubic") else "newreno"
    print(f"framework modules: {native.MODE}; load average {os.getloadavg()[0]:.2f}; "
          f"congestion control: ours {args.cc}, Linux server {args.linux_cc or linux_cc}, "
          f"Linux client {linux_cc}", flush=True)
    stacks = args.stacks.split(",")
    times = {s: [] for s in stacks}
    for k in range(args.rounds):
        order = stacks if k % 2 == 0 else stacks[::-1]
        for stack in order:
            secs, det = one_run(stack, args, seed=1000 * args.seed + k)
            times[stack].append(secs)
            f = det["faults"]
            print(f"round {k + 1} {stack:9s} {secs:7.2f} s  lost {f['a_to_b']['lost']}"
                  f"+{f['b_to_a']['lost']} of {f['a_to_b']['frames']}+{f['b_to_a']['frames']}"
                  f" frames, relay drops {f['relay_drops']}", flush=True)
            if args.verbose and det["counters"]:
                print("   ", det["counters"], flush=True)
            if f.get("trace"):
                from bench.lossy_trace import format_report
                print("\n".join(format_report(f["trace"])), flush=True)
    med = {s: statistics.median(v) for s, v in times.items()}
    print(f"\n{args.bodies} bodies ({det['bytes_each_way'] / 1e6:.1f} MB each way), "
          f"{args.parallel} in parallel, median of {args.rounds} rounds "
          f"(load average now {os.getloadavg()[0]:.2f}):")
    for s in stacks:
        print(f"  {s:9s} {med[s]:7.2f} s   rounds: {', '.join(f'{t:.2f}' for t in times[s])}")
    if "framework" in med and "linux" in med:
        print(f"  ratio framework/linux: {med['framework'] / med['linux']:.2f}x")


if __name__ == "__main__":
    main()
