"""The app of the supervisor-level ops tests: a version read at import time (to see a
HUP's fresh import), a handler that spins (heartbeat timeout), a slow async one."""
import os

from framework import App, RequestHandler

_vf = os.environ.get("OPS_VERSION_FILE")
VERSION = open(_vf).read().strip() if _vf else "v0"

app = App()


@app.route("/")
class Root(RequestHandler):
    def get(self):
        self.write(f"{VERSION} shard={self.ctx.shard_id}\n")


@app.route("/spin")
class Spin(RequestHandler):
    def get(self):
        while True:      # a handler stuck in a loop: the shard's loop stops turning
            pass
