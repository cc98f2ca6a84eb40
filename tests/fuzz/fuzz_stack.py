"""Coverage-guided fuzz target: frames into the user-level stack (``Stack.process``).

    FRAMEWORK_PURE_PYTHON=1 python -m tests.fuzz.fuzz_stack [CORPUS_DIR] [-max_total_time=600]

Atheris instruments Python bytecode only, so the target runs the framework as plain
Python (``FRAMEWORK_PURE_PYTHON=1``, set by tests/fuzz/runner.py before ``framework`` is
imported): the compiled stack would be invisible to the fuzzer's coverage feedback. The
code is the same .py the Cython build compiles.

Each input starts from the same stack (its first byte picks a configuration: by default
NewReno, timestamps, SACK, window scale, no offloads, MTU 1500): a real TcpLayer,
a listener on port 80, the peer's MAC learnt, one connection ESTABLISHED by a Linux-like
handshake (flow 0, peer port 40000), one active open waiting in SYN_SENT (flow 1, to the
peer's port 5000), an echo application above (it reads what arrives and sends it back).
The input is then a script of operations, most of them built around what the peer knows
of each flow so they reach the TCP state machine instead of dying at a checksum:

  RAW    a frame as given (vnet header + Ethernet + anything)
  IPV4   a valid IPv4 header (fuzzed protocol, fragment field, source) over fuzzed bytes
  SEG    a TCP segment on a flow (one of four, or one of 64 more new ones): fuzzed
         flags, window, options (or timestamps / SACK blocks above SND.UNA), payload,
         sequence and ACK as deltas from the flow's expected numbers (or duplicate ACKs
         of SND.UNA); checksum right, trusted (vnet F_DATA_VALID) or wrong
  ICMP   a destination unreachable / fragmentation needed quoting a flow's segment
  TIME   advance the clock (timers: RTO, TLP, delayed ACK, keep-alive, TIME_WAIT, ARP)
  APP    the application sends, shuts down, closes or aborts a connection, stops or
         starts reading (a 16 KiB receive window fills), or the layer changes handover
         mode (standby, retiring, successor, alone: tcp/handover.py)
  ACK    the peer acknowledges everything the stack sent on a flow

Frames the stack sends go back into the peer's model (sequence numbers, timestamps, ARP
requests answered). A crash: any exception out of the stack (it must never raise on a bad
frame) or ``drop.internal`` counting one (the stack's last-resort catch: a frame it could
not classify is a bug; the traceback of the swallowed exception is in the report), or a
broken invariant of the TCP layer (``Peer.check``: sequence order, buffer accounting and
bounds, the SYN queue's count). The application's documented ``ConnectionClosed`` on a
send after close is not a crash.
"""
import struct
import sys
import traceback

STACK_IP = "198.18.0.2"
VIP = "198.18.0.9"
PEER_IP = "198.18.0.1"
STACK_MAC = bytes.fromhex("026600000002")
PEER_MAC = bytes.fromhex("020000000001")
PORT = 80
PEER_PORT = 40000          # flow 0: accepted, established
ACTIVE_PORT = 5000         # flow 1: our connect(), SYN_SENT
M32 = 0xFFFFFFFF
SYN, ACK, FIN, PSH, RST = 0x02, 0x10, 0x01, 0x08, 0x04

OP_RAW, OP_IPV4, OP_SEG, OP_ICMP, OP_TIME, OP_APP, OP_ACK = range(7)
_N_OPS = 7
# SEG is picked more often than the others (the TCP state machine is the deep part)
_OP_OF = (OP_RAW, OP_IPV4, OP_SEG, OP_SEG, OP_SEG, OP_SEG, OP_ICMP, OP_TIME, OP_TIME,
          OP_APP, OP_ACK)

_ETH = struct.Struct("!6s6sH")
_IP = struct.Struct("!BBHHHBBHII")
_TCP = struct.Struct("!HHIIBBHHH")

_m = None   # the framework modules, once load() ran


class FuzzFailure(AssertionError):
    """What the target reports as a crash."""


