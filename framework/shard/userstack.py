"""The user-level stack as a ShardLoop's stream provider: a port, a Stack, Streams.

``input``: rx_burst a batch from the port, ``Stack.process`` it, hand the TCP events to
the protocols (streams.py). ``output``: ``Stack.dispatch`` (TCP output and the stack's
timers) and tx_burst. What the driver's queue does not take waits for the next turn,
bounded. Capture and wrong-shard forwarding are port wrappers (framework/pcap.py,
framework/shard/forward.py), so this sees one plain port.
"""
import logging
import os
import select
import socket

from framework.net.tcp import STATE_NAMES, handover
from framework.shard.streams import Streams

log = logging.getLogger("framework.shard")

RX_BATCH = 64
TX_BACKLOG_MAX = 4096
EVENT_ROUNDS = 8        # a protocol's reaction may queue new events (close -> closed)
PORT_ERROR_LIMIT = 100  # consecutive failed polls of the port fd before giving up
_EPOLLBAD = select.EPOLLERR | select.EPOLLHUP


class PortGone(RuntimeError):
    """The port's device disappeared (e.g. its link was deleted under the worker)."""


def stat_names(counter_names):
    """What a user-stack shard publishes besides the loop's own counters: port counters
    and bytes, the stack's counters (drops by reason, tcp.*) and connections by state."""
    return (["port.rx", "port.tx", "port.rx_drops", "port.tx_drops", "port.rx_bytes",
             "port.tx_bytes", "stack.rx_frames", "stack.tx_frames"] + sorted(counter_names)
            + [f"state.{n}" for n in sorted(set(STATE_NAMES.values()))])


