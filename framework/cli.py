"""The ``framework`` command (also ``python -m framework``).

    framework serve APP --cores N [--stack user|kernel] [--port-type afpacket|tap]
                        [--iface IF --ip A/N [--gateway G]] [--port 8080] [--log-level L]

Every problem with the command line (bad flag, bad value, too many cores, an APP that
does not import) is one line on stderr and exit code 2, checked before anything is
created. Hidden, for tests and parallel runs: ``--link-subnet 198.18.N.0/24`` (or the
environment variable FRAMEWORK_LINK_SUBNET) puts the default link on another /24 inside
198.18.0.0/15; each run's names already carry its pid.
"""
import argparse
import ipaddress
import logging
import os
import sys

PROG = "framework"


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage + error on two lines; we print one line, exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def available_cores():
    import psutil
    try:
        return sorted(psutil.Process().cpu_affinity())
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _port_number(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}")
    if not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"port {n} out of range 1-65535")
    return n


def _positive(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}")
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def _ip_with_prefix(text):
    if "/" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ADDRESS/PREFIXLEN, e.g. 198.18.0.2/24")
    try:
        itf = ipaddress.IPv4Interface(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))
    return str(itf)


def _ipv4(text):
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def _subnet(text):
    from framework.link import parse_subnet
    try:
        return str(parse_subnet(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def build_parser():
    p = OneLineParser(prog=PROG, description="A Python server framework built like mTCP.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    s = sub.add_parser("serve", help="serve an app, one pinned worker per core",
                       description="Serve APP (module:attribute) with one worker per core.")
    s.add_argument("app", metavar="APP", help="module:attribute, e.g. apps.hello:app")
    s.add_argument("--cores", type=_positive, default=1, metavar="N",
                   help="number of workers, one per core (default 1)")
    s.add_argument("--stack", choices=("user", "kernel"), default="user",
                   help="user: the user-level TCP/IP stack (default); kernel: kernel sockets")
    s.add_argument("--port-type", choices=("afpacket", "tap"), default="afpacket",
                   help="how the user stack reaches the link (default afpacket)")
    s.add_argument("--iface", metavar="IF", help="attach to an existing interface instead "
                   "of creating the default link")
    s.add_argument("--ip", type=_ip_with_prefix, metavar="A/N",
                   help="the stack's address on --iface, e.g. 198.18.5.2/24")
    s.add_argument("--gateway", type=_ipv4, metavar="G", help="default gateway on --iface")
    s.add_argument("--port", type=_port_number, default=8080, help="HTTP port (default 8080)")
    s.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   default="warning", help="default warning")
    s.add_argument("--link-subnet", type=_subnet, default=None, help=argparse.SUPPRESS)
    return p


def _load_app(spec):
    """Import APP once in the supervisor so a typo is an exit-2 error, not a crash loop."""
    from framework.shard.worker import load_app
    return load_app(spec)


def serve(args, parser):
    err = parser.error
    cores = available_cores()
    if args.cores > len(cores):
        err(f"--cores {args.cores}: only {len(cores)} core{'s' if len(cores) != 1 else ''} "
            f"available ({','.join(map(str, cores))})")
    if args.iface and not args.ip:
        err("--iface needs --ip ADDRESS/PREFIXLEN")
    if (args.ip or args.gateway) and not args.iface:
        err("--ip/--gateway only go with --iface (the default link chooses its own addresses)")
    if args.iface and args.link_subnet:
        err("--link-subnet only applies to the default link, not --iface")
    if args.iface and not os.path.exists(f"/sys/class/net/{args.iface}"):
        err(f"--iface {args.iface}: no such interface")
    subnet = args.link_subnet or os.environ.get("FRAMEWORK_LINK_SUBNET") or "198.18.0.0/24"
    try:
        subnet = _subnet(subnet)
    except argparse.ArgumentTypeError as e:
        err(f"FRAMEWORK_LINK_SUBNET: {e}")
    if os.geteuid() != 0:
        err("serve needs root (CAP_NET_ADMIN, CAP_NET_RAW) to create the link and open raw sockets")
    try:
        _load_app(args.app)
    except Exception as e:
        err(f"cannot load APP {args.app!r}: {type(e).__name__}: {e}".replace("\n", " "))

    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s [master] %(levelname)s %(name)s: %(message)s")
    from framework.supervisor import Supervisor
    sup = Supervisor(args.app, cores[:args.cores], stack=args.stack, port_type=args.port_type,
                     http_port=args.port, iface=args.iface, ip=args.ip, gateway=args.gateway,
                     link_subnet=subnet, log_level=args.log_level)
    return sup.run()


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        sub = parser._subparsers._group_actions[0].choices["serve"]
        return serve(args, sub)
    parser.error(f"unknown command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
