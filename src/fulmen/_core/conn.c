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
 * The connection's other files: connio.c (output, direct I/O, TLS in C,
 * closes and deadlines), connstream.c (request bodies read as they arrive,
 * streamed responses, the WebSocket upgrade) and connlog.c (the access log
 * and the debug log); conn.h is what they share.
 */
#include "conn.h"

#include <stddef.h>
#include <structmember.h>
#include <unistd.h>

/* Answers of one burst past this many bytes are sent at once, and no more
 * requests are taken while the transport holds what the socket did not
 * (the pipelined requests of one read may ask for far more). */
#define CONN_OUT_HIGH (256 * 1024)

/* An idle keep-alive connection gives back its response queue and its
 * rare-feature state this long after its last request (conn_trim): not
 * sooner, so that steady traffic does not allocate them per request. */
#define CONN_TRIM_MS 1000

/* Bytes the transport may hold for a client that does not read before a
 * WebSocket send() gives up on it: a handler that awaits its sends stops
 * at the transport's high-water mark, one that does not would pile up
 * memory for as long as the write deadline lets it. */
#define CONN_PILE_MAX (16u << 20)
/* The most bytes on the wire a chunked body of at most max bytes may take
 * (its framing: chunk sizes, extensions, trailers): twice max plus 512 KiB. */
#define CONN_CHUNKED_WIRE(max) ((uint64_t)(max) * 2 + (512u << 10))

/* Content-Length bodies from this size on go to a sink once they span reads */
#define CONN_SINK_MIN (16 * 1024)

/* Bytes from the client are still wanted: no request after this one is
 * read once closing is set, but the body of the last one (a stream=True
 * request with Connection: close, or HTTP/1.0) is its view's. */
INLINE int conn_reads_on(ConnObject *c)
{
    return !c->closing || conn_bstream(c) != NULL;
}

/* Make c->ext.  Returns it, or NULL with an exception set. */
NOINLINE conn_ext *conn_ext_new(ConnObject *c)
{
    c->ext = PyMem_Calloc(1, sizeof(conn_ext));
    if (c->ext == NULL)
        PyErr_NoMemory();
    return c->ext;
}

/* ========================================================================
 * Writing one response
 */

/* resp_serialize failed (rc -1: an exception; else an unsafe header):
 * a 500 goes out instead, and the log names the request.  Consumes the
 * reference to resp. */
