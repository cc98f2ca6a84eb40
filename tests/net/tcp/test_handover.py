"""Two workers on one queue during a zero-downtime reload (framework/net/tcp/handover.py):
both see every segment; the old one keeps its flows, the new one takes the new flows, and
neither resets a segment of the other's flow. Two TcpLayers fed the same segments."""
from framework.net.tcp import ESTABLISHED, EV_ACCEPT, handover

from .harness import REMOTE, Harness


class Pair:
    """An old and a new worker's layer; ``send`` gives a segment to both."""

    def __init__(self):
        self.old = Harness()
        self.new = Harness()
        self.new.tcp.handover = handover.STANDBY

    def send(self, *a, **kw):
        self.old.send(*a, **kw)
        self.new.send(*a, **kw)

    def retire_and_take_over(self, tmp_path, neighbours=()):
        path = str(tmp_path / "flows")
        handover.retire(self.old.tcp)
        handover.write_flows(path, [self.old.tcp], neighbours)
        got_neighbours, flows = handover.read_flows(path)
        mine, handshakes = flows.get(self.new.tcp.local_ip, (set(), set()))
        handover.take_over(self.new.tcp, mine, handshakes, self.new.now)
        return got_neighbours


def test_standby_answers_nothing_and_resets_nothing():
    p = Pair()
    conn, iss = p.old.accept(sport=41000)
    p.new.send("S", seq=1000, sport=41000)         # (the same SYN the old one answered)
    p.new.send("A", seq=1001, ack=iss + 1, sport=41000)
    p.send("PA", seq=1001, ack=iss + 1, data=b"GET /", sport=41000)
    p.send("A", seq=7, ack=9, sport=42000)          # some flow nobody knows
    p.new.no_reply()
    assert p.new.tcp.flows == {}
    assert p.new.tcp.counters["tcp.rst_sent"] == 0
    assert conn.recv() == b"GET /"


def test_retiring_keeps_its_flows_leaves_new_ones_and_never_resets(tmp_path):
    p = Pair()
    conn, iss = p.old.accept(sport=41000)
    p.retire_and_take_over(tmp_path)
    # its own flow goes on
    p.send("PA", seq=1001, ack=iss + 1, data=b"GET /", sport=41000)
    assert conn.recv() == b"GET /"
    conn.send(b"200 OK")
    d = p.old.reply()
    assert d.payload == b"200 OK"
    p.new.no_reply()                                 # the new one leaves it alone
    # a new flow: the new worker's SYN-ACK, the old one silent
    p.send("S", seq=5000, sport=43000)
    p.old.no_reply()
    sa = p.new.reply()
    assert sa.flags == "SA" and sa.ack == 5001
    p.send("A", seq=5001, ack=sa.seq + 1, sport=43000)
    assert [e for e, _ in p.new.events()] == [EV_ACCEPT]
    p.old.no_reply()
    for h in (p.old, p.new):
        assert h.tcp.counters["tcp.rst_sent"] == 0
        assert h.tcp.counters["drop.tcp.handover"] >= 1


def test_syn_kept_in_standby_is_answered_at_the_takeover_unless_the_old_one_did(tmp_path):
    p = Pair()
    # answered by the old worker before it retired (and established): not again
    p.old.accept(sport=41000)
    p.new.send("S", seq=1000, sport=41000)
    # arrived after the old one stopped taking flows: kept, answered at the takeover
    handover.retire(p.old.tcp)
    p.send("S", seq=2000, sport=41001)
    p.old.no_reply()
    p.new.no_reply()
    p.new.tcp.handover = handover.STANDBY           # (retire_and_take_over retires again)
    p.retire_and_take_over(tmp_path)
    sa = p.new.reply()
    assert sa.flags == "SA" and sa.ack == 2001 and sa.tcp.dport == 41001
    assert (REMOTE, 41000, 80) not in p.new.tcp.flows


def test_retransmitted_syn_of_the_old_ones_handshake_stays_its_own(tmp_path):
    p = Pair()
    p.old.send("S", seq=1000, sport=41000)
    sa = p.old.reply()                               # (lost on the way to the client)
    p.new.send("S", seq=1000, sport=41000)
    p.retire_and_take_over(tmp_path)
    p.new.replies()                                  # (the kept copy: not answered)
    p.send("S", seq=1000, sport=41000)               # the client retransmits
    again = p.old.reply()
    assert again.flags == "SA" and again.seq == sa.seq
    p.new.no_reply()
    p.send("A", seq=1001, ack=sa.seq + 1, sport=41000)
    evs = p.old.events()
    assert evs and evs[-1][1].state == ESTABLISHED
    p.new.no_reply()


def test_syn_reusing_a_time_wait_tuple_of_the_old_one_goes_to_the_new_one(tmp_path):
    p = Pair()
    conn, iss = p.old.accept(sport=41000)
    conn.close()
    fin = p.old.reply()
    p.old.send("A", seq=1001, ack=fin.seq + 1, sport=41000)
    p.old.send("FA", seq=1001, ack=fin.seq + 1, sport=41000)
    p.old.reply()                                    # our ACK of its FIN: TIME_WAIT
    p.retire_and_take_over(tmp_path)
    p.send("S", seq=900000, sport=41000)
    p.old.no_reply()
    assert p.new.reply().flags == "SA"


