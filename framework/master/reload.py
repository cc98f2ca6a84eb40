"""``--reload`` (development): restart the workers when a ``.py`` file under the app's
directory changes.

The supervisor asks ``CodeWatcher.poll(now)`` from its monitor loop; about every
INTERVAL seconds it compares the modification times of the ``.py`` files under the
watched directories with the last look (polling: no dependency, and a project's few
hundred files cost well under a millisecond a look). On a change it forgets the
modules loaded from those directories and the bytecode cached for the changed files
(a file edited twice within a second keeps its size and whole-second mtime: Python
would take the stale .pyc), and says so; the supervisor then does what SIGHUP does:
import the app afresh and replace the workers one at a time, the old code serving
until the new one imports (an edit that does not import keeps the old workers).

The watched directory is the app's: for ``pkg.mod:app`` the top package's directory
(for a plain module, the directory of its file), for ``path/to/app.py:app`` the file's
directory.
"""
import importlib
import importlib.util
import logging
import os
import sys
import time

log = logging.getLogger("framework.supervisor")

INTERVAL = 0.5
# directories that hold no code of the app's own (or too much to walk twice a second)
SKIP_DIRS = frozenset(("__pycache__", "node_modules", "site-packages", "venv", "env"))


def app_directory(spec):
    """The directory to watch for the APP spec ``spec`` (module:attr or file.py:attr)."""
    target = spec.rpartition(":")[0] or spec
    if target.endswith(".py") or os.sep in target:
        return os.path.dirname(os.path.abspath(target))
    top = target.split(".")[0]
    module = sys.modules.get(top)
    path = getattr(module, "__file__", None) if module is not None else None
    if path is None:
        found = importlib.util.find_spec(top)
        if found is None or not found.origin:
            raise ValueError(f"--reload: cannot find where {top!r} is loaded from")
        path = found.origin
    directory = os.path.dirname(os.path.abspath(path))
    return directory


def scan(roots):
    """{path: mtime_ns} of every .py file under ``roots``."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")]
            for name in filenames:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    try:
                        out[path] = os.stat(path).st_mtime_ns
                    except OSError:
                        pass        # removed between the listing and the stat
    return out


class CodeWatcher:
    """Changes of the .py files under ``roots``, looked for every ``interval`` seconds."""

    def __init__(self, roots, interval=INTERVAL, clock=time.monotonic):
        self.roots = [os.path.abspath(r) for r in roots]
        self.interval = interval
        self._clock = clock
        self._mtimes = scan(self.roots)
        self._next = clock() + interval

    @classmethod
    def for_app(cls, spec, interval=INTERVAL):
        return cls([app_directory(spec)], interval)

    def changes(self):
        """Paths added, removed or modified since the last look (sorted)."""
        now = scan(self.roots)
        old = self._mtimes
        self._mtimes = now
        return sorted(p for p in set(old) | set(now) if old.get(p) != now.get(p))

    def poll(self, now=None):
        """True when it is time to look and something changed (modules then forgotten)."""
        now = self._clock() if now is None else now
        if now < self._next:
            return False
        self._next = now + self.interval
        changed = self.changes()
        if not changed:
            return False
        shown = ", ".join(os.path.relpath(p, self.roots[0]) for p in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        log.warning("--reload: %s%s changed; restarting the workers", shown, more)
        forget(self.roots, changed)
        return True


def forget(roots, changed=()):
    """Drop the modules loaded from under ``roots`` from sys.modules and the cached
    bytecode of ``changed`` files, so the next import reads the sources again."""
    prefixes = tuple(os.path.join(r, "") for r in roots)
    for name, module in list(sys.modules.items()):
        if name == "framework" or name.startswith("framework."):
            continue        # the server's own code stays (the workers fork from it)
        path = getattr(module, "__file__", None)
        if path and os.path.abspath(path).startswith(prefixes):
            sys.modules.pop(name, None)
    for path in changed:
        try:
            os.unlink(importlib.util.cache_from_source(path))
        except (OSError, ValueError, NotImplementedError):
            pass
    importlib.invalidate_caches()


def reimport(app_spec, web=None):
    """Forget the app's modules and import them again, so workers forked from now on run
    the new code (HUP, --reload). On an import error the old code keeps serving: False."""
    from framework.web.loader import load_app
    mod = app_spec.rpartition(":")[0] or app_spec
    if mod.endswith(".py") or os.sep in mod:
        top = None  # file.py:attr is executed afresh by the loader every time
    else:
        top = mod.split(".")[0]
    saved = {}
    if top:
        for name in list(sys.modules):
            if name == top or name.startswith(top + "."):
                saved[name] = sys.modules.pop(name)
    try:
        importlib.invalidate_caches()
        load_app(app_spec, web)
    except Exception as e:
        sys.modules.update(saved)
        log.error("SIGHUP: %s does not load any more (%s); keeping the running workers",
                  app_spec, e)
        return False
    return True
