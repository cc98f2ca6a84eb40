"""framework.master.config: precedence flag > env > file > default, and one-line errors."""
import pytest

from framework.master.config import OPTIONS, ConfigError, check, resolve


def write(tmp_path, text, name="fw.toml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_defaults():
    cfg = resolve({"app": "apps.hello:app"}, env={})
    assert cfg.cores == 1 and cfg.stack == "user" and cfg.port == 8080
    assert cfg.metrics is None and cfg.timeout == 30.0 and cfg.graceful_timeout == 30.0
    assert cfg.sources["port"] == "default" and cfg.sources["app"] == "flag"


def test_precedence_flag_env_file_default(tmp_path):
    path = write(tmp_path, 'app = "apps.hello:app"\nport = 1111\ncores = 2\n'
                           'graceful_timeout = 7\nlog-level = "info"\n')
    env = {"FRAMEWORK_PORT": "2222", "FRAMEWORK_CORES": "auto"}
    cfg = resolve({"port": "3333", "config": path}, env=env)
    assert cfg.port == 3333 and cfg.sources["port"] == "flag"          # flag beats env + file
    assert cfg.cores == "auto" and cfg.sources["cores"] == "env"       # env beats file
    assert cfg.graceful_timeout == 7.0 and cfg.sources["graceful_timeout"] == "file"
    assert cfg.log_level == "info" and cfg.sources["log_level"] == "file"  # dash key accepted
    assert cfg.app == "apps.hello:app" and cfg.sources["app"] == "file"
    assert cfg.stack == "user" and cfg.sources["stack"] == "default"
    # without the flag the env wins; without both the file
    assert resolve({"config": path}, env=env).port == 2222
    assert resolve({"config": path}, env={}).port == 1111


def test_config_file_from_env_and_serve_table(tmp_path):
    path = write(tmp_path, '[serve]\napp = "x:app"\nmetrics = "127.0.0.1:9200"\n'
                           'cpuset = [0]\ntimeout = 0\n')
    cfg = resolve({}, env={"FRAMEWORK_CONFIG": path})
    assert cfg.app == "x:app" and cfg.metrics == ("127.0.0.1", 9200)
    assert cfg.cpuset == [0] and cfg.timeout is None
    assert cfg.config_file == path


def test_every_option_has_env_and_file_form(tmp_path):
    # the same value through each source parses to the same thing
    samples = {"app": "m:a", "cores": "2", "cpuset": "0-1", "stack": "kernel",
               "port_type": "tap", "iface": "eth9", "ip": "198.18.5.2/24",
               "gateway": "198.18.5.1", "port": "81", "log_level": "debug",
               "log_file": "/tmp/x.log", "pcap": "/tmp/p", "pcap_size": "1M", "pcap_files": "2",
               "metrics": "127.0.0.1:9109", "metrics_netns": "ns1", "graceful_timeout": "1.5",
               "timeout": "3", "tcp_cc": "bbr", "max_requests": "1000", "max_requests_jitter": "50",
               "link_subnet": "198.18.7.0/24", "interface": "asgi",
               "root_path": "/api", "lifespan": "off", "threads": "2",
               "certfile": "/tmp/c.pem", "keyfile": "/tmp/k.pem", "ca_certs": "/tmp/ca.pem",
               "ssl_ciphers": "ECDHE+AESGCM", "access_log": "-",
               "forwarded_allow_ips": "198.18.0.1", "reload": "true",
               "vip": "198.19.0.1,198.19.0.2", "health_path": "/healthz", "drain_delay": "2",
               "on_ready": "birdc enable vip", "on_drain": "birdc disable vip"}
    assert set(samples) == set(OPTIONS)
    for name, text in samples.items():
        a = getattr(resolve({name: text}, env={}), name)
        b = getattr(resolve({}, env={OPTIONS[name].env: text}), name)
        c = getattr(resolve({}, env={}, config_file=write(tmp_path, f'{name} = "{text}"\n')), name)
        assert a == b == c, name
        assert a != OPTIONS[name].default, name


@pytest.mark.parametrize("kind,src,msg", [
    ("flag", {"port": "0"}, "--port: port 0 out of range"),
    ("flag", {"cores": "many"}, "--cores: expected a number of cores"),
    ("env", {"FRAMEWORK_STACK": "dpdk"}, "FRAMEWORK_STACK: invalid choice 'dpdk'"),
    ("env", {"FRAMEWORK_TIMEOUT": "-1"}, "FRAMEWORK_TIMEOUT: must be a positive"),
    ("env", {"FRAMEWORK_METRICS": "localhost:x"}, "FRAMEWORK_METRICS: 'localhost:x'"),
    ("env", {"FRAMEWORK_LINK_SUBNET": "10.0.0.0/24"}, "FRAMEWORK_LINK_SUBNET: 10.0.0.0/24: must be"),
    ("flag", {"vip": "198.19.0.1,198.19.0.1"}, "--vip: 198.19.0.1 is listed twice"),
    ("flag", {"vip": "198.19.0"}, "--vip: "),
    ("flag", {"health_path": "healthz"}, "--health-path: 'healthz': expected a path"),
    ("env", {"FRAMEWORK_DRAIN_DELAY": "-2"}, "FRAMEWORK_DRAIN_DELAY: must be a positive"),
    ("file", 'coers = 2\n', "unknown key 'coers'"),
    ("file", 'port = "http"\n', "port: expected a port number"),
    ("file", 'port = true\n', "port: expected a port number"),
    ("file", 'cpuset = "3-1"\n', "cpuset: bad cpuset range"),
    ("file", 'port = \n', "not valid TOML"),
    ("file", '[other]\nx = 1\n', "unknown key 'other'"),
])
def test_errors_are_one_line(tmp_path, kind, src, msg):
    with pytest.raises(ConfigError) as ei:
        if kind == "flag":
            resolve(src, env={})
        elif kind == "env":
            resolve({}, env=src)
        else:
            resolve({}, env={}, config_file=write(tmp_path, src))
    text = str(ei.value)
    assert "\n" not in text and msg in text, text


def test_missing_file_and_unknown_env_ignored(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        resolve({"config": str(tmp_path / "nope.toml")}, env={})
    cfg = resolve({"app": "a:b"}, env={"FRAMEWORK_STATIC_ROOT": "/srv", "FRAMEWORK_PORT": ""})
    assert cfg.port == 8080


def test_check_cores_cpuset_and_iface():
    c = resolve({"app": "a:b", "cores": "auto"}, env={})
    assert check(c, [0, 1, 2]) == [0, 1, 2]
    c = resolve({"app": "a:b", "cores": "2", "cpuset": "1,3"}, env={})
    assert check(c, [0, 1, 2, 3]) == [1, 3]
    c = resolve({"app": "a:b", "cpuset": "2-3", "cores": "auto"}, env={})
    assert check(c, [0, 1, 2, 3]) == [2, 3]
    with pytest.raises(ConfigError, match=r"--cores 3: only 2 cores in --cpuset \(1,3\)"):
        check(resolve({"app": "a:b", "cores": "3", "cpuset": "1,3"}, env={}), [0, 1, 2, 3])
    with pytest.raises(ConfigError, match="core 7 is not available"):
        check(resolve({"app": "a:b", "cpuset": "7"}, env={}), [0, 1])
    with pytest.raises(ConfigError, match="only 2 cores available"):
        check(resolve({"app": "a:b", "cores": "4"}, env={}), [0, 1])
    with pytest.raises(ConfigError, match="--iface needs --ip"):
        check(resolve({"app": "a:b", "iface": "x"}, env={}), [0])
    with pytest.raises(ConfigError, match="no such interface"):
        check(resolve({"app": "a:b", "iface": "x", "ip": "198.18.1.2/24"}, env={}), [0],
              iface_exists=lambda n: False)
    with pytest.raises(ConfigError, match="no APP"):
        check(resolve({}, env={}), [0])
    with pytest.raises(ConfigError, match="a VIP is the node's own --ip"):
        check(resolve({"app": "a:b", "iface": "x", "ip": "198.18.1.2/24",
                       "vip": "198.19.0.1,198.18.1.2"}, env={}), [0])
    c = resolve({"app": "a:b", "vip": "198.19.0.1, 198.19.0.2"}, env={})
    assert c.vip == ["198.19.0.1", "198.19.0.2"] and check(c, [0]) == [0]


def test_argparse_flags_feed_the_same_precedence(tmp_path):
    import argparse
    from framework.master.config import add_serve_arguments, from_args
    p = add_serve_arguments(argparse.ArgumentParser())
    path = write(tmp_path, 'port = 1111\nstack = "kernel"\n')
    args = p.parse_args(["apps.hello:app", "--config", path, "--cores", "auto", "--metrics",
                         "--graceful-timeout", "2.5", "--cpuset", "0"])
    cfg = from_args(args, env={"FRAMEWORK_PORT": "2222", "FRAMEWORK_STACK": "user"})
    assert cfg.app == "apps.hello:app" and cfg.cores == "auto" and cfg.cpuset == [0]
    assert cfg.metrics == ("127.0.0.1", 9108)          # bare --metrics
    assert cfg.graceful_timeout == 2.5 and cfg.port == 2222 and cfg.stack == "user"
    cfg = from_args(p.parse_args(["x:y", "--config", path]), env={})
    assert cfg.port == 1111 and cfg.stack == "kernel" and cfg.metrics is None
    with pytest.raises(ConfigError, match="--timeout: expected a number of seconds"):
        from_args(p.parse_args(["x:y", "--timeout", "soon"]), env={})


def test_metrics_port_zero_means_any_free_port():
    assert resolve({"metrics": "127.0.0.1:0"}, env={}).metrics == ("127.0.0.1", 0)
    assert resolve({"metrics": ":9200"}, env={}).metrics == ("127.0.0.1", 9200)
    assert resolve({"metrics": "off"}, env={}).metrics is None
    with pytest.raises(ConfigError, match="out of range"):
        resolve({"metrics": "127.0.0.1:70000"}, env={})


def test_tcp_cc_reaches_every_worker_stack():
    """--tcp-cc: the supervisor puts it in each worker's spec, which builds the user
    stack's TcpConfig from it; without the flag the stack keeps its default."""
    from framework.master.supervisor import Supervisor
    from framework.net.tcp.config import TcpConfig
    from framework.shard.worker import _tcp_config
    spec = Supervisor("apps.hello:app", [0], tcp_cc="bbr")._spec()
    assert spec.tcp_cc == "bbr" and _tcp_config(spec.tcp_cc).cc == "bbr"
    spec = Supervisor("apps.hello:app", [0])._spec()
    assert spec.tcp_cc is None and _tcp_config(spec.tcp_cc) is None
    assert TcpConfig().cc == "newreno"
