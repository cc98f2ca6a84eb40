"""Helpers for the pure-stack tests: a stack with a recording TCP layer, scapy frames in,
parsed frames out, and counter deltas (smoltcp style: inject one frame, check the reply)."""
import pytest
from scapy.layers.l2 import Ether

from framework.net.stack import Stack
from framework.net.wire import vnet

MAC = "02:00:00:00:00:02"
IP = "198.18.0.2"
PEER_MAC = "02:00:00:00:00:01"
PEER_IP = "198.18.0.1"
GW_MAC = "02:00:00:00:00:fe"
GW_IP = "198.18.0.254"
FAR_IP = "198.19.5.7"          # off-link, still in 198.18.0.0/15


class RecordingTcp:
    """A TcpLayer stand-in that records what the stack hands it (CONTRACTS 6)."""

    def __init__(self, ip_output, local_ip, mtu, csum_offload, gso, config=None):
        self.ip_output = ip_output
        self.local_ip = local_ip
        self.mtu = mtu
        self.csum_offload = csum_offload
        self.gso = gso
        self.config = config
        self.inputs = []
        self.calls = []
        self.deadline = None
        self.counters = {"tcp.rx": 0}
        self.events = []

    def input(self, frame, src, dst, l4_off, l4_end, csum_trusted, now):
        self.counters["tcp.rx"] += 1
        self.inputs.append((frame, src, dst, l4_off, l4_end, csum_trusted, now))

    def poll(self, now):
        self.calls.append(("poll", now))

    def flush(self, now):
        self.calls.append(("flush", now))

    def poll_at(self):
        return self.deadline


def make_stack(**kw):
    kw.setdefault("mac", MAC)
    kw.setdefault("ip", IP)
    kw.setdefault("tcp_factory", RecordingTcp)
    return Stack(**kw)


@pytest.fixture
def stack():
    return make_stack()


def frame(pkt, hdr=vnet.PLAIN) -> bytes:
    return hdr + bytes(pkt)


def parse(f) -> Ether:
    assert f[:10] == vnet.PLAIN, "the stack's own frames carry a plain vnet header"
    return Ether(f[10:])


def learn_peer(stack, ip=PEER_IP, mac=PEER_MAC, now=0.0):
    """Teach the stack a neighbour the way the wire would: an ARP reply addressed to it."""
    from scapy.layers.l2 import ARP
    stack.process([frame(Ether(dst=MAC, src=mac) / ARP(op=2, hwsrc=mac, psrc=ip, hwdst=MAC, pdst=IP))], now)
    stack.dispatch(now)   # discard anything it produced


def deltas(before: dict, after: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def inject(stack, frames, now=0.0):
    """Process frames, dispatch, return (output frames, counter deltas)."""
    if isinstance(frames, (bytes, bytearray)):
        frames = [frames]
    before = stack.counters
    stack.process(frames, now)
    out = stack.dispatch(now)
    return out, deltas(before, stack.counters)


def drops(d: dict) -> dict:
    return {k: v for k, v in d.items() if k.startswith("drop.")}
