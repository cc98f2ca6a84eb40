r"""A raw TCP protocol next to HTTP: a line-based echo on port 8007.

    framework serve examples/echo_server.py:app
    python -c "import socket; s=socket.create_connection(('198.18.0.2', 8007)); s.sendall(b'hi\nbye\n'); print(s.recv(100))"
"""
from framework import App, RequestHandler, StreamHandler

app = App()


@app.stream(8007)
class LineEcho(StreamHandler):
    def on_connect(self):
        self.buf = b""
        self.write(b"welcome, say something\n")

    def on_data(self, data):
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            if line.strip() == b"bye":
                self.write(b"bye\n")
                self.close()
                return
            self.write(line + b"\n")


@app.route("/")
class Index(RequestHandler):
    def get(self):
        self.write("TCP echo on port 8007\n")
