"""Streamed response bodies and file responses.

The connection (C) frames and writes every item and tells this coroutine
when to wait: _stream_body only pulls items from the app's iterator.  File
responses are resolved here once per request (stat, conditional and range
headers); their bodies then go out through the same streaming path.
"""
import asyncio
import calendar
import email.utils
import errno
import functools
import mimetypes
import os
import re
import sys
import time
import traceback
from stat import S_ISREG

from . import _core
from .router import RouteNotFoundException

Response = _core.Response

CHUNK = 256 * 1024
YIELD_EVERY = 4  # items written between two turns of the event loop
SMALL_FILE = 64 * 1024


async def _stream_body(conn, source, request=None):
    """Pull items from source (iterable or async iterable) into conn, the
    answer to request (None for an answer to no request)."""
    ok = False
    n = 0
    try:
        if _core._in_create_task():
            await asyncio.sleep(0)      # stepped by an eager task factory
        if not conn._stream_begin():
            # the client left before this first step: nothing to produce,
            # and the answer is cut (not ok), never ended as if complete
            return
        if isinstance(source, _FileBody):
            await _send_file(conn, source)
        elif hasattr(source, "__aiter__"):
            async for item in source:
                waiter = conn._stream_write(item)
                n += 1
                if waiter is not None:
                    await waiter
                elif n % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a producer that never waits must not starve the loop
        else:
            for item in source:
                waiter = conn._stream_write(item)
                n += 1
                if waiter is not None:
                    await waiter
                elif n % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        ok = not conn.closed
    except asyncio.CancelledError:
        pass  # the client left (or the server is stopping): stop producing
    except BaseException as e:      # (GeneratorExit, the app's own BaseException)
        if not _client_left(conn, source, e):
            # the app's error, whatever its class (a view's SystemExit is
            # a 500; a ConnectionError of its own, its database's say, is
            # not the client leaving): out of this Task, asyncio would
            # re-raise the last two from the loop and end the worker
            sys.stderr.write("fulmen: error while streaming the response to %r:\n%s"
                             % (request, traceback.format_exc()))
            conn._stream_failed()
    finally:
        try:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()
            else:
                close = getattr(source, "close", None)
                if close is not None:
                    close()
        except (Exception, KeyboardInterrupt, SystemExit):
            sys.stderr.write("fulmen: error while closing a stream:\n%s"
                             % traceback.format_exc())
        finally:
            # always, even when the clean-up is cancelled (the client's FIN
            # cancels this Task): else the connection waits for it for good
            conn._stream_end(ok)


def _client_left(conn, source, exc):
    """Whether exc, out of a stream, says the client has gone: a write to it
    failed (ours: _stream_write's ClientDisconnected, sendfile's errors)."""
    return isinstance(exc, ConnectionError) and (
        isinstance(exc, _core.ClientDisconnected) or conn.closed
        or isinstance(source, _FileBody))


class _FileBody:
    """A byte range of a file, sent with sendfile(2) over plain TCP and
    read block by block under TLS (or wherever sendfile cannot go).

    The file was opened when the answer was made (_file_body): that it can
    be read, and its size and ETag, are known before the head says 200.
    It is opened again when the answer's turn comes (open()), so that an
    answer waiting behind others holds no file descriptor: a client that
    pipelines many requests for big files must not hold one per request.
    A file replaced, removed or made unreadable meanwhile then fails the
    answer before its head went (a 500)."""

    __slots__ = ("file", "start", "length", "_reopen", "_id")

    def __init__(self, reopen, st, start, length):
        self.file = None
        self._reopen, self._id = reopen, (st.st_dev, st.st_ino)
        self.start, self.length = start, length

    def open(self):
        if self.file is not None:
            return
        fd = self._reopen()
        try:
            st = os.fstat(fd)
            if not S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != self._id:
                raise FileNotFoundError("the file changed since its answer was made")
        except BaseException:
            os.close(fd)
            raise
        self.file = open(fd, "rb", buffering=0)     # closes with this object at worst

    def __iter__(self):
        self.open()
        return _read_file(self.file, self.start, self.length)


