"""The compiled wire and IPv4 modules take some constants from their .pxd files (C enums):
the values must be the ones the .py files define for plain Python."""
import os
import re

from framework.net import wire

WIRE_DIR = os.path.dirname(wire.__file__)
ASSIGN = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*(0x[0-9A-Fa-f]+|\d+)\b", re.M)


def _values(name):
    with open(os.path.join(WIRE_DIR, name)) as f:
        return {k: int(v, 0) for k, v in ASSIGN.findall(f.read())}


def test_tcp_pxd_constants_match_the_python_source():
    py, pxd = _values("tcp.py"), _values("tcp.pxd")
    assert pxd and all(py[k] == v for k, v in pxd.items()), pxd


def test_tcp_option_constants_stay_module_attributes():
    from framework.net.wire import tcp
    assert (tcp.OPT_EOL, tcp.OPT_NOP, tcp.OPT_MSS, tcp.OPT_WS, tcp.OPT_SACK_PERM, tcp.OPT_SACK,
            tcp.OPT_TS, tcp.TS_OPT_LEN) == (0, 1, 2, 3, 4, 5, 8, 12)
