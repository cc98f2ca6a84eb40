"""Zero-downtime reload on the user stack: two workers on one queue, one set of flows each.

During a rolling restart the new worker opens the same queue while the old one still
serves it (an AF_PACKET socket with the same steering filter gets a copy of every frame
the old one gets), so both see every segment. Who answers what:

- STANDBY (new worker, until the old one has stopped taking flows): answers nothing;
  SYNs are kept (bounded) to be answered at the takeover.
- RETIRING (old worker, from the handover on): keeps every flow it has, answers their
  segments, drops SYNs for new flows (also those that would reuse one of its TIME_WAIT
  tuples) and never resets a segment it does not know: it is the successor's.
- SUCCESSOR (new worker, after the takeover, until the old one exits): answers SYNs,
  except those of the handshakes the old worker had in progress at the handover
  (``predecessor``: a retransmitted SYN of a handshake it answered is its own), and
  never resets a segment it does not know: it is the old worker's.

The old worker writes its flows (and its ARP cache) into a file when it retires (``write_flows``) and the
successor reads it (``read_flows``): a SYN the standby worker kept is answered at the
takeover unless the old worker had already answered it (any flow of its, not only
handshakes: answering the SYN of an established flow again would have the client's
duplicate ACK meet our SYN_RECEIVED, which resets it), so no SYN waits for the client's
retransmission. A live SYN only yields to a handshake in progress: once established or
closed, the same tuple in a SYN is the client's next connection (clients reuse ports at
once). Kept SYNs older than ``HOLD_MAX`` are dropped (their clients retransmit).

A TAP queue gives each frame to one reader, so there the two workers do not both read
it: the successor reads it alone from the takeover on and hands the old worker the
segments of its flows (``frame_owner`` decides; framework/shard/handoff.py moves them).
"""
import os
import struct

NONE, STANDBY, SUCCESSOR, RETIRING = 0, 1, 2, 3

HOLD_MAX = 3.0          # seconds a kept SYN stays answerable
HOLD_LIMIT = 4096       # SYNs kept at most (a SYN flood meanwhile only fills this)
_FLOW = struct.Struct("!IIHHB")  # local ip, remote ip, remote port, local port, handshake

# frame_owner's answers
KEEP, PASS, BOTH = 0, 1, 2
_SYN, _RST, _ACK = 0x02, 0x04, 0x10
_IP = 10 + 14                    # the IPv4 header, after the vnet and Ethernet headers


def take_syn(layer, key, frame, src, dst, l4_off, l4_end, csum_trusted, now):
    """A SYN for a listener while ``layer.handover`` is set: True when this worker
    answers it now."""
    mode = layer.handover
    if mode == SUCCESSOR:
        pred = layer.predecessor
        if pred is None or key not in pred:
            return True
    elif mode == STANDBY:
        held = layer.held_syns
        if held is None:
            held = layer.held_syns = []
        if len(held) < HOLD_LIMIT:
            held.append((bytes(frame), src, dst, l4_off, l4_end, csum_trusted, now))
            return False
    layer.counters["drop.tcp.handover"] += 1
    return False


def retire(layer):
    """The old worker stops taking new flows (RETIRING)."""
    layer.handover = RETIRING


def handshakes_open(layer):
    """True while a retiring worker has handshakes it answered in progress: their third
    ACK reaches the successor, which hands it over (it is in the flows file), so the old
    worker must live until they are established (and served) or gone; if it exits first,
    the successor, alone, resets the client's next segment. No new ones come (RETIRING
    drops SYNs), and the drain's grace bounds the wait."""
    if layer.handover != RETIRING:
        return False
    for lst in layer.listeners.values():
        if lst.syn_count:
            return True
    return False


def take_over(layer, flows, handshakes, now):
    """The new worker answers new flows from now on (SUCCESSOR): the SYNs it kept that
    are not of one of the old worker's ``flows`` are answered now; later SYNs yield to
    its ``handshakes`` in progress."""
    layer.predecessor = handshakes
    layer.handover = SUCCESSOR
    held, layer.held_syns = layer.held_syns, None
    for frame, src, dst, l4_off, l4_end, trusted, t in held or ():
        key = (src, (frame[l4_off] << 8) | frame[l4_off + 1],
               (frame[l4_off + 2] << 8) | frame[l4_off + 3])
        if now - t <= HOLD_MAX and key not in flows:
            layer.input(frame, src, dst, l4_off, l4_end, trusted, now)


