"""Module-level functions and scenarios for the cross-shard tests (pickled by name)."""
import asyncio
import time

from framework import current_shard
from framework.context import ShardContext
from framework.shard import xshard
from framework.shard.kernelstack import KernelProvider
from framework.shard.loop import ShardLoop


# --- functions run on the target shard -------------------------------------------------
def put(key, value):
    current_shard().state[key] = value
    return current_shard().shard_id


def get(key):
    return current_shard().state.get(key)


def whoami():
    return current_shard().shard_id


def boom(msg):
    raise KeyError(msg)


def unpicklable_result():
    return lambda: 1


async def slow_double(x, delay):
    await asyncio.sleep(delay)
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
    """Shard k of ``mesh``: a ShardLoop (over a kernel provider with no listeners: the
    rings are all it serves) with the mesh attached. With a scenario, run it, report
    through ``conn`` and stop; without, serve calls until killed."""
    loop = ShardLoop()
    asyncio.set_event_loop(loop)
    ctx = ShardContext(loop, k, mesh.n, state={})
    ctx.install()
    loop.attach(KernelProvider("127.0.0.1"), ctx)
    xs = xshard.XShard(mesh, k, ctx, timeout=timeout)
    loop.attach_mesh(xs)
    if scenario is not None:
        task = loop.create_task(scenario(ctx, *args))

        def finished(f):
            e = f.exception()
            conn.send(("error", repr(e)) if e is not None else ("ok", f.result(), xs.counters))
            loop.request_stop(graceful=False)   # the loop's finish lets owed replies go out
        task.add_done_callback(finished)
    loop.serve()


# --- scenarios (coroutines run on shard 0) ---------------------------------------------
async def many_puts(ctx, n):
    futs = [ctx.submit_to(1, put, f"k{i}", i) for i in range(n)]
    owners = [await f for f in futs]
    vals = [await ctx.submit_to(1, get, f"k{i}") for i in range(0, n, 97)]
    return owners.count(1), vals


async def collectives(ctx):
    ids = await ctx.broadcast(whoami)
    total = await ctx.map_reduce(add, lambda a, b: a + b, 10, 5)
    local = await ctx.submit_to(0, whoami)
    doubled = await ctx.submit_to(1, slow_double, 21, 0.05)
    return ids, total, local, doubled


async def errors(ctx):
    out = []
    try:
        await ctx.submit_to(1, boom, "nope")
    except KeyError as e:
        out.append(("KeyError", e.args[0]))
    try:
        await ctx.submit_to(1, unpicklable_result)
    except xshard.RemoteError as e:
        out.append(("RemoteError", "cannot pickle" in str(e)))
    try:
        ctx.submit_to(1, lambda: 1)
    except TypeError as e:
        out.append(("TypeError", "module-level" in str(e)))
    return out


async def call_stuck(ctx, mark=None):
    t0 = time.monotonic()
    try:
        await ctx.submit_to(1, spin, 30, mark)
        return ("answered", 0)
    except Exception as e:
        return (type(e).__name__, time.monotonic() - t0, str(e))


async def call_then_report(ctx):
    try:
        return ("ok", await ctx.submit_to(1, whoami))
    except Exception as e:
        return (type(e).__name__, str(e))
