"""Load what "package.module:attr" or "path/to/file.py:attr" names (attr defaults to app)
and make the App a shard serves of it (framework.web.serving.build_app).

The attribute may be a framework App, an ASGI 3 or WSGI application, or a zero-argument
callable returning one of those (an app factory).
"""
import importlib
import importlib.util
import os
import sys

from .app import App
from .serving import AppKindError, build_app, kind_of


class AppLoadError(Exception):
    pass


def load_app(spec, opts=None):
    """The App to serve for ``spec`` with ``opts`` (WebOptions; None: the defaults)."""
    obj = load_target(spec)
    try:
        return build_app(obj, opts)
    except AppKindError as e:
        raise AppLoadError(f"{spec!r}: {e}") from None


def load_target(spec):
    """The object ``spec`` names (a factory called), not yet made into an App."""
    if not isinstance(spec, str) or not spec.strip():
        raise AppLoadError(f"app spec must be 'module:attr' or 'file.py:attr', got {spec!r}")
    spec = spec.strip()
    target, sep, attr = spec.rpartition(":")
    if not sep or not target:
        target, attr = spec, "app"
    if not attr.isidentifier():
        raise AppLoadError(f"{spec!r}: {attr!r} is not a valid attribute name")
    if target.endswith(".py") or os.sep in target:
        module = _load_file(target, spec)
    else:
        module = _load_module(target, spec)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        names = sorted(n for n, v in vars(module).items() if isinstance(v, App))
        hint = f" (Apps there: {', '.join(names)})" if names else " (it defines no App)"
        raise AppLoadError(f"{spec!r}: {target} has no attribute {attr!r}{hint}") from None
    if kind_of(obj) is None and callable(obj) and not isinstance(obj, type):
        try:
            obj = obj()
        except TypeError as e:
            raise AppLoadError(f"{spec!r}: {attr} is neither an app nor a zero-argument "
                               f"factory of one ({e})") from None
        except Exception as e:
            raise AppLoadError(f"{spec!r}: calling {attr}() failed: {e!r}") from e
    if kind_of(obj) is None:
        raise AppLoadError(f"{spec!r}: {attr} is a {type(obj).__name__}, not a framework "
                           "App, an ASGI app or a WSGI app")
    return obj


def _load_module(name, spec):
    # like `python -m`, let "examples.hello" resolve from the current directory
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            raise AppLoadError(f"{spec!r}: no module named {e.name!r} "
                               f"(cwd {os.getcwd()})") from None
        raise AppLoadError(f"{spec!r}: importing {name} failed: {e}") from e
    except Exception as e:
        raise AppLoadError(f"{spec!r}: importing {name} failed: {e!r}") from e


def _load_file(path, spec):
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise AppLoadError(f"{spec!r}: file {path} not found")
    modname = "_framework_app_" + os.path.splitext(os.path.basename(full))[0].replace("-", "_")
    mspec = importlib.util.spec_from_file_location(modname, full)
    if mspec is None:
        raise AppLoadError(f"{spec!r}: cannot load {path} as Python")
    module = importlib.util.module_from_spec(mspec)
    # the file's directory on the path, so it can import its siblings
    d = os.path.dirname(full)
    if d not in sys.path:
        sys.path.insert(0, d)
    sys.modules[modname] = module
    try:
        mspec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(modname, None)
        raise AppLoadError(f"{spec!r}: executing {path} failed: {e!r}") from e
    return module
