"""apps/static: content types, validators, ranges, and never a file outside the root."""
import os

import pytest

from apps.static import make_app, parse_range

from .fakes import Harness, parse_responses


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "a.txt").write_bytes(b"0123456789")
    (root / "data.json").write_text("{}")
    (root / "img.png").write_bytes(b"\x89PNG....")
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_text("sub index")
    (root / "sub" / "f.css").write_text("body{}")
    (root / "empty.bin").write_bytes(b"")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    os.symlink(tmp_path / "secret.txt", root / "out-link")
    os.symlink(tmp_path, root / "out-dir")
    os.symlink(root / "a.txt", root / "in-link")
    return root


def get(h, path, *headers, method="GET"):
    raw = f"{method} {path} HTTP/1.1\r\nHost: x\r\n".encode() + b"".join(
        x.encode() + b"\r\n" for x in headers) + b"\r\n"
    out, _, _ = h.request(raw)
    assert b"TOP SECRET" not in out
    if method == "HEAD":
        head = out.split(b"\r\n\r\n")[0]
        assert out.endswith(b"\r\n\r\n")
        return int(head.split()[1]), head, b""
    (st, hd, body), = parse_responses(out)
    return st, hd, body


def test_content_types_and_body(site):
    h = Harness(make_app(str(site)))
    st, hd, body = get(h, "/a.txt")
    assert (st, body) == (200, b"0123456789")
    assert hd["content-type"] == "text/plain; charset=utf-8"
    assert hd["accept-ranges"] == "bytes" and hd["content-length"] == "10"
    assert get(h, "/data.json")[1]["content-type"] == "application/json"
    assert get(h, "/img.png")[1]["content-type"] == "image/png"
    assert get(h, "/sub/f.css")[1]["content-type"] == "text/css; charset=utf-8"
    st, hd, body = get(h, "/empty.bin")
    assert (st, body, hd["content-length"]) == (200, b"", "0")
    st, head, _ = get(h, "/a.txt", method="HEAD")
    assert st == 200 and b"Content-Length: 10" in head


def test_etag_last_modified_304(site):
    h = Harness(make_app(str(site)))
    st, hd, _ = get(h, "/a.txt")
    etag, lm = hd["etag"], hd["last-modified"]
    st, hd2, body = get(h, "/a.txt", f"If-None-Match: {etag}")
    assert st == 304 and body == b"" and hd2["etag"] == etag and "content-length" not in hd2
    assert get(h, "/a.txt", f'If-None-Match: "other", {etag}')[0] == 304
    assert get(h, "/a.txt", 'If-None-Match: "other"')[0] == 200
    assert get(h, "/a.txt", f"If-Modified-Since: {lm}")[0] == 304
    assert get(h, "/a.txt", "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT")[0] == 200
    assert get(h, "/a.txt", "If-Modified-Since: garbage")[0] == 200
    # If-None-Match wins over If-Modified-Since
    assert get(h, "/a.txt", 'If-None-Match: "x"', f"If-Modified-Since: {lm}")[0] == 200
    os.utime(site / "a.txt", (1, 1))
    assert get(h, "/a.txt", f"If-None-Match: {etag}")[0] == 200


def test_ranges(site):
    h = Harness(make_app(str(site)))
    st, hd, body = get(h, "/a.txt", "Range: bytes=2-5")
    assert (st, body, hd["content-range"], hd["content-length"]) == (206, b"2345", "bytes 2-5/10", "4")
    st, hd, body = get(h, "/a.txt", "Range: bytes=7-")
    assert (st, body, hd["content-range"]) == (206, b"789", "bytes 7-9/10")
    st, hd, body = get(h, "/a.txt", "Range: bytes=-3")
    assert (st, body) == (206, b"789")
    st, hd, body = get(h, "/a.txt", "Range: bytes=5-100")
    assert (st, body, hd["content-range"]) == (206, b"56789", "bytes 5-9/10")
    st, hd, body = get(h, "/a.txt", "Range: bytes=10-")
    assert (st, hd["content-range"], body) == (416, "bytes */10", b"")
    assert get(h, "/a.txt", "Range: bytes=-0")[0] == 416
    assert get(h, "/a.txt", "Range: bytes=5-2")[0] == 200            # invalid: ignored
    assert get(h, "/a.txt", "Range: bytes=0-1,4-5")[0] == 200        # multipart: whole file
    assert get(h, "/a.txt", "Range: lines=1-2")[0] == 200
    etag = get(h, "/a.txt")[1]["etag"]
    assert get(h, "/a.txt", "Range: bytes=0-1", f"If-Range: {etag}")[0] == 206
    assert get(h, "/a.txt", "Range: bytes=0-1", 'If-Range: "stale"')[0] == 200
    st, head, _ = get(h, "/a.txt", "Range: bytes=0-3", method="HEAD")
    assert st == 206 and b"Content-Length: 4" in head


def test_parse_range_edges():
    assert parse_range("bytes=0-0", 1) == (0, 1)
    assert parse_range("bytes=-20", 10) == (0, 10)
    assert parse_range("bytes=0-", 0) == "unsatisfiable"
    assert parse_range("bytes=x-1", 10) is None
    assert parse_range("bytes", 10) is None


@pytest.mark.parametrize("path", [
    "/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt",
    "/sub/%2e%2e/%2e%2e/secret.txt", "/..%2fsecret.txt", "//etc/passwd", "/%2Fetc/passwd",
    "/out-link", "/out-dir/secret.txt", "/a.txt%00.png", "/sub/", "/sub", "/", "/missing",
    "/a.txt/", "/.", "/%2e",
])
def test_never_outside_root_404(site, path):
    h = Harness(make_app(str(site)))
    st, hd, body = get(h, path)
    assert st == 404, (path, st)


def test_symlink_inside_root_ok_and_index_option(site):
    h = Harness(make_app(str(site)))
    assert get(h, "/in-link")[2] == b"0123456789"
    h = Harness(make_app(str(site), index="index.html"))
    assert get(h, "/")[2] == b"<h1>home</h1>"
    assert get(h, "/sub/")[2] == b"sub index"
    assert get(h, "/out-dir/")[0] == 404


def test_prefix_mount(site):
    h = Harness(make_app(str(site), prefix="/static"))
    assert get(h, "/static/a.txt")[2] == b"0123456789"
    assert get(h, "/a.txt")[0] == 404


def test_big_file_streamed_with_length(site):
    data = os.urandom(1_000_003)
    (site / "big.bin").write_bytes(data)
    h = Harness(make_app(str(site)))
    proto, t = h.connect()
    proto.data_received(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    h.run()
    out = t.take()
    (st, hd, body), = parse_responses(out)
    assert st == 200 and body == data and "transfer-encoding" not in hd
    assert hd["content-length"] == str(len(data)) and not t.closed
    proto.data_received(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=100-400099\r\n\r\n")
    h.run()
    (st, hd, body), = parse_responses(t.take())
    assert st == 206 and body == data[100:400100]
