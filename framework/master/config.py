"""The configuration of ``framework serve``: one option table, three sources.

Every option of ``serve`` can be given

- as a command-line flag (``--graceful-timeout 5``),
- as an environment variable (``FRAMEWORK_GRACEFUL_TIMEOUT=5``),
- as a key of a TOML file (``graceful_timeout = 5``; ``graceful-timeout`` works too),
  named by ``--config FILE`` or ``FRAMEWORK_CONFIG``,

and the first of flag > environment > file > default wins, per option. A bad value from
any source, or an unknown key in the file, is a ``ConfigError`` whose message is one
line naming the source ("FRAMEWORK_CORES: ...", "fw.toml: unknown key 'coers'"); the CLI
prints it and exits with code 2 before anything is created.

Unknown ``FRAMEWORK_*`` environment variables are ignored, not errors: apps use the
prefix for their own settings (``FRAMEWORK_STATIC_ROOT``).

The CLI builds its argparse flags from ``OPTIONS`` (help, metavar, choices) with
``default=None``, so "not given on the command line" is visible and the environment,
the file and the default get their turn (``resolve``).
"""
import argparse
import ipaddress
import os
import tomllib

from .link import parse_subnet as _link_parse_subnet

ENV_PREFIX = "FRAMEWORK_"


class ConfigError(ValueError):
    """A one-line description of a bad option (exit code 2)."""


# --- value parsers: text (flag, env) or a TOML value -> the option's value -------------
# Each raises ValueError with a short reason; the caller prefixes the source.

