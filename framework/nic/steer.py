"""Flow steering: which shard owns a flow, in Python and in classic BPF.

One function decides where a flow lives, and the kernel computes the very same
function as a classic-BPF program (PACKET_FANOUT_CBPF, or a per-socket filter), so
that Python can predict it: ``connect()`` picks a source port whose replies come
back to the calling shard (``pick_source_port``).

The hash (all arithmetic mod 2**32, exactly what cBPF's 32-bit ALU does)::

    a = saddr ^ daddr                # symmetric in the two ends
    p = sport ^ dport                # symmetric too (0 for non-TCP/UDP, fragments)
    h = a ^ (p * K1)
    h = h * K2;  h ^= h >> 15
    h = h * K3;  h ^= h >> 16
    shard = h % n

Why mix and not ``sport % n``: Linux's connect() prefers even ephemeral ports, so
low bits of a port carry no entropy. The multiplications carry every input bit
into the high half, and the xor-shifts bring them back down before ``% n``.

Frames the program classifies (``classify`` below is its Python twin):
- IPv4 TCP/UDP, not a fragment: ``shard_of(saddr, daddr, sport, dport, n)``.
- other IPv4 (ICMP, fragments of anything): ``shard_of(saddr, daddr, 0, 0, n)``.
  (Fragments cannot be steered by ports; the stack drops them until reassembly exists.)
- not IPv4 (ARP, IPv6, LLDP...): ``NON_IP`` -- with a per-socket filter every shard
  accepts them (every shard keeps its own ARP cache and answers ARP), with fanout they
  go to shard 0.
"""
import random
import struct

K1 = 0x9E3779B1
K2 = 0x85EBCA6B
K3 = 0xC2B2AE35
M32 = 0xFFFFFFFF

NON_IP = -1  # classify() result for frames that are not IPv4


def shard_of(saddr: int, daddr: int, sport: int, dport: int, n: int) -> int:
    """The shard (0..n-1) that owns the flow; swapping both ends gives the same shard."""
    h = (saddr ^ daddr) ^ (((sport ^ dport) * K1) & M32)
    h = (h * K2) & M32
    h ^= h >> 15
    h = (h * K3) & M32
    h ^= h >> 16
    return h % n


# Linux default net.ipv4.ip_local_port_range
EPHEMERAL_LO = 32768
EPHEMERAL_HI = 60999


def pick_source_port(saddr: int, daddr: int, dport: int, shard: int, n: int,
                     start: int | None = None, in_use=None,
                     lo: int = EPHEMERAL_LO, hi: int = EPHEMERAL_HI) -> int | None:
    """An ephemeral port ``p`` with ``shard_of(saddr, daddr, p, dport, n) == shard``.

    Scans from ``start`` (random when None) upwards, wrapping inside [lo, hi];
    ``in_use`` -- None, a container of ports, or a predicate ``in_use(port) -> bool``
    (e.g. ``lambda p: (daddr, dport, p) in tcp.flows``) -- skips ports taken. About
    one port in ``n`` qualifies, so the scan is short. Returns None if none is left.
    """
    if in_use is not None and callable(in_use):
        used = in_use
    elif in_use is not None:
        used = in_use.__contains__
    else:
        used = None
    span = hi - lo + 1
    if start is None:
        start = random.randrange(lo, hi + 1)
    off = (start - lo) % span
    a = saddr ^ daddr
    for i in range(span):
        p = lo + (off + i) % span
        # shard_of inlined: this loop runs ~n times per connect()
        h = a ^ (((p ^ dport) * K1) & M32)
        h = (h * K2) & M32
        h ^= h >> 15
        h = (h * K3) & M32
        h ^= h >> 16
        if h % n == shard and (used is None or not used(p)):
            return p
    return None


_IP = struct.Struct("!BxxxxxHxBxx4s4s")   # ver/ihl, flags/frag, proto, src, dst
_PORTS = struct.Struct("!HH")


def classify(frame, n: int, off: int = 0) -> int:
    """Python twin of the BPF program: the shard of an Ethernet frame (at ``off``), or NON_IP.

    Frames with a VLAN tag are NON_IP here as they are for the kernel program (it reads
    skb->protocol, which is the tag's TPID unless the driver stripped it).
    """
    if len(frame) < off + 34 or frame[off + 12:off + 14] != b"\x08\x00":
        return NON_IP
    vihl, frag, proto, src, dst = _IP.unpack_from(frame, off + 14)
    saddr = int.from_bytes(src, "big")
    daddr = int.from_bytes(dst, "big")
    sport = dport = 0
    if proto in (6, 17) and not frag & 0x3FFF:
        l4 = off + 14 + (vihl & 0xF) * 4
        if len(frame) >= l4 + 4:
            sport, dport = _PORTS.unpack_from(frame, l4)
    return shard_of(saddr, daddr, sport, dport, n)


