/*
 * common.h - what the Python-facing files of fulmen._core share: the module
 * state, the object layouts that more than one file touches, and the small
 * cross-file API.  Each function is prefixed by the file it lives in:
 * mod_ (module.c), conn_ (conn*.c), req_ (request.c), resp_ (response.c),
 * router_ (router.c), aw_ (awaitable.c), tls_ (tls.c).
 */
#ifndef FULMEN_COMMON_H
#define FULMEN_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "h1parse.h"

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define NOINLINE __attribute__((noinline))
#define INLINE static inline __attribute__((always_inline))

#define FULMEN_INLINE_HEADERS 16
#define FULMEN_MAX_PARAMS 16
#define FULMEN_FREELIST_MAX 256
/* The largest body read into memory (not stream=True), whatever the limit
 * says: a request's spans are 32-bit offsets into its bytes. */
#define FULMEN_MAX_MEMORY_BODY ((uint64_t)1 << 31)
/* Application(max_form_parts=)'s default */
#define FULMEN_MAX_FORM_PARTS 1000
#define FULMEN_COMMON_HEADERS 28
#define JSON_KEY_CACHE_BITS 9 /* json.c: 512 cached object keys */

typedef struct RequestObject RequestObject;
typedef struct ResponseObject ResponseObject;
typedef struct ConnObject ConnObject;
typedef struct ServerObject ServerObject;
typedef struct RouteObject RouteObject;
typedef struct WebSocketObject WebSocketObject;
typedef struct files_cache files_cache;

/* permessage-deflate as negotiated in the handshake */
typedef struct {
    int enabled;
    int server_no_ctx, client_no_ctx;
    int server_bits, client_bits;
} ws_deflate_params;

/* ------------------------------------------------------------------------
 * Module state.  One per module object; hot objects cache a pointer to it.
 */
