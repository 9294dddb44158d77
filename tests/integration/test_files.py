"""File responses: Response(file=...), FileResponse and add_static
(apps/api.py; the files come from the `api` fixture's tree)."""
import email.utils
import errno
import os
import re
import socket

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from .conftest import skip_if_sanitized
from .rawhttp import Conn, build_request, fields_but_date
from .server import rss_kb
from .test_api import SECRET, api, get  # noqa: F401  (the shared fixture)
from .test_binding import conn_over


def static(srv, name):
    return srv.tree["files"][name]


# ---- content and headers ------------------------------------------------------------

def test_a_file_that_shrinks_while_it_is_sent_is_cut_and_logged(api):
    """The file is truncated under an answer that promised its old length:
    the answer stops short and the connection is closed after it (the
    client must not take it as whole), with a line on stderr that says so,
    as for any stream (it said "aborted")."""
    path = os.path.join(api.tree["static"], "shrinks.bin")
    size = 32 << 20
    with open(path, "wb") as f:
        f.truncate(size)
    try:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.settimeout(30)
        s.connect(("127.0.0.1", api.port))
        with s:
            s.sendall(build_request("GET", "/static/shrinks.bin"))
            got = b""
            while b"\r\n\r\n" not in got:
                d = s.recv(65536)
                assert d, got
                got += d
            head, _, body = got.partition(b"\r\n\r\n")
            assert b"Content-Length: %d" % size in head, head
            os.truncate(path, 1 << 20)   # whatever was sent by now, the rest is gone
            n = len(body)
            try:
                while True:
                    d = s.recv(1 << 20)
                    if not d:
                        break
                    n += len(d)
            except ConnectionResetError:
                pass
        assert n < size
        # (it was "a stream ended ...": the log names the request)
        assert api.wait_for_stderr("fulmen: the response to <Request GET /static/shrinks.bin> "
                                   "ended "), api.stderr()
        line = [l for l in api.stderr().splitlines() if "shrinks.bin> ended" in l][-1]
        assert "short of its Content-Length; the connection is closed after it" in line, line
    finally:
        os.remove(path)


def test_file_answers_waiting_their_turn_hold_no_descriptor(api):
    """Big files (sent from the file as the client reads) pipelined by a
    client that reads nothing: the answers that wait behind the first hold
    no open file each, or one client could take the worker's descriptors
    (its limit is shared by every connection)."""
    def fds():
        return len(os.listdir("/proc/%d/fd" % api.proc.pid))
    before = fds()
    with socket.create_connection(("127.0.0.1", api.port)) as s:
        s.sendall(build_request("GET", "/static/big.bin") * 30 +
                  build_request("GET", "/static/over.bin", {"Range": "bytes=1-"}) * 30)
        # once another connection has had two answers, those were all read
        for _ in range(2):
            assert get(api, "/plain").body == b"plain"
        during = fds()
    assert during - before < 8, (before, during)


@pytest.mark.parametrize("to", [0, 1, 65535])
def test_a_file_that_shrinks_before_its_first_block_is_a_500(api, to):
    """Nothing of the answer went yet when the file is found short (its
    first block is read before the head goes): a whole 500, logged, rather
    than a 200 cut at once."""
    n0 = len(api.lines)
    with Conn(api.port) as c:
        c.send(build_request("GET", "/file-emptied?to=%d" % to))
        r = c.read_response()
        assert r.status == 500
        assert r.header("Connection") == "close"
        assert c.at_eof()
    assert api.wait_for_stderr("fulmen: the response to <Request GET /file-emptied> ended ",
                               start=n0)
    assert api.wait_for_stderr("bytes short of its Content-Length; answered 500", start=n0)


