import os

import pytest

from framework.master import netns

from .servers import start_server

HERE = os.path.dirname(os.path.abspath(__file__))
TESTAPP = os.path.join(HERE, "testapp.py") + ":app"
SERVER_IP = "198.18.5.1"
CLIENT_IP = "198.18.5.2"
HTTP_PORT = 8080


def pytest_configure(config):
    config.addinivalue_line("markers", "app(spec, web=None): the app the `server` fixture "
                            "serves, built with WebOptions `web`")


class Net:
    """A server namespace and a client namespace joined by a veth pair.

    The client end has CLIENT_IP. The server end (``server_if``) gets SERVER_IP in the
    kernel only with ``kernel_ip`` (the kernel stack); a user-level stack claims
    SERVER_IP itself on that interface, so the kernel there must not own it.
    """

    def __init__(self, lab, kernel_ip=True):
        self.server_ns = lab.netns("fws")
        self.client_ns = lab.netns("fwc")
        a, b = lab.veth(self.server_ns, self.client_ns, prefix="fw")
        self.server_if, self.client_if = a, b
        if kernel_ip:
            netns.ip("addr", "add", f"{SERVER_IP}/24", "dev", a, netns=self.server_ns)
        netns.ip("link", "set", a, "up", netns=self.server_ns)
        netns.ip("addr", "add", f"{CLIENT_IP}/24", "dev", b, netns=self.client_ns)
        netns.ip("link", "set", b, "up", netns=self.client_ns)


class Server:
    def __init__(self, handle, net):
        self.handle = handle
        self.net = net
        self.ns = net.client_ns          # where clients run
        self.ip = SERVER_IP
        self.port = HTTP_PORT
        self.url = f"http://{SERVER_IP}:{HTTP_PORT}"
        self.stack = handle.stack


STACKS = ["kernel", "user"]


@pytest.fixture(params=STACKS)
def server(request, lab):
    marker = request.node.get_closest_marker("app")
    spec = marker.args[0] if marker else TESTAPP
    web = marker.kwargs.get("web") if marker else None
    net = Net(lab, kernel_ip=request.param == "kernel")
    handle = start_server(request.param, spec, net.server_ns, SERVER_IP, HTTP_PORT,
                          ifname=net.server_if, web=web)
    try:
        yield Server(handle, net)
    finally:
        handle.stop()