typedef struct {
    PyTypeObject *ServerType;
    PyTypeObject *ConnType;
    PyTypeObject *RequestType;
    PyTypeObject *ResponseType;
    PyTypeObject *HeadersType;
    PyTypeObject *RouteType;
    PyTypeObject *MatcherType;
    PyTypeObject *ResumeType;
    PyTypeObject *QueryType;
    PyTypeObject *FileType;   /* struct sequence (name, type, body) */
    PyTypeObject *WebSocketType;
    PyTypeObject *ReadyType;
    PyTypeObject *SharedType;
    PyObject *WebSocketClosed; /* exception (code, reason) */
    PyObject *ClientDisconnected; /* ConnectionResetError: nobody left to answer */
    PyObject *RequestTimeout;     /* TimeoutError: the body stopped arriving */
    PyObject *json_loads;  /* json.loads, imported on first use */
    PyObject *BadRequest;  /* exception: the client sent a malformed body */
    PyObject *RequestTooLarge; /* BadRequest subclass: over the body limit (413) */
    PyTypeObject *BodyStreamType;
    PyTypeObject *StaticFilesType;
    files_cache *files;       /* files.c's shared state, made on first use */
    PyObject *uuid_type;   /* uuid.UUID, imported on first use */
    /* how a view's Task is made the loop's current task while the
     * connection runs its first step (conn_swap_task), found on first use:
     * asyncio's _swap_current_task (3.12+), else its _current_tasks dict */
    PyObject *task_swap;
    PyObject *current_tasks;
    PyObject *kw_task;     /* ("loop", "name", "context"): Task()'s keywords */
    PyObject *kw_task_eager; /* the same and "eager_start" (3.12+) */
    PyObject *kw_context;  /* ("context",): create_task's keyword */

    /* interned attribute / method names */
    PyObject *s_write;
    PyObject *s_writelines;
    PyObject *s_close;
    PyObject *s_pause_reading;
    PyObject *s_resume_reading;
    PyObject *s_get_extra_info;
    PyObject *s_peername;
    PyObject *s_create_task;
    PyObject *s_get_task_factory;
    PyObject *s_call_soon;
    PyObject *s_throw;
    PyObject *s_close_gen;
    PyObject *s_get_write_buffer_size;
    PyObject *s_is_closing;
    PyObject *s_create_future;
    PyObject *s_done;
    PyObject *s_set_result;
    PyObject *s_set_exception;
    PyObject *s_abort;
    PyObject *s_sslcontext;
    PyObject *s_socket;
    PyObject *s_fileno;

    PyObject *kw_response[10]; /* Response() keyword names, interned */
    PyObject *hdr_names[FULMEN_COMMON_HEADERS]; /* request.c: Title-Case names */
    PyObject *method_str[H1_M_TRACE + 1]; /* "GET", ... ([0] unused) */
    PyObject *s_version10;
    PyObject *s_version11;
    PyObject *empty_bytes;
    PyObject *empty_str;
    PyObject *empty_tuple;
    /* what the app's gate before a WebSocket's 101 returns to let the
     * upgrade go on (a Response nobody sends: connstream.c conn_ws_gated) */
    PyObject *ws_accept;
    /* the name of the last header refused as unsafe, for the log line that
     * says so (conn_write_failed), or NULL */
    PyObject *bad_header;

    /* Date: header value, refreshed when the second changes */
    int64_t date_sec;
    char date[32];
    /* the head of a plain 200 up to "Content-Length: ", per RESP_* kind,
     * rebuilt with the date; followed in the same buffer by the length
     * last written with it and the blank line, for keep-alive answers
     * (pfx_full_len of them, for a body of pfx_body_len bytes; -1: none) */
    char pfx[4][160];
    uint8_t pfx_len[4];
    uint8_t pfx_full_len[4];
    int64_t pfx_body_len[4];

    /* freelists of objects nobody else references */
    RequestObject *req_free[FULMEN_FREELIST_MAX];
    int n_req_free;
    ResponseObject *resp_free[FULMEN_FREELIST_MAX];
    int n_resp_free;

    /* scratch output: all responses produced by one burst of work are
     * appended here, then leave in one write */
    char *out;
    size_t out_len;
    size_t out_cap;
    PyObject *out_chunks; /* list, or NULL: large bodies passed by reference */
    size_t out_big;       /* bytes of the bodies in out_chunks */
    void *out_conn;       /* the connection that last parsed a read: while it
                           * does, out holds its answers (compared only) */
    int out_busy;         /* a head is being written (the app's code may run:
                           * a header value's str()): out ends mid-answer */
    int in_create_task;   /* the engine is in loop.create_task() for a stream
                           * or a WebSocket, not set up for it yet */
    /* direct I/O reads land in this bytes object, reused while nothing
     * keeps it (its size is set to each read's; see conn_io_read) */
    PyObject *rbytes;

    /* access log lines (and Python's stderr), written out in batches
     * as far as fd 2 takes them (connlog.c) */
    char *log;
    size_t log_len, log_cap;
    unsigned long long log_dropped; /* lines dropped since stderr took none */
    /* the access log's timestamps, text and JSON, made once a second */
    int64_t log_ts_sec;
    char log_ts[2][32];
    uint8_t log_ts_len[2];

    /* json.c */
    PyObject *InvalidJSON; /* fulmen.InvalidJSON(BadRequest, json.JSONDecodeError) */
    PyObject *json_keys[1 << JSON_KEY_CACHE_BITS]; /* recent object keys (str) */
} fulmen_state;

/* ------------------------------------------------------------------------
 * Shared object layouts.
 */

/* Route parameter types (router.c; request.c converts match_dict values). */
enum { ROUTER_P_STR = 0, ROUTER_P_INT, ROUTER_P_FLOAT, ROUTER_P_UUID,
       ROUTER_P_PATH, ROUTER_P_KINDS };

