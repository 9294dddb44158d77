"""--proxy-headers: which client address, scheme and host a request reports
when a trusted proxy forwards it, and that a client cannot choose them.

A proxy adds the client it saw at the end of what arrived: nginx's
$proxy_add_x_forwarded_for appends to the client's own X-Forwarded-For,
HAProxy's `option forwardfor` adds a field line after the client's.  Only
that last element is the proxy's; everything before it, and every header the
proxy does not set itself (nginx passes a client's Forwarded through), is the
client's to invent.
"""
import json
import re
import socket
import subprocess

import pytest

from .rawhttp import Conn, build_request
from .test_supervisor import fulmen_proc, stop_master, write_app

APP = '''
from fulmen import Application

app = Application()

def info(request):
    return request.Response(json={"remote_addr": request.remote_addr,
                                  "scheme": request.scheme,
                                  "hostname": request.hostname,
                                  "port": request.port})

app.router.add_route("/info", info)
'''


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    d = tmp_path_factory.mktemp("proxyapp")
    write_app(d, "proxyapp", APP)
    srv = fulmen_proc(d, "--proxy-headers", module="proxyapp").start()
    yield srv
    assert stop_master(srv) == 0, srv.stderr()


def info_json(port, headers, host="127.0.0.1", host_header="app.test"):
    with Conn(port, host) as c:
        c.send(build_request("GET", "/info", headers=[("Host", host_header)] + list(headers)))
        r = c.read_response()
    assert r.status == 200, r
    return r.json()


def info(port, headers, host="127.0.0.1"):
    j = info_json(port, headers, host)
    return j["remote_addr"], j["scheme"], j["hostname"]