void conn_write_failed(ConnObject *c, RequestObject *req, PyObject *resp, int rc,
                       int head_only, int conn_hdr)
{
    PyObject *who = req != NULL ? (PyObject *)req : resp;
    if (rc == -1) {
        /* (PySys_FormatStderr keeps the exception that is set) */
        PySys_FormatStderr("fulmen: the response to %R could not be written; "
                           "answered 500 instead:\n", who);
        PyErr_WriteUnraisable(who);
    } else {
        PyObject *name = c->st->bad_header;
        c->st->bad_header = NULL;
        PySys_FormatStderr("fulmen: the response to %R had a header with an invalid "
                           "name, or a control character in a value (%R); answered 500 "
                           "instead\n", who, name != NULL ? name : Py_None);
        Py_XDECREF(name);
    }
    if (resp_serialize_status(c->st, 500, "Internal Server Error", head_only,
                              conn_hdr, NULL) < 0)
        PyErr_WriteUnraisable(NULL);
    resp_release(c->st, resp);
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

/* An answer whose app set "Connection: close" ends the connection: it says
 * so, and nothing more is read (RFC 9112 9.6). */
INLINE void conn_app_close(ConnObject *c, PyObject *resp, int *conn_hdr,
                           int *close_after)
{
    if (LIKELY(((ResponseObject *)resp)->headers == NULL) || *close_after ||
        !resp_asks_close(resp))
        return;
    *conn_hdr = 1;
    *close_after = 1;
    c->closing = 1;
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

/* A failure nobody can be told of (no memory, mostly) while handling req
 * (NULL: none): report it as unraisable, drop req, and end the connection
 * once what is already queued is out. */
NOINLINE void conn_give_up(ConnObject *c, RequestObject *req)
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

void conn_set_pause(ConnObject *c, int bit, int on)
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

/* Write every ready response at the head of the queue. */
void conn_q_drain(ConnObject *c)
{
    if (UNLIKELY(c->writing))
        return; /* a drain (or an answer) of c is under way further up: it
                 * takes the answers that became ready meanwhile in turn */
    c->writing = 1;
    while (conn_q_len(c) > 0 && !c->streaming) {
        conn_slot *s = &c->q[c->q_first & (c->q_cap - 1)];
        PyObject *resp;
        RequestObject *req;
        int closes, conn_hdr, close_after;
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
        if (UNLIKELY(req != NULL && req->route != NULL && req->route->is_ws) &&
            conn_ws_gated(c, req, resp))
            break; /* the upgrade's gate let it open: the connection is the WebSocket's */
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
        conn_hdr = s->conn_hdr;
        close_after = s->close_after;
        conn_app_close(c, resp, &conn_hdr, &close_after);
        if (conn_write_response(c, req, resp, s->head_only, conn_hdr, close_after))
            break; /* a streamed body: the rest waits for its end */
        if (close_after)
            c->close_after_flush = 1;
        if (req != NULL)
            conn_request_done(req);
        if (c->close_after_flush && !closes)
            break; /* that answer ends the connection: none after it */
    }
    c->writing = 0;
}

/* The bytes of the bodies of the answers that are ready but wait in c's
 * queue (behind one that is not: an async view, a streamed body).  Only
 * counted while answers wait, so summed rather than kept. */
static size_t conn_q_ready_bytes(ConnObject *c)
{
    size_t n = 0;
    uint32_t i;
    for (i = c->q_first; i != c->q_next; i++) {
        conn_slot *s = &c->q[i & (c->q_cap - 1)];
        ResponseObject *r = (ResponseObject *)s->obj;
        if (!s->ready || r == NULL)
            continue;
        if (r->kind == RESP_JSON)
            n += r->jlen;
        else if (r->body != NULL)
            n += (size_t)(PyBytes_Check(r->body) ? PyBytes_GET_SIZE(r->body)
                                                 : PyUnicode_GET_LENGTH(r->body));
    }
    return n;
}

/* Stop taking requests off the wire while c's queue is long, or holds more
 * finished answers than a burst may (CONN_OUT_HIGH): those behind a slow
 * one would otherwise pile up for a client that reads none of them (70
 * pipelined requests for a 1 MB answer behind an async one held 64 MB). */
static void conn_q_check_pause(ConnObject *c)
{
    if (conn_q_len(c) >= CONN_PIPELINE_HIGH || conn_q_ready_bytes(c) > CONN_OUT_HIGH)
        conn_set_pause(c, CONN_PAUSE_PIPELINE, 1);
}

/* ========================================================================
 * Dispatch
 */

void conn_emit(ConnObject *c, RequestObject *req, PyObject *resp,
               int head_only, int conn_hdr, int close_after)
{
    uint32_t seq;
    conn_slot *s;
    if (LIKELY(conn_q_len(c) == 0 && !c->streaming)) {
        int was = c->writing;
        if (UNLIKELY(req != NULL && conn_bstream(c) != NULL && c->ext->bs_req == req)) {
            conn_hdr = 1;
            close_after = 1;
            conn_fail_body_stream(c, PyExc_ConnectionResetError, "the response was sent");
        }
        conn_app_close(c, resp, &conn_hdr, &close_after);
        c->writing = 1;
        if (conn_write_response(c, req, resp, head_only, conn_hdr, close_after)) {
            c->writing = was;
            return;
        }
        if (close_after)
            c->close_after_flush = 1;
        if (req != NULL)
            conn_request_done(req);
        c->writing = was;
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
    conn_q_check_pause(c);
}

/* Turn the current exception into a response through the app's error hook
 * (which applies the app's error handlers and debug tracebacks); a hook
 * that fails too gives a plain 500.  Returns a new reference. */
PyObject *conn_error_response(ConnObject *c, RequestObject *req)
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

/* A view's result must be a Response; anything else goes through the
 * error hook as a TypeError.  Consumes res, returns a new reference. */
PyObject *conn_check_response(ConnObject *c, RequestObject *req, PyObject *res)
{
    if (LIKELY(Py_TYPE(res) == c->st->ResponseType ||
               PyObject_TypeCheck(res, c->st->ResponseType)))
        return res;
    PyErr_Format(PyExc_TypeError, "a view must return a Response, not %.100s",
                 Py_TYPE(res)->tp_name);
    Py_DECREF(res);
    return conn_error_response(c, req);
}

static void conn_drain_now_in(ConnObject *c);

/* Send what is ready at the head of c's queue, in order, in one write.
 * An async view's end, or the app's code (Resume.close() of another
 * connection's view), may bring it about while st->out holds the answers
 * of another connection: those are set aside meanwhile. */
static void conn_drain_now(ConnObject *c)
{
    mod_out_saved sv;
    if (UNLIKELY(c->writing))
        return; /* the app's code, run while c's answer is written (a header
                 * value's str() closed a view's task, its 503 is ready):
                 * the drain under way sends it in its turn, and flushes */
    mod_out_enter(c->st, c, &sv);
    conn_drain_now_in(c);
    mod_out_leave(c->st, &sv);
}

static void conn_drain_now_in(ConnObject *c)
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
    if (UNLIKELY(conn_ws(c) != NULL)) {
        conn_process_buffer(c); /* opened by its upgrade's gate: the bytes behind */
    } else if (conn_q_len(c) < CONN_PIPELINE_LOW && (c->pause & CONN_PAUSE_PIPELINE) &&
        conn_q_ready_bytes(c) <= CONN_OUT_HIGH) {
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
        if (UNLIKELY(c->pause & CONN_PAUSE_BODY) && conn_bstream(c) != NULL &&
            req_stream_buffered(c->ext->bstream) == 0)
            conn_body_drained(c); /* put off while c's answer was written */
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
int conn_schedule_drain(ConnObject *c)
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
    s = &c->q[seq & (c->q_cap - 1)]; /* the app's error handler ran: c->q may have moved */
    s->obj = resp; /* steals */
    s->ready = 1;
    Py_XDECREF(old); /* the Task: the loop holds it while it runs */
    if (!c->q[c->q_first & (c->q_cap - 1)].ready) {
        /* an earlier answer is still running: it sends this one */
        conn_q_check_pause(c);
        return;
    }
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
void conn_start_view(ConnObject *c, RequestObject *req, PyObject *coro,
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
        if (UNLIKELY(req->route != NULL && req->route->is_ws) && conn_ws_gated(c, req, val))
            goto done;
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
    /* fewer views run at once than answers may wait: each may finish
     * with an answer of any size that must then wait its turn */
    if (conn_q_len(c) >= CONN_PIPELINE_ASYNC)
        conn_set_pause(c, CONN_PAUSE_PIPELINE, 1);
    goto done;

not_started: /* no Task to run it in (a loop that is closing, no memory) */
    conn_close_coro(c, coro);
    if (aw != NULL)
        aw_resume_drop(aw);
    val = conn_error_response(c, req);
    if (UNLIKELY(req->route != NULL && req->route->is_ws))
        (void)conn_ws_gated(c, req, val); /* not st->ws_accept: a refusal */
    conn_emit(c, req, val, head_only, conn_hdr, close_after);
done:
    Py_XDECREF(prev);
    Py_XDECREF(task);
    Py_XDECREF(aw);
    Py_XDECREF(ctx);
    Py_DECREF(coro);
}

/* ------------------------------------------------------------------------
 * The view of a whole request
 */

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
void conn_dispatch(ConnObject *c, RequestObject *req)
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
void conn_maybe_continue(ConnObject *c, RequestObject *req)
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
 * Parsing: the whole requests of what was read
 */

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
    st->out_conn = c;
    while (pos < len && conn_reads_on(c) &&
           !(c->pause & (CONN_PAUSE_WRITE | CONN_PAUSE_PIPELINE | CONN_PAUSE_BODY |
                         CONN_PAUSE_UPGRADE))) {
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
            if (UNLIKELY(route != NULL && route->is_ws && (conn_q_len(c) > 0 || c->streaming))) {
                /* an upgrade behind answers still being made (an async
                 * view's, a stream): what follows it is the WebSocket's,
                 * not requests.  It waits unread, to be parsed again once
                 * they are out (conn_deliver resumes reading). */
                c->pending = NULL;
                req_release(req);
                conn_set_pause(c, CONN_PAUSE_PIPELINE, 1);
                break;
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
            /* the body as it came is held until its end: its bytes on the
             * wire are bounded too, by what was taken so far, so that the
             * answer does not depend on how the bytes were split into reads
             * (conn_process_buffer's bound, checked per read, has room
             * above this one for the head and a read) */
            if (UNLIKELY(src - c->head_len > CONN_CHUNKED_WIRE(x->chunk.max_body)))
                rc = H1_CHUNK_TOO_BIG;
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

void conn_process_buffer(ConnObject *c)
{
    size_t n, limit;
    ServerObject *srv = c->server;
    uint64_t body;
    if (c->buf_len == 0 || !conn_reads_on(c))
        return;
    if (UNLIKELY(conn_ws(c) != NULL)) {
        /* sent behind an upgrade whose gate ran async (conn_ws_gated) */
        ws_feed(c->ext->ws, c->buf, c->buf_len);
        conn_buf_free(c);
        c->head_start = 0;
        return;
    }
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

PyObject *conn_data_received(ConnObject *c, PyObject *data)
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

PyObject *conn_eof_received(ConnObject *c, PyObject *unused)
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
    mod_out_saved sv;
    mod_out_enter(c->st, c, &sv);
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
    mod_out_leave(c->st, &sv);
    Py_RETURN_NONE;
}

/* ========================================================================
 * What other files ask of a connection, and the Connection type
 */

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
    Py_INCREF(c);
    /* (the app's code runs here, stderr's write and the Task's cancel():
     * the queue may move or be drained under the loop, which goes on from
     * the slot after, as long as it is in the queue) */
    for (seq = c->q_first; seq - c->q_first < conn_q_len(c); seq++) {
        conn_slot *s = &c->q[seq & (c->q_cap - 1)];
        PyObject *r, *task, *req;
        if (!conn_view_timed(s) || now - s->started < limit || s->obj == NULL)
            continue;
        s->cancelled = 1;
        task = Py_NewRef(s->obj);
        req = Py_NewRef((PyObject *)s->req);
        PySys_FormatStderr("fulmen: %R has run for response_timeout (%lld ms): its view "
                           "is cancelled (503)\n", req, (long long)limit);
        r = PyObject_CallMethod(task, "cancel", NULL);
        if (r == NULL)
            PyErr_WriteUnraisable((PyObject *)c);
        Py_XDECREF(r);
        Py_DECREF(task);
        Py_DECREF(req);
    }
    Py_DECREF(c);
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
        if (conn_stream_head_due(c, now)) {
            mod_out_saved sv;
            mod_out_enter(c->st, c, &sv);
            if (conn_stream_head_out(c) < 0 || conn_flush(c) < 0)
                PyErr_WriteUnraisable((PyObject *)c);
            mod_out_leave(c->st, &sv);
        }
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
