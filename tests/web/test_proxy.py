"""--forwarded-allow-ips: X-Forwarded-For/-Proto believed only from trusted proxies."""
import pytest

from framework.web.app import App
from framework.web.handler import RequestHandler
from framework.web.proxy import TrustedProxies, resolve
from framework.web.serving import WebOptions, build_app

from .fakes import Harness, parse_responses

XFF = b"X-Forwarded-For"
XFP = b"X-Forwarded-Proto"


def test_untrusted_peer_changes_nothing():
    trusted = TrustedProxies.parse("10.0.0.1")
    headers = [(XFF, b"1.2.3.4"), (XFP, b"https")]
    assert resolve("10.0.0.2", headers, trusted) == ("10.0.0.2", "http")
    assert resolve("10.0.0.2", headers, None) == ("10.0.0.2", "http")
    assert TrustedProxies.parse(None) is None


def test_client_is_the_rightmost_untrusted_hop():
    trusted = TrustedProxies.parse("10.0.0.0/8, 127.0.0.1")
    # client 1.2.3.4 -> untrusted 5.6.7.8 (spoofs nothing, but is not ours) -> our proxies
    h = [(XFF, b"9.9.9.9, 1.2.3.4, 5.6.7.8, 10.1.1.1"), (XFP, b"https")]
    assert resolve("127.0.0.1", h, trusted) == ("5.6.7.8", "https")
    # every hop trusted: the left-most is the client
    assert resolve("127.0.0.1", [(XFF, b"10.0.0.5, 10.0.0.6")], trusted) == ("10.0.0.5",
                                                                             "http")
    # lower-case names (an ASGI scope's headers) and two header lines joined in order
    h = [(b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-for", b"10.2.2.2"),
         (b"x-forwarded-proto", b"HTTPS ")]
    assert resolve("10.9.9.9", h, trusted) == ("1.2.3.4", "https")


def test_star_trusts_everyone_and_takes_the_leftmost():
    trusted = TrustedProxies.parse("*")
    assert resolve("203.0.113.9", [(XFF, b"1.2.3.4, 5.6.7.8")], trusted) == ("1.2.3.4",
                                                                             "http")
    assert resolve(None, [(XFP, b"wss")], trusted) == (None, "wss")


def test_bad_proto_and_empty_for_are_ignored():
    trusted = TrustedProxies.parse("127.0.0.1")
    h = [(XFF, b" , "), (XFP, b"gopher")]
    assert resolve("127.0.0.1", h, trusted, scheme="https") == ("127.0.0.1", "https")
    assert resolve(None, [(XFF, b"1.2.3.4")], trusted) == (None, "http")


def test_ipv6_and_parse_errors():
    trusted = TrustedProxies.parse("::1, fd00::/8")
    assert resolve("::1", [(XFF, b"2001:db8::7")], trusted) == ("2001:db8::7", "http")
    assert "fd00::5" in trusted and "fe80::1" not in trusted and "junk" not in trusted
    with pytest.raises(ValueError):
        TrustedProxies.parse("127.0.0.1,,10.0.0.1")


def _whoami_app(**kw):
    app = App(**kw)

    @app.route("/who")
    class Who(RequestHandler):
        def get(self):
            self.write(f"{self.request.remote_ip} {self.request.protocol} "
                       f"{self.request.full_url()}")
    return app


def test_our_request_sees_the_client_behind_a_trusted_proxy():
    # fakes.FakeTransport's peer is 198.18.5.2
    raw = (b"GET /who HTTP/1.1\r\nHost: ex.org\r\nX-Forwarded-For: 1.2.3.4\r\n"
           b"X-Forwarded-Proto: https\r\n\r\n")
    app = build_app(_whoami_app(), WebOptions(forwarded_allow_ips="198.18.5.0/24"))
    out, _, _ = Harness(app).request(raw)
    assert parse_responses(out)[0][2] == b"1.2.3.4 https https://ex.org/who"
    # not trusted (the default): the peer as it is
    out, _, _ = Harness(_whoami_app()).request(raw)
    assert parse_responses(out)[0][2] == b"198.18.5.2 http http://ex.org/who"
    app = build_app(_whoami_app(), WebOptions(forwarded_allow_ips="10.0.0.1"))
    out, _, _ = Harness(app).request(raw)
    assert parse_responses(out)[0][2] == b"198.18.5.2 http http://ex.org/who"