def load():
    global _m
    if _m is None:
        from framework.net import checksum
        from framework.net.stack import Stack
        from framework.net.tcp import TcpConfig
        from framework.net.tcp import handover
        from framework import native
        from framework.net.tcp.consts import SYN_RECEIVED, TIME_WAIT, ConnectionClosed
        from framework.net.wire import vnet
        from framework.net.wire.ipv4 import ip_to_int
        _m = dict(checksum=checksum, Stack=Stack, TcpConfig=TcpConfig,
                  ConnectionClosed=ConnectionClosed, vnet=vnet, handover=handover,
                  ip_to_int=ip_to_int, compiled=native.MODE == "compiled",
                  TIME_WAIT=TIME_WAIT, SYN_RECEIVED=SYN_RECEIVED)
    return _m


class Reader:
    """The input as a stream of small fields (zeros once it runs out)."""

    def __init__(self, data):
        self.d = data
        self.i = 0

    def left(self):
        return len(self.d) - self.i

    def u8(self):
        i = self.i
        self.i += 1
        return self.d[i] if i < len(self.d) else 0

    def u16(self):
        return self.u8() << 8 | self.u8()

    def s16(self):
        v = self.u16()
        return v - 0x10000 if v & 0x8000 else v

    def u32(self):
        return self.u16() << 16 | self.u16()

    def blob(self, cap=2048):
        n = min(self.u16(), cap)
        b = self.d[self.i:self.i + n]
        self.i += n
        return b


class Flow:
    """What the peer knows of one TCP flow (its own numbers and the stack's)."""

    def __init__(self, pport, lport, snd):
        self.pport = pport     # the peer's port
        self.lport = lport     # the stack's port
        self.snd = snd         # the peer's next sequence number
        self.rcv = 0           # the stack's next sequence number (what the peer ACKs)
        self.una = 0           # the highest the peer has ACKed (SND.UNA as the stack sees it)
        self.tsecr = 0


