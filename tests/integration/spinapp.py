"""GET / answers; GET /spin never returns (a handler stuck in a loop), GET /block?s=S
blocks in time.sleep(S) (a blocking call on the shard's loop): either way the loop stops
turning and the supervisor's heartbeat watchdog must kill and restart the worker."""
import time

from framework.web import App, RequestHandler

app = App()


@app.route("/")
class Ok(RequestHandler):
    def get(self):
        self.write(b"ok")


@app.route("/spin")
class Spin(RequestHandler):
    def get(self):
        while True:
            pass


@app.route("/block")
class Block(RequestHandler):
    def get(self):
        time.sleep(float(self.get_argument("s", "30")))
        self.write(b"woke")
