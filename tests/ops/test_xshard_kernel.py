"""Cross-shard calls on the kernel-socket stack: two shard processes (serve_shard over a
KernelProvider, the mesh attached) serving apps.kv with SO_REUSEPORT (connections land
on either) inside a test namespace; every key written through one is read back through
any."""
import http.client
import os
import random
import signal
import time

import multiprocess

from framework.master import netns
from framework.shard.xshard import Mesh

from .conftest import in_netns

CTX = multiprocess.get_context("fork")
PORT = 8080


def shard_proc(mesh, k, ns, ready):
    netns.setns(ns)
    from framework.shard.kernelstack import KernelProvider
    from framework.shard.run import serve_shard
    from framework.web.loader import load_app
    app = load_app("apps.kv:app")
    serve_shard(app, KernelProvider("127.0.0.1"), PORT, k, 2, mesh=mesh, ready=ready)


def test_kv_on_two_kernel_loops(lab, runid):
    ns = lab.netns()
    mesh = Mesh.create(runid, 2, capacity=1 << 16)
    procs = []
    try:
        for k in range(2):
            ready = CTX.Event()
            p = CTX.Process(target=shard_proc, args=(mesh, k, ns, ready), daemon=True)
            p.start()
            mesh.mark_started(k, p.pid)
            assert ready.wait(10)
            procs.append(p)

        def client():
            keys = [f"k{i}-{random.randrange(1 << 20)}" for i in range(400)]
            shards, crossed = set(), 0
            for verb in ("PUT", "GET"):
                for key in keys:
                    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
                    c.request(verb, f"/kv/{key}", body=key.encode() if verb == "PUT" else None)
                    r = c.getresponse()
                    body = r.read()
                    c.close()
                    if verb == "PUT":
                        assert r.status == 201, (key, r.status)
                    else:
                        assert (r.status, body) == (200, key.encode()), (key, r.status)
                        shards.add(r.getheader("X-Shard"))
                        crossed += r.getheader("X-Shard") != r.getheader("X-Owner")
            return shards, crossed

        t0 = time.monotonic()
        shards, crossed = in_netns(ns, client)
        assert shards == {"0", "1"}          # SO_REUSEPORT spread the connections
        assert 80 < crossed < 320, crossed   # about half were served through submit_to
        assert time.monotonic() - t0 < 30
    finally:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
            p.join(5)
        mesh.close()
        mesh.unlink()