class UserStackProvider:
    polls = False      # nothing of ours needs epoll while busy: rx_burst looks itself

    def __init__(self, port, stack):
        self.port = port
        self.stack = stack
        self.tcp = stack.tcp
        self.streams = None
        self.tx_backlog = []
        self.rx_bytes = 0
        self.tx_bytes = 0
        self._port_errors = 0
        self.loop = None
        self._watching = False          # the port's fd is in the loop's epoll set
        self._wake = getattr(port, "wake_within", None)

    def start(self, loop, ctx):
        # a FIN goes up a turn after the data before it, as on a kernel socket (streams.py)
        self.streams = Streams(self.tcp, ctx, eof_next_turn=True)
        self.loop = loop
        self._watch_port()
        # a gratuitous ARP: neighbours that knew our address learn this MAC at once
        announce = getattr(self.stack, "announce", None)
        if announce is not None:
            announce()

    def listen(self, port, factory):
        self.streams.listen(port, factory)

    def reserve(self, port):
        # not while a standby worker starts: the old worker answers its SYNs meanwhile, and
        # the standby keeps only what comes after its start for the takeover (handover.py)
        if self.tcp.handover != handover.STANDBY:
            self.streams.reserve(port)

    def unreserve(self, port):
        self.streams.unreserve(port)

    def connect(self, factory, host, port, timeout):
        return self.streams.connector.create_connection(factory, host, port, timeout)

    # ---- the turn -----------------------------------------------------------------------
    def input(self, now):
        frames = self.port.rx_burst(RX_BATCH)
        busy = False
        if frames:
            busy = True
            self._port_errors = 0
            self.rx_bytes += sum(map(len, frames))
            self.stack.process(frames, now)
        streams = self.streams
        if streams.new_turn():     # FINs held back last turn
            busy = True
        events = self.tcp.events
        if events:
            busy = True
            deliver = streams.deliver
            for _ in range(EVENT_ROUNDS):
                batch = events[:]
                del events[:]
                deliver(batch)
                if not events:
                    break
        return busy

    def has_output(self):
        return bool(self.tx_backlog) or self.stack.output_pending()

    def output(self, now):
        out = self.stack.dispatch(now)
        backlog = self.tx_backlog
        if backlog:
            out = backlog + out if out else backlog
            self.tx_backlog = []
        if not out:
            return False
        n = self.port.tx_burst(out)
        if n < len(out):
            # driver queue full: keep the rest for the next turn, bounded
            self.tx_bytes += sum(map(len, out[:n]))
            self.tx_backlog = out[n:n + TX_BACKLOG_MAX]
        else:
            self.tx_bytes += sum(map(len, out))
        return True

    def busy(self):
        return bool(self.tcp.events or self.tx_backlog or self.streams.eofs_waiting())

    def deadline(self):
        if self.tx_backlog:
            return 0.0
        d = self.stack.poll_at()
        if self._wake is not None:
            w = self._wake()
            if w is not None:
                w += self.loop.time()
                if d is None or w < d:
                    d = w
        return d

    def pending(self):
        fn = getattr(self.port, "rx_pending", None)
        return fn is not None and fn()

    def idle(self):
        fn = getattr(self.port, "idle", None)
        if fn is not None:
            fn()

    def _port_event(self, ev):
        """The port's fd polls as failed (EPOLLERR/EPOLLHUP). A socket error is read
        (which clears it); if the fd keeps failing, the device is gone (the link was
        removed under us) and spinning on it would burn the core: give up, the
        supervisor restarts the shard or stops."""
        if not ev & _EPOLLBAD:
            return
        err = 0
        fd = self.port.fileno()
        dfd = os.dup(fd)
        try:
            s = socket.socket(fileno=dfd)
        except OSError:         # not a socket (a TAP fd): socket() did not take the dup
            os.close(dfd)
        else:
            with s:
                try:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                except OSError:
                    pass
        self._port_errors += 1
        if self._port_errors > PORT_ERROR_LIMIT:
            raise PortGone(f"port fd failing (poll events {ev:#x}, last error "
                           f"{os.strerror(err) if err else 'none'}): is the link gone?")

    # ---- zero-downtime reload (framework/net/tcp/handover.py) ----------------------------
    def _layers(self):
        return getattr(self.stack, "tcp_layers", (self.tcp,))    # primary, then VIPs

    def _port_step(self, name, *args):
        """A handover step of a port that has one (handoff.HandoverPort: a queue with one
        reader), then watch its fd or not, as it says."""
        fn = getattr(self.port, name, None)
        if fn is not None:
            fn(*args)
        if self.loop is not None:
            self._watch_port()

    def _watch_port(self):
        want = getattr(self.port, "reading", True)
        if want and not self._watching:
            self.loop.add_native(self.port.fileno(), self._port_event)
        elif self._watching and not want:
            self.loop.remove_native(self.port.fileno())
        self._watching = want

    def standby(self):
        """A new worker beside the old one on the same queue: answer nothing yet."""
        for layer in self._layers():
            layer.handover = handover.STANDBY
        self._port_step("standby")

    def skip_backlog(self):
        """Drop what the port received while this standby worker was starting (the old
        worker answered all of it): from now on the ring holds only what came after, so
        a ring filled during the start-up cannot drop the SYNs of the handover itself."""
        for _ in range(1024):
            if not self.port.rx_burst(256):
                break

    def retire(self, flows_path):
        """The old worker: keep our flows, leave new ones to the successor, write our
        flows for it, and close each HTTP connection after its next response."""
        layers = self._layers()
        for layer in layers:
            handover.retire(layer)
        arp = self.stack.arp
        handover.write_flows(flows_path, layers,
                             [(ip, e.mac) for ip, e in arp.cache.items()])
        self._port_step("retire")
        self.streams.retire()

    def take_over(self, flows_path, now):
        neighbours, theirs = handover.read_flows(flows_path)
        arp = self.stack.arp
        for ip, mac in neighbours:
            arp.seed(ip, mac, now)
        layers = self._layers()
        for layer in layers:
            flows, handshakes = theirs.get(layer.local_ip, (set(), set()))
            handover.take_over(layer, flows, handshakes, now)
        self._port_step("take_over", {layer.local_ip: layer for layer in layers}, theirs)

    def alone(self):
        for layer in self._layers():
            handover.alone(layer)
        self._port_step("alone")

    # ---- graceful stop ------------------------------------------------------------------
    def shutdown(self):
        self.streams.shutdown()

    def all_done(self):
        if not self.streams.all_done() or self.tx_backlog:
            return False
        # retiring: the handshakes it answered are its own to finish (handover.py)
        for layer in self._layers():
            if handover.handshakes_open(layer):
                return False
        return True

    def abort_all(self):
        for t in list(self.streams.transports):
            try:
                t.abort()
            except Exception:  # a broken protocol must not stop the stop
                log.exception("aborting %r at the end of the grace period", t)

    # ---- counters -----------------------------------------------------------------------
    def counters(self):
        sc = self.stack.counters
        ps = getattr(self.port, "stats", None) or {}
        vals = dict(sc)
        by_state = {}
        for tcp in getattr(self.stack, "tcp_layers", (self.tcp,)):   # primary, then VIPs
            for c in tcp.flows.values():
                k = "state." + STATE_NAMES.get(c.state, "?")
                by_state[k] = by_state.get(k, 0) + 1
        for n in set(STATE_NAMES.values()):
            vals[f"state.{n}"] = by_state.get(f"state.{n}", 0)
        vals.update({
            "port.rx": ps.get("rx", 0), "port.tx": ps.get("tx", 0),
            "port.rx_drops": ps.get("rx_drops", 0), "port.tx_drops": ps.get("tx_drops", 0),
            "port.rx_bytes": self.rx_bytes, "port.tx_bytes": self.tx_bytes,
            "stack.rx_frames": sc.get("rx.frames", 0), "stack.tx_frames": sc.get("tx.frames", 0),
            "streams.open": max(0, self.streams.open), "streams.accepted": self.streams.accepted,
        })
        fwd = getattr(self.port, "counters", None)
        if fwd:
            vals.update(fwd)
        return vals

    def close(self):
        self.port.close()
