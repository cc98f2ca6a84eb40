"""forward.py: frames crossing shards over real shm rings (no network)."""
import struct

from framework.nic import steer
from framework.shard import forward

VNET = bytes(10)


def eth(etype, payload=b""):
    return VNET + b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + etype + payload


def tcp_frame(saddr, daddr, sport, dport):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0,
                     saddr.to_bytes(4, "big"), daddr.to_bytes(4, "big"))
    return eth(b"\x08\x00", ip + struct.pack("!HH", sport, dport) + bytes(16))


def test_non_ip_frames_reach_every_shard(run):
    runid, objs = run
    bells, rings = forward.create_all(runid, 3, forward.MODE_NON_IP)
    objs += list(bells.values()) + list(rings.values())
    f = [forward.for_shard(k, 3, bells, rings, forward.MODE_NON_IP) for k in range(3)]
    arp = eth(b"\x08\x06", bytes(28))
    ip = tcp_frame(0xC6120001, 0xC6120002, 40000, 8080)
    assert f[1].steer([ip, arp]) == [ip, arp]     # everything stays; ARP is also copied
    assert not f[1].pending()
    assert f[0].pending() and f[2].pending()
    assert f[0].receive() == [arp] and f[2].receive() == [arp]
    assert f[1].counters["fwd.out"] == 2 and f[0].counters["fwd.in"] == 1


def test_classify_sends_each_flow_to_its_owner(run):
    runid, objs = run
    n = 2
    bells, rings = forward.create_all(runid, n, forward.MODE_CLASSIFY)
    objs += list(bells.values()) + list(rings.values())
    f = [forward.for_shard(k, n, bells, rings, forward.MODE_CLASSIFY) for k in range(n)]
    frames = [tcp_frame(0xC6120001, 0xC6120002, p, 8080) for p in range(40000, 40100)]
    owners = [steer.shard_of(0xC6120001, 0xC6120002, p, 8080, n) for p in range(40000, 40100)]
    kept = f[0].steer(frames)
    assert kept == [fr for fr, o in zip(frames, owners) if o == 0]
    # the sleeping owner's doorbell was rung
    assert f[1].receive(1000) == [fr for fr, o in zip(frames, owners) if o == 1]
    assert f[1].receive() is None


def test_doorbell_rings_a_sleeping_consumer(run):
    import select
    runid, objs = run
    bells, rings = forward.create_all(runid, 2, forward.MODE_NON_IP)
    objs += list(bells.values()) + list(rings.values())
    a, b = (forward.for_shard(k, 2, bells, rings, forward.MODE_NON_IP) for k in range(2))
    b.bell.prepare_sleep()
    assert not b.pending()
    a.steer([eth(b"\x08\x06", bytes(28))])
    p = select.poll()
    p.register(b.bell.fileno(), select.POLLIN)
    assert p.poll(1000), "producer did not ring the sleeping consumer"
    b.bell.drain()
    b.bell.awake()
    assert len(b.receive()) == 1
