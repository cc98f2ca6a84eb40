"""Path patterns -> handler classes.

``/users/{id}`` matches one segment (``[^/]+``); ``{path:.*}`` takes a custom regex.
A pattern with ``(`` and no ``{`` is a Tornado-style regex (groups become positional
arguments). Patterns without parameters are found by one dict lookup; the rest are
tried in order. Matching is on the raw (percent-encoded) path; captured values are
unquoted before they reach the handler.
"""
import inspect
import re
from urllib.parse import unquote

from .handler import METHODS, RequestHandler

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::((?:[^{}]|\{[^{}]*\})*))?\}")


class Route:
    __slots__ = ("pattern", "regex", "handler", "kwargs", "methods", "allow", "is_async",
                 "positional", "streaming", "max_body_size", "has_prepare", "has_defaults")

    def __init__(self, pattern, handler, kwargs=None):
        if not (isinstance(handler, type) and issubclass(handler, RequestHandler)):
            raise TypeError(f"route {pattern!r}: {handler!r} is not a RequestHandler subclass")
        self.pattern = pattern
        self.handler = handler
        self.kwargs = kwargs or None
        self.positional = False
        self.regex = compile_pattern(pattern)
        if self.regex is not None and "{" not in pattern:
            self.positional = True
        # which methods the class defines, and whether each is a coroutine function
        self.methods = {}
        self.is_async = {}
        for name in METHODS:
            fn = getattr(handler, name, None)
            if fn is not None:
                self.methods[name.upper()] = name
                self.is_async[name.upper()] = inspect.iscoroutinefunction(fn)
        if "GET" in self.methods and "HEAD" not in self.methods:
            # HEAD runs get() and the connection drops the body
            self.methods["HEAD"] = "get"
            self.is_async["HEAD"] = self.is_async["GET"]
        # stream_request_body: the handler starts when the headers are in and reads the
        # body with `await self.request.read()`; max_body_size overrides the app's limit
        # skip the call of a prepare() nobody overrode (hot path)
        self.has_prepare = handler.prepare is not RequestHandler.prepare
        self.has_defaults = handler.set_default_headers is not RequestHandler.set_default_headers
        self.streaming = bool(getattr(handler, "stream_request_body", False))
        self.max_body_size = getattr(handler, "max_body_size", None)
        self.allow = ", ".join(m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                           "OPTIONS") if m in self.methods)


def compile_pattern(pattern):
    """None for a literal path, else a compiled full-match regex."""
    if not pattern.startswith("/"):
        raise ValueError(f"route pattern must start with '/': {pattern!r}")
    if "{" in pattern:
        out, pos = [], 0
        for m in _PARAM.finditer(pattern):
            out.append(re.escape(pattern[pos:m.start()]))
            out.append(f"(?P<{m.group(1)}>{m.group(2) or '[^/]+'})")
            pos = m.end()
        out.append(re.escape(pattern[pos:]))
        return re.compile("".join(out) + r"\Z")
    if "(" in pattern or "\\" in pattern or "$" in pattern:
        p = pattern[:-1] if pattern.endswith("$") else pattern
        return re.compile(p + r"\Z")
    return None


class Router:
    __slots__ = ("exact", "patterns", "routes", "early")

    def __init__(self):
        self.exact = {}
        self.patterns = []
        self.routes = []
        self.early = False      # some route must be known when the headers are complete

    def add(self, pattern, handler, kwargs=None):
        route = Route(pattern, handler, kwargs)
        self.routes.append(route)
        if route.streaming or route.max_body_size is not None:
            self.early = True
        if route.regex is None:
            self.exact.setdefault(pattern, route)
        else:
            self.patterns.append(route)
        return route

    def match(self, path):
        """(route, args, kwargs) or (None, None, None)."""
        route = self.exact.get(path)
        if route is not None:
            return route, (), {}
        for route in self.patterns:
            m = route.regex.match(path)
            if m is not None:
                if route.positional:
                    return route, tuple(unquote(g) for g in m.groups() if g is not None), {}
                return route, (), {k: unquote(v) for k, v in m.groupdict().items()}
        return None, None, None


class _EveryMethod(dict):
    """``route.methods`` / ``route.is_async`` of a catch-all route: one value for any
    method, also those no handler method is named after (PROPFIND, PURGE, ...)."""

    __slots__ = ("value",)

    def __init__(self, value):
        super().__init__()
        self.value = value

    def get(self, method, default=None):
        return self.value

    def __getitem__(self, method):
        return self.value

    def __contains__(self, method):
        return True


class CatchAllRouter(Router):
    """Every path and every method to one handler: the bridges to ASGI and WSGI apps,
    which route inside the app. ``method_name`` is the handler method that answers."""

    __slots__ = ("route",)

    def __init__(self, handler, method_name="handle", kwargs=None):
        super().__init__()
        route = self.add("/", handler, kwargs)
        route.methods = _EveryMethod(method_name)
        route.is_async = _EveryMethod(inspect.iscoroutinefunction(
            getattr(handler, method_name, None)))
        route.allow = ""
        self.route = route

    def match(self, path):
        return self.route, (), {}
