"""Coverage-guided fuzz target: bytes into the HTTP/1.1 server protocol (framework/web/http1.py).

    FRAMEWORK_PURE_PYTHON=1 python -m tests.fuzz.fuzz_http [CORPUS_DIR] [-max_total_time=600]

Atheris instruments Python bytecode only, so the target runs the framework as plain
Python (``FRAMEWORK_PURE_PYTHON=1``, set by tests/fuzz/runner.py before ``framework`` is
imported): the compiled modules (http1, httputil, h1writer, httpserver) would be blind spots to the
fuzzer's coverage. httptools (llhttp, C) parses underneath, uninstrumented; what we fuzz is
our side: the callbacks, limits, pipelining, streamed bodies, Upgrade, timeouts, errors.

One input is a script for one connection on a fake transport with a virtual clock
(tests/web/fakes.py): chunks of bytes (or long runs of one byte), clock advances, write
pauses, EOF, then the connection is lost. A crash is anything a user would see as a server bug:
  - an exception out of the protocol (data_received, eof_received, connection_lost...),
  - an exception reaching the asyncio loop's handler (a task that failed unobserved),
  - an ERROR logged by the framework other than the handler error the app raises on
    purpose (``/boom``): "HTTP parser callback failed" and the like,
  - a write after close (FakeTransport asserts), bytes out that do not start a response.
Documented outcomes are not crashes: 4xx/5xx answers, closes, resets.

Without a corpus directory argument the run uses ``$TMPDIR/framework-fuzz-http``, seeded
with the requests of ``seeds()``. A crash's input is written by libFuzzer (``crash-*``);
keep it under tests/fuzz/crashes/http/ and test_fuzz.py replays it on every run.
"""
import struct
import sys

OP_DATA, OP_ADVANCE, OP_PAUSE_WRITING, OP_RESUME_WRITING, OP_EOF, OP_FILL = range(6)
_N_OPS = 6
FILL_UNIT = 2048        # OP_FILL: this many bytes of b"x" per count (a body over 256 KiB
                        # makes a streamed request pause reading)

_h = None          # (Harness, errors list) once load() ran


class FuzzFailure(AssertionError):
    """What the target reports as a crash."""


def load():
    """Import the framework (under atheris' instrumentation when called from main)
    and build the one app every input talks to."""
    global _h
    if _h is not None:
        return _h
    import asyncio
    import logging

    from framework import App, HTTPError, RequestHandler
    from tests.web.fakes import Harness

    class Boom(Exception):
        """The app's own bug, raised on purpose: logged and answered 500 (documented)."""

    app = App(max_body_size=2000, max_header_size=1024, idle_timeout=5.0,
              request_timeout=2.0)

    @app.route("/")
    class Hello(RequestHandler):
        def get(self):
            self.write("Hello, World!")

        def head(self):
            self.set_header("Content-Length", "13")

    @app.route("/echo")
    class Echo(RequestHandler):
        def post(self):
            self.write(self.request.body)

        put = post

    @app.route("/args/{name}")
    class Args(RequestHandler):
        def get(self, name):
            self.write({"name": name, "q": self.get_arguments("q"),
                        "h": self.request.headers.get("X-A", ""),
                        "ip": self.request.remote_ip, "host": self.request.host})

    @app.route("/slow")
    class Slow(RequestHandler):
        async def get(self):
            await asyncio.sleep(0.5)
            self.write("slow")

    @app.route("/chunks")
    class Chunks(RequestHandler):
        async def get(self):
            for i in range(3):
                self.write(b"x" * 100)
                await self.flush()
            self.finish()

    @app.route("/stream")
    class Stream(RequestHandler):
        stream_request_body = True
        max_body_size = 1 << 20

        async def put(self):
            n = 0
            async for chunk in self.request.stream():
                n += len(chunk)
                await asyncio.sleep(0.01)
            self.write(str(n))

        async def post(self):          # answers without reading the body
            self.set_status(401)

    @app.route("/error/{code}")
    class Error(RequestHandler):
        def get(self, code):
            raise HTTPError(int(code) if code.isdigit() and len(code) == 3 else 400)

    @app.route("/boom")
    class BoomHandler(RequestHandler):
        def get(self):
            raise Boom("on purpose")

    @app.route("/ws")
    class Upgrade(RequestHandler):
        def get(self):                  # an Upgrade answered, never detached
            self.set_status(426)

    h = Harness(app)
    errors = []

    class Collect(logging.Handler):
        def emit(self, record):
            exc = record.exc_info[1] if record.exc_info else None
            if isinstance(exc, Boom):
                return
            errors.append(f"{record.name}: {record.getMessage()} {exc!r}")

    h.loop.set_exception_handler(lambda loop, context: errors.append(
        f"loop: {context.get('message')} {context.get('exception')!r}"))
    _h = h, errors, Collect(logging.ERROR)
    return _h