# ---------------------------------------------------------------------------
# classic BPF
# ---------------------------------------------------------------------------
# struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; }
SOCK_FILTER = struct.Struct("HBBI")

BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = range(8)
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_LEN, BPF_MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH, BPF_NEG, BPF_MOD, \
    BPF_XOR = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40
BPF_K, BPF_X = 0x00, 0x08
BPF_A = 0x10
BPF_TAX, BPF_TXA = 0x00, 0x80

SKF_AD_OFF = -0x1000
SKF_AD_PROTOCOL = 0
SKF_NET_OFF = -0x100000


def _k(v):
    return v & M32


def _hash_prefix(n):
    """Instructions leaving the shard (0..n-1) in A, or jumping to label 'nonip'.

    Returns (insns, fixups) where insns use symbolic jump targets resolved by _assemble.
    Loads relative to the network header (SKF_NET_OFF) work the same in a fanout
    program (skb->data at the network header) and in a socket filter (skb->data at
    the MAC header).
    """
    NET = SKF_NET_OFF
    return [
        (BPF_LD | BPF_H | BPF_ABS, None, None, _k(SKF_AD_OFF + SKF_AD_PROTOCOL)),  # skb->protocol
        (BPF_JMP | BPF_JEQ | BPF_K, 0, "nonip", 0x0800),
        (BPF_LD | BPF_B | BPF_ABS, None, None, _k(NET + 9)),        # ip proto
        (BPF_JMP | BPF_JEQ | BPF_K, "ports", 0, 6),
        (BPF_JMP | BPF_JEQ | BPF_K, "ports", "noports", 17),
        ("ports",),
        (BPF_LD | BPF_H | BPF_ABS, None, None, _k(NET + 6)),        # flags/fragment offset
        (BPF_JMP | BPF_JSET | BPF_K, "noports", 0, 0x3FFF),         # MF or offset: a fragment
        (BPF_LDX | BPF_B | BPF_MSH, None, None, _k(NET + 0)),       # X = 4 * ihl
        (BPF_LD | BPF_H | BPF_IND, None, None, _k(NET + 0)),        # A = sport
        (BPF_ST, None, None, 0),                                    # M[0] = sport
        (BPF_LD | BPF_H | BPF_IND, None, None, _k(NET + 2)),        # A = dport
        (BPF_LDX | BPF_W | BPF_MEM, None, None, 0),                 # X = sport
        (BPF_ALU | BPF_XOR | BPF_X, None, None, 0),                 # A = sport ^ dport
        (BPF_JMP | BPF_JA, None, None, "mix"),
        ("noports",),
        (BPF_LD | BPF_W | BPF_IMM, None, None, 0),                  # A = 0
        ("mix",),
        (BPF_ALU | BPF_MUL | BPF_K, None, None, K1),                # A = p * K1
        (BPF_ST, None, None, 1),
        (BPF_LD | BPF_W | BPF_ABS, None, None, _k(NET + 12)),       # saddr
        (BPF_MISC | BPF_TAX, None, None, 0),
        (BPF_LD | BPF_W | BPF_ABS, None, None, _k(NET + 16)),       # daddr
        (BPF_ALU | BPF_XOR | BPF_X, None, None, 0),                 # A = saddr ^ daddr
        (BPF_LDX | BPF_W | BPF_MEM, None, None, 1),
        (BPF_ALU | BPF_XOR | BPF_X, None, None, 0),                 # h = a ^ p*K1
        (BPF_ALU | BPF_MUL | BPF_K, None, None, K2),
        (BPF_MISC | BPF_TAX, None, None, 0),
        (BPF_ALU | BPF_RSH | BPF_K, None, None, 15),
        (BPF_ALU | BPF_XOR | BPF_X, None, None, 0),                 # h ^= h >> 15
        (BPF_ALU | BPF_MUL | BPF_K, None, None, K3),
        (BPF_MISC | BPF_TAX, None, None, 0),
        (BPF_ALU | BPF_RSH | BPF_K, None, None, 16),
        (BPF_ALU | BPF_XOR | BPF_X, None, None, 0),                 # h ^= h >> 16
        (BPF_ALU | BPF_MOD | BPF_K, None, None, n),                 # A = shard
    ]


