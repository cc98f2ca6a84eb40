"""What a request is, apart from how it is answered: ``Request``, its case-insensitive
``HTTPHeaders`` and the ``BodyStream`` of a body read while it arrives (Tornado keeps
these in httputil.py too, apart from web.py).

``Request.connection`` is the HTTP connection it came on (framework.web.http1); a
Request asks it only for ``remote_ip`` and ``loop``, a BodyStream for ``pause_body()``
and ``resume_body()``.
"""
import re
from urllib.parse import parse_qs, unquote

import httptools
from httptools import HttpParserError


class HTTPHeaders(dict):
    """Request headers: a dict keyed by lower-case name, case-insensitive lookups.

    Repeated headers are joined with ", " (RFC 9110 5.3); values are str (latin-1).
    """

    __slots__ = ()

    def __getitem__(self, name):
        return dict.__getitem__(self, name.lower())

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())

    def __setitem__(self, name, value):
        dict.__setitem__(self, name.lower(), value)

    def __delitem__(self, name):
        dict.__delitem__(self, name.lower())

    def add(self, name, value):
        key = name.lower()
        old = dict.get(self, key)
        dict.__setitem__(self, key, value if old is None else f"{old}, {value}")


def add_header(headers, name, value):
    """Add to a plain dict of headers (what h1writer.response_head writes and the ASGI
    and WSGI bridges build): a repeated name keeps every value, in order, in a list
    (Set-Cookie must not be folded into one line)."""
    old = headers.get(name)
    if old is None:
        headers[name] = value
    elif old.__class__ is list:
        old.append(value)
    else:
        headers[name] = [old, value]


def split_target(url):
    """(path, query) as str of a request target (bytes), or None if it is malformed."""
    if url[:1] != b"/":
        if url == b"*":
            return "*", ""
        try:    # absolute-form (a proxy-style request line)
            u = httptools.parse_url(url)
        except HttpParserError:
            return None
        return (u.path or b"/").decode("latin-1"), (u.query or b"").decode("latin-1")
    q = url.find(b"?")
    if q < 0:
        path, query = url.decode("latin-1"), ""
    else:
        path, query = url[:q].decode("latin-1"), url[q + 1:].decode("latin-1")
    f = path.find("#")
    if f >= 0:
        path = path[:f]
    return path, query


# RFC 3986 host [":" port] as RFC 9110 7.2 allows in Host: an IP-literal, or a reg-name /
# IPv4address (unreserved, pct-encoded, sub-delims), possibly empty
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[-A-Za-z0-9._~!$&'()*+,;=:]+\]"
                   rb"|(?:[-A-Za-z0-9._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?")


