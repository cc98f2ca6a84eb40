"""Drive a TcpLayer directly (smoltcp style): a fake ip_output that collects segments,
a fake clock, segments built and parsed with scapy."""
import ipaddress

from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from framework.net import checksum
from framework.net.tcp import TcpConfig, TcpLayer
from framework.net.wire.tcp import parse_options

LOCAL_S = "198.18.0.2"
REMOTE_S = "198.18.0.1"
LOCAL = int(ipaddress.IPv4Address(LOCAL_S))
REMOTE = int(ipaddress.IPv4Address(REMOTE_S))
M = 0xFFFFFFFF


class Seg:
    """A parsed reply: scapy's TCP plus the raw bytes and vnet header."""

    def __init__(self, dst, raw, vh):
        self.dst = dst
        self.raw = raw
        self.vh = vh
        self.tcp = TCP(raw)
        self.flags = str(self.tcp.flags)
        self.seq = self.tcp.seq
        self.ack = self.tcp.ack
        self.win = self.tcp.window
        self.payload = bytes(self.tcp.payload)
        self.opts = parse_options(raw, 20, self.tcp.dataofs * 4)

    def __repr__(self):
        return (f"<Seg {self.flags} seq={self.seq} ack={self.ack} win={self.win} "
                f"len={len(self.payload)} {self.opts}>")


class Harness:
    def __init__(self, config=None, mtu=1500, csum_offload=False, gso=False, listen=80,
                 layer_class=TcpLayer, **cfg):
        if config is None:
            cfg.setdefault("timestamps", False)
            cfg.setdefault("window_scale", False)
            config = TcpConfig(**cfg)
        self.out = []
        self.now = 100.0
        self.tcp = layer_class(self._ip_output, LOCAL, mtu, csum_offload, gso, config)
        if listen:
            self.tcp.listen(listen)

    def _ip_output(self, dst, proto, seg, vh):
        assert proto == 6
        self.out.append((dst, bytes(seg), bytes(vh)))

    # ---- input
    def packet(self, flags="A", seq=0, ack=0, win=65535, data=b"", options=(), sport=40000,
               dport=80, src=REMOTE_S):
        pkt = IP(src=src, dst=LOCAL_S) / TCP(sport=sport, dport=dport, flags=flags, seq=seq & M,
                                             ack=ack & M, window=win, options=list(options))
        if data:
            pkt = pkt / Raw(data)
        return bytes(pkt)

    def send(self, flags="A", seq=0, ack=0, win=65535, data=b"", options=(), sport=40000,
             dport=80, src=REMOTE_S, trusted=False):
        b = self.packet(flags, seq, ack, win, data, options, sport, dport, src)
        self.tcp.input(b, int(ipaddress.IPv4Address(src)), LOCAL, 20, len(b), trusted, self.now)

    # ---- output
    def step(self):
        self.tcp.poll(self.now)
        self.tcp.flush(self.now)

    def advance(self, dt):
        self.now += dt
        self.step()

    def replies(self, step=True, verify=True):
        if step:
            self.step()
        out, self.out = self.out, []
        segs = []
        for dst, raw, vh in out:
            if verify and vh[0] == 0:
                assert checksum.verify_l4(LOCAL, dst, 6, raw), "bad TCP checksum"
            segs.append(Seg(dst, raw, vh))
        return segs

    def reply(self, step=True):
        r = self.replies(step)
        assert len(r) == 1, r
        return r[0]

    def no_reply(self, step=True):
        r = self.replies(step)
        assert r == [], r

    def events(self):
        return [(e, c) for e, c in self.tcp.take_events()]

    def event_codes(self):
        return [e for e, _ in self.tcp.take_events()]

    # ---- common scenarios
    def accept(self, isn=1000, win=65535, options=(("MSS", 1460),), sport=40000, dport=80):
        """Complete a passive open; returns (conn, our iss)."""
        self.send("S", seq=isn, win=win, options=options, sport=sport, dport=dport)
        sa = self.reply()
        assert sa.flags == "SA", sa
        self.send("A", seq=isn + 1, ack=sa.seq + 1, win=win, sport=sport, dport=dport,
                  options=_ts_reply(options, sa))
        evs = self.tcp.take_events()
        assert evs and evs[-1][0] == 1, evs  # EV_ACCEPT
        return evs[-1][1], sa.seq

    def connect(self, isn=5000, win=65535, dport=80, options=(("MSS", 1460),)):
        conn = self.tcp.connect(REMOTE, dport, self.now)
        syn = self.reply()
        assert syn.flags == "S"
        self.send("SA", seq=isn, ack=syn.seq + 1, win=win, options=options, sport=dport,
                  dport=conn.key[2])
        return conn, syn


def _ts_reply(options, sa):
    for k, v in options:
        if k == "Timestamp" and sa.opts.tsval is not None:
            return [("NOP", None), ("NOP", None), ("Timestamp", (v[0] + 1, sa.opts.tsval))]
    return ()
