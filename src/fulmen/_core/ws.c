/*
 * ws.c - WebSocket connections (RFC 6455, RFC 7692 permessage-deflate).
 *
 * After the 101 answer the connection hands every byte it reads to the
 * WebSocket object here.  Frames are parsed, unmasked and checked by the
 * pure-C codec (wsframe.c); messages are reassembled here, validated as
 * UTF-8 while they arrive, inflated when compressed, and queued for the
 * handler's receive().  Pings are answered and the close handshake is
 * done without the handler's help.  send() frames (and deflates) in C and
 * returns an awaitable that waits only while the client is not reading.
 */
#include "common.h"

#include <zlib.h>

#include "wsframe.h"

enum { WS_OPEN = 0, WS_CLOSING, WS_CLOSED };

#define WS_QUEUE_HIGH 32 /* stop reading while this many messages wait, */
#define WS_QUEUE_LOW 8
#define WS_QUEUE_BYTES_HIGH (1u << 20) /* or while they hold this much */
#define WS_QUEUE_BYTES_LOW (256u << 10)
/* a receive buffer (ws->in, ws->msg) larger than this is freed once empty:
 * an idle socket keeps no memory of the largest message it was sent */
#define WS_BUF_KEEP (64u << 10)
/* a message's frame headers may take this much beyond max_message on the
 * wire: past it the message closes with 1009, however small its payload
 * (empty continuation frames would otherwise go on for ever, unseen by the
 * handler), as a chunked HTTP body's framing is bounded */
#define WS_FRAMING_SLACK (512u << 10)

struct WebSocketObject {
    PyObject_HEAD
    fulmen_state *st;
    ConnObject *conn;        /* strong; NULL once the connection is gone */
    PyObject *request;
    PyObject *subprotocol;   /* str or None */
    /* receiving */
    uint8_t *in;             /* bytes not yet parsed into frames */
    size_t in_len, in_cap;
    uint8_t *msg;            /* the message being reassembled */
    size_t msg_len, msg_cap;
    uint64_t msg_framing;    /* the frame headers of that message, in bytes */
    int msg_op;              /* 0, WS_OP_TEXT or WS_OP_BINARY */
    int msg_deflated;
    ws_utf8_state utf8;
    PyObject **queue;        /* ring of received messages (ws_queue_push) */
    uint32_t queue_first, queue_len, queue_cap;
    uint32_t deferred;       /* of them still deflated (ws_deferred_message) */
    size_t queue_bytes;      /* what they hold (ws_msg_size) */
    /* sending: data frames held back while received messages wait
     * (ws_write_frame), written in one go at the loop's turn at the latest */
    uint8_t *held;
    size_t held_len, held_cap;
    PyObject *waiter;        /* future of a pending receive() */
    PyObject *close_waiter;  /* future of a pending close() */
    uint64_t max_message;
    int state;
    int close_code;          /* the peer's, or ours when we failed it */
    PyObject *close_reason;
    int reading_paused;
    /* keep-alive: a ping after ping_interval without traffic, closed when
     * no frame comes back within ping_timeout (0: off) */
    int64_t ping_interval_ms, ping_timeout_ms;
    int64_t last_rx;
    int ping_out;
    uint32_t send_turn, sends; /* ws_drain */
    /* permessage-deflate */
    int deflate;
    int server_no_ctx, client_no_ctx;
    int server_bits, client_bits;
    z_stream zin, zout;
    int zin_ready, zout_ready;
};

/* ========================================================================
 * Helpers
 */

PyObject *ws_closed_exception(WebSocketObject *ws)
{
    return PyObject_CallFunction(ws->st->WebSocketClosed, "iO",
                                 ws->close_code ? ws->close_code : 1006,
                                 ws->close_reason ? ws->close_reason : Py_None);
}

