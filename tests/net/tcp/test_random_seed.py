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