async def _send_file(conn, body):
    transport = conn.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if (sock is None or conn._tls or transport.get_extra_info("sslcontext") is not None
            or not hasattr(os, "sendfile")):
        for i, block in enumerate(body):
            waiter = conn._stream_write(block)
            if waiter is not None:
                await waiter
            elif i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
        return
    fd = sock.fileno()
    # With a high-water mark of 0 the transport pauses us whenever it holds
    # bytes and resumes us when it has written them all: the only way to
    # learn that the socket took everything without watching the fd.
    transport.set_write_buffer_limits(high=0)
    body.open()
    try:
        with body.file as f:
            offset, left, rounds = body.start, body.length, 0
            # the head goes with the first block, read here (the branch for a
            # full socket): a file that got shorter since it was opened then
            # ends the stream before anything went, and the answer is a
            # whole 500 (_stream_end), not a 200 cut at once
            sent = -1
            while left > 0:
                if rounds:
                    waiter = conn._stream_write(b"")   # raises once the client left
                    if waiter is not None:
                        await waiter
                        continue
                    try:
                        sent = os.sendfile(fd, f.fileno(), offset, min(left, 1 << 20))
                    except (BlockingIOError, InterruptedError):
                        sent = -1
                    if sent == 0:
                        break  # the file got shorter: the response is cut (it was promised whole)
                    if sent > 0:
                        conn._stream_sent(sent)
                if sent < 0:
                    # the socket is full: hand one block to the transport; it
                    # writes it when the socket drains and then resumes us
                    want = min(left, 65536)
                    block = os.pread(f.fileno(), want, offset)
                    if not block or (not rounds and len(block) < want):
                        break
                    waiter = conn._stream_write(block)
                    sent = len(block)
                    if waiter is not None:
                        offset, left, rounds = offset + sent, left - sent, rounds + 1
                        await waiter
                        continue
                offset, left = offset + sent, left - sent
                rounds += 1
                if rounds % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            # short of its Content-Length (the file shrank): _stream_end says
            # so on stderr and aborts the connection, as for any stream
    finally:
        if not conn.closed:
            transport.set_write_buffer_limits()


def _read_file(f, start, length):
    with f:
        f.seek(start)
        first = True
        while length > 0:
            want = min(CHUNK, length)
            data = f.read(want)
            if not data or (first and len(data) < want):
                break  # shorter than when opened: before a first item, a whole 500
            first = False
            length -= len(data)
            yield data


def _etag(st):
    return '"%x-%x"' % (st.st_mtime_ns, st.st_size)


def _headers_of(resp):
    """A copy of the app's headers, a dict as it gave one (so that an
    on_response hook can set one as in any other answer) or a list."""
    h = resp.headers
    if isinstance(h, dict):
        return dict(h)
    return [tuple(p) for p in h]


def _put(headers, name, value):
    """headers[name] = value, in place of the app's own of that name."""
    low = name.lower()
    if isinstance(headers, dict):
        for k in [k for k in headers if k.lower() == low]:
            del headers[k]
        headers[name] = value
    else:
        headers[:] = [p for p in headers if p[0].lower() != low]
        headers.append((name, value))


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MON = "|".join(_MONTHS)
# RFC 9110 5.6.7, names case-sensitive: IMF-fixdate, then the obsolete
# rfc850-date and asctime-date forms, which a recipient must also take
_IMF_DATE = re.compile(r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) (%s) (\d{4}) "
                       r"(\d\d):(\d\d):(\d\d) GMT\Z" % _MON)
_RFC850_DATE = re.compile(r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
                          r"(\d\d)-(%s)-(\d\d) (\d\d):(\d\d):(\d\d) GMT\Z" % _MON)
_ASCTIME_DATE = re.compile(r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (%s) ([ \d]\d) "
                           r"(\d\d):(\d\d):(\d\d) (\d{4})\Z" % _MON)


def _http_date(value):
    """An HTTP-date as a timestamp, or None when it is not one (RFC 9110
    5.6.7): any other form, a list or trailing text, is no date, and the
    condition that names it is ignored (13.1.3, 13.1.4)."""
    m = _IMF_DATE.match(value)
    if m:
        day, mon, year, hh, mm, ss = m.groups()
    elif (m := _RFC850_DATE.match(value)):
        day, mon, year, hh, mm, ss = m.groups()
        # a two-digit year more than 50 years ahead is the last one past
        # with those digits
        now = time.gmtime().tm_year
        year = now - now % 100 + int(year)
        if year > now + 50:
            year -= 100
    elif (m := _ASCTIME_DATE.match(value)):
        mon, day, hh, mm, ss, year = m.groups()
    else:
        return None
    t = (int(year), _MONTHS.index(mon) + 1, int(day), int(hh), int(mm), int(ss))
    if not (1 <= t[0] and 1 <= t[2] <= 31 and t[3] <= 23 and t[4] <= 59 and t[5] <= 60):
        return None     # (year 0: no date calendar.timegm takes)
    return float(calendar.timegm(t))


