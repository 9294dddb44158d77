/*
 * conn.h - what the files of the connection share: conn.c (the protocol,
 * dispatch, the response queue, the Server), connio.c (output, direct I/O,
 * TLS in C, closes and deadlines), connstream.c (request bodies read as
 * they arrive, streamed responses, the WebSocket upgrade) and connlog.c
 * (the access log and the debug log).  Their object layouts, the limits
 * more than one of them uses, the helpers of the per-request path (inline
 * here, so that they stay inline in each file), and the functions one of
 * them calls in another.  Only conn*.c include it: what other files use of
 * a connection is in common.h.
 */
#ifndef FULMEN_CONN_H
#define FULMEN_CONN_H

#include "common.h"

#include <time.h>

/* Stop taking requests off the wire while this many responses are queued. */
#define CONN_PIPELINE_HIGH 64
#define CONN_PIPELINE_LOW 16
/* ... or this many, the last a view that is still running (conn.c) */
#define CONN_PIPELINE_ASYNC 24

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

enum {
    CONN_PAUSE_WRITE = 1,    /* transport above its high-water mark */
    CONN_PAUSE_PIPELINE = 2, /* too many responses waiting in the queue */
    CONN_PAUSE_BODY = 4,     /* a streamed request body is not being read */
    CONN_PAUSE_UPGRADE = 8,  /* a WebSocket upgrade waits for the app's async gate */
};

/* STAGE_SINK: a Content-Length body too big for one read, arriving
 * straight into the bytes object request.body will be (conn_sink_start) */
enum { STAGE_HEAD = 0, STAGE_BODY, STAGE_CHUNKED, STAGE_SINK };

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
    /* direct I/O (see the top of connio.c) */
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
    uint8_t writing : 1;   /* c's answers are being put in st->out (a drain,
                            * an answer, a stream's end) and the app's code
                            * may run (a header value's str(), a file
                            * answer's hooks, a done-callback, stderr): c's
                            * queue is not drained again, nor its input
                            * read, until that is over */
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

/* Make c->ext (conn.c).  Returns it, or NULL with an exception set. */
NOINLINE conn_ext *conn_ext_new(ConnObject *c);

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

INLINE uint32_t conn_q_len(ConnObject *c)
{
    return c->q_next - c->q_first;
}

/* Nothing in flight: no queued response, no partial request, no stream. */
INLINE int conn_idle(ConnObject *c)
{
    return conn_q_len(c) == 0 && !c->streaming && c->pending == NULL &&
           c->buf_len == 0 && conn_ws(c) == NULL;
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

/* Monotonic time in ns: a request's start and its duration in the access log. */
INLINE int64_t conn_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* conn.c */
PyObject *conn_data_received(ConnObject *c, PyObject *data);
void conn_dispatch(ConnObject *c, RequestObject *req);
void conn_emit(ConnObject *c, RequestObject *req, PyObject *resp, int head_only, int conn_hdr,
               int close_after);
PyObject *conn_eof_received(ConnObject *c, PyObject *unused);
PyObject *conn_get_transport(ConnObject *c);      /* new reference (None once gone) */
void conn_give_up(ConnObject *c, RequestObject *req);
void conn_maybe_continue(ConnObject *c, RequestObject *req);
void conn_process_buffer(ConnObject *c);
void conn_q_drain(ConnObject *c);
/* Send c's ready answers at the loop's next turn; -1 when the loop cannot
 * take the callback (nothing scheduled, no exception set). */
int conn_schedule_drain(ConnObject *c);
void conn_set_pause(ConnObject *c, int bit, int on);
void conn_write_failed(ConnObject *c, RequestObject *req, PyObject *resp, int rc, int head_only,
                       int conn_hdr);

/* connio.c */
void conn_abort(ConnObject *c);
void conn_arm_write(ConnObject *c, uint8_t timer, int64_t deadline);
void conn_close_now(ConnObject *c);
void conn_closing(ConnObject *c);
void conn_expire(ConnObject *c);
int conn_flush(ConnObject *c);
PyObject *conn_get_tls(ConnObject *c, void *unused);
void conn_io_attach(ConnObject *c);
void conn_io_end(ConnObject *c);
void conn_io_watch(ConnObject *c, int on);
void conn_linger_drop(ConnObject *c, PyObject *data);
void conn_rearm(ConnObject *c, int64_t now);
void conn_reset_cut_close_delimited(ConnObject *c);
PyObject *conn_server_close_io(ServerObject *srv, PyObject *unused);
PyObject *conn_server_io_ready(ServerObject *srv, PyObject *unused);
int conn_tls(ConnObject *c);
void conn_tls_attach(ConnObject *c, PyObject *data);
void conn_tls_drop(ConnObject *c);
PyObject *conn_tls_info(ConnObject *c, PyObject *unused);
PyObject *conn_tls_kick_cb(ConnObject *c, PyObject *unused);
int conn_tls_owes(ConnObject *c);
Py_ssize_t conn_unsent(ConnObject *c);

/* connstream.c */
void conn_end_body_stream(ConnObject *c, PyObject *exc);
void conn_fail_body_stream(ConnObject *c, PyObject *type, const char *msg);
int conn_start_body_stream(ConnObject *c, RequestObject *req, char *p, PyObject *owner,
                           uint64_t max_body);
int conn_start_stream(ConnObject *c, RequestObject *req, PyObject *resp, int head_only,
                      int conn_hdr, int close_after);
PyObject *conn_stream_begin(ConnObject *c, PyObject *unused);
size_t conn_stream_body(ConnObject *c, char *p, size_t n, int immutable);
PyObject *conn_stream_end(ConnObject *c, PyObject *okobj);
PyObject *conn_stream_failed(ConnObject *c, PyObject *unused);
int conn_stream_head_out(ConnObject *c);
PyObject *conn_stream_sent(ConnObject *c, PyObject *nobj);
PyObject *conn_stream_write(ConnObject *c, PyObject *data);
PyObject *conn_streams_fn(const char *name);
void conn_upgrade_ws(ConnObject *c, RequestObject *req, RouteObject *route);
int conn_ws_gated(ConnObject *c, RequestObject *req, PyObject *resp);
void conn_start_view(ConnObject *c, RequestObject *req, PyObject *coro,
                     int head_only, int conn_hdr, int close_after);
PyObject *conn_error_response(ConnObject *c, RequestObject *req);
PyObject *conn_check_response(ConnObject *c, RequestObject *req, PyObject *res);
PyObject *conn_waiter(ConnObject *c);
void conn_wake_stream(ConnObject *c);

/* connlog.c */
void conn_access_log(ConnObject *c, RequestObject *req, int code, long long nbytes);
void conn_fetch_peer(ConnObject *c);
void conn_log(RequestObject *req, int code);
void conn_log_flush(fulmen_state *st);
size_t conn_log_drain(fulmen_state *st, int wait_ms);
void conn_log_stream(ConnObject *c, RequestObject *req, int code);

#endif
