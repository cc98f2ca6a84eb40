import select

from framework.net.wire import vnet
from framework.nic import memory


def readable(port, t=0):
    return bool(select.select([port.fileno()], [], [], t)[0])


def test_pair_both_ways_and_fileno():
    a, b = memory.pair(csum_offload=True, gso=True, mtu=1500)
    try:
        assert a.csum_offload and a.gso and a.mtu == 1500
        assert not readable(b)
        frames = [vnet.PLAIN + bytes([i]) * (60 + i) for i in range(100)]
        assert a.tx_burst(frames) == 100
        assert readable(b) and not readable(a)
        got = b.rx_burst(64)
        assert got == frames[:64] and readable(b)
        got += b.rx_burst(64)
        assert got == frames and not readable(b)
        assert b.tx_burst([b"x" * 70]) == 1 and a.rx_burst() == [b"x" * 70]
        assert a.stats["tx"] == 100 and b.stats["rx"] == 100 and a.stats["rx"] == 1
    finally:
        a.close()
        b.close()


def test_capacity_reports_partial_send():
    a, b = memory.pair(capacity=10)
    try:
        assert a.tx_burst([b"f"] * 25) == 10
        assert len(b.rx_burst(64)) == 10
        assert a.tx_burst([b"f"] * 5) == 5
    finally:
        a.close()
        b.close()
