"""--reload's watcher (framework/master/reload.py): which directory, which changes, and
what is forgotten so the next import reads the sources again."""
import importlib
import os
import sys

from framework.master.reload import CodeWatcher, app_directory, forget


def _touch(path, text):
    with open(path, "w") as f:
        f.write(text)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))   # a later mtime


def test_app_directory_of_module_package_and_file(tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg_reload" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "mypkg_reload" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "main.py").write_text("app = None\n")
    (tmp_path / "solo_reload.py").write_text("app = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert app_directory("mypkg_reload.sub.main:app") == str(tmp_path / "mypkg_reload")
    assert app_directory("solo_reload:app") == str(tmp_path)
    assert app_directory(f"{tmp_path}/x/y.py:app") == str(tmp_path / "x")


def test_changes_added_modified_removed_and_skipped_dirs(tmp_path):
    (tmp_path / "a.py").write_text("1")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / ".venv").mkdir()
    t = [0.0]
    w = CodeWatcher([tmp_path], interval=0.5, clock=lambda: t[0])
    assert w.changes() == []
    _touch(tmp_path / "a.py", "2")
    (tmp_path / "b.py").write_text("")
    (tmp_path / "notes.txt").write_text("y")              # not .py: ignored
    (tmp_path / "__pycache__" / "c.py").write_text("")    # skipped directories
    (tmp_path / ".venv" / "d.py").write_text("")
    assert w.changes() == [str(tmp_path / "a.py"), str(tmp_path / "b.py")]
    os.unlink(tmp_path / "b.py")
    assert w.changes() == [str(tmp_path / "b.py")]
    # poll looks only every interval
    _touch(tmp_path / "a.py", "3")
    assert w.poll(0.1) is False
    t[0] = 1.0
    assert w.poll(1.0) is True and w.poll(1.6) is False


def test_forget_drops_the_apps_modules_and_stale_bytecode(tmp_path, monkeypatch):
    (tmp_path / "fwreload_mod.py").write_text("WORD = 'one'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    import fwreload_mod
    assert fwreload_mod.WORD == "one"
    cached = importlib.util.cache_from_source(str(tmp_path / "fwreload_mod.py"))
    assert os.path.exists(cached)
    # same size, same second: Python alone would keep using the .pyc
    st = os.stat(tmp_path / "fwreload_mod.py")
    (tmp_path / "fwreload_mod.py").write_text("WORD = 'two'\n")
    os.utime(tmp_path / "fwreload_mod.py", ns=(st.st_atime_ns, st.st_mtime_ns))
    forget([str(tmp_path)], [str(tmp_path / "fwreload_mod.py")])
    assert "fwreload_mod" not in sys.modules and "framework.master.reload" in sys.modules
    import fwreload_mod as again
    assert again.WORD == "two"
    sys.modules.pop("fwreload_mod", None)
