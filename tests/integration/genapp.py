"""An app that says which import of it answers: the generation written in the file
$FW_GENERATION_FILE when the module was imported (the zero-downtime reload test bumps
it before each HUP), in the X-Generation header and the body."""
import os

from framework import App, RequestHandler

with open(os.environ["FW_GENERATION_FILE"]) as f:
    GENERATION = f.read().strip()

app = App()


@app.route("/")
class Generation(RequestHandler):
    def get(self):
        self.set_header("X-Generation", GENERATION)
        self.write(GENERATION.encode())
