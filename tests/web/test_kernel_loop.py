"""run_kernel_worker itself: SO_REUSEPORT shards, SIGTERM, bind errors."""
import json
import os
import signal

import pytest

from .conftest import CLIENT_IP, SERVER_IP, TESTAPP, Net
from .fakes import parse_responses
from .servers import connect, recv_responses, start_server


def test_two_shards_share_the_port(lab):
    net = Net(lab)
    a = start_server("kernel", TESTAPP, net.server_ns, SERVER_IP, 8080, shard_id=0, shard_count=2)
    b = start_server("kernel", TESTAPP, net.server_ns, SERVER_IP, 8080, shard_id=1, shard_count=2)
    try:
        shards = set()
        for _ in range(40):
            s = connect(net.client_ns, SERVER_IP, 8080)
            s.sendall(b"GET /info HTTP/1.1\r\nConnection: close\r\n\r\n")
            (st, hd, body), = recv_responses(s, 1, parse_responses)
            s.close()
            info = json.loads(body)
            assert info["shard"][1] == 2 and info["remote_ip"] == CLIENT_IP
            shards.add(info["shard"][0])
        assert shards == {0, 1}
    finally:
        assert a.stop() == 0
        assert b.stop() == 0


def test_sigterm_stops_worker(lab):
    net = Net(lab)
    h = start_server("kernel", TESTAPP, net.server_ns, SERVER_IP, 8080, signals=True)
    try:
        s = connect(net.client_ns, SERVER_IP, 8080)
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert recv_responses(s, 1, parse_responses)[0][2] == b"Hello, World!"
        s.close()
        os.kill(h.proc.pid, signal.SIGTERM)
        h.proc.join(3)
        assert h.proc.exitcode == 0
    finally:
        h.stop()


def test_bind_error_is_reported(lab):
    net = Net(lab)
    with pytest.raises(RuntimeError, match="did not start"):
        start_server("kernel", TESTAPP, net.server_ns, "198.18.99.1", 8080, timeout=3)
