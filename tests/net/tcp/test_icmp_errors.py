"""ICMP destination unreachable / fragmentation needed into TCP (tcp/icmperr.py), through
the whole stack: scapy frames in, frames out."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Ether

from framework.net.stack import Stack
from framework.net.tcp import TcpConfig
from framework.net.tcp.consts import EV_CONNECTED, EV_ERROR, SYN_SENT
from framework.net.wire.ipv4 import ip_to_int

from ..conftest import IP as MYIP, MAC, PEER_IP, PEER_MAC, frame, learn_peer, parse

ROUTER = "198.18.0.254"
PEER = ip_to_int(PEER_IP)
ETH = Ether(dst=MAC, src=PEER_MAC)


def make(**cfg):
    cfg.setdefault("timestamps", False)
    cfg.setdefault("window_scale", False)
    cfg.setdefault("random_seed", b"icmp-errors")
    s = Stack(mac=MAC, ip=MYIP, csum_offload=False, tcp_config=TcpConfig(**cfg))
    learn_peer(s)
    return s


def ip_of(f):
    return parse(f)[IP]


def unreachable(quoted: IP, code, mtu=0, src=ROUTER, quote_len=28):
    """What a router sends back: its header, then our datagram's header + 8 bytes."""
    icmp = ICMP(type=3, code=code, nexthopmtu=mtu) if code == 4 else ICMP(type=3, code=code)
    return frame(ETH / IP(src=src, dst=MYIP) / icmp / bytes(quoted)[:quote_len])


def connecting(s, port=9000):
    conn = s.tcp.connect(PEER, port, 1.0)
    out = s.dispatch(1.0)
    assert len(out) == 1
    syn = ip_of(out[0])
    assert syn[TCP].flags == "S"
    return conn, syn


def established(s, mss=1460, port=9000):
    conn, syn = connecting(s, port)
    sa = ETH / IP(src=PEER_IP, dst=MYIP) / TCP(sport=port, dport=syn[TCP].sport, flags="SA",
                                                seq=7000, ack=syn[TCP].seq + 1, window=65535,
                                                options=[("MSS", mss)])
    s.process([frame(sa)], 1.01)
    s.dispatch(1.01)
    assert [e for e, _ in s.tcp.take_events()] == [EV_CONNECTED]
    return conn


@pytest.mark.parametrize("code, reason", [
    (0, "network unreachable"), (1, "host unreachable"), (3, "connection refused"),
    (9, "administratively prohibited"), (10, "administratively prohibited"),
    (13, "administratively prohibited"), (2, "protocol unreachable")])
def test_unreachable_fails_syn_sent_at_once(code, reason):
    s = make()
    conn, syn = connecting(s)
    s.process([unreachable(syn, code)], 1.05)
    assert s.dispatch(1.05) == []                     # no RST, no retransmission
    evs = s.tcp.take_events()
    assert evs == [(EV_ERROR, conn)]
    assert conn.error == reason and conn.state_name == "CLOSED"
    assert conn.key not in s.tcp.flows
    c = s.counters
    assert c["icmp.rx_unreachable"] == 1 and c["tcp.icmp_unreachable"] == 1
    assert c["tcp.timeouts"] == 0


def test_whole_quote_and_options_in_quote_accepted():
    """A router may quote more than 8 bytes (RFC 1812: as much as fits); IP options too."""
    s = make()
    conn, syn = connecting(s)
    s.process([unreachable(syn, 1, quote_len=len(bytes(syn)))], 1.05)
    assert s.tcp.take_events() == [(EV_ERROR, conn)]


def test_spoofed_sequence_ignored_and_counted():
    s = make()
    conn, syn = connecting(s)
    forged = syn.copy()
    forged[TCP].seq = (syn[TCP].seq + 100000) & 0xFFFFFFFF
    s.process([unreachable(forged, 1)], 1.05)
    assert s.tcp.take_events() == [] and conn.state == SYN_SENT and conn.error is None
    assert s.counters["drop.icmp.out_of_window"] == 1
    # the real one still works
    s.process([unreachable(syn, 3)], 1.06)
    assert s.tcp.take_events() == [(EV_ERROR, conn)] and conn.error == "connection refused"


def test_unknown_flow_and_bad_quotes_ignored():
    s = make()
    conn, syn = connecting(s)
    other = syn.copy()
    other[TCP].sport = syn[TCP].sport + 1
    not_ours = syn.copy()
    not_ours.src = "198.18.0.77"
    s.process([unreachable(other, 1), unreachable(syn, 1, quote_len=24),
               unreachable(not_ours, 1)], 1.05)
    c = s.counters
    assert c["drop.icmp.no_flow"] == 1 and c["drop.icmp.bad_quote"] == 2
    assert s.tcp.take_events() == [] and conn.state == SYN_SENT


