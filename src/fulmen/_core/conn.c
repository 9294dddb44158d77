/*
 * conn.c - the connection: an asyncio protocol written in C and driven by
 * uvloop, plus the Server object that makes one per accepted socket.
 *
 * Bytes are parsed straight out of the bytes object uvloop hands to
 * data_received(); only a request that arrives in pieces is copied into the
 * connection's own buffer.  Every response produced while handling one read
 * is appended to the module's output buffer and leaves in one write.
 * Responses leave in request order: when an async view suspends, the
 * requests behind it queue up in a ring of slots that drains in order as
 * views finish.
 *
 * Direct I/O.  After its first read, a plain (not TLS) socket leaves the
 * transport's data path: the transport stops reading, the server's own
 * epoll set watches the socket, and the loop watches that one epoll fd.
 * One loop callback then reads every ready socket with recv() and writes
 * the answers with send(): no transport method call, bytes object or GIL
 * hand-off per read or write.  The transport still owns the socket: it
 * accepted it, closes it, and reports connection_lost; output that the
 * socket cannot take at once goes to the transport, and send() is used
 * again once the transport's buffer is empty.
 *
 * TLS in C (tls.c, docs/tls.md).  When the server has an SSL_CTX
 * (Server._use_tls), uvloop serves plain TCP and every connection takes
 * its socket over at its first read, whose bytes start the handshake
 * (conn_tls_attach): OpenSSL reads the socket, and the records it writes
 * are sent the way plain output is (conn_tls_push).  Such a connection is a direct one in every
 * other respect; conn_ssl(c) is its SSL.
 */
#include "common.h"

#include "wsframe.h"

