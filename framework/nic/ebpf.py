"""Our classic-BPF steering program, translated to eBPF by hand and loaded with bpf().

Why: TAP steers by an eBPF program (TUNSETSTEERINGEBPF), not by a classic one, and
there is no clang here. The programs of ``steer`` use a tiny subset of cBPF, which
maps one-to-one onto eBPF the way the kernel's own cBPF converter does it:

    A -> R0 (LD_ABS/LD_IND leave their result there), X -> R7, M[i] -> stack,
    R6 = the skb context (LD_ABS/LD_IND read it implicitly),
    jt/jf -> a 32-bit conditional jump (JMP32) plus an unconditional one,
    the ancillary load skb->protocol -> a load of __sk_buff.protocol + be16.

The result is the same function (``steer.shard_of``), so a TAP queue choice is
predictable from Python like the AF_PACKET one.
"""
import ctypes
import os
import struct

from . import steer as S

_INSN = struct.Struct("<BBhi")
R0, R1, R6, R7, R8, R10 = 0, 1, 6, 7, 8, 10

# eBPF classes/ops (those that differ from cBPF)
EBPF_JMP32 = 0x06
EBPF_ALU64 = 0x07
EBPF_MOV = 0xB0
EBPF_END = 0xD0
EBPF_TO_BE = 0x08
EBPF_EXIT = 0x90
EBPF_DW = 0x18

SKB_PROTOCOL_OFF = 16          # offsetof(struct __sk_buff, protocol)
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10
SYS_bpf = 321                  # x86_64

_libc = ctypes.CDLL(None, use_errno=True)


def _s32(k):
    k &= 0xFFFFFFFF
    return k - (1 << 32) if k & 0x80000000 else k


def translate(cbpf):
    """cBPF instructions -> eBPF instruction tuples (code, dst, src, off, imm)."""
    out = []      # items: [code, dst, src, off, imm, target_cbpf_pc or None]
    start = []    # eBPF index where each cBPF instruction begins

    def e(code, dst=0, src=0, off=0, imm=0, target=None):
        out.append([code, dst, src, off, imm, target])

    e(EBPF_ALU64 | EBPF_MOV | S.BPF_X, R6, R1)          # R6 = ctx
    e(S.BPF_ALU | EBPF_MOV | S.BPF_K, R0, imm=0)         # A = 0
    e(S.BPF_ALU | EBPF_MOV | S.BPF_K, R7, imm=0)         # X = 0
    for pc, (code, jt, jf, k) in enumerate(cbpf):
        start.append(len(out))
        cls = code & 7
        if cls == S.BPF_LD:
            mode, size = code & 0xE0, code & 0x18
            if mode == S.BPF_ABS and k == (S.SKF_AD_OFF + S.SKF_AD_PROTOCOL) & 0xFFFFFFFF:
                e(S.BPF_LDX | S.BPF_MEM | S.BPF_W, R0, R6, SKB_PROTOCOL_OFF)
                e(S.BPF_ALU | EBPF_END | EBPF_TO_BE, R0, imm=16)   # __be16 -> host order
            elif mode == S.BPF_ABS:
                e(S.BPF_LD | S.BPF_ABS | size, imm=_s32(k))
            elif mode == S.BPF_IND:
                e(S.BPF_LD | S.BPF_IND | size, src=R7, imm=_s32(k))
            elif mode == S.BPF_IMM:
                e(S.BPF_ALU | EBPF_MOV | S.BPF_K, R0, imm=_s32(k))
            elif mode == S.BPF_MEM:
                e(S.BPF_LDX | S.BPF_MEM | S.BPF_W, R0, R10, -4 * (k + 1))
            else:
                raise NotImplementedError(hex(code))
        elif cls == S.BPF_LDX:
            mode = code & 0xE0
            if mode == S.BPF_MSH:                            # X = 4 * (P[k] & 0xf), A kept
                e(EBPF_ALU64 | EBPF_MOV | S.BPF_X, R8, R0)
                e(S.BPF_LD | S.BPF_ABS | S.BPF_B, imm=_s32(k))
                e(S.BPF_ALU | S.BPF_AND | S.BPF_K, R0, imm=0xF)
                e(S.BPF_ALU | S.BPF_LSH | S.BPF_K, R0, imm=2)
                e(S.BPF_ALU | EBPF_MOV | S.BPF_X, R7, R0)
                e(EBPF_ALU64 | EBPF_MOV | S.BPF_X, R0, R8)
            elif mode == S.BPF_MEM:
                e(S.BPF_LDX | S.BPF_MEM | S.BPF_W, R7, R10, -4 * (k + 1))
            elif mode == S.BPF_IMM:
                e(S.BPF_ALU | EBPF_MOV | S.BPF_K, R7, imm=_s32(k))
            else:
                raise NotImplementedError(hex(code))
        elif cls == S.BPF_ST:
            e(S.BPF_STX | S.BPF_MEM | S.BPF_W, R10, R0, -4 * (k + 1))
        elif cls == S.BPF_STX:
            e(S.BPF_STX | S.BPF_MEM | S.BPF_W, R10, R7, -4 * (k + 1))
        elif cls == S.BPF_ALU:
            op = code & 0xF0
            if code & S.BPF_X:
                e(S.BPF_ALU | op | S.BPF_X, R0, R7)
            else:
                e(S.BPF_ALU | op | S.BPF_K, R0, imm=_s32(k))
        elif cls == S.BPF_JMP:
            op = code & 0xF0
            if op == S.BPF_JA:
                e(S.BPF_JMP | S.BPF_JA, target=pc + 1 + k)
            else:
                if code & S.BPF_X:
                    e(EBPF_JMP32 | op | S.BPF_X, R0, R7, target=pc + 1 + jt)
                else:
                    e(EBPF_JMP32 | op | S.BPF_K, R0, imm=_s32(k), target=pc + 1 + jt)
                if jf:
                    e(S.BPF_JMP | S.BPF_JA, target=pc + 1 + jf)
        elif cls == S.BPF_RET:
            if code & 0x18 != S.BPF_A:
                e(S.BPF_ALU | EBPF_MOV | S.BPF_K, R0, imm=_s32(k))
            e(S.BPF_JMP | EBPF_EXIT)
        elif cls == S.BPF_MISC:
            if code & 0xF8 == S.BPF_TXA:
                e(S.BPF_ALU | EBPF_MOV | S.BPF_X, R0, R7)
            else:
                e(S.BPF_ALU | EBPF_MOV | S.BPF_X, R7, R0)
        else:
            raise NotImplementedError(hex(code))
    res = []
    for i, (code, dst, src, off, imm, target) in enumerate(out):
        if target is not None:
            off = start[target] - i - 1
        res.append((code, dst, src, off, imm))
    return res