/* A route: one handler for one pattern and a set of methods. */
struct RouteObject {
    PyObject_HEAD
    PyObject *pattern;     /* str */
    PyObject *handler;     /* callable */
    PyObject *methods;     /* frozenset of str, or None for any */
    PyObject *name;        /* str or None */
    PyObject *param_names; /* tuple of str */
    PyObject *param_types; /* tuple of str ("str", "int", ...) */
    PyObject *extra;       /* dict: route options (stream=, max_body_size=) */
    int is_async;          /* handler is an async def */
    int is_ws;             /* a WebSocket endpoint (add_websocket) */
    int is_stream;         /* the view reads the body as it arrives */
    uint64_t max_body;     /* 0 = the server's limit */
    uint8_t param_kind[FULMEN_MAX_PARAMS]; /* param_types as ROUTER_P_* */
    PyObject *task_name;   /* its coroutine views' Task name (conn.c), or NULL */
};

/* tls.c: OpenSSL on a connection's socket (the types stay opaque here) */
struct ssl_st;
struct ssl_ctx_st;
struct bio_method_st;
typedef struct tls_out {  /* records waiting to be sent, shared per server */
    char *p;
    size_t len, cap;
} tls_out;

/* The per-server configuration and the factory of connections. */
struct ServerObject {
    PyObject_HEAD
    fulmen_state *st;
    PyObject *matcher;       /* MatcherObject */
    PyObject *app;           /* the Python Application */
    PyObject *loop;
    PyObject *error_hook;    /* callable(request, exc) -> Response */
    PyObject *not_found;     /* callable(request, code, allow) -> Response */
    ConnObject *conn_head;   /* live connections (intrusive list) */
    int debug;
    int stopping;            /* graceful stop: finish, then close */
    int proxy_headers;       /* trust X-Forwarded-* / Forwarded ... */
    PyObject *forwarded_allow; /* ... from these peers (set of str), None = any */
    int access_log;          /* 0 off, 1 text, 2 JSON lines */
    PyObject *on_conn_lost;  /* called after a connection closes, or NULL */
    int64_t header_timeout_ms;
    int64_t body_timeout_ms;
    int64_t keep_alive_ms;
    int64_t response_timeout_ms; /* a coroutine view running longer is cancelled (0: never) */
    uint32_t max_header_size;
    uint32_t max_headers;
    uint64_t max_body_size;
    uint64_t max_form_parts; /* fields + files in a form body (0: no limit) */
    uint64_t n_requests;
    int64_t n_conns;
    /* direct I/O (connio.c): one epoll set, watched by the loop, for the
     * sockets whose reads and writes bypass the transport */
    int direct_io;           /* allowed (FULMEN_DIRECT_IO=0 turns it off) */
    int epfd;                /* -1 until the first direct connection */
    int64_t n_direct;        /* connections under direct I/O now */
    uint64_t n_trims;        /* idle connections that gave memory back (conn.c) */
    uint64_t n_writes;       /* conn_flush calls that wrote (Server.writes) */
    uint32_t io_turn;        /* calls from the loop that brought input
                              * (conn_io_turn) */
    /* connections whose ready answers wait for the rest of their batch
     * (conn_deliver): drained by one loop callback, _drain_ready */
    PyObject *drain_list;    /* list of ConnObject while a call_soon of
                              * _drain_ready is pending, else NULL */
    PyObject *drain_cb;      /* the bound _drain_ready, made on first use */
    /* asyncio.Task when loop.create_task is the stock one (set by app.py):
     * coroutine views' Tasks are then made directly while the loop has no
     * task factory (conn_start_view), else NULL */
    PyObject *task_type;
    int task_eager;          /* ... started eagerly (3.12+; set by app.py) */
    /* asyncio.Future when loop.create_future is the stock one (set by
     * app.py): the futures the server awaits with are made directly
     * (mod_future_new), else NULL */
    PyObject *future_type;
    PyObject *future_kw;     /* {"loop": loop} for them, made on first use */
    /* TLS in C (tls.c), set by _use_tls(): every connection takes its
     * socket over at connection_made and runs OpenSSL on it */
    struct ssl_ctx_st *tls_ctx; /* a reference of ours, or NULL */
    PyObject *tls_pyctx;     /* the ssl.SSLContext it came from */
    struct bio_method_st *tls_meth;
    tls_out tls_out;         /* records of the SSL call in progress */
    struct ssl_st **tls_tab; /* each TLS connection's SSL, by descriptor */
    int tls_tab_len;
};

