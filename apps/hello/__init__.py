"""GET / -> Hello, World! (text/plain); GET /json -> {"message": "Hello, World!"}.

    framework serve apps.hello:app
"""
from framework import App, RequestHandler

app = App()


@app.route("/")
class Hello(RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.write(b"Hello, World!")


@app.route("/json")
class HelloJson(RequestHandler):
    def get(self):
        self.write({"message": "Hello, World!"})
