"""An asyncio event loop on a virtual clock, for deterministic tests.

Nothing here waits: where a real loop would sleep until its next timer, this one moves
its clock to that timer at once. ``await asyncio.sleep(30)`` inside a handler therefore
takes no wall time, and every deadline a protocol computes from ``loop.time()`` is
exact. The loop has no file descriptors of its own (no self-pipe), so tests can make
thousands of them.

    loop = VirtualClockLoop(start=100.0)
    loop.run_ready()          # run what is ready now (callbacks, task steps, due timers)
    loop.advance(5.0)         # the clock moves 5 s on, firing every timer on the way
"""
import asyncio
import selectors


class _NoIOSelector(selectors.BaseSelector):
    """Keeps registrations (asyncio insists) but never waits: a timeout is time that
    passes on the loop's virtual clock."""

    def __init__(self, loop_clock):
        self._map = {}
        self._clock = loop_clock

    def register(self, fileobj, events, data=None):
        key = selectors.SelectorKey(fileobj, _fd(fileobj), events, data)
        self._map[key.fd] = key
        return key

    def unregister(self, fileobj):
        return self._map.pop(_fd(fileobj))

    def modify(self, fileobj, events, data=None):
        self.unregister(fileobj)
        return self.register(fileobj, events, data)

    def select(self, timeout=None):
        if timeout:
            self._clock[0] += timeout
        return []

    def get_map(self):
        return self._map

    def close(self):
        self._map.clear()


def _fd(fileobj):
    return fileobj if isinstance(fileobj, int) else fileobj.fileno()


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self, start=0.0):
        self._vclock = [float(start)]
        super().__init__(_NoIOSelector(self._vclock))

    def time(self):
        return self._vclock[0]

    # no self-pipe: nothing ever blocks, so nothing needs waking
    def _make_self_pipe(self):
        self._ssock = self._csock = None

    def _close_self_pipe(self):
        pass

    def _write_to_self(self):
        pass

    def _process_self_data(self, data):
        pass

    def defer(self, fn, arg):
        """ShardLoop.defer: later, in call_soon's order."""
        self.call_soon(fn, arg)

    def run_ready(self):
        """Run everything that is ready at the current time, until nothing is."""
        while True:
            self.run_until_complete(asyncio.sleep(0))
            if not self._ready:
                return

    def advance(self, seconds):
        """Move the clock ``seconds`` on, running every timer that falls due on the way
        (and what they make ready), in order."""
        if seconds <= 0:
            self.run_ready()
            return
        self.run_until_complete(asyncio.sleep(seconds))
        self.run_ready()

    def next_deadline(self):
        """When the earliest pending timer is due, or None."""
        for h in sorted(self._scheduled):
            if not h.cancelled():
                return h.when()
        return None
