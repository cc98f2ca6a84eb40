"""The ASGI lifespan protocol for one shard (as uvicorn runs it for one server): the app
is called once with a ``lifespan`` scope, gets ``lifespan.startup`` before the shard
takes its first connection and ``lifespan.shutdown`` when it stops.

Modes (``--lifespan``): ``on`` - an app that raises, or answers
``lifespan.startup.failed``, fails the shard's start; ``off`` - never called; ``auto`` -
as ``on``, except that an app raising before it sent anything is taken not to support
lifespan (logged at debug) and the shard serves on.

``StartupFailed`` is what a failed start raises: the worker reports it as fatal and
``framework serve`` stops with exit code 3 instead of restarting the worker (an app's
own ``on_start`` hook may raise it too).
"""
import asyncio
import logging

log = logging.getLogger("framework.asgi")

MODES = ("auto", "on", "off")


class StartupFailed(Exception):
    """The application refused to start; the server stops (exit code 3)."""


def one_line(message):
    """A failure message fit for one line: the last line of a traceback (Starlette sends
    ``traceback.format_exc()`` as the message), whitespace collapsed."""
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    if not lines:
        return ""
    text = lines[-1] if lines[0].startswith("Traceback") else " ".join(lines)
    return text[:300]


class Lifespan:
    """One shard's lifespan cycle; ``state`` is the dict the app fills at startup (each
    HTTP scope gets a shallow copy of it)."""

    def __init__(self, asgi_app, mode="auto"):
        if mode not in MODES:
            raise ValueError(f"lifespan mode must be one of {MODES}, got {mode!r}")
        self.asgi_app = asgi_app
        self.mode = mode
        self.state = {}
        self.supported = mode != "off"
        self._inbox = None
        self._task = None
        self._sent_any = False
        self._startup_done = None
        self._shutdown_done = None
        self._failure = None        # the app's message with *.failed, or its exception
        self._shutdown_asked = False    # lifespan.shutdown is (being) delivered

    async def startup(self):
        """Run the app's startup; raises StartupFailed if it failed (per the mode)."""
        if not self.supported:
            return
        loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()
        self._startup_done = loop.create_future()
        self._shutdown_done = loop.create_future()
        self._task = loop.create_task(self._main())
        self._inbox.put_nowait({"type": "lifespan.startup"})
        await asyncio.shield(self._startup_done)
        outcome = self._startup_done.result()
        if outcome == "complete":
            log.debug("ASGI lifespan startup complete")
            return
        if outcome == "unsupported":
            self.supported = False
            return
        self.supported = False
        raise StartupFailed(f"application startup failed: {one_line(self._failure) or 'no message'}")

    async def shutdown(self):
        """Run the app's shutdown (a failure is logged: the shard stops anyway)."""
        if not self.supported or self._task is None:
            return
        if not self._shutdown_asked:
            self._shutdown_asked = True
            self._inbox.put_nowait({"type": "lifespan.shutdown"})
        await asyncio.shield(self._shutdown_done)
        outcome = self._shutdown_done.result()
        if outcome == "cancelled":
            log.warning("ASGI lifespan: the app was cancelled before its shutdown completed")
        elif outcome != "complete":
            log.error("ASGI application shutdown failed: %s", one_line(self._failure) or
                      "no message")
        self.supported = False

    # ---- the app's side ----------------------------------------------------------------
    async def _main(self):
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        try:
            await self.asgi_app(scope, self._receive, self._send)
        except (asyncio.CancelledError, GeneratorExit):
            # the shard's loop is going away under it: nothing to report
            self._settle(self._startup_done, "cancelled")
            self._settle(self._shutdown_done, "cancelled")
            raise
        except BaseException as exc:
            if not self._sent_any and self.mode == "auto":
                log.debug("ASGI lifespan unsupported by the app (it raised %r)", exc)
                self._settle(self._startup_done, "unsupported")
            else:
                log.error("exception in the ASGI lifespan protocol", exc_info=exc)
                if self._failure is None:
                    self._failure = f"{type(exc).__name__}: {exc}"
                self._settle(self._startup_done, "failed")
            self._settle(self._shutdown_done, "failed")
        else:
            # returned without a word: as uvicorn, nothing to wait for
            self._settle(self._startup_done, "complete" if self._sent_any else "unsupported")
            self._settle(self._shutdown_done, "complete")

    async def _receive(self):
        try:
            return await self._inbox.get()
        except asyncio.CancelledError:
            # The shard loop cancels every task still running once its connections are
            # done (ShardLoop._finish), before the app's stop_shard: for a started app
            # that waits for its shutdown this is the shutdown, so it runs (and is
            # awaited by the loop) instead of being cut short.
            task = asyncio.current_task()
            if (self._startup_done.done() and not self._shutdown_asked
                    and task is not None and task.uncancel() == 0):
                self._shutdown_asked = True
                return {"type": "lifespan.shutdown"}
            raise

    async def _send(self, message):
        kind = message.get("type")
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
            self._sent_any = True
            if self._startup_done.done():
                raise RuntimeError(f"ASGI lifespan: {kind} sent twice or out of turn")
            if kind.endswith("failed"):
                self._failure = message.get("message", "")
                log.error("ASGI application startup failed: %s", self._failure)
            self._settle(self._startup_done, kind.rpartition(".")[2])
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            self._sent_any = True
            if not self._startup_done.done() or self._shutdown_done.done():
                raise RuntimeError(f"ASGI lifespan: {kind} out of turn")
            if kind.endswith("failed"):
                self._failure = message.get("message", "")
            self._settle(self._shutdown_done, kind.rpartition(".")[2])
        else:
            # not a lifespan message (an app that ignores scope["type"]): it does not
            # speak lifespan, which auto tolerates
            raise RuntimeError(f"ASGI lifespan: unexpected message type {kind!r}")

    @staticmethod
    def _settle(fut, outcome):
        if fut is not None and not fut.done():
            try:
                fut.set_result(outcome)
            except RuntimeError:        # its loop is closed: nobody waits any more
                pass
