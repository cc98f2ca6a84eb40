"""Serve a directory: content types, ETag/Last-Modified (304), Range (206/416).

    FRAMEWORK_STATIC_ROOT=/srv/www framework serve apps.static:app

Or in your own app: ``App([("/files/{path:.*}", StaticFileHandler, {"root": "/srv/www"})])``.
Never serves a file outside ``root``: ``..`` segments, percent-encoded traversal,
absolute paths, NUL bytes and symlinks leading out of the root all answer 404.
Directory indexes are off unless ``index="index.html"`` is given (no listings ever).
"""
import mimetypes
import os
from email.utils import formatdate, parsedate_to_datetime

from framework import App, HTTPError, RequestHandler


STREAM_ABOVE = 256 * 1024     # files (ranges) bigger than this are streamed ...
CHUNK = 64 * 1024             # ... in pieces of this size


class StaticFileHandler(RequestHandler):
    def initialize(self, root, index=None):
        self.root = os.path.realpath(root)
        self.index = index

    def resolve(self, path):
        """The real path of an existing regular file inside root, else None."""
        if "\x00" in path:
            return None
        full = os.path.realpath(os.path.join(self.root, path))
        if full != self.root and not full.startswith(self.root + os.sep):
            return None
        if path.endswith("/") and not os.path.isdir(full):
            return None        # "a.txt/" names a directory that does not exist
        if os.path.isdir(full):
            if not self.index:
                return None
            full = os.path.realpath(os.path.join(full, self.index))
            if not full.startswith(self.root + os.sep):
                return None
        return full if os.path.isfile(full) else None

    def get(self, path):
        full = self.resolve(path)
        if full is None:
            raise HTTPError(404)
        try:
            st = os.stat(full)
        except OSError:
            raise HTTPError(404) from None
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        self.set_header("ETag", etag)
        self.set_header("Last-Modified", formatdate(st.st_mtime, usegmt=True))
        self.set_header("Accept-Ranges", "bytes")
        ctype, encoding = mimetypes.guess_type(full)
        if encoding == "gzip":
            ctype = "application/gzip"
        elif encoding:
            ctype = "application/octet-stream"
        elif ctype and ctype.startswith("text/"):
            ctype += "; charset=utf-8"
        self.set_header("Content-Type", ctype or "application/octet-stream")

        if self.not_modified(etag, st.st_mtime):
            self.set_status(304)
            return

        start, end = 0, size          # [start, end)
        rng = self.request.headers.get("Range")
        if rng is not None and self.if_range_ok(etag, st.st_mtime):
            parsed = parse_range(rng, size)
            if parsed == "unsatisfiable":
                self.set_status(416)
                self.set_header("Content-Range", f"bytes */{size}")
                self.set_header("Content-Type", "text/plain; charset=utf-8")
                return
            if parsed is not None:
                start, end = parsed
                self.set_status(206)
                self.set_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        length = end - start
        self.set_header("Content-Length", length)
        if self.request.method == "HEAD" or length == 0:
            return
        if length > STREAM_ABOVE:
            # big files go out piece by piece at the client's pace, never whole in memory
            return self.stream_file(full, start, length)
        with open(full, "rb") as f:
            if start:
                f.seek(start)
            self.write(f.read(length))

    async def stream_file(self, full, start, length):
        with open(full, "rb") as f:
            if start:
                f.seek(start)
            while length > 0:
                chunk = f.read(min(CHUNK, length))
                if not chunk:       # the file shrank meanwhile: the connection is cut
                    break
                length -= len(chunk)
                self.write(chunk)
                await self.flush()

    def not_modified(self, etag, mtime):
        inm = self.request.headers.get("If-None-Match")
        if inm is not None:   # takes precedence over If-Modified-Since (RFC 9110 13.2.2)
            tags = [t.strip() for t in inm.split(",")]
            return "*" in tags or etag in tags or ("W/" + etag) in tags
        ims = self.request.headers.get("If-Modified-Since")
        if ims is not None:
            try:
                return int(mtime) <= parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError, IndexError):
                return False
        return False

    def if_range_ok(self, etag, mtime):
        ir = self.request.headers.get("If-Range")
        if ir is None:
            return True
        if ir.startswith('"') or ir.startswith("W/"):
            return ir == etag
        try:
            return int(mtime) <= parsedate_to_datetime(ir).timestamp()
        except (TypeError, ValueError, IndexError):
            return False


def parse_range(header, size):
    """(start, end) for one satisfiable byte range, "unsatisfiable", or None (ignore it)."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None            # other units and multipart ranges: send the whole file
    first, sep, last = spec.strip().partition("-")
    if not sep:
        return None
    try:
        if first == "":
            n = int(last)
            if n < 0:
                return None
            if n == 0 or size == 0:
                return "unsatisfiable"
            return max(0, size - n), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start < 0 or (last and end <= start):
        return None            # syntactically invalid (last < first): ignore
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size)


def make_app(root, index=None, prefix=""):
    return App([(prefix + "/{path:.*}", StaticFileHandler, {"root": root, "index": index})])


app = make_app(os.environ.get("FRAMEWORK_STATIC_ROOT", "."),
               index=os.environ.get("FRAMEWORK_STATIC_INDEX") or None)