/* Where a request's bytes live: `raw` owns them, `base` points at the
 * request's first byte inside raw.  All h1 spans are relative to base. */
struct RequestObject {
    PyObject_HEAD
    fulmen_state *st;
    ConnObject *conn;        /* strong */
    PyObject *raw;           /* bytes owning the request bytes */
    const char *base;
    h1_request h;
    h1_parser parser;
    h1_header inline_headers[FULMEN_INLINE_HEADERS];
    uint32_t header_cap;
    h1_span body;            /* decoded body, relative to base */
    uint32_t rawlen;         /* the request's bytes from base (req_own_raw) */
    int64_t start_ns;        /* when dispatched (access log only) */
    RouteObject *route;      /* borrowed from the matcher (kept alive) */
    int n_params;
    h1_span params[FULMEN_MAX_PARAMS]; /* relative to base */
    /* lazy caches */
    PyObject *py_method;
    PyObject *py_path;
    PyObject *py_qs;
    PyObject *py_headers;
    PyObject *py_body;
    PyObject *py_match_dict;
    PyObject *py_query;
    PyObject *py_cookies;
    PyObject *py_form;
    PyObject *py_files;
    PyObject *py_text;       /* request.text and request.json, parsed once */
    PyObject *py_json;
    PyObject *body_stream;   /* BodyStream of a stream=True route, or NULL */
    PyObject *py_extra;
    PyObject *done_callbacks;
    PyObject *dict;
};

struct ResponseObject {
    PyObject_HEAD
    fulmen_state *st;
    int code;
    PyObject *body;          /* bytes, or str encoded as UTF-8 on output */
    PyObject *content_type;  /* str or NULL */
    PyObject *headers;       /* dict, list of pairs, or NULL */
    PyObject *cookies;       /* dict or http.cookies.SimpleCookie, or NULL */
    PyObject *stream;        /* RESP_STREAM: the iterable; RESP_FILE: the path */
    PyObject *dict;
    char *jbuf;              /* JSON output, reused across freelist cycles */
    size_t jlen, jcap;
    uint8_t kind;            /* RESP_TEXT, RESP_JSON, RESP_BODY, RESP_EMPTY */
    uint8_t head_length;     /* an answer to HEAD keeps its Content-Length
                              * (a file's, files.c) */
};

enum { RESP_EMPTY = 0, RESP_TEXT, RESP_BODY, RESP_JSON, RESP_STREAM, RESP_FILE };

/* How a streamed body is framed (resp_serialize_stream_head); NONE: the
 * status has no content (1xx, 204, 304), so there is no body to send. */
enum { RESP_FRAME_CHUNKED = 1, RESP_FRAME_LENGTH, RESP_FRAME_CLOSE, RESP_FRAME_NONE };

/* ------------------------------------------------------------------------
 * Cross-file API.
 */

/* module.c */
fulmen_state *mod_state_of_type(PyTypeObject *tp);
int64_t mod_now_ms(void); /* monotonic, coarse */
void mod_refresh_date(fulmen_state *st);
/* sec as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") in buf: its
 * length, or -1 (a year past 9999, no room). */
int mod_format_date(char *buf, size_t cap, int64_t sec);
/* Does the comma-separated header value v[0..n) hold tok[0..tl) as one of
 * its members (OWS around each trimmed, empty ones skipped)?  icase:
 * compared ignoring ASCII case (protocol names, RFC 9110 7.8), else
 * exactly (subprotocols, entity tags). */
int mod_list_has(const char *v, size_t n, const char *tok, size_t tl, int icase);
/* Split a Content-Type value v[0..n) into its media type v[0..*mtl) and
 * its charset parameter (*cs[0..*csl), unquoted; *cs NULL for none). */