static PyObject *ws_closed_error(WebSocketObject *ws)
{
    PyObject *exc = ws_closed_exception(ws);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static int ws_grow(uint8_t **buf, size_t *cap, size_t need)
{
    size_t c = *cap ? *cap : 4096;
    uint8_t *p;
    if (need <= *cap)
        return 0;
    while (c < need)
        c *= 2;
    p = PyMem_Realloc(*buf, c);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *buf = p;
    *cap = c;
    return 0;
}

/* Hold back data frames of up to this much in all (ws_write_frame). */
#define WS_HELD_MAX (16u << 10)

/* Put the held frames in st->out, and free their buffer: a connection
 * keeps none between bursts. */
static int ws_take_held(WebSocketObject *ws)
{
    int rc = 0;
    if (ws->held_len > 0)
        rc = mod_out_put(ws->st, (const char *)ws->held, ws->held_len);
    PyMem_Free(ws->held);
    ws->held = NULL;
    ws->held_len = ws->held_cap = 0;
    return rc;
}

/* Write one frame: header, then payload (deflated by the caller).  A data
 * frame sent while received messages still wait is held back: the handler
 * is working through them (an echo, a pipelining client) and will likely
 * send again before it waits, so its answers leave in one write instead
 * of one each, when it next receives with nothing left, sends a control
 * frame or a frame too large to hold, or the loop turns (conn_hold_output).
 * Any other frame first writes what is held, so that order is kept. */
static int ws_write_frame(WebSocketObject *ws, int opcode, int rsv1,
                          const uint8_t *p, size_t n)
{
    uint8_t hdr[10];
    size_t hl;
    mod_out_saved sv;
    int rc;
    if (ws->conn == NULL)
        return 0;
    hl = ws_build_header(hdr, 1, rsv1, opcode, n);
    if (opcode < 8 && ws->queue_len > 0 &&
        ws->held_len + hl + n <= WS_HELD_MAX &&
        (ws->held_len > 0 || conn_hold_output(ws->conn) == 0)) {
        if (ws_grow(&ws->held, &ws->held_cap, ws->held_len + hl + n) < 0)
            return -1;
        memcpy(ws->held + ws->held_len, hdr, hl);
        memcpy(ws->held + ws->held_len + hl, p, n);
        ws->held_len += hl + n;
        return 0;
    }
    /* (a view of another connection may send: the answers it has made
     * so far are not ours to send) */
    mod_out_enter(ws->st, ws->conn, &sv);
    if ((ws->held_len > 0 && ws_take_held(ws) < 0) ||
        mod_out_put(ws->st, (const char *)hdr, hl) < 0 ||
        mod_out_put(ws->st, (const char *)p, n) < 0)
        rc = -1;
    else
        rc = conn_flush_out(ws->conn);
    mod_out_leave(ws->st, &sv);
    return rc;
}

void ws_flush_held(WebSocketObject *ws)
{
    mod_out_saved sv;
    if (ws->held_len == 0)
        return;
    if (ws->conn == NULL) {
        ws->held_len = 0; /* nobody to send to: dropped */
        ws_take_held(ws);
        return;
    }
    mod_out_enter(ws->st, ws->conn, &sv);
    if (ws_take_held(ws) < 0 || conn_flush_out(ws->conn) < 0)
        PyErr_WriteUnraisable((PyObject *)ws);
    mod_out_leave(ws->st, &sv);
}

/* Everything the handler may wait on learns that the socket is closed. */
static void ws_wake_all(WebSocketObject *ws)
{
    if (ws->waiter != NULL) {
        PyObject *t, *v, *tb;
        ws_closed_error(ws);
        PyErr_Fetch(&t, &v, &tb);
        PyErr_NormalizeException(&t, &v, &tb);
        mod_future_settle(ws->st, &ws->waiter, NULL, v);
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
    }
    mod_future_settle(ws->st, &ws->close_waiter, NULL, NULL);
}

/* Close the TCP connection once what is written has gone out.  (From the
 * app's code, maybe, while st->out holds another connection's answers:
 * they are set aside, not flushed to this one.) */
static void ws_end_transport(WebSocketObject *ws, int abort)
{
    mod_out_saved sv;
    if (ws->conn == NULL)
        return;
    mod_out_enter(ws->st, ws->conn, &sv);
    conn_close_transport(ws->conn, abort);
    mod_out_leave(ws->st, &sv);
}

/* A protocol violation by the client: send a close frame with code, then
 * close (RFC 6455 7.1.7: "fail the WebSocket connection"). */
static void ws_fail(WebSocketObject *ws, int code)
{
    uint8_t payload[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    if (ws->state == WS_CLOSED)
        return;
    if (ws->state == WS_OPEN && ws_write_frame(ws, WS_OP_CLOSE, 0, payload, 2) < 0)
        PyErr_WriteUnraisable((PyObject *)ws);
    ws->state = WS_CLOSED;
    ws->close_code = code;
    ws_end_transport(ws, 0);
    ws_wake_all(ws);
}

/* ========================================================================
 * permessage-deflate (RFC 7692)
 */

/* The most bytes a compressed message may take.  The limit is on the
 * inflated message (ws_inflate checks it), and deflate makes what it
 * cannot shrink a little larger: about 5 bytes per stored block of up to
 * 64 KiB, and a flush's; a thousandth and 64 bytes more covers that. */
static uint64_t ws_deflated_max(uint64_t n)
{
    uint64_t extra = (n >> 10) + 64;
    return n > UINT64_MAX - extra ? UINT64_MAX : n + extra;
}

/* Inflate a message's payload in[0..n) into *out (PyMem, NULL when empty)
 * and *out_len: 0, 1 (corrupt), 2 (too large once inflated) or -1 (an
 * exception set).  Messages go through the inflater in the order they came
 * (context takeover). */
static int ws_inflate(WebSocketObject *ws, const uint8_t *in, size_t n, uint8_t **out,
                      size_t *out_len)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    uint8_t *res = NULL;
    size_t cap = 0, len = 0;
    int rc, pass, ended = 0;
    *out = NULL;
    *out_len = 0;
    if (n == 0) {
        /* no deflate data at all (a compressor sends an empty message as
         * 0x00, RFC 7692 7.2.3.6): the empty message, and the inflater left
         * as it is, which the tail alone would put in the middle of a
         * stored block */
        return 0;
    }
    if (!ws->zin_ready) {
        memset(&ws->zin, 0, sizeof(ws->zin));
        if (inflateInit2(&ws->zin, -ws->client_bits) != Z_OK) {
            PyErr_SetString(PyExc_MemoryError, "inflateInit2 failed");
            return -1;
        }
        ws->zin_ready = 1;
    }
    for (pass = 0; pass < 2 && !ended; pass++) {
        ws->zin.next_in = pass == 0 ? (uint8_t *)in : (uint8_t *)tail;
        ws->zin.avail_in = (uInt)(pass == 0 ? n : 4);
        for (;;) {
            uInt in_before = ws->zin.avail_in;
            if (ws_grow(&res, &cap, len + 16384) < 0)
                goto error;
            ws->zin.next_out = res + len;
            ws->zin.avail_out = (uInt)(cap - len);
            rc = inflate(&ws->zin, Z_SYNC_FLUSH);
            len = cap - ws->zin.avail_out;
            if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) {
                PyMem_Free(res);
                return 1; /* corrupt: the caller fails the connection */
            }
            if (len > ws->max_message) {
                PyMem_Free(res);
                return 2; /* too big once inflated */
            }
            if (rc == Z_STREAM_END) {
                /* a final block (BFINAL, RFC 7692 7.2.3.4): the message
                 * ends here; bytes after it are not deflate data */
                ended = 1;
                if (pass == 0 && ws->zin.avail_in > 0) {
                    PyMem_Free(res);
                    return 1;
                }
                break;
            }
            if (ws->zin.avail_out > 0 && ws->zin.avail_in == 0)
                break; /* all input consumed and flushed */
            if (ws->zin.avail_out > 0 && ws->zin.avail_in == in_before)
                break; /* no progress: inflate wants input we do not have */
        }
    }
    if (ended)
        inflateReset(&ws->zin); /* the next message starts a new stream */
    if (ws->client_no_ctx && !ended)
        inflateReset(&ws->zin);
    *out = res;
    *out_len = len;
    return 0;
error:
    PyMem_Free(res);
    return -1;
}