def _assemble(items):
    """Resolve symbolic labels: ('label',) entries mark positions; jt/jf/k may name labels."""
    labels, insns = {}, []
    for it in items:
        if len(it) == 1:
            labels[it[0]] = len(insns)
        else:
            insns.append(it)
    out = []
    for pc, (code, jt, jf, k) in enumerate(insns):
        def rel(t):
            if t is None:
                return 0
            if isinstance(t, str):
                d = labels[t] - pc - 1
                if not 0 <= d <= 255:
                    raise ValueError(f"jump to {t} out of range")
                return d
            return t
        if code == BPF_JMP | BPF_JA:
            k = rel(k)
        out.append((code, rel(jt), rel(jf), k))
    return out


def fanout_program(n: int, member_of=None) -> list[tuple[int, int, int, int]]:
    """PACKET_FANOUT_CBPF program: returns the fanout member index of a frame.

    ``member_of[shard]`` maps shards to member indexes (join order); identity when None.
    Non-IPv4 frames go to the member of shard 0.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    member_of = list(range(n)) if member_of is None else list(member_of)
    items = _hash_prefix(n)
    if member_of == list(range(n)):
        items += [(BPF_RET | BPF_A, None, None, 0)]
    else:
        # a jump table shard -> member (n is small: one compare per shard)
        for s in range(n - 1):
            items += [(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, s), (BPF_RET | BPF_K, None, None, member_of[s])]
        items += [(BPF_RET | BPF_K, None, None, member_of[n - 1])]
    items += [("nonip",), (BPF_RET | BPF_K, None, None, member_of[0])]
    return _assemble(items)


def filter_program(n: int, shard: int, non_ip: bool = True,
                   snaplen: int = 0x40000) -> list[tuple[int, int, int, int]]:
    """Per-socket filter: accept (``snaplen`` bytes) the frames of ``shard`` only.

    ``non_ip``: also accept non-IPv4 frames (ARP...) -- every shard sees them.
    """
    items = _hash_prefix(n) + [
        (BPF_JMP | BPF_JEQ | BPF_K, "accept", "drop", shard),
        ("nonip",),
        (BPF_RET | BPF_K, None, None, snaplen if non_ip else 0),
        ("accept",),
        (BPF_RET | BPF_K, None, None, snaplen),
        ("drop",),
        (BPF_RET | BPF_K, None, None, 0),
    ]
    return _assemble(items)


_SYN, _ACK, _RST, _FIN = 0x02, 0x10, 0x04, 0x01


def bare_syn_test(yes, no):
    """Instructions that jump to label ``yes`` for a bare SYN (IPv4, TCP, not a fragment,
    SYN set and ACK/RST/FIN clear: what opens a flow), else to ``no``."""
    NET = SKF_NET_OFF
    return [
        (BPF_LD | BPF_H | BPF_ABS, None, None, _k(SKF_AD_OFF + SKF_AD_PROTOCOL)),
        (BPF_JMP | BPF_JEQ | BPF_K, 0, no, 0x0800),
        (BPF_LD | BPF_B | BPF_ABS, None, None, _k(NET + 9)),           # ip proto
        (BPF_JMP | BPF_JEQ | BPF_K, 0, no, 6),
        (BPF_LD | BPF_H | BPF_ABS, None, None, _k(NET + 6)),           # fragment?
        (BPF_JMP | BPF_JSET | BPF_K, no, 0, 0x3FFF),
        (BPF_LDX | BPF_B | BPF_MSH, None, None, _k(NET + 0)),          # X = 4 * ihl
        (BPF_LD | BPF_B | BPF_IND, None, None, _k(NET + 13)),          # TCP flags
        (BPF_ALU | BPF_AND | BPF_K, None, None, _SYN | _ACK | _RST | _FIN),
        (BPF_JMP | BPF_JEQ | BPF_K, yes, no, _SYN),
    ]


def queue_program(n: int, syn_queues: bool = False) -> list[tuple[int, int, int, int]]:
    """The TAP steering program: the queue of a frame, ``shard_of`` (non-IPv4: 0).

    ``syn_queues``: the device has 2n queues, n + shard for the shard's bare SYNs (its
    SYN queue, read after the data queue: a flood fills only that one), shard for the rest.
    """
    data = fanout_program(n)
    if not syn_queues:
        return data
    syns = fanout_program(n, member_of=range(n, 2 * n))
    # both parts are assembled already (relative jumps, every path ends in a return),
    # so they are placed as they are behind the test
    return _assemble(bare_syn_test("syn", "data") + [("data",)] + data + [("syn",)] + syns)


def queue_of(frame, n: int, syn_queues: bool = False, off: int = 0) -> int:
    """Python twin of ``queue_program``: the TAP queue of an Ethernet frame (at ``off``)."""
    shard = classify(frame, n, off)
    if shard == NON_IP:
        return 0
    return n + shard if syn_queues and is_bare_syn(frame, off) else shard


def is_bare_syn(frame, off: int = 0) -> bool:
    """Python twin of ``bare_syn_test``."""
    if len(frame) < off + 34 or frame[off + 12:off + 14] != b"\x08\x00":
        return False
    vihl, frag, proto, _, _ = _IP.unpack_from(frame, off + 14)
    l4 = off + 14 + (vihl & 0xF) * 4
    if proto != 6 or frag & 0x3FFF or len(frame) <= l4 + 13:
        return False
    return frame[l4 + 13] & (_SYN | _ACK | _RST | _FIN) == _SYN


def drop_all_program():
    return [(BPF_RET | BPF_K, 0, 0, 0)]


def pack_program(insns):
    """Bytes of a ``struct sock_filter[]``; keep them alive while the kernel copies them."""
    return b"".join(SOCK_FILTER.pack(*i) for i in insns)


# ---------------------------------------------------------------------------
# A small cBPF interpreter: lets tests run the exact program on crafted frames.
# ---------------------------------------------------------------------------
class _Reject(Exception):
    pass


def run_program(insns, frame, net_off: int = 14, protocol: int | None = None) -> int:
    """Run a cBPF program over ``frame`` (Ethernet frame, skb->data at its start).

    Implements only what our programs use. Loads out of bounds return 0 like the kernel.
    """
    if protocol is None:
        protocol = int.from_bytes(frame[12:14], "big") if len(frame) >= 14 else 0
    A = X = 0
    M = [0] * 16
    pc = 0

    def load(off, size):
        if off == SKF_AD_OFF + SKF_AD_PROTOCOL:
            return protocol
        if SKF_NET_OFF <= off < SKF_AD_OFF:
            off = net_off + (off - SKF_NET_OFF)
        if off < 0 or off + size > len(frame):
            raise _Reject
        return int.from_bytes(frame[off:off + size], "big")

    def signed(k):
        return k - (1 << 32) if k & 0x80000000 else k

    try:
        while True:
            code, jt, jf, k = insns[pc]
            pc += 1
            cls = code & 7
            if cls == BPF_LD:
                mode, size = code & 0xE0, {BPF_W: 4, BPF_H: 2, BPF_B: 1}[code & 0x18]
                if mode == BPF_IMM:
                    A = k
                elif mode == BPF_ABS:
                    A = load(signed(k), size)
                elif mode == BPF_IND:
                    A = load(signed(k) + X, size)
                elif mode == BPF_MEM:
                    A = M[k]
                else:
                    raise NotImplementedError(hex(code))
            elif cls == BPF_LDX:
                mode = code & 0xE0
                if mode == BPF_MSH:
                    X = (load(signed(k), 1) & 0xF) * 4
                elif mode == BPF_MEM:
                    X = M[k]
                elif mode == BPF_IMM:
                    X = k
                else:
                    raise NotImplementedError(hex(code))
            elif cls == BPF_ST:
                M[k] = A
            elif cls == BPF_STX:
                M[k] = X
            elif cls == BPF_ALU:
                op = code & 0xF0
                v = X if code & BPF_X else k
                if op == BPF_ADD:
                    A = (A + v) & M32
                elif op == BPF_SUB:
                    A = (A - v) & M32
                elif op == BPF_MUL:
                    A = (A * v) & M32
                elif op == BPF_DIV:
                    A = A // v if v else 0
                elif op == BPF_MOD:
                    A = A % v if v else 0
                elif op == BPF_AND:
                    A &= v
                elif op == BPF_OR:
                    A |= v
                elif op == BPF_XOR:
                    A ^= v
                elif op == BPF_LSH:
                    A = (A << v) & M32
                elif op == BPF_RSH:
                    A >>= v
                elif op == BPF_NEG:
                    A = -A & M32
            elif cls == BPF_JMP:
                op = code & 0xF0
                if op == BPF_JA:
                    pc += k
                    continue
                v = X if code & BPF_X else k
                cond = {BPF_JEQ: A == v, BPF_JGT: A > v, BPF_JGE: A >= v, BPF_JSET: bool(A & v)}[op]
                pc += jt if cond else jf
            elif cls == BPF_RET:
                return A if code & 0x18 == BPF_A else k
            elif cls == BPF_MISC:
                if code & 0xF8 == BPF_TXA:
                    A = X
                else:
                    X = A
    except _Reject:
        return 0
