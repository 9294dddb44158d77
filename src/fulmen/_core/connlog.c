/*
 * connlog.c - the connection's logs: the access log (--access-log, text
 * or JSON lines), the debug log (one line per request on stderr), and the
 * peer's address they and request.remote_addr name (--proxy-headers from a
 * trusted peer).  Part of the connection with conn.c (conn.h).
 */
#include "conn.h"

#include <arpa/inet.h> /* inet_pton */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Debug mode: one line per request on stderr, with the status code that
 * went out (a response that cannot be sent is logged as the 500 sent
 * instead, a file response as its 200, 206, 304 ...). */
void conn_log(RequestObject *req, int code)
{
    PySys_WriteStderr("fulmen: %.*s %.*s -> %d\n", (int)req->h.method.len,
                      req->base + req->h.method.off,
                      (int)(req->h.target.len > 500 ? 500 : req->h.target.len),
                      req->base + req->h.target.off, code);
}

/* ========================================================================
 * Access log: one line per response, formatted here into a buffer that is
 * written out when it fills and on every sweep.  Python's sys.stderr goes
 * through the same buffer (conn_log_stderr_write, app.py's _Stderr), so that a
 * stderr that takes no more (a log reader that stopped reading a pipe)
 * stops no process: fd 2 is written only as far as poll() says it takes
 * without blocking, and what it does not take waits, up to CONN_LOG_MAX,
 * beyond which whole lines are dropped and counted.
 */

#define CONN_LOG_MAX (1u << 20)
/* at most this much per write(): a pipe that polls writable has room for
 * it (PIPE_BUF, one page), a socket (journald's) too */
#define CONN_LOG_CHUNK 4096

static void conn_log_put(fulmen_state *st, const char *p, size_t n)
{
    if (st->log_len + n > st->log_cap) {
        size_t cap = st->log_cap ? st->log_cap : 65536;
        char *b;
        while (cap < st->log_len + n)
            cap *= 2;
        b = PyMem_Realloc(st->log, cap);
        if (b == NULL)
            return;
        st->log = b;
        st->log_cap = cap;
    }
    memcpy(st->log + st->log_len, p, n);
    st->log_len += n;
}

/* Write out what fd 2 takes; wait_ms > 0 waits that long at most for it
 * to take the rest.  What it does not take stays buffered.  Returns the
 * bytes still buffered. */
size_t conn_log_drain(fulmen_state *st, int wait_ms)
{
    size_t off = 0;
    int64_t until = wait_ms > 0 ? mod_now_ms() + wait_ms : 0;
    for (;;) {
        struct pollfd pf = {2, POLLOUT, 0};
        ssize_t n;
        int r;
        if (off == st->log_len) {
            if (st->log_dropped == 0)
                break;
            /* all written: say what was dropped, then go on */
            char note[128];
            int k = snprintf(note, sizeof(note), "fulmen: %llu lines of log dropped: stderr "
                             "took no more (a reader that stopped reading?)\n",
                             st->log_dropped);
            st->log_len = off = 0;
            st->log_dropped = 0;
            conn_log_put(st, note, (size_t)k);
            continue;
        }
        r = poll(&pf, 1,
                 wait_ms > 0 ? (int)(until > mod_now_ms() ? until - mod_now_ms() : 0) : 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r != 1)
            break; /* it takes nothing now: the rest waits */
        if (pf.revents & (POLLERR | POLLNVAL)) {
            off = st->log_len; /* no stderr to write to: nothing to keep */
            break;
        }
        n = write(2, st->log + off, st->log_len - off > CONN_LOG_CHUNK ? CONN_LOG_CHUNK
                                                                       : st->log_len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            off = st->log_len; /* EPIPE, EBADF...: nothing to keep */
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    if (off > 0) {
        memmove(st->log, st->log + off, st->log_len - off);
        st->log_len -= off;
    }
    return st->log_len;
}

void conn_log_flush(fulmen_state *st)
{
    conn_log_drain(st, 0);
}

/* Room for a line of about n bytes, or 0: stderr took none of what waits
 * (past CONN_LOG_MAX), and the line is dropped (counted). */
static int conn_log_room(fulmen_state *st, size_t n, size_t lines)
{
    if (st->log_len + n <= CONN_LOG_MAX || conn_log_drain(st, 0) + n <= CONN_LOG_MAX)
        return 1;
    st->log_dropped += lines;
    return 0;
}

/* _core._stderr_write(bytes): Python's stderr (app.py's _Stderr), in turn
 * with the access log's lines. */
PyObject *conn_log_stderr_write(PyObject *module, PyObject *arg)
{
    fulmen_state *st = PyModule_GetState(module);
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    if (b.len > 0) {
        size_t lines = 0, i;
        for (i = 0; i < (size_t)b.len; i++)
            lines += ((const char *)b.buf)[i] == '\n';
        if (conn_log_room(st, (size_t)b.len, lines ? lines : 1))
            conn_log_put(st, b.buf, (size_t)b.len);
    }
    conn_log_drain(st, 0);
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
}

/* _core._stderr_drain(seconds): wait that long at most for stderr to take
 * what waits (before the process exits); a negative number forgets it (a
 * forked child: its parent writes it).  Returns the bytes left. */
PyObject *conn_log_stderr_drain(PyObject *module, PyObject *arg)
{
    fulmen_state *st = PyModule_GetState(module);
    double secs = PyFloat_AsDouble(arg);
    if (secs == -1.0 && PyErr_Occurred())
        return NULL;
    if (secs < 0) {
        st->log_len = 0;
        st->log_dropped = 0;
        return PyLong_FromLong(0);
    }
    return PyLong_FromSize_t(conn_log_drain(st, (int)(secs * 1000)));
}

/* a string literal, its length counted by the compiler */
#define CONN_LOG_LIT(st, lit) conn_log_put((st), (lit), sizeof(lit) - 1)

/* A client address a proxy forwarded, or a request target, into a text
 * line: a space, '"', '\\', a control or a non-ASCII byte as \xHH (as
 * nginx's log escapes), so that it stays one field. */
static void conn_log_tstr(fulmen_state *st, const char *p, size_t n)
{
    size_t i, start = 0;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch <= 0x20 || ch == '"' || ch == '\\' || ch >= 0x7f) {
            char esc[5] = {'\\', 'x', "0123456789abcdef"[ch >> 4],
                           "0123456789abcdef"[ch & 15], 0};
            conn_log_put(st, p + start, i - start);
            conn_log_put(st, esc, 4);
            start = i + 1;
        }
    }
    conn_log_put(st, p + start, n - start);
}