static int ws_send_deflated(WebSocketObject *ws, int opcode, const uint8_t *p, size_t n)
{
    uint8_t *res = NULL;
    size_t cap = 0, len = 0;
    int rc;
    if (!ws->zout_ready) {
        memset(&ws->zout, 0, sizeof(ws->zout));
        if (deflateInit2(&ws->zout, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -ws->server_bits,
                         8, Z_DEFAULT_STRATEGY) != Z_OK) {
            PyErr_SetString(PyExc_MemoryError, "deflateInit2 failed");
            return -1;
        }
        ws->zout_ready = 1;
    }
    ws->zout.next_in = (uint8_t *)p;
    ws->zout.avail_in = (uInt)n;
    do {
        if (ws_grow(&res, &cap, len + n / 2 + 64) < 0)
            return -1;
        ws->zout.next_out = res + len;
        ws->zout.avail_out = (uInt)(cap - len);
        rc = deflate(&ws->zout, Z_SYNC_FLUSH);
        len = cap - ws->zout.avail_out;
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            PyMem_Free(res);
            PyErr_SetString(PyExc_RuntimeError, "deflate failed");
            return -1;
        }
    } while (ws->zout.avail_out == 0);
    if (len >= 4 && memcmp(res + len - 4, "\x00\x00\xff\xff", 4) == 0)
        len -= 4;
    if (len == 0) {
        /* an empty message after others: zlib had nothing to flush, and the
         * client's tail would open a stored block; RFC 7692 7.2.3.6 sends
         * an empty block instead (res has room: see ws_grow above) */
        res[0] = 0x00;
        len = 1;
    }
    if (ws->server_no_ctx)
        deflateReset(&ws->zout);
    rc = ws_write_frame(ws, opcode, 1, res, len);
    PyMem_Free(res);
    return rc;
}

/* ========================================================================
 * Receiving
 */

/* The memory a queued message holds, near enough: its bytes, or its
 * characters times their width. */
static size_t ws_msg_size(PyObject *m)
{
    if (PyTuple_Check(m))
        m = PyTuple_GET_ITEM(m, 0); /* deferred: its deflated payload */
    if (PyBytes_Check(m))
        return (size_t)PyBytes_GET_SIZE(m);
    return (size_t)PyUnicode_GET_LENGTH(m) * PyUnicode_KIND(m);
}