class Peer:
    """The stack under test and a Linux-like peer feeding it."""

    def __init__(self, variant=0):
        m = load()
        self.m = m
        self.cs = m["checksum"]
        self.vnet = m["vnet"]
        ip = m["ip_to_int"]
        self.sip, self.vip, self.pip = ip(STACK_IP), ip(VIP), ip(PEER_IP)
        cfg = m["TcpConfig"](random_seed=b"fuzz", rcvbuf=16 << 10, sndbuf=64 << 10,
                             tx_burst=8, cc="cubic" if variant & 1 else "newreno",
                             timestamps=not variant & 2, sack=not variant & 4,
                             window_scale=not variant & 8, nagle=bool(variant & 16))
        offload = bool(variant & 32)
        self.stack = m["Stack"](mac=STACK_MAC, ip=STACK_IP, prefix=24, csum_offload=offload,
                                gso=offload, tcp_config=cfg, vips=(VIP,),
                                mtu=(1500, 9000, 576, 1280)[variant >> 6])
        self.tcp = self.stack.tcp
        self.tcp.listen(PORT, backlog=4)
        self.now = 100.0
        self.ts = 1000
        self.ipid = 0
        self.conns = {}        # the stack's key -> Connection, for the echo application
        self.flows = [Flow(PEER_PORT, PORT, 7000), Flow(ACTIVE_PORT, 0, 3000),
                      Flow(40001, PORT, 9000), Flow(40002, 81, 1234)]
        self.extra = {}
        self.reading = True     # the application reads what arrives (APP toggles it)
        self.swallowed = []
        self._later = []
        self._trace_internal()
        self.frame_in(self.arp(2, STACK_MAC, self.sip))      # the peer's MAC, learnt
        f = self.flows[0]
        self.frame_in(self.tcp_frame(f, f.snd, 0, SYN, self.syn_opts(), win=64240))
        f.snd += 1
        self.frame_in(self.tcp_frame(f, f.snd, f.rcv, ACK, self.ts_opt(f)))
        conn = self.tcp.connect(self.pip, ACTIVE_PORT, self.now)
        self.conns[conn.key] = conn
        self.flows[1].lport = conn.key[2]
        self.dispatch()
        if len(self.conns) != 2:
            raise RuntimeError(f"setup: no established connection ({self.stack.counters})")

    def _trace_internal(self):
        """Keep the traceback of what the stack's last-resort catch swallows (plain Python
        only: the compiled Ipv4Layer's attributes are C fields)."""
        ipv4 = self.stack.ipv4

        def traced(fn):
            def call(*a):
                try:
                    return fn(*a)
                except Exception:
                    self.swallowed.append(traceback.format_exc())
                    raise
            return call
        try:
            for name in ("tcp_input", "icmp_input", "other"):
                setattr(ipv4, name, traced(getattr(ipv4, name)))
            for vip, (t, i) in list(ipv4.local_extra.items()):
                ipv4.local_extra[vip] = (traced(t), traced(i))
        except AttributeError:
            pass

    # ---- frames in
    def eth(self, etype, payload):
        return self.vnet.PLAIN + _ETH.pack(STACK_MAC, PEER_MAC, etype) + payload

    def arp(self, op, tha, tpa):
        return self.eth(0x0806, struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, PEER_MAC,
                                            self.pip.to_bytes(4, "big"), tha,
                                            tpa.to_bytes(4, "big")))

    def ipv4(self, proto, payload, src=None, dst=None, frag=0x4000, options=b""):
        self.ipid = (self.ipid + 1) & 0xFFFF
        ihl = 5 + len(options) // 4
        h = _IP.pack(0x40 | ihl, 0, 4 * ihl + len(payload), self.ipid, frag, 64, proto, 0,
                     self.pip if src is None else src, self.sip if dst is None else dst)
        h += options
        h = h[:10] + struct.pack("!H", self.cs.checksum(h)) + h[12:]
        return h + payload

    def tcp_frame(self, f, seq, ack, flags, options=b"", payload=b"", win=502, csum=0,
                  dst=None):
        doff = (20 + len(options)) // 4
        seg = _TCP.pack(f.pport, f.lport, seq & M32, ack & M32, (doff & 15) << 4, flags & 0xFF,
                        win, 0, 0) + options + payload
        dst = self.sip if dst is None else dst
        vh = self.vnet.PLAIN
        if csum == 0:       # right
            s = self.cs.l4_checksum(self.pip, dst, 6, seg)
            seg = seg[:16] + struct.pack("!H", s) + seg[18:]
        elif csum == 1:     # not computed, the vnet header says it was checked
            vh = self.vnet.VNET_HDR.pack(self.vnet.F_DATA_VALID, 0, 0, 0, 0, 0)
        return vh + self.eth(0x0800, self.ipv4(6, seg, dst=dst))[10:]

    def ts_opt(self, f):
        self.ts = (self.ts + 1) & M32
        return struct.pack("!BBBBII", 1, 1, 8, 10, self.ts, f.tsecr)

    def syn_opts(self):
        self.ts = (self.ts + 1) & M32
        return struct.pack("!BBHBBBBIIBBBB", 2, 4, 1460, 4, 2, 8, 10, self.ts, 0, 1, 3, 3, 7)

    def frame_in(self, frame):
        before = len(self.swallowed)
        self.stack.process([frame], self.now)
        self.dispatch()
        internal = self.stack.counters["drop.internal"]
        if internal or len(self.swallowed) > before:
            raise FuzzFailure("the stack's last-resort catch took a frame "
                              f"(drop.internal={internal}):\n" + "".join(self.swallowed)
                              + f"\nframe: {bytes(frame).hex()}")

    # ---- frames out: the peer's side
    def dispatch(self):
        for _ in range(2):      # what the application sent in answer leaves at once
            for fr in self.stack.dispatch(self.now):
                self.frame_out(fr)
            self.app()

    def frame_out(self, fr):
        if fr[22:24] == b"\x08\x06":
            if fr[30:32] == b"\x00\x01" and fr[48:52] == self.pip.to_bytes(4, "big"):
                self._later.append(self.arp(2, bytes(fr[32:38]),
                                            int.from_bytes(fr[38:42], "big")))
            return
        if fr[22:24] != b"\x08\x00" or fr[33] != 6:
            return
        t = 24 + (fr[24] & 15) * 4
        sport, dport, seq, ack, off, flags, _w, _c, _u = _TCP.unpack_from(fr, t)
        hl = (off >> 4) * 4
        end = 24 + (fr[26] << 8 | fr[27])
        ln = end - t - hl + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        for f in self.flows:
            if f.pport == dport and f.lport == sport:
                if flags & SYN:
                    f.una = seq
                f.rcv = (seq + ln) & M32
                i = t + 20
                while i < t + hl:
                    k = fr[i]
                    if k == 0:
                        break
                    if k == 1:
                        i += 1
                        continue
                    if k == 8 and i + 10 <= t + hl:
                        f.tsecr = int.from_bytes(fr[i + 2:i + 6], "big")
                    i += max(fr[i + 1], 2)

    def app(self):
        """An echo application: accept, read (unless paused), send it back; forget
        closed connections. The events are drained in place, as the shard does: the VIP's
        layer shares the list (take_events() would unshare it, CONTRACTS 3)."""
        closed = self.m["ConnectionClosed"]
        events = self.tcp.events
        batch = events[:]
        del events[:]
        for ev, conn in batch:
            if ev in (1, 2):
                self.conns[conn.key] = conn
            elif ev == 3:
                if not self.reading:
                    continue
                data = conn.recv()
                try:
                    conn.send(data[:4096])
                except closed:
                    pass
            elif ev == 5:
                conn.recv()
                conn.shutdown()
            elif ev in (6, 7, 8):
                self.conns.pop(conn.key, None)

    # ---- operations
    def run(self, data):
        r = Reader(data)
        self._later = []
        while r.left() > 0:
            op = _OP_OF[r.u8() % len(_OP_OF)]
            frame = getattr(self, "_op%d" % op)(r)
            if frame is not None:
                self.frame_in(frame)
            while self._later:
                self.frame_in(self._later.pop(0))
            self.check()

    def check(self):
        """What must hold of the TCP layer between any two frames (plain Python only:
        compiled, these are C fields). A broken one is a crash like an exception."""
        if self.m["compiled"]:
            return
        tcp = self.tcp
        tw, syn_rcvd = self.m["TIME_WAIT"], self.m["SYN_RECEIVED"]
        # the VIP's layer shares the listeners: its SYN_RECEIVED flows count there too
        flows = [kc for layer in self.stack.tcp_layers for kc in layer.flows.items()]
        listeners = {lst.port: lst for lst in tcp.listeners.values()}
        in_syn_queue = dict.fromkeys(listeners, 0)
        for key, c in flows:
            if c.key != key:
                raise FuzzFailure(f"flows[{key}] holds {c.key}")
            if c.state == tw:
                continue
            if (c.snd_nxt - c.snd_una) & M32 >= 0x80000000 or \
                    (c.snd_max - c.snd_nxt) & M32 >= 0x80000000:
                raise FuzzFailure(f"{c}: not SND.UNA <= SND.NXT <= SND.MAX "
                                  f"({c.snd_una}, {c.snd_nxt}, {c.snd_max})")
            if c.rcvlen != sum(len(x) for x in c.rcvq):
                raise FuzzFailure(f"{c}: rcvlen {c.rcvlen} != the receive queue's "
                                  f"{sum(len(x) for x in c.rcvq)} bytes")
            if len(c.sndbuf) > tcp.sndbuf:
                raise FuzzFailure(f"{c}: {len(c.sndbuf)} bytes buffered, over sndbuf")
            held = c.rcvlen + (sum(len(x[1]) for x in c.ooo) if c.ooo else 0)
            if held > tcp.rcvbuf:       # what a peer can make us hold: the window
                raise FuzzFailure(f"{c}: {held} bytes received and held, over rcvbuf")
            if c.state == syn_rcvd and c.listener is not None:
                in_syn_queue[c.listener.port] += 1
        for port, lst in listeners.items():
            if lst.syn_count != in_syn_queue[port] or lst.acc_count < 0:
                raise FuzzFailure(f"listener {port}: syn_count {lst.syn_count}, "
                                  f"{in_syn_queue[port]} in SYN_RECEIVED, "
                                  f"acc_count {lst.acc_count}")

    def _op0(self, r):        # RAW
        return r.blob()

    def _op1(self, r):        # IPV4
        proto = r.u8()
        frag = r.u16()
        which = r.u8()
        src = (self.pip, self.pip ^ (r.u8() << 8), 0x7F000001, 0xE0000001)[which & 3]
        dst = (self.sip, self.vip, 0xFFFFFFFF, self.sip + 1)[(which >> 2) & 3]
        opts = bytes(r.u8() for _ in range(4 * ((which >> 4) & 3)))
        return self.eth(0x0800, self.ipv4(proto, r.blob(), src, dst, frag, opts))

    def _flow(self, r):
        """One of the four set-up flows, or (high bit) one of 64 more peer ports to port
        80: new connections, enough of them to fill the SYN queue (SYN cookies)."""
        b = r.u8()
        if not b & 0x80:
            return self.flows[b & 3]
        port = 41000 + (b & 63)
        f = self.extra.get(port)
        if f is None:
            f = self.extra[port] = Flow(port, PORT, 20000 * (b & 63))
            self.flows.append(f)
        return f

    def _acked(self, f, flags, ack):
        if flags & ACK and (ack - f.una) & M32 < 0x80000000:
            f.una = ack & M32

    def _op2(self, r):        # SEG
        f = self._flow(r)
        flags = r.u8()
        mode = r.u8()
        csum = (mode >> 4) & 3
        seq = f.snd + r.s16() if mode & 1 else f.snd
        base = f.una if csum == 3 else f.rcv       # 3: right checksum, a duplicate ACK
        ack = base + r.s16() if mode & 2 else base
        win = r.u16()
        kind = (mode >> 2) & 3
        if kind == 0:
            opts = b""
        elif kind == 1:
            opts = self.ts_opt(f)
        elif kind == 2:         # SACK blocks around what the stack sent, and timestamps
            blocks = []
            for _ in range(1 + (r.u8() & 3)):
                left = (f.una + r.u16()) & M32
                blocks.append(struct.pack("!II", left, (left + r.u16()) & M32))
            opts = b"\x01\x01\x05" + bytes([2 + 8 * len(blocks)]) + b"".join(blocks)
            opts = opts if len(opts) + 12 > 40 else opts + b"\x01\x01" + self.ts_opt(f)[2:]
        else:
            opts = bytes(r.u8() for _ in range(min(r.u8() & 15, 10) * 4))
        payload = r.blob(4000)
        if csum == 3:
            csum = 0
        dst = self.vip if mode & 0x40 else None
        if mode & 0x80 and payload:
            f.snd = (seq + len(payload)) & M32    # the peer believes it sent them in order
        if flags & SYN:
            f.snd = (seq + 1) & M32 if f.pport != PEER_PORT else f.snd
        self._acked(f, flags, ack)
        return self.tcp_frame(f, seq, ack, flags, opts, payload, win, csum, dst)

    def _op3(self, r):        # ICMP error quoting a segment of ours
        f = self._flow(r)
        code = r.u8()
        typ = 3 if code < 0x80 else r.u8()
        mtu = r.u16()
        quoted = _IP.pack(0x45, 0, 40 + (r.u8() << 2), 0, 0x4000, 64, 6, 0, self.sip,
                          self.pip) + struct.pack("!HHI", f.lport, f.pport,
                                                  (f.rcv + r.s16()) & M32)
        body = struct.pack("!BBHHH", typ, code & 0x1F, 0, 0, mtu) + quoted[:20 + (r.u8() & 31)]
        body = body[:2] + struct.pack("!H", self.cs.checksum(body)) + body[4:]
        return self.eth(0x0800, self.ipv4(1, body))

    def _op4(self, r):        # TIME
        b = r.u8()
        self.now += (b & 63) * 0.01 * (1 << (b >> 6) * 4)    # up to about 2.6 minutes
        self.dispatch()
        return None

    def _op5(self, r):        # APP
        action = r.u8()
        a = action & 15
        if a >= 8:
            self._handover(a)
            self.dispatch()
            return None
        if not self.conns:
            return None
        conns = sorted(self.conns.items())
        conn = conns[(action >> 4) % len(conns)][1]
        try:
            if a <= 2:
                conn.send(b"y" * (1 + r.u16() % 20000))
            elif a == 3:
                conn.shutdown()
            elif a == 4:
                conn.close()
            elif a == 5:
                conn.abort()
            elif a == 6:
                conn.set_keepalive(True, idle=1.0, intvl=0.5, cnt=3)
            else:
                # stop reading (the receive window fills) or start again (read what waits)
                self.reading = not self.reading
                if self.reading:
                    for c in self.conns.values():
                        if c.readable():
                            try:
                                c.send(c.recv()[:4096])
                            except self.m["ConnectionClosed"]:
                                pass
        except self.m["ConnectionClosed"]:
            pass
        self.dispatch()
        return None

    def _handover(self, a):
        """A zero-downtime reload's modes (tcp/handover.py): what a worker answers while
        another one shares its queue."""
        ho = self.m["handover"]
        tcp = self.tcp
        if a == 8:
            ho.retire(tcp)
        elif a == 9:
            tcp.handover = ho.STANDBY
        elif a == 10:
            flows = {k for k, _ in ho.flows_of(tcp)}
            ho.take_over(tcp, flows, {k for k, hs in ho.flows_of(tcp) if hs}, self.now)
        else:
            ho.alone(tcp)

    def _op6(self, r):        # ACK everything
        f = self._flow(r)
        f.una = f.rcv
        return self.tcp_frame(f, f.snd, f.rcv, ACK, self.ts_opt(f), win=r.u16() | 0x100)


