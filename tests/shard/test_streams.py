"""streams.py: TCP connection events -> asyncio-style protocols, with a fake TCP layer."""
import pytest

from framework.context import ShardContext
from framework.net.tcp import CLOSE_WAIT, CLOSED, ESTABLISHED
from framework.net.tcp.connection import Connection
from framework.shard import streams as S
from framework.vtime import VirtualClockLoop


_loops = []


@pytest.fixture(autouse=True)
def _close_loops():
    yield
    while _loops:
        _loops.pop().close()


def vloop():
    loop = VirtualClockLoop(start=0.0)
    _loops.append(loop)
    return loop


class Closed(Exception):
    pass


class FakeConn(Connection):
    # the streams take a TCP Connection; this one is driven by the test
    local = remote = None       # (plain attributes here, not the Connection's properties)

    def __init__(self, lport=8080, room=1 << 30):
        self.local = (0xC6120002, lport)
        self.remote = (0xC6120001, 40000)
        self.user = None
        self.error = None
        self.rx = b""
        self.sent = b""
        self.room = room          # bytes the send buffer still takes
        self.calls = []
        self.closed = False

    def recv(self, max=-1):
        d, self.rx = self.rx, b""
        return d

    def readable(self):
        return len(self.rx)

    def send(self, data):
        if self.closed:
            raise Closed()
        n = min(len(data), self.room)
        self.room -= n
        self.sent += bytes(data[:n])
        return n

    def shutdown(self):
        self.calls.append("shutdown")

    def close(self):
        self.calls.append("close")

    def abort(self):
        self.calls.append("abort")


class FakeTcp:
    def __init__(self):
        self.listening = []
        self.events = []

    def listen(self, port, backlog=128):
        self.listening.append(port)


class Recorder:
    def __init__(self, ctx, log, eof_keep=False):
        self.ctx = ctx
        self.log = log
        self.eof_keep = eof_keep
        self.t = None

    def connection_made(self, t):
        self.t = t
        self.log.append(("made", t.get_extra_info("peername"), t.get_extra_info("sockname")))

    def data_received(self, data):
        self.log.append(("data", data))

    def eof_received(self):
        self.log.append(("eof",))
        return self.eof_keep

    def connection_lost(self, exc):
        self.log.append(("lost", type(exc).__name__ if exc else None))

    def pause_writing(self):
        self.log.append(("pause",))

    def resume_writing(self):
        self.log.append(("resume",))


def setup(**kw):
    log = []
    tcp = FakeTcp()
    ctx = ShardContext(vloop(), 0, 1)
    st = S.Streams(tcp, ctx, {8080: lambda c: Recorder(c, log, **kw)})
    return st, tcp, log, ctx


def test_listen_accept_data_peername():
    st, tcp, log, ctx = setup()
    assert tcp.listening == [8080]
    c = FakeConn()
    c.rx = b"GET /"
    st.deliver([(S.EV_ACCEPT, c), (S.EV_READABLE, c)])
    assert log == [("made", ("198.18.0.1", 40000), ("198.18.0.2", 8080)), ("data", b"GET /")]
    assert c.user.get_protocol().ctx is ctx
    assert st.open == 1


def test_partial_write_buffers_then_flushes_on_writable_and_closes_after():
    st, tcp, log, _ = setup()
    c = FakeConn(room=3)
    st.deliver([(S.EV_ACCEPT, c)])
    t = c.user
    t.write(b"hello")
    t.write(b" world")
    assert c.sent == b"hel" and t.get_write_buffer_size() == 8
    t.close()
    assert "close" not in c.calls and t.is_closing()
    t.write(b"ignored after close")
    c.room = 100
    st.deliver([(S.EV_WRITABLE, c)])
    assert c.sent == b"hello world" and t.get_write_buffer_size() == 0
    assert c.calls == ["close"]
    st.deliver([(S.EV_CLOSED, c)])
    assert st.open == 0 and log[-1][0] != "lost"   # delivered later, by the loop
    st.loop.run_ready()
    assert log[-1] == ("lost", None)


def test_flow_control_pause_resume_writing():
    st, tcp, log, _ = setup()
    c = FakeConn(room=0)
    st.deliver([(S.EV_ACCEPT, c)])
    t = c.user
    t.set_write_buffer_limits(high=10, low=2)
    t.write(b"x" * 11)
    assert log[-1] == ("pause",)
    c.room = 100
    st.deliver([(S.EV_WRITABLE, c)])
    assert log[-1] == ("resume",)