def test_flows_file_round_trip_and_neighbours(tmp_path):
    p = Pair()
    p.old.accept(sport=41000)
    p.old.send("S", seq=1, sport=41001)
    p.old.reply()
    got = p.retire_and_take_over(tmp_path, [(REMOTE, b"\x02\x00\x00\x00\x00\x07")])
    assert got == [(REMOTE, b"\x02\x00\x00\x00\x00\x07")]
    _, flows = handover.read_flows(str(tmp_path / "flows"))
    mine, handshakes = flows[p.old.tcp.local_ip]
    assert mine == {(REMOTE, 41000, 80), (REMOTE, 41001, 80)}
    assert handshakes == {(REMOTE, 41001, 80)}
    assert handover.read_flows(str(tmp_path / "missing")) == ([], {})


def test_alone_resets_unknown_segments_again(tmp_path):
    p = Pair()
    p.retire_and_take_over(tmp_path)
    handover.alone(p.new.tcp)
    p.new.send("A", seq=7, ack=9, sport=42000)
    assert p.new.reply().flags == "R"


# ---- TAP: one reader per queue; the successor hands the old worker its segments ----------

ETH = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"


def frame(h, flags="A", **kw):
    """What the successor reads from a TAP queue: vnet header, Ethernet, the segment."""
    return bytes(10) + ETH + b"\x08\x00" + h.packet(flags, **kw)


class TapPair(Pair):
    """As Pair, but every segment reaches ONE layer: the old one until the takeover,
    then the one ``frame_owner`` names (as handoff.HandoverPort routes them)."""

    def __init__(self):
        super().__init__()
        self.theirs = None

    def retire_and_take_over(self, tmp_path, neighbours=()):
        got = super().retire_and_take_over(tmp_path, neighbours)
        self.theirs = handover.read_flows(str(tmp_path / "flows"))[1]
        return got

    def owner(self, flags="A", **kw):
        return handover.frame_owner(frame(self.new, flags, **kw),
                                    {self.new.tcp.local_ip: self.new.tcp}, self.theirs)

    def send(self, flags="A", **kw):
        if self.theirs is None:
            return self.old.send(flags, **kw)
        o = self.owner(flags, **kw)
        assert o != handover.BOTH
        (self.old if o == handover.PASS else self.new).send(flags, **kw)
        return o


def test_tap_successor_passes_the_old_ones_segments_and_keeps_new_flows(tmp_path):
    p = TapPair()
    conn, iss = p.old.accept(sport=41000)
    p.old.send("S", seq=3000, sport=41001)          # a handshake in progress
    sa = p.old.reply()
    p.retire_and_take_over(tmp_path)
    # data of the old one's connection: passed, answered by it alone
    assert p.send("PA", seq=1001, ack=iss + 1, data=b"GET /", sport=41000) == handover.PASS
    assert conn.recv() == b"GET /"
    p.old.replies()                                  # (its ACK)
    p.new.no_reply()
    # the client retransmits the SYN of the handshake the old one answered: its own
    assert p.send("S", seq=3000, sport=41001) == handover.PASS
    assert p.old.reply().seq == sa.seq
    assert p.send("A", seq=3001, ack=sa.seq + 1, sport=41001) == handover.PASS
    assert p.old.events()[-1][1].state == ESTABLISHED
    # a new flow: the successor's, the old one never sees it
    assert p.send("S", seq=5000, sport=43000) == handover.KEEP
    sa2 = p.new.reply()
    assert sa2.flags == "SA"
    assert p.send("A", seq=5001, ack=sa2.seq + 1, sport=43000) == handover.KEEP
    assert [e for e, _ in p.new.events()] == [EV_ACCEPT]
    # a segment of nobody's flow stays with the successor, which does not reset it
    assert p.send("A", seq=7, ack=9, sport=42000) == handover.KEEP
    p.new.no_reply()
    for h in (p.old, p.new):
        assert h.tcp.counters["tcp.rst_sent"] == 0


def test_tap_a_syn_reusing_an_old_tuple_is_the_successors_and_so_is_its_flow(tmp_path):
    p = TapPair()
    p.old.accept(sport=41000)
    p.retire_and_take_over(tmp_path)
    # the client's next connection on the same tuple (its last one is gone for it)
    assert p.send("S", seq=900000, sport=41000) == handover.KEEP
    sa = p.new.reply()
    assert sa.flags == "SA"
    # from now on the tuple is a flow of the successor's: its segments stay there
    assert p.send("A", seq=900001, ack=sa.seq + 1, sport=41000) == handover.KEEP
    assert p.new.events()[-1][1].state == ESTABLISHED


def test_frame_owner_non_ip_fragments_other_addresses():
    h = Harness()
    theirs = {h.tcp.local_ip: ({(REMOTE, 41000, 80)}, set())}
    layers = {h.tcp.local_ip: h.tcp}
    arp = bytes(10) + ETH + b"\x08\x06" + bytes(28)
    assert handover.frame_owner(arp, layers, theirs) == handover.BOTH
    seg = frame(h, "A", sport=41000)
    assert handover.frame_owner(seg, layers, theirs) == handover.PASS
    assert handover.frame_owner(seg, layers, {}) == handover.KEEP      # (a VIP's, say)
    frag = bytearray(seg)
    frag[24 + 6] |= 0x20                                                # more fragments
    assert handover.frame_owner(bytes(frag), layers, theirs) == handover.KEEP
    assert handover.frame_owner(seg[:40], layers, theirs) == handover.KEEP   # truncated