@pytest.mark.parametrize("name,ctype", [
    ("hello.txt", "text/plain; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("data.json", "application/json; charset=utf-8"),
    ("image.png", "image/png"),
    ("noext", "application/octet-stream"),
    ("sub/nested.txt", "text/plain; charset=utf-8"),
    ("big.bin", "application/octet-stream"),
    # compressed: the type of the bytes sent, not of what they hold
    ("archive.tar.gz", "application/gzip"),
    ("x.tgz", "application/gzip"),
])
def test_static_file_content_and_type(api, name, ctype):
    with Conn(api.port) as c:
        r = c.request("GET", "/static/" + name)
        assert r.status == 200
        assert r.header("Content-Type") == ctype
        assert r.body == static(api, name)
        assert r.header("Content-Length") == str(len(static(api, name)))
        assert r.header("Accept-Ranges") == "bytes"
        assert c.request("GET", "/plain").body == b"plain"


@pytest.mark.parametrize("headers", [{}, {"Range": "bytes=0-3"}])   # C, Python
def test_a_file_dated_in_the_future_was_modified_now(api, headers):
    # RFC 9110 8.8.2.1: a Last-Modified later than the Date is replaced
    # with the Date, and the file's conditions compare with that
    with Conn(api.port) as c:
        r = c.request("GET", "/static/future.txt", headers=headers)
        assert r.status in (200, 206)
        lm = email.utils.parsedate_to_datetime(r.header("Last-Modified"))
        assert lm <= email.utils.parsedate_to_datetime(r.header("Date"))
        r = c.request("GET", "/static/future.txt",
                      headers={"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"})
        assert r.status == 304


@pytest.mark.parametrize("path", ["/bstatic/hello.txt", "/bstatic/big.bin",
                                  "/bstatic/inner-link.txt", "/bstatic/%68ello.txt"])
@pytest.mark.parametrize("headers", [{}, {"Range": "bytes=1-4"}])
def test_add_static_of_a_bytes_directory(api, path, headers):
    name = {"inner-link.txt": "hello.txt", "%68ello.txt": "hello.txt"}.get(
        path.rsplit("/", 1)[1], path.rsplit("/", 1)[1])
    r = get(api, path, headers=headers)
    assert r.status == (206 if headers else 200), r
    assert r.body == (static(api, name)[1:5] if headers else static(api, name))


@pytest.mark.parametrize("headers", [{}, {"Range": "bytes=1-4"}, {"If-Match": "*"}])
def test_a_bytes_file_name_gets_its_type(api, headers):
    r = get(api, "/f/bytes", headers=headers)
    assert r.status in (200, 206)
    assert r.header("Content-Type") == "text/html; charset=utf-8"


@pytest.mark.parametrize("path", ["/eh/static/nope.css", "/eh/static/sub/", "/eh/static/fifo",
                                  "/eh/static/link.txt", "/eh/static/sub/%2e%2e/hello.txt"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_static_miss_gets_the_apps_not_found_answer(api, path, method):
    # its handler for RouteNotFoundException, as a path no route takes
    with Conn(api.port) as c:
        r = c.request(method, path)
        assert r.status == 404
        assert r.header("X-Custom") == "404"
        if method == "GET":
            assert r.body.startswith(b"custom 404 for /eh/static/")
        r = c.request("GET", "/eh/static/hello.txt")
        assert (r.status, r.body) == (200, static(api, "hello.txt"))


@pytest.mark.parametrize("directory", ["", "\x00", b"", 3])
def test_add_static_of_no_directory_is_refused(directory):
    from fulmen import Application
    with pytest.raises((ValueError, TypeError), match="add_static"):
        Application().router.add_static("/s", directory)


def test_etag_and_last_modified(api):
    r = get(api, "/static/hello.txt")
    etag = r.header("ETag")
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', etag), etag
    st = os.stat(os.path.join(api.tree["static"], "hello.txt"))
    lm = r.header("Last-Modified")
    assert lm.endswith(" GMT")
    assert email.utils.parsedate_to_datetime(lm).timestamp() == int(st.st_mtime)
    # stable across requests, different for another file
    assert get(api, "/static/hello.txt").header("ETag") == etag
    assert get(api, "/static/style.css").header("ETag") != etag


def test_empty_file(api):
    r = get(api, "/static/sub/empty.txt")
    assert r.status == 200
    assert r.body == b""
    assert r.header("Content-Length") == "0"


def test_symlink_inside_directory_is_served(api):
    assert get(api, "/static/inner-link.txt").body == static(api, "hello.txt")
    # through a symlinked directory that stays inside
    assert get(api, "/static/inner-dir/nested.txt").body == static(api, "sub/nested.txt")
    assert get(api, "/static/inner-dir").status == 404


def test_response_file(api):
    r = get(api, "/f/file")
    assert r.status == 200
    assert r.body == api.tree["page_body"]
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    assert r.header("ETag")


def test_file_response_helper(api):
    r = get(api, "/f/fileresponse")
    assert r.body == api.tree["page_body"]
    assert r.header("X-File") == "1"
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    r = get(api, "/f/mime")
    assert r.header("Content-Type") == "application/x-custom"
    assert r.body == api.tree["page_body"]


def test_missing_file_or_directory_is_404(api):
    assert get(api, "/f/missing").status == 404
    assert get(api, "/f/dir").status == 404


@pytest.mark.parametrize("how", ["toolong", "loop"])
def test_file_that_cannot_be_reached_is_404(api, how):
    """ENAMETOOLONG and ELOOP from stat() are a file that is not there, as
    ENOENT is: 404, not a 500 with a traceback."""
    with Conn(api.port) as c:
        assert c.request("GET", "/f/unreachable/" + how).status == 404
        assert c.request("GET", "/static/loop-a").status == 404
        assert c.request("GET", "/plain").body == b"plain"


def test_head_on_file(api):
    size = len(static(api, "big.bin"))
    with Conn(api.port) as c:
        r = c.request("HEAD", "/static/big.bin")
        assert r.status == 200
        assert r.header("Content-Length") == str(size)
        assert r.header("ETag")
        r = c.request("HEAD", "/static/hello.txt")
        assert r.status == 200
        assert r.header("Content-Type") == "text/plain; charset=utf-8"
        assert r.header("Content-Length") == str(len(static(api, "hello.txt")))
        # nothing followed either head
        assert c.request("GET", "/static/hello.txt").body == static(api, "hello.txt")


@pytest.mark.parametrize("path,headers,status", [
    ("/static/hello.txt", {}, 200),                         # small: read into the response
    ("/static/big.bin", {}, 200),                           # large: sent from the file
    ("/static/sub/empty.txt", {}, 200),                     # Content-Length: 0
    ("/f/fileresponse", {}, 200),                           # FileResponse with its own header
    ("/static/digits.txt", {"Range": "bytes=3-9"}, 206),
    ("/static/digits.txt", {"Range": "bytes=-5"}, 206),
    ("/static/big.bin", {"Range": "bytes=1000-199999"}, 206),
    ("/static/digits.txt", {"Range": "bytes=100-"}, 416),
    ("/static/no-such-file", {}, 404),
    ("/f/missing", {}, 404),
])
def test_head_on_file_has_the_fields_of_get(api, path, headers, status):
    with Conn(api.port, timeout=10) as c:
        g = c.request("GET", path, headers=headers)
        assert g.status == status
        # HEAD pipelined between two GETs: any body after the HEAD answer
        # would be read as the next status line
        c.send(build_request("HEAD", path, headers=headers)
               + build_request("GET", "/plain"))
        h = c.read_response(head=True)
        assert h.status == status
        if status in (200, 206):
            # a file's answer keeps its Content-Length on HEAD: the size is
            # what a HEAD for a file is usually asked for
            assert fields_but_date(h) == fields_but_date(g)
            assert h.header("Content-Length") == str(len(g.body))
        else:
            # an error text made in memory: no length on HEAD, like a view's
            assert fields_but_date(h, "content-length") == fields_but_date(g, "content-length")
            assert h.header("Content-Length") is None
        assert h.header("Transfer-Encoding") is None
        assert c.read_response().body == b"plain"


def test_head_on_file_not_modified(api):
    etag = get(api, "/static/hello.txt").header("ETag")
    with Conn(api.port) as c:
        g = c.request("GET", "/static/hello.txt", headers={"If-None-Match": etag})
        c.send(build_request("HEAD", "/static/hello.txt", headers={"If-None-Match": etag})
               + build_request("GET", "/plain"))
        h = c.read_response(head=True)
        assert h.status == g.status == 304
        assert fields_but_date(h) == fields_but_date(g)
        assert h.header("Content-Length") is None
        assert c.read_response().body == b"plain"


def test_head_on_big_file_sends_no_body_before_close(api):
    with Conn(api.port) as c:
        c.send(build_request("HEAD", "/static/big.bin", headers={"Connection": "close"}))
        h = c.read_response(head=True)
        assert h.header("Content-Length") == str(len(static(api, "big.bin")))
        assert c.at_eof(), "bytes after a HEAD response: %r" % c.buf[:100]


def test_static_is_get_and_head_only(api):
    r = get(api, "/static/hello.txt", "POST", body=b"x")
    assert r.status == 405
    assert {m.strip() for m in r.header("Allow").split(",")} == {"GET", "HEAD", "OPTIONS"}


# ---- conditional requests ------------------------------------------------------------

def test_if_none_match(api):
    with Conn(api.port) as c:
        r = c.request("GET", "/static/hello.txt")
        etag, lm = r.header("ETag"), r.header("Last-Modified")
        for value in (etag, "W/" + etag, '"other", ' + etag, "*"):
            r = c.request("GET", "/static/hello.txt", headers={"If-None-Match": value})
            assert r.status == 304, value
            assert r.body == b""
            assert r.header("ETag") == etag
        r = c.request("GET", "/static/hello.txt", headers={"If-None-Match": '"nope"'})
        assert r.status == 200
        assert r.body == static(api, "hello.txt")
        # If-None-Match wins over If-Modified-Since
        r = c.request("GET", "/static/hello.txt",
                      headers={"If-None-Match": '"nope"', "If-Modified-Since": lm})
        assert r.status == 200
        # the connection is in step after the bodiless 304s
        assert c.request("GET", "/plain").body == b"plain"


def test_if_modified_since(api):
    with Conn(api.port) as c:
        lm = c.request("GET", "/static/hello.txt").header("Last-Modified")
        r = c.request("GET", "/static/hello.txt", headers={"If-Modified-Since": lm})
        assert r.status == 304
        assert r.body == b""
        later = "Fri, 01 Jan 2100 00:00:00 GMT"
        assert c.request("GET", "/static/hello.txt",
                         headers={"If-Modified-Since": later}).status == 304
        earlier = "Thu, 01 Jan 1970 00:00:01 GMT"
        r = c.request("GET", "/static/hello.txt", headers={"If-Modified-Since": earlier})
        assert r.status == 200
        assert r.body == static(api, "hello.txt")
        r = c.request("GET", "/static/hello.txt", headers={"If-Modified-Since": "garbage"})
        assert r.status == 200
        assert c.request("GET", "/plain").body == b"plain"


@pytest.mark.parametrize("spell", [
    lambda lm: lm.replace(" GMT", " +0000"),      # a zone HTTP-date has no other of
    lambda lm: lm.replace(" GMT", " EST"),
    lambda lm: lm[5:],                            # no day name
    lambda lm: lm + " extra",
    lambda lm: lm + ", " + lm,                    # a list: no date either
    lambda lm: lm.lower(),                        # names are case-sensitive
])
def test_a_date_in_no_http_date_form_is_ignored(api, spell):
    """RFC 9110 13.1.3 and 13.1.4: If-Modified-Since and If-Unmodified-Since
    that are no HTTP-date are ignored (they were parsed leniently: 304, or
    412 for a plain GET)."""
    data = static(api, "digits.txt")
    with Conn(api.port) as c:
        lm = c.request("GET", "/static/digits.txt").header("Last-Modified")
        for name, value in (("If-Modified-Since", spell(lm)),
                            ("If-Unmodified-Since", spell("Thu, 01 Jan 1970 00:00:01 GMT"))):
            r = c.request("GET", "/static/digits.txt", headers={name: value})
            assert (r.status, r.body) == (200, data), (name, value, r)


def test_obsolete_http_date_forms_are_understood(api):
    # rfc850-date and asctime-date, which a recipient must take (5.6.7)
    with Conn(api.port) as c:
        lm = c.request("GET", "/static/digits.txt").header("Last-Modified")
        t = email.utils.parsedate_to_datetime(lm)
        for value in (t.strftime("%A, %d-%b-%y %H:%M:%S GMT"),
                      t.strftime("%a %b ") + "%2d" % t.day + t.strftime(" %H:%M:%S %Y")):
            r = c.request("GET", "/static/digits.txt", headers={"If-Modified-Since": value})
            assert r.status == 304, (value, r)


def test_if_match_and_if_unmodified_since(api):
    """RFC 9110 13.1.1 and 13.1.4: an origin server must evaluate If-Match
    and If-Unmodified-Since; a false condition is 412 (13.2.2 steps 1-2),
    evaluated before If-None-Match, If-Modified-Since and Range."""
    data = static(api, "digits.txt")
    with Conn(api.port) as c:
        r = c.request("GET", "/static/digits.txt")
        etag, lm = r.header("ETag"), r.header("Last-Modified")
        earlier = "Thu, 01 Jan 1970 00:00:01 GMT"
        for headers in ({"If-Match": '"other"'},
                        {"If-Match": "W/" + etag},           # strong comparison
                        {"If-Match": '"a", "b"'},
                        {"If-Unmodified-Since": earlier},
                        {"If-Match": '"other"', "If-None-Match": '"x"'},
                        {"If-Match": '"other"', "Range": "bytes=0-1"}):
            r = c.request("GET", "/static/digits.txt", headers=headers)
            assert r.status == 412, (headers, r)
            assert r.body != data, headers
            r = c.request("HEAD", "/static/digits.txt", headers=headers)
            assert r.status == 412, (headers, r)
        for headers in ({"If-Match": etag}, {"If-Match": '"a", ' + etag}, {"If-Match": "*"},
                        {"If-Unmodified-Since": lm},
                        {"If-Unmodified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"},
                        {"If-Unmodified-Since": "garbage"},     # not a date: ignored
                        # If-Match present: If-Unmodified-Since is not looked at
                        {"If-Match": etag, "If-Unmodified-Since": earlier}):
            r = c.request("GET", "/static/digits.txt", headers=headers)
            assert (r.status, r.body) == (200, data), (headers, r)
        r = c.request("GET", "/static/digits.txt",
                      headers={"If-Match": etag, "Range": "bytes=0-1"})
        assert (r.status, r.body) == (206, data[:2])
        r = c.request("GET", "/static/digits.txt",
                      headers={"If-Match": etag, "If-None-Match": etag})
        assert r.status == 304
        assert c.request("GET", "/plain").body == b"plain"


def test_conditional_on_response_file(api):
    etag = get(api, "/f/file").header("ETag")
    assert get(api, "/f/file", headers={"If-None-Match": etag}).status == 304


# ---- ranges ------------------------------------------------------------------------------

@pytest.mark.parametrize("rng,start,end", [
    ("bytes=0-9", 0, 9),
    ("bytes=-5", 31, 35),
    ("bytes=10-", 10, 35),
    ("bytes=5-5", 5, 5),
    ("bytes=30-1000", 30, 35),          # end clamped to the size
    ("bytes=-1000", 0, 35),             # suffix longer than the file
    ("bytes=0-" + "9" * 5000, 0, 35),   # past int()'s digit limit: clamped too
    ("bytes=-" + "9" * 5000, 0, 35),
    ("bytes=" + "0" * 5000 + "2-3", 2, 3),
])
def test_range(api, rng, start, end):
    data = static(api, "digits.txt")
    assert len(data) == 36
    with Conn(api.port) as c:
        r = c.request("GET", "/static/digits.txt", headers={"Range": rng})
        assert r.status == 206
        assert r.header("Content-Range") == "bytes %d-%d/%d" % (start, end, len(data))
        assert r.header("Content-Length") == str(end - start + 1)
        assert r.body == data[start:end + 1]
        assert c.request("GET", "/plain").body == b"plain"


@pytest.mark.parametrize("rng", ["bytes=36-", "bytes=100-", "bytes=100-200", "bytes=36-40", "bytes=-0",
                                 "bytes=" + "9" * 5000 + "-"])
def test_unsatisfiable_range_is_416(api, rng):
    with Conn(api.port) as c:
        r = c.request("GET", "/static/digits.txt", headers={"Range": rng})
        assert r.status == 416
        assert r.header("Content-Range") == "bytes */36"
        assert c.request("GET", "/plain").body == b"plain"


@pytest.mark.parametrize("rng", ["bytes=5-2", "items=0-1", "bytes=0-1,3-4", "bytes=a-b",
                                 "bytes=-",
                                 # digits for str.isdigit() but not DIGIT (RFC 5234)
                                 "bytes=\u00b2-3", "bytes=0-\u00b9", "bytes=-\u00b3",
                                 "bytes=+1-2", "bytes=1_0-20"])
def test_ignored_range_serves_whole_file(api, rng):
    r = get(api, "/static/digits.txt", headers={"Range": rng})
    assert r.status == 200
    assert r.body == static(api, "digits.txt")


@pytest.mark.parametrize("rng", ["Bytes=3-9", "BYTES=3-9"])
def test_range_unit_is_case_insensitive(api, rng):
    r = get(api, "/static/digits.txt", headers={"Range": rng})
    assert (r.status, r.body) == (206, static(api, "digits.txt")[3:10])


@pytest.mark.parametrize("rng,status", [("bytes=-5", 200), ("bytes=-1", 200), ("bytes=-0", 416),
                                        ("bytes=0-", 416), ("bytes=0-0", 416)])
def test_range_of_an_empty_file(api, rng, status):
    """RFC 9110 14.1.1: of a file of no bytes, only a suffix of non-zero
    length is satisfiable; no range can say it, so the answer is the whole
    (empty) file."""
    r = get(api, "/static/sub/empty.txt", headers={"Range": rng})
    assert r.status == status
    assert r.body == b"" if status == 200 else r.header("Content-Range") == "bytes */0"


@pytest.mark.parametrize("path", ["/static/digits.txt", "/fv/plain/hello.txt"])
@pytest.mark.parametrize("field", ["If-Modified-Since", "If-Unmodified-Since"])
@pytest.mark.parametrize("date", ["Mon, 01 Jan 0000 00:00:00 GMT", "Mon Jan  1 00:00:00 0000"])
def test_a_date_of_year_0_is_no_date(api, path, field, date):
    """No such date (RFC 9110 13.1.3, 13.1.4): the condition is ignored,
    and the file served (it was a 500 and a traceback)."""
    r = get(api, path, headers={field: date})
    assert r.status == 200
    assert r.body


def test_a_fifo_where_the_file_was_is_a_404_not_a_hang(api):
    """The name is a FIFO by the time it is opened (a rename after the
    stat): opening it must not wait for a writer, which would hang the
    worker."""
    with Conn(api.port) as c:
        assert c.request("GET", "/file-fifo").status == 404
        assert c.request("GET", "/plain").body == b"plain"


def test_if_range(api):
    data = static(api, "digits.txt")
    etag = get(api, "/static/digits.txt").header("ETag")
    r = get(api, "/static/digits.txt", headers={"Range": "bytes=0-1", "If-Range": etag})
    assert (r.status, r.body) == (206, data[:2])
    r = get(api, "/static/digits.txt", headers={"Range": "bytes=0-1", "If-Range": '"stale"'})
    assert (r.status, r.body) == (200, data)


def test_big_file_whole_and_ranges(api):
    data = static(api, "big.bin")
    size = len(data)
    with Conn(api.port, timeout=10) as c:
        r = c.request("GET", "/static/big.bin")
        assert r.status == 200
        assert r.body == data
        for rng, (a, b) in [("bytes=1000000-2999999", (1000000, 2999999)),
                            ("bytes=%d-" % (size - 300000), (size - 300000, size - 1)),
                            ("bytes=-70000", (size - 70000, size - 1)),
                            ("bytes=262140-262150", (262140, 262150))]:
            r = c.request("GET", "/static/big.bin", headers={"Range": rng})
            assert r.status == 206
            assert r.header("Content-Range") == "bytes %d-%d/%d" % (a, b, size)
            assert r.body == data[a:b + 1], rng
        assert c.request("GET", "/plain").body == b"plain"


@pytest.mark.parametrize("close", [{}, {"Connection": "close"}])
def test_big_file_to_a_client_that_half_closed(api, close):
    """A client may shut its sending side once its request is out (RFC 9112
    9.6): a file, whose length the answer promised, is still sent whole.
    It was cut off mid-body at the client's FIN, as an endless stream is."""
    data = static(api, "huge.bin")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)   # a slow client
    s.settimeout(10)
    s.connect(("127.0.0.1", api.port))
    with conn_over(s) as c:
        c.send(build_request("GET", "/static/huge.bin", headers=close))
        s.shutdown(socket.SHUT_WR)
        r = c.read_response()
        assert r.status == 200
        assert len(r.body) == len(data) and r.body == data
        assert c.at_eof()


def test_range_on_response_file(api):
    page = api.tree["page_body"]
    r = get(api, "/f/file", headers={"Range": "bytes=1-4"})
    assert (r.status, r.body) == (206, page[1:5])


# ---- no escaping the directory, no listing -----------------------------------------------------

@pytest.mark.parametrize("target", [
    "/static/../secret.txt",
    "/static/sub/../../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/%2e%2e/secret.txt",
    "/static/..%2Fsecret.txt",
    "/static/sub%2F..%2F..%2Fsecret.txt",
    "/static/..%2fsecret.txt",
    "/static/..%5Csecret.txt",
    "/static/sub%5C..%5C..%5Csecret.txt",
    "/static/%2Fetc%2Fpasswd",
    "/static//etc/passwd",
    "/static/%00",
    "/static/hello.txt%00",
    "/static/hello.txt%00.png",
    "/static/link.txt",                  # a symlink to a file outside
    "/static/linkdir/outside.txt",       # through a symlinked directory
    "/static/./hello.txt",
    "/static/sub/./nested.txt",
    "/static/sub//nested.txt",           # an empty segment names no file (as /static//x)
])
def test_traversal_refused(api, target):
    with Conn(api.port) as c:
        r = c.request("GET", target)
        assert r.status == 404, r
        assert SECRET not in r.body
        assert c.request("GET", "/plain").body == b"plain"


def test_raw_backslash_traversal_refused(api):
    with Conn(api.port) as c:
        c.send(b"GET /static/..\\secret.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_final()
        assert r.status in (400, 404), r            # refused by the parser or the view
        assert SECRET not in r.body


@pytest.mark.parametrize("target", ["/static/sub", "/static/sub/", "/static/",
                                    "/static", "/static/linkdir", "/static/linkdir/"])
def test_directories_not_listed(api, target):
    r = get(api, target)
    assert r.status == 404, r
    assert b"nested" not in r.body and b"hello" not in r.body


@pytest.mark.parametrize("target", ["/static/hello.txt/", "/static/sub/nested.txt/",
                                    "/static/hello.txt//", "/static/hello.txt%2F"])
def test_file_with_a_trailing_slash_is_404(api, target):
    """A path ending in '/' names a directory (RFC 3986 3.3); the file
    answered there was another URL for it, where a page's relative links
    resolve below the file.  nginx and Apache answer 404 (ENOTDIR)."""
    with Conn(api.port) as c:
        r = c.request("GET", target)
        assert r.status == 404, r
        assert c.request("GET", "/plain").body == b"plain"


def _static_app(tmp_path, prefix, www):
    """A server of its own for add_static(prefix, www), plus a route /api."""
    import sys

    from .server import Server
    app = tmp_path / "staticapp.py"
    app.write_text(
        "from fulmen import Application\n"
        "app = Application()\n"
        "app.router.add_static(%r, %r)\n"
        "app.router.add_route('/api', lambda r: r.Response(text='api'))\n"
        "app.run(host='127.0.0.1', port=0)\n" % (prefix, str(www)))
    return Server([sys.executable, str(app)]).start()


def test_add_static_at_the_root(tmp_path):
    """add_static("/", directory) serves the directory at the root; the
    app's other routes still win (a literal segment before {path:path})."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("<p>root</p>")
    srv = _static_app(tmp_path, "/", tmp_path / "www")
    try:
        with Conn(srv.port) as c:
            r = c.request("GET", "/index.html")
            assert r.status == 200 and r.body == b"<p>root</p>"
            assert c.request("GET", "/api").body == b"api"
            assert c.request("GET", "/missing.html").status == 404
    finally:
        srv.stop()


@pytest.mark.parametrize("name", ["race.txt", "racedir/inner.txt"])
def test_a_link_swapped_in_after_the_check_is_not_followed_out(tmp_path, name):
    """A symbolic link swapped in between add_static's check and its open
    led out of the directory (the check saw a file or a link inside; the
    open followed the link it found then).  Here the check is made to see
    an inside target (realpath is rigged in the server) while the link
    leads out: the open follows no link, so the answer is a 404."""
    import sys

    from .server import Server
    www, out = tmp_path / "www", tmp_path / "out"
    www.mkdir()
    out.mkdir()
    (out / "secret.txt").write_text("SECRET")
    (out / "inner.txt").write_text("SECRET")
    (www / "race.txt").symlink_to(out / "secret.txt")
    (www / "racedir").symlink_to(out)
    app = tmp_path / "raceapp.py"
    app.write_text(
        "import os.path\n"
        "from fulmen import Application\n"
        "real = os.path.realpath\n"
        "def rigged(p, **kw):  # where the link pointed when it was checked\n"
        "    return p if 'race' in p else real(p, **kw)\n"
        "os.path.realpath = rigged\n"
        "app = Application()\n"
        "app.router.add_static('/static', %r)\n"
        "app.run(host='127.0.0.1', port=0)\n" % str(www))
    srv = Server([sys.executable, str(app)]).start()
    try:
        for headers in ({}, {"Range": "bytes=0-2"}):
            r = get(srv, "/static/" + name, headers=headers)
            assert (r.status, r.body) == (404, b"Not Found"), r
    finally:
        srv.stop()


def test_add_static_needs_a_directory(tmp_path):
    from fulmen import Application
    app = Application()
    with pytest.raises(ValueError):
        app.router.add_static("/s", str(tmp_path / "missing"))
    with pytest.raises(ValueError):
        app.router.add_static("no-slash", str(tmp_path))


# ---- add_static's C view and its Python fallback ----------------------------------------

def _hits(api):
    return int(get(api, "/static-hits").body)


def _file_hits(api):
    return int(get(api, "/file-hits").body)


# (request path below the prefix, extra headers, method, answered in C)
_C_OR_PYTHON = [
    ("hello.txt", {}, "GET", True),
    ("style.css", {}, "GET", True),
    ("data.json", {}, "GET", True),
    ("image.png", {}, "GET", True),
    ("noext", {}, "GET", True),
    ("sub/nested.txt", {}, "GET", True),
    ("sub/empty.txt", {}, "GET", True),
    (".hidden", {}, "GET", True),           # a leading dot starts no extension
    ("UPPER.TXT", {}, "GET", True),
    ("trail.", {}, "GET", True),
    ("edge.bin", {}, "GET", True),          # 64 KiB, the most read whole
    ("archive.tar.gz", {}, "GET", False),   # the type depends on ".tar" too
    ("x.tgz", {}, "GET", False),
    ("over.bin", {}, "GET", False),         # streamed from the file
    ("inner-link.txt", {}, "GET", False),   # a symbolic link, checked in Python
    ("inner-dir/nested.txt", {}, "GET", False),
    ("link.txt", {}, "GET", False),         # a link out of the directory: 404
    ("linkdir/outside.txt", {}, "GET", False),
    ("loop-a", {}, "GET", False),
    ("missing.txt", {}, "GET", False),
    ("sub", {}, "GET", False),
    ("fifo", {}, "GET", False),
    ("sub//nested.txt", {}, "GET", False),
    ("sub/./nested.txt", {}, "GET", False),
    ("%68ello.txt", {}, "GET", False),
    ("hello.txt", {}, "HEAD", True),     # its head, with the length
    ("hello.txt", {"Range": "bytes=0-3"}, "GET", False),
    ("hello.txt", {"if-none-match": "*"}, "GET", True),    # 304 in C
    ("hello.txt", {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, "GET", False),
    ("hello.txt", {"IF-MATCH": '"nope"'}, "GET", False),
    ("hello.txt", {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}, "GET", False),
]


@pytest.mark.parametrize("rel,headers,method,in_c", _C_OR_PYTHON)
def test_static_c_view_answers_as_the_python_view(api, rel, headers, method, in_c):
    """The C view answers the usual request exactly as serve_static does
    (same status, header fields and bytes) and gives it every other one."""
    before = _hits(api)
    with Conn(api.port) as c:
        fast = c.request(method, "/static/" + rel, headers=headers)
        slow = c.request(method, "/pystatic/" + rel, headers=headers)
    assert _hits(api) - before == (1 if in_c else 0)
    assert (fast.status, fields_but_date(fast), fast.body) == \
        (slow.status, fields_but_date(slow), slow.body)
    if in_c and not headers:
        assert fast.status == 200 and fast.body == (b"" if method == "HEAD" else static(api, rel))
        assert int(fast.header("Content-Length")) == len(static(api, rel))


@pytest.mark.parametrize("code", [204, 304])
def test_a_file_answer_with_no_content_has_no_type(api, code):
    """FileResponse(code=204 or 304): no body, and no guessed Content-Type
    (RFC 9110 8.3: a 304's would replace the type a cache stored)."""
    with Conn(api.port) as c:
        r = c.request("GET", "/fv/%d/hello.txt" % code)
        assert (r.status, r.body, r.header("Content-Type")) == (code, b"", None)
        assert r.header("ETag") is not None
        assert c.request("GET", "/plain").body == b"plain"


@skip_if_sanitized
def test_static_c_view_keeps_no_memory(api):
    """100k files answered in C (add_static, and FileResponse with headers
    and a cookie) leave the worker's RSS where a 20k warm-up left it:
    nothing of a request (body, header values) stays behind."""
    batch = (build_request("GET", "/static/hello.txt") * 25
             + build_request("GET", "/fv/headers-dict/hello.txt") * 15
             + build_request("GET", "/fv/cookie/hello.txt") * 10)
    body = static(api, "hello.txt")

    def drive(n):
        with Conn(api.port, timeout=10) as c:
            for _ in range(n // 50):
                c.send(batch)
                for _ in range(50):
                    r = c.read_final()
                    assert r.status == 200 and r.body == body

    before = _hits(api), _file_hits(api)
    drive(20_000)
    rss_warm = rss_kb(api.pid)
    drive(100_000)
    rss_end = rss_kb(api.pid)
    assert (_hits(api) - before[0], _file_hits(api) - before[1]) == (60_000, 60_000)
    assert rss_end - rss_warm < 2048, "RSS grew from %d kB to %d kB" % (rss_warm, rss_end)


def test_static_c_view_sees_a_file_change(api):
    """No cache of content nor metadata: a rewritten file is served new,
    with a new ETag."""
    path = os.path.join(api.tree["static"], "changing.txt")
    with open(path, "wb") as f:
        f.write(b"first")
    first = get(api, "/static/changing.txt")
    with open(path, "wb") as f:
        f.write(b"second, longer")
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = get(api, "/static/changing.txt")
    os.unlink(path)
    assert (first.body, second.body) == (b"first", b"second, longer")
    assert first.header("ETag") != second.header("ETag")
    assert get(api, "/static/changing.txt").status == 404


def test_static_directory_swapped_in_is_served_at_once(tmp_path):
    """A release swapped in by renaming directories is served from the next
    request: the view resolves the path every time, holding no handle on
    the old directory."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "app.js").write_text("old")
    srv = _static_app(tmp_path, "/s", www)
    try:
        with Conn(srv.port) as c:
            assert c.request("GET", "/s/app.js").body == b"old"
            (tmp_path / "new").mkdir()
            (tmp_path / "new" / "app.js").write_text("new!")
            www.rename(tmp_path / "old")
            (tmp_path / "new").rename(www)
            assert c.request("GET", "/s/app.js").body == b"new!"
    finally:
        srv.stop()


_SEGMENTS = ["hello.txt", "sub", "nested.txt", "empty.txt", "inner-dir", "inner-link.txt",
             "link.txt", "linkdir", "outside.txt", "fifo", "UPPER.TXT", ".hidden", "trail.",
             "archive.tar.gz", "edge.bin", "missing", ".", "..", "", "%2e%2e", "%2F",
             "hello.txt%00", "a\\b", "loop-a"]


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(_SEGMENTS), min_size=1, max_size=4))
@example([".", "hello.txt"])
@example(["sub", "..", "hello.txt"])
@example(["..", "secret.txt"])
@example(["inner-dir", "..", "hello.txt"])
@example(["sub", "", "nested.txt"])
def test_static_c_view_matches_the_python_view_on_any_path(api, segments):
    """Whatever the path below the prefix, the C view and serve_static
    give the same answer (the C one answers or hands the request over)."""
    rel = "/".join(segments)
    with Conn(api.port) as c:
        fast = c.request("GET", "/static/" + rel)
        slow = c.request("GET", "/pystatic/" + rel)
    assert (fast.status, fields_but_date(fast), fast.body) == \
        (slow.status, fields_but_date(slow), slow.body)


# ---- Response(file=...) answered in C, or by streams._file_response ---------------------

@pytest.mark.parametrize("how,name,headers,method,in_c", [
    ("plain", "hello.txt", {}, "GET", True),
    ("plain", "sub/nested.txt", {}, "GET", True),
    ("plain", "inner-link.txt", {}, "GET", True),   # a path of the app's: links followed
    ("plain", "archive.tar.gz", {}, "GET", False),  # the type needs the whole name
    ("plain", "edge.bin", {}, "GET", True),
    ("plain", "over.bin", {}, "GET", False),        # streamed
    ("plain", "missing.txt", {}, "GET", False),     # 404
    ("plain", "sub", {}, "GET", False),             # a directory: 404
    ("plain", "fifo", {}, "GET", False),            # not a regular file: 404, no hang
    ("headers-dict", "hello.txt", {}, "GET", True),
    ("headers-list", "hello.txt", {}, "GET", True),
    ("mime", "hello.txt", {}, "GET", True),
    ("cookie", "hello.txt", {}, "GET", True),
    ("simplecookie", "hello.txt", {}, "GET", True),
    ("cookie", "missing.txt", {}, "GET", False),
    ("plain", "hello.txt", {}, "HEAD", True),
    ("plain", "hello.txt", {"Range": "bytes=1-2"}, "GET", False),
    ("cookie", "hello.txt", {"If-None-Match": "*"}, "GET", True),
])
def test_file_response_in_c_answers_as_python(api, how, name, headers, method, in_c):
    """A Response(file=...) for the usual request is answered in C exactly
    as streams._file_response answers it (app headers first, the file's
    after, the view's cookies kept), and every other one by Python."""
    before = _file_hits(api)
    with Conn(api.port) as c:
        fast = c.request(method, "/fv/%s/%s" % (how, name), headers=headers)
        slow = c.request(method, "/pyfv/%s/%s" % (how, name), headers=headers)
    assert _file_hits(api) - before == (1 if in_c else 0)
    assert (fast.status, fields_but_date(fast), fast.body) == \
        (slow.status, fields_but_date(slow), slow.body)
    if how in ("cookie", "simplecookie"):
        assert fast.header("Set-Cookie")


def _validator_cases(etag, lm):
    """(extra header pairs, answered in C) for a file whose validators
    are etag and lm."""
    return [
        ([("If-None-Match", etag)], True),                        # 304
        ([("If-None-Match", "W/" + etag)], True),                 # 304: weak comparison
        ([("If-None-Match", '"a", \t%s ,"b"' % etag)], True),     # 304: a member
        ([("If-None-Match", '"nope"')], True),                    # 200
        ([("If-None-Match", "")], True),                          # 200
        ([("If-Modified-Since", lm)], True),                      # 304: the same date
        ([("If-None-Match", '"nope"'), ("If-Modified-Since", lm)], True),  # 200: INM decides
        ([("If-None-Match", etag), ("If-None-Match", etag)], False),       # repeated: Python
        ([("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")], False),  # older: Python
        ([("If-Modified-Since", "Friday, 01-Jan-2100 00:00:00 GMT")], False),  # RFC 850
        ([("If-None-Match", etag), ("Range", "bytes=0-1")], False),
        ([("If-None-Match", etag), ("If-Match", etag)], False),
    ]


@pytest.mark.parametrize("kind", ["static", "file"])
@pytest.mark.parametrize("name", ["hello.txt", "over.bin"])
def test_validators_answered_in_c_as_python(api, kind, name):
    """If-None-Match, and an If-Modified-Since equal to Last-Modified, are
    weighed in C (304 for any size, 200 up to 64 KiB), as
    streams._not_modified weighs them; other conditions go to Python."""
    fast_path, slow_path = (("/static/" + name, "/pystatic/" + name) if kind == "static"
                            else ("/fv/plain/" + name, "/pyfv/plain/" + name))
    hits = _hits if kind == "static" else _file_hits
    first = get(api, fast_path)
    etag, lm = first.header("ETag"), first.header("Last-Modified")
    for headers, in_c in _validator_cases(etag, lm):
        before = hits(api)
        with Conn(api.port) as c:
            fast = c.request("GET", fast_path, headers=headers)
            slow = c.request("GET", slow_path, headers=headers)
        # a big file's 200 is streamed by Python
        expect = in_c and (fast.status == 304 or name != "over.bin")
        assert hits(api) - before == (1 if expect else 0), headers
        assert (fast.status, fields_but_date(fast), fast.body) == \
            (slow.status, fields_but_date(slow), slow.body), headers


@pytest.mark.parametrize("err, code", [(errno.EMFILE, 503), (errno.ENFILE, 503),
                                       (errno.EACCES, 403), (errno.ENOENT, 404)])
def test_big_file_is_opened_before_its_head(tmp_path, monkeypatch, err, code):
    """A file streamed after its head (over 64 KiB) is opened first: a
    worker out of file descriptors answers 503, not a 200 whose body is
    then cut with a traceback in the log."""
    from fulmen import Response, streams
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * (200 * 1024))
    real_open = os.open

    def failing_open(p, *args, **kw):
        if os.fspath(p) == str(path):
            raise OSError(err, os.strerror(err))
        return real_open(p, *args, **kw)
    monkeypatch.setattr(os, "open", failing_open)
    r = streams._file_answer(None, Response(file=str(path)))
    assert r.code == code


def test_requests_for_missing_files_take_no_slot_of_the_type_cache(api):
    """The C view caches the Content-Type of 32 extensions; 40 requests for
    files that do not exist, each with an extension of its own, used to
    fill it for good, and every new extension then went through Python."""
    with Conn(api.port) as c:
        for i in range(40):
            assert c.request("GET", "/static/missing.q%d" % i).status == 404
    path = os.path.join(api.tree["static"], "fresh.zq9")
    with open(path, "wb") as f:
        f.write(b"fresh")
    try:
        before = _hits(api)
        r = get(api, "/static/fresh.zq9")
        assert (r.status, r.body) == (200, b"fresh")
        assert _hits(api) == before + 1         # answered in C
    finally:
        os.unlink(path)