def test_eof_closes_unless_protocol_keeps_it_open():
    st, tcp, log, _ = setup()
    c = FakeConn()
    st.deliver([(S.EV_ACCEPT, c)])
    c.rx = b"last"
    st.deliver([(S.EV_EOF, c)])
    assert log[1:] == [("data", b"last"), ("eof",)]
    assert c.calls == ["close"]

    st, tcp, log, _ = setup(eof_keep=True)
    c = FakeConn()
    st.deliver([(S.EV_ACCEPT, c), (S.EV_EOF, c)])
    assert c.calls == []
    c.user.write(b"bye")
    c.user.write_eof()
    assert c.calls == ["shutdown"] and c.sent == b"bye"


def test_connection_lost_exactly_once():
    st, tcp, log, _ = setup()
    c = FakeConn()
    c.error = "reset by peer"
    st.deliver([(S.EV_ACCEPT, c), (S.EV_RESET, c), (S.EV_CLOSED, c), (S.EV_READABLE, c)])
    st.loop.run_ready()
    assert [e for e in log if e[0] == "lost"] == [("lost", "ConnectionResetError")]
    c2 = FakeConn()
    st.deliver([(S.EV_ACCEPT, c2)])
    c2.user.abort()
    assert log[-1][0] == "made", "connection_lost must not run inside abort()"
    st.deliver([(S.EV_CLOSED, c2), (S.EV_RESET, c2)])
    st.loop.run_ready()
    assert c2.calls == ["abort"]
    assert [e for e in log if e[0] == "lost"] == [("lost", "ConnectionResetError"), ("lost", None)]
    assert st.open == 0


def test_send_on_closed_connection_is_lost_not_raised():
    st, tcp, log, _ = setup()
    c = FakeConn()
    st.deliver([(S.EV_ACCEPT, c)])
    c.closed = True
    c.user.write(b"x")
    st.loop.run_ready()
    assert log[-1] == ("lost", "Closed")


def test_pause_reading_keeps_data_in_tcp_until_resumed():
    st, tcp, log, ctx = setup()
    c = FakeConn()
    st.deliver([(S.EV_ACCEPT, c)])
    c.user.pause_reading()
    c.rx = b"later"
    st.deliver([(S.EV_READABLE, c)])
    assert c.rx == b"later" and log[-1][0] == "made"
    c.user.resume_reading()
    ctx.loop.run_ready()
    assert log[-1] == ("data", b"later")


def test_eof_while_reading_paused_waits_for_the_buffered_data():
    """Back-pressure must not lose data: an EOF that arrives while reading is paused is
    held until resume_reading() has delivered what is still in the receive buffer (as
    on a kernel socket, where recv() returns b"" only after the last byte)."""
    st, tcp, log, ctx = setup()
    c = FakeConn()
    st.deliver([(S.EV_ACCEPT, c)])
    t = c.user
    t.pause_reading()
    c.rx = b"pipelined requests"
    st.deliver([(S.EV_READABLE, c), (S.EV_EOF, c)])
    ctx.loop.run_ready()
    assert c.rx == b"pipelined requests", "data must stay in TCP while paused"
    assert log[-1][0] == "made" and c.calls == [], "no EOF (and no close) before the data"
    t.resume_reading()
    ctx.loop.run_ready()
    assert log[1:] == [("data", b"pipelined requests"), ("eof",)]
    assert c.calls == ["close"]


def test_eof_held_again_when_the_protocol_pauses_on_the_last_data():
    log = []
    tcp = FakeTcp()
    ctx = ShardContext(vloop(), 0, 1)

    class Pauser(Recorder):
        def data_received(self, data):
            super().data_received(data)
            self.t.pause_reading()     # e.g. many pipelined requests queued

    st = S.Streams(tcp, ctx, {8080: lambda c: Pauser(c, log)})
    c = FakeConn()
    st.deliver([(S.EV_ACCEPT, c)])
    c.rx = b"first"
    st.deliver([(S.EV_READABLE, c)])          # pauses
    c.rx = b"second"
    st.deliver([(S.EV_EOF, c)])
    assert log[1:] == [("data", b"first")] and c.calls == []
    c.user.resume_reading()
    ctx.loop.run_ready()                 # delivers "second", which pauses again
    assert log[1:] == [("data", b"first"), ("data", b"second")] and c.calls == []
    c.user.resume_reading()
    ctx.loop.run_ready()                 # nothing left: now the EOF
    assert log[1:] == [("data", b"first"), ("data", b"second"), ("eof",)]
    assert c.calls == ["close"]


