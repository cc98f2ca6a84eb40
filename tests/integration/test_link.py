"""framework/master/link.py: the default link, and stale-link cleanup that only removes ours."""
import os

import pytest

from framework.master import link as linkmod
from framework.master import netns

from .serve_helpers import dead_pid, free_subnet


@pytest.fixture
def made():
    links = []
    yield links
    for l in links:
        l.created = True
        l.teardown()


def test_veth_link_shape_and_teardown(made):
    # owned by this (live) process: no concurrent run's stale cleanup touches it
    l = linkmod.DefaultLink(owner_pid=os.getpid(), subnet=free_subnet())
    made.append(l)
    l.setup()
    info = l.info()
    assert info.netns == l.netns and info.ifname == l.stack_ifname and not info.kernel_ip
    # the stack's end: in its namespace, no kernel address, our MAC, up
    out = netns.ip("-o", "addr", "show", "dev", l.stack_ifname, netns=l.netns)
    assert "inet " not in out and "inet6" not in out
    assert linkmod.mac_str(info.mac) in netns.ip("link", "show", l.stack_ifname, netns=l.netns)
    assert info.mac[0] & 0x02 and not info.mac[0] & 0x01  # locally administered, unicast
    # the host's end: .1/24 and the connected route, nothing else
    assert f"{l.host_ip}/24" in netns.ip("-o", "addr", "show", "dev", l.host_ifname)
    routes = netns.ip("route", "show", "dev", l.host_ifname)
    assert routes.strip().startswith(str(l.subnet)) and len(routes.strip().splitlines()) == 1
    l.teardown()
    assert not l.exists()


def test_subnet_in_use_is_refused(made):
    sub = free_subnet()
    a = linkmod.DefaultLink(owner_pid=os.getpid(), subnet=sub)
    made.append(a)
    a.setup()
    b = linkmod.DefaultLink(owner_pid=dead_pid(), subnet=sub)
    with pytest.raises(linkmod.LinkError, match="already in use"):
        b.setup()
    assert not b.exists()


def test_cleanup_stale_removes_only_dead_framework_runs(made):
    # a dead run's veth + namespace: removed
    dead = linkmod.DefaultLink(owner_pid=dead_pid(), subnet=free_subnet())
    made.append(dead)
    dead.setup()
    # a live owner (this process)
    mine = linkmod.DefaultLink(owner_pid=os.getpid(), subnet=free_subnet())
    made.append(mine)
    mine.setup()
    # a look-alike interface that is not ours (no alias): kept, even with a dead "owner"
    fake = f"fw{dead_pid():x}h"
    netns.ip("link", "add", fake, "type", "veth", "peer", "name", fake[:-1] + "q")
    try:
        linkmod.cleanup_stale()
        # (a server starting elsewhere at the same time may have removed it first)
        assert not dead.exists()
        assert mine.exists() and netns.link_exists(fake)
    finally:
        netns.del_link(fake)