void mod_content_type(const char *v, size_t n, size_t *mtl, const char **cs, size_t *csl);
/* fulmen.<name>, an exception class with base (a class or a tuple), into
 * *slot and the module: 0, or -1 with an exception. */
int mod_add_exception(PyObject *m, const char *name, const char *doc, PyObject *base,
                      PyObject **slot);
/* loop.create_future(), or the same made directly when future_type (a
 * ServerObject's) says it is the stock one, with *kw its cached keywords:
 * a new reference, or NULL with an exception. */
PyObject *mod_future_new(fulmen_state *st, PyObject *loop, PyObject *future_type,
                         PyObject **kw);
/* Take the Future *fut (none when NULL) and finish it, with exc when that
 * is not NULL, else with result (NULL: None), unless it is already done
 * (its awaiter was cancelled, say).  Returns 1 when it got the value, 0
 * when the caller still has it to keep (no future, or a done one).  A
 * failure is reported as unraisable. */
int mod_future_settle(fulmen_state *st, PyObject **fut, PyObject *result, PyObject *exc);
/* Is the Future *fut still awaited?  1 yes; 0 when there is none, or it is
 * done (then cleared: the await was cancelled); -1 with an exception. */
int mod_future_pending(fulmen_state *st, PyObject **fut);
/* mod_future_settle with exc, and asyncio's "never retrieved" log off */
void mod_future_fail_quietly(fulmen_state *st, PyObject **fut, PyObject *exc);
int mod_out_grow(fulmen_state *st, size_t extra); /* 0 or -1 (MemoryError) */
/* What the output buffer may keep between writes: a pipelined burst's
 * answers (CONN_OUT_HIGH) fit; one large answer's copy is given back. */
#define MOD_OUT_KEEP (1u << 20)
void mod_out_trim(fulmen_state *st);
/* Make room for extra more bytes in st->out: 0, or -1 with MemoryError. */
INLINE int mod_out_reserve(fulmen_state *st, size_t extra)
{
    if (LIKELY(st->out_len + extra <= st->out_cap))
        return 0;
    return mod_out_grow(st, extra);
}
INLINE int mod_out_put(fulmen_state *st, const char *s, size_t n)
{
    if (UNLIKELY(st->out_len + n > st->out_cap) && mod_out_grow(st, n) < 0)
        return -1;
    memcpy(st->out + st->out_len, s, n);
    st->out_len += n;
    return 0;
}
int mod_out_body(fulmen_state *st, PyObject *bytes_obj, const char *p,
                 size_t n);
/* Writing for connection c from app code that may run while st->out holds
 * another connection's answers (a view, a hook or a done-callback of that
 * other one sends on c's WebSocket, or reads c's request.stream()): those
 * are set aside, the buffer itself, so that offsets and pointers into it
 * stay good, and st->out is c's until mod_out_leave puts them back. */
typedef struct {
    char *out;
    size_t len, cap, big;
    PyObject *chunks;
    void *conn, *mine;
    int aside, busy; /* (busy: st->out_busy, which is about the bytes set aside) */
} mod_out_saved;
void mod_out_enter(fulmen_state *st, void *c, mod_out_saved *sv);
void mod_out_leave(fulmen_state *st, mod_out_saved *sv);
/* A str's UTF-8 text: an ASCII str is its own UTF-8, read in place;
 * others go through PyUnicode_AsUTF8AndSize (NULL with an exception). */
INLINE const char *mod_utf8(PyObject *s, Py_ssize_t *n)
{
    if (LIKELY(PyUnicode_IS_COMPACT_ASCII(s))) {
        *n = PyUnicode_GET_LENGTH(s);
        return (const char *)PyUnicode_DATA(s);
    }
    return PyUnicode_AsUTF8AndSize(s, n);
}
/* Write the decimal digits of u ending just before o; returns the start
 * (Content-Length, JSON numbers, the access log). */