/* Queue m (a new reference is taken): 0, or -1 with MemoryError. */
static int ws_queue_push(WebSocketObject *ws, PyObject *m)
{
    if (ws->queue_len == ws->queue_cap) {
        uint32_t cap = ws->queue_cap ? ws->queue_cap * 2 : 8, i;
        PyObject **q = PyMem_Malloc(cap * sizeof(PyObject *));
        if (q == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (i = 0; i < ws->queue_len; i++)
            q[i] = ws->queue[(ws->queue_first + i) & (ws->queue_cap - 1)];
        PyMem_Free(ws->queue);
        ws->queue = q;
        ws->queue_first = 0;
        ws->queue_cap = cap;
    }
    Py_INCREF(m);
    ws->queue[(ws->queue_first + ws->queue_len++) & (ws->queue_cap - 1)] = m;
    return 0;
}

/* The first queued message (there is one): the reference passes. */
static PyObject *ws_queue_pop(WebSocketObject *ws)
{
    PyObject *m = ws->queue[ws->queue_first];
    ws->queue_first = (ws->queue_first + 1) & (ws->queue_cap - 1);
    ws->queue_len--;
    return m;
}

static void ws_queue_clear(WebSocketObject *ws)
{
    while (ws->queue_len > 0)
        Py_DECREF(ws_queue_pop(ws));
    ws->queue_bytes = 0;
    ws->deferred = 0;
}

static void ws_deliver(WebSocketObject *ws, PyObject *m)
{
    int full = ws->queue_len >= WS_QUEUE_HIGH || ws->queue_bytes >= WS_QUEUE_BYTES_HIGH;
    if (!PyTuple_Check(m) && mod_future_settle(ws->st, &ws->waiter, m, NULL)) {
        Py_DECREF(m);
        return;
    }
    if (full && ws->state != WS_OPEN) {
        /* our close is out and its answer is being read: what comes before
         * it over the queue's limit is dropped (RFC 6455 1.4) */
        Py_DECREF(m);
        return;
    }
    /* no receive() waits (or the one that did was cancelled): queued */
    if (ws_queue_push(ws, m) < 0) {
        PyErr_WriteUnraisable((PyObject *)ws);
    } else {
        ws->queue_bytes += ws_msg_size(m);
        ws->deferred += PyTuple_Check(m);
    }
    Py_DECREF(m);
    /* a handler that does not receive holds at most WS_QUEUE_HIGH messages
     * or about WS_QUEUE_BYTES_HIGH plus what one read brought (deflated
     * messages stay so): then the client waits, while the WebSocket is
     * open (closing, the answer to our close must be read) */
    if ((ws->queue_len >= WS_QUEUE_HIGH ||
         ws->queue_bytes >= WS_QUEUE_BYTES_HIGH) && !ws->reading_paused &&
        ws->state == WS_OPEN && ws->conn != NULL) {
        ws->reading_paused = 1;
        conn_pause_reading(ws->conn, 1);
    }
}

/* The final frame of a message arrived: decode it and hand it over. */
/* The message op (text or binary) whose payload p[0..n) is, or NULL and
 * the code to fail the WebSocket with: 1007 (text that is not UTF-8), or
 * 1011 with an exception set.  A text payload that came whole is checked
 * here; one that came in frames was checked as they came (ws->utf8). */
static PyObject *ws_message(int op, const uint8_t *p, size_t n, ws_utf8_state *checked,
                            int *code)
{
    PyObject *m;
    ws_utf8_state s;
    if (op == WS_OP_TEXT) {
        if (checked == NULL) {
            ws_utf8_init(&s);
            checked = &s;
            if (ws_utf8_validate(&s, p, n) < 0) {
                *code = 1007;
                return NULL;
            }
        }
        if (ws_utf8_finish(checked) < 0) {
            *code = 1007;
            return NULL;
        }
        m = PyUnicode_DecodeUTF8((const char *)p, (Py_ssize_t)n, "strict");
    } else {
        m = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
    }
    if (m == NULL)
        *code = 1011;
    return m;
}

/* The message a deflated payload p[0..n) holds, inflated now; NULL as for
 * ws_message, or with 1007 (corrupt) or 1009 (too large once inflated). */
static PyObject *ws_inflated_message(WebSocketObject *ws, int op, const uint8_t *p, size_t n,
                                     int *code)
{
    uint8_t *res;
    size_t len;
    PyObject *m;
    int rc = ws_inflate(ws, p, n, &res, &len);
    if (rc != 0) {
        *code = rc < 0 ? 1011 : rc == 1 ? 1007 : 1009;
        return NULL;
    }
    m = ws_message(op, res != NULL ? res : (const uint8_t *)"", len, NULL, code);
    PyMem_Free(res);
    return m;
}

/* A deflated message the handler is too far behind to take yet (the queue
 * is full, or holds such messages before it): queued as (payload, op),
 * still deflated, and inflated when taken (ws_pop).  What waits then holds
 * no more than what was read, however well it inflates. */
static PyObject *ws_deferred_message(WebSocketObject *ws, int *code)
{
    PyObject *m = Py_BuildValue("(y#i)", (const char *)ws->msg, (Py_ssize_t)ws->msg_len,
                                ws->msg_op);
    if (m == NULL)
        *code = 1011;
    return m;
}

/* A message that could not be made (ws_message's NULL): the WebSocket
 * fails with code, and a 1011's exception is reported. */
static void ws_message_failed(WebSocketObject *ws, int code)
{
    if (code == 1011)
        PyErr_WriteUnraisable((PyObject *)ws);
    ws_fail(ws, code);
}

static void ws_message_done(WebSocketObject *ws)
{
    PyObject *m;
    int code = 0;
    if (ws->msg_deflated && (ws->reading_paused || ws->deferred > 0))
        m = ws_deferred_message(ws, &code);
    else if (ws->msg_deflated)
        m = ws_inflated_message(ws, ws->msg_op, ws->msg, ws->msg_len, &code);
    else
        m = ws_message(ws->msg_op, ws->msg, ws->msg_len, &ws->utf8, &code);
    ws->msg_len = 0;
    ws->msg_op = 0;
    ws->msg_deflated = 0;
    if (ws->msg_cap > WS_BUF_KEEP) {
        PyMem_Free(ws->msg);
        ws->msg = NULL;
        ws->msg_cap = 0;
    }
    if (m == NULL) {
        ws_message_failed(ws, code);
        return;
    }
    ws_deliver(ws, m);
}

static void ws_on_close_frame(WebSocketObject *ws, const uint8_t *p, size_t n)
{
    unsigned code;
    const uint8_t *reason;
    size_t rlen;
    /* the client's echo of our close is valid whatever our code was */
    unsigned sent = ws->state == WS_CLOSING ? (unsigned)ws->close_code : 0;
    int rc = ws_parse_close(p, n, sent, &code, &reason, &rlen);
    if (rc < 0) {
        ws_fail(ws, (int)ws_error_status(rc));
        return;
    }
    ws->close_code = (int)code;
    Py_XSETREF(ws->close_reason,
               PyUnicode_DecodeUTF8((const char *)reason, (Py_ssize_t)rlen, "replace"));
    if (ws->close_reason == NULL)
        PyErr_Clear();
    if (ws->state == WS_OPEN) {
        /* echo the code (none when the peer sent none) */
        uint8_t echo[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        if (ws_write_frame(ws, WS_OP_CLOSE, 0, echo, code == 1005 ? 0 : 2) < 0)
            PyErr_WriteUnraisable((PyObject *)ws);
    }
    ws->state = WS_CLOSED;
    ws_end_transport(ws, 0);
    ws_wake_all(ws);
}

/* Bytes from the connection: control frames are answered at once,
 * messages queued (deflated ones kept deflated while the handler is
 * behind).  Returns 0. */
int ws_feed(WebSocketObject *ws, const char *data, size_t n)
{
    size_t pos = 0;
    unsigned flags = WS_HDR_REQUIRE_MASK | (ws->deflate ? WS_HDR_ALLOW_RSV1 : 0);
    if (ws->state == WS_CLOSED)
        return 0;
    ws->last_rx = mod_now_ms();
    ws->ping_out = 0; /* any frame shows the peer is alive */
    if (ws_grow(&ws->in, &ws->in_cap, ws->in_len + n) < 0) {
        PyErr_WriteUnraisable((PyObject *)ws);
        ws_fail(ws, 1011);
        return 0;
    }
    memcpy(ws->in + ws->in_len, data, n);
    ws->in_len += n;
    while (ws->state != WS_CLOSED) {
        ws_header h;
        uint8_t *payload;
        int hl = ws_parse_header(ws->in + pos, ws->in_len - pos, flags, &h);
        if (hl == 0)
            break;
        if (hl < 0) {
            ws_fail(ws, (int)ws_error_status(hl));
            return 0;
        }
        if (h.opcode < 8) {
            /* data frame: size checks before buffering its payload */
            if (h.opcode == WS_OP_CONT ? ws->msg_op == 0 : ws->msg_op != 0) {
                ws_fail(ws, 1002);
                return 0;
            }
            if (h.opcode == WS_OP_CONT && h.rsv1) {
                ws_fail(ws, 1002);
                return 0;
            }
            uint64_t limit = ws->max_message;
            if (h.opcode == WS_OP_CONT ? ws->msg_deflated : h.rsv1)
                limit = ws_deflated_max(limit);
            if (h.payload_len > limit || h.payload_len > limit - ws->msg_len) {
                ws_fail(ws, 1009);
                return 0;
            }
        }
        if (h.payload_len > ws->in_len - pos - (size_t)hl)
            break;
        payload = ws->in + pos + hl;
        ws_unmask(payload, (size_t)h.payload_len, h.mask, 0);
        switch (h.opcode) {
        case WS_OP_TEXT:
        case WS_OP_BINARY:
            ws->msg_op = h.opcode;
            ws->msg_deflated = h.rsv1;
            ws->msg_framing = 0;
            ws_utf8_init(&ws->utf8);
            /* fall through */
        case WS_OP_CONT:
            ws->msg_framing += (uint64_t)hl;
            if (ws->msg_framing > ws->max_message + WS_FRAMING_SLACK) {
                ws_fail(ws, 1009);
                return 0;
            }
            if (ws_grow(&ws->msg, &ws->msg_cap, ws->msg_len + (size_t)h.payload_len + 1) < 0) {
                PyErr_WriteUnraisable((PyObject *)ws);
                ws_fail(ws, 1011);
                return 0;
            }
            memcpy(ws->msg + ws->msg_len, payload, (size_t)h.payload_len);
            if (ws->msg_op == WS_OP_TEXT && !ws->msg_deflated &&
                ws_utf8_validate(&ws->utf8, payload, (size_t)h.payload_len) < 0) {
                ws_fail(ws, 1007); /* fail fast, mid-message */
                return 0;
            }
            ws->msg_len += (size_t)h.payload_len;
            if (h.fin)
                ws_message_done(ws);
            break;
        case WS_OP_PING:
            if (ws->state == WS_OPEN &&
                ws_write_frame(ws, WS_OP_PONG, 0, payload, (size_t)h.payload_len) < 0)
                PyErr_WriteUnraisable((PyObject *)ws);
            break;
        case WS_OP_PONG:
            break;
        case WS_OP_CLOSE:
            ws_on_close_frame(ws, payload, (size_t)h.payload_len);
            break;
        }
        pos += (size_t)hl + (size_t)h.payload_len;
    }
    if (pos > 0 && ws->in != NULL) {
        memmove(ws->in, ws->in + pos, ws->in_len - pos);
        ws->in_len -= pos;
    }
    if (ws->in_len == 0 && ws->in_cap > WS_BUF_KEEP) {
        PyMem_Free(ws->in);
        ws->in = NULL;
        ws->in_cap = 0;
    }
    return 0;
}

int64_t ws_deadline(WebSocketObject *ws)
{
    /* while the server does not read (the handler is behind), the
     * client's pongs wait unread: no keep-alive deadline then */
    if (ws->ping_interval_ms <= 0 || ws->state != WS_OPEN || ws->reading_paused)
        return 0;
    if (ws->ping_out)
        return ws->last_rx + ws->ping_interval_ms + ws->ping_timeout_ms;
    return ws->last_rx + ws->ping_interval_ms;
}

void ws_timer(WebSocketObject *ws, int64_t now)
{
    if (ws->state != WS_OPEN || ws->reading_paused)
        return;
    if (!ws->ping_out) {
        ws->ping_out = 1;
        if (ws_write_frame(ws, WS_OP_PING, 0, (const uint8_t *)"fulmen", 6) < 0)
            PyErr_WriteUnraisable((PyObject *)ws);
        return;
    }
    /* no answer to our ping: the peer is gone (RFC 6455 7.1.7 lets us fail) */
    ws_fail(ws, 1011);
}

/* The server is stopping: an open WebSocket gets a close frame with 1001
 * (going away, RFC 6455 7.4.1) before the connection closes, and the
 * handler's receive ends; one already closing just closes. */
void ws_going_away(WebSocketObject *ws)
{
    if (ws->state == WS_OPEN)
        ws_fail(ws, 1001);
    else
        ws_end_transport(ws, 0);
}

void ws_connection_lost(WebSocketObject *ws)
{
    if (ws->state != WS_CLOSED) {
        ws->state = WS_CLOSED;
        if (!ws->close_code)
            ws->close_code = 1006;
    }
    Py_CLEAR(ws->conn);
    ws_flush_held(ws); /* drops them */
    ws_wake_all(ws);
}

/* ========================================================================
 * The handler's API
 */

/* An awaitable for send(): done now, or the connection's drain future.
 * Sends that never wait (the client reads as fast, or it has gone and its
 * socket still takes bytes) give the loop a turn every WS_SENDS_PER_TURN
 * since input last came in: a handler that sends in a loop must not starve
 * the other connections, nor miss its own connection_lost. */
#define WS_SENDS_PER_TURN 64
static PyObject *ws_drain(WebSocketObject *ws)
{
    PyObject *f = ws->conn ? conn_drain_waiter(ws->conn) : NULL;
    uint32_t turn;
    if (f != NULL)
        return aw_shared_new(ws->st, f); /* the connection's: other senders wait on it too */
    if (PyErr_Occurred())
        return NULL;
    turn = ws->conn ? conn_io_turn(ws->conn) : 0;
    if (turn != ws->send_turn) {
        ws->send_turn = turn;
        ws->sends = 0;
    }
    if (++ws->sends >= WS_SENDS_PER_TURN) {
        ws->sends = 0;
        return aw_ready_yield_new(ws->st, Py_None);
    }
    return aw_ready_new(ws->st, Py_None);
}

/* send() and ping(): 0 while the WebSocket is open, else -1 with
 * WebSocketClosed set.  A connection already lost or aborted (its
 * connection_lost has not run yet) counts as closed: the handler hears of
 * it now. */
static int ws_check_open(WebSocketObject *ws)
{
    if (ws->state == WS_OPEN && ws->conn != NULL && conn_gone(ws->conn)) {
        ws->state = WS_CLOSED;
        if (!ws->close_code)
            ws->close_code = 1006;
    }
    if (ws->state != WS_OPEN || ws->conn == NULL) {
        ws_closed_error(ws);
        return -1;
    }
    return 0;
}

/* A send while the transport holds more than CONN_PILE_MAX bytes the client
 * has not taken: the handler does not await its sends (which would have
 * waited at the high-water mark) and the client does not read.  The
 * connection is dropped (no close frame could get through) and the handler
 * gets WebSocketClosed(1006, reason).  0, or -1 with the exception set. */
static int ws_check_piled(WebSocketObject *ws)
{
    PyObject *reason;
    if (!conn_piled(ws->conn))
        return 0;
    reason = PyUnicode_FromString("the client does not read: over 16 MiB of sends "
                                  "that were not awaited are held for it");
    if (reason == NULL)
        return -1;
    ws->state = WS_CLOSED;
    ws->close_code = 1006;
    Py_XSETREF(ws->close_reason, reason);
    ws_end_transport(ws, 1);
    ws_closed_error(ws);
    return -1;
}

static PyObject *ws_send(WebSocketObject *ws, PyObject *data)
{
    Py_buffer view;
    int opcode, rc;
    const char *p;
    Py_ssize_t n;
    if (ws_check_open(ws) < 0)
        return NULL;
    if (ws_check_piled(ws) < 0)
        return NULL;
    if (PyUnicode_Check(data)) {
        p = mod_utf8(data, &n);
        if (p == NULL)
            return NULL;
        opcode = WS_OP_TEXT;
        rc = ws->deflate ? ws_send_deflated(ws, opcode, (const uint8_t *)p, (size_t)n)
                         : ws_write_frame(ws, opcode, 0, (const uint8_t *)p, (size_t)n);
    } else {
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
            PyErr_Format(PyExc_TypeError, "send() takes str or bytes, not %.100s",
                         Py_TYPE(data)->tp_name);
            return NULL;
        }
        opcode = WS_OP_BINARY;
        rc = ws->deflate ? ws_send_deflated(ws, opcode, view.buf, (size_t)view.len)
                         : ws_write_frame(ws, opcode, 0, view.buf, (size_t)view.len);
        PyBuffer_Release(&view);
    }
    if (rc < 0)
        return NULL;
    return ws_drain(ws);
}

/* ping(data=b""), data positional or by keyword. */
static PyObject *ws_ping(WebSocketObject *ws, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames)
{
    Py_buffer view = {0};
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *data = nargs + nkw > 0 ? args[0] : NULL;
    int rc;
    if (nargs + nkw > 1 ||
        (nkw == 1 &&
         PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "data") != 0)) {
        PyErr_SetString(PyExc_TypeError, "ping() takes one argument, data");
        return NULL;
    }
    if (ws_check_open(ws) < 0)
        return NULL;
    if (data != NULL && PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (view.len > 125) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "a ping carries at most 125 bytes");
        return NULL;
    }
    rc = ws_write_frame(ws, WS_OP_PING, 0, view.buf, (size_t)view.len);
    if (data != NULL)
        PyBuffer_Release(&view);
    if (rc < 0)
        return NULL;
    return ws_drain(ws);
}

