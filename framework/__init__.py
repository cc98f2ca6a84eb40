"""framework: an mTCP-style Python server framework (one pinned worker per core).

The user-facing API is re-exported here; it is imported on first use so that
``import framework.master.netns`` (or the supervisor) does not pay for the web layer.
"""
from . import native

# before any hot-path module is imported: compiled when the build is current, else source
native.select()

_WEB = ("App", "RequestHandler", "StreamHandler", "HTTPError", "load_app")
_CONTEXT = ("ShardContext", "ShardUnavailable", "ShardTimeout", "current_shard")
_WEBSOCKET = ("WebSocketHandler", "WebSocketClosedError")
__all__ = list(_WEB + _CONTEXT + _WEBSOCKET + ("StreamConnection",))


def __getattr__(name):
    if name in _WEB:
        from . import web
        return getattr(web, name)
    if name in _CONTEXT:
        from . import context
        return getattr(context, name)
    if name in _WEBSOCKET:
        from .web import websocket
        return getattr(websocket, name)
    if name == "StreamConnection":
        from .connection import StreamConnection
        return StreamConnection
    raise AttributeError(f"module 'framework' has no attribute {name!r}")
