"""TcpConfig.random_seed: every secret of a layer (ISN key, SYN-cookie key, timestamp
offset, ephemeral port start) comes from it, so a fixed seed reproduces ISNs and
SYN-ACKs byte for byte; without a seed the layer draws os.urandom once."""
import os

from framework.net.tcp import TcpConfig, TcpLayer

from .harness import LOCAL, REMOTE, Harness

SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (777, 0)), ("WScale", 7)]


def _harness(seed):
    return Harness(config=TcpConfig(random_seed=seed))     # timestamps on: ts_off shows


def _synack(seed):
    h = _harness(seed)
    h.send("S", seq=1000, options=SYN_OPTS)
    return h.reply().raw


def _cookie_synack(seed):
    h = _harness(seed)
    h.tcp.listen(80, backlog=1)
    h.send("S", seq=1, sport=30000)            # fills the SYN queue
    h.reply()
    h.send("S", seq=5000, sport=30001, options=SYN_OPTS)
    assert h.tcp.counters["tcp.syncookies_sent"] == 1
    return h.reply().raw


def _active_syn(seed):
    h = _harness(seed)
    conn = h.tcp.connect(REMOTE, 80, h.now)
    return conn.key[2], h.reply().raw


def test_same_seed_same_isn_and_synack_bytes():
    a, b = _harness(b"seed-1"), _harness(b"seed-1")
    key = (REMOTE, 40000, 80)
    assert a.tcp._isn(key, 100.0) == b.tcp._isn(key, 100.0)
    assert _synack(b"seed-1") == _synack(b"seed-1")
    assert _cookie_synack(b"seed-1") == _cookie_synack(b"seed-1")
    assert _active_syn(b"seed-1") == _active_syn(b"seed-1")      # same port, same SYN


def test_different_seeds_differ():
    key = (REMOTE, 40000, 80)
    a, b = _harness(b"seed-1"), _harness(b"seed-2")
    assert a.tcp._isn(key, 100.0) != b.tcp._isn(key, 100.0)
    assert a.tcp.ts_off != b.tcp.ts_off
    assert _synack(b"seed-1") != _synack(b"seed-2")
    assert _cookie_synack(b"seed-1") != _cookie_synack(b"seed-2")


def test_no_seed_draws_urandom_once(monkeypatch):
    calls = []

    def fake_urandom(n):
        calls.append(n)
        return bytes(n)

    monkeypatch.setattr(os, "urandom", fake_urandom)
    TcpLayer(lambda *a: None, LOCAL, config=TcpConfig(random_seed=b"fixed"))
    assert calls == []
    x = TcpLayer(lambda *a: None, LOCAL)
    assert len(calls) == 1
    y = TcpLayer(lambda *a: None, LOCAL, config=TcpConfig(random_seed=bytes(calls[0])))
    assert (x.ts_off, x._eph) == (y.ts_off, y._eph)      # the draw is just a seed


def _siphash24(key: bytes, msg: bytes) -> int:
    """SipHash-2-4 over bytes, written from the paper (Aumasson, Bernstein 2012)."""
    m64 = (1 << 64) - 1

    def rotl(x, b):
        return ((x << b) | (x >> (64 - b))) & m64

    def rnd(v):
        v[0] = (v[0] + v[1]) & m64; v[1] = rotl(v[1], 13) ^ v[0]; v[0] = rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & m64; v[3] = rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & m64; v[3] = rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & m64; v[1] = rotl(v[1], 17) ^ v[2]; v[2] = rotl(v[2], 32)

    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D,
         k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]
    tail = len(msg) % 8
    blocks = [int.from_bytes(msg[i:i + 8], "little") for i in range(0, len(msg) - tail, 8)]
    blocks.append(((len(msg) & 0xFF) << 56) | int.from_bytes(msg[len(msg) - tail:], "little"))
    for b in blocks:
        v[3] ^= b
        rnd(v); rnd(v)
        v[0] ^= b
    v[2] ^= 0xFF
    for _ in range(4):
        rnd(v)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def test_isn_is_rfc6528_siphash_of_the_4_tuple():
    """Compiled, F is SipHash-2-4 of (remote ip, ports, local ip) as Linux's secure_tcp_seq;
    plain Python keeps a keyed blake2s (cheaper there), and its SipHash must agree too."""
    assert _siphash24(bytes(range(16)), bytes(range(15))) == 0xA129CA6149BE45E5   # the paper's
    from framework.net.tcp import layer
    h = _harness(b"seed-1")
    key = (REMOTE, 40000, 80)
    isn_key = layer._derive(b"seed-1", b"isn", 16)
    msg = b"".join(x.to_bytes(4, "little") for x in (key[0], (key[1] << 16) | key[2], LOCAL))
    f = _siphash24(isn_key, msg) & 0xFFFFFFFF
    if hasattr(layer, "_siphash_3u32"):          # plain Python: the function is visible
        assert layer._siphash_3u32(h.tcp._isn_k0, h.tcp._isn_k1, key[0],
                                   (key[1] << 16) | key[2], LOCAL) == f
    else:
        assert h.tcp._isn(key, 100.0) == (25_000_000 + f) & 0xFFFFFFFF
        assert h.tcp._isn(key, 100.5) == (25_125_000 + f) & 0xFFFFFFFF
