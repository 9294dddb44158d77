"""The JSON codec (json.c): the decoder behind request.json, checked against
json.loads, and the encoder behind Response(json=...), checked against
json.dumps.  The codec runs in-process (fulmen._core._json_loads is the
decoder as a function); the last tests go through a real socket."""
import gc
import json
import math
import struct
import sys
import tracemalloc

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import fulmen
from fulmen import _core

from .rawhttp import Conn

loads = _core._json_loads
InvalidJSON = _core.InvalidJSON

SAMPLE = (b'{"id": 123456, "name": "caf\xc3\xa9 \\u00e9\\ud83d\\ude00\\n", '
          b'"ok": true, "no": false, "none": null, "score": -98.5e-3, '
          b'"big": 123456789012345678901234567890, '
          b'"tags": ["a", "b\\"c", [], {}], "nested": {"k": [1, 2.0, {"x": NaN}]}, '
          b'"inf": [Infinity, -Infinity], "esc": "\\/\\b\\f\\r\\t\\\\"}')


def same(a, b):
    """Equal and of the same types all the way down (True is not 1, -0.0 is
    not 0.0, NaN is NaN, dict order counts)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return (list(a) == list(b)) and all(same(a[k], b[k]) for k in a)
    return a == b


def check_error(data):
    """_json_loads(data) fails the way json.loads fails: same message and
    position when the input is valid UTF-8 (json.loads reports bad UTF-8 as
    UnicodeDecodeError, we as InvalidJSON)."""
    with pytest.raises(InvalidJSON) as ei:
        loads(data)
    e = ei.value
    assert isinstance(e, fulmen.BadRequest) and isinstance(e, json.JSONDecodeError)
    assert isinstance(e, ValueError)
    assert str(e) == "request body is not valid JSON"  # what request.json always said
    try:
        json.loads(data)
    except json.JSONDecodeError as want:
        if "nesting" not in e.msg:
            assert (e.msg, e.pos, e.lineno, e.colno) == (want.msg, want.pos, want.lineno,
                                                         want.colno), data
    except (ValueError, RecursionError):
        pass
    return e


def check(data):
    """_json_loads(data) behaves as json.loads(data)."""
    try:
        want = json.loads(data)
    except (ValueError, RecursionError):
        check_error(data)
        return
    got = loads(data)
    assert same(got, want), (data, got, want)


# ---- decoding: values -----------------------------------------------------------

TRICKY_FLOATS = [0.0, -0.0, 1e-320, 5e-324, -5e-324, 1.7976931348623157e308,
                 2.2250738585072014e-308, 2.225073858507201e-308, 0.1 + 0.2, 0.1, 1 / 3,
                 1e22, 1e23, 9007199254740993.0, 123456789012345680.0, 1e-7, 1e16,
                 4.35679e-10, 0.30000000000000004, 1.5, 98.5, 2 ** 53, 2 ** 63, 1e15]


@pytest.mark.parametrize("text", [
    "0", "-0", "1", "-1", "18", "123456789012345678", "-123456789012345678",
    "1234567890123456789", "9223372036854775807", "9223372036854775808",
    "-9223372036854775808", "-9223372036854775809", "18446744073709551616",
    "1" * 400, "-" + "9" * 4000,
    "0.0", "-0.0", "1.0", "1e5", "1E5", "1e+5", "1e-5", "-1.5E-300", "1e400", "-1e400",
    "1e-400", "0.1", "0.30000000000000004", "5e-324", "2.4703282292062328e-324",
    "2.4703282292062327e-324", "1.7976931348623157e308", "1.7976931348623159e308",
    "9007199254740993", "9007199254740993.0", "9007199254740992.5", "0.000001",
    "0." + "0" * 500 + "1", "1" + "0" * 400 + ".0", "123456789012345678901234567890.5",
    # more than 400 fraction digits (leading zeros) and an exponent back to
    # the fast path's range: 1.0 and -0.25, not 10.0 and -2.5e11
    "0." + "0" * 400 + "1e401", "-0." + "0" * 410 + "25e410", "0." + "0" * 399 + "1e400",
    "0." + "0" * 401 + "1e402", "1." + "0" * 450 + "1e3",
    "1.00000000000000011102230246251565404236316680908203125",
    "1.00000000000000011102230246251565404236316680908203126",
    "7.9228162514264337593543950335e28", "1e22", "1e23", "1.5e22", "3e-22", "4e-23",
    "NaN", "Infinity", "-Infinity", "true", "false", "null",
    '""', '"a"', '"\\u0000"', '"\\ud800"', '"\\udc00"', '"\\ud800\\udc00"',
    '"\\udbff\\udfff"', '"\\ud800\\ud800"', '"\\udc00\\ud800"', '"\\ud800x"',
    '"\\ud800\\n"', '"\\uD83D\\uDE00"', '"\\u00e9"', '"\\u20ac"', '"\x7f"',
    '"\u00e9"', '"\u20ac"', '"\U0001F600"', '"a\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti"',
    "[]", "{}", "[[]]", '{"":""}', '{"a":1,"a":2}', '{"a":1,"b":2,"a":3}',
    " \t\r\n[ 1 , 2 ]\n", '[1,"2",3.0,[4],{"5":6}]',
])
def test_values(text):
    check(text.encode())


@pytest.mark.parametrize("v", TRICKY_FLOATS)
def test_tricky_floats(v):
    for text in (repr(v), "%.17g" % v, "%.20e" % v, json.dumps(v), repr(-v)):
        check(text.encode())


def test_sample_document():
    check(SAMPLE)
    check(b"\xef\xbb\xbf" + SAMPLE)  # json.loads reads bytes as utf-8-sig


def test_utf16_and_utf32_go_to_json_loads():
    for enc in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "utf-16", "utf-32"):
        text = json.dumps({"a": [1, "\u00e9"]})
        assert loads(text.encode(enc)) == {"a": [1, "\u00e9"]}
        check_error('{"a": '.encode(enc))


def test_key_cache():
    """Keys come from a cache of interned str; collisions, long, escaped and
    non-ASCII keys all decode right, and equal short keys are one object."""
    keys = ["k%d" % i for i in range(3000)] + ["x" * n for n in range(40)] + [
        "caf\u00e9", "a\\u0062", "tab\\t", "\u20ac" * 3]
    doc = "[" + ",".join('{"%s": %d, "same": 0}' % (k, i) for i, k in enumerate(keys)) + "]"
    check(doc.encode())
    got = loads(doc.encode())
    assert all(next(iter(d)) == json.loads('"%s"' % k) for d, k in zip(got, keys))
    objs = loads(b'[{"name": 1}, {"name": 2}, {"name": 3}]')
    a, b, c = (next(iter(d)) for d in objs)
    assert a is b is c
    assert a is sys.intern("name")


def test_big_containers():
    """More items than the inline value stack holds, nested."""
    check(json.dumps([list(range(1000)), {"k%d" % i: [i] * 3 for i in range(700)}]).encode())
    check(json.dumps([[[i, [i]] for i in range(300)] for _ in range(3)]).encode())


def test_depth_limit():
    ok = b"[" * 1000 + b"]" * 1000
    v = loads(ok)
    for _ in range(999):
        v = v[0]
    assert v == []
    e = check_error(b"[" * 1001 + b"]" * 1001)
    assert "nesting" in e.msg
    check_error(b"[" * 100000)
    check_error(b'{"a":' * 100000)


def test_huge_int_over_the_digit_limit_is_invalid_json():
    if not hasattr(sys, "get_int_max_str_digits"):
        pytest.skip("no int digit limit")
    e = check_error(b"1" * (sys.get_int_max_str_digits() + 1))
    assert "digits" in e.msg


# ---- decoding: errors -------------------------------------------------------------

@pytest.mark.parametrize("text", [
    b"", b" ", b"[", b"]", b"{", b"}", b"[1,", b"[1,]", b"[1 , ]", b"[1,,]", b"[1 2]", b"[,1]",
    b'{"a"}', b'{"a":}', b'{"a":1,}', b'{"a":1 ,\n }', b'{"a":1,]', b"[1,}", b'{"a" 1}',
    b'{1:2}', b"{'a':1}", b"'a'", b'"abc', b'"a\\',
    b'"a\\x"', b'"\\u12"', b'"\\u12', b'"\\u12x4"', b'"\\ud800\\u12"', b'"\\ud800\\uzzzz"',
    b'"\\ud800\\', b'"\\ud800\\x"', b'"\\ud800\\u"', b'"\\U0041"', b'"a\x01"', b'"\x00"',
    b'"\x1f"', b'"a\nb"', b'"\t"', b"1 2", b"[] []", b"-", b"--1", b"+1", b"-I", b"-Infinit",
    b"Nan", b"nan", b"inf", b"01", b"-01", b"1.", b"1.e5", b"1e", b"1e+", b".5", b"0x10",
    b"nul", b"tru", b"fals", b"nulll", b"truee", b"[1]x", b"\x00", b"\x00[]", b"[\x00]",
    b"[]\x00", b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf[]", b"\xff\xfe", b"\xfe\xff",
    b'"\xff"', b'"\xc3"', b'"\xc3("', b'"\xe2\x82"', b'"\xc0\x80"', b'"\xe0\x80\x80"',
    b'"\xf0\x80\x80\x80"', b'"\xf4\x90\x80\x80"', b'"\xf8\x88\x80\x80\x80"', b"\x80",
    b'"\xed\xa0\x80"', b'"\xed\xbf\xbf"', b'"\xed\xa0\xbd\xed\xb8\x80"', b"[1]\xff",
    b'{"\xff": 1}', b"\xc3\xa9", b'["\xc3\xa9", \xc3\xa9]', b"\x0b1", b"\x0c1", b"1\xa0",
])
def test_malformed(text):
    check_error(text)


def test_utf8_surrogate_bytes_are_rejected():
    """json.loads decodes bytes with 'surrogatepass' and accepts UTF-8
    encoded surrogates; they are not UTF-8 (RFC 3629), and we refuse them."""
    for text in (b'"\xed\xa0\x80"', b'["\xed\xb2\x80"]', b'{"\xed\xa0\x80": 1}'):
        check_error(text)


@pytest.mark.parametrize("doc", [SAMPLE, json.dumps({"a": [1, -2.5e-3, "x\u00e9"], "b": {}},
                                                    indent=2).encode()])
def test_truncated_at_every_byte(doc):
    for i in range(len(doc)):
        check(doc[:i])
        check(doc[:i] + b"]")
        check(doc[:i] + b"}")
        check(doc[:i] + b"}]")
    for i in range(len(doc) + 1):
        check(doc[:i] + b"x" + doc[i:])
        check(doc[:i] + b"," + doc[i:])
        check(doc[:i] + b"\x01" + doc[i:])
        check(doc[:i] + b"\xff" + doc[i:])
    for i in range(len(doc)):
        check(doc[:i] + doc[i + 1:])


def test_trailing_garbage():
    for tail in (b"x", b" x", b"]", b"}", b",", b"\x00", b"\n\n  1", b"//", b"/* */"):
        check_error(SAMPLE + tail)
    check(SAMPLE + b" \t\r\n")


_LEAK_PROBE = r"""
import gc, json, tracemalloc
from fulmen import _core
loads, InvalidJSON = _core._json_loads, _core.InvalidJSON
sample = open(%r, "rb").read()
bad = [b"[1,", b'{"a":1,"b":[1,2,{"c":"\\x"}]}', b'{"' + b"k" * 30 + b'": 1' + b"1" * 5000,
       b"[" * 2000, b'[1,2,3,"\xff"]', b"\x00\x00\x00["]
