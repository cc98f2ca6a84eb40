"""Module-level functions and scenarios for the cross-shard tests (pickled by name)."""
import select
import time

from framework.shard import xshard
from framework.shard.context import ShardContext
from framework.shard.reactor import Reactor


# --- functions run on the target shard -------------------------------------------------
def put(key, value):
    xshard.context().state[key] = value
    return xshard.context().shard_id


def get(key):
    return xshard.context().state.get(key)


def whoami():
    return xshard.context().shard_id


def boom(msg):
    raise KeyError(msg)


def unpicklable_result():
    return lambda: 1


async def slow_double(x, delay):
    await xshard.context().reactor.sleep(delay)
    return 2 * x


def spin(seconds, mark=None):
    if mark:              # tells the test the call is in flight here
        open(mark, "w").close()
    time.sleep(seconds)   # a stuck handler: the loop does not turn
    return "woke"


def add(a, b):
    return a + b


# --- the loop of a test shard ------------------------------------------------------------
def shard_main(mesh, k, scenario=None, conn=None, timeout=10.0, args=()):
    reactor = Reactor(time.monotonic())
    ctx = ShardContext(reactor, k, mesh.n, state={})
    xs = xshard.XShard(mesh, k, ctx, timeout=timeout)
    done = []
    if scenario is not None:
        task = reactor.create_task(scenario(xs, ctx, *args))

        def finished(f):
            e = f.exception()
            conn.send(("error", repr(e)) if e is not None else ("ok", f.result(), xs.counters))
            done.append(True)
        task.add_done_callback(finished)
    poller = select.poll()
    poller.register(xs.fileno(), select.POLLIN)
    while not done:
        now = time.monotonic()
        reactor.run_once(now)
        busy = xs.drain(now) or reactor.has_ready()
        if busy or done:
            continue
        d = [x for x in (reactor.next_deadline(), xs.next_deadline(now)) if x is not None]
        timeout_ms = int(max(0.0, min(d) - now) * 1000) + 1 if d else 1000
        if xs.prepare_sleep():
            poller.poll(min(timeout_ms, 1000))
        xs.awake()
    # let replies we owe go out
    for _ in range(100):
        reactor.run_once(time.monotonic())
        xs.drain()
        if not xs.busy():
            break


# --- scenarios (coroutines run on shard 0) ---------------------------------------------
async def many_puts(xs, ctx, n):
    futs = [xs.submit_to(1, put, f"k{i}", i) for i in range(n)]
    owners = [await f for f in futs]
    vals = [await xs.submit_to(1, get, f"k{i}") for i in range(0, n, 97)]
    return owners.count(1), vals


async def collectives(xs, ctx):
    ids = await xs.broadcast(whoami)
    total = await xs.map_reduce(add, lambda a, b: a + b, 10, 5)
    local = await xs.submit_to(0, whoami)
    doubled = await xs.submit_to(1, slow_double, 21, 0.05)
    return ids, total, local, doubled


async def errors(xs, ctx):
    out = []
    try:
        await xs.submit_to(1, boom, "nope")
    except KeyError as e:
        out.append(("KeyError", e.args[0]))
    try:
        await xs.submit_to(1, unpicklable_result)
    except xshard.RemoteError as e:
        out.append(("RemoteError", "cannot pickle" in str(e)))
    try:
        xs.submit_to(1, lambda: 1)
    except TypeError as e:
        out.append(("TypeError", "module-level" in str(e)))
    return out


async def call_stuck(xs, ctx, mark=None):
    t0 = time.monotonic()
    try:
        await xs.submit_to(1, spin, 30, mark)
        return ("answered", 0)
    except Exception as e:
        return (type(e).__name__, time.monotonic() - t0, str(e))


async def call_then_report(xs, ctx):
    try:
        return ("ok", await xs.submit_to(1, whoami))
    except Exception as e:
        return (type(e).__name__, str(e))
