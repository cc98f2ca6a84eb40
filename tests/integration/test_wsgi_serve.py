"""`framework serve` with a Flask app (WSGI) on both stacks, with the operations options a
gunicorn user looks for: --threads (a blocking view never stops the worker), --access-log
(gunicorn's format, flushed by the shard, reopened on SIGUSR1), --forwarded-allow-ips;
and --reload (an edited app file is served after the workers restart)."""
import os
import re
import signal
import threading
import time
import urllib.request

import pytest

from .serve_helpers import Server

STACKS = ["user", "kernel"]
LINE = re.compile(r'^(\S+) - - \[[^\]]+\] "(\S+) (\S+) HTTP/1\.1" (\d{3}) (\d+|-) '
                  r'"([^"]*)" "([^"]*)" (\d+)$')


def http_get(url, headers=None, timeout=10):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_for(fn, timeout=10.0, step=0.1):
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(step)


def log_lines(path):
    try:
        with open(path) as f:
            return [m.groups() for m in map(LINE.match, f.read().splitlines()) if m]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("stack", STACKS)
def test_flask_with_threads_access_log_and_proxy_headers(serve, stack, tmp_path):
    access = str(tmp_path / "access.log")
    s = serve("wsgiflask:app", extra=("--stack", stack, "--threads", "2",
                                      "--access-log", access,
                                      "--forwarded-allow-ips", "198.18.0.0/15"))
    base = f"http://{s.ip}:8080"
    assert http_get(base + "/") == (200, b"hello from flask\n")

    # a view blocked in its thread: the worker answers others meanwhile
    gate = str(tmp_path / "gate")
    blocked = {}
    t = threading.Thread(target=lambda: blocked.update(r=http_get(f"{base}/block?until={gate}")))
    t.start()
    try:
        time.sleep(0.2)
        assert http_get(base + "/") == (200, b"hello from flask\n")
        assert t.is_alive() and not blocked          # still blocked, and / was served
    finally:
        open(gate, "w").close()
        t.join(10)
    assert blocked["r"] == (200, b"unblocked\n")

    # a trusted proxy's headers name the client and the scheme
    assert http_get(base + "/whoami", {"X-Forwarded-For": "203.0.113.7",
                                       "X-Forwarded-Proto": "https"}) == \
        (200, b"203.0.113.7 https\n")

    # the shard writes its buffered lines about once a second
    lines = wait_for(lambda: len(log_lines(access)) >= 4 and log_lines(access))
    paths = [(m, p, st) for _, m, p, st, _, _, _, _ in lines]
    assert paths[:2] == [("GET", "/", "200"), ("GET", "/", "200")]
    assert ("GET", f"/block?until={gate}", "200") in paths
    who = [x for x in lines if x[2] == "/whoami"][0]
    assert who[0] == "203.0.113.7" and who[4] == str(len(b"203.0.113.7 https\n"))
    assert who[6].startswith("Python-urllib")
    block = [x for x in lines if x[2].startswith("/block")][0]
    assert int(block[7]) >= 100_000                  # it waited ~0.2 s: microseconds

    # logrotate: move the file, SIGUSR1 to the supervisor (forwarded to the workers)
    os.rename(access, access + ".1")
    os.kill(s.pid, signal.SIGUSR1)
    assert wait_for(lambda: os.path.exists(access), 5), "not reopened"
    http_get(base + "/whoami")
    assert wait_for(lambda: log_lines(access))[0][2] == "/whoami"
    assert len(log_lines(access + ".1")) == len(lines)
    assert s.stop() == 0


APP_V1 = '''
from helper import WORD


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("version %s\\n" % WORD).encode()]
'''


def body_or_none(url):
    """The body, or None while the worker is being replaced (the old one refuses new
    connections as it stops; the new one is not listening yet)."""
    try:
        return http_get(url, timeout=2)[1]
    except OSError:
        return None


def test_reload_serves_the_edited_app(serve, tmp_path):
    d = tmp_path / "app"
    d.mkdir()
    (d / "main.py").write_text(APP_V1)
    (d / "helper.py").write_text('WORD = "one"\n')
    s = serve(f"{d}/main.py:app", extra=("--reload",))
    base = f"http://{s.ip}:8080"
    assert http_get(base + "/") == (200, b"version one\n")
    old = s.wait_workers(1)[0].pid
    # a sibling module the app imports (not the APP file itself) changes
    (d / "helper.py").write_text('WORD = "two"\n')
    assert wait_for(lambda: body_or_none(base + "/") == b"version two\n", 15)
    assert s.wait_workers(1, exclude={old})[0].pid != old
    # an edit that does not import keeps the running workers serving
    (d / "helper.py").write_text('WORD = (\n')
    time.sleep(1.5)
    assert http_get(base + "/") == (200, b"version two\n")
    (d / "helper.py").write_text('WORD = "three"\n')
    assert wait_for(lambda: body_or_none(base + "/") == b"version three\n", 15)
    assert "--reload: helper.py changed" in s.stderr()
    assert s.stop() == 0
