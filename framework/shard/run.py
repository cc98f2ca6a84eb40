"""Serve an app on one shard in the calling thread: the part of a worker that is not
process setup (framework/shard/worker.py does that), also used to embed a shard in
tests and tools.

    serve_shard(app, KernelProvider("127.0.0.1"), 8080)          # until SIGTERM
    serve_shard(app, UserStackProvider(port, stack), 8080, shard_id=k, shard_count=n,
                mesh=mesh, stats=block, ready=report)

Order: the loop and the ShardContext are made, the provider and the cross-shard mesh
attached, the app's ports reserved (a user stack then completes handshakes, but holds
the connections), ``app.start_shard(ctx)`` runs to completion on the loop (its hooks may
await, and may call other shards), the app's listeners open, ``ready`` is signalled, and the
loop serves until stopped: SIGTERM (graceful), SIGQUIT (at once), ``stop_event``
(anything with ``is_set()``, looked at every STOP_POLL seconds; graceful) or
``loop.request_stop``. Then ``app.stop_shard(ctx)`` and the provider closes.
"""
import asyncio
import logging
import threading

from framework.context import ShardContext
from framework.shard.kernelstack import KernelProvider, raise_nofile_limit
from framework.shard.loop import GRACE, ShardLoop
from framework.shard.xshard import XShard

log = logging.getLogger("framework.shard")

STOP_POLL = 0.2


def serve_shard(app, provider, http_port, shard_id=0, shard_count=1, *, grace=GRACE,
                stats=None, mesh=None, bell=None, ready=None, stop_event=None,
                before_serve=None):
    loop = ShardLoop(grace=grace, stats=stats)
    asyncio.set_event_loop(loop)
    ctx = ShardContext(loop, shard_id, shard_count)
    ctx.install()
    try:
        loop.attach(provider, ctx)
        if mesh is not None:
            loop.attach_mesh(XShard(mesh, shard_id, ctx))
        if bell is not None:
            loop.use_doorbell(bell)
        # the user stack listens before the app's start hooks run, holding what it
        # accepts until the listeners open (a restarted worker must not refuse the SYNs
        # that reach it meanwhile); the kernel's listening sockets open afterwards
        reserved = set(app.listeners(http_port)) if hasattr(provider, "reserve") else ()
        for port in reserved:
            provider.reserve(port)
        loop.run_until_complete(app.start_shard(ctx))
        listeners = app.listeners(http_port)
        for port, factory in listeners.items():
            provider.listen(port, factory)
        for port in reserved:
            if port not in listeners:
                provider.unreserve(port)
        if threading.current_thread() is threading.main_thread():
            loop.install_signals()
        if stop_event is not None:
            _watch(loop, stop_event)
        if before_serve is not None:
            before_serve(loop)
        if ready is not None:
            (ready.set if hasattr(ready, "set") else ready)()
        try:
            loop.serve()
        finally:
            try:
                loop.run_until_complete(app.stop_shard(ctx))
            except Exception:
                log.exception("shard %d: stopping the app failed", shard_id)
    finally:
        provider.close()
        asyncio.set_event_loop(None)
        loop.close()


def _watch(loop, stop_event):
    def look():
        if stop_event.is_set():
            loop.request_stop(True)
        else:
            loop.call_later(STOP_POLL, look)
    loop.call_later(STOP_POLL, look)


def run_kernel_worker(app, host, http_port, shard_id=0, shard_count=1, stop_event=None,
                      ready=None, grace=GRACE):
    """Serve ``app`` on kernel sockets at ``host`` in this thread until stopped."""
    raise_nofile_limit()
    serve_shard(app, KernelProvider(host), http_port, shard_id, shard_count, grace=grace,
                ready=ready, stop_event=stop_event)