def test_lingering_close_after_a_held_eof_closes():
    st, tcp, log, ctx = setup()
    c = FakeConn()
    st.deliver([(S.EV_ACCEPT, c)])
    c.user.pause_reading()
    c.rx = b"unwanted body"
    st.deliver([(S.EV_EOF, c)])
    c.user.lingering_close()
    ctx.loop.run_ready()
    assert c.calls == ["shutdown", "close"] and c.rx == b""
    assert not [e for e in log if e[0] in ("data", "eof")]


def test_close_with_unread_input_lingers_instead_of_resetting():
    """close() while paused input waits in TCP: TCP's close() would answer it with an RST
    that destroys the responses in flight; the transport lingers instead (FIN after the
    data, input discarded until the peer's EOF), as the kernel transport does."""
    st, tcp, log, ctx = setup()
    c = FakeConn(room=4)
    st.deliver([(S.EV_ACCEPT, c)])
    t = c.user
    t.pause_reading()
    c.rx = b"GET /after-the-close-one"
    st.deliver([(S.EV_READABLE, c)])
    t.write(b"responses")
    t.close()
    assert c.calls == []                      # the responses first
    c.room = 100
    st.deliver([(S.EV_WRITABLE, c)])
    assert c.sent == b"responses" and c.calls == ["shutdown"], "close with unread input: RST"
    ctx.loop.run_ready()
    assert c.rx == b"" and not [e for e in log if e[0] == "data"]
    st.deliver([(S.EV_EOF, c)])
    assert c.calls == ["shutdown", "close"]
    # the peer's EOF held behind unread input (paused): the input is discarded first
    c3 = FakeConn()
    st.deliver([(S.EV_ACCEPT, c3)])
    c3.user.pause_reading()
    c3.rx = b"more"
    st.deliver([(S.EV_EOF, c3)])
    c3.user.close()
    assert c3.calls == ["shutdown"]
    ctx.loop.run_ready()
    assert c3.calls == ["shutdown", "close"] and c3.rx == b""
    # nothing unread: an ordinary close
    c2 = FakeConn()
    st.deliver([(S.EV_ACCEPT, c2)])
    c2.user.close()
    assert c2.calls == ["close"]


def test_eof_next_turn_follows_the_data_a_turn_later():
    """With eof_next_turn (the shard loop), a FIN that came with data is delivered in the
    next turn, after the loop ran what the data caused: on a kernel socket recv()
    reports the EOF only on a later call, so an async handler that answers at once
    answers before it learns of the EOF on both stacks (same response bytes)."""
    log = []
    tcp = FakeTcp()
    ctx = ShardContext(vloop(), 0, 1)
    st = S.Streams(tcp, ctx, {8080: lambda c: Recorder(c, log)}, eof_next_turn=True)
    st.new_turn()
    c = FakeConn()
    st.deliver([(S.EV_ACCEPT, c)])
    c.rx = b"GET / HTTP/1.1\r\n\r\n"
    st.deliver([(S.EV_READABLE, c), (S.EV_EOF, c)])
    ctx.loop.call_soon(log.append, ("loop",))   # what the data caused
    ctx.loop.run_ready()
    assert [e[0] for e in log[1:]] == ["data", "loop"] and c.calls == []
    assert st.eofs_waiting()
    assert st.new_turn() is True
    assert [e[0] for e in log[1:]] == ["data", "loop", "eof"] and c.calls == ["close"]
    assert st.new_turn() is False
    # no data in the EOF's turn: delivered at once
    c2 = FakeConn()
    st.deliver([(S.EV_ACCEPT, c2)])
    st.new_turn()
    st.deliver([(S.EV_EOF, c2)])
    assert log[-1] == ("eof",) and c2.calls == ["close"]


def test_failing_handler_aborts_only_its_connection():
    log = []
    tcp = FakeTcp()
    ctx = ShardContext(vloop(), 0, 1)

    class Bad(Recorder):
        def data_received(self, data):
            raise ValueError("handler bug")

    st = S.Streams(tcp, ctx, {8080: lambda c: Bad(c, log), 9000: lambda c: Recorder(c, log)})
    a, b = FakeConn(8080), FakeConn(9000)
    a.rx = b.rx = b"x"
    st.deliver([(S.EV_ACCEPT, a), (S.EV_ACCEPT, b), (S.EV_READABLE, a), (S.EV_READABLE, b)])
    ctx.loop.run_ready()
    assert a.calls == ["abort"] and b.calls == []
    assert ("data", b"x") in log and ("lost", None) in log