static PyObject *ws_pop(WebSocketObject *ws)
{
    PyObject *m = ws_queue_pop(ws);
    ws->queue_bytes -= ws_msg_size(m);
    if (ws->reading_paused && ws->queue_len <= WS_QUEUE_LOW &&
        ws->queue_bytes <= WS_QUEUE_BYTES_LOW && ws->conn != NULL) {
        ws->reading_paused = 0;
        /* the keep-alive counts again from now: what the client sent
         * meanwhile (its pongs too) is read first */
        ws->last_rx = mod_now_ms();
        ws->ping_out = 0;
        conn_pause_reading(ws->conn, 0);
    }
    if (PyTuple_Check(m)) {
        /* deferred (ws_deferred_message): inflated now */
        PyObject *p = PyTuple_GET_ITEM(m, 0), *r;
        int code = 0;
        r = ws_inflated_message(ws, (int)PyLong_AsLong(PyTuple_GET_ITEM(m, 1)),
                                (const uint8_t *)PyBytes_AS_STRING(p),
                                (size_t)PyBytes_GET_SIZE(p), &code);
        ws->deferred--;
        Py_SETREF(m, r);
        if (m == NULL) {
            ws_message_failed(ws, code);
            ws_queue_clear(ws); /* what came after it is not taken either */
            return ws_closed_error(ws);
        }
    }
    return m;
}

