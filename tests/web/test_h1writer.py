"""framework.web.h1writer: response framing as pure bytes."""
import pytest

from framework.web import h1writer
from framework.web.h1writer import (ChunkedWriter, ContentLengthWriter, FramingError,
                                    Http10Writer, body_framing, response_head)

PREFIX = b"Server: t\r\n"
CTYPE = b"Content-Type: text/html\r\n"


def test_response_head():
    assert response_head(200, None, None, b"Content-Length: 2\r\n", True, "HTTP/1.1",
                         PREFIX, CTYPE) == (b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-Type: "
                                            b"text/html\r\nContent-Length: 2\r\n\r\n")
    head = response_head(299, "Fine", {"X-A": ["1", "2"]}, b"", True, "HTTP/1.0", b"", CTYPE)
    assert head == (b"HTTP/1.1 299 Fine\r\nContent-Type: text/html\r\nX-A: 1\r\nX-A: 2\r\n"
                    b"Connection: keep-alive\r\n\r\n")
    assert response_head(204, None, {"X": "y"}, b"", False, "HTTP/1.1", b"", CTYPE) == \
        b"HTTP/1.1 204 No Content\r\nX: y\r\nConnection: close\r\n\r\n"
    assert h1writer.status_line(599) == b"HTTP/1.1 599 Unknown\r\n"


def test_body_framing_picks_the_writer():
    line, w = body_framing("GET", 200, "HTTP/1.1", None, b"abc")
    assert line == b"Content-Length: 3\r\n" and w is h1writer.WHOLE_BODY
    assert w.data(b"abc") == b"abc" and w.end() == b"" and not w.closes
    line, w = body_framing("HEAD", 200, "HTTP/1.1", None, b"abc")
    assert line == b"Content-Length: 3\r\n" and w.data(b"abc") == b""
    line, w = body_framing("GET", 200, "HTTP/1.1", None)
    assert line == b"Transfer-Encoding: chunked\r\n" and isinstance(w, ChunkedWriter)
    assert w.data(b"hello") + w.data(b"") + w.end() == b"5\r\nhello\r\n0\r\n\r\n"
    line, w = body_framing("GET", 200, "HTTP/1.0", None)
    assert line == b"" and isinstance(w, Http10Writer) and w.closes
    line, w = body_framing("GET", 200, "HTTP/1.0", "4")
    assert line == b"" and isinstance(w, ContentLengthWriter) and not w.closes
    line, w = body_framing("GET", 304, "HTTP/1.1", None, b"x")
    assert line == b"" and w.data(b"x") + w.end() == b""


def test_content_length_writer_checks_the_length():
    w = ContentLengthWriter(4)
    assert w.data(b"ab") + w.data(b"cd") + w.end() == b"abcd"
    with pytest.raises(FramingError, match="more bytes"):
        ContentLengthWriter(1).data(b"ab")
    w = ContentLengthWriter(3)
    w.data(b"a")
    with pytest.raises(FramingError, match="fewer bytes"):
        w.end()