def test_established_soft_error_kept_and_named_on_timeout():
    s = make(max_retries=2, initial_rto=0.2, min_rto=0.2)
    conn = established(s)
    conn.send(b"x" * 100)
    out = s.dispatch(1.02)
    seg = ip_of(out[0])
    s.process([unreachable(seg, 1)], 1.03)
    assert s.tcp.take_events() == [] and conn.state_name == "ESTABLISHED"
    assert conn.error == "host unreachable"              # as SO_ERROR's soft error
    assert s.counters["tcp.icmp_soft_errors"] == 1
    t = 1.03
    while conn.state_name != "CLOSED" and t < 60:
        t += 0.5
        s.dispatch(t)
    assert s.tcp.take_events() == [(EV_ERROR, conn)]
    assert conn.error == "retransmission timed out (host unreachable)"


def test_soft_error_forgotten_when_an_ack_makes_progress():
    s = make()
    conn = established(s)
    conn.send(b"x" * 100)
    seg = ip_of(s.dispatch(1.02)[0])
    s.process([unreachable(seg, 0)], 1.03)
    assert conn.error == "network unreachable"
    ack = ETH / IP(src=PEER_IP, dst=MYIP) / TCP(sport=9000, dport=conn.key[2], flags="A", seq=7001,
                                                 ack=(seg[TCP].seq + 100) & 0xFFFFFFFF, window=65535)
    s.process([frame(ack)], 1.04)
    assert conn.error is None and conn.state_name == "ESTABLISHED"


def data_segments(frames):
    return [ip_of(f) for f in frames if len(ip_of(f)[TCP].payload)]


def test_frag_needed_lowers_mss_and_resends_in_flight_smaller():
    s = make()
    conn = established(s)
    data = bytes(range(256)) * 40                       # 10240 bytes: 7 full segments + 20
    conn.send(data)
    first = data_segments(s.dispatch(1.02))
    assert [len(p[TCP].payload) for p in first] == [1460] * 7 + [20]
    una = conn.snd_una
    s.process([unreachable(first[0], 4, mtu=1280)], 1.03)
    assert conn.mss == 1240 and s.counters["tcp.icmp_frag_needed"] == 1
    again = data_segments(s.dispatch(1.03))
    assert again and all(len(p[TCP].payload) <= 1240 for p in again)
    assert again[0][TCP].seq == una & 0xFFFFFFFF        # from SND.UNA, at the new size
    assert all(p.len <= 1280 for p in again)
    # what went out again is the stream from SND.UNA on, in order
    resent = b"".join(bytes(p[TCP].payload) for p in again)
    assert data.startswith(resent) and len(resent) >= 1240
    # the peer acknowledges it all: nothing is sent again, later segments keep the new size
    ack = ETH / IP(src=PEER_IP, dst=MYIP) / TCP(sport=9000, dport=conn.key[2], flags="A",
                                                 seq=7001, ack=(una + len(data)) & 0xFFFFFFFF,
                                                 window=65535)
    s.process([frame(ack)], 1.05)
    assert data_segments(s.dispatch(1.05)) == []
    conn.send(b"n" * 5000)
    assert all(len(p[TCP].payload) <= 1240 for p in data_segments(s.dispatch(1.06)))


def test_frag_needed_floor_and_never_raises():
    s = make()
    conn = established(s)
    conn.send(b"y" * 3000)
    segs = data_segments(s.dispatch(1.02))
    s.process([unreachable(segs[0], 4, mtu=68)], 1.03)      # forged tiny MTU
    assert conn.mss == 552 - 40
    s.process([unreachable(segs[0], 4, mtu=9000)], 1.04)    # larger: ignored
    assert conn.mss == 552 - 40
    s.dispatch(1.04)


def test_frag_needed_without_mtu_uses_plateau():
    s = make()
    conn = established(s)
    conn.send(b"z" * 3000)
    segs = data_segments(s.dispatch(1.02))
    s.process([unreachable(segs[0], 4, mtu=0)], 1.03)       # quoted length 1500 -> 1492
    assert conn.mss == 1492 - 40


def test_frag_needed_out_of_window_ignored():
    s = make()
    conn = established(s)
    conn.send(b"w" * 3000)
    segs = data_segments(s.dispatch(1.02))
    forged = segs[0].copy()
    forged[TCP].seq = (forged[TCP].seq - 50000) & 0xFFFFFFFF
    s.process([unreachable(forged, 4, mtu=600)], 1.03)
    assert conn.mss == 1460 and s.counters["drop.icmp.out_of_window"] == 1