def _precondition_failed(request, mtime, etag):
    """If-Match (strong comparison), else If-Unmodified-Since, is false:
    RFC 9110 13.2.2 steps 1 and 2, answered 412."""
    h = request.headers
    im = h.get("If-Match")
    if im is not None:
        tags = [t.strip() for t in im.split(",")]
        return "*" not in tags and etag not in tags
    ius = h.get("If-Unmodified-Since")
    if ius is not None:
        t = _http_date(ius)
        return t is not None and mtime > t
    return False


def _not_modified(request, mtime, etag):
    h = request.headers
    inm = h.get("If-None-Match")
    if inm is not None:
        tags = [t.strip() for t in inm.split(",")]
        return "*" in tags or etag in tags or ("W/" + etag) in tags
    ims = h.get("If-Modified-Since")
    if ims is not None:
        t = _http_date(ims)
        return t is not None and mtime <= t
    return False


def _range_pos(digits):
    """The value of 1*DIGIT (RFC 9110 14.1.1), capped past any file size:
    int() refuses strings over its digit limit (4300 by default)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 19 else 1 << 64


def _is_digits(s):
    # str.isdigit() also takes other scripts' digits and superscripts
    return s.isascii() and s.isdigit()


def _parse_range(value, size):
    """A single 'bytes=a-b' range -> (start, end) inclusive; None to serve
    the whole file; 'bad' when unsatisfiable."""
    if value[:6].lower() != "bytes=" or "," in value:    # (units: any case, RFC 9110 14.1)
        return None
    spec = value[6:].strip()
    first, sep, last = spec.partition("-")
    if not sep:
        return None
    first, last = first.strip(), last.strip()
    if (first and not _is_digits(first)) or (last and not _is_digits(last)):
        return None
    if not first:
        if not last:
            return None
        n = _range_pos(last)
        if n == 0:
            return "bad"
        if size == 0:
            return None     # satisfiable (14.1.1), and no byte to say: the whole, empty
        return max(0, size - n), size - 1
    start = _range_pos(first)
    end = _range_pos(last) if last else size - 1
    if start >= size:
        return "bad"
    if start > end:
        return None
    return start, min(end, size - 1)


_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


def _open_error(e):
    """The answer to a file that cannot be opened: 403, 503 when the worker
    is out of file descriptors (it may not be later), else 404."""
    if isinstance(e, PermissionError):
        return Response(code=403, text="Forbidden")
    if e.errno in (errno.EMFILE, errno.ENFILE):
        return Response(code=503, text="Service Unavailable")
    return Response(code=404, text="Not Found")


def _open_file(path, opened=None):
    """path opened for reading (an fd), or the answer when it cannot be
    (_open_error; 404 too when no longer a regular file since the stat()).
    O_NONBLOCK: a FIFO swapped in under the name since the stat() would
    block the open, and the whole worker with it, until a writer came.
    opened: path's fd, opened already (add_static's): a copy of it."""
    try:
        fd = os.dup(opened) if opened is not None else os.open(path, _OPEN_FLAGS)
    except OSError as e:
        return _open_error(e)
    try:
        regular = S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        regular = False
    if not regular:
        os.close(fd)
        return Response(code=404, text="Not Found")
    return fd


def _file_body(path, st, start, length, opened=None, reopen=None):
    """A _FileBody of path (whose stat() is st), or the answer when it
    cannot be opened now (before the head goes: once that says 200 the
    answer can no longer be a 403 or a 503).  reopen() opens it again when
    the answer's turn comes (add_static's safe open), by default by name."""
    if opened is None:
        fd = _open_file(path)
        if isinstance(fd, Response):
            return fd
        os.close(fd)
    if reopen is None:
        def reopen():
            return os.open(path, _OPEN_FLAGS)
    return _FileBody(reopen, st, start, length)


def _small_file(path, size, code, headers, ctype, opened=None):
    """A small file read whole into the response (the first size bytes:
    its stat() gave the headers; fewer if it got shorter since)."""
    fd = _open_file(path, opened)
    if isinstance(fd, Response):
        return fd
    try:
        data = os.read(fd, size)
        while len(data) < size and (more := os.read(fd, size - len(data))):
            data += more
    finally:
        os.close(fd)
    r = Response(code=code, body=data, headers=headers)
    if ctype is not None:
        r.mime_type = ctype     # exactly this type (the constructor may label a text/ one)
    return r


# what a compressed file is labelled with: the type of its bytes as sent (no
# Content-Encoding is added, so the client gets the file as it is stored)
_ENCODING_TYPES = {"gzip": "application/gzip", "bzip2": "application/x-bzip2",
                   "xz": "application/x-xz", "compress": "application/x-compress"}


def _content_type(path):
    """The Content-Type a file is served with, from its name (a str)."""
    ctype, encoding = mimetypes.guess_type(path)
    if encoding is not None:
        ctype = _ENCODING_TYPES.get(encoding)
    ctype = ctype or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
        ctype += "; charset=utf-8"
    return ctype


def _ext_content_type(ext):
    """The Content-Type of any file name ending in extension ext (as
    posixpath.splitext gives it), or None when more of the name counts:
    a compression suffix such as ".gz" (for files.c's cache)."""
    if ext.lower() in mimetypes.suffix_map or ext in mimetypes.encodings_map:
        return None
    return _content_type("x" + ext)


def _conditional(request):
    """The request has a header that can change a file's answer."""
    if request is None:
        return False
    h = request.headers
    return ("Range" in h or "If-None-Match" in h or "If-Modified-Since" in h
            or "If-Match" in h or "If-Unmodified-Since" in h)


def _resolve_file(request, resp):
    """The answer Response(file=) gives request, made in C when it can be
    (conn.c does the same when it sends one): for the on_response hooks."""
    r = _core._file_response(request, resp)
    return r if r is not None else _file_response(request, resp)


def _file_response(request, resp, opened=None, reopen=None):
    """Resolve Response(file=path) for this request: 200, 206, 304, 403,
    404, 412 or 416, with the cookies the view set.  opened: path's fd,
    opened already (add_static's), which the answer reads instead, and
    reopen() opens it again (_FileBody)."""
    r = _file_answer(request, resp, opened, reopen)
    if resp.cookies:
        r.cookies = resp.cookies
    if r.code in (403, 404, 503) and resp.headers:
        r.headers = _headers_of(resp)  # the app's, on the file's failure too
    return r


def _file_answer(request, resp, opened=None, reopen=None):
    path = resp.file
    try:
        st = os.fstat(opened) if opened is not None else os.stat(path)
    except PermissionError:
        return Response(code=403, text="Forbidden")
    except (OSError, ValueError):  # ENOENT, ENOTDIR, ENAMETOOLONG, ELOOP, NUL: no file there
        return Response(code=404, text="Not Found")
    if not S_ISREG(st.st_mode):
        return Response(code=404, text="Not Found")
    etag = _etag(st)
    headers = _headers_of(resp)
    _put(headers, "ETag", etag)
    # a file dated in the future is said to be modified now (RFC 9110
    # 8.8.2.1), and compared as such
    mtime = min(int(st.st_mtime), _core._date_sec())
    _put(headers, "Last-Modified", email.utils.formatdate(mtime, usegmt=True))
    _put(headers, "Accept-Ranges", "bytes")
    ctype = resp.mime_type
    code = resp.code
    if ctype is None and code not in (204, 304):
        # (no content: no type, unless the app names one)
        ctype = _content_type(os.fsdecode(path))
    method = request.method if request is not None else "GET"
    if method == "GET" and code == 200 and st.st_size <= SMALL_FILE and not _conditional(request):
        # the usual case, a whole small file: no condition to weigh, and
        # its open() tells a file that can't be read (403)
        return _small_file(path, st.st_size, code, headers, ctype, opened)
    if opened is None and not os.access(path, os.R_OK):
        return Response(code=403, text="Forbidden")
    if request is not None and method in ("GET", "HEAD") and code == 200:
        if _precondition_failed(request, mtime, etag):
            return Response(code=412, text="Precondition Failed", headers=headers)
        if _not_modified(request, mtime, etag):
            return Response(code=304, headers=headers)
        rng = request.headers.get("Range")
        if rng is not None:
            if_range = request.headers.get("If-Range")
            if if_range is None or if_range.strip() == etag:
                r = _parse_range(rng.strip(), st.st_size)
                if r == "bad":
                    _put(headers, "Content-Range", "bytes */%d" % st.st_size)
                    return Response(code=416, text="Range Not Satisfiable", headers=headers)
                if r is not None:
                    start, end = r
                    n = end - start + 1
                    body = _file_body(path, st, start, n, opened, reopen)
                    if isinstance(body, Response):
                        return body
                    _put(headers, "Content-Range", "bytes %d-%d/%d" % (start, end, st.st_size))
                    _put(headers, "Content-Length", str(n))
                    return Response(code=206, stream=body, mime_type=ctype, headers=headers)
    if method == "HEAD":
        _put(headers, "Content-Length", str(st.st_size))
        return Response(code=code, stream=iter(()), mime_type=ctype, headers=headers)
    if st.st_size <= SMALL_FILE:
        return _small_file(path, st.st_size, code, headers, ctype, opened)
    body = _file_body(path, st, 0, st.st_size, opened, reopen)
    if isinstance(body, Response):
        return body
    _put(headers, "Content-Length", str(st.st_size))
    return Response(code=code, stream=body, mime_type=ctype, headers=headers)


def FileResponse(path, *, code=200, mime_type=None, headers=None):
    """Response(file=path): a file with ETag, Last-Modified, 304 and Range."""
    if path is None:
        # (Response(file=None) is a response without one)
        raise TypeError("FileResponse() needs a path (str, bytes or os.PathLike), not None")
    return Response(code=code, file=path, mime_type=mime_type, headers=headers)


def static_handler(directory):
    """A view serving files below directory; no listing, no escaping it.
    The usual request is answered by _core.StaticFiles in C (files.c);
    serve_static below answers the rest."""
    try:
        # a bytes name as the str Python gives it everywhere else
        name = os.fsdecode(directory)
    except TypeError:
        raise TypeError("add_static: the directory must be a str, bytes or os.PathLike, "
                        "not %s" % type(directory).__name__) from None
    try:
        # ("" is no directory, not the current one)
        root = os.path.realpath(name) if name else ""
    except ValueError:  # a NUL
        root = ""
    if not root or not os.path.isdir(root):
        raise ValueError("add_static: %r is not a directory" % (directory,))

    def serve_static(request):
        r = answer(request)
        if r.code == 404:
            # no file there: the app's answer to a path it does not serve
            # (its handler for RouteNotFoundException, if it has one), as
            # for a path no route takes
            raise RouteNotFoundException()
        return r

    def answer(request):
        rel = request.match_dict.get("path", "")
        # a trailing '/' names a directory: never a file (nginx: ENOTDIR);
        # an empty segment (a leading '/', "a//b") is no file's name either,
        # as in C (files.c)
        padded = "/%s/" % rel
        if (not rel or "\x00" in rel or "\\" in rel or "//" in padded
                or "/./" in padded or "/../" in padded):
            return Response(code=404, text="Not Found")
        parts = rel.split("/")
        # opened one component at a time, following no symbolic link; a
        # link on the way is resolved in full, must still lead below root,
        # and its target is opened the same way (a link swapped in after
        # the check then fails the open instead of leading out)
        try:
            try:
                fd = _open_below(root, parts)
            except OSError as e:
                # a link: ELOOP, or ENOTDIR where a directory was wanted
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                full = os.path.realpath(os.path.join(root, *parts))
                if not full.startswith(root + os.sep):
                    return Response(code=404, text="Not Found")
                parts = full[len(root) + 1:].split(os.sep)
                fd = _open_below(root, parts)
        except ValueError:
            return Response(code=404, text="Not Found")
        except OSError as e:
            return _open_error(e)
        try:
            return _file_response(request, Response(file=os.path.join(root, *parts)), fd,
                                  functools.partial(_open_below, root, parts))
        finally:
            os.close(fd)

    return _core.StaticFiles(root, serve_static)


def _open_below(root, parts):
    """root/parts opened for reading, one component at a time from root's
    fd, with O_NOFOLLOW: OSError (ELOOP, or ENOTDIR for a directory's) at
    any symbolic link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for p in parts[:-1]:
            sub = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
            os.close(fd)
            fd = sub
        return os.open(parts[-1], _OPEN_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


def _in_a_task():
    try:
        return asyncio.current_task() is not None
    except RuntimeError:  # no running loop
        return False


async def _run_websocket(ws, handler):
    """Run a WebSocket handler; close the socket when it returns (1000) or
    raises (1011).  Runs once per connection, not per message."""
    try:
        try:
            if _core._in_create_task():
                await asyncio.sleep(0)  # stepped by an eager task factory
            await handler(ws)
        except _core.WebSocketClosed:
            if not ws.closed:
                raise   # another socket's (a relay's peer gone): the handler failed
    except asyncio.CancelledError:
        # cancelled (the server stopping) or raised by the handler: the
        # connection must not stay open with no handler behind it
        if not ws.closed:
            try:
                await ws.close(1011)
            except Exception:
                pass
        raise
    except BaseException as e:
        # SystemExit and KeyboardInterrupt too (asyncio would re-raise them
        # from the loop and end the worker), and a GeneratorExit the handler
        # raised; one thrown in to close this coroutine (outside a Task
        # step) goes on
        if isinstance(e, GeneratorExit) and not _in_a_task():
            raise
        sys.stderr.write("fulmen: error in WebSocket handler %r:\n%s"
                         % (handler, traceback.format_exc()))
        if not ws.closed:
            try:
                await ws.close(1011)
            except Exception:
                pass
        return
    if not ws.closed:
        try:
            await ws.close(1000)
        except Exception:
            pass
