"""The web layer: App, routing, RequestHandler (HTTP/1.1 on httptools), StreamHandler."""
from .app import App
from .handler import HTTPError, MissingArgumentError, RequestHandler
from .httputil import BodyStream, HTTPHeaders, Request
from .loader import AppLoadError, load_app
from .stream import StreamHandler

__all__ = ["App", "RequestHandler", "StreamHandler", "HTTPError", "HTTPHeaders",
           "MissingArgumentError", "Request", "BodyStream", "load_app", "AppLoadError"]