@pytest.mark.parametrize("headers, expected", [
    ([("X-Forwarded-For", "1.1.1.1")], ("1.1.1.1", "http", "app.test")),
    # the proxy appended to the client's list: its element is the last
    ([("X-Forwarded-For", "6.6.6.6, 1.1.1.1")], ("1.1.1.1", "http", "app.test")),
    # ... or added its own field line after the client's (RFC 9110 5.3:
    # the same as one line, the values joined with commas in order)
    ([("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "1.1.1.1")],
     ("1.1.1.1", "http", "app.test")),
    ([("X-Forwarded-Proto", "http"), ("X-Forwarded-Proto", "https")],
     ("127.0.0.1", "https", "app.test")),
    ([("X-Forwarded-Host", "evil.test"), ("X-Forwarded-Host", "good.test")],
     ("127.0.0.1", "http", "good.test")),
    ([("Forwarded", "for=6.6.6.6;proto=http"), ("Forwarded", "for=1.1.1.1;proto=https")],
     ("1.1.1.1", "https", "app.test")),
    ([("Forwarded", "for=6.6.6.6, for=1.1.1.1;host=good.test")],
     ("1.1.1.1", "http", "good.test")),
    ([("Forwarded", 'for="[2001:db8::1]:4711";proto=https')],
     ("2001:db8::1", "https", "app.test")),
    # a proxy that writes X-Forwarded-* (nginx, as docs/deployment.md sets
    # it up) passes a client's Forwarded header on untouched: it must not
    # win over the proxy's own headers
    ([("Forwarded", "for=6.6.6.6;proto=https;host=evil.test"),
      ("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-Proto", "http"),
      ("X-Forwarded-Host", "good.test")], ("1.1.1.1", "http", "good.test")),
    ([("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-Proto", "http"),
      ("Forwarded", "for=6.6.6.6;proto=https")], ("1.1.1.1", "http", "app.test")),
    # hostname has no brackets for IPv6, whether from Host or X-Forwarded-Host
    ([("X-Forwarded-Host", "[2001:db8::2]:8443")], ("127.0.0.1", "http", "2001:db8::2")),
    ([("X-Forwarded-Host", "[2001:db8::2]")], ("127.0.0.1", "http", "2001:db8::2")),
    ([("X-Forwarded-Host", "good.test:8443")], ("127.0.0.1", "http", "good.test")),
    # request.scheme is "http" or "https": the scheme names are
    # case-insensitive (RFC 3986 3.1), and anything else is not a scheme this
    # server was reached by, so the connection's own counts
    ([("X-Forwarded-Proto", "HTTPS")], ("127.0.0.1", "https", "app.test")),
    ([("Forwarded", "proto=Https")], ("127.0.0.1", "https", "app.test")),
    ([("X-Forwarded-Proto", "javascript")], ("127.0.0.1", "http", "app.test")),
    ([("X-Forwarded-Proto", "https-ish")], ("127.0.0.1", "http", "app.test")),
])
def test_the_proxys_own_element_counts(proxied, headers, expected):
    assert info(proxied.port, headers) == expected


@pytest.mark.parametrize("headers, expected", [
    # request.port comes from the same value as request.hostname: the
    # proxy's host, with its port or with none (as for a Host without one)
    ([], ("app.test", 9000)),
    ([("X-Forwarded-Host", "good.test:8443")], ("good.test", 8443)),
    ([("X-Forwarded-Host", "good.test")], ("good.test", None)),
    ([("X-Forwarded-Host", "[2001:db8::2]:8443")], ("2001:db8::2", 8443)),
    ([("X-Forwarded-Host", "[2001:db8::2]")], ("2001:db8::2", None)),
    ([("X-Forwarded-Host", "good.test:x")], ("app.test", 9000)),   # no Host value
    ([("Forwarded", "host=good.test")], ("good.test", None)),
    ([("Forwarded", 'for=1.1.1.1;host="good.test:8443"')], ("good.test", 8443)),
    ([("Forwarded", 'host="[2001:db8::2]:8443";proto=https')], ("2001:db8::2", 8443)),
    ([("Forwarded", 'host="[2001:db8::2]"')], ("2001:db8::2", None)),
    # X-Forwarded-Port is not read: nginx, set up as docs/deployment.md
    # says, passes a client's on untouched
    ([("X-Forwarded-Port", "443")], ("app.test", 9000)),
    # a forwarded host that is no Host value (RFC 9110 7.2) is not taken
    ([("X-Forwarded-Host", "evil.test/path")], ("app.test", 9000)),
    ([("X-Forwarded-Host", "evil.test:80:80")], ("app.test", 9000)),
    ([("X-Forwarded-Host", "a b")], ("app.test", 9000)),
    ([("Forwarded", 'host="evil.test/x"')], ("app.test", 9000)),
])
def test_port_comes_with_the_forwarded_host(proxied, headers, expected):
    j = info_json(proxied.port, headers, host_header="app.test:9000")
    assert (j["hostname"], j["port"]) == expected


@pytest.mark.parametrize("headers, expected", [
    # RFC 7239 6.2/6.3: "unknown" and an obfuscated "_..." identifier are
    # no address: remote_addr stays the peer's, as without the header
    ([("Forwarded", "for=unknown")], "127.0.0.1"),
    ([("Forwarded", "for=UNKNOWN;proto=https")], "127.0.0.1"),
    ([("Forwarded", "for=_hidden")], "127.0.0.1"),
    ([("Forwarded", 'for="_SEVKISEK:4711"')], "127.0.0.1"),
    ([("Forwarded", 'for="unknown:4711"')], "127.0.0.1"),
    ([("Forwarded", 'for="[2001:db8::1]:_p1"')], "2001:db8::1"),
    # only the proxy's element counts: not the client's before it
    ([("Forwarded", "for=6.6.6.6, for=unknown")], "127.0.0.1"),
    # some proxies write "unknown" in X-Forwarded-For too
    ([("X-Forwarded-For", "unknown")], "127.0.0.1"),
    ([("X-Forwarded-For", "6.6.6.6, Unknown")], "127.0.0.1"),
    ([("X-Forwarded-For", "_hidden")], "127.0.0.1"),
    # X-Forwarded-For still wins over Forwarded, which the client may have
    # written
    ([("X-Forwarded-For", "unknown"), ("Forwarded", "for=6.6.6.6")], "127.0.0.1"),
    # an address with a port is the address (RFC 7239 6: node-port)
    ([("Forwarded", 'for="[2001:db8::1]:4711"')], "2001:db8::1"),
    ([("Forwarded", 'for="[2001:db8::1]"')], "2001:db8::1"),
    ([("Forwarded", 'for="1.2.3.4:80"')], "1.2.3.4"),
    ([("Forwarded", "for=1.2.3.4:80")], "1.2.3.4"),
    ([("Forwarded", "for=1.2.3.4")], "1.2.3.4"),
    ([("X-Forwarded-For", "2001:db8::1")], "2001:db8::1"),
    # some proxies put the client's port in X-Forwarded-For (Azure's
    # Application Gateway): the address is still the address
    ([("X-Forwarded-For", "6.6.6.6, 1.2.3.4:51234")], "1.2.3.4"),
    ([("X-Forwarded-For", "[2001:db8::1]:51234")], "2001:db8::1"),
    ([("X-Forwarded-For", "[2001:db8::1]")], "2001:db8::1"),
    # what is no IPv4 nor IPv6 address is not one either
    ([("X-Forwarded-For", '"')], "127.0.0.1"),
    ([("X-Forwarded-For", '::1"')], "127.0.0.1"),
    ([("X-Forwarded-For", "999.1.1.1")], "127.0.0.1"),
    ([("X-Forwarded-For", "evil.test")], "127.0.0.1"),
    ([("X-Forwarded-For", "1.2.3.4 5.6.7.8")], "127.0.0.1"),
    ([("Forwarded", 'for="[not:an:address]:80"')], "127.0.0.1"),
    ([("X-Forwarded-For", "1" * 60)], "127.0.0.1"),
])
def test_unknown_and_obfuscated_nodes_are_not_addresses(proxied, headers, expected):
    assert info_json(proxied.port, headers)["remote_addr"] == expected


def test_untrusted_peer_and_setting_off(tmp_path):
    write_app(tmp_path, "proxyapp", APP)
    spoof = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https"),
             ("X-Forwarded-Host", "evil.test:8443"), ("Forwarded", "for=7.7.7.7")]
    for args in (("--proxy-headers", "--forwarded-allow-ips", "10.0.0.1"), ()):
        srv = fulmen_proc(tmp_path, *args, module="proxyapp").start()
        try:
            assert info(srv.port, spoof) == ("127.0.0.1", "http", "app.test")
            assert info_json(srv.port, spoof, host_header="app.test:9000")["port"] == 9000
        finally:
            assert stop_master(srv) == 0, srv.stderr()


@pytest.mark.parametrize("allow, trusted", [
    ("127.0.0.0/8", True),
    ("10.0.0.0/8,127.0.0.1/32", True),
    ("127.0.0.2/31", False),          # 127.0.0.2 and .3
    ("127.0.0.0/31", True),
    ("126.0.0.0/7", True),            # a prefix that ends inside a byte
    ("128.0.0.0/1", False),
    ("0.0.0.0/0", True),
    ("::/0", False),                  # IPv6 networks hold no IPv4 peer
    ("::ffff:127.0.0.0/104", True),   # but an IPv4-mapped one is IPv4
    ("10.0.0.0/8, fd00::/8", False),
])
def test_trusted_proxies_as_networks(tmp_path, allow, trusted):
    write_app(tmp_path, "proxyapp", APP)
    srv = fulmen_proc(tmp_path, "--proxy-headers", "--forwarded-allow-ips", allow,
                      module="proxyapp").start()
    try:
        got = info(srv.port, [("X-Forwarded-For", "1.1.1.1")])[0]
        assert got == ("1.1.1.1" if trusted else "127.0.0.1")
    finally:
        assert stop_master(srv) == 0, srv.stderr()


def test_a_bad_trusted_proxy_entry_stops_the_start(tmp_path):
    write_app(tmp_path, "proxyapp", APP)
    srv = fulmen_proc(tmp_path, "--proxy-headers", "--forwarded-allow-ips", "10.0.0.1,proxy",
                      module="proxyapp")
    r = subprocess.run(srv.argv, cwd=srv.cwd, env=srv.env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1, r
    assert "'proxy' is not an IP address or network" in r.stderr, r.stderr
    assert "listening" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def _ipv6_dual_stack():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_dual_stack(), reason="no dual-stack IPv6 socket here")
def test_dual_stack_socket_trusts_the_ipv4_proxy(tmp_path):
    """On `--host ::` an IPv4 peer's address is IPv4-mapped
    (::ffff:127.0.0.1): it is still the trusted 127.0.0.1 of
    --forwarded-allow-ips, as docs/deployment.md says of a local nginx."""
    write_app(tmp_path, "proxyapp", APP)
    srv = fulmen_proc(tmp_path, "--proxy-headers", module="proxyapp")
    srv.argv[srv.argv.index("127.0.0.1")] = "::"
    srv.start()
    try:
        assert info(srv.port, [("X-Forwarded-For", "1.1.1.1")]) == (
            "1.1.1.1", "http", "app.test")
        # an address that is not in the list stays untrusted
        with Conn(srv.port, "::1") as c:
            c.send(build_request("GET", "/info", headers=[("X-Forwarded-For", "1.1.1.1")]))
            assert json.loads(c.read_response().body)["remote_addr"] == "::1"
    finally:
        assert stop_master(srv) == 0, srv.stderr()


# ---- the access log ----------------------------------------------------------------

LOG_CASES = [
    # (headers, the client the log names when the peer is trusted)
    ([("X-Forwarded-For", "6.6.6.6, 1.1.1.1")], "1.1.1.1"),
    ([("Forwarded", 'for="[2001:db8::1]:4711"')], "2001:db8::1"),
    ([("X-Forwarded-For", "unknown")], "127.0.0.1"),
    ([], "127.0.0.1"),
    # what is no address (it could split or forge the line's fields) is
    # not taken: the peer's stands
    ([("X-Forwarded-For", 'a b"c\\d\xe9')], "127.0.0.1"),
]


def _log_lines(tmp_path, *args):
    """Serve LOG_CASES with --access-log ARGS, stop, and return the log
    lines next to what request.remote_addr said for each."""
    write_app(tmp_path, "proxyapp", APP)
    srv = fulmen_proc(tmp_path, "--access-log", *args, module="proxyapp").start()
    try:
        addrs = [info_json(srv.port, headers)["remote_addr"] for headers, _ in LOG_CASES]
    finally:
        assert stop_master(srv) == 0, srv.stderr()
    lines = [l for l in srv.stderr().splitlines() if "/info" in l]
    assert len(lines) == len(LOG_CASES), srv.stderr()
    return lines, addrs


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_access_log_names_the_forwarded_client(tmp_path, fmt):
    """With a trusted proxy the log names the client request.remote_addr
    names (uvicorn and gunicorn do the same), not the proxy."""
    lines, addrs = _log_lines(tmp_path, "--proxy-headers", "--access-log-format", fmt)
    assert addrs == [client for _, client in LOG_CASES]
    if fmt == "json":
        assert [json.loads(l)["client"] for l in lines] == addrs
    else:
        clients = [l.split(" ", 1)[0] for l in lines]
        assert clients == ["1.1.1.1", "2001:db8::1", "127.0.0.1", "127.0.0.1", "127.0.0.1"]
        for l in lines:
            assert re.match(r'^\S+ - - \[[^]]+\] "GET /info HTTP/1\.1" 200 \d+ \d+\.\d{3}$', l), l


@pytest.mark.parametrize("args", [("--proxy-headers", "--forwarded-allow-ips", "10.0.0.1"), ()])
def test_access_log_ignores_untrusted_proxy_headers(tmp_path, args):
    lines, addrs = _log_lines(tmp_path, *args, "--access-log-format", "json")
    assert addrs == ["127.0.0.1"] * len(LOG_CASES)
    assert [json.loads(l)["client"] for l in lines] == addrs
