"""The ``framework`` command (also ``python -m framework``).

    framework serve APP [--cores N|auto] [--cpuset 0,2-3] [--stack user|kernel]
                        [--port-type tap|afpacket] [--iface IF --ip A/N [--gateway G]]
                        [--tcp-cc newreno|cubic|bbr]
                        [--port 8080] [--config FILE.toml] [--log-level L] [--log-file F]
                        [--pcap DIR] [--metrics [HOST:PORT]] [--graceful-timeout S]
                        [--timeout S]
    framework stats [--pid PID] [--once]
    framework links [--clean]

Every ``serve`` option is also a FRAMEWORK_* environment variable and a key of the TOML
file (framework/master/config.py: flag > environment > file > default). Every problem with the
command line or the configuration (bad flag, bad value, too many cores, an APP that does
not import) is one line on stderr and exit code 2, checked before anything is created.

Hidden, for tests and parallel runs: ``--link-subnet 198.18.N.0/24`` (or
FRAMEWORK_LINK_SUBNET) puts the default link on another /24 inside 198.18.0.0/15; each
run's names already carry its pid.
"""
import argparse
import os
import sys

import psutil

from . import config, logs, stats_cli
from . import link as linkmod

PROG = "framework"


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage + error on two lines; we print one line, exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def available_cores():
    try:
        return sorted(psutil.Process().cpu_affinity())
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def build_parser():
    p = OneLineParser(prog=PROG, description="A Python server framework built like mTCP.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    s = sub.add_parser("serve", help="serve an app, one pinned worker per core",
                       description="Serve APP (module:attribute) with one worker per core.")
    config.add_serve_arguments(s)
    stats_cli.add_stats_parser(sub)
    stats_cli.add_links_parser(sub)
    return p


def _load_app(spec, web):
    """Import APP once in the supervisor so a typo is an exit-2 error, not a crash loop."""
    # imported here for start-up cost: the worker pulls in the shard loops and the stack,
    # which `framework --help`, `stats` and `links` never need
    from framework.web.loader import load_app
    return load_app(spec, web)


def serve(args, parser):
    err = parser.error
    try:
        cfg = config.from_args(args)
        cores = config.check(cfg, available_cores(),
                             iface_exists=lambda i: os.path.exists(f"/sys/class/net/{i}"))
    except config.ConfigError as e:
        err(str(e))
    subnet = cfg.link_subnet or linkmod.DEFAULT_SUBNET
    if os.geteuid() != 0:
        err("serve needs root (CAP_NET_ADMIN, CAP_NET_RAW) to create the link and open raw sockets")
    if cfg.pcap and cfg.stack != "user":
        err("--pcap records the user-level stack's frames; it does not go with --stack kernel")
    from framework.web.serving import WebOptions
    web = WebOptions.from_config(cfg)
    try:
        _load_app(cfg.app, web)
    except Exception as e:
        tls = sys.modules.get("framework.web.tls")
        if tls is not None and isinstance(e, tls.TlsConfigError):
            err(str(e))         # the certificate's fault, not the app's
        err(f"cannot load APP {cfg.app!r}: {type(e).__name__}: {e}".replace("\n", " "))
    metrics = cfg.metrics
    if isinstance(metrics, str):
        metrics = config.parse_hostport(metrics)

    logs.setup(cfg.log_level, None, cfg.log_file)
    # imported here for start-up cost (multiprocess, the worker, the stack), as _load_app
    from .hooks import Lifecycle
    from .supervisor import Supervisor
    sup = Supervisor(cfg.app, cores, stack=cfg.stack, port_type=cfg.port_type,
                     http_port=cfg.port, iface=cfg.iface, ip=cfg.ip, gateway=cfg.gateway,
                     link_subnet=str(subnet), log_level=cfg.log_level, log_file=cfg.log_file,
                     graceful_timeout=cfg.graceful_timeout, timeout=cfg.timeout,
                     metrics=metrics, metrics_netns=cfg.metrics_netns,
                     pcap=cfg.pcap, pcap_size=cfg.pcap_size, pcap_files=cfg.pcap_files,
                     web=web, reload=cfg.reload, vips=cfg.vip or (),
                     max_requests=cfg.max_requests, tcp_cc=cfg.tcp_cc,
                     max_requests_jitter=cfg.max_requests_jitter,
                     lifecycle=Lifecycle(cfg.on_ready, cfg.on_drain, cfg.drain_delay,
                                         cfg.vip or ()))
    return sup.run()


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = parser._subparsers._group_actions[0].choices[args.command]
    if args.command == "serve":
        return serve(args, sub)
    try:
        if args.command == "stats":
            return stats_cli.stats_main(args)
        return stats_cli.links_main(args)
    except stats_cli.StatsError as e:
        sub.error(str(e))


if __name__ == "__main__":
    sys.exit(main())
