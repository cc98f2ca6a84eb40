"""The shard loop: one standard asyncio event loop per worker, over one stream provider.

``ShardLoop`` is an ``asyncio.SelectorEventLoop`` whose selector runs the shard's turn.
asyncio keeps what it is good at (callbacks, timers, tasks, futures, executors, and the
kernel-socket clients a handler opens with ``asyncio.open_connection``); the shard's own
I/O never goes through asyncio's callback queue. Every ``select(timeout)`` asyncio makes
is one turn, in the order of the map (DESIGN.md):

    (output)       if the callbacks asyncio ran since the last turn wrote anything, the
                   provider sends it first
    sleep          only when nothing moved: epoll on the NIC fd, the doorbell (every shm
                   ring into this shard rings it) and the kernel fds, until the earliest
                   of asyncio's next timer, the provider's and the cross-shard deadline,
                   at most MAX_SLEEP; an idle worker costs ~0% CPU, a busy one never sleeps
    input          rx_burst, stack input, the batch of connection events to the protocols
                   (kernel provider: its sockets' readiness, handled as epoll reports it)
    rings          cross-shard calls and replies
    output         stack output (TCP output, the stack's timers: retransmit, delayed ACK,
                   ...) and tx_burst: a synchronous handler's response leaves in the turn
                   that brought its request
    (asyncio)      then asyncio fires its due timers and runs what is ready: handlers'
                   coroutines and callbacks

The loop also owns what both stacks share: the graceful stop (the provider refuses new
connections, protocols finish, at most ``grace`` seconds, then what is left is reset),
heartbeats and counters in the shard's stats block (a handler that blocks stops the
heartbeat, so the supervisor's watchdog sees it) and the cross-shard mesh.

A provider (framework/shard/userstack.py, framework/shard/kernelstack.py) supplies
``listen``/``connect`` and the transports; CONTRACTS section 5 lists its methods.
"""
import asyncio
import logging
import math
import os
import select
import selectors
import signal
import sys
import time

log = logging.getLogger("framework.shard")

MAX_SLEEP = 1.0         # an idle worker still turns once a second (heartbeat, stats)
STATS_EVERY = 0.5       # seconds between two publications of the shard's counters
DRAIN_LOOK = 0.05       # while draining, look at the grace deadline this often
GRACE = 5.0             # graceful stop: open connections get this long to finish
# the loop's own counters in the shard's stats block (framework/shm StatsBlock)
LOOP_STATS = ("pid", "heartbeat_ms", "loop.turns", "loop.sleeps", "streams.open",
              "streams.accepted")
XSHARD_STATS = ("xshard.calls_out", "xshard.calls_in", "xshard.failed", "xshard.timeouts")

_EPOLLIN = select.EPOLLIN


class ShardSelector(selectors.EpollSelector):
    """asyncio's selector for a ShardLoop: ``select`` is the shard's turn. The shard's own
    fds ("native": NIC, doorbell, kernel-provider sockets) share the epoll set with
    asyncio's registrations; their events are handled in the turn, not returned."""

    def __init__(self, shard_loop):
        super().__init__()
        self._shard = shard_loop
        self.native = {}          # fd -> fn(epoll events)

    def add_native(self, fd, fn, events=_EPOLLIN):
        self._selector.register(fd, events)
        self.native[fd] = fn

    def modify_native(self, fd, events):
        self._selector.modify(fd, events)

    def remove_native(self, fd):
        if self.native.pop(fd, None) is not None:
            try:
                self._selector.unregister(fd)
            except (OSError, ValueError):
                pass

    def select(self, timeout=None):
        return self._shard._turn(timeout)

    def poll(self, timeout):
        """One epoll wait; native events are handled here, asyncio's returned."""
        try:
            events = self._selector.poll(timeout, max(len(self._fd_to_key) + len(self.native),
                                                      1))
        except InterruptedError:
            return []
        ready = []
        native = self.native
        fd_to_key = self._fd_to_key
        for fd, ev in events:
            fn = native.get(fd)
            if fn is not None:
                fn(ev)
                continue
            key = fd_to_key.get(fd)
            if key is not None:
                mask = 0
                if ev & ~self._EVENT_READ:
                    mask |= selectors.EVENT_WRITE
                if ev & ~self._EVENT_WRITE:
                    mask |= selectors.EVENT_READ
                ready.append((key, mask & key.events))
        return ready


