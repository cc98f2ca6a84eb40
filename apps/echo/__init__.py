"""TCP echo on port 8007 (a StreamHandler) and POST /echo returning the request body.

    framework serve apps.echo:app
    nc 198.18.0.2 8007
"""
from framework import App, RequestHandler, StreamHandler

ECHO_PORT = 8007

app = App()


@app.stream(ECHO_PORT)
class Echo(StreamHandler):
    def on_data(self, data):
        self.write(data)


@app.route("/echo")
class EchoHttp(RequestHandler):
    def post(self):
        self.set_header("Content-Type",
                        self.request.headers.get("Content-Type", "application/octet-stream"))
        self.write(self.request.body)

    put = post
