"""The app each cluster node serves: who answered, and a slow request to drain."""
import asyncio
import os

from framework import App, RequestHandler

app = App()
NODE = os.environ.get("CLUSTER_NODE", "?")


@app.route("/")
class Who(RequestHandler):
    def get(self):
        self.write(NODE)


@app.route("/slow")
class Slow(RequestHandler):
    async def get(self):
        await asyncio.sleep(float(self.get_argument("s", "0.5")))
        self.write(NODE)