/* receive(): an awaitable for the next message (str or bytes). */
static PyObject *ws_receive_impl(WebSocketObject *ws, int stop_async)
{
    PyObject *m;
    if (ws->queue_len > 0) {
        m = ws_pop(ws);
        if (m == NULL)
            return NULL;
        Py_SETREF(m, aw_ready_new(ws->st, m));
        return m;
    }
    ws_flush_held(ws); /* the handler waits now: its answers go */
    if (ws->state == WS_CLOSED || ws->conn == NULL) {
        if (stop_async && (ws->close_code == 1000 || ws->close_code == 1001 ||
                           ws->close_code == 1005)) {
            PyErr_SetNone(PyExc_StopAsyncIteration);
            return NULL;
        }
        return ws_closed_error(ws);
    }
    switch (mod_future_pending(ws->st, &ws->waiter)) {
    case -1:
        return NULL;
    case 1:
        PyErr_SetString(PyExc_RuntimeError, "receive() is already being awaited");
        return NULL;
    }
    ws->waiter = conn_new_future(ws->conn);
    if (ws->waiter == NULL)
        return NULL;
    Py_INCREF(ws->waiter);
    return ws->waiter;
}

static PyObject *ws_receive(WebSocketObject *ws, PyObject *unused)
{
    return ws_receive_impl(ws, 0);
}