/* The length of the well-formed UTF-8 sequence of 2 to 4 bytes at p[0..n)
 * (RFC 3629 4: no overlong form, surrogate or code point past U+10FFFF),
 * or 0 when there is none. */
static size_t conn_log_utf8_len(const unsigned char *p, size_t n)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t len, i;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        lo = p[0] == 0xe0 ? 0xa0 : 0x80;
        hi = p[0] == 0xed ? 0x9f : 0xbf;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        lo = p[0] == 0xf0 ? 0x90 : 0x80;
        hi = p[0] == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (i = 2; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* JSON-escape s into the log (quotes included): UTF-8 text as it is, and
 * a byte that is no part of it as \u00HH (so such an escape in the log is
 * always a raw byte: the character U+00HH itself is written in UTF-8). */
static void conn_log_jstr(fulmen_state *st, const char *p, size_t n)
{
    size_t i, start = 0, k;
    CONN_LOG_LIT(st, "\"");
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch >= 0x80 && (k = conn_log_utf8_len((const unsigned char *)p + i, n - i)) > 0) {
            i += k - 1;
        } else if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f) {
            char esc[8];
            conn_log_put(st, p + start, i - start);
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            conn_log_put(st, esc, 6);
            start = i + 1;
        }
    }
    conn_log_put(st, p + start, n - start);
    CONN_LOG_LIT(st, "\"");
}

/* v in decimal */
static void conn_log_uint(fulmen_state *st, unsigned long long v)
{
    char d[24], *p = mod_utoa_rev(d + sizeof(d), v);
    conn_log_put(st, p, (size_t)(d + sizeof(d) - p));
}

/* a duration in ns as milliseconds with three decimals */
static void conn_log_ms(fulmen_state *st, int64_t ns)
{
    unsigned long long us = ns > 0 ? (unsigned long long)ns / 1000 : 0;
    char frac[4] = {'.', (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10),
                    (char)('0' + us % 10)};
    conn_log_uint(st, us / 1000);
    conn_log_put(st, frac, 4);
}

/* An address in forwarded_allow's form: 16 bytes, an IPv4 one (or an
 * IPv4-mapped IPv6 one) in the first 4.  4 or 6, or 0 for no address. */
