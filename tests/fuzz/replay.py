"""Replay a fuzz corpus (or crash inputs) through a target, without atheris, and report
the line coverage it reaches per framework file (coverage.py, when installed).

    FRAMEWORK_PURE_PYTHON=1 python -m tests.fuzz.replay stack DIR_OR_FILE... [--cov]

An input that crashes is reported with its traceback and the command exits 1.
"""
import argparse
import os
import sys
import traceback


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tests.fuzz.replay")
    p.add_argument("target", choices=("stack", "http"))
    p.add_argument("paths", nargs="+")
    p.add_argument("--cov", action="store_true", help="line coverage of framework/ (coverage.py)")
    a = p.parse_args(argv)
    files = []
    for path in a.paths:
        if os.path.isdir(path):
            files += sorted(os.path.join(path, f) for f in os.listdir(path))
        else:
            files.append(path)
    cov = None
    if a.cov:
        import coverage
        cov = coverage.Coverage(source=["framework"], branch=False)
        cov.start()
    import importlib
    mod = importlib.import_module(f"tests.fuzz.fuzz_{a.target}")
    mod.load()
    failed = 0
    for f in files:
        try:
            with open(f, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:       # a running fuzzer replaced it (corpus reduction)
            continue
        try:
            mod.one_input(data)
        except Exception:
            failed += 1
            print(f"{f}: crash\n{traceback.format_exc()}", file=sys.stderr)
    print(f"{len(files)} inputs, {failed} crashed")
    if cov is not None:
        cov.stop()
        cov.report(show_missing=False, skip_covered=False, skip_empty=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