good = [sample, json.dumps({"k%%d" %% i: list(range(20)) for i in range(50)}).encode()]

def run(n):
    for _ in range(n):
        for b in bad:
            try:
                loads(b)
            except InvalidJSON:
                pass
        for g in good:
            loads(g)

run(50)
gc.collect()
tracemalloc.start()
snap1 = tracemalloc.take_snapshot()
run(300)
gc.collect()
snap2 = tracemalloc.take_snapshot()
print(sum(s.size_diff for s in snap2.compare_to(snap1, "filename")))
"""


def test_errors_do_not_leak(tmp_path):
    """2,400 decodes, good and bad, in a process of their own (so that no
    other test's memory use is counted): Python memory must not grow."""
    import subprocess
    sample = tmp_path / "sample.json"
    sample.write_bytes(SAMPLE)
    out = subprocess.run([sys.executable, "-c", _LEAK_PROBE % str(sample)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    grown = int(out.stdout.strip().splitlines()[-1])
    assert grown < 64 * 1024, grown


# ---- decoding: Hypothesis against json.loads -----------------------------------------

keys = st.text(st.characters(blacklist_categories=()), max_size=12) | st.sampled_from(
    ["id", "name", "value", "a", "", "k" * 30])
scalars = (st.none() | st.booleans()
           | st.integers() | st.integers(min_value=-10 ** 300, max_value=10 ** 300)
           | st.floats(allow_nan=False) | st.sampled_from(TRICKY_FLOATS)
           | st.text(st.characters(blacklist_categories=())))
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=6)
                      | st.dictionaries(keys, kids, max_size=6), max_leaves=40)
dump_options = st.fixed_dictionaries({
    "ensure_ascii": st.booleans(),
    "indent": st.sampled_from([None, 0, 2, "\t", "\r\n "]),
    "separators": st.sampled_from([None, (",", ":"), (" ,\n", " :\t")]),
    "sort_keys": st.booleans(),
})


def _has_surrogates(s):
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, dump_options)
@example({"a": [1, 2.5, None, True], "\u00e9": "\U0001F600", "s": "\ud800x\udfff"},
         {"ensure_ascii": True, "indent": None, "separators": None, "sort_keys": False})
