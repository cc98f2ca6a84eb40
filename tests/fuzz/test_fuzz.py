"""The fuzz targets in CI: each runs a bounded time in a subprocess (plain Python, as
atheris needs) and fails on a crash; every input ever kept under crashes/ is replayed.

The long runs (``python -m tests.fuzz.fuzz_stack -max_total_time=600``) and their
report are in tests/fuzz/README.md.
"""
import os
import re
import subprocess
import sys

import pytest

from . import fuzz_http, fuzz_stack
from .runner import seed_corpus

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SECONDS = 11          # per target: both stay under 30 s with the start-up
TARGETS = {"stack": fuzz_stack, "http": fuzz_http}


@pytest.mark.parametrize("name", sorted(TARGETS))
@pytest.mark.timeout(SECONDS + 60)
def test_fuzz_bounded_run_finds_no_crash(name, tmp_path):
    import atheris  # noqa: F401  (the test extra has it: missing is a failure, not a skip)
    corpus = tmp_path / "corpus"
    seed_corpus(str(corpus), TARGETS[name].seeds)
    env = {**os.environ, "FRAMEWORK_PURE_PYTHON": "1"}
    p = subprocess.run(
        [sys.executable, "-m", f"tests.fuzz.fuzz_{name}", str(corpus),
         f"-max_total_time={SECONDS}", "-print_final_stats=1", "-max_len=4096",
         f"-artifact_prefix={tmp_path}/"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=SECONDS + 50)
    crashes = [f for f in os.listdir(tmp_path) if f.startswith(("crash-", "timeout-", "oom-"))]
    if crashes:
        with open(tmp_path / crashes[0], "rb") as f:
            data = f.read()
        keep = os.path.join(HERE, "crashes", name)
        pytest.fail(f"fuzz_{name} found a crash; keep its input under {keep}/ and fix it.\n"
                    f"input (hex): {data.hex()}\n{p.stderr[-6000:]}")
    assert p.returncode == 0, p.stderr[-6000:]
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", p.stderr)
    # the target really ran (an import error or a broken setup exits at once)
    assert runs and int(runs.group(1)) > 100, p.stderr[-3000:]


def _kept_crashes():
    for name in sorted(TARGETS):
        d = os.path.join(HERE, "crashes", name)
        if os.path.isdir(d):
            for f in sorted(os.listdir(d)):
                if not f.startswith("."):
                    yield pytest.param(name, os.path.join(d, f), id=f"{name}-{f}")


KEPT = list(_kept_crashes())

if KEPT:        # (none kept yet: no test, rather than one that is always skipped)
    @pytest.mark.parametrize("name,path", KEPT)
    def test_kept_crash_input_no_longer_crashes(name, path):
        """Each input a fuzzer once crashed on, replayed in this process (compiled or
        plain Python, whichever the run uses)."""
        with open(path, "rb") as f:
            TARGETS[name].one_input(f.read())


def test_seeds_run_clean():
    """The seed inputs in this process: the targets' setup holds in either mode."""
    for mod in TARGETS.values():
        for s in mod.seeds():
            mod.one_input(s)