static PyObject *ws_anext(WebSocketObject *ws)
{
    return ws_receive_impl(ws, 1);
}

static PyObject *ws_aiter(PyObject *self)
{
    Py_INCREF(self);
    return self;
}

/* close(code=1000, reason=""): start the closing handshake; the awaitable
 * finishes when the peer answers or the connection is gone. */
static PyObject *ws_close(WebSocketObject *ws, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"code", "reason", NULL};
    int code = 1000;
    const char *reason = "";
    Py_ssize_t rlen = 0;
    uint8_t payload[125];
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|is#", kwlist, &code, &reason, &rlen))
        return NULL;
    /* and 1012-1014 (service restart, try again later, bad gateway), which
     * IANA registered after RFC 6455: a server may send them, though a
     * client's are refused as Autobahn's suite expects (ws_close_code_valid) */
    if (!ws_close_code_valid((unsigned)code) && !(code >= 1012 && code <= 1014)) {
        PyErr_Format(PyExc_ValueError, "%d is not a close code an endpoint may send", code);
        return NULL;
    }
    if (rlen > 123) {
        PyErr_SetString(PyExc_ValueError, "a close reason is at most 123 bytes of UTF-8");
        return NULL;
    }
    if (ws->state != WS_OPEN || ws->conn == NULL) {
        int pending = mod_future_pending(ws->st, &ws->close_waiter);
        if (pending < 0)
            return NULL;
        if (!pending && ws->state == WS_CLOSING && ws->conn != NULL &&
            (ws->close_waiter = conn_new_future(ws->conn)) == NULL)
            return NULL; /* our close frame is out; the close() awaiting its
                          * answer was cancelled: this one waits instead */
        if (ws->close_waiter != NULL)
            return aw_shared_new(ws->st, Py_NewRef(ws->close_waiter)); /* another close() */
        return aw_ready_new(ws->st, Py_None);
    }
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    memcpy(payload + 2, reason, (size_t)rlen);
    if (ws_write_frame(ws, WS_OP_CLOSE, 0, payload, (size_t)rlen + 2) < 0)
        return NULL;
    ws->state = WS_CLOSING;
    ws->close_code = code;
    if (ws->reading_paused) {
        /* the handler is behind: the client's answer must still be read */
        ws->reading_paused = 0;
        conn_pause_reading(ws->conn, 0);
    }
    ws->close_waiter = conn_new_future(ws->conn);
    if (ws->close_waiter == NULL)
        return NULL;
    conn_set_close_deadline(ws->conn);
    return aw_shared_new(ws->st, Py_NewRef(ws->close_waiter));
}

static PyObject *ws_get_closed(WebSocketObject *ws, void *c)
{
    return PyBool_FromLong(ws->state != WS_OPEN || ws->conn == NULL);
}

static PyObject *ws_get_close_code(WebSocketObject *ws, void *c)
{
    if (ws->state == WS_OPEN && ws->conn != NULL)
        Py_RETURN_NONE;
    return PyLong_FromLong(ws->close_code ? ws->close_code : 1006);
}

static PyObject *ws_get_close_reason(WebSocketObject *ws, void *c)
{
    PyObject *r = ws->close_reason ? ws->close_reason : Py_None;
    Py_INCREF(r);
    return r;
}

static PyObject *ws_get_request(WebSocketObject *ws, void *c)
{
    Py_INCREF(ws->request);
    return ws->request;
}

static PyObject *ws_get_subprotocol(WebSocketObject *ws, void *c)
{
    Py_INCREF(ws->subprotocol);
    return ws->subprotocol;
}

