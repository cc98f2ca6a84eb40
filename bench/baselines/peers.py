"""The servers users would pick instead of ours, and how the benchmark starts each one:
one process serving (one worker, one runtime thread), the same response body as
apps.hello's ``GET /``, access logs off, listen backlog 4096 like the uvloop baseline.

    uvloop        bench/baselines/uvloop_server.py: uvloop + httptools, raw protocol
    uvicorn       uvicorn --loop uvloop --http httptools --workers 1, raw ASGI app
    granian-asgi  granian --interface asgi --workers 1 --runtime-threads 1
    granian-rsgi  granian --interface rsgi --workers 1 --runtime-threads 1
    nginx         nginx, worker_processes 1, location / { return 200 "Hello, World!"; }

bench/lab.py runs each in a namespace of its own, under ``taskset -c 0``.
"""
import os
import shutil
import sys

KINDS = ("uvloop", "uvicorn", "granian-asgi", "granian-rsgi", "nginx")
# the process that serves is a child of the one started (granian's and nginx's masters
# only supervise)
WORKER_IS_CHILD = frozenset({"granian-asgi", "granian-rsgi", "nginx"})
# bench/bulk.py's discard and source ports: only the uvloop baseline serves them
SERVES_BULK = frozenset({"uvloop"})
BACKLOG = 4096
# long enough that no idle keep-alive connection of a run is closed by the server
KEEPALIVE_TIMEOUT = 600

HELLO_ASGI = "bench.baselines.hello_apps:asgi"
HELLO_RSGI = "bench.baselines.hello_apps:rsgi"

NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 65536;

events {{
    worker_connections 65536;
}}

http {{
    access_log off;
    server_tokens off;
    default_type text/plain;
    keepalive_requests 100000000;
    keepalive_timeout {keepalive}s;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    server {{
        listen {host}:{port} backlog={backlog};
        location / {{
            return 200 "Hello, World!";
        }}
    }}
}}
"""


def nginx_binary():
    return shutil.which("nginx") or "/usr/sbin/nginx"


def write_nginx_conf(workdir, host, port):
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "nginx.conf")
    with open(path, "w") as f:
        f.write(NGINX_CONF.format(dir=workdir, host=host, port=port, backlog=BACKLOG,
                                  keepalive=KEEPALIVE_TIMEOUT))
    return path


def command(kind, host, port, workdir):
    """argv that serves ``kind`` on host:port (``workdir``: a directory of its own)."""
    py = sys.executable
    if kind == "uvloop":
        return [py, "-m", "bench.baselines.uvloop_server", host, str(port)]
    if kind == "uvicorn":
        return [py, "-m", "uvicorn", HELLO_ASGI, "--host", host, "--port", str(port),
                "--loop", "uvloop", "--http", "httptools", "--workers", "1",
                "--no-access-log", "--log-level", "warning", "--backlog", str(BACKLOG),
                "--timeout-keep-alive", str(KEEPALIVE_TIMEOUT)]
    if kind in ("granian-asgi", "granian-rsgi"):
        interface = kind.split("-")[1]
        return [py, "-m", "granian", "--interface", interface, "--host", host,
                "--port", str(port), "--workers", "1", "--runtime-threads", "1",
                "--no-access-log", "--log-level", "warning", "--backlog", str(BACKLOG),
                HELLO_ASGI if interface == "asgi" else HELLO_RSGI]
    if kind == "nginx":
        conf = write_nginx_conf(workdir, host, port)
        return [nginx_binary(), "-p", workdir, "-c", conf, "-e",
                os.path.join(workdir, "error.log")]
    raise ValueError(f"unknown server {kind}")
