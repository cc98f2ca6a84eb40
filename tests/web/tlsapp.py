"""The app tests/web/test_tls.py serves over HTTPS: what the client sees of the TLS
connection (scheme, ALPN, client certificate), big bodies both ways, a WebSocket echo."""
from framework import App, RequestHandler

app = App(max_body_size=8 << 20)


@app.route("/")
class Hello(RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.write("Hello over " + self.request.protocol)


@app.route("/tls")
class TlsInfo(RequestHandler):
    def get(self):
        t = self.request.connection.transport
        ssl_object = t.get_extra_info("ssl_object")
        cert = t.get_extra_info("peercert") or {}
        subject = dict(x[0] for x in cert.get("subject", ()))
        self.write({"scheme": self.request.protocol,
                    "alpn": ssl_object.selected_alpn_protocol(),
                    "version": ssl_object.version(),
                    "client_cn": subject.get("commonName"),
                    "url": self.request.full_url()})


@app.route("/echo")
class Echo(RequestHandler):
    def post(self):
        self.set_header("Content-Type", "application/octet-stream")
        self.write(self.request.body)


@app.route("/big")
class Big(RequestHandler):
    def get(self):
        n = int(self.get_argument("size"))
        self.set_header("Content-Type", "application/octet-stream")
        self.write(bytes(range(256)) * (n // 256))


try:
    from framework.web.websocket import WebSocketHandler
except ImportError:         # (the WebSocket test says so)
    WebSocketHandler = None

if WebSocketHandler is not None:
    @app.route("/ws")
    class WsEcho(WebSocketHandler):
        def on_message(self, message):
            self.write_message(message, binary=isinstance(message, bytes))
