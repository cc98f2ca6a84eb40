"""framework: an mTCP-style Python server framework (one pinned worker per core).

The user-facing API is re-exported here; it is imported on first use so that
``import framework.master.netns`` (or the supervisor) does not pay for the web layer.
"""
__all__ = ["App", "RequestHandler", "StreamHandler", "HTTPError", "load_app"]


def __getattr__(name):
    if name in __all__:
        from . import web
        return getattr(web, name)
    raise AttributeError(f"module 'framework' has no attribute {name!r}")