def one_input(data):
    """The first byte picks the stack's configuration (``Peer``: congestion control,
    timestamps, SACK, window scaling, Nagle, offloads, MTU); the rest is the script."""
    if data:
        Peer(data[0]).run(data[1:])


def _seg(flow, flags, mode=0b0100, payload=b"", win=502):
    return bytes([2, flow, flags, mode]) + struct.pack("!H", win) + struct.pack(
        "!H", len(payload)) + payload


def seeds():
    """Inputs for an empty corpus: a request and its echo, a close, loss and SACK
    recovery, a SYN flood, TIME_WAIT."""
    req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    ack = bytes([10, 0, 1, 0])             # ACK all on flow 0
    t = lambda b: bytes([7, b])            # noqa: E731  TIME
    sack = bytes([2, 0, ACK, 0b0100_1000, 0x01, 0, 1, 0, 0, 0x02, 0x00, 0, 0])
    send_flow0 = bytes([9, 0x10]) + struct.pack("!H", 14000)   # APP: 14000 bytes on flow 0

    def dupack_sack(blocks):           # a duplicate ACK of SND.UNA with SACK blocks above
        body = bytes([2, 0, ACK, 0b0011_1000]) + struct.pack("!HB", 502, len(blocks) - 1)
        for left, ln in blocks:
            body += struct.pack("!HH", left, ln)
        return body + struct.pack("!H", 0)
    fill = _seg(0, ACK | PSH, 0b1000_0100, b"z" * 4000)
    full_window = bytes([9, 0x07]) + fill * 5 + t(0x50) + bytes([9, 0x07]) + t(5) + ack
    syn_flood = b"".join(_seg(0x80 | k, SYN, 0b0100, win=64240) for k in range(8))
    scripts = [
        send_flow0 + dupack_sack([(2920, 1460)]) + dupack_sack([(2920, 2920)])
        + dupack_sack([(2920, 4380)]) + dupack_sack([(2920, 5840), (10220, 1460)]) + ack,
        send_flow0 + t(0x60) + t(0x60) + ack,
        full_window,
        syn_flood + _seg(0x81, ACK, 0b0100) + t(0x50),
        bytes([9, 0x18]) + bytes([10, 0, 1, 0]) + _seg(0, FIN | ACK) + t(10) + _seg(0, SYN)
        + t(255),
        _seg(0, ACK | PSH, 0b1000_0100, req) + ack,
        _seg(0, ACK | PSH, 0b1000_0100, req * 3) + t(30) + ack + _seg(0, FIN | ACK) + t(100),
        bytes([9, 0x00, 0, 200]) + sack + sack + sack + t(0x50) + ack,
        _seg(1, SYN | ACK, 0b0100) + _seg(1, ACK | PSH, 0b1000_0100, b"hi") + t(200),
        _seg(2, SYN, 0b0100) + bytes([10, 2, 1, 0]) + _seg(2, RST, 0),
        bytes([6, 0, 4, 0x05, 0xdc, 0, 0, 0, 8]) + bytes([6, 1, 1, 0, 0, 0, 0, 0, 0]),
        bytes([1, 1, 0x20, 0x00, 0, 0, 8]) + b"\x08\x00\xf7\xff\x00\x00\x00\x00",
        bytes([0, 0, 20]) + bytes(20),
        bytes([9, 0x05]) + bytes([9, 0x16]) + t(255) + t(255),
    ]
    # the default configuration for each, and a few others for the loss/recovery ones
    return ([b"\x00" + x for x in scripts]
            + [bytes([v]) + x for v in (0x01, 0x02, 0x04, 0x08, 0x30, 0x80) for x in scripts[:2]])


def main(argv=None):
    from tests.fuzz import runner
    runner.main("stack", argv or sys.argv, load, one_input, seeds)


if __name__ == "__main__":
    main()