INLINE char *mod_utoa_rev(char *o, uint64_t u)
{
    static const char digits2[201] =
        "0001020304050607080910111213141516171819"
        "2021222324252627282930313233343536373839"
        "4041424344454647484950515253545556575859"
        "6061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    while (u >= 100) {
        unsigned r = (unsigned)(u % 100);
        u /= 100;
        o -= 2;
        memcpy(o, digits2 + 2 * r, 2);
    }
    if (u >= 10) {
        o -= 2;
        memcpy(o, digits2 + 2 * u, 2);
    } else {
        *--o = (char)('0' + u);
    }
    return o;
}
/* The value of a hex digit, or -1 (percent-decoding, JSON \u escapes). */
INLINE int mod_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* The byte a percent-escape at s[i] of s[0..n) stands for ("%4A" is 0x4A),
 * or -1 when there is none there (no '%', or not two hex digits after it). */
INLINE int mod_pct_at(const char *s, size_t i, size_t n)
{
    int hi, lo;
    if (s[i] != '%' || i + 2 >= n || (hi = mod_hexval((unsigned char)s[i + 1])) < 0 ||
        (lo = mod_hexval((unsigned char)s[i + 2])) < 0)
        return -1;
    return hi * 16 + lo;
}

/* conn.c */
/* tls_read's ends: TLS_PLAIN_HTTP is a request in plain HTTP on the TLS port */
enum { TLS_AGAIN = 0, TLS_EOF = -1, TLS_ERROR = -2, TLS_PLAIN_HTTP = -3 };
struct bio_method_st *tls_bio_method(void);
void tls_bio_method_free(struct bio_method_st *m);
struct ssl_ctx_st *tls_ctx_from(PyObject *obj, unsigned long long options,
                                unsigned long long openssl_version);
void tls_ctx_free(struct ssl_ctx_st *ctx);
struct ssl_st *tls_new(struct ssl_ctx_st *ctx, struct bio_method_st *meth, tls_out *out,
                       int fd, const char *pre, size_t n);
void tls_free(struct ssl_st *ssl);
int tls_read(struct ssl_st *ssl, char *buf, int n);
int tls_write(struct ssl_st *ssl, const char *p, size_t n);
void tls_shutdown(struct ssl_st *ssl);
int tls_pending(struct ssl_st *ssl);
int tls_drained(struct ssl_st *ssl);
void tls_set_owner(struct ssl_st *ssl, void *owner);
void *tls_owner(struct ssl_st *ssl);
int tls_ready(struct ssl_st *ssl);
PyObject *tls_info(struct ssl_st *ssl);

extern PyType_Spec conn_server_spec;
int conn_is_tls(ConnObject *c);             /* TLS done in C on this connection */
int conn_proxy_trusted(ConnObject *c);
PyObject *conn_peer_host(ConnObject *c);     /* new reference */
extern PyType_Spec conn_spec;
void conn_deliver(ConnObject *c, uint32_t seq, PyObject *response);
/* for ws.c: the connection as a byte pipe */
int conn_flush_out(ConnObject *c);           /* write st->out now; 0 or -1 */
/* the WebSocket holds frames back: ws_flush_held when the loop turns; -1
 * (no exception set) when that cannot be scheduled */
int conn_hold_output(ConnObject *c);
void conn_close_transport(ConnObject *c, int abort);
void conn_pause_reading(ConnObject *c, int on);
PyObject *conn_drain_waiter(ConnObject *c);  /* future while paused, else NULL */
int conn_piled(ConnObject *c);               /* paused, and over CONN_PILE_MAX held */
int conn_gone(ConnObject *c);                /* lost or aborted: nothing more goes out */
uint32_t conn_io_turn(ConnObject *c);        /* changes when input comes in */
PyObject *conn_get_loop(ConnObject *c);      /* borrowed */
PyObject *conn_new_future(ConnObject *c);    /* a Future of its server's loop */
PyObject *conn_get_server(ConnObject *c);    /* borrowed */
void conn_body_drained(ConnObject *c);       /* a body stream wants more */
void conn_set_close_deadline(ConnObject *c);
void conn_deliver_error(ConnObject *c, uint32_t seq, RequestObject *req);

