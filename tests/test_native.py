"""The compiled hot path and its fallback: which mode runs, and that a stale build never
runs silently. The unit suites also run once more in pure-Python mode from here, so one
`python -m pytest` covers both modes."""
import os
import shutil
import subprocess
import sys

import pytest

import framework
from framework import native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(framework.__file__)))
UNIT_SUITES = ("tests/net", "tests/web", "tests/shard")


def run_python(code, pythonpath, **env):
    e = {k: v for k, v in os.environ.items() if k != "FRAMEWORK_PURE_PYTHON"}
    e.update(PYTHONPATH=pythonpath, **env)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e,
                       cwd="/", timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()


PROBE = ("import framework, framework.native as n\n"
         "mods = [__import__(m, fromlist=['_']) for m in n.COMPILED]\n"
         "print(n.MODE); print(n.REASON)\n"
         "print(all(m.__file__.endswith('.py') for m in mods))\n")


@pytest.fixture
def package_copy(tmp_path):
    """The package as built (extensions and build record included), in a place of its own."""
    shutil.copytree(os.path.join(ROOT, "framework"), tmp_path / "framework",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_suite_runs_compiled():
    # `pip install -e .` builds the hot path on a machine with gcc: CI tests the compiled
    # modules, and the pure-Python run below tests the sources
    assert native.MODE == "compiled", native.REASON
    for m in native.COMPILED:
        assert not sys.modules.get(m, __import__(m, fromlist=["_"])).__file__.endswith(".py"), m


def test_pure_python_on_request(package_copy):
    mode, reason, all_source = run_python(PROBE, str(package_copy), FRAMEWORK_PURE_PYTHON="1")
    assert (mode, all_source) == ("pure", "True")
    assert "FRAMEWORK_PURE_PYTHON=1" in reason


def test_pure_python_without_cython_installed(package_copy):
    # Cython is a build requirement only: the sources must import with no `cython` module
    block = "import sys; sys.modules['cython'] = None\n"
    mode, _reason, all_source = run_python(block + PROBE, str(package_copy),
                                           FRAMEWORK_PURE_PYTHON="1")
    assert (mode, all_source) == ("pure", "True")


def test_edited_source_falls_back_to_python_and_says_so(package_copy):
    module = native.COMPILED[-1]
    path = package_copy / os.path.relpath(native.source_path(module), ROOT)
    with open(path, "a") as f:
        f.write("\nEDITED_AFTER_THE_BUILD = True\n")
    mode, reason, all_source = run_python(PROBE, str(package_copy))
    assert (mode, all_source) == ("pure", "True")
    assert "older than their sources" in reason and "rebuild" in reason, reason
    assert os.path.relpath(path, package_copy / "framework") in reason
    out = run_python(f"import framework, {module} as m; print(m.EDITED_AFTER_THE_BUILD)",
                     str(package_copy))
    assert out == ["True"]


def test_edited_pxd_falls_back_too(package_copy):
    module = native.COMPILED[0]
    pxd = package_copy / (os.path.relpath(native.source_path(module), ROOT)[:-3] + ".pxd")
    with open(pxd, "a") as f:
        f.write("\n# the C layout changed after the build\n")
    mode, reason, _ = run_python(PROBE, str(package_copy))
    assert mode == "pure" and "rebuild" in reason, reason


def test_no_build_record_is_not_trusted(package_copy):
    os.remove(package_copy / "framework" / "_build.json")
    mode, reason, all_source = run_python(PROBE, str(package_copy))
    assert (mode, all_source) == ("pure", "True")
    assert "without a build record" in reason


def test_unchanged_copy_runs_compiled(package_copy):
    mode, reason, all_source = run_python(PROBE, str(package_copy))
    assert (mode, all_source) == ("compiled", "False"), reason


@pytest.mark.timeout(900)
def test_unit_suites_pass_in_pure_python_mode():
    env = dict(os.environ, FRAMEWORK_PURE_PYTHON="1")
    # test_scale holds 10,000 connections to measure the compiled layout's bytes: in
    # pure mode it only repeats the logic the other unit tests cover, for 20 s of CI
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                        "--ignore=tests/net/tcp/test_scale.py", *UNIT_SUITES], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=900)
    tail = "\n".join(r.stdout.splitlines()[-30:])
    assert r.returncode == 0, tail + r.stderr[-2000:]
    assert " passed" in tail and "error" not in tail.splitlines()[-1], tail