def test_unknown_listener_is_ignored():
    st, tcp, log, _ = setup()
    c = FakeConn(lport=1234)
    st.deliver([(S.EV_ACCEPT, c), (S.EV_READABLE, c)])
    assert log == [] and c.user is None


def test_lingering_close_discards_input_until_eof():
    st, tcp, log, ctx = setup()
    c = FakeConn(room=2)
    st.deliver([(S.EV_ACCEPT, c)])
    t = c.user
    t.write(b"413 response")
    t.lingering_close()
    assert c.calls == []              # FIN only after the pending response
    c.room = 100
    st.deliver([(S.EV_WRITABLE, c)])
    assert c.sent == b"413 response" and c.calls == ["shutdown"]
    c.rx = b"rest of a refused body"
    st.deliver([(S.EV_READABLE, c)])
    assert c.rx == b"" and not [e for e in log if e[0] == "data"]
    st.deliver([(S.EV_EOF, c)])
    assert c.calls == ["shutdown", "close"]


def test_lingering_close_gives_up_after_linger_time():
    st, tcp, log, ctx = setup()
    c = FakeConn()
    st.deliver([(S.EV_ACCEPT, c)])
    c.user.lingering_close()
    assert c.calls == ["shutdown"]
    ctx.loop.advance(S.LINGER_TIME - 0.1)
    assert c.calls == ["shutdown"]
    ctx.loop.advance(0.11)             # now LINGER_TIME + 0.01
    assert c.calls == ["shutdown", "close"]


def test_graceful_shutdown_asks_protocols_and_refuses_new():
    st, tcp, log, ctx = setup()
    done = []

    class Graceful(Recorder):
        def shutdown(self):
            done.append(self)
            self.t.close()

    st.listeners[9000] = lambda c: Graceful(c, log)
    a, b = FakeConn(8080), FakeConn(9000)
    st.deliver([(S.EV_ACCEPT, a), (S.EV_ACCEPT, b)])
    st.shutdown()
    assert len(done) == 1 and a.calls == ["close"] and b.calls == ["close"]
    late = FakeConn(8080)
    st.deliver([(S.EV_ACCEPT, late)])
    assert late.calls == ["abort"] and late.user is None


def test_reserved_port_holds_connections_until_listen():
    """A worker starting (its app's on_start hooks still running) reserves its ports: TCP
    completes handshakes, and the connections wait unread for listen(), as on a kernel
    socket that listens before its accept loop runs; none is refused."""
    log = []
    tcp = FakeTcp()
    ctx = ShardContext(vloop(), 0, 1)
    st = S.Streams(tcp, ctx)
    st.reserve(8080)
    assert tcp.listening == [8080]
    quiet, gone, done = FakeConn(), FakeConn(), FakeConn()
    for c in (quiet, gone, done):
        c.state = ESTABLISHED
    quiet.rx = b"GET / "
    done.rx = b"GET /last"
    st.deliver([(S.EV_ACCEPT, quiet), (S.EV_ACCEPT, gone), (S.EV_ACCEPT, done),
                (S.EV_READABLE, quiet), (S.EV_READABLE, done)])
    gone.state = CLOSED                  # the client gave up and reset it meanwhile
    st.deliver([(S.EV_RESET, gone)])
    done.state = CLOSE_WAIT              # this one sent its FIN meanwhile
    st.deliver([(S.EV_EOF, done)])
    assert log == [] and st.open == 0

    st.listen(8080, lambda c: Recorder(c, log))
    ctx.loop.run_ready()
    assert [e[0] for e in log] == ["made", "data", "made", "data", "eof"]
    assert log[1] == ("data", b"GET / ") and log[3] == ("data", b"GET /last")
    assert quiet.user is not None and gone.user is None and done.calls == ["close"]
    assert st.open == 2 and st.held == {}


def test_unreserved_port_resets_what_it_held():
    tcp = FakeTcp()
    tcp.unlisten = tcp.listening.remove
    st = S.Streams(tcp, ShardContext(vloop(), 0, 1))
    st.reserve(9000)
    c = FakeConn(9000)
    c.state = ESTABLISHED
    st.deliver([(S.EV_ACCEPT, c)])
    st.unreserve(9000)
    assert c.calls == ["abort"] and tcp.listening == [] and st.held == {}
