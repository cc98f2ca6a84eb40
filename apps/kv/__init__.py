"""An in-memory key-value store: GET/PUT/DELETE /kv/{key} (one shard for now).

    curl -X PUT --data-binary 'v' http://198.18.0.2:8080/kv/k
    curl http://198.18.0.2:8080/kv/k
Each shard owns a dict (its ``state``); sharding keys across cores comes with
cross-shard calls.
"""
from framework import App, HTTPError, RequestHandler

MAX_KEY = 250

app = App()


@app.shard_state
def make_store(ctx):
    return {}


@app.route("/kv/{key}")
class Item(RequestHandler):
    def prepare(self):
        if len(self.path_kwargs["key"]) > MAX_KEY:
            raise HTTPError(400, "key too long")

    def get(self, key):
        value = self.state.get(key)
        if value is None:
            raise HTTPError(404)
        self.set_header("Content-Type", "application/octet-stream")
        self.write(value)

    def put(self, key):
        created = key not in self.state
        self.state[key] = self.request.body
        self.set_status(201 if created else 204)

    def delete(self, key):
        if self.state.pop(key, None) is None:
            raise HTTPError(404)
        self.set_status(204)


@app.route("/kv")
class Keys(RequestHandler):
    def get(self):
        self.write({"keys": sorted(self.state), "shard": self.shard.id})
