"""The web layer: App, routing, RequestHandler (HTTP/1.1 on httptools), StreamHandler."""
from .app import App
from .handler import HTTPError, HTTPHeaders, MissingArgumentError, Request, RequestHandler
from .loader import AppLoadError, load_app
from .stream import StreamHandler

__all__ = ["App", "RequestHandler", "StreamHandler", "HTTPError", "HTTPHeaders",
           "MissingArgumentError", "Request", "load_app", "AppLoadError"]