def encode(ops):
    """The input bytes for a script of (op, arg) (seeds and regression cases)."""
    out = bytearray()
    for op, arg in ops:
        out.append(op)
        if op == OP_DATA:
            out += struct.pack("!H", len(arg)) + arg
        elif op in (OP_ADVANCE, OP_FILL):
            out.append(arg)
    return bytes(out)


def decode(data):
    """(op, arg) from the input: one op byte, then a 2-byte length and the bytes for
    data, one byte of tenths of a second for a clock advance, one byte of FILL_UNITs for
    a fill."""
    i, n = 0, len(data)
    while i < n:
        op = data[i] % _N_OPS
        i += 1
        if op == OP_DATA:
            if i + 2 > n:
                ln = 0
            else:
                ln = struct.unpack_from("!H", data, i)[0]
                i += 2
            yield op, data[i:i + ln]
            i += ln
        elif op == OP_ADVANCE:
            yield op, (data[i] if i < n else 10) / 10.0
            i += 1
        elif op == OP_FILL:
            yield op, b"x" * FILL_UNIT * (data[i] if i < n else 1)
            i += 1
        else:
            yield op, None


def one_input(data):
    import logging
    h, errors, collect = load()
    errors.clear()
    logger = logging.getLogger("framework")
    propagate = logger.propagate
    logger.addHandler(collect)
    logger.propagate = False    # the app's /boom tracebacks are expected: not on stderr
    try:
        _connection(h, data)
    finally:
        logger.removeHandler(collect)
        logger.propagate = propagate
    if errors:
        raise FuzzFailure("; ".join(errors))


def _connection(h, data):
    proto, t = h.connect()
    try:
        for op, arg in decode(data):
            if t.closed:
                break
            if op == OP_DATA or op == OP_FILL:
                proto.data_received(arg)
                h.run()
            elif op == OP_ADVANCE:
                h.run(arg)
            elif op == OP_PAUSE_WRITING:
                proto.pause_writing()
            elif op == OP_RESUME_WRITING:
                proto.resume_writing()
            elif op == OP_EOF:
                if not proto.eof_received():
                    t.close()
                h.run()
        h.run(0.1)
        out = t.take()
        if out and not out.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):
            raise FuzzFailure(f"bytes out that are not a response: {out[:80]!r}")
    finally:
        proto.connection_lost(None)
        h.run(3.0)      # let handlers still running finish against the lost connection


def seeds():
    """Inputs for an empty corpus: the requests the protocol tests send."""
    D = OP_DATA
    get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    post = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    chunked = (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    stream = b"PUT /stream HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"
    return [
        encode([(D, get)]),
        encode([(D, b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n" + get * 20), (OP_ADVANCE, 10)]),
        encode([(D, b"PUT /stream HTTP/1.1\r\nHost: a\r\nContent-Length: 600000\r\n\r\n"),
                (OP_FILL, 200), (OP_FILL, 93), (OP_ADVANCE, 20), (D, b"x" * 64),
                (OP_ADVANCE, 50)]),
        encode([(D, get * 3 + b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n" + get), (OP_ADVANCE, 10)]),
        encode([(D, post[:20]), (D, post[20:]), (D, chunked)]),
        encode([(D, b"GET /args/x%20y?q=1&q=2 HTTP/1.1\r\nHost: h:80\r\nX-A: b\r\n\r\n")]),
        encode([(D, stream), (D, b"01234"), (OP_ADVANCE, 1), (D, b"56789"), (OP_ADVANCE, 5)]),
        encode([(D, b"POST /stream HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\n\r\nxx")]),
        encode([(D, b"GET /chunks HTTP/1.1\r\nHost: a\r\n\r\n"), (OP_PAUSE_WRITING, None),
                (D, get), (OP_RESUME_WRITING, None), (OP_ADVANCE, 2)]),
        encode([(D, b"GET /error/418 HTTP/1.1\r\nHost: a\r\n\r\nGET /boom HTTP/1.1\r\n\r\n")]),
        encode([(D, b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                    b"Upgrade: websocket\r\n\r\nrest")]),
        encode([(D, b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                    b"Content-Length: 4\r\n\r\n"), (D, b"abcd")]),
        encode([(D, b"GET / HTTP/1.0\r\n\r\n"), (OP_EOF, None)]),
        encode([(D, b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 1100), (OP_ADVANCE, 30)]),
        encode([(D, b"GET http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")]),
    ]


def main(argv=None):
    from tests.fuzz import runner
    runner.main("http", argv or sys.argv, load, one_input, seeds)


if __name__ == "__main__":
    main()
