"""The smallest app.

    framework serve examples/hello.py:app          (or examples.hello:app)
    curl http://198.18.0.2:8080/hello/world
"""
from framework import App, RequestHandler

app = App()


@app.route("/")
class Index(RequestHandler):
    def get(self):
        self.write("Hello, World!\n")


@app.route("/hello/{name}")
class Hello(RequestHandler):
    def get(self, name):
        greeting = self.get_argument("greeting", "hello")
        self.write(f"{greeting} {name} (shard {self.ctx.shard_id} of {self.ctx.shard_count})\n")
