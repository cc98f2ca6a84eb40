"""handoff.HandoverPort: two workers taking turns on a queue that has one reader (TAP),
over real shm rings (no network). One MemoryPort stands for the queue both hold."""
import os
import struct


from framework.context import ShardContext
from framework.net.stack import Stack
from framework.net.tcp import handover
from framework.nic.memory import MemoryPort
from framework.shard import forward, handoff
from framework.shard.loop import ShardLoop
from framework.shard.userstack import UserStackProvider
from framework.shm import naming

VNET = bytes(10)
LOCAL, REMOTE = 0xC6120002, 0xC6120001


def eth(etype, payload=b""):
    return VNET + b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + etype + payload


def tcp_frame(sport, flags=0x10, dport=8080):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0,
                     REMOTE.to_bytes(4, "big"), LOCAL.to_bytes(4, "big"))
    return eth(b"\x08\x00", ip + struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 0x50, flags,
                                             65535, 0, 0))


ARP = eth(b"\x08\x06", bytes(28))


class Layer:
    def __init__(self):
        self.flows = {}


def test_the_queue_has_one_reader_at_a_time_and_the_old_flows_reach_the_old_worker(run):
    runid, objs = run
    bells, rings = forward.create_all(runid, 2, forward.MODE_NON_IP)
    objs += list(bells.values()) + list(rings.values())
    queue = MemoryPort()
    objs.append(queue)
    other = forward.for_shard(1, 2, bells, rings, forward.MODE_NON_IP)   # shard 1

    def worker():
        fwd = forward.ForwardingPort(queue, forward.for_shard(0, 2, bells, rings,
                                                              forward.MODE_NON_IP))
        return handoff.HandoverPort(fwd, runid, 0, bells[0])

    old, new = worker(), worker()
    assert old.reading and old.rx_burst == old.inner.rx_burst     # nothing between
    new.standby()
    assert not new.reading
    a, b = tcp_frame(41000), tcp_frame(43000)
    queue.inject([a])
    assert new.rx_burst() == [] and not new.rx_pending()
    assert old.rx_burst() == [a]
    # retired: the old worker reads neither the queue nor the forwarding rings
    old.retire()
    assert not old.reading
    queue.inject([a, b, ARP])
    other.steer([ARP])                           # shard 1 forwards an ARP frame to shard 0
    assert old.rx_burst() == [] and not old.rx_pending()
    # the successor: every frame of the queue and the rings; the old one's flow passed on
    theirs = {LOCAL: ({(REMOTE, 41000, 8080)}, set())}
    new.take_over({LOCAL: Layer()}, theirs)
    assert new.reading and new.wake_within() == handoff.RING_POLL
    assert new.rx_burst() == [b, ARP, ARP]
    assert old.rx_pending()
    assert old.rx_burst() == [a, ARP, ARP]
    assert new.passed == 3 and new.pass_drops == 0
    # alone: the inner port's own methods again, the ring's name gone
    new.alone()
    assert new.reading and new.wake_within() is None
    assert new.rx_burst == new.inner.rx_burst
    ring_file = naming.shm_path(runid, handoff.frames_purpose(0))
    assert not os.path.exists(ring_file)
    old.close()


def test_a_successor_whose_predecessor_never_retired_keeps_everything(run):
    runid, objs = run
    queue = MemoryPort()
    objs.append(queue)
    new = handoff.HandoverPort(queue, runid, 0)
    new.standby()
    new.take_over({LOCAL: Layer()}, {LOCAL: ({(REMOTE, 41000, 8080)}, set())})
    a = tcp_frame(41000)
    queue.inject([a])
    assert new.rx_burst() == [a] and new.passed == 0
    assert new.wake_within() is None             # no forwarding rings under it
    new.close()


def test_the_provider_watches_the_queue_only_while_it_reads_it(run, tmp_path):
    runid, objs = run
    queue = MemoryPort()
    port = handoff.HandoverPort(queue, runid, 0)
    stack = Stack(mac=b"\x02\x00\x00\x00\x00\x02", ip="198.18.0.2", prefix=24)
    provider = UserStackProvider(port, stack)
    provider.standby()
    loop = ShardLoop()
    objs.append(loop)
    loop.attach(provider, ShardContext(loop, 0, 1))
    native = loop._sel.native
    assert queue.fileno() not in native            # standby: the old worker reads it
    path = str(tmp_path / "flows")
    handover.write_flows(path, [])
    provider.take_over(path, 0.0)
    assert queue.fileno() in native
    assert stack.tcp.handover == handover.SUCCESSOR
    provider.retire(path)                          # (a later handover: now it is the old one)
    assert queue.fileno() not in native and port.mode == handoff.RETIRED
    provider.alone()
    assert queue.fileno() in native
    provider.close()
