"""Mirror BIRD's multipath route for a VIP into a resilient nexthop group (docs/DEPLOY.md).

BIRD 2 installs ECMP routes as plain multipath routes (the kernel's hash-threshold
algorithm: removing one next hop moves flows of the others too). This watcher reads the
route BIRD exported into a side table and keeps a resilient group (``ip nexthop ... type
resilient``) and the real route ``VIP nhid GROUP`` in step with it:

- a next hop in BIRD's route is *active* (weight 256);
- one that left it but whose health path still answers (any status: the node withdrew
  the VIP on purpose, ``--on-drain``) is *draining*: weight 1, which with at most 128
  buckets wants no bucket at all, so the kernel moves its buckets away as each goes idle
  (``idle_timer``) and its flows in progress keep theirs;
- one that left and does not answer is removed: its buckets are reassigned at once, and
  no bucket of the others moves.

Run it on the router: ``python nhsync.py --table 100 --vip 198.19.250.1 --dev br0``
(or, as the test does, ``Sync(...).run(stop_event)`` in a thread).
"""
import argparse
import json
import subprocess
import threading

ACTIVE_WEIGHT = 256
DRAIN_WEIGHT = 1
POLL = 0.1


class Sync:
    def __init__(self, vip, dev, table=100, group_id=100, buckets=120, idle_timer=1,
                 netns=None, health_port=8080, health_path="/healthz", log=None):
        if buckets * DRAIN_WEIGHT * 2 > ACTIVE_WEIGHT:
            # a draining next hop's share (buckets * 1 / (256 * actives + 1)) must round
            # to no bucket even with one active next hop left
            raise ValueError(f"buckets must be at most {ACTIVE_WEIGHT // 2}")
        self.vip = vip
        self.dev = dev
        self.table = table
        self.group_id = group_id
        self.buckets = buckets
        self.idle_timer = idle_timer
        self.netns = netns
        self.health = (health_port, health_path)
        self.log = log or (lambda msg: None)
        self.ids = {}           # gateway -> nexthop id
        self._next_id = group_id + 1
        self.state = {}         # gateway -> "active" | "draining"
        self.applied = None     # the member list last written
        self.changes = []       # (state dict) after each change, for tests

    def _ip(self, *args, check=True):
        cmd = ["ip"] + (["-n", self.netns] if self.netns else []) + list(args)
        return subprocess.run(cmd, capture_output=True, text=True, check=check).stdout

    def bird_gateways(self):
        cmd = ["ip"] + (["-n", self.netns] if self.netns else []) + [
            "-j", "route", "show", "table", str(self.table), f"{self.vip}/32"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:       # no such table yet (BIRD has exported nothing): no route
            return set()
        gws = set()
        for r in json.loads(r.stdout.strip() or "[]"):
            if "gateway" in r:
                gws.add(r["gateway"])
            for nh in r.get("nexthops", ()):
                if "gateway" in nh:
                    gws.add(nh["gateway"])
        return gws

    def answers(self, gw):
        port, path = self.health
        cmd = (["ip", "netns", "exec", self.netns] if self.netns else []) + [
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "0.3",
            f"http://{gw}:{port}{path}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        return r.stdout.strip() not in ("", "000")

    def step(self):
        bird = self.bird_gateways()
        new = {}
        for gw in bird:
            new[gw] = "active"
        for gw, st in self.state.items():
            if gw not in bird and self.answers(gw):
                new[gw] = "draining"
        if new != self.state:
            self.log(f"nhsync: {self.state} -> {new}")
            self.apply(new)
            self.state = new        # only once the kernel has it (a failed apply is retried)
            self.changes.append(dict(new))

    def apply(self, state):
        members = sorted(state)
        for gw in members:
            if gw not in self.ids:
                self.ids[gw] = self._next_id
                self._next_id += 1
                self._ip("nexthop", "replace", "id", str(self.ids[gw]), "via", gw,
                         "dev", self.dev)
        if members:
            group = "/".join(f"{self.ids[gw]},{ACTIVE_WEIGHT if state[gw] == 'active' else DRAIN_WEIGHT}"
                             for gw in members)
            self._ip("nexthop", "replace", "id", str(self.group_id), "group", group,
                     "type", "resilient", "buckets", str(self.buckets),
                     "idle_timer", str(self.idle_timer), "unbalanced_timer", "0")
            self._ip("route", "replace", f"{self.vip}/32", "nhid", str(self.group_id))
        else:
            self._ip("route", "del", f"{self.vip}/32", check=False)
            self._ip("nexthop", "del", "id", str(self.group_id), check=False)
        for gw in list(self.ids):
            if gw not in state:
                self._ip("nexthop", "del", "id", str(self.ids.pop(gw)), check=False)
        self.applied = members

    def buckets_by_gateway(self):
        """{gateway: buckets} of the group as the kernel has it now."""
        out = self._ip("-j", "nexthop", "bucket", "show", "id", str(self.group_id), check=False)
        by_id = {v: k for k, v in self.ids.items()}
        counts = {}
        for b in json.loads(out or "[]"):
            gw = by_id.get(b["bucket"]["nhid"], "?")
            counts[gw] = counts.get(gw, 0) + 1
        return counts

    def run(self, stop):
        while not stop.is_set():
            try:
                self.step()
            except Exception as e:      # keep mirroring: a failed step is retried
                self.log(f"nhsync: {type(e).__name__}: {e}")
            stop.wait(POLL)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vip", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--table", type=int, default=100)
    p.add_argument("--group-id", type=int, default=100)
    p.add_argument("--buckets", type=int, default=120)
    p.add_argument("--idle-timer", type=int, default=120)
    p.add_argument("--health-port", type=int, default=8080)
    p.add_argument("--health-path", default="/healthz")
    a = p.parse_args()
    Sync(a.vip, a.dev, a.table, a.group_id, a.buckets, a.idle_timer,
         health_port=a.health_port, health_path=a.health_path, log=print).run(threading.Event())


if __name__ == "__main__":
    main()
