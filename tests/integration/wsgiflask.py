"""A Flask app for tests/integration/test_wsgi_serve.py: a view that blocks its thread
until the test lets it go, and one that shows who the client is."""
import os
import time

from flask import Flask, request

app = Flask(__name__)


@app.get("/")
def index():
    return "hello from flask\n"


@app.get("/block")
def block():
    # blocks this pool thread (never the worker's loop) until the file exists
    path = request.args["until"]
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return "unblocked\n"


@app.get("/whoami")
def whoami():
    return f"{request.remote_addr} {request.scheme}\n"