# the usual Host (a name or IPv4 address, maybe a port) is checked byte by byte (a C loop
# when compiled), anything else by the regex: _NAME_OK[c] is 1 for a reg-name byte
_NAME_OK = bytes(1 if chr(c) in ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789-._~!$&'()*+,;=") else 0 for c in range(256))


def valid_host(host):
    """``host`` (bytes, OWS stripped) is a valid Host value (RFC 9110 7.2)."""
    n = len(host)
    i = 0
    while i < n:
        c = host[i]
        if not _NAME_OK[c]:
            if c != 58:         # ":" then only digits (the port)
                return _HOST.fullmatch(host) is not None
            i += 1
            while i < n:
                c = host[i]
                if c < 48 or c > 57:
                    return _HOST.fullmatch(host) is not None
                i += 1
            return True
        i += 1
    return True


def head_error(version, method, url, hosts, host, te):
    """The status an RFC 9112 MUST answers a request head with (nginx's choice where the
    RFC leaves one), or 0. ``hosts``: how many Host lines, ``host`` the value of the last,
    ``te`` the Transfer-Encoding lines joined with "," (or None); what llhttp already
    refuses (CL+TE, bad Content-Length, obs-fold, bare CR, space before the colon, a TE
    not ending in chunked) never gets here.

    - HTTP/x.y other than 1.0/1.1: 505 (a later 1.x is llhttp's error, also 505);
    - Host: more than one line, or none in HTTP/1.1, or an invalid value: 400 (3.2);
      absolute-form: the target's authority is the host (3.2.2), checked instead;
    - asterisk-form other than for OPTIONS: 400 (3.2.4);
    - Transfer-Encoding in HTTP/1.0: 400 (6.1: faulty framing; nginx refuses it too);
      a coding other than chunked (before it): 501 (6.1), chunked not last: 400 (6.3).
    """
    if version != "1.1" and version != "1.0":
        return 505
    if hosts != 1:
        if hosts > 1 or version == "1.1":
            return 400
    c = url[:1]
    if c == b"/":
        if hosts == 1 and not valid_host(host.strip(b" \t")):
            return 400
    elif c == b"*" and len(url) == 1:
        if method != b"OPTIONS":
            return 400
    elif method != b"CONNECT":
        if absolute_authority(url) is None:
            return 400
    if te is not None:
        if version == "1.0":
            return 400
        codings = [x.strip(b" \t").lower() for x in te.split(b",")]
        if codings[-1] != b"chunked" or b"chunked" in codings[:-1]:
            return 400
        if len(codings) > 1:
            return 501
    return 0


def is_authority(url):
    """``url`` is authority-form, host ":" port (CONNECT's request target)."""
    return b":" in url and url[:1] != b":" and _HOST.fullmatch(url) is not None


def absolute_authority(url):
    """host[:port] (bytes) of an absolute-form request target, or None if it has none."""
    try:
        u = httptools.parse_url(url)
    except HttpParserError:
        return None
    host = u.host
    if not host or not u.schema:
        return None
    if b":" in host and host[:1] != b"[":
        host = b"[" + host + b"]"          # an IPv6 literal (llhttp drops the brackets)
    if _HOST.fullmatch(host) is None:
        return None
    return host if u.port is None else host + b":%d" % u.port


# remote_ip not looked up yet: most handlers never read it, so the peername lookup and
# address formatting are left until one does
PEER_LAZY = object()


class Request:
    """What the client asked: method, uri, path, query, version, headers, body, remote_ip."""

    __slots__ = ("method", "uri", "path", "query", "version", "_headers", "raw_headers",
                 "body", "_remote_ip", "keep_alive", "_query_args", "_body_args", "connection",
                 "expect_continue", "body_stream", "_body_taken", "start_time", "protocol")

    def __init__(self, method, uri, path, query, version, raw_headers, body, remote_ip):
        self.method = method
        self.uri = uri
        self.path = path
        self.query = query
        self.version = version
        # [(name bytes, value bytes)] as received; decoded into HTTPHeaders on first use
        # (most handlers never look at a header, so parsing pays nothing for them)
        self.raw_headers = raw_headers
        self._headers = None
        self.body = body
        self._remote_ip = remote_ip   # PEER_LAZY: ask self.connection on first use
        self.keep_alive = True
        self._query_args = None
        self._body_args = None
        self.connection = None
        self.expect_continue = False
        self.body_stream = None     # a BodyStream while the body is still arriving
        self._body_taken = False
        self.start_time = 0.0       # the shard's clock when the headers were complete
        self.protocol = "http"      # the scheme the client used (a trusted proxy's -Proto)

    @property
    def remote_ip(self):
        """The client's address (str), or None if unknown."""
        ip = self._remote_ip
        if ip is PEER_LAZY:
            ip = self._remote_ip = self.connection.remote_ip
        return ip

    @remote_ip.setter
    def remote_ip(self, value):
        self._remote_ip = value

    @property
    def headers(self):
        """Case-insensitive request headers (HTTPHeaders)."""
        h = self._headers
        if h is None:
            h = self._headers = HTTPHeaders()
            setitem = dict.__setitem__
            for name, value in self.raw_headers:
                key = name.decode("latin-1").lower()
                value = value.decode("latin-1")
                old = dict.get(h, key)
                setitem(h, key, value if old is None else f"{old}, {value}")
        return h

    @property
    def query_arguments(self):
        """{name: [str, ...]} from the query string (parsed on first use)."""
        if self._query_args is None:
            self._query_args = parse_qs(self.query, keep_blank_values=True) if self.query else {}
        return self._query_args

    @property
    def body_arguments(self):
        """{name: [str, ...]} from an application/x-www-form-urlencoded body."""
        if self._body_args is None:
            ctype = self.headers.get("content-type", "")
            if self.body and ctype.split(";", 1)[0].strip().lower() == \
                    "application/x-www-form-urlencoded":
                self._body_args = parse_qs(self.body.decode("utf-8", "replace"),
                                           keep_blank_values=True)
            else:
                self._body_args = {}
        return self._body_args

    @property
    def arguments(self):
        """Query and form-body arguments together."""
        q = self.query_arguments
        b = self.body_arguments
        if not b:
            return q
        merged = {k: list(v) for k, v in q.items()}
        for k, v in b.items():
            merged.setdefault(k, []).extend(v)
        return merged

    @property
    def cookies(self):
        """{name: value} from the Cookie header(s)."""
        out = {}
        raw = self.headers.get("cookie")
        if raw:
            for part in raw.replace(",", ";").split(";"):
                name, sep, value = part.strip().partition("=")
                if sep and name:
                    value = value.strip()
                    if len(value) >= 2 and value[0] == value[-1] == '"':
                        value = value[1:-1]
                    out.setdefault(name, unquote(value))
        return out

    def read(self):
        """An asyncio future of the next body chunk; ``b""`` once the body is complete.

        With ``stream_request_body = True`` on the handler, chunks arrive while the
        handler runs; otherwise the whole (already received) body comes as one chunk.
        """
        stream = self.body_stream
        if stream is not None:
            return stream.get()
        fut = self.connection.loop.create_future()
        fut.set_result(b"" if self._body_taken else self.body)
        self._body_taken = True
        return fut

    async def stream(self):
        """``async for chunk in self.request.stream(): ...``"""
        while True:
            chunk = await self.read()
            if not chunk:
                return
            yield chunk

    @property
    def host(self):
        return self.headers.get("host", "")

    def full_url(self):
        return f"{self.protocol}://{self.host}{self.uri}"

    def __repr__(self):
        return f"Request({self.method} {self.uri} from {self.remote_ip})"


class BodyStream:
    """Body chunks of a streamed request, from the parser to an awaiting handler.

    Reading is paused on the transport while more than ``high`` bytes wait unread, so
    a slow consumer slows the client down (TCP's own back-pressure).
    """

    __slots__ = ("_loop", "_chunks", "_waiter", "_done", "_exc", "_size", "_conn",
                 "_high", "_paused", "_closed")

    def __init__(self, loop, conn, high=256 * 1024):
        self._loop = loop
        self._conn = conn
        self._chunks = []
        self._waiter = None
        self._done = False
        self._exc = None
        self._size = 0
        self._high = high
        self._paused = False
        self._closed = False    # the reader is gone: drop what still arrives

    def close(self):
        """The reader is done (its handler answered): drop the rest of the body."""
        self._closed = True
        if self._paused:
            self._paused = False
            self._conn.resume_body()

    def put(self, chunk):
        if self._closed:
            return
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():    # else the reader gave up waiting: keep the chunk for it
                w.set_result(chunk)
                return
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > self._high and not self._paused:
            self._paused = True
            self._conn.pause_body()

    def finish(self, exc=None):
        if self._done:
            return
        self._done = True
        self._exc = exc
        w = self._waiter
        if w is not None and not w.done():
            self._waiter = None
            if exc is None:
                w.set_result(b"")
            else:
                w.set_exception(exc)

    def get(self):
        fut = self._loop.create_future()
        if self._chunks:
            chunk = self._chunks.pop(0)
            self._size -= len(chunk)
            if self._paused and self._size <= self._high // 4:
                self._paused = False
                self._conn.resume_body()
            fut.set_result(chunk)
        elif self._done:
            if self._exc is None:
                fut.set_result(b"")
            else:
                fut.set_exception(self._exc)
        elif self._waiter is not None and not self._waiter.done():
            raise RuntimeError("concurrent reads of one request body")
        else:
            self._waiter = fut
        return fut