#include <arpa/inet.h> /* inet_pton */
#include <errno.h>
#include <linux/sockios.h> /* SIOCOUTQ */
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_acked (glibc's lacks it) */
#include <netinet/in.h>
#include <stddef.h>
#include <structmember.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Direct I/O: bytes read per recv(), and events taken per epoll_wait(). */
#define CONN_RBUF 65536
#define CONN_EVENTS 128
#define CONN_IO_ROUNDS 8

/* Answers of one burst past this many bytes are sent at once, and no more
 * requests are taken while the transport holds what the socket did not
 * (the pipelined requests of one read may ask for far more). */
#define CONN_OUT_HIGH (256 * 1024)

/* Stop taking requests off the wire while this many responses are queued. */
#define CONN_PIPELINE_HIGH 64
#define CONN_PIPELINE_LOW 16

/* An idle keep-alive connection gives back its response queue and its
 * rare-feature state this long after its last request (conn_trim): not
 * sooner, so that steady traffic does not allocate them per request. */
#define CONN_TRIM_MS 1000

/* After the last answer on a connection that closes, how long the client
 * has to close its side while what it still sends is read and dropped
 * (conn_linger). */
#define CONN_LINGER_MS 2000
/* ... and how much of it, in KiB: a client that sends more is flooding,
 * not finishing a pipeline or an upload in flight.  After a 413 for a
 * declared Content-Length the rest of that body may come too, up to
 * CONN_LINGER_MAX_KB: a proxy in front (nginx) sends it whole before it
 * reads the answer, and a close under it would be a reset it turns into
 * 502. */
#define CONN_LINGER_KB 64
#define CONN_LINGER_MAX_KB UINT16_MAX

/* After our WebSocket close frame, how long the client has to answer it
 * (and, while it still takes output queued before it, to take more). */
#define CONN_WSCLOSE_MS 5000

/* Bytes the transport may hold for a client that does not read before a
 * WebSocket send() gives up on it: a handler that awaits its sends stops
 * at the transport's high-water mark, one that does not would pile up
 * memory for as long as the write deadline lets it. */
#define CONN_PILE_MAX (16u << 20)

enum {
    CONN_PAUSE_WRITE = 1,    /* transport above its high-water mark */
    CONN_PAUSE_PIPELINE = 2, /* too many responses waiting in the queue */
    CONN_PAUSE_BODY = 4,     /* a streamed request body is not being read */
};

/* STAGE_SINK: a Content-Length body too big for one read, arriving
 * straight into the bytes object request.body will be (conn_sink_start) */
enum { STAGE_HEAD = 0, STAGE_BODY, STAGE_CHUNKED, STAGE_SINK };

/* Content-Length bodies from this size on go to a sink once they span reads */
#define CONN_SINK_MIN (16 * 1024)

enum {
    CONN_T_NONE = 0,
    CONN_T_IDLE,   /* keep_alive_timeout between requests */
    CONN_T_HEAD,   /* header_timeout since the head's first byte */
    CONN_T_BODY,   /* body_timeout since the last body bytes */
    CONN_T_WRITE,  /* body_timeout while the peer does not read */
    CONN_T_WSCLOSE, /* we sent a WebSocket close: the peer has 5 s to answer */
    CONN_T_WSPING, /* WebSocket keep-alive: ping, then wait for traffic */
    CONN_T_LINGER, /* half-closed after the last answer: the client's turn */
    CONN_T_CLOSING, /* close() called with output the transport still holds:
                     * the client has body_timeout to take it */
    CONN_T_OWED,   /* TLS, between requests: the socket's transport may
                    * still hold megabytes the TLS layer handed it (it never
                    * pauses us for those).  Looked at after CONN_OWED_LOOK_MS
                    * (no syscall per answer): a client that had it all by
                    * then is idle since the answer (keep_alive_timeout), as
                    * over TCP; else looked at every CONN_OWED_LOOK_MS: one
                    * that takes none for body_timeout is cut, one that took
                    * it all is idle from then */
};

typedef struct {
    PyObject *obj;     /* Response when ready, else the pending Task */
    RequestObject *req;
    int64_t started;   /* when its coroutine view suspended (response_timeout) */
    uint8_t ready;
    uint8_t head_only;
    uint8_t conn_hdr;  /* 0, 1 close, 2 keep-alive */
    uint8_t close_after;
    uint8_t interim;   /* a "100 Continue" to send in its turn */
    uint8_t cancelled; /* its Task was cancelled for response_timeout */
} conn_slot;

/* What only the rarer features need: a streamed response, a WebSocket, a
 * request body read as it arrives (stream=True), a chunked request body,
 * the access log's peer (and whether it is a trusted proxy).  A connection
 * makes it the first time it needs one (conn_ext_get) and keeps it while it
 * serves requests, so that a plain keep-alive connection carries one NULL
 * pointer instead; once idle for a while, it gives it back (conn_trim). */
typedef struct {
    /* a streamed response in progress (ConnObject.streaming) */
    RequestObject *stream_req; /* strong: the stream answers it */
    PyObject *stream_task;
    PyObject *stream_head;   /* its head (bytes) until the first item or the
                              * end: an iterator that fails before its first
                              * item gets a 500 instead of a cut 200 */
    PyObject *stream_waiter; /* future resolved when writing may resume */
    PyObject *peer;          /* peer host (str), fetched for the access log */
    WebSocketObject *ws;     /* after a 101: every byte goes to it */
    PyObject *ws_task;       /* the handler's Task */
    /* a stream=True request whose body is still arriving */
    PyObject *bstream;       /* its BodyStream */
    RequestObject *bs_req;   /* borrowed: identity only */
    uint64_t bs_remaining;   /* Content-Length bytes still to come */
    /* the chunked decoder: of a stream=True body (bs_chunked), else of
     * the pending request (STAGE_CHUNKED) */
    h1_chunked chunk;
    size_t csrc, cdst;       /* STAGE_CHUNKED: raw consumed, decoded end */
    uint64_t stream_left;    /* RESP_FRAME_LENGTH: body bytes still owed */
    uint8_t stream_frame;    /* RESP_FRAME_* */
    uint8_t stream_close;    /* close once it ends */
    /* its Task has taken its first step (_stream_begin); stream_stop: the
     * client left before that, so the body is not to be produced at all.
     * (Cancelling a Task before its first step would skip _stream_body's
     * clean-up, and the connection would wait for a stream that is gone.) */
    uint8_t stream_begun;
    uint8_t stream_stop;
    uint8_t stream_failed;   /* the app's iterator raised (_stream_failed) */
    uint16_t stream_code;    /* its status, for the logs (at its end) */
    int64_t stream_begun_at; /* mod_now_ms() at _stream_begin */
    uint8_t bs_chunked;
    uint8_t peer_trusted;    /* --proxy-headers from this peer (with peer) */
    /* conn_progress() when a deadline for the client to take output was
     * last armed or checked (conn_took) */
    uint64_t wmark;
    int64_t taken_at;        /* CONN_T_OWED: when the client was last seen
                              * taking output (or the connection fell idle) */
} conn_ext;

/* Kept small: an idle keep-alive connection is this object and uvloop's
 * transport (bench/RESULTS.md, idle memory).  Its size with the GC header
 * is a multiple of 16 (pymalloc's size classes): a new field past that
 * costs 16 bytes per connection, so rare state belongs in conn_ext. */
struct ConnObject {
    PyObject_HEAD
    fulmen_state *st;
    ServerObject *server;
    PyObject *transport;
    /* input that did not make a whole request yet */
    char *buf;
    size_t buf_len, buf_cap;
    RequestObject *pending; /* its head or body is incomplete */
    int64_t deadline;      /* monotonic ms; 0 = none */
    int64_t head_start;    /* first byte of the current head, ms; 0 = none */
    ConnObject *prev, *next; /* the server's list of live connections */
    conn_ext *ext;         /* NULL until a rare feature is used */
    /* response queue: a ring indexed by sequence number, made when a
     * response first has to wait, given back when idle (conn_trim) */
    conn_slot *q;
    uint32_t q_cap;        /* power of two */
    uint32_t q_first;      /* seq of the oldest queued response */
    uint32_t q_next;       /* seq the next request gets */
    uint32_t head_len;     /* of the pending request, once parsed */
    /* direct I/O (see the top of the file) */
    int fd;                /* the transport's socket; -1: the transport reads */
    uint8_t stage;         /* STAGE_*, of the pending request */
    uint8_t continue_sent;
    uint8_t closing;       /* no request after this one is read */
    uint8_t closed;        /* connection_lost was called */
    uint8_t close_after_flush;
    uint8_t eof;
    uint8_t pause;         /* CONN_PAUSE_* */
    uint8_t reading_paused;
    uint8_t answered;      /* a response has been written */
    uint8_t timer;         /* CONN_T_*: what deadline guards */
    uint8_t streaming;     /* a streamed response is being written (ext):
                            * later responses wait behind it */
    uint8_t io_checked;    /* direct I/O was considered */
    uint8_t io_watched;    /* fd is in the server's epoll set */
    uint8_t io_done;       /* no more reads: EOF, error, or closing */
    uint8_t tpending;      /* output went to the transport since it was empty */
    uint8_t drain_pending; /* in the server's drain_list (conn_deliver) */
    uint8_t aborted;       /* transport.abort() was called: the socket stays
                            * open until connection_lost, but nothing more
                            * may be written to it (not even by send()) */
    uint8_t lingering : 1; /* write_eof() was called: reading on, to drop
                            * what the client still sends (conn_linger) */
    uint8_t client_close : 1; /* the client ended the connection with its
                               * first request (Connection: close,
                               * HTTP/1.0): conn_linger */
    uint8_t unread_input : 1; /* bytes past the last request were dropped */
    uint8_t tls_known : 1; /* is_tls is set (conn_tls) */
    uint8_t is_tls : 1;
    uint8_t owed_looked : 1; /* CONN_T_OWED has looked at the kernel's queue */
    uint8_t tls_c : 1;     /* TLS in C: its SSL is the server's tls_tab[fd]
                            * (not a field: 8 more bytes would cost every
                            * connection 16, test_idle) */
    uint16_t linger_kb;    /* KiB that may still be dropped while lingering
                            * (0 before: CONN_LINGER_KB then) */
};

/* The WebSocket after a 101, else NULL. */
INLINE WebSocketObject *conn_ws(ConnObject *c)
{
    return UNLIKELY(c->ext != NULL) ? c->ext->ws : NULL;
}

/* The BodyStream of a stream=True request whose body is still arriving,
 * else NULL. */
INLINE PyObject *conn_bstream(ConnObject *c)
{
    return UNLIKELY(c->ext != NULL) ? c->ext->bstream : NULL;
}

/* Bytes from the client are still wanted: no request after this one is
 * read once closing is set, but the body of the last one (a stream=True
 * request with Connection: close, or HTTP/1.0) is its view's. */
INLINE int conn_reads_on(ConnObject *c)
{
    return !c->closing || conn_bstream(c) != NULL;
}

/* Make c->ext.  Returns it, or NULL with an exception set. */
static NOINLINE conn_ext *conn_ext_new(ConnObject *c)
{
    c->ext = PyMem_Calloc(1, sizeof(conn_ext));
    if (c->ext == NULL)
        PyErr_NoMemory();
    return c->ext;
}

/* c->ext, made on first use.  Returns NULL with an exception set when out
 * of memory. */
INLINE conn_ext *conn_ext_get(ConnObject *c)
{
    return LIKELY(c->ext != NULL) ? c->ext : conn_ext_new(c);
}

/* The connection's SSL under TLS in C (tls.c), else NULL. */
INLINE struct ssl_st *conn_ssl(ConnObject *c)
{
    return UNLIKELY(c->tls_c) ? c->server->tls_tab[c->fd] : NULL;
}

static void conn_io_watch(ConnObject *c, int on);
static void conn_io_end(ConnObject *c);
static void conn_abort(ConnObject *c);
static int conn_linger(ConnObject *c);
static void conn_linger_drop(ConnObject *c, PyObject *data);
static void conn_closing(ConnObject *c);
static void conn_close_now(ConnObject *c);
static int conn_tls_push(ConnObject *c);
static void conn_tls_bye(ConnObject *c);

/* ========================================================================
 * Output
 */

/* Direct I/O may send(): nothing of ours waits in the transport.  Asks the
 * transport only after output went through it. */
static int conn_io_writable(ConnObject *c)
{
    PyObject *r;
    long n;
    if (LIKELY(!c->tpending))
        return 1;
    r = PyObject_CallMethodNoArgs(c->transport, c->st->s_get_write_buffer_size);
    if (r == NULL) {
        PyErr_Clear();
        return 0;
    }
    n = PyLong_AsLong(r);
    Py_DECREF(r);
    if (n != 0) {
        PyErr_Clear();
        return 0;
    }
    c->tpending = 0;
    return 1;
}

/* conn_abort, keeping the exception that is set. */
static NOINLINE void conn_abort_kept(ConnObject *c)
{
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    conn_abort(c);
    PyErr_Restore(et, ev, etb);
}

/* Send the records the last SSL call wrote (the server's tls_out): with
 * send() when nothing of ours waits in the transport, the rest through
 * the transport, whose buffer then pauses us as for plain output.
 * Returns 0, or -1 with an exception set. */
static int conn_tls_push(ConnObject *c)
{
    tls_out *o = &c->server->tls_out;
    PyObject *b = NULL, *res = NULL;
    size_t off = 0;
    int rc = -1;
    if (o->len == 0)
        return 0;
    if (c->closed || c->aborted || c->transport == NULL || c->fd < 0)
        goto dropped;
    if (conn_io_writable(c)) {
        ssize_t n = send(c->fd, o->p, o->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (LIKELY(n == (ssize_t)o->len))
            goto dropped; /* all sent */
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            o->len = 0;
            conn_io_end(c);
            c->aborted = 1;
            res = PyObject_CallMethodNoArgs(c->transport, c->st->s_abort);
            if (res == NULL)
                goto error;
            goto ok;
        }
        off = n > 0 ? (size_t)n : 0;
    }
    b = PyBytes_FromStringAndSize(o->p + off, (Py_ssize_t)(o->len - off));
    o->len = 0;
    if (b == NULL)
        goto error;
    c->tpending = 1;
    res = PyObject_CallMethodOneArg(c->transport, c->st->s_write, b);
    if (res == NULL)
        goto error;
    goto ok;
dropped:
    o->len = 0;
ok:
    rc = 0;
error:
    if (UNLIKELY(o->cap > (1u << 20))) {
        /* a large answer grew it: not kept for the server's life */
        PyMem_RawFree(o->p);
        o->p = NULL;
        o->cap = 0;
    }
    Py_XDECREF(b);
    Py_XDECREF(res);
    return rc;
}

/* An SSL_write failed (out of memory, or a broken SSL state): what it
 * would have carried is lost, so the connection is aborted; before the
 * handshake is done (a 408 for a client that never finished it), the
 * output is only dropped and the close goes on. */
static NOINLINE void conn_tls_failed(ConnObject *c)
{
    c->server->tls_out.len = 0;
    if (!tls_ready(conn_ssl(c)) || c->closed || c->aborted || c->transport == NULL)
        return;
    conn_abort(c);
}

/* Encrypt and send n bytes at p over TLS, CONN_TLS_SLICE at a time: the
 * records of a large body go out (or to the transport) as they are made,
 * instead of all of them piling up in tls_out first.  Returns 0 (also when
 * the connection had to be aborted), or -1 with an exception set. */
#define CONN_TLS_SLICE (256 * 1024)
static int conn_tls_send(ConnObject *c, const char *p, size_t n)
{
    while (n > 0) {
        size_t k = n < CONN_TLS_SLICE ? n : CONN_TLS_SLICE;
        if (conn_ssl(c) == NULL || c->aborted || c->closed)
            return 0;
        if (UNLIKELY(tls_write(conn_ssl(c), p, k) < 0)) {
            conn_tls_failed(c);
            return 0;
        }
        if (conn_tls_push(c) < 0)
            return -1;
        p += k;
        n -= k;
    }
    return 0;
}

/* conn_flush's out_chunks (bytes-like items, large bodies) over TLS, in
 * turn.  Returns 0, or -1 with an exception set. */
static NOINLINE int conn_tls_write_chunks(ConnObject *c, PyObject *chunks)
{
    Py_ssize_t i;
    for (i = 0; i < PyList_GET_SIZE(chunks); i++) {
        Py_buffer v;
        int rc;
        if (PyObject_GetBuffer(PyList_GET_ITEM(chunks, i), &v, PyBUF_SIMPLE) < 0)
            return -1;
        rc = conn_tls_send(c, v.buf, (size_t)v.len);
        PyBuffer_Release(&v);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Our close_notify, sent before the transport closes (or half-closes) the
 * socket; once, and not after an abort. */
static void conn_tls_bye(ConnObject *c)
{
    if (conn_ssl(c) == NULL || c->aborted || c->closed || c->transport == NULL)
        return;
    tls_shutdown(conn_ssl(c));
    if (conn_tls_push(c) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
}

/* Write st->out (and any large bodies in st->out_chunks) in one call: a
 * send() of our own under direct I/O, else the transport's write.
 * Returns 0 or -1 with an exception set; then the answers that did not
 * go out are lost, and the connection is aborted rather than left to a
 * client that would wait for them. */
static int conn_flush(ConnObject *c)
{
    fulmen_state *st = c->st;
    PyObject *b = NULL, *res = NULL;
    int rc = -1;
    if (st->out_len == 0 && st->out_chunks == NULL)
        goto done_ok;
    st->out_big = 0;
    if (c->closed || c->aborted || c->transport == NULL) {
        st->out_len = 0;
        Py_CLEAR(st->out_chunks);
        goto done_ok;
    }
    c->server->n_writes++;
    if (st->out_chunks != NULL) {
        PyObject *chunks = st->out_chunks;
        st->out_chunks = NULL;
        if (st->out_len) {
            b = PyBytes_FromStringAndSize(st->out, (Py_ssize_t)st->out_len);
            st->out_len = 0;
            if (b == NULL || PyList_Append(chunks, b) < 0) {
                Py_DECREF(chunks);
                goto error;
            }
        }
        if (conn_ssl(c) != NULL) {
            rc = conn_tls_write_chunks(c, chunks);
            Py_DECREF(chunks);
            if (rc < 0)
                goto error;
            rc = -1;
            goto done_ok;
        }
        c->tpending = 1;
        res = PyObject_CallMethodOneArg(c->transport, st->s_writelines, chunks);
        Py_DECREF(chunks);
    } else {
        size_t off = 0;
        if (conn_ssl(c) != NULL) {
            int w;
            if (LIKELY(st->out_len <= CONN_TLS_SLICE)) {
                w = tls_write(conn_ssl(c), st->out, st->out_len);
                if (UNLIKELY(w < 0)) {
                    conn_tls_failed(c); /* (no exception: aborted) */
                    w = 0;
                } else {
                    w = conn_tls_push(c);
                }
            } else {
                w = conn_tls_send(c, st->out, st->out_len);
            }
            st->out_len = 0;
            if (w < 0)
                goto error;
            goto done_ok;
        }
        if (c->fd >= 0 && conn_io_writable(c)) {
            ssize_t n = send(c->fd, st->out, st->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (LIKELY(n == (ssize_t)st->out_len)) {
                st->out_len = 0;
                goto done_ok;
            }
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                /* the peer is gone: what it would have got is dropped */
                st->out_len = 0;
                conn_io_end(c);
                c->aborted = 1;
                res = PyObject_CallMethodNoArgs(c->transport, st->s_abort);
                if (res == NULL)
                    goto error;
                goto done_ok;
            }
            off = n > 0 ? (size_t)n : 0; /* the rest waits in the transport */
        }
        b = PyBytes_FromStringAndSize(st->out + off, (Py_ssize_t)(st->out_len - off));
        st->out_len = 0;
        if (b == NULL)
            goto error;
        c->tpending = 1;
        res = PyObject_CallMethodOneArg(c->transport, st->s_write, b);
    }
    if (res == NULL)
        goto error;
done_ok:
    rc = 0;
    if (c->close_after_flush && !c->closed && c->transport != NULL) {
        c->close_after_flush = 0;
        Py_XDECREF(res);
        res = NULL;
        if (!conn_linger(c)) {
            conn_io_end(c);
            conn_tls_bye(c);
            res = PyObject_CallMethodNoArgs(c->transport, st->s_close);
            if (res == NULL)
                rc = -1;
            else
                conn_closing(c);
        }
    }
error:
    Py_XDECREF(b);
    Py_XDECREF(res);
    if (UNLIKELY(st->out_cap > MOD_OUT_KEEP))
        mod_out_trim(st);
    if (UNLIKELY(rc < 0) && !c->closed && !c->aborted && c->transport != NULL)
        conn_abort_kept(c);
    return rc;
}

/* Debug mode: one line per request on stderr, with the status code that
 * went out (a response that cannot be sent is logged as the 500 sent
 * instead, a file response as its 200, 206, 304 ...). */
static void conn_log(RequestObject *req, int code)
{
    PySys_WriteStderr("fulmen: %.*s %.*s -> %d\n", (int)req->h.method.len,
                      req->base + req->h.method.off,
                      (int)(req->h.target.len > 500 ? 500 : req->h.target.len),
                      req->base + req->h.target.off, code);
}

static int conn_start_stream(ConnObject *c, RequestObject *req, PyObject *resp,
                             int head_only, int conn_hdr, int close_after);

/* A module-level function of fulmen.streams (imported on first use). */
static PyObject *conn_streams_fn(const char *name)
{
    PyObject *mod = PyImport_ImportModule("fulmen.streams"), *fn;
    if (mod == NULL)
        return NULL;
    fn = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    return fn;
}

/* ========================================================================
 * Access log: one line per response, formatted here into a buffer that is
 * written out when it fills and on every sweep.
 */

static int64_t conn_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void conn_log_flush(fulmen_state *st)
{
    size_t off = 0;
    while (off < st->log_len) {
        ssize_t n = write(st->log_fd ? st->log_fd : 2, st->log + off, st->log_len - off);
        if (n <= 0)
            break; /* a log we cannot write must not stop the server */
        off += (size_t)n;
    }
    st->log_len = 0;
}

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

static int conn_peer_trusted(ConnObject *c, PyObject *peer_host);

/* Fetch the peer's host (str) into c->ext->peer, once per connection, and
 * with --proxy-headers whether it is trusted (conn_proxy_trusted).  A
 * failure leaves peer NULL: the log then says "-".  An exception already
 * set (a response that failed to serialize, reported after its log line)
 * is kept. */
static NOINLINE void conn_fetch_peer(ConnObject *c)
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

static void conn_access_log(ConnObject *c, RequestObject *req, int code,
                            long long nbytes)
{
    fulmen_state *st = c->st;
    const char *peer = "-", *fwd = NULL;
    Py_ssize_t peerlen = 1;
    size_t fwdlen = 0;
    int64_t ns = 0;
    time_t now = time(NULL);
    int json = c->server->access_log == 2;
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

/* resp_serialize failed (rc -1: an exception; else an unsafe header):
 * a 500 goes out instead, and the log names the request.  Consumes the
 * reference to resp. */
static void conn_write_failed(ConnObject *c, RequestObject *req, PyObject *resp, int rc,
                              int head_only, int conn_hdr)
{
    PyObject *who = req != NULL ? (PyObject *)req : resp;
    if (rc == -1) {
        /* (PySys_FormatStderr keeps the exception that is set) */
        PySys_FormatStderr("fulmen: the response to %R could not be written; "
                           "answered 500 instead:\n", who);
        PyErr_WriteUnraisable(who);
    } else {
        PySys_FormatStderr("fulmen: the response to %R had a header with an invalid "
                           "name, or a control character in a value; answered 500 "
                           "instead\n", who);
    }
    if (resp_serialize_status(c->st, 500, "Internal Server Error", head_only,
                              conn_hdr, NULL) < 0)
        PyErr_WriteUnraisable(NULL);
    resp_release(c->st, resp);
}

/* A streamed answer's lines in the access log and the debug log (its
 * length is not known). */
static void conn_log_stream(ConnObject *c, RequestObject *req, int code)
{
    if (UNLIKELY(c->server->access_log))
        conn_access_log(c, req, code, -1);
    if (UNLIKELY(c->server->debug) && req != NULL)
        conn_log(req, code);
}

/* conn_write_response for files, streams, the access log and the debug log. */
static int conn_write_response_slow(ConnObject *c, RequestObject *req, PyObject *resp,
                                    int head_only, int conn_hdr, int close_after)
{
    fulmen_state *st = c->st;
    int rc;
    if (UNLIKELY(((ResponseObject *)resp)->kind >= RESP_STREAM)) {
        if (((ResponseObject *)resp)->kind == RESP_FILE) {
            /* a whole small file in C, else (conditions, ranges, big
             * files, errors) in Python */
            PyObject *fn = NULL, *r2 = files_response(st, req, resp);
            if (r2 == NULL && !PyErr_Occurred() &&
                (fn = conn_streams_fn("_file_response")) != NULL) {
                r2 = PyObject_CallFunctionObjArgs(fn, req ? (PyObject *)req : Py_None,
                                                  resp, NULL);
                Py_DECREF(fn);
            }
            resp_release(st, resp);
            if (r2 == NULL) {
                PyErr_WriteUnraisable((PyObject *)c);
                r2 = resp_new_simple(st, 500, "Internal Server Error", NULL);
                if (r2 == NULL) {
                    PyErr_WriteUnraisable((PyObject *)c);
                    c->close_after_flush = 1;
                    return 0;
                }
            }
            resp = r2;
        }
        if (((ResponseObject *)resp)->kind == RESP_STREAM) {
            /* logged once answered: here, or at the stream's end (a 500
             * then when it failed before its head went) */
            int code = ((ResponseObject *)resp)->code;
            if (conn_start_stream(c, req, resp, head_only, conn_hdr, close_after)) {
                c->ext->stream_code = (uint16_t)code;
                if (UNLIKELY(c->server->access_log) && c->ext->peer == NULL)
                    conn_fetch_peer(c); /* while the client is there */
                return 1;
            }
            conn_log_stream(c, req, code);
            return 0;
        }
    }
    if (UNLIKELY(c->server->access_log)) {
        size_t mark = st->out_len;
        rc = resp_serialize(st, resp, head_only, conn_hdr);
        conn_access_log(c, req, rc == 0 ? ((ResponseObject *)resp)->code : 500,
                        rc == 0 ? (long long)(st->out_len - mark) : 0);
    } else {
        rc = resp_serialize(st, resp, head_only, conn_hdr);
    }
    if (UNLIKELY(c->server->debug) && req != NULL)
        conn_log(req, rc == 0 ? ((ResponseObject *)resp)->code : 500);
    if (UNLIKELY(rc != 0)) {
        conn_write_failed(c, req, resp, rc, head_only, conn_hdr);
        return 0;
    }
    resp_release(st, resp);
    return 0;
}

/* Serialize one response for a request; unsafe or broken responses become
 * a 500.  Consumes the reference to resp.  Returns 1 when a streamed body
 * started (the stream then owns req and answers in its own time), else 0.
 * An in-memory answer without the access log is done here, inline. */
INLINE int conn_write_response(ConnObject *c, RequestObject *req, PyObject *resp,
                               int head_only, int conn_hdr, int close_after)
{
    int rc;
    c->answered = 1;
    if (UNLIKELY(((ResponseObject *)resp)->kind >= RESP_STREAM || c->server->access_log ||
                 c->server->debug))
        return conn_write_response_slow(c, req, resp, head_only, conn_hdr, close_after);
    rc = resp_serialize(c->st, resp, head_only, conn_hdr);
    if (UNLIKELY(rc != 0))
        conn_write_failed(c, req, resp, rc, head_only, conn_hdr);
    else
        resp_release(c->st, resp);
    return 0;
}

INLINE void conn_request_done(RequestObject *req)
{
    if (UNLIKELY(req->done_callbacks != NULL)) {
        PyObject *cbs = req->done_callbacks, *r;
        Py_ssize_t i;
        /* done: a callback added from now on runs at once
         * (req_add_done_callback), one added by these too */
        req->done_callbacks = Py_NewRef(Py_None);
        for (i = 0; i < PyList_GET_SIZE(cbs); i++) {
            r = PyObject_CallOneArg(PyList_GET_ITEM(cbs, i), (PyObject *)req);
            if (r == NULL)
                PyErr_WriteUnraisable(PyList_GET_ITEM(cbs, i));
            Py_XDECREF(r);
        }
        Py_DECREF(cbs);
    }
    req_release(req);
}

/* ========================================================================
 * Response queue
 */

static int conn_q_grow(ConnObject *c)
{
    uint32_t cap = c->q_cap ? c->q_cap * 2 : 4, s;
    conn_slot *q = PyMem_Calloc(cap, sizeof(conn_slot));
    if (q == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (s = c->q_first; s != c->q_next; s++)
        q[s & (cap - 1)] = c->q[s & (c->q_cap - 1)];
    PyMem_Free(c->q);
    c->q = q;
    c->q_cap = cap;
    return 0;
}

/* Forget a ready slot's answer (nobody to send it to) and finish its
 * request: its done-callbacks run all the same, as for an answer cut
 * short, so that the app's clean-up is never skipped. */
static void conn_slot_drop(conn_slot *s)
{
    RequestObject *r = s->req;
    Py_CLEAR(s->obj);
    s->req = NULL;
    if (r != NULL)
        conn_request_done(r);
}

INLINE uint32_t conn_q_len(ConnObject *c)
{
    return c->q_next - c->q_first;
}

/* A failure nobody can be told of (no memory, mostly) while handling req
 * (NULL: none): report it as unraisable, drop req, and end the connection
 * once what is already queued is out. */
static NOINLINE void conn_give_up(ConnObject *c, RequestObject *req)
{
    PyErr_WriteUnraisable((PyObject *)c);
    if (req != NULL) {
        if (c->pending == req)
            c->pending = NULL;
        req_release(req);
    }
    c->closing = 1;
    c->close_after_flush = 1;
}

static void conn_set_pause(ConnObject *c, int bit, int on)
{
    PyObject *r;
    int want;
    if (on)
        c->pause |= bit;
    else
        c->pause &= ~bit;
    want = c->pause != 0 && !c->lingering;
    if (want == c->reading_paused || c->closed || c->transport == NULL)
        return;
    c->reading_paused = (uint8_t)want;
    if (c->fd >= 0) {
        conn_io_watch(c, !want);
        return;
    }
    r = PyObject_CallMethodNoArgs(c->transport, want ? c->st->s_pause_reading
                                                     : c->st->s_resume_reading);
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)c);
    Py_XDECREF(r);
}

static void conn_process_buffer(ConnObject *c);
static void conn_fail_body_stream(ConnObject *c, PyObject *type, const char *msg);
void req_stream_mark_paused(PyObject *obj);

/* Write every ready response at the head of the queue. */
static void conn_q_drain(ConnObject *c)
{
    while (conn_q_len(c) > 0 && !c->streaming) {
        conn_slot *s = &c->q[c->q_first & (c->q_cap - 1)];
        PyObject *resp;
        RequestObject *req;
        int closes;
        if (!s->ready)
            break;
        resp = s->obj;
        req = s->req;
        s->obj = NULL;
        s->req = NULL;
        s->ready = 0;
        c->q_first++;
        if (s->interim) {
            s->interim = 0;
            if (mod_out_put(c->st, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0)
                PyErr_WriteUnraisable((PyObject *)c);
            continue;
        }
        if (UNLIKELY(req != NULL && conn_bstream(c) != NULL && c->ext->bs_req == req)) {
            /* answered before its body ended: what follows is unknown */
            s->conn_hdr = 1;
            s->close_after = 1;
            conn_fail_body_stream(c, PyExc_ConnectionResetError, "the response was sent");
        }
        if (UNLIKELY((c->closing || c->server->stopping) && conn_q_len(c) == 0)) {
            /* the last answer before a close says so; while stopping, the
             * last one to what was read before ends the connection */
            c->closing = 1;
            s->conn_hdr = 1;
            s->close_after = 1;
        }
        closes = c->close_after_flush;
        if (conn_write_response(c, req, resp, s->head_only, s->conn_hdr,
                                s->close_after))
            break; /* a streamed body: the rest waits for its end */
        if (s->close_after)
            c->close_after_flush = 1;
        if (req != NULL)
            conn_request_done(req);
        if (c->close_after_flush && !closes)
            break; /* that answer ends the connection: none after it */
    }
}

/* ========================================================================
 * Dispatch
 */

static void conn_emit(ConnObject *c, RequestObject *req, PyObject *resp,
                      int head_only, int conn_hdr, int close_after)
{
    uint32_t seq;
    conn_slot *s;
    if (LIKELY(conn_q_len(c) == 0 && !c->streaming)) {
        if (UNLIKELY(req != NULL && conn_bstream(c) != NULL && c->ext->bs_req == req)) {
            conn_hdr = 1;
            close_after = 1;
            conn_fail_body_stream(c, PyExc_ConnectionResetError, "the response was sent");
        }
        if (conn_write_response(c, req, resp, head_only, conn_hdr, close_after))
            return;
        if (close_after)
            c->close_after_flush = 1;
        if (req != NULL)
            conn_request_done(req);
        return;
    }
    if (conn_q_len(c) + 1 >= c->q_cap && conn_q_grow(c) < 0) {
        Py_DECREF(resp);
        conn_give_up(c, req);
        return;
    }
    if (req != NULL && req_own_raw(req) < 0) /* it waits beyond this read */
        PyErr_WriteUnraisable((PyObject *)c);
    seq = c->q_next++;
    s = &c->q[seq & (c->q_cap - 1)];
    s->obj = resp;
    s->req = req;
    s->ready = 1;
    s->interim = 0;
    s->head_only = (uint8_t)head_only;
    s->conn_hdr = (uint8_t)conn_hdr;
    s->close_after = (uint8_t)close_after;
    /* it waits behind an answer that is not ready (an async view, a
     * streamed body): reading stops here as it does for async views */
    if (conn_q_len(c) >= CONN_PIPELINE_HIGH)
        conn_set_pause(c, CONN_PAUSE_PIPELINE, 1);
}

/* Turn the current exception into a response through the app's error hook
 * (which applies the app's error handlers and debug tracebacks); a hook
 * that fails too gives a plain 500.  Returns a new reference. */
static PyObject *conn_error_response(ConnObject *c, RequestObject *req)
{
    PyObject *type, *value, *tb, *res = NULL, *hook = c->server->error_hook;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    if (hook != NULL && hook != Py_None && value != NULL) {
        res = PyObject_CallFunctionObjArgs(hook, req ? (PyObject *)req : Py_None,
                                           value, NULL);
        if (res == NULL)
            PyErr_WriteUnraisable(hook);
    } else if (value != NULL) {
        PyErr_Restore(type, value, tb);
        type = value = tb = NULL;
        PyErr_WriteUnraisable((PyObject *)c);
    }
    if (res == NULL)
        res = resp_new_simple(c->st, 500, "Internal Server Error", NULL);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return res;
}

/* Nothing in flight: no queued response, no partial request, no stream. */
INLINE int conn_idle(ConnObject *c)
{
    return conn_q_len(c) == 0 && !c->streaming && c->pending == NULL &&
           c->buf_len == 0 && conn_ws(c) == NULL;
}

/* Bytes the transport holds, not yet taken by the client (0 when it
 * cannot say). */
static Py_ssize_t conn_unsent(ConnObject *c)
{
    PyObject *r;
    Py_ssize_t n;
    if (c->transport == NULL)
        return 0;
    r = PyObject_CallMethodNoArgs(c->transport, c->st->s_get_write_buffer_size);
    n = r != NULL ? PyLong_AsSsize_t(r) : 0;
    Py_XDECREF(r);
    if (n < 0) {
        PyErr_Clear();
        n = 0;
    }
    return n;
}

/* The transport is a TLS one (those never use direct I/O). */
static NOINLINE int conn_tls(ConnObject *c)
{
    PyObject *r;
    if (c->fd >= 0)
        return 0;
    if (!c->tls_known) {
        r = PyObject_CallMethodOneArg(c->transport, c->st->s_get_extra_info,
                                      c->st->s_sslcontext);
        if (r == NULL) {
            PyErr_Clear();
            return 0; /* asked again next time */
        }
        c->is_tls = r != Py_None;
        c->tls_known = 1;
        Py_DECREF(r);
    }
    return c->is_tls;
}

/* The descriptor of the transport's socket, or -1 (none, or an error). */
static int conn_socket_fd(ConnObject *c)
{
    PyObject *sock = PyObject_CallMethodOneArg(c->transport, c->st->s_get_extra_info,
                                               c->st->s_socket);
    PyObject *r = sock != NULL && sock != Py_None
        ? PyObject_CallMethodNoArgs(sock, c->st->s_fileno) : NULL;
    long fd = r != NULL ? PyLong_AsLong(r) : -1;
    Py_XDECREF(r);
    Py_XDECREF(sock);
    PyErr_Clear();
    return fd >= 0 && fd <= INT_MAX ? (int)fd : -1;
}

/* The streamed answer being sent is cut, and its body ends with the
 * connection (HTTP/1.0, no length): the close must be a reset (RST), else
 * the client takes the cut body for a whole one.  (A reset drops what the
 * socket has not sent yet: other bodies show a cut themselves, no last
 * chunk or short of their length, and close normally.) */
static NOINLINE void conn_reset_cut_close_delimited(ConnObject *c)
{
    static const struct linger rst = {1, 0};
    int fd = c->fd >= 0 ? c->fd : conn_socket_fd(c);
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
}

/* How far the client has got taking what we send, a number that only
 * grows: the bytes it has acknowledged on its TCP connection, or where the
 * kernel cannot say (a unix socket), less the bytes the transport still
 * holds.  A write deadline uses it to tell a client that reads slowly from
 * one that stopped.  (The transport's buffer alone cannot tell: a closing
 * TLS transport hands everything to the socket's transport at once.) */
static NOINLINE uint64_t conn_progress(ConnObject *c)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    int fd = c->fd >= 0 ? c->fd : conn_socket_fd(c);
    memset(&ti, 0, sizeof(ti));
    if (fd >= 0 && getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
        len >= offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
        return ti.tcpi_bytes_acked;
    return UINT64_MAX - (uint64_t)conn_unsent(c);
}

/* Bytes written to the socket that the client has not acknowledged yet
 * (the kernel's send queue); 1 when the kernel cannot say. */
static NOINLINE int conn_unacked(ConnObject *c)
{
    int fd = c->fd >= 0 ? c->fd : conn_socket_fd(c);
    int n = 0;
    if (fd < 0 || ioctl(fd, SIOCOUTQ, &n) < 0)
        return 1;
    return n;
}

/* A TLS connection whose client has not yet taken all we sent (the
 * socket's transport, which only the kernel's queue shows, still writes
 * for it); 0 over plain TCP, whose transport says when it is empty. */
static int conn_tls_owes(ConnObject *c)
{
    return conn_tls(c) && conn_unacked(c) > 0;
}

/* Arm a deadline by which the client must take some of what we send
 * (timer: CONN_T_WRITE, CONN_T_CLOSING or CONN_T_WSCLOSE), and note how
 * far it has got (conn_took).  Without the memory for that, the deadline
 * cuts it whatever it took. */
static NOINLINE void conn_arm_write(ConnObject *c, uint8_t timer, int64_t deadline)
{
    conn_ext *x = conn_ext_get(c);
    c->timer = timer;
    c->deadline = deadline;
    if (x != NULL)
        x->wmark = conn_progress(c);
    else
        PyErr_Clear();
}

/* At such a deadline: has the client taken more since the mark?  (It
 * reads, slowly: the deadline is for a client that stopped reading, not for
 * the time a large answer takes.)  After our WebSocket close frame, only
 * while output is still queued before it: the client then has its time to
 * answer.  After our close, only while output is still on its way: once
 * the client has acknowledged all of it, a TLS connection waits for
 * nothing but the client's close_notify, and the acknowledgement of our
 * last bytes (our close_notify among them) does not say one will come.
 * Moves the mark. */
static int conn_took(ConnObject *c)
{
    uint64_t p;
    int took;
    if (c->ext == NULL)
        return 0;
    p = conn_progress(c);
    took = p > c->ext->wmark && (c->timer != CONN_T_WSCLOSE || conn_unsent(c) > 0) &&
           (c->timer != CONN_T_CLOSING || conn_unsent(c) > 0 || conn_unacked(c) > 0);
    c->ext->wmark = p;
    return took;
}

/* CONN_T_OWED's look at the client's progress: every second, or sooner
 * when a timeout is shorter. */
#define CONN_OWED_LOOK_MS 1000
static int64_t conn_owed_look(ServerObject *srv)
{
    int64_t t = CONN_OWED_LOOK_MS;
    if (srv->body_timeout_ms < t)
        t = srv->body_timeout_ms;
    if (srv->keep_alive_ms < t)
        t = srv->keep_alive_ms;
    return t;
}

/* Re-arm the connection's deadline from its state; now is mod_now_ms(). */
static void conn_rearm(ConnObject *c, int64_t now)
{
    ServerObject *srv = c->server;
    if (c->closed) {
        c->timer = CONN_T_NONE;
        c->deadline = 0;
    } else if (c->timer == CONN_T_CLOSING) {
        /* closed by us: only its deadline is left */
    } else if (conn_ws(c) != NULL) {
        if (c->timer != CONN_T_WSCLOSE && !(c->pause & CONN_PAUSE_WRITE)) {
            int64_t d = ws_deadline(c->ext->ws);
            c->timer = d ? CONN_T_WSPING : CONN_T_NONE; /* else the handler decides */
            c->deadline = d;
        } else if (c->timer != CONN_T_WSCLOSE && c->timer != CONN_T_WRITE) {
            conn_arm_write(c, CONN_T_WRITE, now + srv->body_timeout_ms);
        }
    } else if (c->pause & CONN_PAUSE_WRITE) {
        if (c->timer != CONN_T_WRITE)
            conn_arm_write(c, CONN_T_WRITE, now + srv->body_timeout_ms);
    } else if (UNLIKELY(c->server->tls_ctx != NULL) &&
               (conn_ssl(c) == NULL || !tls_ready(conn_ssl(c)))) {
        /* the handshake gets header_timeout from the connection's start,
         * as uvloop's ssl_handshake_timeout did (conn_expire cuts it) */
        if (c->head_start == 0)
            c->head_start = now;
        c->timer = CONN_T_HEAD;
        c->deadline = c->head_start + srv->header_timeout_ms;
    } else if (UNLIKELY(c->timer == CONN_T_WRITE) && !c->lingering && conn_tls(c)) {
        /* resumed over TLS with output still on its way (conn_resume_writing):
         * the deadline stays until the client has it all (conn_expire) */
    } else if (UNLIKELY(c->lingering)) {
        if (c->timer != CONN_T_LINGER && c->timer != CONN_T_WRITE) {
            c->timer = CONN_T_LINGER;
            c->deadline = now + CONN_LINGER_MS;
        }
    } else if (conn_bstream(c) != NULL && !(c->pause & CONN_PAUSE_BODY)) {
        c->timer = CONN_T_BODY; /* a streamed body: bytes must keep coming */
        c->deadline = now + srv->body_timeout_ms;
    } else if (conn_q_len(c) > 0 || c->streaming) {
        /* the app is working on answers: no timer may cut them (a partial
         * request behind them is timed from its first byte once they are
         * out) */
        if (c->head_start == 0 && (c->pending != NULL || c->buf_len > 0))
            c->head_start = now;
        c->timer = CONN_T_NONE;
        c->deadline = 0;
    } else if (c->pending != NULL || c->buf_len > 0) {
        if (c->pending == NULL || c->stage == STAGE_HEAD) {
            if (c->head_start == 0)
                c->head_start = now;
            c->timer = CONN_T_HEAD;
            c->deadline = c->head_start + srv->header_timeout_ms;
            if (srv->stopping && c->deadline > now + 1000)
                c->deadline = now + 1000; /* stopping: a head gets a short drain */
        } else {
            c->timer = CONN_T_BODY;
            c->deadline = now + srv->body_timeout_ms;
        }
    } else if (srv->stopping) {
        /* idle while stopping: a short drain, then the sweep closes it */
        if (c->timer != CONN_T_IDLE || c->deadline == 0 || c->deadline > now + 1000) {
            c->timer = CONN_T_IDLE;
            c->deadline = now + 1000;
        }
    } else if (UNLIKELY(conn_ssl(c) != NULL) || (UNLIKELY(c->fd < 0) && conn_tls(c))) {
        /* (TLS in C too: a client that takes a large answer slowly is
         * idle from when it has it, not from when the kernel has it) */
        if (c->timer != CONN_T_OWED) {
            c->timer = CONN_T_OWED;
            c->deadline = now + conn_owed_look(srv);
            c->owed_looked = 0;
        }
    } else {
        c->timer = CONN_T_IDLE;
        c->deadline = now + srv->keep_alive_ms;
    }
}

/* A view's result must be a Response; anything else goes through the
 * error hook as a TypeError.  Consumes res, returns a new reference. */
static PyObject *conn_check_response(ConnObject *c, RequestObject *req,
                                     PyObject *res)
{
    if (LIKELY(Py_TYPE(res) == c->st->ResponseType ||
               PyObject_TypeCheck(res, c->st->ResponseType)))
        return res;
    PyErr_Format(PyExc_TypeError, "a view must return a Response, not %.100s",
                 Py_TYPE(res)->tp_name);
    Py_DECREF(res);
    return conn_error_response(c, req);
}

/* Send what is ready at the head of c's queue, in order, in one write. */
static void conn_drain_now(ConnObject *c)
{
    if (c->closed || c->aborted) {
        /* nobody to answer: drop everything that is ready */
        while (conn_q_len(c) > 0) {
            conn_slot *s = &c->q[c->q_first & (c->q_cap - 1)];
            if (!s->ready)
                break;
            conn_slot_drop(s);
            s->ready = 0;
            c->q_first++;
        }
        return;
    }
    mod_refresh_date(c->st);
    conn_q_drain(c);
    if (conn_q_len(c) < CONN_PIPELINE_LOW && (c->pause & CONN_PAUSE_PIPELINE)) {
        conn_set_pause(c, CONN_PAUSE_PIPELINE, 0);
        conn_process_buffer(c);
    }
    if (((c->eof || c->closing) && conn_q_len(c) == 0 && !c->streaming) ||
        (c->server->stopping && c->answered && conn_idle(c)))
        c->close_after_flush = 1;
    if (conn_flush(c) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
    conn_rearm(c, mod_now_ms());
}

/* Server._drain_ready(): the loop callback that sends the answers
 * conn_deliver held back, one write per connection. */
static PyObject *conn_server_drain_ready(ServerObject *srv, PyObject *unused)
{
    PyObject *lst = srv->drain_list;
    Py_ssize_t i;
    srv->drain_list = NULL;
    if (lst == NULL)
        Py_RETURN_NONE;
    for (i = 0; i < PyList_GET_SIZE(lst); i++) {
        ConnObject *c = (ConnObject *)PyList_GET_ITEM(lst, i);
        c->drain_pending = 0;
        if (conn_ws(c) != NULL)
            ws_flush_held(c->ext->ws); /* its frames held back (conn_hold_output) */
        else
            conn_drain_now(c);
    }
    Py_DECREF(lst);
    Py_RETURN_NONE;
}

/* Hold c's ready answers until the loop's next turn, when the answers
 * that finish in this one have joined them.  Returns -1 (nothing was
 * scheduled, no exception set) when the loop cannot take the callback. */
static int conn_schedule_drain(ConnObject *c)
{
    ServerObject *srv = c->server;
    PyObject *r;
    if (c->drain_pending)
        return 0;
    if (srv->drain_cb == NULL &&
        (srv->drain_cb = PyObject_GetAttrString((PyObject *)srv, "_drain_ready")) == NULL)
        goto error;
    if (srv->drain_list == NULL) {
        /* the first of this turn: the list exists while a call is pending */
        PyObject *lst = PyList_New(0);
        if (lst == NULL)
            goto error;
        r = PyObject_CallMethodOneArg(srv->loop, c->st->s_call_soon, srv->drain_cb);
        if (r == NULL) {
            Py_DECREF(lst);
            goto error;
        }
        Py_DECREF(r);
        srv->drain_list = lst;
    }
    if (PyList_Append(srv->drain_list, (PyObject *)c) < 0)
        goto error;
    c->drain_pending = 1;
    return 0;
error:
    PyErr_Clear();
    return -1;
}

/* The view behind slot seq finished with resp (consumed).  Answers leave
 * in request order.  When the head of the queue is ready they go at once
 * if every queued answer is ready; when some are still running, at the
 * loop's next turn: the views of one pipelined batch that finish in the
 * same turn then leave in one write instead of one write each. */
void conn_deliver(ConnObject *c, uint32_t seq, PyObject *resp)
{
    conn_slot *s = &c->q[seq & (c->q_cap - 1)];
    PyObject *old = s->obj;
    uint32_t i;
    resp = conn_check_response(c, s->req, resp);
    s->obj = resp; /* steals */
    s->ready = 1;
    Py_XDECREF(old); /* the Task: the loop holds it while it runs */
    if (!c->q[c->q_first & (c->q_cap - 1)].ready)
        return; /* an earlier answer is still running: it sends this one */
    for (i = c->q_first; i != c->q_next; i++)
        if (!c->q[i & (c->q_cap - 1)].ready)
            break;
    if (i != c->q_next && !c->closed && conn_schedule_drain(c) == 0)
        return;
    conn_drain_now(c);
}

void conn_deliver_error(ConnObject *c, uint32_t seq, RequestObject *req)
{
    conn_deliver(c, seq, conn_error_response(c, req));
}

/* 404, 405 (with Allow), or the automatic answer to OPTIONS; through the
 * app's handler when it registered one for these. */
static PyObject *conn_not_found(ConnObject *c, RequestObject *req, PyObject *allow)
{
    PyObject *hdrs, *res;
    int options = req->h.method_id == H1_M_OPTIONS;
    if (c->server->not_found != NULL)
        return PyObject_CallFunctionObjArgs(c->server->not_found, (PyObject *)req,
                                            allow ? allow : Py_None, NULL);
    if (options && (allow != NULL || (req->h.flags & H1_F_ASTERISK))) {
        hdrs = PyDict_New();
        if (hdrs == NULL)
            return NULL;
        if (allow != NULL && PyDict_SetItemString(hdrs, "Allow", allow) < 0) {
            Py_DECREF(hdrs);
            return NULL;
        }
        res = resp_new_simple(c->st, 204, NULL, hdrs);
        Py_DECREF(hdrs);
        return res;
    }
    if (allow == NULL)
        return resp_new_simple(c->st, 404, "Not Found", NULL);
    hdrs = PyDict_New();
    if (hdrs == NULL)
        return NULL;
    if (PyDict_SetItemString(hdrs, "Allow", allow) < 0) {
        Py_DECREF(hdrs);
        return NULL;
    }
    res = resp_new_simple(c->st, 405, "Method Not Allowed", hdrs);
    Py_DECREF(hdrs);
    return res;
}

/* ------------------------------------------------------------------------
 * Coroutine views.  Each gets its asyncio Task and a copy of the context
 * before it starts; its first step then runs at once, as that Task and in
 * that context (so asyncio.current_task(), asyncio.timeout() and TaskGroup
 * work from its first line, and a ContextVar it sets is its own).  A view
 * that finishes in that step is answered like a sync view's; one that
 * suspends keeps a slot in the queue, which its Task fills (awaitable.c).
 */

/* Find how to set the loop's current task (once). */
static NOINLINE int conn_task_init(fulmen_state *st)
{
    PyObject *mod = PyImport_ImportModule("asyncio.tasks");
    if (mod == NULL)
        return -1;
    st->task_swap = PyObject_GetAttrString(mod, "_swap_current_task");
    if (st->task_swap == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        st->current_tasks = PyObject_GetAttrString(mod, "_current_tasks");
    }
    Py_DECREF(mod);
    if (st->current_tasks != NULL && !PyDict_Check(st->current_tasks)) {
        Py_CLEAR(st->current_tasks);
        PyErr_SetString(PyExc_RuntimeError, "asyncio.tasks._current_tasks is not a dict");
    }
    return st->task_swap != NULL || st->current_tasks != NULL ? 0 : -1;
}

/* Make task (Py_None: no task) the current task of loop, as asyncio's Task
 * does around each step.  Returns the one it replaces (a new reference,
 * Py_None for none), or NULL with an exception set. */
static PyObject *conn_swap_task(fulmen_state *st, PyObject *loop, PyObject *task)
{
    PyObject *prev;
    int rc;
    if (st->task_swap != NULL) {
        PyObject *args[2] = {loop, task};
        return PyObject_Vectorcall(st->task_swap, args, 2, NULL);
    }
    prev = PyDict_GetItemWithError(st->current_tasks, loop);
    if (prev == NULL && PyErr_Occurred())
        return NULL;
    prev = Py_NewRef(prev != NULL ? prev : Py_None);
    if (task != Py_None)
        rc = PyDict_SetItem(st->current_tasks, loop, task);
    else
        rc = prev != Py_None ? PyDict_DelItem(st->current_tasks, loop) : 0;
    if (rc < 0)
        Py_CLEAR(prev);
    return prev;
}

/* The name of route's coroutine views' Tasks: the view's __qualname__. */
static NOINLINE PyObject *conn_task_name(RouteObject *route)
{
    PyObject *name = PyObject_GetAttrString(route->handler, "__qualname__");
    if (name == NULL || !PyUnicode_Check(name)) {
        Py_XDECREF(name);
        PyErr_Clear();
        name = PyObject_Repr(route->handler);
        if (name == NULL)
            return NULL;
    }
    route->task_name = name;
    return name;
}

/* A Task running aw in context ctx on the server's loop.  When the loop's
 * create_task is the stock one and no task factory is set, the Task is made
 * directly as create_task would, but named after the view: CPython 3.11
 * formats a "Task-<n>" name for every unnamed Task, and uvloop's
 * create_task(name=) still formats it before renaming.  On 3.12+ that Task
 * starts eagerly, and *eager says so: its constructor ran the view's first
 * step (awaitable.c). */
static PyObject *conn_new_task(ConnObject *c, RouteObject *route, PyObject *aw,
                               PyObject *ctx, int *eager)
{
    fulmen_state *st = c->st;
    ServerObject *srv = c->server;
    PyObject *loop = srv->loop, *factory, *name;
    if (srv->task_type != NULL && srv->task_type != Py_None && route != NULL) {
        int none;
        factory = PyObject_CallMethodNoArgs(loop, st->s_get_task_factory);
        if (factory == NULL)
            return NULL;
        none = factory == Py_None;
        Py_DECREF(factory);
        if (none) {
            name = route->task_name;
            if (name == NULL && (name = conn_task_name(route)) == NULL)
                return NULL;
#if PY_VERSION_HEX >= 0x030C0000
            if (srv->task_eager) {
                PyObject *args[5] = {aw, loop, name, ctx, Py_True};
                aw_resume_set_eager(aw);
                *eager = 1;
                return PyObject_Vectorcall(srv->task_type, args, 1, st->kw_task_eager);
            }
#endif
            PyObject *args[4] = {aw, loop, name, ctx};
            return PyObject_Vectorcall(srv->task_type, args, 1, st->kw_task);
        }
    }
    PyObject *args[3] = {loop, aw, ctx};
    return PyObject_VectorcallMethod(st->s_create_task, args, 2, st->kw_context);
}

/* Close a coroutine that will not run on, keeping the exception set. */
static void conn_close_coro(ConnObject *c, PyObject *coro)
{
    PyObject *et, *ev, *etb, *r;
    PyErr_Fetch(&et, &ev, &etb);
    r = PyObject_CallMethodNoArgs(coro, c->st->s_close_gen);
    if (r == NULL)
        PyErr_WriteUnraisable(coro);
    Py_XDECREF(r);
    PyErr_Restore(et, ev, etb);
}

/* Start coroutine view coro (stolen) for req: see the banner above. */
static void conn_start_view(ConnObject *c, RequestObject *req, PyObject *coro,
                            int head_only, int conn_hdr, int close_after)
{
    fulmen_state *st = c->st;
    PyObject *loop = c->server->loop;
    PyObject *ctx = NULL, *aw = NULL, *task = NULL, *prev = NULL, *val = NULL;
    PyObject *et, *ev, *etb, *tmp;
    PySendResult r;
    uint32_t seq;
    conn_slot *s;
    int eager = 0;

    if (UNLIKELY(st->task_swap == NULL && st->current_tasks == NULL) &&
        conn_task_init(st) < 0)
        goto not_started;
    if ((ctx = PyContext_CopyCurrent()) == NULL ||
        (aw = aw_resume_new(st, c, req, coro)) == NULL ||
        (task = conn_new_task(c, req->route, aw, ctx, &eager)) == NULL)
        goto not_started;
    if (eager) {
        /* the Task's constructor ran the view's first step */
        r = aw_resume_outcome(aw, &val);
    } else {
        if ((prev = conn_swap_task(st, loop, task)) == NULL)
            goto not_started;
        if (PyContext_Enter(ctx) < 0) {
            tmp = conn_swap_task(st, loop, prev);
            Py_XDECREF(tmp);
            goto not_started;
        }
        r = PyIter_Send(coro, Py_None, &val);
        PyErr_Fetch(&et, &ev, &etb); /* the view's exception, if it raised */
        if (PyContext_Exit(ctx) < 0)
            PyErr_WriteUnraisable((PyObject *)c);
        tmp = conn_swap_task(st, loop, prev);
        if (tmp == NULL)
            PyErr_WriteUnraisable((PyObject *)c);
        Py_XDECREF(tmp);
        PyErr_Restore(et, ev, etb);
    }

    if (r != PYGEN_NEXT) {
        aw_resume_drop(aw);
        val = r == PYGEN_RETURN ? conn_check_response(c, req, val)
                                : conn_error_response(c, req);
        conn_emit(c, req, val, head_only, conn_hdr, close_after);
        goto done;
    }
    /* it suspended (or its eager Task has yet to start it): its Task
     * delivers to slot seq */
    if (req_own_raw(req) < 0 || /* the request outlives this read */
        (conn_q_len(c) + 1 >= c->q_cap && conn_q_grow(c) < 0)) {
        Py_XDECREF(val);
        conn_close_coro(c, coro);
        aw_resume_drop(aw);
        conn_give_up(c, req);
        goto done;
    }
    seq = c->q_next++;
    s = &c->q[seq & (c->q_cap - 1)];
    s->obj = task;
    task = NULL;
    s->req = req;
    s->ready = 0;
    s->interim = 0;
    s->cancelled = 0;
    s->started = c->server->response_timeout_ms ? mod_now_ms() : 0;
    s->head_only = (uint8_t)head_only;
    s->conn_hdr = (uint8_t)conn_hdr;
    s->close_after = (uint8_t)close_after;
    aw_resume_park(aw, seq, val);
    if (conn_q_len(c) >= CONN_PIPELINE_HIGH)
        conn_set_pause(c, CONN_PAUSE_PIPELINE, 1);
    goto done;

not_started: /* no Task to run it in (a loop that is closing, no memory) */
    conn_close_coro(c, coro);
    if (aw != NULL)
        aw_resume_drop(aw);
    conn_emit(c, req, conn_error_response(c, req), head_only, conn_hdr, close_after);
done:
    Py_XDECREF(prev);
    Py_XDECREF(task);
    Py_XDECREF(aw);
    Py_XDECREF(ctx);
    Py_DECREF(coro);
}

/* ========================================================================
 * WebSocket upgrade (RFC 6455 4.2, RFC 7692 5)
 */

static int conn_find_header(RequestObject *r, const char *lname, const char **v,
                            size_t *n)
{
    int i = req_find_header(r, lname);
    if (i < 0)
        return 0;
    *v = r->base + r->h.headers[i].value.off;
    *n = r->h.headers[i].value.len;
    return 1;
}

/* The next field line named lname (lower case) at or after *i: its value
 * in *v, *n, and *i moved past it.  Returns 0 when there is none.  Repeated
 * lines make one comma-separated list (RFC 9110 5.3). */
static int conn_next_header(RequestObject *r, const char *lname, uint32_t *i,
                            const char **v, size_t *n)
{
    int k = req_find_header_from(r, lname, *i);
    if (k < 0)
        return 0;
    *v = r->base + r->h.headers[k].value.off;
    *n = r->h.headers[k].value.len;
    *i = (uint32_t)k + 1;
    return 1;
}

/* Does any field line named lname hold token tok (icase: see mod_list_has)? */
static int conn_header_has_token(RequestObject *r, const char *lname, const char *tok,
                                 int icase)
{
    uint32_t i = 0;
    const char *v;
    size_t n;
    while (conn_next_header(r, lname, &i, &v, &n))
        if (mod_list_has(v, n, tok, strlen(tok), icase))
            return 1;
    return 0;
}

/* Pick the first acceptable permessage-deflate offer (RFC 7692 7.1). */
static void conn_ws_deflate(const char *v, size_t n, ws_deflate_params *dp,
                            char *resp, size_t rcap)
{
    size_t i = 0;
    memset(dp, 0, sizeof(*dp));
    while (i < n) {
        size_t s = i, e;
        int ok = 1, is_pmd = 0, sbits = 15, cbits = 15, sno = 0, cno = 0,
            sbits_set = 0, cbits_set = 0, first = 1;
        while (i < n && v[i] != ',') {
            if (v[i] == '"') { /* quoted values: skip to the closing quote */
                i++;
                while (i < n && v[i] != '"')
                    i++;
            }
            if (i < n)
                i++;
        }
        e = i;
        if (i < n)
            i++;
        /* params separated by ';' */
        while (s < e) {
            size_t ps, pe, eq;
            char name[40], val[16];
            size_t nl, vl = 0;
            while (s < e && (v[s] == ' ' || v[s] == '\t'))
                s++;
            ps = s;
            while (s < e && v[s] != ';')
                s++;
            pe = s;
            if (s < e)
                s++;
            while (pe > ps && (v[pe - 1] == ' ' || v[pe - 1] == '\t'))
                pe--;
            for (eq = ps; eq < pe && v[eq] != '='; eq++)
                ;
            nl = eq;
            while (nl > ps && (v[nl - 1] == ' ' || v[nl - 1] == '\t'))
                nl--;
            nl -= ps;
            if (nl == 0 || nl >= sizeof(name)) {
                ok = 0;
                continue;
            }
            memcpy(name, v + ps, nl);
            name[nl] = 0;
            if (eq < pe) {
                size_t vs = eq + 1, ve = pe;
                while (vs < ve && (v[vs] == ' ' || v[vs] == '\t'))
                    vs++;
                if (ve - vs >= 2 && v[vs] == '"' && v[ve - 1] == '"') {
                    vs++;
                    ve--;
                }
                vl = ve - vs;
                if (vl == 0 || vl >= sizeof(val)) {
                    ok = 0;
                    continue;
                }
                memcpy(val, v + vs, vl);
                val[vl] = 0;
            }
            if (first) {
                first = 0;
                is_pmd = strcasecmp(name, "permessage-deflate") == 0 && vl == 0;
                continue;
            }
            if (!strcasecmp(name, "server_no_context_takeover") && vl == 0 && !sno)
                sno = 1;
            else if (!strcasecmp(name, "client_no_context_takeover") && vl == 0 && !cno)
                cno = 1;
            else if (!strcasecmp(name, "server_max_window_bits") && vl && !sbits_set) {
                sbits = atoi(val);
                sbits_set = 1;
                if (vl > 2 || sbits < 8 || sbits > 15 || val[0] < '0' || val[0] > '9')
                    ok = 0;
                else if (sbits == 8)
                    ok = 0; /* zlib cannot deflate with a 256-byte window */
            } else if (!strcasecmp(name, "client_max_window_bits") && !cbits_set) {
                cbits_set = 1;
                if (vl) {
                    cbits = atoi(val);
                    if (vl > 2 || cbits < 8 || cbits > 15 || val[0] < '0' || val[0] > '9')
                        ok = 0;
                }
            } else {
                ok = 0;
            }
        }
        if (is_pmd && ok) {
            int k;
            dp->enabled = 1;
            dp->server_no_ctx = sno;
            dp->client_no_ctx = cno;
            dp->server_bits = sbits;
            dp->client_bits = 15; /* inflate with the largest window reads any */
            k = snprintf(resp, rcap, "Sec-WebSocket-Extensions: permessage-deflate%s%s",
                         sno ? "; server_no_context_takeover" : "",
                         cno ? "; client_no_context_takeover" : "");
            if (sbits_set && k > 0 && (size_t)k < rcap)
                k += snprintf(resp + k, rcap - (size_t)k, "; server_max_window_bits=%d", sbits);
            if (k > 0 && (size_t)k < rcap)
                snprintf(resp + k, rcap - (size_t)k, "\r\n");
            return;
        }
    }
}

/* The request is for a WebSocket route: answer 101 and hand the connection
 * to a WebSocket, or refuse (426/400).  Takes the reference to req. */
static void conn_upgrade_ws(ConnObject *c, RequestObject *req, RouteObject *route)
{
    fulmen_state *st = c->st;
    const char *v, *key;
    size_t n, keylen;
    char accept[29], ext[200] = "", proto_hdr[160] = "";
    PyObject *subprotocol = Py_None, *res, *fn = NULL, *coro = NULL, *task = NULL,
             *opt;
    ws_deflate_params dp = {0};
    uint64_t max_message = 1 << 20;
    WebSocketObject *ws;
    uint32_t hi = 0;
    int upgrade = (req->h.flags & H1_F_CONN_UPGRADE) &&
                  conn_header_has_token(req, "upgrade", "websocket", 1);
    if (UNLIKELY(c->server->stopping)) {
        /* draining: a WebSocket opened now would be cut at the grace
         * period's end; the client takes it to another worker */
        res = resp_new_simple(st, 503, "Service Unavailable", NULL);
        goto answer;
    }
    if (!upgrade) {
        PyObject *h = Py_BuildValue("{ssss}", "Upgrade", "websocket", "Connection", "Upgrade");
        res = h ? resp_new_simple(st, 426, "Upgrade Required", h) : NULL;
        Py_XDECREF(h);
        goto answer;
    }
    if (req->h.method_id != H1_M_GET || req->h.version_minor != 1 ||
        (req->h.flags & (H1_F_CHUNKED | H1_F_HAS_CL) && req->body.len) ||
        !conn_next_header(req, "sec-websocket-key", &hi, &key, &keylen) ||
        conn_next_header(req, "sec-websocket-key", &hi, &v, &n) || /* RFC 6455 11.3.1 */
        ws_accept_key(key, keylen, accept) < 0 || conn_q_len(c) > 0 || c->streaming) {
        res = resp_new_simple(st, 400, "Bad Request", NULL);
        goto answer;
    }
    accept[28] = 0;
    if (!conn_find_header(req, "sec-websocket-version", &v, &n) || n != 2 ||
        memcmp(v, "13", 2) != 0) {
        PyObject *h = Py_BuildValue("{ss}", "Sec-WebSocket-Version", "13");
        res = h ? resp_new_simple(st, 426, "Upgrade Required", h) : NULL;
        Py_XDECREF(h);
        goto answer;
    }
    /* subprotocol: the first of the route's, in its order, that the client offers */
    opt = PyDict_GetItemString(route->extra, "subprotocols");
    if (opt != NULL && opt != Py_None && conn_find_header(req, "sec-websocket-protocol", &v, &n)) {
        Py_ssize_t i;
        for (i = 0; i < PySequence_Size(opt); i++) {
            PyObject *p = PySequence_GetItem(opt, i);
            const char *ps = p && PyUnicode_Check(p) ? PyUnicode_AsUTF8(p) : NULL;
            if (ps != NULL && strlen(ps) < 100 &&
                conn_header_has_token(req, "sec-websocket-protocol", ps, 0)) {
                subprotocol = p;
                snprintf(proto_hdr, sizeof(proto_hdr), "Sec-WebSocket-Protocol: %s\r\n", ps);
                break;
            }
            Py_XDECREF(p);
            PyErr_Clear();
        }
        if (subprotocol != Py_None)
            Py_DECREF(subprotocol); /* the route's tuple keeps it alive */
    }
    opt = PyDict_GetItemString(route->extra, "compression");
    hi = 0;
    if (opt == NULL || PyObject_IsTrue(opt) == 1)
        while (!dp.enabled && conn_next_header(req, "sec-websocket-extensions", &hi, &v, &n))
            conn_ws_deflate(v, n, &dp, ext, sizeof(ext));
    opt = PyDict_GetItemString(route->extra, "max_message_size");
    if (opt != NULL && PyLong_Check(opt))
        max_message = PyLong_AsUnsignedLongLong(opt);
    PyErr_Clear();
    if (conn_ext_get(c) == NULL)
        goto fail;
    {
        double pi = 20.0, pt = 20.0;
        opt = PyDict_GetItemString(route->extra, "ping_interval");
        if (opt != NULL)
            pi = opt == Py_None ? 0 : PyFloat_AsDouble(opt);
        opt = PyDict_GetItemString(route->extra, "ping_timeout");
        if (opt != NULL)
            pt = opt == Py_None ? 0 : PyFloat_AsDouble(opt);
        PyErr_Clear();
        ws = ws_new(st, c, (PyObject *)req, subprotocol, max_message, &dp, pi, pt);
    }
    if (ws == NULL)
        goto fail;
    fn = conn_streams_fn("_run_websocket");
    if (fn != NULL)
        coro = PyObject_CallFunctionObjArgs(fn, (PyObject *)ws, route->handler, NULL);
    if (coro != NULL)
        task = PyObject_CallMethodOneArg(c->server->loop, st->s_create_task, coro);
    Py_XDECREF(fn);
    Py_XDECREF(coro);
    if (task == NULL) {
        Py_DECREF(ws);
        goto fail;
    }
    {
        char head[512];
        int k = snprintf(head, sizeof(head),
                         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s\r\n",
                         accept, proto_hdr, ext);
        if (mod_out_put(st, head, (size_t)k) < 0)
            PyErr_WriteUnraisable((PyObject *)c);
    }
    c->answered = 1;
    /* the connection is the WebSocket's now: a "close" beside "Upgrade"
     * in Connection (conn_dispatch took it as the end) applied to HTTP */
    c->closing = 0;
    c->client_close = 0;
    c->ext->ws = ws;
    c->ext->ws_task = task;
    c->timer = CONN_T_NONE;
    if (UNLIKELY(c->server->access_log))
        conn_access_log(c, req, 101, -1);
    conn_request_done(req);
    return;
fail:
    PyErr_WriteUnraisable((PyObject *)c);
    res = resp_new_simple(st, 500, "Internal Server Error", NULL);
answer:
    if (res == NULL) {
        conn_give_up(c, req);
        return;
    }
    c->closing = 1;
    conn_emit(c, req, res, 0, 1, 1);
}

/* A generator has am_send too, but a view that returns one (not a
 * @types.coroutine one) returned no awaitable: conn_check_response says
 * what it returned, instead of asyncio's Task failing on what it yields. */
static NOINLINE int conn_plain_generator(PyObject *res)
{
    PyObject *code;
    long flags;
    if (!PyGen_CheckExact(res))
        return 0;
    code = PyObject_GetAttrString(res, "gi_code");
    flags = code != NULL && PyCode_Check(code) ? ((PyCodeObject *)code)->co_flags : 0;
    Py_XDECREF(code);
    PyErr_Clear();
    return !(flags & CO_ITERABLE_COROUTINE);
}

/* Run the view for a complete request.  Takes the reference to req. */
static void conn_dispatch(ConnObject *c, RequestObject *req)
{
    fulmen_state *st = c->st;
    RouteObject *route = req->route;
    PyObject *res, *allow = NULL;
    int head_only = req->h.method_id == H1_M_HEAD;
    int asked = (req->h.flags & H1_F_KEEP_ALIVE) != 0;
    /* while stopping, every answer ends its connection, and says so: the
     * client takes its next request elsewhere instead of racing our close
     * (and nothing read after it is run) */
    int keep = asked && !c->server->stopping;
    int conn_hdr = keep ? (req->h.version_minor == 0 ? 2 : 0) : 1;
    if (!keep) {
        c->closing = 1;
        /* the client's only request: it ends its connection with it */
        c->client_close = !asked && !c->answered && conn_q_len(c) == 0;
    }
    c->server->n_requests++;
    Py_INCREF(c);
    req->conn = c;
    req->start_ns = UNLIKELY(c->server->access_log) ? conn_now_ns() : 0;
    if (UNLIKELY(route == NULL)) {
        h1_span params[FULMEN_MAX_PARAMS];
        int np;
        const char *path = req->base + req->h.path.off;
        size_t plen = req->h.path.len;
        if (plen == 0) {
            path = "/";
            plen = 1;
        }
        (void)router_match(c->server->matcher, path, plen, req->h.method_id,
                           req->base + req->h.method.off, req->h.method.len,
                           params, &np, &allow);
        /* the app's hook (hooks and handlers apply; it may be async) */
        res = conn_not_found(c, req, allow);
    } else if (UNLIKELY(route->is_ws)) {
        conn_upgrade_ws(c, req, route);
        return;
    } else {
        /* the handler's own vectorcall: PyObject_Vectorcall adds a check
         * that a NULL result comes with an exception, which the error path
         * below does not need.  Read in place (CPython 3.11 exports
         * PyVectorcall_Function as a call into libpython). */
        PyObject *h = route->handler;
        PyTypeObject *ht = Py_TYPE(h);
        vectorcallfunc vc = NULL;
        if (LIKELY(PyType_HasFeature(ht, Py_TPFLAGS_HAVE_VECTORCALL)))
            memcpy(&vc, (char *)h + ht->tp_vectorcall_offset, sizeof(vc));
        res = LIKELY(vc != NULL) ? vc(h, (PyObject **)&req, 1, NULL)
                                 : PyObject_Vectorcall(h, (PyObject **)&req, 1, NULL);
    }
    if (UNLIKELY(res == NULL)) {
        res = conn_error_response(c, req);
    } else if (Py_TYPE(res) != st->ResponseType &&
               Py_TYPE(res)->tp_as_async != NULL &&
               Py_TYPE(res)->tp_as_async->am_send != NULL && !conn_plain_generator(res)) {
        conn_start_view(c, req, res, head_only, conn_hdr, !keep);
        return;
    }
    res = conn_check_response(c, req, res);
    conn_emit(c, req, res, head_only, conn_hdr, !keep);
}

/* A framing error: answer it (after the responses ahead of it) and close.
 * req (may be NULL) is the request it is about, still held by the caller:
 * once its method is known to be HEAD, the answer has no content (RFC 9110
 * 9.3.2). */
static void conn_protocol_error(ConnObject *c, int status, RequestObject *req)
{
    PyObject *r;
    const char *reason = resp_reason(status);
    int head_only = req != NULL && req->h.method_id == H1_M_HEAD;
    c->closing = 1;
    r = resp_new_simple(c->st, status, reason ? reason : "Bad Request", NULL);
    if (r == NULL) {
        PyErr_WriteUnraisable((PyObject *)c);
        c->close_after_flush = 1;
        return;
    }
    conn_emit(c, NULL, r, head_only, 1, 1);
}

/* req's body is not read, and the connection ends after its answer: while
 * lingering, the rest of that body may be read and dropped too, up to
 * CONN_LINGER_MAX_KB (a chunked one, of no known size, that much). */
static void conn_linger_for_body(ConnObject *c, RequestObject *req)
{
    uint64_t kb = (req->h.flags & H1_F_CHUNKED) ? CONN_LINGER_MAX_KB
                                                : req->h.content_length / 1024 + CONN_LINGER_KB;
    c->linger_kb = (uint16_t)(kb < CONN_LINGER_MAX_KB ? kb : CONN_LINGER_MAX_KB);
}

/* A 413 for req's declared Content-Length. */
static void conn_413_for_length(ConnObject *c, RequestObject *req)
{
    conn_linger_for_body(c, req);
    conn_protocol_error(c, 413, req);
}

/* req asked for a 100 Continue before it sends its body, and has no route:
 * its 404 or 405 is known now, so it is answered at once, without the body
 * (which its view, the app's not_found hook if any, sees empty), rather
 * than after a 100 that costs the client a round trip and the body's
 * upload (RFC 9110 10.1.1).  The connection ends with the answer, and
 * what of the body the client sends anyway is dropped while lingering.
 * Takes the reference to req. */
static NOINLINE void conn_answer_unread(ConnObject *c, RequestObject *req, const char *p)
{
    conn_linger_for_body(c, req);
    c->pending = NULL;
    c->head_start = 0;
    req->raw = PyBytes_FromStringAndSize(p, (Py_ssize_t)c->head_len);
    if (req->raw == NULL) {
        conn_give_up(c, req);
        return;
    }
    req->base = PyBytes_AS_STRING(req->raw);
    req->rawlen = c->head_len;
    req->body.off = c->head_len;
    req->body.len = 0;
    req->h.flags &= ~H1_F_KEEP_ALIVE; /* the answer says Connection: close */
    conn_dispatch(c, req);
    /* (which took that for the client's own close: it may still send its
     * body, so the close is staged, conn_linger, lest the kernel reset
     * the answer when those bytes arrive) */
    c->client_close = 0;
}

/* Expect: 100-continue: send the interim response now, or in its turn
 * behind the responses still queued ahead of this request. */
static void conn_maybe_continue(ConnObject *c, RequestObject *req)
{
    conn_slot *s;
    if (!(req->h.flags & H1_F_EXPECT_CONTINUE) || c->continue_sent ||
        req->h.version_minor != 1)
        return;
    c->continue_sent = 1;
    if (conn_q_len(c) == 0 && !c->streaming) { /* (else behind that stream's body) */
        if (mod_out_put(c->st, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0)
            PyErr_WriteUnraisable((PyObject *)c);
        return;
    }
    if (conn_q_len(c) + 1 >= c->q_cap && conn_q_grow(c) < 0) {
        PyErr_WriteUnraisable((PyObject *)c);
        return;
    }
    s = &c->q[c->q_next++ & (c->q_cap - 1)];
    memset(s, 0, sizeof(*s));
    s->ready = 1;
    s->interim = 1;
}

/* ========================================================================
 * Request bodies read as they arrive (stream=True routes)
 */

/* The head of req is complete: run its view now and feed it the body as it
 * comes.  Takes the reference to req.  Returns 0, or -1 when the
 * connection must close. */
static int conn_start_body_stream(ConnObject *c, RequestObject *req, char *p,
                                  PyObject *owner, uint64_t max_body)
{
    PyObject *bs;
    conn_ext *x;
    c->pending = NULL;
    c->head_start = 0;
    if (owner == c->st->rbytes)
        owner = NULL; /* the reused read buffer: the request gets a copy */
    req->rawlen = c->head_len;
    if (owner != NULL) {
        Py_INCREF(owner);
        req->raw = owner;
        req->base = p;
    } else {
        req->raw = PyBytes_FromStringAndSize(p, (Py_ssize_t)c->head_len);
        if (req->raw == NULL)
            goto fail;
        req->base = PyBytes_AS_STRING(req->raw);
    }
    req->body.off = c->head_len;
    req->body.len = 0;
    x = conn_ext_get(c);
    if (x == NULL)
        goto fail;
    bs = req_stream_new(c->st, c);
    if (bs == NULL)
        goto fail;
    req->body_stream = bs;
    Py_INCREF(bs);
    x->bstream = bs;
    x->bs_req = req;
    if (req->h.flags & H1_F_CHUNKED) {
        x->bs_chunked = 1;
        h1_chunked_init(&x->chunk, max_body);
    } else {
        x->bs_chunked = 0;
        x->bs_remaining = req->h.content_length;
    }
    conn_maybe_continue(c, req); /* the view is about to read it */
    conn_dispatch(c, req);
    return 0;
fail:
    conn_give_up(c, req);
    return -1;
}

/* The stream is over: with exc NULL the body ended, else it failed. */
static void conn_end_body_stream(ConnObject *c, PyObject *exc)
{
    PyObject *bs = conn_bstream(c);
    if (bs == NULL)
        return;
    c->ext->bstream = NULL;
    c->ext->bs_req = NULL;
    req_stream_end(bs, exc);
    Py_DECREF(bs);
    conn_set_pause(c, CONN_PAUSE_BODY, 0);
}

static void conn_fail_body_stream(ConnObject *c, PyObject *type, const char *msg)
{
    PyObject *exc = PyObject_CallFunction(type, "s", msg);
    if (exc == NULL) {
        /* no memory for it: the stream ends with the error that says so,
         * never as if the body had come whole (NULL means end of body) */
        PyObject *t, *tb;
        PyErr_Fetch(&t, &exc, &tb);
        PyErr_NormalizeException(&t, &exc, &tb);
        Py_XDECREF(t);
        Py_XDECREF(tb);
        if (exc == NULL)
            exc = Py_NewRef(PyExc_MemoryError); /* raised as its type */
    }
    conn_end_body_stream(c, exc);
    Py_XDECREF(exc);
    /* the rest of the body is unknown: nothing after it can be trusted */
    c->closing = 1;
}

/* Feed body bytes p[0..n) to the current body stream.  Returns the bytes
 * consumed, or -1 when the connection must close.  immutable: p may not be
 * decoded in place (chunked bodies then wait for the connection's buffer). */
static size_t conn_stream_body(ConnObject *c, char *p, size_t n, int immutable)
{
    conn_ext *x = c->ext; /* there is a body stream */
    size_t used;
    if (!x->bs_chunked) {
        used = n < x->bs_remaining ? n : (size_t)x->bs_remaining;
        if (req_stream_push(x->bstream, p, used) < 0) {
            PyErr_WriteUnraisable((PyObject *)c);
            conn_fail_body_stream(c, PyExc_MemoryError, "out of memory");
            return (size_t)-1;
        }
        x->bs_remaining -= used;
        if (x->bs_remaining == 0)
            conn_end_body_stream(c, NULL);
    } else {
        size_t src = 0, dst = 0;
        int rc;
        if (immutable)
            return 0;
        rc = h1_chunked_decode(&x->chunk, p, n, &src, &dst);
        if (dst > 0 && req_stream_push(x->bstream, p, dst) < 0) {
            PyErr_WriteUnraisable((PyObject *)c);
            conn_fail_body_stream(c, PyExc_MemoryError, "out of memory");
            return (size_t)-1;
        }
        used = src;
        if (rc == H1_CHUNK_DONE) {
            conn_end_body_stream(c, NULL);
        } else if (rc == H1_CHUNK_TOO_BIG) {
            conn_fail_body_stream(c, c->st->RequestTooLarge, "request body over the limit");
            return (size_t)-1;
        } else if (rc == H1_CHUNK_ERROR) {
            conn_fail_body_stream(c, c->st->BadRequest, "malformed chunked body");
            return (size_t)-1;
        }
    }
    if (x->bstream != NULL && req_stream_buffered(x->bstream) > 0) {
        /* the view is behind: stop reading until it catches up */
        req_stream_mark_paused(x->bstream);
        conn_set_pause(c, CONN_PAUSE_BODY, 1);
    }
    return used;
}

void conn_body_drained(ConnObject *c)
{
    if (!(c->pause & CONN_PAUSE_BODY))
        return;
    conn_set_pause(c, CONN_PAUSE_BODY, 0);
    if (c->closed)
        return;
    conn_process_buffer(c);
    if (conn_flush(c) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
    conn_rearm(c, mod_now_ms());
}

/* The pending request's Content-Length body did not all come with its
 * head (p[0..avail): the head, then the body's first bytes).  Instead of
 * growing the connection's buffer until the body is whole, then copying it
 * into the request's bytes and once more into request.body, the head gets
 * its own bytes and the body goes straight into request.body's, allocated
 * whole now (the pages fill as the bytes arrive; the length was checked
 * against the body limit).  body.len counts the bytes in so far.  Returns
 * -1, with no exception, when out of memory: the buffer takes over. */
static int conn_sink_start(ConnObject *c, RequestObject *req, const char *p, size_t avail)
{
    size_t have = avail - c->head_len;
    PyObject *head = PyBytes_FromStringAndSize(p, c->head_len), *body = NULL;
    if (head == NULL)
        goto error;
    body = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)req->h.content_length);
    if (body == NULL)
        goto error;
    memcpy(PyBytes_AS_STRING(body), p + c->head_len, have);
    req->raw = head;
    req->base = PyBytes_AS_STRING(head);
    req->rawlen = c->head_len;
    req->py_body = body;
    req->body.off = c->head_len;
    req->body.len = (uint32_t)have;
    c->stage = STAGE_SINK;
    return 0;
error:
    PyErr_Clear();
    Py_XDECREF(head);
    return -1;
}

/* STAGE_SINK: take what p[0..avail) holds of the body.  Returns the bytes
 * taken; the body is whole when body.len reaches the Content-Length. */
static size_t conn_sink_fill(RequestObject *req, const char *p, size_t avail)
{
    size_t want = (size_t)req->h.content_length - req->body.len;
    size_t n = avail < want ? avail : want;
    memcpy(PyBytes_AS_STRING(req->py_body) + req->body.len, p, n);
    req->body.len += (uint32_t)n;
    return n;
}

/* Parse and dispatch whole requests from p[0..len).  owner is the bytes
 * object p lives in (requests then reference it without a copy), or NULL
 * when p is the connection's own buffer (requests get a copy, and chunked
 * bodies are decoded in place).  Returns the bytes consumed; the caller
 * keeps the rest. */
static size_t conn_process(ConnObject *c, char *p, size_t len, PyObject *owner)
{
    fulmen_state *st = c->st;
    ServerObject *srv = c->server;
    size_t pos = 0;
    while (pos < len && conn_reads_on(c) &&
           !(c->pause & (CONN_PAUSE_WRITE | CONN_PAUSE_PIPELINE | CONN_PAUSE_BODY))) {
        RequestObject *req;
        size_t avail = len - pos, total, rawlen;
        if (UNLIKELY(conn_bstream(c) != NULL)) {
            /* the body of a request already handed to its view */
            size_t used = conn_stream_body(c, p + pos, avail, owner != NULL);
            if (used == (size_t)-1)
                return len;
            pos += used;
            if (conn_bstream(c) != NULL)
                break; /* more to come, or the view must read first */
            continue;
        }
        req = c->pending;
        if (req == NULL) {
            req = req_acquire(st, srv->max_headers);
            if (req == NULL || (UNLIKELY(srv->max_headers > req->header_cap) &&
                                req_ensure_header_cap(req, srv->max_headers) < 0)) {
                conn_give_up(c, req);
                return len;
            }
            h1_parser_init(&req->parser, srv->max_header_size, srv->max_headers);
            c->stage = STAGE_HEAD;
            c->continue_sent = 0;
            c->pending = req;
        }
        if (UNLIKELY(c->stage == STAGE_SINK)) {
            pos += conn_sink_fill(req, p + pos, avail);
            if (req->body.len < req->h.content_length)
                break; /* all taken: more to come */
            c->pending = NULL;
            c->head_start = 0;
            goto run;
        }
        if (c->stage == STAGE_HEAD) {
            int n = h1_parse_request(&req->parser, p + pos, avail, &req->h);
            RouteObject *route;
            uint64_t max_body;
            PyObject *allow;
            const char *path;
            size_t plen;
            int i;
            if (n == H1_PARTIAL)
                break;
            if (UNLIKELY(n == H1_ERROR)) {
                int status = req->h.error_status ? req->h.error_status : 400;
                c->pending = NULL;
                conn_protocol_error(c, status, req);
                req_release(req);
                return len;
            }
            if (UNLIKELY(req->h.method_id == H1_M_CONNECT)) {
                /* a 2xx to CONNECT opens a tunnel (RFC 9110 9.3.6): a
                 * proxy in front would then pass the bytes that follow
                 * through unchecked while we read them as requests.  We
                 * tunnel nothing, whatever the routes say. */
                c->pending = NULL;
                conn_protocol_error(c, 501, req);
                req_release(req);
                return len;
            }
            c->head_len = (uint32_t)n;
            path = p + pos + req->h.path.off;
            plen = req->h.path.len;
            if (plen == 0) {
                path = "/";
                plen = 1;
            }
            route = router_match(srv->matcher, path, plen, req->h.method_id,
                                 p + pos + req->h.method.off, req->h.method.len,
                                 req->params, &req->n_params, &allow);
            if (route != NULL) {
                Py_INCREF(route);
                req->route = route;
                for (i = 0; i < req->n_params; i++)
                    req->params[i].off += req->h.path.off;
            }
            if (UNLIKELY(route == NULL && (req->h.flags & H1_F_EXPECT_CONTINUE) &&
                         req->h.version_minor == 1 &&
                         ((req->h.flags & H1_F_CHUNKED) || req->h.content_length > 0))) {
                conn_answer_unread(c, req, p + pos);
                return len;
            }
            max_body = (route && route->max_body) ? route->max_body : srv->max_body_size;
            if (UNLIKELY(route != NULL && route->is_stream &&
                         ((req->h.flags & H1_F_CHUNKED) ||
                          ((req->h.flags & H1_F_HAS_CL) && req->h.content_length > 0)))) {
                if (!(req->h.flags & H1_F_CHUNKED) && req->h.content_length > max_body) {
                    c->pending = NULL;
                    conn_413_for_length(c, req);
                    req_release(req);
                    return len;
                }
                if (conn_start_body_stream(c, req, p + pos, owner, max_body) < 0)
                    return len;
                pos += c->head_len;
                continue;
            }
            if (UNLIKELY(max_body > FULMEN_MAX_MEMORY_BODY))
                max_body = FULMEN_MAX_MEMORY_BODY;
            if (req->h.flags & H1_F_CHUNKED) {
                conn_ext *x = conn_ext_get(c);
                if (x == NULL) {
                    conn_give_up(c, req);
                    return len;
                }
                c->stage = STAGE_CHUNKED;
                h1_chunked_init(&x->chunk, max_body);
                x->csrc = x->cdst = c->head_len;
            } else {
                if (req->h.content_length > max_body) { /* 0 without one */
                    c->pending = NULL;
                    conn_413_for_length(c, req);
                    req_release(req);
                    return len;
                }
                c->stage = STAGE_BODY;
            }
        }
        if (c->stage == STAGE_BODY) {
            /* Content-Length bytes (the parser's 0 without one) */
            uint64_t need = req->h.content_length;
            total = c->head_len + need;
            if (avail < total) {
                conn_maybe_continue(c, req);
                if (need >= CONN_SINK_MIN && conn_sink_start(c, req, p + pos, avail) == 0)
                    pos = len; /* all taken */
                break;
            }
            req->body.off = c->head_len;
            req->body.len = (uint32_t)need;
            rawlen = total;
        } else {
            conn_ext *x = c->ext; /* made at STAGE_CHUNKED */
            size_t src, dst;
            int rc;
            if (owner != NULL)
                break; /* decoded in place: the caller moves it to our buffer */
            src = x->csrc;
            dst = x->cdst;
            rc = h1_chunked_decode(&x->chunk, p + pos, avail, &src, &dst);
            x->csrc = src;
            x->cdst = dst;
            if (rc == H1_CHUNK_PARTIAL) {
                if (x->chunk.total == 0)
                    conn_maybe_continue(c, req);
                break;
            }
            if (rc != H1_CHUNK_DONE) {
                c->pending = NULL;
                conn_protocol_error(c, rc == H1_CHUNK_TOO_BIG ? 413 : 400, req);
                req_release(req);
                return len;
            }
            req->body.off = c->head_len;
            req->body.len = (uint32_t)(dst - c->head_len);
            total = src;
            rawlen = dst;
        }
        /* a whole request: give it its bytes and run it */
        c->pending = NULL;
        c->head_start = 0;
        if (owner != NULL) {
            Py_INCREF(owner);
            req->raw = owner;
            req->base = p + pos;
        } else {
            /* our buffer: the request gets a copy, and a big body (a
             * chunked one, decoded here) its own bytes, the ones
             * request.body hands out, rather than a second copy later */
            int split = req->body.len >= CONN_SINK_MIN;
            if (split)
                rawlen = c->head_len;
            req->raw = PyBytes_FromStringAndSize(p + pos, (Py_ssize_t)rawlen);
            if (req->raw != NULL && split)
                req->py_body = PyBytes_FromStringAndSize(p + pos + req->body.off,
                                                         (Py_ssize_t)req->body.len);
            if (req->raw == NULL || (split && req->py_body == NULL)) {
                conn_give_up(c, req);
                return len;
            }
            req->base = PyBytes_AS_STRING(req->raw);
        }
        req->rawlen = (uint32_t)rawlen;
        pos += total;
    run:
        conn_dispatch(c, req);
        if (UNLIKELY(conn_ws(c) != NULL)) {
            /* upgraded: what follows the request is WebSocket frames */
            if (pos < len)
                ws_feed(c->ext->ws, p + pos, len - pos);
            return len;
        }
        if (UNLIKELY(st->out_len + st->out_big > CONN_OUT_HIGH) &&
            conn_flush(c) < 0) /* may pause writing, which ends the loop */
            PyErr_WriteUnraisable((PyObject *)c);
    }
    return pos;
}

/* ========================================================================
 * Streamed responses
 *
 * The head goes out like any other; the body is produced by a Task running
 * fulmen.streams._stream_body, which calls _stream_write() per item (framed
 * here, in C) and awaits the future it returns while the transport is
 * above its high-water mark.  _stream_end() finishes the framing and lets
 * the responses queued behind the stream go.
 */

static int conn_start_stream(ConnObject *c, RequestObject *req, PyObject *resp,
                             int head_only, int conn_hdr, int close_after)
{
    fulmen_state *st = c->st;
    PyObject *fn = NULL, *coro = NULL, *task = NULL;
    conn_ext *x;
    uint64_t length;
    size_t at = st->out_len;
    int frame = resp_serialize_stream_head(st, resp, conn_hdr,
                                           req == NULL || req->h.version_minor >= 1,
                                           &length);
    if (frame < 0) {
        conn_write_failed(c, req, resp, frame, head_only, conn_hdr);
        return 0;
    }
    if (frame == RESP_FRAME_CLOSE) {
        /* the answer ends the connection (its body is delimited by the
         * close, RFC 9112 6.3): no request after it is read, and none
         * already read is answered, as that answer would read as more of
         * the body (RFC 9112 9.6) */
        c->closing = 1;
    }
    if (head_only || frame == RESP_FRAME_NONE) {
        /* the head is the whole answer: the iterable is never run */
        if (frame == RESP_FRAME_CLOSE)
            c->close_after_flush = 1;
        resp_release(st, resp);
        return 0;
    }
    x = conn_ext_get(c);
    fn = x != NULL ? conn_streams_fn("_stream_body") : NULL;
    if (fn != NULL)
        coro = PyObject_CallFunctionObjArgs(fn, (PyObject *)c,
                                            ((ResponseObject *)resp)->stream, NULL);
    if (coro != NULL)
        task = PyObject_CallMethodOneArg(c->server->loop, st->s_create_task, coro);
    Py_XDECREF(fn);
    Py_XDECREF(coro);
    resp_release(st, resp);
    if (task == NULL) {
        /* the head is out but no body will follow: end the connection */
        conn_give_up(c, NULL);
        return 0;
    }
    c->streaming = 1;
    /* the head waits for the first item (conn_stream_head_out) */
    x->stream_head = PyBytes_FromStringAndSize(st->out + at, (Py_ssize_t)(st->out_len - at));
    if (x->stream_head != NULL)
        st->out_len = at;
    else
        PyErr_Clear(); /* out of memory: it goes now, as a cut 200 if need be */
    x->stream_failed = 0;
    x->stream_frame = (uint8_t)frame;
    x->stream_left = length;
    x->stream_close = (uint8_t)(close_after || frame == RESP_FRAME_CLOSE);
    x->stream_req = req;
    x->stream_task = task;
    x->stream_begun = 0;
    /* after the client's FIN, a body of no announced length is not begun
     * (conn_eof_received says why) */
    x->stream_stop = c->eof && frame != RESP_FRAME_LENGTH;
    return 1;
}

/* The future that a writer awaits while the transport is above its
 * high-water mark; resume_writing resolves it (conn_wake_stream).  Returns
 * a new reference, or NULL with an exception set. */
static PyObject *conn_waiter(ConnObject *c)
{
    conn_ext *x = conn_ext_get(c);
    int pending;
    if (x == NULL)
        return NULL;
    /* (one whose awaiter was cancelled is done: a new one then) */
    if ((pending = mod_future_pending(c->st, &x->stream_waiter)) < 0)
        return NULL;
    if (!pending) {
        x->stream_waiter = conn_new_future(c);
        if (x->stream_waiter == NULL)
            return NULL;
    }
    return Py_NewRef(x->stream_waiter);
}

/* The stream's head, held back until now (conn_start_stream), goes into
 * the output.  Returns 1 when it did, 0 when it had already, -1 (exception). */
static int conn_stream_head_out(ConnObject *c)
{
    PyObject *h = c->ext->stream_head;
    int rc;
    if (h == NULL)
        return 0;
    rc = mod_out_put(c->st, PyBytes_AS_STRING(h), (size_t)PyBytes_GET_SIZE(h));
    Py_CLEAR(c->ext->stream_head);
    return rc < 0 ? -1 : 1;
}

/* The held-back head of a stream whose iterator began CONN_STREAM_HEAD_MS
 * ago without an item goes at the sweep after that: a client (or a proxy's
 * read timeout) waiting for a stream's first event must not wait for the
 * head too.  An iterator that fails before then gets a 500; one that has
 * failed is not answered 200 while it closes. */
#define CONN_STREAM_HEAD_MS 1000
static int conn_stream_head_due(ConnObject *c, int64_t now)
{
    return c->streaming && c->ext->stream_head != NULL && c->ext->stream_begun &&
           !c->ext->stream_failed && now - c->ext->stream_begun_at >= CONN_STREAM_HEAD_MS;
}

static PyObject *conn_stream_write(ConnObject *c, PyObject *data)
{
    fulmen_state *st = c->st;
    Py_buffer view;
    PyObject *enc = NULL;
    char hex[24];
    int n, head;
    if (conn_gone(c) || !c->streaming || c->transport == NULL) {
        PyErr_SetString(st->ClientDisconnected, "the client has gone");
        return NULL;
    }
    if (PyUnicode_Check(data)) {
        enc = PyUnicode_AsUTF8String(data);
        if (enc == NULL)
            return NULL;
        data = enc;
    }
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        Py_XDECREF(enc);
        PyErr_Format(PyExc_TypeError, "a stream must yield bytes or str, not %.100s",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    if (c->ext->stream_frame == RESP_FRAME_LENGTH) {
        /* more than the app announced would be read as the start of the
         * next response: refuse the item, and the stream is aborted */
        if ((uint64_t)view.len > c->ext->stream_left) {
            PyBuffer_Release(&view);
            Py_XDECREF(enc);
            PyErr_Format(PyExc_RuntimeError,
                         "the stream yields more than its Content-Length "
                         "(%zd bytes with %llu left)", view.len,
                         (unsigned long long)c->ext->stream_left);
            return NULL;
        }
        c->ext->stream_left -= (uint64_t)view.len;
    }
    /* (an empty item too: sendfile comes after it, and after the head) */
    head = conn_stream_head_out(c);
    if (head < 0 || (head > 0 && view.len == 0 && conn_flush(c) < 0)) {
        PyBuffer_Release(&view);
        Py_XDECREF(enc);
        return NULL;
    }
    if (view.len > 0) {
        int ok;
        if (c->ext->stream_frame == RESP_FRAME_CHUNKED) {
            n = snprintf(hex, sizeof(hex), "%zx\r\n", (size_t)view.len);
            ok = mod_out_put(st, hex, (size_t)n) == 0 &&
                 mod_out_body(st, PyBytes_CheckExact(data) ? data : NULL, view.buf,
                              (size_t)view.len) == 0 &&
                 mod_out_put(st, "\r\n", 2) == 0;
        } else {
            ok = mod_out_body(st, PyBytes_CheckExact(data) ? data : NULL, view.buf,
                              (size_t)view.len) == 0;
        }
        if (!ok || conn_flush(c) < 0) {
            PyBuffer_Release(&view);
            Py_XDECREF(enc);
            return NULL;
        }
    }
    PyBuffer_Release(&view);
    Py_XDECREF(enc);
    if (c->pause & CONN_PAUSE_WRITE)
        return conn_waiter(c);
    Py_RETURN_NONE;
}

static void conn_wake_stream(ConnObject *c)
{
    if (c->ext != NULL)
        mod_future_settle(c->st, &c->ext->stream_waiter, NULL, NULL);
}

/* _stream_sent(n): n body bytes went out without _stream_write (sendfile). */
static PyObject *conn_stream_sent(ConnObject *c, PyObject *nobj)
{
    unsigned long long n = PyLong_AsUnsignedLongLong(nobj);
    if (n == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (c->streaming && c->ext->stream_frame == RESP_FRAME_LENGTH)
        c->ext->stream_left -= n < c->ext->stream_left ? n : c->ext->stream_left;
    Py_RETURN_NONE;
}

/* _stream_begin(): the stream's first step; False when the client left
 * before it and the body is not to be produced. */
static PyObject *conn_stream_begin(ConnObject *c, PyObject *unused)
{
    if (!c->streaming)
        Py_RETURN_FALSE;
    c->ext->stream_begun = 1;
    c->ext->stream_begun_at = mod_now_ms();
    return PyBool_FromLong(!c->ext->stream_stop && !c->closed && c->transport != NULL);
}

/* _stream_failed(): the app's iterator raised (_stream_end says the rest) */
static PyObject *conn_stream_failed(ConnObject *c, PyObject *unused)
{
    if (c->streaming)
        c->ext->stream_failed = 1;
    Py_RETURN_NONE;
}

static PyObject *conn_stream_end(ConnObject *c, PyObject *okobj)
{
    int ok = PyObject_IsTrue(okobj), aborted = 0;
    RequestObject *req;
    if (!c->streaming)
        Py_RETURN_NONE;
    c->streaming = 0;
    Py_CLEAR(c->ext->stream_task);
    conn_wake_stream(c);
    req = c->ext->stream_req;
    c->ext->stream_req = NULL;
    if (!c->closed && c->transport != NULL) {
        int failed = c->ext->stream_failed;
        if (ok && c->ext->stream_frame == RESP_FRAME_LENGTH && c->ext->stream_left > 0) {
            PySys_FormatStderr("fulmen: the response to %R ended %llu bytes short of its "
                               "Content-Length; %s (a file that got shorter as it was sent, "
                               "or a stream that stopped early)\n",
                               req != NULL ? (PyObject *)req : Py_None,
                               (unsigned long long)c->ext->stream_left,
                               c->ext->stream_head ? "answered 500" : "the connection is aborted");
            ok = 0;
            failed = 1;
        }
        if (ok && conn_stream_head_out(c) < 0) {
            PyErr_WriteUnraisable((PyObject *)c);
            ok = 0;
        }
        if (ok && c->ext->stream_frame == RESP_FRAME_CHUNKED &&
            mod_out_put(c->st, "0\r\n\r\n", 5) < 0)
            ok = 0;
        if (!ok && c->ext->stream_head != NULL) {
            /* nothing of this answer went out: the app's failure is a 500
             * (whole, so what follows it could be read, but its requests'
             * views may have run with no answer: the connection ends) and
             * a stream not produced (the client left) sends nothing */
            c->closing = 1;
            c->close_after_flush = 1;
            if (failed && !c->ext->stream_stop) {
                c->ext->stream_code = 500;
                if (resp_serialize_status(c->st, 500, "Internal Server Error", 0, 1, NULL) < 0)
                    PyErr_WriteUnraisable((PyObject *)c);
            }
        } else if (!ok) {
            /* the body is cut short: the client must not take it as whole,
             * so nothing may follow it, not even the answers queued behind
             * it (they would read as the rest of the body).  What went out
             * before it still goes (the answers ahead of it are whole),
             * then the connection closes; one whose body ends with the
             * close is reset at once instead. */
            c->st->out_len = 0;
            c->closing = 1;
            if (c->ext->stream_frame == RESP_FRAME_CLOSE) {
                aborted = 1;
                conn_reset_cut_close_delimited(c);
                conn_abort(c);
            } else {
                c->close_after_flush = 1;
            }
        } else if (c->ext->stream_close) {
            c->closing = 1;
            c->close_after_flush = 1;
        }
    }
    Py_CLEAR(c->ext->stream_head);
    if (req != NULL) {
        conn_log_stream(c, req, c->ext->stream_code);
        conn_request_done(req);
    }
    if (!c->closed && !aborted) {
        if (!c->close_after_flush) {
            /* (else this answer ends the connection: what is queued
             * behind it is dropped with it) */
            conn_q_drain(c);
            if (conn_q_len(c) < CONN_PIPELINE_LOW && (c->pause & CONN_PAUSE_PIPELINE))
                conn_set_pause(c, CONN_PAUSE_PIPELINE, 0);
            if (!c->pause)
                conn_process_buffer(c);
        }
        if ((c->eof && conn_q_len(c) == 0 && !c->streaming) ||
            (c->server->stopping && conn_idle(c)))
            c->close_after_flush = 1;
        if (conn_flush(c) < 0)
            PyErr_WriteUnraisable((PyObject *)c);
        conn_rearm(c, mod_now_ms());
    }
    Py_RETURN_NONE;
}

PyObject *conn_get_transport(ConnObject *c);

static PyObject *conn_get_closed(ConnObject *c, void *unused)
{
    return PyBool_FromLong(c->closed || c->transport == NULL);
}

/* ========================================================================
 * Buffering of partial requests
 */

/* Append to the connection's buffer.  What the buffer may hold is bounded
 * by the parser's limits, checked as it parses (431/413); this only grows
 * it. */
static int conn_buf_append(ConnObject *c, const char *p, size_t n)
{
    size_t need = c->buf_len + n;
    if (need > c->buf_cap) {
        size_t cap = c->buf_cap ? c->buf_cap : 1024;
        char *b;
        while (cap < need)
            cap *= 2;
        b = PyMem_Realloc(c->buf, cap);
        if (b == NULL) {
            PyErr_NoMemory();
            conn_give_up(c, NULL);
            return -1;
        }
        c->buf = b;
        c->buf_cap = cap;
    }
    memcpy(c->buf + c->buf_len, p, n);
    c->buf_len += n;
    return 0;
}

static void conn_buf_free(ConnObject *c)
{
    PyMem_Free(c->buf);
    c->buf = NULL;
    c->buf_len = c->buf_cap = 0;
}

static void conn_process_buffer(ConnObject *c)
{
    size_t n, limit;
    ServerObject *srv = c->server;
    uint64_t body;
    if (c->buf_len == 0 || !conn_reads_on(c))
        return;
    n = conn_process(c, c->buf, c->buf_len, NULL);
    if (!conn_reads_on(c) || n >= c->buf_len) {
        if (n < c->buf_len)
            c->unread_input = 1;
        conn_buf_free(c);
        return;
    }
    if (n > 0) {
        memmove(c->buf, c->buf + n, c->buf_len - n);
        c->buf_len -= n;
    }
    /* What is left is one incomplete request (its head is bounded by the
     * parser, its body by the body limit, a chunked one by twice that for
     * framing) plus, while paused, unread pipelined bytes of at most a few
     * reads.  Anything past that is a bug or an attack: 413 and close. */
    body = (c->pending != NULL && c->pending->route != NULL && c->pending->route->max_body)
               ? c->pending->route->max_body : srv->max_body_size;
    if (body > FULMEN_MAX_MEMORY_BODY)
        body = FULMEN_MAX_MEMORY_BODY;
    limit = (size_t)srv->max_header_size + (size_t)body * 2 + (1u << 20);
    if (c->buf_len > limit) {
        conn_buf_free(c);
        conn_protocol_error(c, 413, c->pending);
    }
}

/* ========================================================================
 * Protocol methods called by uvloop
 */

static void conn_io_attach(ConnObject *c);
static void conn_tls_attach(ConnObject *c, PyObject *data);
static void conn_tls_drop(ConnObject *c);

static PyObject *conn_data_received(ConnObject *c, PyObject *data)
{
    fulmen_state *st = c->st;
    Py_buffer view;
    c->server->io_turn++;
    if (UNLIKELY(c->server->tls_ctx != NULL) && conn_ssl(c) == NULL) {
        /* the first bytes of a TLS connection (uvloop reads once before
         * the socket can be taken over): they start the handshake */
        if (!c->io_checked && !c->closed)
            conn_tls_attach(c, data);
        Py_RETURN_NONE;
    }
    if (!conn_reads_on(c) || c->closed) {
        if (UNLIKELY(c->lingering))
            conn_linger_drop(c, data);
        Py_RETURN_NONE;
    }
    if (UNLIKELY(conn_ws(c) != NULL)) {
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
            return NULL;
        ws_feed(c->ext->ws, view.buf, (size_t)view.len);
        PyBuffer_Release(&view);
        if (conn_flush(c) < 0)
            PyErr_WriteUnraisable((PyObject *)c);
        if (conn_ws(c) != NULL)
            conn_rearm(c, mod_now_ms());
        Py_RETURN_NONE;
    }
    mod_refresh_date(st);
    if (LIKELY(PyBytes_CheckExact(data))) {
        char *p = PyBytes_AS_STRING(data);
        size_t len = (size_t)PyBytes_GET_SIZE(data), n;
        if (LIKELY(c->buf_len == 0)) {
            n = conn_process(c, p, len, data);
            if (n < len && conn_reads_on(c))
                conn_buf_append(c, p + n, len - n);
            else if (n < len)
                c->unread_input = 1;
        } else {
            conn_buf_append(c, p, len);
        }
    } else {
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
            return NULL;
        conn_buf_append(c, view.buf, (size_t)view.len);
        PyBuffer_Release(&view);
    }
    conn_process_buffer(c);
    if (c->closing && c->pending != NULL) {
        RequestObject *r = c->pending;
        c->pending = NULL;
        c->unread_input = 1;
        req_release(r);
    }
    if ((c->closing && conn_q_len(c) == 0 && !c->streaming) ||
        (c->server->stopping && c->answered && conn_idle(c)))
        c->close_after_flush = 1;
    if (conn_flush(c) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
    conn_rearm(c, mod_now_ms());
    if (UNLIKELY(!c->io_checked))
        conn_io_attach(c);
    Py_RETURN_NONE;
}

static PyObject *conn_connection_made(ConnObject *c, PyObject *transport)
{
    Py_INCREF(transport);
    Py_XSETREF(c->transport, transport);
    c->server->n_conns++;
    /* link into the server's list (the list holds no reference) */
    c->prev = NULL;
    c->next = c->server->conn_head;
    if (c->next != NULL)
        c->next->prev = c;
    c->server->conn_head = c;
    conn_rearm(c, mod_now_ms());
    Py_RETURN_NONE;
}

static void conn_unlink(ConnObject *c)
{
    ServerObject *srv = c->server;
    if (srv == NULL || (c->prev == NULL && srv->conn_head != c))
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conn_head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* A queued coroutine view that response_timeout applies to and that has
 * not been cancelled yet. */
static int conn_view_timed(conn_slot *s)
{
    return !s->ready && !s->cancelled && s->started != 0 && s->req != NULL &&
           !(s->req->route != NULL && s->req->route->is_stream);
}

/* The client of a timed view has gone: the sweep no longer sees the
 * connection, so a loop timer cancels the view at its deadline. */
static NOINLINE void conn_view_orphan(ConnObject *c, conn_slot *s)
{
    int64_t left = s->started + c->server->response_timeout_ms - mod_now_ms();
    PyObject *cancel = PyObject_GetAttrString(s->obj, "cancel"), *h = NULL;
    s->cancelled = 1;
    if (cancel != NULL)
        h = PyObject_CallMethod(c->server->loop, "call_later", "dO",
                                left > 0 ? (double)left / 1000 : 0.0, cancel);
    if (h == NULL)
        PyErr_WriteUnraisable((PyObject *)c);
    Py_XDECREF(h);
    Py_XDECREF(cancel);
}

static void conn_drop_state(ConnObject *c)
{
    uint32_t s;
    if (c->pending != NULL) {
        RequestObject *r = c->pending;
        c->pending = NULL;
        req_release(r);
    }
    conn_buf_free(c);
    for (s = c->q_first; s != c->q_next; s++) {
        conn_slot *q = &c->q[s & (c->q_cap - 1)];
        if (q->ready)
            conn_slot_drop(q);
        else if (UNLIKELY(c->server->response_timeout_ms) && conn_view_timed(q))
            conn_view_orphan(c, q);
        /* pending slots keep their Task and request: the Task delivers to
         * a closed connection, which drops the response */
    }
}

static PyObject *conn_connection_lost(ConnObject *c, PyObject *exc)
{
    if (!c->closed) {
        c->closed = 1;
        c->closing = 1;
        c->server->n_conns--;
        conn_unlink(c);
        if (UNLIKELY(c->server->on_conn_lost != NULL && c->server->on_conn_lost != Py_None)) {
            PyObject *r = PyObject_CallNoArgs(c->server->on_conn_lost);
            if (r == NULL)
                PyErr_WriteUnraisable(c->server->on_conn_lost);
            Py_XDECREF(r);
        }
    }
    conn_drop_state(c);
    if (conn_ws(c) != NULL) {
        WebSocketObject *ws = c->ext->ws;
        PyObject *exc;
        c->ext->ws = NULL;
        ws_connection_lost(ws);
        /* a send that waits for the client to read learns it never will */
        exc = ws_closed_exception(ws);
        if (exc != NULL)
            mod_future_fail_quietly(c->st, &c->ext->stream_waiter, exc);
        else
            PyErr_WriteUnraisable((PyObject *)c);
        Py_XDECREF(exc);
        Py_DECREF(ws);
        Py_CLEAR(c->ext->ws_task);
    }
    conn_wake_stream(c);
    if (conn_bstream(c) != NULL) {
        PyObject *exc = PyObject_CallFunction(c->st->ClientDisconnected, "s",
                                              "the client has gone");
        conn_end_body_stream(c, exc);
        Py_XDECREF(exc);
    }
    conn_rearm(c, 0);
    if (c->fd >= 0) {
        /* the transport closed the socket: leave the epoll set (a closed
         * fd has left it already) and drop the set's reference */
        conn_io_end(c);
        if (c->tls_c)
            conn_tls_drop(c);
        c->fd = -1;
        c->server->n_direct--;
        Py_DECREF(c); /* the caller still holds one */
    }
    Py_CLEAR(c->transport);
    Py_RETURN_NONE;
}

static PyObject *conn_eof_received(ConnObject *c, PyObject *unused)
{
    /* The client will send nothing more.  Answer what is queued, then
     * close; an incomplete request is dropped. */
    c->eof = 1;
    c->closing = 1;
    if (conn_ws(c) != NULL)
        goto closes;
    if (conn_bstream(c) != NULL)
        /* the rest of a body the view is reading can never arrive: fail
         * its stream now rather than after body_timeout */
        conn_fail_body_stream(c, c->st->BadRequest,
                              "the client stopped sending before the body ended");
    if (c->streaming && c->ext->stream_task != NULL &&
        c->ext->stream_frame != RESP_FRAME_LENGTH) {
        /* the client stopped sending while a body of no announced length
         * streams to it: it has in all likelihood gone, and a stream (SSE,
         * say) may not write again for a long time; stop producing now
         * instead of at that write.  A body whose length the answer gave
         * (a file, say) has an end: a client that only shut its sending
         * side (RFC 9112 9.6) gets it whole, one that has gone makes the
         * next write fail. */
        PyObject *r;
        if (!c->ext->stream_begun) {
            c->ext->stream_stop = 1; /* _stream_begin() will say so */
        } else {
            r = PyObject_CallMethod(c->ext->stream_task, "cancel", NULL);
            if (r == NULL)
                PyErr_WriteUnraisable((PyObject *)c);
            Py_XDECREF(r);
        }
    }
    /* keep the transport open for what is still to be sent; a TLS
     * transport closes after a close_notify whatever we say (and logs a
     * warning each time we ask otherwise) */
    if ((conn_q_len(c) > 0 || c->streaming) && !conn_tls(c))
        Py_RETURN_TRUE;
closes:
    /* the transport closes itself now: what it still holds (and a TLS
     * close_notify exchange) gets the deadline of any closing connection */
    conn_closing(c);
    Py_RETURN_FALSE;
}

static PyObject *conn_pause_writing(ConnObject *c, PyObject *unused)
{
    conn_set_pause(c, CONN_PAUSE_WRITE, 1);
    conn_rearm(c, mod_now_ms());
    Py_RETURN_NONE;
}

static PyObject *conn_resume_writing(ConnObject *c, PyObject *unused)
{
    conn_set_pause(c, CONN_PAUSE_WRITE, 0);
    conn_wake_stream(c);
    /* the write deadline ends; a close's (ours, or our WebSocket close
     * frame's) stays.  Over TLS it ends once the client has all we sent:
     * the TLS layer resumes us when it has handed its bytes on, which may
     * be megabytes the socket's own transport still holds */
    if (c->timer == CONN_T_WRITE && !conn_tls_owes(c))
        c->timer = CONN_T_NONE;
    conn_rearm(c, mod_now_ms());
    if (!c->pause)
        conn_process_buffer(c);
    if (conn_flush(c) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
    Py_RETURN_NONE;
}

/* ========================================================================
 * Direct I/O (see the top of the file)
 */

/* Put c's socket in the server's epoll set, or take it out.  Out rather
 * than muted: a muted socket would still report EPOLLHUP on every wait.
 * Edge-triggered: the kernel does not poll a socket again after reporting
 * it, so conn_io_read() reads until the socket is drained, or re-arms it
 * (adding a socket reports it at once if it is readable).  EPOLLRDHUP says
 * the peer's FIN is in, so that a short read is not taken for drained. */
static void conn_tls_kick(ConnObject *c);

static void conn_io_watch(ConnObject *c, int on)
{
    struct epoll_event ev;
    if (c->fd < 0 || (on && c->io_done) || on == c->io_watched)
        return;
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = c;
    if (epoll_ctl(c->server->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, c->fd, &ev) == 0 ||
        !on)
        c->io_watched = (uint8_t)on;
    if (on && c->io_watched && conn_ssl(c) != NULL && tls_pending(conn_ssl(c)))
        conn_tls_kick(c); /* SSL holds input the socket will not report */
}

/* No more reads on c (EOF, an error, or the transport is being closed). */
static void conn_io_end(ConnObject *c)
{
    if (c->fd < 0)
        return;
    c->io_done = 1;
    conn_io_watch(c, 0);
}

/* transport.abort(): the connection is gone, or what it carries must not
 * go on; nothing more is read from it or written to it. */
static void conn_abort(ConnObject *c)
{
    PyObject *r;
    c->aborted = 1;
    conn_io_end(c);
    r = PyObject_CallMethodNoArgs(c->transport, c->st->s_abort);
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)c);
    Py_XDECREF(r);
}

/* The server's epoll set, watched by the loop; made on first use.  Returns
 * 0, -1 with an exception, or -2 when no descriptor was left for it. */
static int conn_io_setup(ServerObject *srv)
{
    PyObject *cb, *r;
    if (srv->epfd >= 0)
        return 0;
    srv->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (srv->epfd < 0)
        return -2; /* no descriptor to spare (EMFILE): not now, no exception */
    cb = PyObject_GetAttrString((PyObject *)srv, "_io_ready");
    r = cb ? PyObject_CallMethod(srv->loop, "add_reader", "iO", srv->epfd, cb) : NULL;
    Py_XDECREF(cb);
    if (r == NULL) {
        close(srv->epfd);
        srv->epfd = -1;
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* After the first read from the transport: take the socket's data path
 * over if it is a plain socket.  Any failure leaves the transport to it. */
static void conn_io_attach(ConnObject *c)
{
    ServerObject *srv = c->server;
    int fd, rc;
    c->io_checked = 1;
    if (!srv->direct_io || c->closed || c->closing || c->transport == NULL)
        return;
    if (conn_tls(c) || (fd = conn_socket_fd(c)) < 0)
        return;
    if ((rc = conn_io_setup(srv)) < 0) {
        /* out of descriptors (a flood of connections before the first
         * request): this one stays with the transport and the next one
         * tries again; any other failure turns direct I/O off */
        if (rc == -1) {
            PyErr_WriteUnraisable((PyObject *)c);
            srv->direct_io = 0;
        }
        goto out;
    }
    if (!c->reading_paused) {
        /* the transport stops reading; our epoll set reads instead */
        PyObject *p = PyObject_CallMethodNoArgs(c->transport, c->st->s_pause_reading);
        if (p == NULL)
            goto out;
        Py_DECREF(p);
    }
    c->fd = fd;
    Py_INCREF(c); /* held while c->fd is set: epoll events point at c */
    conn_io_watch(c, !c->reading_paused);
    if (!c->reading_paused && !c->io_watched) {
        /* not watchable after all: give reading back to the transport */
        PyObject *p = PyObject_CallMethodNoArgs(c->transport, c->st->s_resume_reading);
        Py_XDECREF(p);
        c->fd = -1;
        Py_DECREF(c);
    } else {
        srv->n_direct++;
    }
out:
    PyErr_Clear();
}

/* The end of the client's stream (n == 0 from recv, a close_notify or a
 * FIN over TLS): eof_received decides, as the transport would ask it. */
static void conn_io_eof(ConnObject *c)
{
    PyObject *r = conn_eof_received(c, NULL);
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)c);
    if (r != Py_True)
        conn_close_transport(c, 0);
    Py_XDECREF(r);
}

/* No more reads on c: the client's end of stream (eof), else an error
 * (a reset, a broken TLS stream), after which the connection is gone. */
static void conn_io_stop(ConnObject *c, int eof)
{
    conn_io_end(c);
    if (eof)
        conn_io_eof(c);
    else if (!c->closed && c->transport != NULL)
        conn_abort(c);
}

/* After a read loop's last round, with maybe more waiting: re-arm c's
 * socket (edge-triggered, it would not be reported again) so that other
 * sockets go first.  Returns whether it did. */
static int conn_io_rearm(ConnObject *c)
{
    struct epoll_event ev;
    if (c->fd < 0 || !c->io_watched || c->io_done || c->closed)
        return 0;
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = c;
    (void)epoll_ctl(c->server->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    return 1;
}

/* The read buffer, at its full size, or NULL (reported) when out of
 * memory.  One bytes object takes every read while nothing keeps it: its
 * size is set to what arrived.  Nobody else holds it then, and no Python
 * code ever sees it (requests copy what they hand out), so no hash of it
 * can be cached. */
static PyObject *conn_rbuf(ConnObject *c)
{
    fulmen_state *st = c->st;
    PyObject *b = st->rbytes;
    if (b == NULL && (b = st->rbytes = PyBytes_FromStringAndSize(NULL, CONN_RBUF)) == NULL) {
        PyErr_WriteUnraisable((PyObject *)c);
        return NULL;
    }
    Py_SET_SIZE(b, CONN_RBUF);
    return b;
}

/* The n bytes read into b (conn_rbuf's) go to conn_data_received. */
static void conn_io_deliver(ConnObject *c, PyObject *b, Py_ssize_t n)
{
    PyObject *r;
    Py_SET_SIZE(b, n);
    PyBytes_AS_STRING(b)[n] = '\0';
    Py_INCREF(b);
    r = conn_data_received(c, b);
    if (Py_REFCNT(b) > 2)
        Py_CLEAR(c->st->rbytes); /* kept (a request that waits): theirs now */
    Py_DECREF(b);
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)c);
    Py_XDECREF(r);
}

/* A TLS connection's socket is readable: SSL_read until it wants more
 * from the socket (it has then drained it: edge-triggered epoll reports
 * the next bytes), the handshake first.  The records SSL writes on the way
 * (the handshake's, session tickets, an alert) are sent at once.  After
 * CONN_TLS_ROUNDS reads, other sockets go first: the socket is re-armed,
 * and input SSL already holds is read from a loop callback. */
#define CONN_TLS_ROUNDS 8
static void conn_tls_read(ConnObject *c, uint32_t events)
{
    int rounds, n, was_ready;
    for (rounds = 0; rounds < CONN_TLS_ROUNDS; rounds++) {
        PyObject *b;
        if (c->fd < 0 || c->io_done || !c->io_watched || c->closed || conn_ssl(c) == NULL)
            return;
        if ((b = conn_rbuf(c)) == NULL)
            return;
        was_ready = tls_ready(conn_ssl(c));
        n = tls_read(conn_ssl(c), PyBytes_AS_STRING(b), CONN_RBUF);
        if (UNLIKELY(c->server->tls_out.len > 0) && conn_tls_push(c) < 0)
            PyErr_WriteUnraisable((PyObject *)c);
        if (UNLIKELY(!was_ready) && tls_ready(conn_ssl(c))) {
            c->head_start = 0; /* the first head is timed from its first byte */
            conn_rearm(c, mod_now_ms());
        }
        if (n > 0) {
            conn_io_deliver(c, b, n);
            if (c->fd >= 0 && conn_ssl(c) != NULL && tls_drained(conn_ssl(c)) &&
                !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                return; /* drained: more data is a new edge */
            continue;   /* (after a FIN, read on to the end of the stream) */
        }
        if (n == TLS_AGAIN)
            return;
        conn_io_stop(c, n == TLS_EOF); /* else not TLS, or broken */
        return;
    }
    if (conn_io_rearm(c) && conn_ssl(c) != NULL && tls_pending(conn_ssl(c)))
        conn_tls_kick(c);
}

/* Connection._tls_kick(): read what SSL holds (a loop callback). */
static PyObject *conn_tls_kick_cb(ConnObject *c, PyObject *unused)
{
    c->server->io_turn++;
    if (conn_ssl(c) != NULL)
        conn_tls_read(c, 0);
    Py_RETURN_NONE;
}

/* Have the loop call conn_tls_read soon. */
static NOINLINE void conn_tls_kick(ConnObject *c)
{
    PyObject *cb = PyObject_GetAttrString((PyObject *)c, "_tls_kick");
    PyObject *r = cb != NULL ? PyObject_CallMethod(c->server->loop, "call_soon", "O", cb)
                             : NULL;
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)c);
    Py_XDECREF(r);
    Py_XDECREF(cb);
}

/* Free c's SSL and its place in the server's tls_tab (the socket is
 * closed, or about to be). */
static void conn_tls_drop(ConnObject *c)
{
    ServerObject *srv = c->server;
    if (!c->tls_c)
        return;
    c->tls_c = 0;
    if (c->fd >= 0 && c->fd < srv->tls_tab_len && srv->tls_tab[c->fd] != NULL &&
        tls_owner(srv->tls_tab[c->fd]) == c) {
        tls_free(srv->tls_tab[c->fd]);
        srv->tls_tab[c->fd] = NULL;
    }
}

/* Free the SSL in the server's tls_tab[fd] now, before its connection's
 * connection_lost.  Nothing of that connection may reach the descriptor
 * afterwards, not even as plain bytes: it is marked aborted, so its output
 * is dropped, and reads nothing more. */
static void conn_tls_evict(ServerObject *srv, int fd)
{
    ConnObject *old;
    if (srv->tls_tab[fd] == NULL)
        return; /* (gone meanwhile: conn_tls_tab_close's abort) */
    old = tls_owner(srv->tls_tab[fd]);
    if (old != NULL && old->tls_c && old->fd == fd) {
        old->aborted = 1;
        old->io_done = 1;
        conn_tls_drop(old);
    }
    if (srv->tls_tab[fd] != NULL)
        tls_free(srv->tls_tab[fd]);
    srv->tls_tab[fd] = NULL;
}

/* The server is closed (close_io): every SSL still in its tls_tab goes,
 * and its connection is cut (its transport aborted, which closes the
 * socket; its connection_lost comes later, or never if the loop does not
 * run again). */
static void conn_tls_tab_close(ServerObject *srv)
{
    int fd;
    for (fd = 0; fd < srv->tls_tab_len; fd++) {
        ConnObject *owner;
        if (srv->tls_tab[fd] == NULL)
            continue;
        owner = tls_owner(srv->tls_tab[fd]);
        if (owner != NULL && owner->tls_c && owner->fd == fd && !owner->aborted &&
            owner->transport != NULL) {
            conn_abort(owner);
        }
        conn_tls_evict(srv, fd);
    }
}

/* Make room for descriptor fd in the server's tls_tab.  0, or -1 when
 * out of memory (no exception). */
static NOINLINE int conn_tls_tab_fit(ServerObject *srv, int fd)
{
    int n = srv->tls_tab_len ? srv->tls_tab_len : 1024;
    struct ssl_st **t;
    if (fd < srv->tls_tab_len)
        return 0;
    while (n <= fd)
        n *= 2;
    t = PyMem_RawRealloc(srv->tls_tab, (size_t)n * sizeof(*t));
    if (t == NULL)
        return -1;
    memset(t + srv->tls_tab_len, 0, (size_t)(n - srv->tls_tab_len) * sizeof(*t));
    srv->tls_tab = t;
    srv->tls_tab_len = n;
    return 0;
}

/* The first read on a TLS server's connection (data: its bytes): the
 * transport stops reading, the socket is ours with an SSL on it, and the
 * handshake starts with data.  (uvloop starts reading after
 * connection_made returns, so it cannot be stopped before this first
 * read.)  A connection that cannot have that (no descriptor to spare for
 * the epoll set, no memory) is aborted: the transport cannot speak TLS. */
static void conn_tls_attach(ConnObject *c, PyObject *data)
{
    ServerObject *srv = c->server;
    PyObject *p;
    Py_buffer v;
    struct ssl_st *ssl;
    int fd, rc;
    c->io_checked = 1;
    if (c->transport == NULL)
        return;
    if (!srv->direct_io || (fd = conn_socket_fd(c)) < 0)
        goto fail; /* (no direct I/O: the server is closed, close_io) */
    if ((rc = conn_io_setup(srv)) < 0) {
        if (rc == -1)
            PyErr_WriteUnraisable((PyObject *)c);
        goto fail;
    }
    p = PyObject_CallMethodNoArgs(c->transport, c->st->s_pause_reading);
    if (p == NULL)
        goto fail;
    Py_DECREF(p);
    if (PyObject_GetBuffer(data, &v, PyBUF_SIMPLE) < 0)
        goto fail;
    ssl = tls_new(srv->tls_ctx, srv->tls_meth, &srv->tls_out, fd, v.buf, (size_t)v.len);
    PyBuffer_Release(&v);
    if (ssl == NULL || conn_tls_tab_fit(srv, fd) < 0) {
        tls_free(ssl);
        goto fail;
    }
    if (srv->tls_tab[fd] != NULL) {
        /* the descriptor of a connection whose socket is closed but whose
         * connection_lost has not run yet: that SSL goes now */
        conn_tls_evict(srv, fd);
    }
    tls_set_owner(ssl, c);
    srv->tls_tab[fd] = ssl;
    c->tls_c = 1;
    c->fd = fd;
    Py_INCREF(c); /* held while c->fd is set: epoll events point at c */
    srv->n_direct++;
    conn_io_watch(c, 1);
    if (!c->io_watched) {
        conn_abort(c);
        return;
    }
    conn_tls_read(c, 0); /* what data brought */
    return;
fail:
    PyErr_Clear();
    conn_abort(c);
}

int conn_is_tls(ConnObject *c)
{
    /* every connection of a server with TLS in C speaks it, closed or not */
    return c->server->tls_ctx != NULL || (c->transport != NULL && conn_tls(c));
}

static PyObject *conn_get_tls(ConnObject *c, void *unused)
{
    return PyBool_FromLong(conn_is_tls(c));
}

/* Connection._tls_info(): tls.c's tls_info of the connection's SSL, or
 * None (no TLS in C, or the connection is gone). */
static PyObject *conn_tls_info(ConnObject *c, PyObject *unused)
{
    if (conn_ssl(c) == NULL || c->closed)
        Py_RETURN_NONE;
    return tls_info(conn_ssl(c));
}

/* request.transport: the transport, which under TLS in C is uvloop's
 * plain one; a view then gets fulmen._tls.TLSTransport around it, whose
 * get_extra_info() answers "peercert", "cipher", "ssl_object" and
 * "sslcontext" as uvloop's TLS transport does. */
PyObject *conn_view_transport(ConnObject *c)
{
    PyObject *mod, *t;
    if (LIKELY(c->server->tls_ctx == NULL) || c->transport == NULL)
        return conn_get_transport(c);
    mod = PyImport_ImportModule("fulmen._tls");
    if (mod == NULL)
        return NULL;
    t = PyObject_CallMethod(mod, "TLSTransport", "OOO", c->transport, (PyObject *)c,
                            c->server->tls_pyctx);
    Py_DECREF(mod);
    return t;
}

/* c's socket is readable (events: what epoll reported): what the
 * transport would do, done here. */
static void conn_io_read(ConnObject *c, uint32_t events)
{
    int rounds;
    if (conn_ssl(c) != NULL) {
        conn_tls_read(c, events);
        return;
    }
    for (rounds = 0; rounds < 4; rounds++) {
        ssize_t n;
        PyObject *b;
        if (c->fd < 0 || c->io_done || !c->io_watched || c->closed)
            return;
        if ((b = conn_rbuf(c)) == NULL)
            return;
        n = recv(c->fd, PyBytes_AS_STRING(b), CONN_RBUF, MSG_DONTWAIT);
        if (n > 0) {
            conn_io_deliver(c, b, n);
            if (n < CONN_RBUF && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                return; /* drained: more data is a new edge */
            continue;   /* (after a FIN, read on to the end of the stream) */
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_io_stop(c, n == 0); /* else a reset or other error */
        return;
    }
    /* four full reads and maybe more waiting: let other sockets go first */
    conn_io_rearm(c);
}

/* Server._io_ready(): the loop saw the epoll set readable. */
static PyObject *conn_server_io_ready(ServerObject *srv, PyObject *unused)
{
    struct epoll_event ev[CONN_EVENTS];
    int n, i, rounds = 0;
    srv->io_turn++;
    /* sockets that became ready while we worked are taken in the same
     * call, a few rounds at most: cheaper than a turn of the loop each */
    while (srv->epfd >= 0 && rounds++ < CONN_IO_ROUNDS &&
           (n = epoll_wait(srv->epfd, ev, CONN_EVENTS, 0)) > 0) {
        for (i = 0; i < n; i++) {
            ConnObject *c = ev[i].data.ptr;
            Py_INCREF(c);
            conn_io_read(c, ev[i].events);
            Py_DECREF(c);
        }
    }
    Py_RETURN_NONE;
}

/* Server.close_io(): stop watching the epoll set (at shutdown). */
static PyObject *conn_server_close_io(ServerObject *srv, PyObject *unused)
{
    if (srv->epfd >= 0) {
        PyObject *r = PyObject_CallMethod(srv->loop, "remove_reader", "i", srv->epfd);
        if (r == NULL)
            PyErr_WriteUnraisable((PyObject *)srv);
        Py_XDECREF(r);
        close(srv->epfd);
        srv->epfd = -1;
    }
    srv->direct_io = 0;
    conn_tls_tab_close(srv);
    Py_RETURN_NONE;
}

/* Close in stages (RFC 9112 9.6) instead of at once: closing a socket that
 * holds unread bytes from the client makes the kernel send RST, which
 * discards what the client has not read yet, our last answers included
 * (a pipelining client keeps sending after the request that closes).  So
 * the sending side is shut once the output is out (write_eof), and what
 * the client still sends is read and dropped until it closes its side (EOF
 * closes, as on any connection) or for CONN_LINGER_MS, counted once the
 * transport holds nothing more to send (body_timeout bounds that wait, as
 * for any answer the client does not read).
 * Returns 1 when lingering has started, 0 when the caller closes now: the
 * client has closed already (EOF: nothing can follow); or it ended the
 * connection with its first request, every byte it sent was read and the
 * answer is all in the kernel's hands (it sends no more, RFC 9112 9.6:
 * nothing is there to reset on; a client that pipelined other requests
 * before that one may not have seen the close coming, so it gets the
 * staged close, as nginx does); a WebSocket; or a transport that cannot
 * half-close (TLS). */
static NOINLINE int conn_linger(ConnObject *c)
{
    PyObject *r;
    int ok;
    if (c->eof || c->aborted || c->lingering || conn_ws(c) != NULL)
        return 0;
    if (c->client_close && !c->unread_input && c->pending == NULL && conn_bstream(c) == NULL &&
        conn_io_writable(c))
        return 0;
    conn_tls_bye(c); /* close_notify, then our FIN */
    r = PyObject_CallMethod(c->transport, "can_write_eof", NULL);
    ok = r != NULL && PyObject_IsTrue(r) == 1;
    Py_XDECREF(r);
    if (ok) {
        r = PyObject_CallMethod(c->transport, "write_eof", NULL);
        ok = r != NULL;
        Py_XDECREF(r);
    }
    if (!ok) {
        PyErr_Clear();
        return 0;
    }
    c->closing = 1;
    c->lingering = 1;
    if (c->linger_kb == 0)
        c->linger_kb = CONN_LINGER_KB;
    conn_set_pause(c, 0, 0); /* reading resumes whatever paused it */
    c->timer = CONN_T_NONE;
    conn_rearm(c, mod_now_ms());
    return 1;
}

/* data arrived while lingering: dropped, and counted against
 * c->linger_kb; past that, the socket closes now. */
static NOINLINE void conn_linger_drop(ConnObject *c, PyObject *data)
{
    Py_ssize_t n = PyObject_Size(data);
    if (n < 0) {
        PyErr_Clear();
        n = (Py_ssize_t)CONN_LINGER_MAX_KB * 1024;
    }
    n = (n + 1023) / 1024;
    if (n <= c->linger_kb) {
        c->linger_kb -= (uint16_t)n;
        return;
    }
    conn_close_now(c);
}


/* Called after transport.close(): the client must keep taking the output
 * the transport still holds, with no pause of body_timeout, else the
 * connection is aborted.  (The transport keeps a closing socket open until
 * its buffer drains, so a client that never reads would hold the socket,
 * and its connection slot, for ever.)  A TLS transport gets the deadline
 * even when it seems to hold nothing: it has handed what is left to the
 * socket's own transport, and then waits for the client's close_notify,
 * which a client may never send.  A write deadline already set stays, as
 * the close's: it is earlier. */
static void conn_closing(ConnObject *c)
{
    if (c->closed || c->aborted || c->transport == NULL || c->timer == CONN_T_CLOSING)
        return;
    if (c->timer == CONN_T_WRITE) {
        c->timer = CONN_T_CLOSING; /* its deadline and mark stay */
        return;
    }
    if (conn_unsent(c) > 0 || conn_tls(c)) {
        int64_t wait = c->server->body_timeout_ms;
        /* stopping: a TLS connection with nothing left to write waits only
         * for the socket to send its last bytes and for the client's
         * close_notify, which the server need not have (RFC 8446 6.1) and
         * which a client may never send: the short drain of a closing idle
         * connection, as over TCP the socket closes at once (a client still
         * taking output gets more, conn_took) */
        if (c->server->stopping && wait > 1000 && conn_unsent(c) == 0)
            wait = 1000;
        conn_arm_write(c, CONN_T_CLOSING, mod_now_ms() + wait);
    }
}

/* transport.close() now: what it holds is still written, within
 * body_timeout (conn_closing). */
static void conn_close_now(ConnObject *c)
{
    PyObject *r;
    conn_io_end(c);
    conn_tls_bye(c);
    r = PyObject_CallMethodNoArgs(c->transport, c->st->s_close);
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)c);
    else
        conn_closing(c);
    Py_XDECREF(r);
}

/* The sweep found c past its deadline. */
static void conn_expire(ConnObject *c)
{
    fulmen_state *st = c->st;
    PyObject *r;
    int cut = 0;
    if (UNLIKELY(c->server->tls_ctx != NULL) && c->timer == CONN_T_HEAD &&
        (conn_ssl(c) == NULL || !tls_ready(conn_ssl(c))) && !c->closed) {
        /* a handshake not done within header_timeout: cut, as uvloop's
         * ssl_handshake_timeout did */
        c->timer = CONN_T_NONE;
        c->deadline = 0;
        c->closing = 1;
        conn_abort(c);
        return;
    }
    if ((c->timer == CONN_T_WRITE || c->timer == CONN_T_CLOSING ||
         c->timer == CONN_T_WSCLOSE) && conn_took(c)) {
        /* the client takes its answers, slowly: more time */
        c->deadline = mod_now_ms() + (c->timer == CONN_T_WSCLOSE ? CONN_WSCLOSE_MS
                                                                 : c->server->body_timeout_ms);
        return;
    }
    if (c->timer == CONN_T_OWED && !c->owed_looked) {
        /* the first look, CONN_OWED_LOOK_MS after the answer */
        ServerObject *srv = c->server;
        int64_t now = mod_now_ms();
        if (conn_unacked(c) == 0) {
            /* the client has it all: idle since the answer */
            c->timer = CONN_T_IDLE;
            c->deadline += srv->keep_alive_ms - conn_owed_look(srv);
            if (c->deadline > now)
                return;
            /* keep-alive is over (it is no longer than a look): closes */
        } else {
            /* follow its progress from now (so never cut early) */
            conn_arm_write(c, CONN_T_OWED, now + conn_owed_look(srv));
            c->owed_looked = 1;
            if (c->ext != NULL)
                c->ext->taken_at = now;
            return;
        }
    }
    if (c->timer == CONN_T_OWED) {
        ServerObject *srv = c->server;
        int64_t now = mod_now_ms();
        /* without the memory to follow it, as if it took nothing */
        int64_t last = c->ext != NULL ? c->ext->taken_at : now - srv->body_timeout_ms;
        if (conn_took(c)) {
            last = now;
            if (c->ext != NULL)
                c->ext->taken_at = now;
        }
        if (conn_unacked(c) == 0) {
            /* the client has it all, since the last look at most: idle
             * from now (up to CONN_OWED_LOOK_MS late, never early) */
            c->timer = CONN_T_IDLE;
            c->deadline = now + srv->keep_alive_ms;
            return;
        }
        if (now - last < srv->body_timeout_ms && now - last < srv->keep_alive_ms) {
            c->deadline = now + conn_owed_look(srv);
            return;
        }
        if (now - last < srv->body_timeout_ms)
            c->timer = CONN_T_IDLE; /* keep-alive is over: closes (conn_closing) */
        /* else stalled for body_timeout: aborted below */
    }
    if (c->timer == CONN_T_WRITE && !(c->pause & CONN_PAUSE_WRITE) && !c->lingering &&
        conn_tls(c) && conn_unacked(c) == 0) {
        /* resumed over TLS, and the client has had all of it since */
        c->timer = CONN_T_NONE;
        c->deadline = 0;
        conn_rearm(c, mod_now_ms());
        return;
    }
    if (c->timer == CONN_T_CLOSING) {
        /* closed by us, and the client has not taken the rest since */
        c->timer = CONN_T_NONE;
        c->deadline = 0;
        conn_abort(c);
        return;
    }
    if (c->timer == CONN_T_LINGER && conn_unsent(c) > 0) {
        /* the answers have not all left: the client is not reading them */
        conn_arm_write(c, CONN_T_WRITE, mod_now_ms() + c->server->body_timeout_ms);
        return;
    }
    if (c->timer == CONN_T_WSPING && conn_ws(c) != NULL) {
        ws_timer(c->ext->ws, mod_now_ms());
        if (conn_flush(c) < 0)
            PyErr_WriteUnraisable((PyObject *)c);
        c->timer = CONN_T_NONE;
        conn_rearm(c, mod_now_ms());
        return;
    }
    if (conn_q_len(c) == 0 && !c->streaming &&
        ((c->timer == CONN_T_HEAD && !c->answered) ||
         (c->timer == CONN_T_BODY && c->pending != NULL && conn_bstream(c) == NULL))) {
        /* slow or stalled head (on a connection not yet answered), or the
         * body of a request nobody is reading yet: 408, then close */
        int head_only = c->pending != NULL && c->pending->h.method_id == H1_M_HEAD;
        c->closing = 1;
        if (resp_serialize_status(st, 408, "Request Timeout", head_only, 1, NULL) < 0)
            PyErr_WriteUnraisable((PyObject *)c);
        c->close_after_flush = 1;
        c->timer = CONN_T_NONE;
        c->deadline = 0;
        if (conn_flush(c) < 0) /* arms the linger timer (conn_linger) */
            PyErr_WriteUnraisable((PyObject *)c);
        return;
    } else {
        if (conn_bstream(c) != NULL)
            conn_fail_body_stream(c, st->RequestTimeout, "the request body stopped arriving");
        c->closing = 1;
        conn_io_end(c);
        if (c->timer == CONN_T_WRITE || c->timer == CONN_T_WSCLOSE || c->timer == CONN_T_OWED)
            c->aborted = 1;
        if (c->streaming && c->ext->stream_frame == RESP_FRAME_CLOSE) {
            /* a stream cut by the deadline: over TLS too, no close_notify,
             * which would tell the client the body was whole */
            conn_reset_cut_close_delimited(c);
            cut = 1;
        }
        c->timer = CONN_T_NONE;
        c->deadline = 0;
        if (!c->aborted && !cut)
            conn_tls_bye(c);
        r = PyObject_CallMethodNoArgs(c->transport, c->aborted ? c->st->s_abort : c->st->s_close);
        if (r == NULL)
            PyErr_WriteUnraisable((PyObject *)c);
        else
            conn_closing(c);
        Py_XDECREF(r);
        return;
    }
}

PyObject *conn_get_transport(ConnObject *c)
{
    PyObject *t = c->transport ? c->transport : Py_None;
    Py_INCREF(t);
    return t;
}

int conn_flush_out(ConnObject *c)
{
    return conn_flush(c);
}

int conn_hold_output(ConnObject *c)
{
    return conn_schedule_drain(c);
}

void conn_close_transport(ConnObject *c, int abort)
{
    PyObject *r;
    c->closing = 1;
    if (c->closed || c->transport == NULL)
        return;
    if (conn_flush(c) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
    if (c->closed || c->transport == NULL)
        return;
    conn_io_end(c);
    if (abort)
        c->aborted = 1;
    else
        conn_tls_bye(c);
    r = PyObject_CallMethodNoArgs(c->transport, abort ? c->st->s_abort : c->st->s_close);
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)c);
    else
        conn_closing(c);
    Py_XDECREF(r);
}

void conn_pause_reading(ConnObject *c, int on)
{
    conn_set_pause(c, CONN_PAUSE_PIPELINE, on);
    conn_rearm(c, mod_now_ms()); /* a WebSocket's keep-alive pauses with it */
}

int conn_gone(ConnObject *c)
{
    return c->closed || c->aborted;
}

uint32_t conn_io_turn(ConnObject *c)
{
    return c->server->io_turn;
}

int conn_piled(ConnObject *c)
{
    return (c->pause & CONN_PAUSE_WRITE) && !c->closed &&
           conn_unsent(c) > (Py_ssize_t)CONN_PILE_MAX;
}

PyObject *conn_drain_waiter(ConnObject *c)
{
    if (!(c->pause & CONN_PAUSE_WRITE) || c->closed)
        return NULL;
    return conn_waiter(c);
}

PyObject *conn_get_loop(ConnObject *c)
{
    return c->server->loop;
}

PyObject *conn_new_future(ConnObject *c)
{
    return mod_future_new(c->st, c->server->loop, c->server->future_type,
                          &c->server->future_kw);
}

void conn_set_close_deadline(ConnObject *c)
{
    conn_arm_write(c, CONN_T_WSCLOSE, mod_now_ms() + CONN_WSCLOSE_MS);
}

PyObject *conn_get_server(ConnObject *c)
{
    return (PyObject *)c->server;
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

PyObject *conn_get_app(ConnObject *c)
{
    PyObject *a = c->server->app ? c->server->app : Py_None;
    Py_INCREF(a);
    return a;
}

static int conn_traverse(ConnObject *c, visitproc visit, void *arg)
{
    uint32_t s;
    Py_VISIT(Py_TYPE(c));
    Py_VISIT(c->server);
    Py_VISIT(c->transport);
    Py_VISIT(c->pending);
    if (c->ext != NULL) {
        Py_VISIT(c->ext->stream_req);
        Py_VISIT(c->ext->stream_task);
        Py_VISIT(c->ext->stream_head);
        Py_VISIT(c->ext->stream_waiter);
        Py_VISIT(c->ext->peer);
        Py_VISIT(c->ext->ws);
        Py_VISIT(c->ext->ws_task);
        Py_VISIT(c->ext->bstream);
    }
    for (s = c->q_first; s != c->q_next; s++) {
        Py_VISIT(c->q[s & (c->q_cap - 1)].obj);
        Py_VISIT(c->q[s & (c->q_cap - 1)].req);
    }
    return 0;
}

static int conn_clear(ConnObject *c)
{
    uint32_t s;
    Py_CLEAR(c->transport);
    Py_CLEAR(c->pending);
    if (c->ext != NULL) {
        /* the struct itself stays until dealloc: code running from a
         * Py_CLEAR below may still look at it */
        c->ext->bs_req = NULL;
        Py_CLEAR(c->ext->stream_req);
        Py_CLEAR(c->ext->stream_task);
        Py_CLEAR(c->ext->stream_head);
        Py_CLEAR(c->ext->stream_waiter);
        Py_CLEAR(c->ext->peer);
        Py_CLEAR(c->ext->ws);
        Py_CLEAR(c->ext->ws_task);
        Py_CLEAR(c->ext->bstream);
    }
    for (s = c->q_first; s != c->q_next; s++) {
        Py_CLEAR(c->q[s & (c->q_cap - 1)].obj);
        Py_CLEAR(c->q[s & (c->q_cap - 1)].req);
    }
    c->q_first = c->q_next;
    return 0;
}

static void conn_dealloc(ConnObject *c)
{
    PyTypeObject *tp = Py_TYPE(c);
    PyObject_GC_UnTrack(c);
    conn_unlink(c);
    conn_clear(c);
    Py_CLEAR(c->server);
    PyMem_Free(c->buf);
    PyMem_Free(c->q);
    PyMem_Free(c->ext);
    tp->tp_free(c);
    Py_DECREF(tp);
}

static PyMethodDef conn_methods[] = {
    {"connection_made", (PyCFunction)conn_connection_made, METH_O, NULL},
    {"data_received", (PyCFunction)conn_data_received, METH_O, NULL},
    {"eof_received", (PyCFunction)conn_eof_received, METH_NOARGS, NULL},
    {"connection_lost", (PyCFunction)conn_connection_lost, METH_O, NULL},
    {"pause_writing", (PyCFunction)conn_pause_writing, METH_NOARGS, NULL},
    {"resume_writing", (PyCFunction)conn_resume_writing, METH_NOARGS, NULL},
    {"_stream_write", (PyCFunction)conn_stream_write, METH_O,
     "Send one item of a streamed body; returns a future to await while "
     "the client is not reading, else None."},
    {"_stream_sent", (PyCFunction)conn_stream_sent, METH_O,
     "_stream_sent(n): n body bytes were sent with sendfile"},
    {"_stream_begin", (PyCFunction)conn_stream_begin, METH_NOARGS,
     "A streamed body's first step: False when it is not to be produced."},
    {"_stream_failed", (PyCFunction)conn_stream_failed, METH_NOARGS,
     "The app's iterator raised: before its first item, the answer is a 500."},
    {"_stream_end", (PyCFunction)conn_stream_end, METH_O,
     "End the streamed body (True) or cut it short (False)."},
    {"_tls_kick", (PyCFunction)conn_tls_kick_cb, METH_NOARGS,
     "Read the input OpenSSL holds (a loop callback)."},
    {"_tls_info", (PyCFunction)conn_tls_info, METH_NOARGS,
     "(version, cipher, ALPN, client certificate DER, verified) under TLS in C, else None."},
    {NULL},
};

static PyObject *conn_get_transport_attr(ConnObject *c, void *unused)
{
    return conn_get_transport(c);
}

static PyGetSetDef conn_getset[] = {
    {"closed", (getter)conn_get_closed, NULL, "the connection is gone", NULL},
    {"transport", (getter)conn_get_transport_attr, NULL, "the uvloop transport", NULL},
    {"_tls", (getter)conn_get_tls, NULL, "the connection speaks TLS (no sendfile)", NULL},
    {NULL},
};

static PyObject *conn_tp_new(PyTypeObject *tp, PyObject *a, PyObject *k)
{
    PyErr_SetString(PyExc_TypeError, "connections are made by a Server");
    return NULL;
}

static PyType_Slot conn_slots[] = {
    {Py_tp_new, conn_tp_new},
    {Py_tp_dealloc, conn_dealloc},
    {Py_tp_traverse, conn_traverse},
    {Py_tp_clear, conn_clear},
    {Py_tp_methods, conn_methods},
    {Py_tp_getset, conn_getset},
    {0, NULL},
};

PyType_Spec conn_spec = {
    .name = "fulmen._core.Connection",
    .basicsize = sizeof(ConnObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = conn_slots,
};

/* ========================================================================
 * Server: settings shared by the connections, and their factory
 */

static PyObject *conn_server_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"app", "matcher", "loop", "error_hook", "debug",
                             "max_header_size", "max_headers", "max_body_size",
                             "header_timeout", "body_timeout",
                             "keep_alive_timeout", "not_found", NULL};
    PyObject *app, *matcher, *loop, *hook, *not_found = Py_None;
    int debug = 0;
    unsigned int mhs = 16384, mh = 100;
    unsigned long long mbs = 10 * 1024 * 1024;
    double ht = 10.0, bt = 30.0, kt = 60.0;
    ServerObject *s;
    fulmen_state *st = mod_state_of_type(tp);
    if (st == NULL)
        return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO!OO|pIIKdddO", kwlist, &app,
                                     st->MatcherType, &matcher, &loop, &hook,
                                     &debug, &mhs, &mh, &mbs, &ht, &bt, &kt,
                                     &not_found))
        return NULL;
    if (!(ht > 0 && bt > 0 && kt > 0)) {
        PyErr_SetString(PyExc_ValueError, "timeouts must be positive");
        return NULL;
    }
    if (mhs < 64 || mhs > (1u << 30) || mh < 1 || mh > 65536) {
        PyErr_SetString(PyExc_ValueError, "bad header limits");
        return NULL;
    }
    s = (ServerObject *)tp->tp_alloc(tp, 0);
    if (s == NULL)
        return NULL;
    s->st = st;
    Py_INCREF(app);
    s->app = app;
    Py_INCREF(matcher);
    s->matcher = matcher;
    Py_INCREF(loop);
    s->loop = loop;
    Py_INCREF(hook);
    s->error_hook = hook;
    s->debug = debug;
    s->max_header_size = mhs;
    s->max_headers = mh;
    s->max_body_size = mbs;
    s->max_form_parts = FULMEN_MAX_FORM_PARTS;
    if (not_found != Py_None) {
        Py_INCREF(not_found);
        s->not_found = not_found;
    }
    s->epfd = -1;
    {
        const char *e = getenv("FULMEN_DIRECT_IO");
        s->direct_io = !(e != NULL && strcmp(e, "0") == 0);
    }
    s->header_timeout_ms = (int64_t)(ht * 1000);
    s->body_timeout_ms = (int64_t)(bt * 1000);
    s->keep_alive_ms = (int64_t)(kt * 1000);
    return (PyObject *)s;
}

/* Give back what an idle connection's earlier work left it: an empty
 * response queue, and the rare-feature state when no feature is in
 * progress (both are made again on first use).  Runs no Python code. */
static void conn_trim(ConnObject *c)
{
    conn_ext *x = c->ext;
    int trimmed = 0;
    if (c->q != NULL && conn_q_len(c) == 0) {
        PyMem_Free(c->q);
        c->q = NULL;
        c->q_cap = 0;
        trimmed = 1;
    }
    if (x != NULL && !c->streaming && c->pending == NULL && x->stream_req == NULL &&
        x->stream_task == NULL && x->stream_head == NULL && x->stream_waiter == NULL &&
        x->ws == NULL && x->ws_task == NULL && x->bstream == NULL) {
        c->ext = NULL;
        Py_XDECREF(x->peer); /* a str */
        PyMem_Free(x);
        trimmed = 1;
    }
    c->server->n_trims += trimmed;
}

/* response_timeout: the coroutine views of c's queue that have run for
 * that long are cancelled (their answer is the 503 of a CancelledError,
 * in its turn).  A stream=True view, which reads its body as it comes, is
 * not timed.  Task.cancel() only schedules: no Python code of the view
 * runs here.  (Once the client has gone, conn_view_orphan times them.) */
static NOINLINE void conn_view_timeouts(ConnObject *c, int64_t now)
{
    int64_t limit = c->server->response_timeout_ms;
    uint32_t seq;
    for (seq = c->q_first; seq != c->q_next; seq++) {
        conn_slot *s = &c->q[seq & (c->q_cap - 1)];
        PyObject *r;
        if (!conn_view_timed(s) || now - s->started < limit)
            continue;
        s->cancelled = 1;
        PySys_FormatStderr("fulmen: %R has run for response_timeout (%lld ms): its view "
                           "is cancelled (503)\n", (PyObject *)s->req, (long long)limit);
        r = PyObject_CallMethod(s->obj, "cancel", NULL);
        if (r == NULL)
            PyErr_WriteUnraisable((PyObject *)c);
        Py_XDECREF(r);
    }
}

/* sweep(): close every connection past its deadline, and trim the ones
 * idle for CONN_TRIM_MS.  Called by the app a few times a second: one pass
 * over the list, no timer per connection. */
static PyObject *conn_server_sweep(ServerObject *srv, PyObject *unused)
{
    int64_t now = mod_now_ms();
    ConnObject *c, *next;
    PyObject *keep = PyList_New(0);
    if (keep == NULL)
        return NULL;
    for (c = srv->conn_head; c != NULL; c = next) {
        next = c->next;
        if (UNLIKELY(srv->response_timeout_ms) && conn_q_len(c) > 0)
            conn_view_timeouts(c, now);
        if ((c->deadline != 0 && now >= c->deadline && !c->closed &&
             c->transport != NULL) || UNLIKELY(conn_stream_head_due(c, now))) {
            /* expiring may run code that unlinks c: hold it */
            if (PyList_Append(keep, (PyObject *)c) < 0)
                break;
        } else if ((c->q != NULL || c->ext != NULL) && c->timer == CONN_T_IDLE &&
                   now - (c->deadline - srv->keep_alive_ms) >= CONN_TRIM_MS) {
            /* idle since its deadline was set (a stopping server's short
             * drain makes that look long ago: it trims at once) */
            conn_trim(c);
        }
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keep); i++) {
        c = (ConnObject *)PyList_GET_ITEM(keep, i);
        if (c->closed || c->transport == NULL)
            continue;
        if (conn_stream_head_due(c, now) &&
            (conn_stream_head_out(c) < 0 || conn_flush(c) < 0))
            PyErr_WriteUnraisable((PyObject *)c);
        if (c->deadline != 0 && now >= c->deadline && !c->closed && c->transport != NULL)
            conn_expire(c);
    }
    Py_DECREF(keep);
    if (srv->st->log_len)
        conn_log_flush(srv->st);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* stop(): graceful stop.  Idle connections close now; busy ones close once
 * their queued responses are written.  Returns the number still open. */
static PyObject *conn_server_stop(ServerObject *srv, PyObject *unused)
{
    ConnObject *c;
    PyObject *keep = PyList_New(0);
    Py_ssize_t i;
    if (keep == NULL)
        return NULL;
    srv->stopping = 1;
    if (srv->st->log_len)
        conn_log_flush(srv->st);
    for (c = srv->conn_head; c != NULL; c = c->next)
        if (PyList_Append(keep, (PyObject *)c) < 0) {
            Py_DECREF(keep);
            return NULL;
        }
    /* Busy connections finish what they were sent (answers say "close");
     * idle keep-alive ones get a short drain in which a request that was
     * already on its way is still answered, then the sweep closes them. */
    for (i = 0; i < PyList_GET_SIZE(keep); i++) {
        c = (ConnObject *)PyList_GET_ITEM(keep, i);
        if (c->closed || c->transport == NULL)
            continue;
        if (conn_ws(c) != NULL) {
            ws_going_away(c->ext->ws);
            continue;
        }
        if (conn_q_len(c) == 0 && !c->streaming && c->pending != NULL &&
            c->stage == STAGE_HEAD) {
            /* half a head and nothing in flight: no request to finish */
            c->closing = 1;
            conn_close_now(c);
            continue;
        }
        c->timer = CONN_T_NONE;
        conn_rearm(c, mod_now_ms());
    }
    Py_DECREF(keep);
    return PyLong_FromLongLong(srv->n_conns);
}

/* protocol_factory(): a new connection */
static PyObject *conn_server_call(ServerObject *srv, PyObject *args, PyObject *kw)
{
    ConnObject *c = PyObject_GC_New(ConnObject, srv->st->ConnType);
    if (c == NULL)
        return NULL;
    memset((char *)c + sizeof(PyObject), 0, sizeof(ConnObject) - sizeof(PyObject));
    c->st = srv->st;
    Py_INCREF(srv);
    c->server = srv;
    c->fd = -1;
    PyObject_GC_Track(c);
    return (PyObject *)c;
}

static int conn_server_traverse(ServerObject *s, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(s));
    Py_VISIT(s->matcher);
    Py_VISIT(s->app);
    Py_VISIT(s->loop);
    Py_VISIT(s->error_hook);
    Py_VISIT(s->not_found);
    Py_VISIT(s->forwarded_allow);
    Py_VISIT(s->on_conn_lost);
    Py_VISIT(s->drain_list);
    Py_VISIT(s->drain_cb);
    Py_VISIT(s->task_type);
    Py_VISIT(s->future_type);
    Py_VISIT(s->future_kw);
    Py_VISIT(s->tls_pyctx);
    return 0;
}

static int conn_server_clear(ServerObject *s)
{
    Py_CLEAR(s->matcher);
    Py_CLEAR(s->app);
    Py_CLEAR(s->loop);
    Py_CLEAR(s->error_hook);
    Py_CLEAR(s->not_found);
    Py_CLEAR(s->forwarded_allow);
    Py_CLEAR(s->on_conn_lost);
    Py_CLEAR(s->drain_list);
    Py_CLEAR(s->drain_cb);
    Py_CLEAR(s->task_type);
    Py_CLEAR(s->future_type);
    Py_CLEAR(s->future_kw);
    Py_CLEAR(s->tls_pyctx);
    return 0;
}

static void conn_server_dealloc(ServerObject *s)
{
    PyTypeObject *tp = Py_TYPE(s);
    int i;
    PyObject_GC_UnTrack(s);
    if (s->epfd >= 0)
        close(s->epfd);
    conn_server_clear(s);
    /* SSLs still in tls_tab (no connection holds the server any more: an
     * owner would, so none is looked at), before the BIO_METHOD they use */
    for (i = 0; i < s->tls_tab_len; i++)
        tls_free(s->tls_tab[i]);
    PyMem_RawFree(s->tls_tab);
    tls_ctx_free(s->tls_ctx);
    tls_bio_method_free(s->tls_meth);
    PyMem_RawFree(s->tls_out.p);
    tp->tp_free(s);
    Py_DECREF(tp);
}

static PyMemberDef conn_server_members[] = {
    {"requests", T_ULONGLONG, offsetof(ServerObject, n_requests), READONLY,
     "requests dispatched so far"},
    {"connections", T_LONGLONG, offsetof(ServerObject, n_conns), READONLY,
     "open connections"},
    {"app", T_OBJECT, offsetof(ServerObject, app), READONLY, NULL},
    {"response_timeout_ms", T_LONGLONG, offsetof(ServerObject, response_timeout_ms), 0,
     "a coroutine view still running after this many ms is cancelled (0: never)"},
    {"max_form_parts", T_ULONGLONG, offsetof(ServerObject, max_form_parts), 0,
     "request.form and request.files refuse a body of more parts (0: no limit)"},
    {"proxy_headers", T_INT, offsetof(ServerObject, proxy_headers), 0,
     "take the client address, scheme and host from proxy headers"},
    {"forwarded_allow", T_OBJECT, offsetof(ServerObject, forwarded_allow), 0,
     "peers whose proxy headers are trusted (a set of str), None for any"},
    {"access_log", T_INT, offsetof(ServerObject, access_log), 0,
     "0 off, 1 text lines, 2 JSON lines"},
    {"task_type", T_OBJECT, offsetof(ServerObject, task_type), 0,
     "asyncio.Task if loop.create_task is the stock one, else None: "
     "coroutine views' Tasks are then made directly, named after the view"},
    {"task_eager", T_INT, offsetof(ServerObject, task_eager), 0,
     "those Tasks start eagerly, eager_start=True (CPython 3.12+)"},
    {"future_type", T_OBJECT, offsetof(ServerObject, future_type), 0,
     "asyncio.Future if loop.create_future is the stock one, else None: "
     "the server's futures are then made directly"},
    {"on_connection_lost", T_OBJECT, offsetof(ServerObject, on_conn_lost), 0,
     "called with no argument after a connection closes (max_connections)"},
    {"stopping", T_INT, offsetof(ServerObject, stopping), READONLY,
     "stop() was called: answers say close, idle connections drain"},
    {"direct_connections", T_LONGLONG, offsetof(ServerObject, n_direct), READONLY,
     "open connections under direct I/O"},
    {"writes", T_ULONGLONG, offsetof(ServerObject, n_writes), READONLY,
     "bursts of output handed to the sockets: one send() or transport write "
     "carries every answer that was ready together"},
    {"idle_trims", T_ULONGLONG, offsetof(ServerObject, n_trims), READONLY,
     "times an idle connection gave back its response queue or the state of "
     "a rarer feature (streams, WebSocket, chunked bodies)"},
    {"direct_io", T_INT, offsetof(ServerObject, direct_io), 0,
     "plain sockets are read and written directly after their first read "
     "(FULMEN_DIRECT_IO=0 turns it off)"},
    {NULL},
};

static PyObject *conn_server_flush_log(ServerObject *srv, PyObject *unused)
{
    conn_log_flush(srv->st);
    Py_RETURN_NONE;
}

/* Server._use_tls(ctx, options, openssl_version): serve TLS in C with the
 * SSL_CTX inside ctx, an ssl.SSLContext that app.py has checked (see
 * tls_ctx_from).  Returns True, or False when it cannot be used (then
 * uvloop's TLS path serves), or when direct I/O is off; call before
 * serving. */
static PyObject *conn_server_use_tls(ServerObject *srv, PyObject *args)
{
    PyObject *ctx;
    unsigned long long options, version;
    if (!PyArg_ParseTuple(args, "OKK", &ctx, &options, &version))
        return NULL;
    if (srv->tls_ctx != NULL || srv->n_conns > 0) {
        PyErr_SetString(PyExc_RuntimeError, "_use_tls: only once, before serving");
        return NULL;
    }
    if (!srv->direct_io)
        Py_RETURN_FALSE; /* FULMEN_DIRECT_IO=0: every socket stays the transport's */
    srv->tls_meth = tls_bio_method();
    if (srv->tls_meth == NULL)
        Py_RETURN_FALSE;
    srv->tls_ctx = tls_ctx_from(ctx, options, version);
    if (srv->tls_ctx == NULL) {
        tls_bio_method_free(srv->tls_meth);
        srv->tls_meth = NULL;
        Py_RETURN_FALSE;
    }
    Py_INCREF(ctx);
    srv->tls_pyctx = ctx; /* the SSL_CTX's callbacks' data (ALPN) live in it */
    Py_RETURN_TRUE;
}

static PyMethodDef conn_server_methods[] = {
    {"_use_tls", (PyCFunction)conn_server_use_tls, METH_VARARGS,
     "_use_tls(ctx, options, openssl_version): TLS in C with ctx's SSL_CTX; "
     "False when it cannot be used."},
    {"flush_log", (PyCFunction)conn_server_flush_log, METH_NOARGS,
     "Write out the buffered access log lines."},
    {"sweep", (PyCFunction)conn_server_sweep, METH_NOARGS,
     "Close the connections whose timeout has passed."},
    {"stop", (PyCFunction)conn_server_stop, METH_NOARGS,
     "Graceful stop: close idle connections, finish busy ones."},
    {"_io_ready", (PyCFunction)conn_server_io_ready, METH_NOARGS,
     "Read the directly handled sockets that are ready (a loop reader)."},
    {"close_io", (PyCFunction)conn_server_close_io, METH_NOARGS,
     "Stop direct I/O: the loop no longer watches the server's epoll set."},
    {"_drain_ready", (PyCFunction)conn_server_drain_ready, METH_NOARGS,
     "Send the answers held back for the rest of their batch (a loop callback)."},
    {NULL},
};

static PyType_Slot conn_server_slots[] = {
    {Py_tp_methods, conn_server_methods},
    {Py_tp_new, conn_server_new},
    {Py_tp_call, conn_server_call},
    {Py_tp_dealloc, conn_server_dealloc},
    {Py_tp_traverse, conn_server_traverse},
    {Py_tp_clear, conn_server_clear},
    {Py_tp_members, conn_server_members},
    {0, NULL},
};

PyType_Spec conn_server_spec = {
    .name = "fulmen._core.Server",
    .basicsize = sizeof(ServerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = conn_server_slots,
};
