"""The framework app of the bulk scenario: apps.hello's routes plus the bulk ports of
bench/bulk.py (raw asyncio-style protocols, the same classes the uvloop baseline runs).

    framework serve bench.app:app
"""
from apps.hello import Hello, HelloJson
from bench import bulk
from framework import App


class BenchApp(App):
    def listeners(self, http_port):
        out = super().listeners(http_port)
        out[bulk.DISCARD_PORT] = lambda ctx: bulk.Discard()
        out[bulk.SOURCE_PORT] = lambda ctx: bulk.Source(ctx.loop.call_later)
        return out


app = BenchApp()
app.add_route("/", Hello)
app.add_route("/json", HelloJson)
