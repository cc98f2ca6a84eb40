"""framework.pcap: standard pcap (Ethernet, microseconds, vnet header stripped), size cap
and rotation; the files are read back with scapy's rdpcap."""
import os
import struct

from scapy.all import IP, TCP, Ether, rdpcap

from framework.net.wire import vnet
from framework.nic import memory
from framework.net.stack import Stack
from framework.net.tcp.consts import ESTABLISHED
from framework.pcap import FILE_HDR_LEN, MAGIC_US, PcapWriter

A, B = "198.18.9.1", "198.18.9.2"


def ip_int(s):
    return int.from_bytes(bytes(map(int, s.split("."))), "big")


def test_handshake_and_data_captured(tmp_path):
    """Two user-level stacks over an in-memory wire; the server side captures in and out."""
    pa, pb = memory.pair()
    client = Stack(mac=b"\x02\x00\x00\x00\x00\x01", ip=A, prefix=24)
    server = Stack(mac=b"\x02\x00\x00\x00\x00\x02", ip=B, prefix=24)
    server.tcp.listen(80)
    cap = PcapWriter(str(tmp_path), 3)
    now = 1000.0
    conn = client.tcp.connect(ip_int(B), 80, now)
    sent = False
    for i in range(40):
        now += 0.001
        pa.tx_burst(client.dispatch(now))
        frames = pb.rx_burst()
        cap.write(frames, ts=1_700_000_000.25 + i)
        server.process(frames, now)
        for kind, c in server.tcp.events[:]:
            if c.recv:
                data = c.recv()
                if data:
                    c.send(data.upper())
        del server.tcp.events[:]
        out = server.dispatch(now)
        cap.write(out, ts=1_700_000_000.5 + i)
        pb.tx_burst(out)
        client.process(pa.rx_burst(), now)
        del client.tcp.events[:]
        if not sent and conn.state == ESTABLISHED:
            conn.send(b"hello")
            sent = True
    assert sent
    cap.close()
    pa.close()
    pb.close()
    path = tmp_path / "shard3.pcap"
    raw = path.read_bytes()
    magic, vmaj, vmin, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", raw)
    assert (magic, vmaj, vmin, linktype) == (MAGIC_US, 2, 4, 1)
    pkts = rdpcap(str(path))
    tcp = [p for p in pkts if TCP in p]
    flags = [(p[IP].src, str(p[TCP].flags)) for p in tcp]
    assert flags[0] == (A, "S")
    assert flags[1] == (B, "SA")
    syn, synack, third = tcp[0], tcp[1], tcp[2]
    assert synack[TCP].ack == syn[TCP].seq + 1
    # the third segment of the handshake: the client's ACK of the SYN-ACK (data may ride on it)
    assert third[IP].src == A and "A" in str(third[TCP].flags)
    assert third[TCP].ack == synack[TCP].seq + 1 and third[TCP].seq == syn[TCP].seq + 1
    assert any(bytes(p[TCP].payload) == b"hello" for p in tcp)
    assert any(bytes(p[TCP].payload) == b"HELLO" for p in tcp)
    # microsecond timestamps as given
    assert float(pkts[0].time) == 1_700_000_000.25
    assert all(Ether in p for p in pkts)


def frame(i, size=100):
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    pkt = eth / IP(src=A, dst=B) / TCP(sport=1000 + i, dport=80) / (b"x" * size)
    return vnet.PLAIN + bytes(pkt)


def test_size_cap_and_rotation(tmp_path):
    cap = PcapWriter(str(tmp_path), 0, max_bytes=4096, max_files=3)
    frames = [frame(i) for i in range(200)]
    per = 16 + len(frames[0]) - 10
    for f in frames:
        cap.write([f], ts=1.0)
    cap.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["shard0.pcap", "shard0.pcap.1", "shard0.pcap.2"]
    total = 0
    for n in names:
        size = os.path.getsize(tmp_path / n)
        assert size <= 4096
        pk = rdpcap(str(tmp_path / n))
        assert len(pk) == (size - FILE_HDR_LEN) // per
        total += len(pk)
    # the newest frames survive: the live file ends with the last frame written
    last = rdpcap(str(tmp_path / "shard0.pcap"))[-1]
    assert last[TCP].sport == 1000 + 199
    assert cap.rotations >= 2 and total < 200


def test_restart_keeps_the_previous_capture(tmp_path):
    a = PcapWriter(str(tmp_path), 1)
    a.write([frame(1)], ts=5.0)
    a.close()
    b = PcapWriter(str(tmp_path), 1)   # the restarted shard
    b.write([frame(2)], ts=6.0)
    b.close()
    assert rdpcap(str(tmp_path / "shard1.pcap.1"))[0][TCP].sport == 1001
    assert rdpcap(str(tmp_path / "shard1.pcap"))[0][TCP].sport == 1002
    # snaplen: an oversized (GSO) frame is cut at snaplen with its original length kept
    c = PcapWriter(str(tmp_path), 2, snaplen=200)
    c.write([frame(3, size=1000)], ts=7.0)
    c.close()
    raw = (tmp_path / "shard2.pcap").read_bytes()
    _, _, incl, orig = struct.unpack_from("<IIII", raw, FILE_HDR_LEN)
    assert incl == 200 and orig == len(frame(3, size=1000)) - 10