def test_decode_matches_json_loads(obj, opts):
    text = json.dumps(obj, **opts)
    if _has_surrogates(text):
        # only ensure_ascii=False leaves lone surrogates unescaped: not UTF-8
        check_error(text.encode("utf-8", "surrogatepass"))
        return
    data = text.encode()
    got = loads(data)
    assert same(got, json.loads(data))
    nan = [float("nan")]
    assert same(loads(json.dumps(nan).encode()), nan)


json_ish = st.lists(st.sampled_from(list('[]{}",:0123456789.eE+- \t\n\\/ubfnrtlsaNIy') +
                                    ["\u00e9", "\x01", "\x7f", "\\u", "\\ud800", "\\udc00",
                                     "null", "true", "1.5e3", '"k":']), max_size=30).map("".join)


@settings(max_examples=1500, deadline=None)
@given(json_ish)
def test_json_ish_text(text):
    """Random text over JSON's alphabet: mostly errors, which must match
    json.loads in message and position."""
    check(text.encode())


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40))
def test_random_bytes_never_crash(data):
    try:
        want = json.loads(data)
    except (ValueError, RecursionError):
        with pytest.raises(InvalidJSON):
            loads(data)
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        if b"\xed" in data:  # UTF-8 encoded surrogates: refused, see above
            with pytest.raises(InvalidJSON):
                loads(data)
            return
    assert same(loads(data), want)


