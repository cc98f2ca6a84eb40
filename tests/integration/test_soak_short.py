"""The soak (bench/soak.py) in short form: 15 s of mixed keep-alive, close, pipelined and
1 MiB traffic against 2 workers, 1 request in 100 malformed. Every malformed request gets
its 4xx and nothing else fails; afterwards the workers hold the descriptors, timers, tasks
and connections they held before the load, and the stop leaves no shm segment. RSS growth
needs a long run (bench/results/soak-*), so it is not asserted here."""
import os

import pytest

from bench import apt, soak


@pytest.mark.timeout(180)
def test_soak_short():
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (CI runs as root)")
    apt.ensure("wrk")
    apt.ensure("curl")
    res = soak.run(soak.parse_args(["--minutes", "0.25", "--scale", "0.1", "--warmup", "2",
                                    "--drain", "15", "--sample", "2", "--no-save"]))
    v = res["verdicts"]
    report = soak.markdown(res)
    for check in ("errors", "fds", "shm", "timers", "stop"):
        assert v[check]["ok"], f"{check}: {v[check]['detail']}\n{report}"
    for kind, k in res["kinds"].items():
        assert k["completed"] > 0, f"{kind}: nothing completed\n{report}"
        # each kind sent malformed requests ("errors" checks that every one got a 4xx)
        assert k["malformed"] > 0 and k["expected_4xx"] > 0, f"{kind}\n{report}"
    # a close request is a connection of its own
    assert res["connections"] >= res["kinds"]["close"]["completed"], report