/* request.c */
extern PyType_Spec req_spec;
int req_type_ready(PyObject *m, fulmen_state *st);
extern PyType_Spec req_headers_spec;
extern PyType_Spec req_query_spec;
/* A request to parse into: its head (r->h) holds stale values until the
 * parser's first call clears it. */
RequestObject *req_acquire(fulmen_state *st, uint32_t max_headers);
void req_release(RequestObject *r);
/* A request that outlives the read it came in gets its own copy of its
 * bytes if they are in the module's reused read buffer.  0 or -1. */
int req_own_raw(RequestObject *r);
int req_ensure_header_cap(RequestObject *r, uint32_t cap);
/* Index of the first header named lname (lower case), or -1; _from: the
 * first at index from or after. */
int req_find_header(RequestObject *r, const char *lname);
int req_find_header_from(RequestObject *r, const char *lname, uint32_t from);
/* The client address a proxy forwarded (X-Forwarded-For, Forwarded for=),
 * for a peer the caller trusts: 1 and the span, or 0.  Runs no Python. */
int req_forwarded_client(RequestObject *r, const char **vp, size_t *np);

/* request.c: request bodies read as they arrive (stream=True routes) */
extern PyType_Spec req_stream_spec;
PyObject *req_stream_new(fulmen_state *st, ConnObject *c);
int req_stream_push(PyObject *bs, const char *p, size_t n); /* 0 or -1 */
void req_stream_end(PyObject *bs, PyObject *exc); /* exc NULL: the end */
size_t req_stream_buffered(PyObject *bs);

/* response.c */
extern PyType_Spec resp_spec;
/* Response(*args, **kw) for request.Response(...) */
PyObject *resp_make(fulmen_state *st, PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames);
PyObject *resp_new_simple(fulmen_state *st, int code, const char *text,
                          PyObject *extra_headers);
/* Append the response's wire form to st->out.  head_only: HEAD request
 * (the head a GET would get, Content-Length included, and no body).
 * conn_hdr: 0 none, 1 "Connection: close", 2 "Connection: keep-alive".
 * Returns 0, -1 with an exception set, or -2 when the response has an
 * unsafe header (nothing appended; the caller answers 500). */
int resp_serialize(fulmen_state *st, PyObject *resp, int head_only,
                   int conn_hdr);
/* The app's headers on resp say "Connection: close" (the server's own
 * Connection header otherwise stands, and the app's is dropped). */
int resp_asks_close(PyObject *resp);
/* The head of a RESP_STREAM response; returns RESP_FRAME_*, -1 or -2 as
 * resp_serialize.  chunked_ok: the client speaks HTTP/1.1.  *length: the
 * app's Content-Length, for RESP_FRAME_LENGTH. */
int resp_serialize_stream_head(fulmen_state *st, PyObject *resp, int conn_hdr,
                               int chunked_ok, uint64_t *length);
/* A plain-text answer built without a Response object (the fallback when
 * one cannot be written, timeouts); head_only: neither length nor body. */
int resp_serialize_status(fulmen_state *st, int code, const char *text,
                          int head_only, int conn_hdr, const char *extra_hdrs);
const char *resp_reason(int code);
void resp_release(fulmen_state *st, PyObject *resp); /* drop a reference; reuse if unshared */
void resp_type_ready(PyTypeObject *tp);

/* router.c */
extern PyType_Spec router_route_spec;
extern PyType_Spec router_matcher_spec;
/* Find the route for path[0..len) and method.  Returns the route (borrowed)
 * and fills params (relative to path) and *n_params; NULL when nothing
 * matches, with *allow set to a borrowed str of allowed methods when the
 * path exists for other methods (405), else NULL (404). */
RouteObject *router_match(PyObject *matcher, const char *path, size_t len,
                          int method_id, const char *method, size_t mlen,
                          h1_span *params, int *n_params, PyObject **allow);

