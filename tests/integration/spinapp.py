"""GET / answers; GET /spin never returns (a handler stuck in a loop): the supervisor's
heartbeat watchdog must kill and restart the worker."""
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