static int conn_parse_addr(const char *s, uint8_t out[16])
{
    memset(out, 0, 16);
    if (inet_pton(AF_INET, s, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, s, out) != 1)
        return 0;
    if (memcmp(out, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
        /* an IPv4 peer on a dual-stack socket: the IPv4 address */
        memmove(out, out + 12, 4);
        memset(out + 4, 0, 12);
        return 4;
    }
    return 6;
}

/* Whether peer_host (the peer name's host) is one of forwarded_allow's
 * networks.  forwarded_allow is None (every peer) or bytes made by app.py
 * (_allow_blob): 18 bytes a network, its family (4 or 6), its prefix
 * length and its 16 address bytes. */
static int conn_peer_trusted(ConnObject *c, PyObject *peer_host)
{
    PyObject *allow = c->server->forwarded_allow;
    const uint8_t *e, *end;
    const char *s;
    uint8_t addr[16];
    int fam, i;
    if (allow == NULL || allow == Py_None)
        return 1;
    /* a unix socket (no peer address): only the proxy can reach it */
    if (peer_host == Py_None ||
        (PyUnicode_Check(peer_host) && PyUnicode_GET_LENGTH(peer_host) == 0))
        return 1;
    if (!PyBytes_Check(allow) || !PyUnicode_Check(peer_host) ||
        (s = PyUnicode_AsUTF8(peer_host)) == NULL || (fam = conn_parse_addr(s, addr)) == 0) {
        PyErr_Clear();
        return 0;
    }
    e = (const uint8_t *)PyBytes_AS_STRING(allow);
    end = e + PyBytes_GET_SIZE(allow) / 18 * 18;
    for (; e < end; e += 18) {
        int bits = e[1];
        if (e[0] != fam || bits > 128)
            continue;
        for (i = 0; bits >= 8 && addr[i] == e[2 + i]; i++)
            bits -= 8;
        if (bits < 8 ? bits == 0 || ((addr[i] ^ e[2 + i]) & (0xff00 >> bits) & 0xff) == 0
                     : 0)
            return 1;
    }
    return 0;
}

/* Fetch the peer's host (str) into c->ext->peer, once per connection, and
 * with --proxy-headers whether it is trusted (conn_proxy_trusted).  A
 * failure leaves peer NULL: the log then says "-".  An exception already
 * set (a response that failed to serialize, reported after its log line)
 * is kept. */
NOINLINE void conn_fetch_peer(ConnObject *c)
{
    PyObject *type, *value, *tb, *p = NULL;
    conn_ext *x;
    PyErr_Fetch(&type, &value, &tb);
    x = conn_ext_get(c);
    if (x == NULL)
        goto done;
    p = PyObject_CallMethodOneArg(c->transport, c->st->s_get_extra_info,
                                  c->st->s_peername);
    if (p != NULL && PyTuple_Check(p) && PyTuple_GET_SIZE(p) >= 1)
        x->peer = PyObject_Str(PyTuple_GET_ITEM(p, 0));
    else if (p != NULL && PyUnicode_Check(p))
        x->peer = Py_NewRef(p);
    if (p != NULL && c->server->proxy_headers)
        x->peer_trusted = (uint8_t)conn_peer_trusted(
            c, PyTuple_Check(p) && PyTuple_GET_SIZE(p) >= 1 ? PyTuple_GET_ITEM(p, 0) : p);
done:
    Py_XDECREF(p);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

/* Whether the peer may name the client's address, scheme and host
 * (--proxy-headers from one of --forwarded-allow-ips): decided once per
 * connection, with the address conn_fetch_peer fetches, for the request's
 * attributes and for the access log alike.  A connection whose transport
 * is gone has no peer address: as for a unix socket, only the proxy could
 * have reached it. */
int conn_proxy_trusted(ConnObject *c)
{
    if (!c->server->proxy_headers)
        return 0;
    if (c->transport == NULL)
        return conn_peer_trusted(c, Py_None);
    if (c->ext == NULL || c->ext->peer == NULL)
        conn_fetch_peer(c);
    return c->ext != NULL && c->ext->peer_trusted;
}

/* The peer's host (a new reference): the address conn_fetch_peer fetched
 * once for the connection, "" on a unix socket, None once the transport is
 * gone or when it names no peer.  request.remote_addr without a trusted
 * proxy. */
PyObject *conn_peer_host(ConnObject *c)
{
    if (c->transport != NULL && (c->ext == NULL || c->ext->peer == NULL))
        conn_fetch_peer(c);
    if (c->transport == NULL || c->ext == NULL || c->ext->peer == NULL)
        Py_RETURN_NONE;
    return Py_NewRef(c->ext->peer);
}

void conn_access_log(ConnObject *c, RequestObject *req, int code,
                     long long nbytes)
{
    fulmen_state *st = c->st;
    const char *peer = "-", *fwd = NULL;
    Py_ssize_t peerlen = 1;
    size_t fwdlen = 0;
    int64_t ns = 0;
    time_t now = time(NULL);
    int json = c->server->access_log == 2;
    if (UNLIKELY(!conn_log_room(st, 0, 1)))
        return;
    if ((c->ext == NULL || c->ext->peer == NULL) && c->transport != NULL)
        conn_fetch_peer(c);
    if (c->ext != NULL && c->ext->peer != NULL) {
        peer = mod_utf8(c->ext->peer, &peerlen);
        if (peer == NULL)
            PyErr_Clear();
        if (peer == NULL || peerlen == 0) { /* a unix socket's peer is "" */
            peer = "-";
            peerlen = 1;
        }
    }
    /* behind a trusted proxy, the client request.remote_addr names */
    if (UNLIKELY(c->server->proxy_headers) && req != NULL && conn_proxy_trusted(c) &&
        req_forwarded_client(req, &fwd, &fwdlen)) {
        peer = fwd;
        peerlen = (Py_ssize_t)fwdlen;
    }
    if (req != NULL && req->start_ns)
        ns = conn_now_ns() - req->start_ns;
    if ((int64_t)now != st->log_ts_sec) {
        /* the timestamps change once a second: formatted then, not per line */
        struct tm tm;
        gmtime_r(&now, &tm);
        st->log_ts_len[0] = (uint8_t)strftime(st->log_ts[0], sizeof(st->log_ts[0]),
                                              "%d/%b/%Y:%H:%M:%S +0000", &tm);
        st->log_ts_len[1] = (uint8_t)strftime(st->log_ts[1], sizeof(st->log_ts[1]),
                                              "%Y-%m-%dT%H:%M:%SZ", &tm);
        st->log_ts_sec = (int64_t)now;
    }
    if (json) {
        CONN_LOG_LIT(st, "{\"time\": \"");
        conn_log_put(st, st->log_ts[1], st->log_ts_len[1]);
        CONN_LOG_LIT(st, "\", \"client\": ");
        conn_log_jstr(st, peer, (size_t)peerlen);
        CONN_LOG_LIT(st, ", \"method\": ");
        if (req != NULL)
            conn_log_jstr(st, req->base + req->h.method.off, req->h.method.len);
        else
            CONN_LOG_LIT(st, "null");
        CONN_LOG_LIT(st, ", \"target\": ");
        if (req != NULL)
            conn_log_jstr(st, req->base + req->h.target.off, req->h.target.len);
        else
            CONN_LOG_LIT(st, "null");
        CONN_LOG_LIT(st, ", \"version\": ");
        if (req != NULL) {
            CONN_LOG_LIT(st, "\"1.");
            conn_log_uint(st, req->h.version_minor);
            CONN_LOG_LIT(st, "\"");
        } else {
            CONN_LOG_LIT(st, "null");
        }
        CONN_LOG_LIT(st, ", \"status\": ");
        conn_log_uint(st, (unsigned)code);
        CONN_LOG_LIT(st, ", \"bytes\": ");
        if (nbytes >= 0)
            conn_log_uint(st, (unsigned long long)nbytes);
        else
            CONN_LOG_LIT(st, "-1");
        CONN_LOG_LIT(st, ", \"duration_ms\": ");
        conn_log_ms(st, ns);
        CONN_LOG_LIT(st, "}\n");
    } else {
        /* a unix client's path may hold spaces or a newline too */
        conn_log_tstr(st, peer, (size_t)peerlen);
        CONN_LOG_LIT(st, " - - [");
        conn_log_put(st, st->log_ts[0], st->log_ts_len[0]);
        CONN_LOG_LIT(st, "] \"");
        if (req != NULL) {
            conn_log_put(st, req->base + req->h.method.off, req->h.method.len);
            CONN_LOG_LIT(st, " ");
            /* (a '"' or '\\' in it would end the quoted field early) */
            conn_log_tstr(st, req->base + req->h.target.off, req->h.target.len);
            CONN_LOG_LIT(st, " HTTP/1.");
            conn_log_uint(st, req->h.version_minor);
            CONN_LOG_LIT(st, "\" ");
        } else {
            CONN_LOG_LIT(st, "-\" ");
        }
        conn_log_uint(st, (unsigned)code);
        CONN_LOG_LIT(st, " ");
        if (nbytes >= 0)
            conn_log_uint(st, (unsigned long long)nbytes);
        else
            CONN_LOG_LIT(st, "-");
        CONN_LOG_LIT(st, " ");
        conn_log_ms(st, ns);
        CONN_LOG_LIT(st, "\n");
    }
    if (st->log_len >= 32768)
        conn_log_flush(st);
}

/* A streamed answer's lines in the access log and the debug log (its
 * length is not known). */
void conn_log_stream(ConnObject *c, RequestObject *req, int code)
{
    if (UNLIKELY(c->server->access_log))
        conn_access_log(c, req, code, -1);
    if (UNLIKELY(c->server->debug) && req != NULL)
        conn_log(req, code);
}