static int ws_traverse(WebSocketObject *ws, visitproc visit, void *arg)
{
    uint32_t i;
    Py_VISIT(Py_TYPE(ws));
    Py_VISIT(ws->conn);
    Py_VISIT(ws->request);
    Py_VISIT(ws->subprotocol);
    for (i = 0; i < ws->queue_len; i++)
        Py_VISIT(ws->queue[(ws->queue_first + i) & (ws->queue_cap - 1)]);
    Py_VISIT(ws->waiter);
    Py_VISIT(ws->close_waiter);
    Py_VISIT(ws->close_reason);
    return 0;
}

static int ws_clear(WebSocketObject *ws)
{
    Py_CLEAR(ws->conn);
    Py_CLEAR(ws->request);
    Py_CLEAR(ws->subprotocol);
    ws_queue_clear(ws);
    Py_CLEAR(ws->waiter);
    Py_CLEAR(ws->close_waiter);
    Py_CLEAR(ws->close_reason);
    return 0;
}

static void ws_dealloc(WebSocketObject *ws)
{
    PyTypeObject *tp = Py_TYPE(ws);
    PyObject_GC_UnTrack(ws);
    ws_clear(ws);
    PyMem_Free(ws->in);
    PyMem_Free(ws->msg);
    PyMem_Free(ws->held);
    PyMem_Free(ws->queue);
    if (ws->zin_ready)
        inflateEnd(&ws->zin);
    if (ws->zout_ready)
        deflateEnd(&ws->zout);
    tp->tp_free(ws);
    Py_DECREF(tp);
}

WebSocketObject *ws_new(fulmen_state *st, ConnObject *c, PyObject *request,
                        PyObject *subprotocol, uint64_t max_message,
                        const ws_deflate_params *dp, double ping_interval,
                        double ping_timeout)
{
    WebSocketObject *ws = PyObject_GC_New(WebSocketObject, st->WebSocketType);
    if (ws == NULL)
        return NULL;
    memset((char *)ws + sizeof(PyObject), 0, sizeof(WebSocketObject) - sizeof(PyObject));
    ws->st = st;
    Py_INCREF(c);
    ws->conn = c;
    Py_INCREF(request);
    ws->request = request;
    Py_INCREF(subprotocol);
    ws->subprotocol = subprotocol;
    ws->max_message = max_message;
    ws->ping_interval_ms = ping_interval > 0 ? (int64_t)(ping_interval * 1000) : 0;
    ws->ping_timeout_ms = ping_timeout > 0 ? (int64_t)(ping_timeout * 1000) : 0;
    ws->last_rx = mod_now_ms();
    if (dp != NULL && dp->enabled) {
        ws->deflate = 1;
        ws->server_no_ctx = dp->server_no_ctx;
        ws->client_no_ctx = dp->client_no_ctx;
        ws->server_bits = dp->server_bits;
        ws->client_bits = dp->client_bits;
    }
    PyObject_GC_Track(ws);
    return ws;
}

/* sys.getsizeof(ws): the object and the buffers it holds */
static PyObject *ws_sizeof(WebSocketObject *ws, PyObject *unused)
{
    return PyLong_FromSize_t(Py_TYPE(ws)->tp_basicsize + ws->in_cap + ws->msg_cap +
                             ws->held_cap + ws->queue_cap * sizeof(PyObject *));
}

static PyMethodDef ws_methods[] = {
    {"__sizeof__", (PyCFunction)ws_sizeof, METH_NOARGS, NULL},
    {"send", (PyCFunction)ws_send, METH_O,
     "send(message): a text frame for str, binary for bytes; await it."},
    {"receive", (PyCFunction)ws_receive, METH_NOARGS,
     "await receive(): the next message, str or bytes."},
    {"ping", (PyCFunction)(void (*)(void))ws_ping, METH_FASTCALL | METH_KEYWORDS,
     "ping(data=b''): send a ping."},
    {"close", (PyCFunction)(void (*)(void))ws_close, METH_VARARGS | METH_KEYWORDS,
     "await close(code=1000, reason=''): the closing handshake."},
    {NULL},
};

static PyGetSetDef ws_getset[] = {
    {"closed", (getter)ws_get_closed, NULL, "the socket is closed or closing", NULL},
    {"close_code", (getter)ws_get_close_code, NULL, "the close code, None while open", NULL},
    {"close_reason", (getter)ws_get_close_reason, NULL,
     "the peer's close reason, or why the server dropped the connection", NULL},
    {"request", (getter)ws_get_request, NULL, "the upgrade request", NULL},
    {"subprotocol", (getter)ws_get_subprotocol, NULL, "the chosen subprotocol, or None", NULL},
    {NULL},
};

static PyObject *ws_tp_new(PyTypeObject *tp, PyObject *a, PyObject *k)
{
    PyErr_SetString(PyExc_TypeError, "WebSocket objects are made by the server");
    return NULL;
}

static PyType_Slot ws_slots[] = {
    {Py_tp_new, ws_tp_new},
    {Py_tp_dealloc, ws_dealloc},
    {Py_tp_traverse, ws_traverse},
    {Py_tp_clear, ws_clear},
    {Py_tp_methods, ws_methods},
    {Py_tp_getset, ws_getset},
    {Py_am_aiter, ws_aiter},
    {Py_am_anext, ws_anext},
    {Py_tp_doc, "A WebSocket connection: async for message in ws; await ws.send(...)."},
    {0, NULL},
};

PyType_Spec ws_spec = {
    .name = "fulmen.WebSocket",
    .basicsize = sizeof(WebSocketObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = ws_slots,
};
