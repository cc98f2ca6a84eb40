"""SYN cookies: when a listener's SYN queue is full, answer with a SYN-ACK whose ISN
encodes what the handshake must remember, keep no state, and rebuild the connection
from the final ACK (the technique of RFC 4987 §3.6, laid out like Linux's).

ISN = t (5 bits, 64 s ticks) | MSS index (3 bits) | 24-bit keyed hash of the 4-tuple, the
peer's ISN and t. A cookie is good for one to two ticks. Window scale and SACK-permitted
survive only when timestamps are on: they ride in the low 6 bits of our TSval (4 bits of
the peer's shift, 0xF = none; 1 bit SACK) and come back in the ACK's TSecr. Without
timestamps the cookie SYN-ACK offers neither (it could not honour them later).
"""
import hashlib
import struct

try:
    import cython
except ImportError:         # plain Python on a machine without Cython
    from framework import _cython_shim as cython

from ..wire.tcp import build_options, parse_options
from .connection import Connection

if not cython.compiled:        # compiled: C constants (bits.pxd, consts.pxd)
    from ..wire.tcp import ACK, SYN
    from .bits import B_ESTAB, B_PASSIVE, B_SACK, B_TS, B_WS, M
    from .consts import ESTABLISHED

MSS_TABLE = (536, 1220, 1300, 1360, 1400, 1440, 1460, 8960)
_pack = struct.Struct("!IHHII").pack
TICK = 64.0


# Under a flood every SYN takes this path, so what is the same for each is made once:
# the keyed hash state per secret (copied per SYN: cheaper than keying a new one) and the
# SYN-ACK's options for a SYN without timestamps, per our MSS.
_keyed = {}
_plain_opts = {}


def _hash(layer, key, peer_isn, t):
    secret = layer._cookie_secret
    base = _keyed.get(secret)
    if base is None:
        if len(_keyed) > 64:             # layers come and go (tests): stay bounded
            _keyed.clear()
        base = _keyed[secret] = hashlib.blake2s(digest_size=3, key=secret)
    h = base.copy()
    h.update(_pack(key[0], key[1], key[2], peer_isn & M, t))
    return int.from_bytes(h.digest(), "big")


def _mss_index(peer_mss):
    """The largest MSS_TABLE entry not above the peer's MSS (536 when none fits)."""
    i = 7
    while i > 0 and MSS_TABLE[i] > peer_mss:
        i -= 1
    return i


def send_cookie(layer, lst, key, seq, opts):
    """The stateless SYN-ACK for a SYN that found the SYN queue full."""
    now = layer.now
    cfg = layer.config
    peer_mss = opts.mss if opts is not None and opts.mss else 536
    t = int(now // TICK) & 31
    cookie = (t << 27) | (_mss_index(peer_mss) << 24) | _hash(layer, key, seq, t)
    win = layer.rcvbuf if layer.rcvbuf < 65535 else 65535
    if not (cfg.timestamps and opts is not None and opts.tsval is not None):
        # no timestamps: nothing but our MSS to offer (see the module docstring)
        o = _plain_opts.get(layer.mss)
        if o is None:
            o = _plain_opts[layer.mss] = build_options(mss=layer.mss, ts=None, wscale=None,
                                                       sack_perm=False)
        lst.cookie_time = now
        layer.counters["tcp.syncookies_sent"] += 1
        layer._send_raw(key, cookie, seq + 1, SYN | ACK, win, o)
        return
    ws = None
    sack = False
    low = opts.wscale if (cfg.window_scale and opts.wscale is not None) else 0xF
    if cfg.sack and opts.sack_perm:
        low |= 0x10
        sack = True
    clock = (int(now * 1000) + layer.ts_off) & M
    tsval = (clock & ~0x3F) | low
    if (tsval - clock) & M < 0x80000000 and tsval != clock:
        tsval = (tsval - 64) & M     # never ahead of our clock: later TSvals must not
    ts = (tsval, opts.tsval)         # look older to the peer's PAWS
    if low & 0xF != 0xF:
        ws = layer.rcv_ws
    o = build_options(mss=layer.mss, ts=ts, wscale=ws, sack_perm=sack)
    lst.cookie_time = now
    layer.counters["tcp.syncookies_sent"] += 1
    layer._send_raw(key, cookie, seq + 1, SYN | ACK, win, o)


def check_cookie(layer, lst, key, seq, ack, win, frame, ooff, doff):
    """A bare ACK for no connection: if it carries a good cookie, return the rebuilt
    ESTABLISHED connection (already in the flow table); False: a good cookie but the accept
    queue is full (drop the segment); None: no cookie (the caller resets)."""
    now = layer.now
    if lst.cookie_time is None or now - lst.cookie_time > 2 * TICK:
        return None                      # no recent overflow: no cookie can be valid
    cookie = (ack - 1) & M
    peer_isn = (seq - 1) & M
    t = cookie >> 27
    if (int(now // TICK) - t) & 31 > 1:
        return None
    if cookie & 0xFFFFFF != _hash(layer, key, peer_isn, t):
        return None
    c = layer.counters
    if not layer._accept_room(lst):
        # as for a stateful handshake, ignore the ACK: the peer's next segment (data or a
        # retransmission) carries the same cookie and gets in once there is room
        c["drop.tcp.accept_queue_full"] += 1
        return False
    conn = Connection(layer, key, cookie, ESTABLISHED)
    conn.bits |= B_PASSIVE | B_ESTAB
    conn.listener = lst
    conn.irs = peer_isn
    conn.rcv_nxt = peer_isn + 1
    conn.last_ack_sent = peer_isn + 1
    conn.rcv_adv = peer_isn + 1 + (layer.rcvbuf if layer.rcvbuf < 65535 else 65535)
    conn.snd_una = cookie + 1
    conn.snd_wl1 = peer_isn + 1
    conn.snd_wl2 = cookie + 1
    cfg = layer.config
    opts = parse_options(frame, ooff, doff) if doff > ooff else None
    olen = 0
    if opts is not None and opts.tsval is not None and opts.tsecr is not None and cfg.timestamps:
        conn.bits |= B_TS
        conn.ts_recent = opts.tsval
        olen = 12
        low = opts.tsecr & 0x3F
        if low & 0xF != 0xF and cfg.window_scale:
            conn.bits |= B_WS
            conn.snd_ws = min(low & 0xF, 14)
            conn.rcv_ws = layer.rcv_ws
        if low & 0x10 and cfg.sack:
            conn.bits |= B_SACK
    mss = min(MSS_TABLE[(cookie >> 24) & 7], layer.mss) - olen
    conn.mss = mss
    conn.rcv_mss = layer.mss - olen
    conn.cwnd = min(cfg.initial_window * mss, max(2 * mss, 14600))
    conn.snd_wnd = conn.max_sndwnd = win << conn.snd_ws
    layer.flows[key] = conn
    c["tcp.syncookies_ok"] += 1
    c["tcp.passive_opens"] += 1
    if conn.bits & 0x200:                 # keep-alive from the config
        conn.t_ka = now + conn.ka_idle
        conn._arm(conn.t_ka)
    layer._accepted(conn, lst)
    return conn
