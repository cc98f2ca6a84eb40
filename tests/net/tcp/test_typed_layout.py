"""The compiled TCP modules take their constants from .pxd files (C enums): the values must
be the ones the .py files define for plain Python."""
import os
import re

from framework.net.wire import tcp as wire

TCP_DIR = os.path.join(os.path.dirname(wire.__file__), "..", "tcp")
ASSIGN = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*(0x[0-9A-Fa-f]+|\d+)\b", re.M)
EXTERN = re.compile(r"#define FW_TCP_SEQ_(\w+) (0x[0-9A-Fa-f]+)LL")


def _values(name, pattern=ASSIGN):
    with open(os.path.join(TCP_DIR, name)) as f:
        return {k: int(v, 0) for k, v in pattern.findall(f.read())}


def test_pxd_constants_match_the_python_sources():
    for module in ("bits", "consts"):
        py = _values(module + ".py")
        pxd = _values(module + ".pxd")
        assert pxd and all(py[k] == v for k, v in pxd.items() if k in py), module
        # every Python constant has its C twin, and the other way round (TCP flags aside)
        assert set(py) - {"M", "HALF", "WRAP"} == set(pxd) - {"FIN", "SYN", "RST", "PSH", "ACK"}
    seq = _values("bits.pxd", EXTERN)
    assert seq == {k: v for k, v in _values("bits.py").items() if k in ("M", "HALF", "WRAP")}


def test_pxd_header_flags_match_the_wire_format():
    pxd = _values("bits.pxd")
    for flag in ("FIN", "SYN", "RST", "PSH", "ACK"):
        assert pxd[flag] == getattr(wire, flag)
