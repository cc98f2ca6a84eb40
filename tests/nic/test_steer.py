"""steer: the Python hash, its cBPF twin (run by a small interpreter), source-port choice."""
import random

from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, raw

from framework.nic import steer


def ip(s):
    return int.from_bytes(bytes(map(int, s.split("."))), "big")


def test_symmetric_and_in_range():
    rng = random.Random(1)
    for _ in range(2000):
        a, b = rng.getrandbits(32), rng.getrandbits(32)
        p, q = rng.randrange(65536), rng.randrange(65536)
        for n in (1, 2, 3, 4, 7):
            s = steer.shard_of(a, b, p, q, n)
            assert 0 <= s < n
            assert s == steer.shard_of(b, a, q, p, n)


def test_even_ports_spread():
    """connect() prefers even ports: the hash must not depend on port parity."""
    a, b = ip("198.18.0.1"), ip("198.18.0.2")
    for n in (2, 4):
        counts = [0] * n
        for p in range(32768, 32768 + 4000, 2):
            counts[steer.shard_of(a, b, p, 80, n)] += 1
        assert min(counts) > 2000 / n * 0.8, counts


def frames():
    rng = random.Random(7)
    out = []
    for i in range(300):
        src = f"198.18.{rng.randrange(256)}.{rng.randrange(256)}"
        dst = f"198.19.{rng.randrange(256)}.{rng.randrange(256)}"
        l4 = TCP(sport=rng.randrange(65536), dport=rng.choice([80, 443, rng.randrange(65536)])) \
            if i % 2 else UDP(sport=rng.randrange(65536), dport=rng.randrange(65536))
        opts = [] if i % 3 else [b"\x01\x01\x01\x01"]  # IP options move the ports
        out.append(raw(Ether() / IP(src=src, dst=dst, options=opts) / l4 / b"x"))
    out.append(raw(Ether() / IP(src="198.18.0.1", dst="198.18.0.2") / ICMP()))
    out.append(raw(Ether() / IP(src="198.18.0.1", dst="198.18.0.2", flags="MF") / UDP(sport=1, dport=2)))
    out.append(raw(Ether() / IP(src="198.18.0.1", dst="198.18.0.2", frag=100) / b"12345678"))
    out.append(raw(Ether() / ARP(psrc="198.18.0.1", pdst="198.18.0.2")))
    return out


def test_fanout_program_matches_python():
    for n in (1, 2, 3, 4):
        prog = steer.fanout_program(n)
        for f in frames():
            want = steer.classify(f, n)
            got = steer.run_program(prog, f)
            assert got == (0 if want == steer.NON_IP else want)


def test_fanout_program_member_table():
    table = [2, 0, 1]
    prog = steer.fanout_program(3, table)
    for f in frames():
        want = steer.classify(f, 3)
        assert steer.run_program(prog, f) == table[0 if want == steer.NON_IP else want]


def test_filter_program_accepts_only_own_shard():
    fs = frames()
    for n in (2, 3):
        progs = [steer.filter_program(n, k) for k in range(n)]
        for f in fs:
            acc = [k for k in range(n) if steer.run_program(progs[k], f)]
            want = steer.classify(f, n)
            assert acc == (list(range(n)) if want == steer.NON_IP else [want])


def test_classify_known_flow():
    f = raw(Ether() / IP(src="198.18.0.1", dst="198.18.0.2") / TCP(sport=40000, dport=80))
    assert steer.classify(f, 4) == steer.shard_of(ip("198.18.0.1"), ip("198.18.0.2"), 40000, 80, 4)
    # ICMP and fragments: addresses only
    f = raw(Ether() / IP(src="198.18.0.1", dst="198.18.0.2") / ICMP())
    assert steer.classify(f, 4) == steer.shard_of(ip("198.18.0.1"), ip("198.18.0.2"), 0, 0, 4)


def test_pick_source_port():
    a, b = ip("198.18.0.2"), ip("198.18.0.1")
    for n in (2, 4):
        for shard in range(n):
            used = set()
            for _ in range(50):
                p = steer.pick_source_port(a, b, 8080, shard, n, in_use=used)
                assert steer.EPHEMERAL_LO <= p <= steer.EPHEMERAL_HI and p not in used
                assert steer.shard_of(a, b, p, 8080, n) == shard
                # the reply (ends swapped) hashes to the same shard
                assert steer.shard_of(b, a, 8080, p, n) == shard
                used.add(p)
    # wraps around and reports exhaustion
    assert steer.pick_source_port(a, b, 80, 0, 2, start=60999) is not None
    all_ports = set(range(steer.EPHEMERAL_LO, steer.EPHEMERAL_HI + 1))
    assert steer.pick_source_port(a, b, 80, 0, 2, in_use=all_ports) is None


def test_pick_source_port_predicate():
    a, b = ip("198.18.0.2"), ip("198.18.0.1")
    flows = set()
    for _ in range(20):
        p = steer.pick_source_port(a, b, 80, 1, 2, in_use=lambda p: (b, 80, p) in flows)
        assert (b, 80, p) not in flows and steer.shard_of(a, b, p, 80, 2) == 1
        flows.add((b, 80, p))
