"""Outbound TCP connections from a shard over the user-level stack.

    transport, proto = await ctx.create_connection(MyProtocol, "198.18.0.1", 9000)
    conn = await ctx.open_connection("198.18.0.1", 9000)    # a StreamConnection

Replies must come back to the shard that connected, or they would reach another shard's
stack, which has no such connection and resets it. The kernel steers every frame of a
flow by ``steer.shard_of`` of its 4-tuple, so the source port is chosen such that the
flow hashes to the calling shard (``steer.pick_source_port``; mTCP's mtcp_init_rss does
the same with the NIC's RSS hash): about one port in N qualifies, found by a short scan.

The connection is handed to the shard's Streams (framework/shard/streams.py) like an
accepted one: the same StreamTransport, the same protocol callbacks. A connect that
fails (RST, SYN retransmission timeout, our ``timeout``) fails the future with
ConnectionRefusedError / TimeoutError / OSError; one an ICMP destination unreachable
ends (a router's ``prohibit``/``unreachable`` route, a port unreachable) fails at once
with the errno Linux gives (EHOSTUNREACH, ENETUNREACH, ECONNREFUSED).
"""
import errno
import ipaddress
import socket

from framework.nic.steer import pick_source_port

DEFAULT_TIMEOUT = 10.0

def _addr(host):
    if isinstance(host, int):
        return host
    try:
        return int(ipaddress.IPv4Address(host))
    except ValueError:
        raise ValueError(f"{host!r}: an IPv4 address is needed (no DNS in the user stack)")


class _InUse:
    """``port in in_use``: a 4-tuple the TCP layer or a pending connect already has."""

    __slots__ = ("flows", "dst", "dport", "pending", "listeners")

    def __init__(self, flows, dst, dport, pending, listeners):
        self.flows = flows
        self.dst = dst
        self.dport = dport
        self.pending = pending
        self.listeners = listeners

    def __contains__(self, p):
        return ((self.dst, self.dport, p) in self.flows or p in self.pending
                or p in self.listeners)


class Outbound:
    """A connect in flight: what Streams calls back when it completes or fails."""

    __slots__ = ("factory", "future", "timer", "sport", "connector")

    def __init__(self, factory, future, sport, connector):
        self.factory = factory
        self.future = future
        self.sport = sport
        self.connector = connector
        self.timer = None

    def made(self, transport, protocol):
        self._done()
        if not self.future.done():
            self.future.set_result((transport, protocol))
        else:   # the caller gave up (cancelled) meanwhile
            transport.abort()

    def failed(self, exc):
        self._done()
        if not self.future.done():
            self.future.set_exception(exc)

    def _done(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.connector._pending_ports.discard(self.sport)


class Connector:
    """Outbound connections of one shard (created by the shard's Streams)."""

    def __init__(self, streams, shard_id, shard_count):
        self.streams = streams
        self.tcp = streams.tcp
        self.loop = streams.loop
        self.shard = shard_id
        self.n = shard_count
        self._pending_ports = set()
        self.counters = {"connect.started": 0, "connect.failed": 0}

    def create_connection(self, protocol_factory, host, port, timeout=DEFAULT_TIMEOUT):
        fut = self.loop.create_future()
        streams = self.streams
        if streams.stopping:
            fut.set_exception(ConnectionError("the shard is stopping"))
            return fut
        dst = _addr(host)
        tcp = self.tcp
        sport = pick_source_port(tcp.local_ip, dst, port, self.shard, self.n,
                                 in_use=_InUse(tcp.flows, dst, port, self._pending_ports,
                                               tcp.listeners))
        if sport is None:
            fut.set_exception(OSError(99, f"no free source port to {host}:{port} "
                                          f"that steers to shard {self.shard}"))
            return fut
        conn = tcp.connect(dst, port, self.loop.time(), sport=sport)
        out = Outbound(lambda ctx: protocol_factory(), fut, sport, self)
        self._pending_ports.add(sport)
        streams.outbound[conn] = out
        self.counters["connect.started"] += 1
        if timeout:
            def expire():
                out.timer = None
                if streams.outbound.pop(conn, None) is out:
                    conn.abort()
                    self.counters["connect.failed"] += 1
                    out.failed(TimeoutError(f"connect to {host}:{port} timed out "
                                            f"after {timeout:g} s"))
            out.timer = self.loop.call_later(timeout, expire)
        return fut


# conn.error of a connect an ICMP destination unreachable ended (net/tcp/icmperr.py) ->
# the errno a Linux socket reports for it (icmp_err_convert)
_ICMP_ERRNO = {
    "network unreachable": errno.ENETUNREACH, "host unreachable": errno.EHOSTUNREACH,
    "administratively prohibited": errno.EHOSTUNREACH, "protocol unreachable": errno.ENOPROTOOPT,
    "source route failed": errno.EOPNOTSUPP, "destination unreachable": errno.EHOSTUNREACH,
}


def failure_for(ev_name, error):
    """The exception for a connect that ended before it was established."""
    text = error or ev_name
    if ev_name == "reset":
        return ConnectionRefusedError(111, f"connection refused ({text})")
    if error == "connection refused":                   # ICMP port unreachable
        return ConnectionRefusedError(errno.ECONNREFUSED, "connection refused (ICMP port unreachable)")
    if error in _ICMP_ERRNO:
        return OSError(_ICMP_ERRNO[error], f"{error} (ICMP destination unreachable)")
    if "timeout" in (error or "").lower() or "timed out" in (error or "").lower():
        return TimeoutError(text)
    return OSError(text)


def peer_str(conn):
    ip, port = conn.remote
    return f"{socket.inet_ntoa(ip.to_bytes(4, 'big'))}:{port}"
