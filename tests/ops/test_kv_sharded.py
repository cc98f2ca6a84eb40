"""apps.kv on 2 cores of the user-level stack: 3,000 keys written through connections
on random shards, read back through random shards; a key owned by the other shard goes
through ctx.submit_to over the shm rings."""
import http.client
import json
import random
import threading
import time

from integration.serve_helpers import ROOT, Server

N_KEYS = 3_000
THREADS = 4


def pool_for(ip, per_shard=2, tries=64):
    """Keep-alive connections until each shard has ``per_shard`` of them."""
    conns = {0: [], 1: []}
    for _ in range(tries):
        c = http.client.HTTPConnection(ip, 8080, timeout=10)
        c.request("GET", "/kv")
        r = c.getresponse()
        shard = json.loads(r.read())["shard"]
        if len(conns[shard]) < per_shard:
            conns[shard].append(c)
        else:
            c.close()
        if all(len(v) >= per_shard for v in conns.values()):
            return conns[0] + conns[1]
    raise AssertionError(f"steering never reached both shards: {conns}")


def test_keys_written_and_read_through_random_shards():
    s = Server(app="apps.kv:app", cores=2, cwd=ROOT)
    try:
        keys = [f"key-{i}-{random.randrange(1 << 30)}" for i in range(N_KEYS)]
        errors = []
        crossed = [0] * THREADS
        seen_shards = [set() for _ in range(THREADS)]

        def work(t):
            rnd = random.Random(t)
            try:
                conns = pool_for(s.ip)
                mine = keys[t::THREADS]
                for k in mine:
                    c = rnd.choice(conns)
                    c.request("PUT", f"/kv/{k}", body=k[::-1].encode())
                    r = c.getresponse()
                    r.read()
                    assert r.status == 201, (k, r.status)
                for k in mine:
                    c = rnd.choice(conns)
                    c.request("GET", f"/kv/{k}")
                    r = c.getresponse()
                    body = r.read()
                    assert (r.status, body) == (200, k[::-1].encode()), (k, r.status, body)
                    seen_shards[t].add(r.getheader("X-Shard"))
                    crossed[t] += r.getheader("X-Shard") != r.getheader("X-Owner")
                for c in conns:
                    c.close()
            except Exception as e:
                errors.append(e)

        t0 = time.monotonic()
        threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        elapsed = time.monotonic() - t0
        assert not errors, errors[:3]
        assert set().union(*seen_shards) == {"0", "1"}
        # about half of the reads land on the shard that does not own the key
        assert 0.3 * N_KEYS < sum(crossed) < 0.7 * N_KEYS, sum(crossed)
        c = http.client.HTTPConnection(s.ip, 8080, timeout=10)
        c.request("GET", "/kv?all=1")
        got = json.loads(c.getresponse().read())
        c.close()
        assert got["shards"] == 2 and sorted(got["keys"]) == sorted(keys)
        print(f"\n{2 * N_KEYS} requests in {elapsed:.1f} s "
              f"({2 * N_KEYS / elapsed:.0f} req/s), {sum(crossed)} reads crossed shards")
        assert s.stop() == 0, s.stderr()
        assert s.leftovers() == []
    finally:
        s.cleanup()
