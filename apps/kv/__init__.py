"""An in-memory key-value store sharded across cores: GET/PUT/DELETE /kv/{key}.

    curl -X PUT --data-binary 'v' http://198.18.0.2:8080/kv/k
    curl http://198.18.0.2:8080/kv/k
    curl http://198.18.0.2:8080/kv            # this shard's keys
    curl http://198.18.0.2:8080/kv?all=1      # every shard's keys (map_reduce)

Key ``k`` lives on shard ``crc32(k) % N`` (a stable hash: Python's ``hash`` of a str
changes between processes started apart). A request that lands on another shard, as any
connection may, is served there through ``ctx.submit_to(owner, fn, ...)``: the function
runs on the owner's loop against the owner's dict and the answer comes back over the shm
rings. With one shard the same call runs locally (it still returns an awaitable).

The response carries ``X-Shard`` (who answered the connection) and ``X-Owner`` (who
holds the key).
"""
import zlib

from framework import App, HTTPError, RequestHandler, current_shard

MAX_KEY = 250

app = App()


@app.shard_state
def make_store(ctx):
    return {}


def owner_of(key, n):
    return zlib.crc32(key.encode()) % n if n > 1 else 0


# --- run on the owner shard (module level: cross-shard calls send them by name) -------
def _store():
    return current_shard().state


def kv_get(key):
    return _store().get(key)


def kv_put(key, value):
    store = _store()
    created = key not in store
    store[key] = value
    return created


def kv_delete(key):
    return _store().pop(key, None) is not None


def kv_keys():
    return sorted(_store())


class _Sharded(RequestHandler):
    def _call(self, key, fn, *args):
        """An awaitable of fn(*args) run on the key's owner shard."""
        ctx = self.ctx
        owner = owner_of(key, ctx.shard_count)
        self.set_header("X-Shard", str(ctx.shard_id))
        self.set_header("X-Owner", str(owner))
        return ctx.submit_to(owner, fn, *args)


@app.route("/kv/{key}")
class Item(_Sharded):
    def prepare(self):
        if len(self.path_kwargs["key"]) > MAX_KEY:
            raise HTTPError(400, "key too long")

    async def get(self, key):
        value = await self._call(key, kv_get, key)
        if value is None:
            raise HTTPError(404)
        self.set_header("Content-Type", "application/octet-stream")
        self.write(value)

    async def put(self, key):
        created = await self._call(key, kv_put, key, self.request.body)
        self.set_status(201 if created else 204)

    async def delete(self, key):
        if not await self._call(key, kv_delete, key):
            raise HTTPError(404)
        self.set_status(204)


@app.route("/kv")
class Keys(RequestHandler):
    async def get(self):
        ctx = self.ctx
        if self.get_argument("all", None):
            keys = await ctx.map_reduce(kv_keys, _concat)
            self.write({"keys": sorted(keys), "shards": ctx.shard_count})
            return
        self.write({"keys": sorted(self.state), "shard": self.ctx.shard_id})


def _concat(a, b):
    return a + b
