"""HTTP/1.1 response framing, written once: values in, bytes out, no I/O (as h11's
``_writers.py``).

``response_head`` makes the status line and header block; ``body_framing`` picks how
the body is delimited (RFC 9112 6.3) and returns the framing header line with a body
writer: ``ContentLengthWriter``, ``ChunkedWriter``, ``Http10Writer`` (the body ends when
the connection closes) or ``NO_BODY`` (HEAD, 1xx, 204, 304). A writer turns body chunks
into wire bytes with ``data(chunk)`` and ends the body with ``end()``.
"""
import http.client

# Reason phrases and the complete status line bytes (precomputed: the hot path only joins)
REASONS = dict(http.client.responses)
REASONS.setdefault(431, "Request Header Fields Too Large")
STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, reason.encode("latin-1"))
                for code, reason in REASONS.items()}
NO_BODY_STATUS = frozenset((204, 304)) | frozenset(range(100, 200))
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

_CLOSE = b"Connection: close\r\n"
_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_header_bytes_cache = {}     # tuple(headers.items()) -> their bytes


class FramingError(Exception):
    """The body does not match the framing its headers announced."""


def status_line(status, reason=None):
    if reason is None:
        return STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status
    return b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("latin-1"))


def header_block(headers):
    """``Name: value\\r\\n`` lines of ``{Name: str or [str, ...]}``."""
    # handlers tend to set the same few headers every time: their bytes are cached
    items = tuple(headers.items())
    try:
        block = _header_bytes_cache.get(items)
    except TypeError:       # a list value (add_header): not hashable, not cached
        block = items = None
    if block is None:
        block = _encode_headers(headers)
        if items is not None:
            if len(_header_bytes_cache) >= 512:
                _header_bytes_cache.clear()
            _header_bytes_cache[items] = block
    return block


def _encode_headers(headers):
    lines = []
    for k, v in headers.items():
        if v.__class__ is str:
            lines.append(f"{k}: {v}\r\n")
        else:
            for x in v:
                lines.append(f"{k}: {x}\r\n")
    return "".join(lines).encode("latin-1")


def response_head(status, reason, headers, framing, keep_alive, version, prefix,
                  default_ctype):
    """Status line, ``prefix`` (Server/Date lines), the headers (``default_ctype`` first
    when they name no Content-Type and the status has a body), the framing line, the
    Connection line and the blank line."""
    if headers is None:
        block = default_ctype if status not in NO_BODY_STATUS else b""
    else:
        block = header_block(headers)
        if "Content-Type" not in headers and status not in NO_BODY_STATUS:
            block = default_ctype + block
    if not keep_alive:
        connection = _CLOSE
    elif version == "HTTP/1.0":
        connection = _KEEP_ALIVE     # 1.0 closes by default: say that we keep it
    else:
        connection = b""
    line = (STATUS_LINES.get(status) if reason is None else None) or status_line(status, reason)
    return b"".join((line, prefix, block, framing, connection, b"\r\n"))


class BodyWriter:
    """Body bytes as they are (the framing is elsewhere, or there is none)."""

    __slots__ = ()
    closes = False      # True: the connection must close to end the body

    def data(self, chunk):
        return chunk

    def end(self):
        return b""


class ContentLengthWriter(BodyWriter):
    """Exactly ``length`` bytes; more or fewer is a FramingError."""

    __slots__ = ("left",)

    def __init__(self, length):
        self.left = length

    def data(self, chunk):
        left = self.left - len(chunk)
        if left < 0:
            raise FramingError("wrote more bytes than its Content-Length")
        self.left = left
        return chunk

    def end(self):
        if self.left:
            raise FramingError("wrote fewer bytes than its Content-Length")
        return b""


class ChunkedWriter(BodyWriter):
    __slots__ = ()

    def data(self, chunk):
        # an empty chunk would read as the last one: it is left out
        return b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunk else b""

    def end(self):
        return b"0\r\n\r\n"


class Http10Writer(BodyWriter):
    """HTTP/1.0 has no chunks: the body ends when the connection closes."""

    __slots__ = ()
    closes = True


class _WholeBodyWriter(BodyWriter):
    """A body given whole with the headers: its Content-Length is its own length, so
    there is nothing to count."""

    __slots__ = ()


WHOLE_BODY = _WholeBodyWriter()


class _NoBodyWriter(BodyWriter):
    __slots__ = ()

    def data(self, chunk):
        return b""


NO_BODY = _NoBodyWriter()


def body_framing(method, status, version, declared, whole=None):
    """(framing header line, body writer) of a response to a ``method`` request.

    ``declared``: the Content-Length header the response's own headers carry, or None.
    ``whole``: the entire body when it is known as the headers go out (it is then
    framed by its length); None for a body streamed after them, which is chunked on
    HTTP/1.1 and close-delimited on HTTP/1.0 unless ``declared``.
    """
    if status in NO_BODY_STATUS:
        return b"", NO_BODY
    line = b"Content-Length: %d\r\n" % len(whole) if whole is not None and \
        declared is None else b""
    if method == "HEAD":
        return line, NO_BODY        # the headers of a GET, without its body
    if declared is not None:
        return line, ContentLengthWriter(int(declared))
    if whole is not None:
        return line, WHOLE_BODY
    if version == "HTTP/1.1":
        return _CHUNKED, ChunkedWriter()
    return b"", Http10Writer()
