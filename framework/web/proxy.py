"""Who the client is behind a reverse proxy: X-Forwarded-For / X-Forwarded-Proto, honoured
only when the peer that sent them is a proxy we trust (``--forwarded-allow-ips``), as
uvicorn's ProxyHeadersMiddleware does.

    trusted = TrustedProxies.parse("10.0.0.0/8, 127.0.0.1")     # or "*", or None
    client_ip, scheme = resolve(peer_ip, headers, trusted)       # pure: no I/O

``headers`` is a list of (name, value) bytes pairs, in any case (our Request's
``raw_headers``, an ASGI scope's lower-cased ``headers``). Each proxy appends the address
it got the request from to X-Forwarded-For, so the list is read from the right: the
client is the right-most entry that is not a trusted proxy (with "*", the left-most
one); when every entry is trusted the left-most is taken. The scheme comes from
X-Forwarded-Proto (http, https, ws, wss; anything else is ignored). An untrusted peer's
headers change nothing.
"""
import ipaddress

_SCHEMES = frozenset(("http", "https", "ws", "wss"))


class TrustedProxies:
    """The peers whose forwarding headers are believed: addresses, networks, or all ("*")."""

    __slots__ = ("always", "networks", "literals", "_seen")

    def __init__(self, networks=(), literals=(), always=False):
        self.always = always
        self.networks = tuple(networks)
        self.literals = frozenset(literals)     # entries that are no IP (a unix socket path)
        self._seen = {}                         # peer -> bool (peers repeat: parse once)

    @classmethod
    def parse(cls, spec):
        """None (trust nobody: None is returned), "*", or a comma list of addresses and
        networks ("127.0.0.1, 10.0.0.0/8, ::1"). Raises ValueError on an empty entry."""
        if spec is None:
            return None
        if isinstance(spec, str):
            items = [s.strip() for s in spec.split(",")]
        else:
            items = [str(s).strip() for s in spec]
        if "*" in items:
            return cls(always=True)
        networks, literals = [], []
        for item in items:
            if not item:
                raise ValueError(f"forwarded-allow-ips {spec!r}: an empty entry")
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                literals.append(item)
        return cls(networks, literals)

    def __contains__(self, host):
        if self.always:
            return True
        if host is None:
            return False
        known = self._seen.get(host)
        if known is None:
            known = host in self.literals
            if not known:
                try:
                    addr = ipaddress.ip_address(host)
                except ValueError:
                    addr = None
                known = addr is not None and any(addr in n for n in self.networks)
            if len(self._seen) >= 4096:
                self._seen.clear()
            self._seen[host] = known
        return known

    def client_of(self, forwarded_for):
        """The client address in an X-Forwarded-For value (str), or None if it is empty."""
        hosts = [h.strip() for h in forwarded_for.split(",")]
        hosts = [h for h in hosts if h]
        if not hosts:
            return None
        if self.always:
            return hosts[0]
        for host in reversed(hosts):
            if host not in self:
                return host
        return hosts[0]     # every hop is a trusted proxy: the first one is the client

    def __repr__(self):
        if self.always:
            return "TrustedProxies(*)"
        return f"TrustedProxies({', '.join(map(str, self.networks + tuple(self.literals)))})"


def resolve(peer_ip, headers, trusted, scheme="http"):
    """(client_ip, scheme) of a request that came from ``peer_ip`` with ``headers``.

    ``trusted``: a TrustedProxies or None (nobody); ``scheme``: the connection's own
    ("https" on TLS). X-Forwarded-For lines are joined in order (a proxy may add a line of
    its own); of several X-Forwarded-Proto lines the last counts.
    """
    if trusted is None or peer_ip not in trusted:
        return peer_ip, scheme
    forwarded_for = None
    proto = None
    for name, value in headers:
        if len(name) == 15:
            lname = name.lower()
            if lname == b"x-forwarded-for":
                v = value.decode("latin-1")
                forwarded_for = v if forwarded_for is None else f"{forwarded_for}, {v}"
        elif len(name) == 17 and name.lower() == b"x-forwarded-proto":
            proto = value
    client = peer_ip
    if forwarded_for is not None:
        client = trusted.client_of(forwarded_for) or peer_ip
    if proto is not None:
        p = proto.decode("latin-1").strip().lower()
        if p in _SCHEMES:
            scheme = p
    return client, scheme


def apply_to_request(req, trusted):
    """Set ``req.remote_ip`` and ``req.protocol`` (our Request) from its forwarding headers."""
    client, scheme = resolve(req.remote_ip, req.raw_headers, trusted, req.protocol)
    req.remote_ip = client
    req.protocol = scheme