class ShardLoop(asyncio.SelectorEventLoop):
    """The event loop of one shard. ``attach(provider, ctx)`` before running."""

    def __init__(self, grace=GRACE, stats=None, clock=time.monotonic):
        self._sel = ShardSelector(self)
        super().__init__(self._sel)
        self._clock = clock
        # the shard's clock is asyncio's clock: one time for timers, protocols and stack
        # (an instance attribute: protocols call loop.time() several times a request)
        self.time = clock
        self.provider = None
        self.ctx = None
        self.grace = grace
        self.stats = stats          # a framework.shm StatsBlock, or None
        self.xs = None              # the shard's end of the cross-shard mesh, or None
        self.bell = None            # the shard's Doorbell (every ring into it rings it)
        self.turns = 0
        self.sleeps = 0
        self.draining = False
        self._drain_until = None
        self._soft_until = None     # retire(): until then connections close themselves
        self._stopped = False
        self._busy = True
        self._next_stats = 0.0
        self._stat_names = None
        self._never_sleep = False
        self._provider_failed = False
        self._deferred = []         # (fn, arg): see defer()
        # the shard's own fds (NIC, doorbell, kernel sockets): the selector's methods
        # themselves, as providers call them once or twice per connection
        self.add_native = self._sel.add_native          # (fd, fn(events), events=EPOLLIN)
        self.modify_native = self._sel.modify_native    # (fd, events)
        self.remove_native = self._sel.remove_native    # (fd)

    # ---- wiring -------------------------------------------------------------------------
    def attach(self, provider, ctx):
        self.provider = provider
        self.ctx = ctx
        provider.start(self, ctx)
        ctx.bind(connector=provider.connect)

    def attach_mesh(self, xs):
        """Cross-shard calls (xshard.XShard): drained every turn, their doorbell polled."""
        self.xs = xs
        self.ctx.bind(calls=xs)
        self.use_doorbell(xs.bell)

    def use_doorbell(self, bell):
        if self.bell is None:
            self.bell = bell
            self._sel.add_native(bell.fileno(), lambda ev: bell.drain())

    def defer(self, fn, arg):
        """Call ``fn(arg)`` later: at the start of the next turn, i.e. after the callbacks
        asyncio runs in this iteration, as ``call_soon`` would order it, without making
        an asyncio Handle (providers defer ``connection_lost`` for every connection)."""
        self._deferred.append((fn, arg))

    def _run_deferred(self):
        deferred, self._deferred = self._deferred, []
        for fn, arg in deferred:
            try:
                fn(arg)
            except Exception:
                log.exception("%r failed", fn)

    # ---- stopping -----------------------------------------------------------------------
    def request_stop(self, graceful=True):
        """graceful: protocols finish, new connections are refused, at most ``grace``
        seconds (asking again changes nothing); otherwise stop at the end of this turn."""
        if graceful:
            self.draining = True
            if self._soft_until is not None:    # retiring: no more waiting for requests
                self._soft_until = 0.0
        else:
            self._stopped = True
            self.stop()

    def retire(self, flows_path=None):
        """Zero-downtime reload: a successor serves the new flows; ours finish. Each HTTP
        connection closes after its next response (the client reconnects to the
        successor, and no request meets a connection closed under it); the ones still
        idle after half the grace get the usual graceful stop."""
        self.provider.retire(flows_path)
        self._soft_until = -1.0
        self.draining = True

    def _drain_step(self, now):
        provider = self.provider
        if self._drain_until is None:
            self._drain_until = now + self.grace
            if self._soft_until == -1.0:
                self._soft_until = now + self.grace / 2
            else:
                self._soft_until = None
                provider.shutdown()
            return
        if self._soft_until is not None and now >= self._soft_until:
            self._soft_until = None
            provider.shutdown()
        done = provider.all_done()
        if done or now >= self._drain_until:
            if not done:
                # grace is over: reset what is still open, so its clients learn at once
                # instead of waiting on a peer that is about to vanish with the link
                provider.abort_all()
            self._stopped = True
            self.stop()

    # ---- the turn -----------------------------------------------------------------------
    def _turn(self, timeout):
        if self._provider_failed:
            return self._sel.poll(0)
        provider = self.provider
        busy = self._busy
        if self._deferred:
            self._run_deferred()
            busy = True
        now = self._clock()
        if provider.has_output() and provider.output(now):
            busy = True
        if self.draining and not self._stopped:
            self._drain_step(now)
        if now >= self._next_stats:
            self.publish(now)
        wait = 0.0
        if (not busy and timeout != 0 and not self._ready and not self._stopped
                and not self._never_sleep):
            wait = self._sleep_timeout(now, timeout)
        bell = self.bell
        if wait > 0 and bell is not None:
            # announce the sleep, then look again: a producer that pushed before seeing
            # the announcement did not ring (no lost wake-up)
            bell.prepare_sleep()
            if self._rings_pending():
                bell.awake()
                wait = 0.0
        if wait > 0:
            self.sleeps += 1
            provider.idle()
            ready = self._sel.poll(wait)
            if bell is not None:
                bell.awake()
        elif self.provider.polls or len(self._sel._fd_to_key) > 1 or not self.turns & 63:
            ready = self._sel.poll(0)
        else:
            # a busy user-stack turn with no kernel fds but asyncio's self-pipe (signals):
            # no syscall for them on every turn
            ready = []
        now = self._clock()
        busy = provider.input(now)
        xs = self.xs
        if xs is not None and (xs.drain(now) or xs.busy()):
            busy = True
        if provider.output(now):
            busy = True
        self._busy = busy or provider.busy() or bool(self._deferred)
        self.turns += 1
        return ready

    def _sleep_timeout(self, now, timeout):
        """Seconds to sleep: asyncio's timeout, cut by the provider's and the mesh's
        deadlines and the next stats publication, at most MAX_SLEEP."""
        wait = MAX_SLEEP if timeout is None else min(timeout, MAX_SLEEP)
        for d in (self.provider.deadline(),
                  self.xs.next_deadline(now) if self.xs is not None else None):
            if d is not None and d - now < wait:
                wait = d - now
        if self.draining:
            wait = min(wait, DRAIN_LOOK)
        if wait <= 0:
            return 0.0
        # epoll counts milliseconds: round up, as waking early would spin until due
        return math.ceil(wait * 1000.0) / 1000.0

    def _rings_pending(self):
        if self.provider.pending():
            return True
        xs = self.xs
        if xs is not None:
            for r in xs.inbound:
                if not r.empty():
                    return True
        return False

    # ---- stats --------------------------------------------------------------------------
    def publish(self, now):
        """Copy the shard's counters into its stats block (one writer: this shard)."""
        self._next_stats = now + STATS_EVERY
        st = self.stats
        if st is None:
            return
        names = self._stat_names
        if names is None:
            names = self._stat_names = frozenset(st.names)
        vals = self.provider.counters()
        xs = self.xs
        if xs is not None:
            c = xs.counters
            vals.update((k, c.get(k, 0)) for k in XSHARD_STATS)
        vals["pid"] = os.getpid()
        vals["heartbeat_ms"] = int(now * 1000)
        vals["loop.turns"] = self.turns
        vals["loop.sleeps"] = self.sleeps
        tls = sys.modules.get("framework.web.tls")     # loaded only when serving HTTPS
        if tls is not None:
            vals.update(tls.STATS)
        st.update({k: v for k, v in vals.items() if k in names})

    # ---- running ------------------------------------------------------------------------
    def serve(self):
        """Run until stopped (request_stop, or the signals ``install_signals`` set), then
        finish: tasks still running are cancelled, the executor is shut down, the
        provider sends what the last closes queued and closes its port/sockets."""
        try:
            self.run_forever()
        except BaseException:
            # the provider failed (e.g. PortGone): finishing must not turn it again
            self._provider_failed = True
            for fd in list(self._sel.native):
                self._sel.remove_native(fd)
            raise
        finally:
            self._finish()

    def run_turns(self, n=1):
        """Run ``n`` turns (asyncio iterations) and return, never sleeping: for
        benchmarks and tests that drive the loop themselves."""
        self._never_sleep = True
        asyncio.events._set_running_loop(self)
        try:
            for _ in range(n):
                self._run_once()
        finally:
            asyncio.events._set_running_loop(None)
            self._never_sleep = False

    def install_signals(self):
        """SIGTERM: graceful stop; SIGQUIT: stop now. SIGINT is ignored: Ctrl-C reaches
        the whole process group, and the supervisor decides what it means for the workers
        (it sends SIGQUIT for a fast stop); a repeated SIGTERM stays graceful."""
        self.add_signal_handler(signal.SIGTERM, self.request_stop, True)
        self.add_signal_handler(signal.SIGQUIT, self.request_stop, False)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _finish(self):
        tasks = [t for t in asyncio.all_tasks(self) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            self.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        if not self._provider_failed:
            self.provider.output(self._clock())   # the FINs and RSTs the last closes queued
        self.run_until_complete(self.shutdown_asyncgens())
        self.run_until_complete(self.shutdown_default_executor())