def frame_owner(frame, layers, theirs):
    """Who processes ``frame`` (vnet header + Ethernet), read from the queue by the
    successor while the old worker drains: KEEP (the successor), PASS (the old worker)
    or BOTH (not IPv4: ARP, which both need). ``layers``: {local ip: the successor's
    TcpLayer}; ``theirs``: {local ip: (flows, handshakes)} from the old worker's file.

    The old worker's flows are known and fixed (it takes no new ones), so a segment is
    passed only when its tuple is one of them and the successor has no flow of its own
    there: a SYN only when it is one of the old worker's handshakes in progress (the
    client retransmitting it), otherwise it is a new connection reusing the tuple."""
    if frame[22:24] != b"\x08\x00":
        return BOTH
    if len(frame) < _IP + 20 or frame[_IP + 9] != 6 or frame[_IP + 6] & 0x3F or frame[_IP + 7]:
        return KEEP                   # not TCP, or a fragment (reassembled by the successor)
    dst = int.from_bytes(frame[_IP + 16:_IP + 20], "big")
    t = theirs.get(dst)
    if t is None:
        return KEEP
    l4 = _IP + (frame[_IP] & 15) * 4
    if len(frame) < l4 + 14:
        return KEEP
    key = (int.from_bytes(frame[_IP + 12:_IP + 16], "big"),
           (frame[l4] << 8) | frame[l4 + 1], (frame[l4 + 2] << 8) | frame[l4 + 3])
    flows, handshakes = t
    if key not in flows:
        return KEEP
    if frame[l4 + 13] & (_SYN | _ACK | _RST) == _SYN:
        return PASS if key in handshakes else KEEP
    layer = layers.get(dst)
    if layer is not None and key in layer.flows:
        return KEEP
    return PASS


def alone(layer):
    """The old worker is gone: every segment of the queue is ours again."""
    layer.handover = NONE
    layer.predecessor = None
    layer.held_syns = None


def flows_of(layer):
    """(key, in handshake) of the layer's flows that are not in TIME_WAIT (a SYN reusing
    the tuple of a TIME_WAIT entry is a new flow, the successor's)."""
    from .consts import SYN_RECEIVED, TIME_WAIT
    return [(k, c.state == SYN_RECEIVED) for k, c in layer.flows.items()
            if c.state != TIME_WAIT]


_COUNT = struct.Struct("!I")
_NEIGHBOUR = struct.Struct("!I6s")      # ip, MAC


def write_flows(path, layers, neighbours=()):
    """Write the ARP ``neighbours`` [(ip, mac)] and the flows of ``layers`` to ``path``
    atomically (rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    neighbours = list(neighbours)
    with open(tmp, "wb") as f:
        f.write(_COUNT.pack(len(neighbours)))
        f.write(b"".join(_NEIGHBOUR.pack(ip, mac) for ip, mac in neighbours))
        for layer in layers:
            ip = layer.local_ip
            f.write(b"".join(_FLOW.pack(ip, rip, rport, lport, hs)
                             for (rip, rport, lport), hs in flows_of(layer)))
    os.replace(tmp, path)


def read_flows(path):
    """([(ip, mac)], {local ip: (every flow key, the keys of handshakes)}) from
    ``write_flows``'s file (nothing when there is none)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], {}
    (n,) = _COUNT.unpack_from(data)
    end = _COUNT.size + n * _NEIGHBOUR.size
    neighbours = list(_NEIGHBOUR.iter_unpack(data[_COUNT.size:end]))
    data = data[end:]
    out = {}
    for ip, rip, rport, lport, hs in _FLOW.iter_unpack(data[:len(data) - len(data) % _FLOW.size]):
        flows, handshakes = out.setdefault(ip, (set(), set()))
        flows.add((rip, rport, lport))
        if hs:
            handshakes.add((rip, rport, lport))
    return neighbours, out
