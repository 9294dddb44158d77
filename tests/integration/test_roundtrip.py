"""Hypothesis round-trips through the echo view: whatever valid request goes
in, whole, split at random points or pipelined, comes back as the view saw it."""
import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .rawhttp import Conn

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# pchar without pct-encoded (decoding comes later) and without "/" (one segment).
PCHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@"
QCHAR = PCHAR + "/?%"
VCHAR = "".join(chr(c) for c in range(0x21, 0x7f))

# Headers the server interprets itself; the echo test leaves them alone.
RESERVED = {"host", "content-length", "transfer-encoding", "connection", "expect",
            "upgrade", "keep-alive", "te", "trailer", "proxy-connection"}

methods = st.text(TCHAR, min_size=1, max_size=12).filter(
    lambda m: m not in ("HEAD", "CONNECT", "PRI"))
segments = st.text(PCHAR, min_size=1, max_size=30).filter(lambda s: s not in (".", ".."))
queries = st.none() | st.text(QCHAR, max_size=40)
header_names = st.text(TCHAR, min_size=1, max_size=20).filter(
    lambda n: n.lower() not in RESERVED)
header_values = st.one_of(
    st.just(""),
    st.text(VCHAR, min_size=1, max_size=1),
    st.builds(lambda a, mid, b: a + mid + b,
              st.text(VCHAR, min_size=1, max_size=1),
              st.text(VCHAR + " \t", max_size=60),
              st.text(VCHAR, min_size=1, max_size=1)))
headers = st.lists(st.tuples(header_names, header_values), max_size=12,
                   unique_by=lambda kv: kv[0].lower())
bodies = st.binary(max_size=2000)


@st.composite
def requests(draw):
    method = draw(methods)
    path = "/echo/" + draw(segments)
    query = draw(queries)
    target = path if query is None else path + "?" + query
    hdrs = draw(headers)
    body = draw(bodies)
    use_chunked = draw(st.booleans())
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: roundtrip"]
    lines += ["%s: %s" % kv for kv in hdrs]
    if use_chunked:
        lines.append("Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 700), min_size=1, max_size=5))
        enc, i, k = [], 0, 0
        while i < len(body):
            n = sizes[k % len(sizes)]
            enc.append(b"%x\r\n%s\r\n" % (len(body[i:i + n]), body[i:i + n]))
            i += n
            k += 1
        wire_body = b"".join(enc) + b"0\r\n\r\n"
    elif body or draw(st.booleans()):
        lines.append("Content-Length: %d" % len(body))
        wire_body = body
    else:
        wire_body = b""
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + wire_body
    expected = {
        "method": method, "path": path, "query_string": query or "",
        "headers": [(k.lower(), v.strip(" \t")) for k, v in hdrs], "body": body,
    }
    return raw, expected


def check(resp, expected):
    assert resp.status == 200, resp
    e = resp.json()
    assert e["method"] == expected["method"]
    assert e["path"] == expected["path"]
    assert e["query_string"] == expected["query_string"]
    assert base64.b64decode(e["body"]) == expected["body"]
    got = [(k.lower(), v) for k, v in e["headers"]
           if k.lower() not in ("host", "content-length", "transfer-encoding")]
    assert sorted(got) == sorted(expected["headers"])
    assert ["Host", "roundtrip"] in e["headers"]


SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@SETTINGS
@given(req=requests())
def test_echo_whole(basic, req):
    raw, expected = req
    with Conn(basic.port) as c:
        c.send(raw)
        check(c.read_response(), expected)


@SETTINGS
@given(req=requests(), data=st.data())
def test_echo_split(basic, req, data):
    raw, expected = req
    cuts = data.draw(st.lists(st.integers(1, len(raw) - 1), min_size=1, max_size=8))
    with Conn(basic.port) as c:
        c.send_pieces(raw, cuts)
        check(c.read_response(), expected)


@SETTINGS
@given(reqs=st.lists(requests(), min_size=2, max_size=8), data=st.data())
def test_echo_pipelined(basic, reqs, data):
    blob = b"".join(raw for raw, _ in reqs)
    cuts = data.draw(st.lists(st.integers(1, len(blob) - 1), max_size=6))
    with Conn(basic.port) as c:
        c.send_pieces(blob, cuts)
        for _, expected in reqs:
            check(c.read_response(), expected)