/* ws.c */
extern PyType_Spec ws_spec;
WebSocketObject *ws_new(fulmen_state *st, ConnObject *c, PyObject *request,
                        PyObject *subprotocol, uint64_t max_message,
                        const ws_deflate_params *dp, double ping_interval,
                        double ping_timeout);
int64_t ws_deadline(WebSocketObject *ws); /* 0: none */
void ws_timer(WebSocketObject *ws, int64_t now); /* the deadline passed */
int ws_feed(WebSocketObject *ws, const char *data, size_t n);
void ws_connection_lost(WebSocketObject *ws);
PyObject *ws_closed_exception(WebSocketObject *ws); /* WebSocketClosed(code, reason) */
void ws_going_away(WebSocketObject *ws); /* the server stops: close with 1001 */
void ws_flush_held(WebSocketObject *ws);  /* write the frames send() held back */

/* json.c */
typedef struct {
    char *p;
    size_t len, cap;
} json_buf;
/* Parse the JSON text p[0..n).  Returns a new reference, or NULL with an
 * exception set: fulmen.InvalidJSON (a BadRequest and a json.JSONDecodeError)
 * for any malformed input, else e.g. MemoryError. */
PyObject *json_decode(fulmen_state *st, const char *p, size_t n);
/* Append json.dumps(obj) (default settings) to b.  Returns 0, -1 with an
 * exception set, or 1 when obj holds something only json.dumps handles
 * (b then holds partial output). */
int json_encode(fulmen_state *st, json_buf *b, PyObject *obj);
int json_buf_grow(json_buf *b, size_t extra); /* 0 or -1 (MemoryError) */
PyObject *json_py_loads(PyObject *m, PyObject *arg); /* _json_loads (tests) */
int json_init(PyObject *m, fulmen_state *st); /* after st->BadRequest */
void json_clear(fulmen_state *st);

/* files.c: small files answered in C */
extern PyType_Spec files_spec; /* StaticFiles(root, fallback): add_static's view */
/* A Response(file=path) answered for req in C (GET, 200, a whole small
 * file, no condition): a new Response; NULL with no exception when
 * streams._file_response must answer; NULL with one on an error. */
PyObject *files_response(fulmen_state *st, RequestObject *req, PyObject *resp);
void files_cache_free(fulmen_state *st); /* module clear */
PyObject *files_py_hits(PyObject *m, PyObject *unused); /* _file_hits() (tests) */
/* _file_response(request, response): files_response, or None */
PyObject *files_py_response(PyObject *m, PyObject *const *args, Py_ssize_t nargs);
/* connlog.c: Python's stderr through the access log's buffer */
PyObject *conn_log_stderr_write(PyObject *module, PyObject *arg);
PyObject *conn_log_stderr_drain(PyObject *module, PyObject *arg);

/* awaitable.c */
extern PyType_Spec aw_resume_spec;
extern PyType_Spec aw_ready_spec;
extern PyType_Spec aw_shared_spec;
PyObject *aw_ready_new(fulmen_state *st, PyObject *value); /* steals nothing */
PyObject *aw_ready_yield_new(fulmen_state *st, PyObject *value); /* yields once first */
/* A new reference to an awaitable of fut for one of the several tasks that
 * may wait on it (asyncio.shield, when awaited): cancelling one's wait
 * (asyncio.wait_for) cancels neither fut nor the others'.  Takes the
 * reference to fut (NULL: returns NULL); NULL with an exception. */
PyObject *aw_shared_new(fulmen_state *st, PyObject *fut);
PyObject *aw_resume_new(fulmen_state *st, ConnObject *c, RequestObject *req,
                        PyObject *coro);
void aw_resume_park(PyObject *aw, uint32_t seq, PyObject *first);
void aw_resume_drop(PyObject *aw);
void aw_resume_set_eager(PyObject *aw);
PySendResult aw_resume_outcome(PyObject *aw, PyObject **result);

#endif
