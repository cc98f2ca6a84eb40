"""The TCP wire format: header Struct and options, checked against scapy."""
from scapy.layers.inet import TCP

from framework.net.wire.tcp import (ACK, SYN, TCP_HDR, build_options, parse_options, ts_option)


def _scapy_opts(raw):
    return dict((k, v) for k, v in TCP(raw).options if k != "NOP")


def test_header_struct_matches_scapy():
    raw = bytes(TCP(sport=1234, dport=80, seq=0xDEADBEEF, ack=7, flags="SA", window=513))
    sport, dport, seq, ack, offb, flags, win, csum, urg = TCP_HDR.unpack_from(raw)
    assert (sport, dport, seq, ack, offb >> 4, flags, win) == (1234, 80, 0xDEADBEEF, 7, 5, SYN | ACK, 513)


def test_syn_options_roundtrip():
    opts = build_options(mss=1460, ts=(11, 22), wscale=7)
    assert len(opts) % 4 == 0
    hdr = TCP_HDR.pack(1, 2, 0, 0, (20 + len(opts)) << 2, SYN, 0, 0, 0) + opts
    o = parse_options(hdr, 20, len(hdr))
    assert (o.mss, o.wscale, o.tsval, o.tsecr, o.sack_perm) == (1460, 7, 11, 22, False)
    s = _scapy_opts(hdr)
    assert s["MSS"] == 1460 and s["WScale"] == 7 and s["Timestamp"] == (11, 22)
    assert "SAckOK" not in s


def test_parse_scapy_built_options():
    raw = bytes(TCP(flags="S", options=[("MSS", 1400), ("SAckOK", b""), ("Timestamp", (5, 0)),
                                        ("NOP", None), ("WScale", 9)]))
    o = parse_options(raw, 20, TCP(raw).dataofs * 4)
    assert (o.mss, o.sack_perm, o.tsval, o.tsecr, o.wscale) == (1400, True, 5, 0, 9)


def test_ts_fast_path_and_sack_blocks():
    raw = ts_option(0xFFFFFFFF, 1)
    o = parse_options(raw, 0, len(raw))
    assert (o.tsval, o.tsecr) == (0xFFFFFFFF, 1)
    opts = build_options(sack=[(100, 200), (300, 400)], sack_perm=True)
    o = parse_options(opts, 0, len(opts))
    assert o.sack == [(100, 200), (300, 400)] and o.sack_perm


def test_wscale_clamped_and_malformed_ignored():
    o = parse_options(b"\x03\x03\x0f\x01", 0, 4)
    assert o.wscale == 14                     # RFC 7323 §2.3
    o = parse_options(b"\x02\x04\x05\xb4\x08\x20", 0, 6)   # TS with a bad length
    assert o.mss == 1460 and o.tsval is None


def test_linux_syn_layout_fast_path_matches_general_parse():
    raw = bytes(TCP(flags="S", options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (123, 0)),
                                        ("NOP", None), ("WScale", 15)]))
    end = TCP(raw).dataofs * 4
    assert end - 20 == 20
    o = parse_options(raw, 20, end)
    assert (o.mss, o.sack_perm, o.tsval, o.tsecr, o.wscale) == (1460, True, 123, 0, 14)
    # the same options in another order take the general path and agree
    raw2 = bytes(TCP(flags="S", options=[("SAckOK", b""), ("MSS", 1460), ("Timestamp", (123, 0)),
                                         ("WScale", 15), ("NOP", None)]))
    o2 = parse_options(raw2, 20, TCP(raw2).dataofs * 4)
    assert (o2.mss, o2.sack_perm, o2.tsval, o2.tsecr, o2.wscale) == (1460, True, 123, 0, 14)