def pack(insns):
    return b"".join(_INSN.pack(c, (s << 4) | d, o, i) for c, d, s, o, i in insns)


def load_socket_filter(insns, name=b"fw_steer"):
    """bpf(BPF_PROG_LOAD) of an eBPF socket-filter program; returns the program fd."""
    code = ctypes.create_string_buffer(pack(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(65536)
    attr = struct.pack("<IIQQIIQII16s", BPF_PROG_TYPE_SOCKET_FILTER, len(insns),
                       ctypes.addressof(code), ctypes.addressof(lic), 1, len(log),
                       ctypes.addressof(log), 0, 0, name[:15])
    attr = ctypes.create_string_buffer(attr + bytes(144 - len(attr)))
    _libc.syscall.restype = ctypes.c_long
    fd = _libc.syscall(ctypes.c_long(SYS_bpf), ctypes.c_int(BPF_PROG_LOAD), attr,
                       ctypes.c_uint(144))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_PROG_LOAD: {os.strerror(err)}: {log.value.decode(errors='replace')[-2000:]}")
    return fd


def load_steering(n, syn_queues=False):
    """The TAP steering program (``steer.queue_program``): returns ``shard_of`` (non-IPv4: 0),
    with ``syn_queues`` n + ``shard_of`` for bare SYNs; the kernel takes it modulo the
    number of queues."""
    return load_socket_filter(translate(S.queue_program(n, syn_queues)))


def test_run(prog_fd, frame):
    """BPF_PROG_TEST_RUN: the program's return value for an Ethernet ``frame`` (the kernel
    builds an skb of it as for a received frame: skb->protocol set, data at the network
    header). Lets tests check the loaded program itself, not only its cBPF source."""
    data = ctypes.create_string_buffer(bytes(frame), len(frame))
    attr = ctypes.create_string_buffer(struct.pack("<IIIIQQII", prog_fd, 0, len(frame), 0,
                                                   ctypes.addressof(data), 0, 1, 0)
                                       + bytes(112))
    _libc.syscall.restype = ctypes.c_long
    if _libc.syscall(ctypes.c_long(SYS_bpf), ctypes.c_int(BPF_PROG_TEST_RUN), attr,
                     ctypes.c_uint(len(attr))) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_PROG_TEST_RUN: {os.strerror(err)}")
    return struct.unpack_from("<I", attr.raw, 4)[0]
