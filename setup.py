"""Build: the hot-path modules named in framework/native.py compiled by Cython from their
own .py sources (pure-Python mode; a .pxd beside a module adds C types).

Metadata lives in pyproject.toml. A build that cannot compile (no compiler, no Cython)
still installs: the package then runs as plain Python and says so when it starts.
"""
import json
import os
import runpy
import shutil
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
native = runpy.run_path(os.path.join(HERE, "framework", "native.py"))


def warn(msg):
    print(f"framework build: {msg}", file=sys.stderr)


def extensions():
    if os.environ.get(native["ENV_PURE"], "") not in ("", "0"):
        warn(f"{native['ENV_PURE']} is set: nothing compiled")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        warn("Cython is not installed: nothing compiled, the package runs as plain Python")
        return []
    from setuptools import Extension
    exts = [Extension(m, [os.path.relpath(native["source_path"](m), HERE)]) for m in native["COMPILED"]]
    return cythonize(exts, language_level=3, quiet=True,
                     compiler_directives={"binding": True, "embedsignature": False})


class BuildHotPath(build_ext):
    """build_ext that never fails the install and records what the build was made from."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

    def run(self):
        try:
            super().run()
        except Exception as e:        # no compiler, a compile error: install as plain Python
            warn(f"compiling failed ({e}); the package runs as plain Python")
            return
        self._write_record()

    def copy_file(self, infile, outfile, *args, **kwargs):
        """``--inplace``: the new module under the old name by a rename, never the old
        file rewritten. A running worker has the old .so mapped; overwriting its pages
        under it crashes it (a rebuild while a benchmark or a server runs)."""
        if not self.inplace or os.path.isdir(outfile):
            return super().copy_file(infile, outfile, *args, **kwargs)
        tmp = f"{outfile}.{os.getpid()}.tmp"
        shutil.copy2(infile, tmp)
        os.replace(tmp, outfile)
        return outfile, 1

    def _write_record(self):
        import Cython
        record = {"cython": Cython.__version__, "sources": native["source_hashes"]()}
        targets = {os.path.join(HERE, "framework")}
        if not self.inplace:
            targets.add(os.path.join(os.path.abspath(self.build_lib), "framework"))
        for d in targets:
            if os.path.isdir(d):
                with open(os.path.join(d, "_build.json"), "w") as f:
                    json.dump(record, f, indent=1, sort_keys=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildHotPath})