def _int_from(v, what="a whole number"):
    if isinstance(v, bool):
        raise ValueError(f"expected {what}, not {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            pass
    raise ValueError(f"expected {what}, not {v!r}")


def _float_from(v):
    if isinstance(v, bool):
        raise ValueError(f"expected a number of seconds, not {v!r}")
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a number of seconds, not {v!r}")


def _str_from(v):
    if not isinstance(v, str):
        raise ValueError(f"expected a string, not {v!r}")
    return v


def parse_cores(v):
    """A positive number of workers, or "auto" (one per available core)."""
    if isinstance(v, str) and v.strip().lower() == "auto":
        return "auto"
    n = _int_from(v, 'a number of cores or "auto"')
    if n < 1:
        raise ValueError(f"must be at least 1, not {n}")
    return n


def parse_cpuset(v):
    """``"0,2-3"`` (or a TOML list ``[0, 2, 3]``) -> sorted list of distinct cores."""
    if isinstance(v, list):
        cores = [_int_from(x, "a core number") for x in v]
    else:
        text = _str_from(v).strip()
        if not text:
            raise ValueError("empty cpuset")
        cores = []
        for part in text.split(","):
            part = part.strip()
            lo, sep, hi = part.partition("-")
            try:
                a = int(lo)
                b = int(hi) if sep else a
            except ValueError:
                raise ValueError(f"bad cpuset element {part!r} (expected N or N-M)")
            if b < a:
                raise ValueError(f"bad cpuset range {part!r}")
            cores.extend(range(a, b + 1))
    if not cores:
        raise ValueError("empty cpuset")
    if min(cores) < 0:
        raise ValueError("core numbers are >= 0")
    if len(set(cores)) != len(cores):
        raise ValueError("a core is listed twice")
    return sorted(cores)


def parse_port(v):
    n = _int_from(v, "a port number")
    if not 1 <= n <= 65535:
        raise ValueError(f"port {n} out of range 1-65535")
    return n


def parse_seconds(v):
    s = _float_from(v)
    if not s > 0 or s != s or s == float("inf"):
        raise ValueError(f"must be a positive number of seconds, not {v!r}")
    return s


def parse_seconds_or_off(v):
    """Seconds > 0, or 0 / "off" = disabled (returns None)."""
    if isinstance(v, str) and v.strip().lower() in ("off", "none", "0"):
        return None
    s = _float_from(v)
    if s == 0:
        return None
    return parse_seconds(s)


def parse_ip_prefix(v):
    text = _str_from(v)
    if "/" not in text:
        raise ValueError(f"{text!r}: expected ADDRESS/PREFIXLEN, e.g. 198.18.0.2/24")
    try:
        return str(ipaddress.IPv4Interface(text))
    except ValueError as e:
        raise ValueError(str(e))


def parse_ipv4(v):
    try:
        return str(ipaddress.IPv4Address(_str_from(v)))
    except ValueError as e:
        raise ValueError(str(e))


def parse_vips(v):
    """``"198.19.0.1,198.19.0.2"`` (or a TOML list) -> a list of distinct IPv4 addresses."""
    items = v if isinstance(v, list) else _str_from(v).split(",")
    out = []
    for item in items:
        a = parse_ipv4(item.strip() if isinstance(item, str) else item)
        if a in out:
            raise ValueError(f"{a} is listed twice")
        out.append(a)
    if not out:
        raise ValueError("no address given")
    return out


def parse_url_path(v):
    text = _str_from(v).strip()
    if not text.startswith("/") or any(c in text for c in "?# "):
        raise ValueError(f"{text!r}: expected a path like /healthz")
    return text


def parse_hostport(v):
    """``HOST:PORT`` (or ``:PORT`` / ``PORT`` = 127.0.0.1) -> (host, port); "off" -> None."""
    text = _str_from(v).strip() if not isinstance(v, int) else str(v)
    if text.lower() in ("off", "none", ""):
        return None
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: expected HOST:PORT with a numeric address, e.g. 127.0.0.1:9108")
    if port.strip() == "0":
        return host, 0   # any free port (the banner says which)
    return host, parse_port(port)


def parse_subnet(v):
    return str(_link_parse_subnet(_str_from(v)))


def parse_size(v):
    """Bytes, with an optional K/M/G suffix (powers of 1024): 64M, 1G, 1000000."""
    if isinstance(v, str):
        t = v.strip().upper().removesuffix("B")
        mult = 1
        if t and t[-1] in "KMG":
            mult = 1024 ** ("KMG".index(t[-1]) + 1)
            t = t[:-1]
        try:
            n = int(float(t) * mult)
        except ValueError:
            raise ValueError(f"expected a size like 64M, not {v!r}")
    else:
        n = _int_from(v, "a size in bytes")
    if n < 4096:
        raise ValueError(f"size {n} is too small (at least 4096 bytes)")
    return n


def parse_path(v):
    text = _str_from(v)
    if not text:
        raise ValueError("empty path")
    return text


def parse_bool(v):
    if isinstance(v, bool):
        return v
    text = _str_from(v).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {v!r}")


def _choice(*values):
    def parse(v):
        text = _str_from(v).strip().lower()
        if text not in values:
            raise ValueError(f"invalid choice {v!r} (choose from {', '.join(values)})")
        return text
    parse.choices = values
    return parse


class Option:
    __slots__ = ("name", "parse", "default", "help", "metavar", "hidden", "flag_only")

    def __init__(self, name, parse, default, help, metavar=None, hidden=False,
                 flag_only=False):
        self.name = name            # python name; flag --name-with-dashes, env FRAMEWORK_NAME
        self.parse = parse
        self.default = default
        self.help = help
        self.metavar = metavar
        self.hidden = hidden
        self.flag_only = flag_only    # a switch: --name takes no value (env/file: true|false)

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")

    @property
    def env(self):
        return ENV_PREFIX + self.name.upper()

    @property
    def choices(self):
        return getattr(self.parse, "choices", None)


OPTIONS = {o.name: o for o in (
    Option("app", parse_path, None, "module:attribute or file.py:attribute, e.g. apps.hello:app",
           "APP"),
    Option("cores", parse_cores, 1, 'number of workers, one per core, or "auto" (default 1)',
           "N|auto"),
    Option("cpuset", parse_cpuset, None, "cores to use, e.g. 0,2-3 (default: all this "
           "process may run on); worker k runs on the k-th", "LIST"),
    Option("stack", _choice("user", "kernel"), "user",
           "user: the user-level TCP/IP stack (default); kernel: kernel sockets"),
    Option("port_type", _choice("afpacket", "tap"), None,
           "how the user stack reaches the link (default: tap on the default link, "
           "afpacket on --iface)"),
    Option("iface", parse_path, None, "attach to an existing interface instead of creating "
           "the default link", "IF"),
    Option("ip", parse_ip_prefix, None, "the stack's address on --iface, e.g. 198.18.5.2/24",
           "A/N"),
    Option("gateway", parse_ipv4, None, "default gateway on --iface", "G"),
    Option("port", parse_port, 8080, "HTTP port (default 8080)", "P"),
    Option("log_level", _choice("debug", "info", "warning", "error"), "warning",
           "default warning"),
    Option("log_file", parse_path, None, "append logs to this file (reopened on SIGUSR1) "
           "instead of stderr", "FILE"),
    Option("pcap", parse_path, None, "write every frame in and out to DIR/shard<k>.pcap",
           "DIR"),
    Option("pcap_size", parse_size, 64 << 20, "rotate a shard's pcap file at this size "
           "(default 64M)", "SIZE"),
    Option("pcap_files", lambda v: _at_least(v, 1), 4, "rotated pcap files kept per shard "
           "(default 4)", "N"),
    Option("metrics", parse_hostport, None, "serve Prometheus metrics on HOST:PORT, a kernel "
           "socket (--metrics alone: 127.0.0.1:9108; default off)", "HOST:PORT"),
    Option("metrics_netns", parse_path, None, "open the metrics socket inside this network "
           "namespace (tests)", "NS", hidden=True),
    Option("graceful_timeout", parse_seconds, 30.0, "on SIGTERM, let requests in flight "
           "finish for this long (default 30)", "S"),
    Option("tcp_cc", _choice("newreno", "cubic", "bbr"), None, "TCP congestion control "
           "(user stack default newreno; bbr holds its window under random loss; "
           "--stack kernel: the socket's, default the system's)", "ALG"),
    Option("max_requests", lambda v: _at_least(v, 0), 0, "replace a worker after it served "
           "this many requests, without losing any (default 0: never)", "N"),
    Option("max_requests_jitter", lambda v: _at_least(v, 0), 0, "add up to this many to "
           "--max-requests per worker, so they are not replaced all at once", "N"),
    Option("timeout", parse_seconds_or_off, 30.0, "kill and restart a worker whose loop has "
           "not turned for this long (default 30; 0 = off)", "S"),
    # the web layer (framework.web.serving.WebOptions)
    Option("interface", _choice("auto", "asgi", "wsgi", "framework"), "auto",
           "how to serve APP: a framework App, an ASGI 3 or a WSGI app (default auto: "
           "told by its shape)"),
    Option("root_path", _str_from, "", "ASGI root_path / WSGI SCRIPT_NAME: the prefix a "
           "proxy mounts the app under (default none)", "PATH"),
    Option("lifespan", _choice("auto", "on", "off"), "auto", "ASGI lifespan events in every "
           "worker: on (a failure stops the server), off, auto (default: on unless the "
           "app does not support them)"),
    Option("threads", lambda v: _at_least(v, 1), 4, "WSGI: threads per worker running the "
           "app (default 4)", "N"),
    Option("certfile", parse_path, None, "serve HTTPS with this PEM certificate (chain)",
           "FILE"),
    Option("keyfile", parse_path, None, "the certificate's private key (default: in "
           "--certfile)", "FILE"),
    Option("ca_certs", parse_path, None, "ask clients for a certificate signed by these CAs "
           "(PEM) and refuse those without one", "FILE"),
    Option("ssl_ciphers", _str_from, None, "OpenSSL cipher list for TLS 1.2 (default: "
           "Python's)", "LIST"),
    Option("access_log", parse_path, None, "one line per request, gunicorn's format, to "
           "FILE or - (stderr); reopened on SIGUSR1 (default off)", "FILE|-"),
    Option("forwarded_allow_ips", _str_from, None, "trust X-Forwarded-For/-Proto from these "
           "addresses (comma list, or *) (default: from nobody)", "IPS"),
    Option("reload", parse_bool, False, "development: restart the workers when a .py file "
           "under the app's directory changes", flag_only=True),
    # behind a balancer (docs/DEPLOY.md)
    Option("vip", parse_vips, None, "extra service addresses to answer on, e.g. "
           "198.19.0.1 (comma list): routed to this node, never ARPed for", "ADDR[,ADDR]"),
    Option("health_path", parse_url_path, None, "answer GET PATH with 200 while serving, "
           "503 once a stop begins, on every interface (default off)", "PATH"),
    Option("drain_delay", parse_seconds_or_off, None, "on SIGTERM, report unhealthy and keep "
           "serving this long before the graceful stop (default 0)", "S"),
    Option("on_ready", _str_from, None, "shell command run once every worker serves, e.g. "
           "'birdc enable vip'", "CMD"),
    Option("on_drain", _str_from, None, "shell command run when draining starts, e.g. "
           "'birdc disable vip'", "CMD"),
    Option("link_subnet", parse_subnet, None, "a /24 in 198.18.0.0/15 for the default link",
           "NET", hidden=True),
)}

DEFAULT_METRICS = "127.0.0.1:9108"   # what a bare --metrics means


def _at_least(v, lo):
    n = _int_from(v)
    if n < lo:
        raise ValueError(f"must be at least {lo}, not {n}")
    return n


def _key(name):
    return name.replace("-", "_")


def read_file(path):
    """The TOML file's options as {name: raw value}; ConfigError on any problem."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file")
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}")
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}")
    # a [serve] table is accepted too, for files that also configure other things
    if set(data) == {"serve"} and isinstance(data["serve"], dict):
        data = data["serve"]
    out = {}
    for k, v in data.items():
        name = _key(k)
        if name not in OPTIONS or name == "config":
            known = ", ".join(sorted(OPTIONS))
            raise ConfigError(f"{path}: unknown key {k!r} (known: {known})")
        if isinstance(v, dict):
            raise ConfigError(f"{path}: {k}: expected a value, not a table")
        out[name] = v
    return out


class Config:
    """The resolved options: attributes by name, and ``sources[name]`` = flag|env|file|default."""

    def __init__(self, values, sources, config_file=None):
        self.__dict__.update(values)
        self.sources = sources
        self.config_file = config_file

    def as_dict(self):
        return {k: getattr(self, k) for k in OPTIONS}

    def __repr__(self):
        return f"Config({self.as_dict()!r})"


def resolve(flags=None, env=None, config_file=None):
    """Merge the sources: flag > env > file > default.

    ``flags``: {name: value} of what the command line gave (None = not given); flag values
    may be text or already-parsed values, both go through the option's parser.
    ``env``: a mapping (default os.environ). ``config_file``: a path; if None, the
    ``config`` flag or FRAMEWORK_CONFIG names it.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = os.environ if env is None else env
    path = config_file or flags.pop("config", None) or env.get(ENV_PREFIX + "CONFIG") or None
    flags.pop("config", None)
    file_vals = read_file(path) if path else {}
    values, sources = {}, {}
    for name, opt in OPTIONS.items():
        if name in flags:
            src, raw, label = "flag", flags[name], opt.flag
        elif opt.env in env and env[opt.env] != "":
            src, raw, label = "env", env[opt.env], opt.env
        elif name in file_vals:
            src, raw, label = "file", file_vals[name], f"{path}: {name}"
        else:
            values[name], sources[name] = opt.default, "default"
            continue
        try:
            values[name] = _parse(opt, raw)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{label}: {e}".replace("\n", " "))
        sources[name] = src
    unknown = set(flags) - set(OPTIONS)
    if unknown:
        raise ConfigError(f"unknown option {sorted(unknown)[0]!r}")
    return Config(values, sources, path)


def _parse(opt, raw):
    # a flag already parsed by argparse (e.g. a tuple HOST:PORT) goes through as is
    if opt.name == "metrics" and (raw is None or isinstance(raw, tuple)):
        return raw
    if opt.name == "cpuset" and isinstance(raw, list) and all(isinstance(x, int) for x in raw):
        return parse_cpuset(raw)
    return opt.parse(raw)


def check(cfg, available_cores, iface_exists=None):
    """Cross-option rules and the core list. Returns the list of cores, worker k on the
    k-th; ConfigError otherwise. ``available_cores``: what this process may run on."""
    avail = sorted(available_cores)
    if cfg.app is None:
        raise ConfigError("no APP given (argument, FRAMEWORK_APP or 'app' in the config file)")
    if cfg.cpuset is not None:
        bad = [c for c in cfg.cpuset if c not in avail]
        if bad:
            raise ConfigError(f"--cpuset: core {bad[0]} is not available "
                              f"(available: {','.join(map(str, avail))})")
        pool = cfg.cpuset
    else:
        pool = avail
    n = len(pool) if cfg.cores == "auto" else cfg.cores
    if n > len(pool):
        where = "in --cpuset" if cfg.cpuset is not None else "available"
        raise ConfigError(f"--cores {n}: only {len(pool)} core{'s' if len(pool) != 1 else ''} "
                          f"{where} ({','.join(map(str, pool))})")
    if cfg.iface and not cfg.ip:
        raise ConfigError("--iface needs --ip ADDRESS/PREFIXLEN")
    if (cfg.ip or cfg.gateway) and not cfg.iface:
        raise ConfigError("--ip/--gateway only go with --iface "
                          "(the default link chooses its own addresses)")
    if cfg.vip and cfg.ip and cfg.ip.split("/")[0] in cfg.vip:
        raise ConfigError("--vip: a VIP is the node's own --ip")
    if cfg.iface and cfg.link_subnet:
        raise ConfigError("--link-subnet only applies to the default link, not --iface")
    if (cfg.keyfile or cfg.ca_certs or cfg.ssl_ciphers) and not cfg.certfile:
        raise ConfigError("--keyfile/--ca-certs/--ssl-ciphers only go with --certfile")
    for name in ("certfile", "keyfile", "ca_certs"):
        path = getattr(cfg, name)
        if path and not os.path.isfile(path):
            raise ConfigError(f"--{name.replace('_', '-')} {path}: no such file")
    if cfg.iface and iface_exists is not None and not iface_exists(cfg.iface):
        raise ConfigError(f"--iface {cfg.iface}: no such interface")
    return pool[:n]


# --- the command line -----------------------------------------------------------------

def add_serve_arguments(parser, hidden_help=None):
    """Add every option of OPTIONS to an argparse parser as a flag with default None
    (so ``resolve`` can tell "not given"); values stay text, parsed by ``resolve``.
    APP is positional and optional (it may come from FRAMEWORK_APP or the file)."""
    suppress = argparse.SUPPRESS
    parser.add_argument("app", metavar="APP", nargs="?", default=None, help=OPTIONS["app"].help)
    parser.add_argument("--config", metavar="FILE.toml", default=None,
                        help="read options from a TOML file (also FRAMEWORK_CONFIG); "
                             "precedence: flag > FRAMEWORK_* environment > file > default")
    for name, opt in OPTIONS.items():
        if name == "app":
            continue
        kw = {"dest": name, "default": None, "metavar": opt.metavar,
              "help": suppress if opt.hidden else f"{opt.help} [{opt.env}]"}
        if opt.choices:
            kw["metavar"] = "|".join(opt.choices)
        if opt.flag_only:
            del kw["metavar"]
            kw["action"] = "store_const"
            kw["const"] = True
        if name == "metrics":
            kw["nargs"] = "?"
            kw["const"] = DEFAULT_METRICS
        parser.add_argument(opt.flag, **kw)
    return parser


def from_args(args, env=None):
    """The Config of a parsed ``serve`` command line (ConfigError on a bad value)."""
    flags = {name: getattr(args, name, None) for name in OPTIONS}
    flags["config"] = getattr(args, "config", None)
    return resolve(flags, env=env)