# ---- encoding: Response(json=...) is json.dumps() ---------------------------------

enc_values = st.recursive(
    scalars | st.floats(), lambda kids: st.lists(kids, max_size=6)
    | st.dictionaries(keys, kids, max_size=6) | st.tuples(kids, kids), max_leaves=40)


def body(obj):
    return fulmen.Response(json=obj).body


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(enc_values)
def test_encode_matches_json_dumps(obj):
    # (Response(json=None) is a response without JSON: wrap the value)
    assert body([obj]) == json.dumps([obj]).encode()
    if obj is not None:
        assert body(obj) == json.dumps(obj).encode()


@pytest.mark.parametrize("obj", [
    TRICKY_FLOATS, [-v for v in TRICKY_FLOATS], [float("nan"), float("inf"), -float("inf")],
    [1e-4, 9.999999999999999e-05, 0.0001, 0.00011, 1e15, 999999999999999.9, 1e16, 1e-5,
     123.456, 0.1 * 3, 100.0, 1e14, 12345678901234.5, 2.5e-4, 0.5, 1234567.0],
    [0, 1, -1, 9, 10, 99, 100, -100, 2 ** 63 - 1, -2 ** 63, 2 ** 63, -2 ** 63 - 1, 10 ** 30],
    ["", "a", '"', "\\", "\x00\x01\x1f\x7f", "\x80\xff", "\u00e9", "\u20ac", "\U0001F600",
     "\ud800", "\udfff", "abc\ndef\r\t\b\f", "/", "x" * 100 + '"' + "y" * 100,
     "\\" * 1000, "\x00" * 1000, "a" * 5000, "\u00e9" * 1000 + "\U0001F600"],
    {"": 1, "\u00e9": {"\U0001F600": []}, "k" * 100: [(), (1,), {}]},
    {1: 2, None: 3}, [10 ** 100], {"a": {"b": [1, 2, {3: 4}]}},
    [True, False, None, 0, 0.0, [], {}, ""],
])
def test_encode_cases(obj):
    assert body(obj) == json.dumps(obj).encode()


