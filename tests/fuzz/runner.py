"""The command line both fuzz targets share (atheris over libFuzzer).

    python -m tests.fuzz.fuzz_<name> [CORPUS_DIR ...] [libFuzzer flags: -max_total_time=S,
                                      -runs=N, -artifact_prefix=DIR/, -print_final_stats=1]

The framework is imported as plain Python (``FRAMEWORK_PURE_PYTHON=1``, set here before
``framework`` is imported) and every ``framework`` module is instrumented as it is
imported, so libFuzzer's coverage feedback sees our code. Without a corpus directory the
run uses ``$TMPDIR/framework-fuzz-<name>``; an empty corpus is seeded with the target's
``seeds()``.
"""
import hashlib
import os
import sys
import tempfile


def seed_corpus(path, seeds):
    os.makedirs(path, exist_ok=True)
    if not os.listdir(path):
        for s in seeds():
            with open(os.path.join(path, hashlib.sha1(s).hexdigest()), "wb") as f:
                f.write(s)


def main(name, argv, load, one_input, seeds):
    import atheris

    os.environ.setdefault("FRAMEWORK_PURE_PYTHON", "1")
    import framework        # native.select(): the source finder goes first on sys.meta_path
    from framework import native
    if native.MODE != "pure":
        sys.exit(f"fuzz_{name}: the framework runs {native.MODE}; set FRAMEWORK_PURE_PYTHON=1 "
                 "before importing it (atheris instruments Python bytecode only)")
    with atheris.instrument_imports(include=["framework"]):
        load()
    args = list(argv)
    dirs = [a for a in args[1:] if not a.startswith("-")]
    if not dirs:
        d = os.path.join(tempfile.gettempdir(), f"framework-fuzz-{name}")
        args.append(d)
        dirs = [d]
    seed_corpus(dirs[0], seeds)
    atheris.Setup(args, one_input)
    atheris.Fuzz()
