"""Which hot path runs: the modules Cython compiled from these sources, or plain Python.

setup.py compiles every module named in ``COMPILED`` from its own ``.py`` file (Cython's
pure-Python mode; a ``.pxd`` beside it adds C types) and records a hash of each source in
``_build.json``. ``select()`` runs when ``framework`` is first imported, before any of those
modules is loaded. The compiled modules run only when every recorded source is unchanged;
otherwise (an editable checkout edited after the build, an incomplete build), with
``FRAMEWORK_PURE_PYTHON=1``, or with nothing built, a finder placed first on
``sys.meta_path`` loads the ``.py`` files instead. Never a mix: compiled modules cimport
each other's types, so one stale module sends all of them back to source.

Only the standard library is used here: setup.py reads ``COMPILED`` and ``source_hashes``
before anything else of the package can be imported.
"""
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys

# The per-packet path: wire formats, IPv4, TCP, the ports' rx/tx, the shard turn and the
# stream transports, the HTTP/1.1 protocol and writer.
COMPILED = (
    "framework.net.checksum",
    "framework.net.wire.ethernet",
    "framework.net.wire.ipv4",
    "framework.net.wire.tcp",
    "framework.net.wire.vnet",
    "framework.net.ipv4",
    "framework.net.arp",
    "framework.net.icmp",
    "framework.net.stack",
    "framework.net.tcp.bits",
    "framework.net.tcp.cc",
    "framework.net.tcp.consts",
    "framework.net.tcp.connection",
    "framework.net.tcp.cookies",
    "framework.net.tcp.layer",
    "framework.net.tcp.output",
    "framework.net.tcp.receive",
    "framework.net.tcp.recovery",
    "framework.net.tcp.segments",
    "framework.net.tcp.timers",
    "framework.net.tcp.timewait",
    "framework.nic.memory",
    "framework.shard.loop",
    "framework.shard.userstack",
    "framework.shard.streams",
    "framework.shard.transport",
    "framework.web.http1",
    "framework.web.h1writer",
    "framework.web.handler",
    "framework.web.httpserver",
    "framework.web.httputil",
)

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(PACKAGE_DIR, "_build.json")
ENV_PURE = "FRAMEWORK_PURE_PYTHON"

MODE = "pure"       # "compiled" once select() found a complete, current build
REASON = "not selected yet"


def source_path(module, ext=".py"):
    return os.path.join(PACKAGE_DIR, *module.split(".")[1:]) + ext


def source_hashes():
    """sha256 of every compiled module's .py and .pxd (a .pxd is part of the C layout)."""
    out = {}
    for module in COMPILED:
        for ext in (".py", ".pxd"):
            path = source_path(module, ext)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    out[os.path.relpath(path, PACKAGE_DIR)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _built_modules():
    """Names of the framework modules that have a compiled extension file on disk."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    found = set()
    for dirpath, _dirs, files in os.walk(PACKAGE_DIR):
        for name in files:
            for suffix in suffixes:
                if name.endswith(suffix):
                    rel = os.path.relpath(os.path.join(dirpath, name[:-len(suffix)]), PACKAGE_DIR)
                    found.add("framework." + rel.replace(os.sep, "."))
    return found


def _decide():
    built = _built_modules()
    if os.environ.get(ENV_PURE, "") not in ("", "0"):
        return "pure", f"pure Python ({ENV_PURE}={os.environ[ENV_PURE]})", built
    if not built:
        return "pure", "pure Python (no compiled modules built)", built
    try:
        with open(MANIFEST) as f:
            record = json.load(f)
        recorded = record["sources"]
    except (OSError, ValueError, KeyError):
        return "pure", ("pure Python: compiled modules without a build record; "
                        "rebuild with `pip install -e .`"), built
    missing = sorted(set(COMPILED) - built)
    if missing:
        return "pure", (f"pure Python: incomplete build ({', '.join(missing)} not compiled); "
                        "rebuild with `pip install -e .`"), built
    current = source_hashes()
    changed = sorted(p for p in set(current) | set(recorded) if current.get(p) != recorded.get(p))
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        return "pure", (f"pure Python: compiled modules are older than their sources ({shown} "
                        "changed since the build); rebuild with `pip install -e .`"), built
    return "compiled", (f"compiled hot path ({len(COMPILED)} module{'s' if len(COMPILED) != 1 else ''}, "
                        f"Cython {record.get('cython', '?')})"), built


class _SourceFinder:
    """Loads the named framework modules from their .py files, whatever is compiled."""

    def __init__(self, names):
        self.names = frozenset(names)

    def find_spec(self, name, path=None, target=None):
        if name not in self.names:
            return None
        return importlib.util.spec_from_file_location(name, source_path(name))

    def invalidate_caches(self):
        pass


def select():
    """Decide the mode once per process; return the one line that says which runs."""
    global MODE, REASON
    if any(isinstance(f, _SourceFinder) for f in sys.meta_path) or REASON != "not selected yet":
        return REASON
    MODE, REASON, built = _decide()
    if MODE == "pure":
        sys.meta_path.insert(0, _SourceFinder(built | set(COMPILED)))
    else:
        # modules compiled by an older build that are no longer in COMPILED run from source
        extra = built - set(COMPILED)
        if extra:
            sys.meta_path.insert(0, _SourceFinder(extra))
    return REASON