def test_encode_escape_at_every_position():
    # the encoder copies plain runs a word at a time and its tail with
    # overlapping words: one character to escape at each place of each length
    for n in range(25):
        for p in range(n):
            for ch in ('"', "\\", "\x00", "\x1f", "\x7f", "\u00e9"):
                s = "abcdefghijklmnopqrstuvwxy"[:p] + ch + "ABCDEFGHIJKLMNOPQRSTUVWXY"[p + 1:n]
                assert body([s, {s: s}]) == json.dumps([s, {s: s}]).encode(), repr(s)
        plain = "0123456789abcdefghijklmno"[:n]
        assert body([plain, {plain: plain}]) == json.dumps([plain, {plain: plain}]).encode()


def test_encode_float_repr_stress():
    """The encoder's short path for floats prints repr() exactly."""
    import random
    rnd = random.Random(7)
    vals = []
    for _ in range(20000):
        vals.append(struct.unpack("<d", struct.pack("<Q", rnd.getrandbits(64)))[0])
        vals.append(round(rnd.uniform(-1e6, 1e6), rnd.randint(0, 12)))
        vals.append(rnd.randint(1, 10 ** rnd.randint(1, 17)) / 10 ** rnd.randint(0, 20))
    vals = [v for v in vals if math.isfinite(v)]
    vals += [math.nextafter(v, math.inf) for v in vals[:20000]]
    assert body(vals) == json.dumps(vals).encode()


def test_encode_deep_and_unsupported_fall_back():
    deep = []
    for _ in range(300):
        deep = [deep]
    assert body(deep) == json.dumps(deep).encode()
    assert body({"a": [1, {2: 3}]}) == json.dumps({"a": [1, {2: 3}]}).encode()
    with pytest.raises(TypeError):
        body({"a": object()})


def test_encode_decode_round_trip():
    assert same(loads(body(json.loads(SAMPLE))), json.loads(SAMPLE))


# ---- over a socket ------------------------------------------------------------------

@pytest.fixture
def jsonecho(server_pool):
    srv = server_pool.get("jsonecho")
    yield srv
    problem = srv.problem()
    if problem:
        server_pool.retire("jsonecho")
        pytest.fail("after this test: " + problem, pytrace=False)


@pytest.mark.parametrize("data", [b"{not json", b"", b"[1,", b'{"a": 1,}', b"\xff",
                                  b'"\xed\xa0\x80"', b"[" * 5000, SAMPLE[:-1]])
def test_invalid_json_over_socket_is_400(jsonecho, data):
    with Conn(jsonecho.port) as c:
        r = c.request("POST", "/echo", body=data, headers={"Content-Type": "application/json"})
        assert r.status == 400, r
        assert b"Traceback" not in r.body
        r = c.request("POST", "/echo", body=SAMPLE, headers={"Content-Type": "application/json"})
        assert r.status == 200
        assert same(r.json(), {"json": json.loads(SAMPLE)})


def test_view_sees_a_json_decode_error(jsonecho):
    body = b'{\n  "a": [1,\n  ]}'
    # json.loads' own account, which names the trailing comma from 3.13 on
    if sys.version_info >= (3, 13):
        want = {"msg": "Illegal trailing comma before end of array", "pos": 11,
                "lineno": 2, "colno": 10}
    else:
        want = {"msg": "Expecting value", "pos": 15, "lineno": 3, "colno": 3}
    with pytest.raises(json.JSONDecodeError) as ei:
        json.loads(body)
    assert want == {k: getattr(ei.value, k) for k in want}
    with Conn(jsonecho.port) as c:
        r = c.request("POST", "/error", body=body)
        assert r.status == 200
        assert r.json() == {"type": "InvalidJSON", **want}
