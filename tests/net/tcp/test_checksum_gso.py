"""Checksums on RX and TX, checksum offload (F_NEEDS_CSUM), GSO_TCPV4 for bulk sends."""
from framework.net import checksum
from framework.net.wire import vnet

from .harness import LOCAL, REMOTE, Harness

P = 1001


def test_bad_checksum_dropped_unless_trusted():
    h = Harness()
    b = bytearray(h.packet("S", seq=1000))
    b[36] ^= 0xFF                                 # corrupt the TCP checksum
    h.tcp.input(bytes(b), REMOTE, LOCAL, 20, len(b), False, h.now)
    h.no_reply()
    assert h.tcp.counters["drop.tcp.bad_checksum"] == 1
    h.tcp.input(bytes(b), REMOTE, LOCAL, 20, len(b), True, h.now)   # checksum-partial / verified
    assert h.reply().flags == "SA"


def test_odd_length_payload_checksums_both_ways():
    h = Harness()
    conn, iss = h.accept()
    h.send("PA", seq=P, ack=iss + 1, data=b"odd")
    assert conn.recv() == b"odd"
    conn.send(b"12345")
    h.reply()                                     # harness verifies the software checksum


def test_short_and_bad_offset_dropped():
    h = Harness()
    b = h.packet("S", seq=1)
    h.tcp.input(b, REMOTE, LOCAL, 20, 30, True, h.now)
    bb = bytearray(b)
    bb[32] = 0x40                                 # data offset 4 words < 5
    h.tcp.input(bytes(bb), REMOTE, LOCAL, 20, len(bb), True, h.now)
    bb[32] = 0xF0                                 # 60 bytes > segment
    h.tcp.input(bytes(bb), REMOTE, LOCAL, 20, len(bb), True, h.now)
    h.no_reply()
    c = h.tcp.counters
    assert c["drop.tcp.short"] == 1 and c["drop.tcp.bad_header"] == 2


def _complete(raw):
    """Finish a checksum-partial segment the way the NIC/kernel would."""
    field = int.from_bytes(raw[16:18], "big")     # the pseudo-header sum
    body = bytearray(raw)
    body[16:18] = b"\0\0"
    s = checksum.add(field, checksum.ones_sum(bytes(body)))
    body[16:18] = (~s & 0xFFFF).to_bytes(2, "big")
    return bytes(body)


def test_offload_puts_pseudo_header_sum_and_vnet_flag():
    h = Harness(csum_offload=True)
    conn, iss = h.accept()
    conn.send(b"payload!")
    (dst, raw, vh), = (h.step(), h.out)[1]
    flags, gso, hdr_len, gso_size, cstart, coff = vnet.VNET_HDR.unpack(vh)
    assert flags == vnet.F_NEEDS_CSUM and gso == vnet.GSO_NONE and (cstart, coff) == (34, 16)
    assert int.from_bytes(raw[16:18], "big") == checksum.pseudo_header_sum(LOCAL, REMOTE, 6, len(raw))
    assert checksum.verify_l4(LOCAL, REMOTE, 6, _complete(raw))


def test_offload_rst_for_closed_port():
    h = Harness(csum_offload=True)
    h.send("S", seq=1, dport=99)
    h.step()
    (dst, raw, vh), = h.out
    assert vh[0] == vnet.F_NEEDS_CSUM
    assert checksum.verify_l4(LOCAL, REMOTE, 6, _complete(raw))


def test_gso_bulk_send_large_segments():
    h = Harness(csum_offload=True, gso=True)
    conn, iss = h.accept(options=[("MSS", 1460)], win=65535)
    conn.send(b"g" * 100000)
    h.step()
    out, h.out = h.out, []
    sizes = []
    for dst, raw, vh in out:
        flags, gso, hdr_len, gso_size, cstart, coff = vnet.VNET_HDR.unpack(vh)
        n = len(raw) - 20
        sizes.append(n)
        if n > 1460:
            assert gso == vnet.GSO_TCPV4 and gso_size == 1460 and hdr_len == 54
            assert flags == vnet.F_NEEDS_CSUM and (cstart, coff) == (34, 16)
        assert int.from_bytes(raw[16:18], "big") == checksum.pseudo_header_sum(
            LOCAL, REMOTE, 6, len(raw))
    assert sum(sizes) == 14600 and sizes[0] == 14600          # IW10 in one GSO frame
    for _ in range(6):                                        # grow cwnd; frames stay <= 64 KB
        h.send("A", seq=P, ack=conn.snd_nxt)
        h.step()
        for dst, raw, vh in h.out:
            n = len(raw) - 20
            assert n <= 65000
            if not raw[13] & 0x08:                            # all but the last (PSH) frame
                assert n % 1460 == 0                          # whole MSS multiples
        h.out.clear()
    assert conn.snd_nxt - conn.iss - 1 == 100000


def test_gso_with_timestamps_hdr_len():
    h = Harness(csum_offload=True, gso=True, timestamps=True)
    h.send("S", seq=1000, options=[("MSS", 1460), ("Timestamp", (1, 0))])
    sa = h.reply()
    h.send("A", seq=P, ack=sa.seq + 1, options=[("NOP", None), ("NOP", None), ("Timestamp", (2, sa.opts.tsval))])
    conn = h.events()[0][1]
    conn.send(b"t" * 5000)
    h.step()
    (dst, raw, vh), = h.out
    flags, gso, hdr_len, gso_size, cstart, coff = vnet.VNET_HDR.unpack(vh)
    assert gso == vnet.GSO_TCPV4 and gso_size == 1448 and hdr_len == 14 + 20 + 32
    assert len(raw) == 32 + 5000 and raw[0:2]
