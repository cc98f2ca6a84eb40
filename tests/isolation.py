"""Run a test body where concurrent framework runs can neither see nor touch what it makes.

Tests that plant the leftovers of a "crashed" run (a namespace fw-<pid>, a link
fw<pid>h, /dev/shm/framework.<pid>-...) race every supervisor starting at the same time
(other tests, other developers' runs on the same machine): a starting supervisor removes
stale runs, so the planted things can vanish between the test's setup and its check. And
a test that cleans stale runs could remove another test's planted leftovers.

``run_isolated(fn)`` runs the module-level function ``fn`` in a child process with its
own mount and network namespaces: a private tmpfs on /dev/shm and /run/netns and a sysfs
of the new network namespace on /sys. Nothing outside sees what it creates, and whatever
it leaves dies with it. Assertion failures come back with the child's traceback.
"""
import os
import subprocess
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)

_SETUP = ("mount -t tmpfs fwtest /dev/shm && mkdir -p /run/netns && "
          "mount -t tmpfs fwtest /run/netns && mount -t sysfs fwtest /sys && "
          'exec "$0" "$@"')

_CALL = """
import importlib, os, sys
path, modname, name = sys.argv[1:4]
sys.path[:0] = [os.path.dirname(path)]
getattr(importlib.import_module(modname), name)()
"""


def run_isolated(fn, timeout=120):
    """Run module-level ``fn`` of a test module (imported by the name pytest gave it, so
    relative imports work) in private namespaces; fails with the child's traceback."""
    path = sys.modules[fn.__module__].__file__
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([TESTS, ROOT, os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(["unshare", "--mount", "--net", "--propagation", "private", "--",
                        "sh", "-c", _SETUP, sys.executable, "-c", _CALL, path, fn.__module__,
                        fn.__name__],
                       capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    assert r.returncode == 0, f"isolated {fn.__name__} failed:\n{r.stdout}\n{r.stderr}"
