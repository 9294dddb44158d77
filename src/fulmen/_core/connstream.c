/*
 * connstream.c - what streams over a connection: the WebSocket upgrade
 * (a 101 hands the connection to a WebSocket), request bodies read as they
 * arrive (stream=True routes) and streamed responses.  Part of the
 * connection with conn.c (conn.h).
 */
#include "conn.h"

#include "wsframe.h"

void req_stream_mark_paused(PyObject *obj);

/* A module-level function of fulmen.streams (imported on first use). */
PyObject *conn_streams_fn(const char *name)
{
    PyObject *mod = PyImport_ImportModule("fulmen.streams"), *fn;
    if (mod == NULL)
        return NULL;
    fn = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    return fn;
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

/* May a page of the request's origin open this WebSocket?  origins is the
 * route's tuple of lower-case serialized origins ("scheme://host[:port]",
 * RFC 6454 6.2), or None for any; the request's Origin is compared without
 * case.  A request without Origin (not sent by a browser) may; one with two
 * Origin lines may not.  1 yes, 0 no. */
static int conn_ws_origin_ok(RequestObject *req, PyObject *origins)
{
    uint32_t hi = 0;
    const char *v, *o;
    size_t n, n2;
    Py_ssize_t i, olen;
    if (origins == NULL || !PyTuple_Check(origins) ||
        !conn_next_header(req, "origin", &hi, &v, &n))
        return 1;
    if (conn_next_header(req, "origin", &hi, &o, &n2))
        return 0;
    for (i = 0; i < PyTuple_GET_SIZE(origins); i++) {
        o = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(origins, i), &olen);
        if (o == NULL)
            PyErr_Clear();
        else if ((size_t)olen == n && strncasecmp(o, v, n) == 0)
            return 1;
    }
    return 0;
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

/* A max_window_bits value: 1*DIGIT with no leading zero, 8 to 15 (RFC
 * 7692 7.1.2); -1 for any other. */
static int conn_ws_bits(const char *val, size_t vl)
{
    if (vl == 1 && val[0] >= '8' && val[0] <= '9')
        return val[0] - '0';
    if (vl == 2 && val[0] == '1' && val[1] >= '0' && val[1] <= '5')
        return 10 + val[1] - '0';
    return -1;
}

/* Pick the first acceptable permessage-deflate offer (RFC 7692 7.1). */
static void conn_ws_deflate(const char *v, size_t n, ws_deflate_params *dp,
                            char *resp, size_t rcap)
{
    size_t i = 0;
    memset(dp, 0, sizeof(*dp));
    while (i < n) {
        size_t s = i, e;
        int ok = 1, is_pmd = 0, sbits = 15, sno = 0, cno = 0,
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
                sbits = conn_ws_bits(val, vl);
                sbits_set = 1;
                if (sbits <= 8)
                    ok = 0; /* invalid, or 8: zlib cannot deflate with a 256-byte window */
            } else if (!strcasecmp(name, "client_max_window_bits") && !cbits_set) {
                cbits_set = 1;
                if (vl && conn_ws_bits(val, vl) < 0)
                    ok = 0;
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

/* loop.create_task(coro) for a stream's body or a WebSocket's handler.  A
 * task factory that runs the first step at once (asyncio's eager one) runs
 * it before the connection is set up for it: the coroutine asks
 * _core._in_create_task() and then waits a turn (streams.py). */
static PyObject *conn_create_task(ConnObject *c, PyObject *coro)
{
    PyObject *task;
    c->st->in_create_task++;
    task = PyObject_CallMethodOneArg(c->server->loop, c->st->s_create_task, coro);
    c->st->in_create_task--;
    return task;
}

/* Answer upgrade req with res (NULL: the error set) instead of a 101; the
 * connection ends with it, since what follows the request is not HTTP.
 * Takes the references to req and res. */
static void conn_ws_refuse(ConnObject *c, RequestObject *req, PyObject *res)
{
    if (res == NULL) {
        conn_give_up(c, req);
        return;
    }
    c->closing = 1;
    conn_emit(c, req, res, 0, 1, 1);
}

static void conn_ws_open(ConnObject *c, RequestObject *req);

/* The request is for a WebSocket route: answer 101 and hand the connection
 * to a WebSocket, or refuse (426/400/403, or the answer of the app's
 * on_request hooks).  Takes the reference to req. */
void conn_upgrade_ws(ConnObject *c, RequestObject *req, RouteObject *route)
{
    fulmen_state *st = c->st;
    const char *v, *key;
    size_t n, keylen;
    char accept[29];
    PyObject *res, *gate;
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
    hi = 0;
    /* one line, "13": a second line is a list, as "13, 8" is (RFC 6455 11.3.5) */
    if (!conn_next_header(req, "sec-websocket-version", &hi, &v, &n) || n != 2 ||
        memcmp(v, "13", 2) != 0 || conn_next_header(req, "sec-websocket-version", &hi, &v, &n)) {
        PyObject *h = Py_BuildValue("{ss}", "Sec-WebSocket-Version", "13");
        res = h ? resp_new_simple(st, 426, "Upgrade Required", h) : NULL;
        Py_XDECREF(h);
        goto answer;
    }
    if (!conn_ws_origin_ok(req, PyDict_GetItemString(route->extra, "origins"))) {
        res = resp_new_simple(st, 403, "Forbidden", NULL); /* RFC 6455 4.2.2 */
        goto answer;
    }
    /* the app's on_request hooks (app.py _ws_gate): st->ws_accept lets the
     * upgrade go on, another Response refuses it */
    gate = PyDict_GetItemString(route->extra, "gate");
    if (gate != NULL) {
        res = PyObject_CallOneArg(gate, (PyObject *)req);
        if (res == NULL) {
            res = conn_error_response(c, req);
            goto answer;
        }
        if (PyCoro_CheckExact(res)) {
            /* async hooks: the upgrade waits for them as an async view's
             * answer would (conn_ws_gated), and the bytes behind it wait
             * unread: they are the WebSocket's if it opens */
            c->closing = 0; /* (a "close" beside "Upgrade": the gate decides) */
            c->client_close = 0;
            conn_set_pause(c, CONN_PAUSE_UPGRADE, 1);
            conn_start_view(c, req, res, 0, 1, 1);
            return;
        }
        if (res != st->ws_accept) {
            res = conn_check_response(c, req, res);
            goto answer;
        }
        Py_DECREF(res);
    }
    conn_ws_open(c, req);
    return;
answer:
    conn_ws_refuse(c, req, res);
}

/* An async gate's answer resp (stolen) to upgrade req: open the WebSocket
 * (resp is st->ws_accept), else resp refuses it.  Returns 1 when the
 * WebSocket took req, 0 when resp is to be sent for it (the connection
 * then ends). */
int conn_ws_gated(ConnObject *c, RequestObject *req, PyObject *resp)
{
    conn_set_pause(c, CONN_PAUSE_UPGRADE, 0);
    if (resp != c->st->ws_accept) {
        c->closing = 1;
        return 0;
    }
    Py_DECREF(resp);
    if (UNLIKELY(c->server->stopping)) {
        /* the server began to stop meanwhile: as before the hooks */
        conn_ws_refuse(c, req, resp_new_simple(c->st, 503, "Service Unavailable", NULL));
        return 1;
    }
    /* (what the client sent behind the request while the hooks ran is fed
     * to the WebSocket by the caller: conn_process, or conn_drain_now_in
     * from the buffer) */
    conn_ws_open(c, req);
    return 1;
}

/* Answer 101 to the checked upgrade req and hand the connection to a
 * WebSocket.  Takes the reference to req. */
static void conn_ws_open(ConnObject *c, RequestObject *req)
{
    fulmen_state *st = c->st;
    RouteObject *route = req->route;
    const char *v, *key = NULL;
    size_t n, keylen = 0;
    char accept[29], ext[200] = "", proto_hdr[160] = "";
    PyObject *subprotocol = Py_None, *res, *fn = NULL, *coro = NULL, *task = NULL,
             *opt;
    ws_deflate_params dp = {0};
    uint64_t max_message = 1 << 20;
    WebSocketObject *ws;
    uint32_t hi = 0;
    /* (checked by conn_upgrade_ws) */
    if (!conn_next_header(req, "sec-websocket-key", &hi, &key, &keylen) ||
        ws_accept_key(key, keylen, accept) < 0) {
        PyErr_SetString(PyExc_SystemError, "the WebSocket key is gone");
        goto fail;
    }
    accept[28] = 0;
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
        task = conn_create_task(c, coro);
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
    conn_ws_refuse(c, req, res);
}

/* ========================================================================
 * Request bodies read as they arrive (stream=True routes)
 */

/* The head of req is complete: run its view now and feed it the body as it
 * comes.  Takes the reference to req.  Returns 0, or -1 when the
 * connection must close. */
int conn_start_body_stream(ConnObject *c, RequestObject *req, char *p,
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
void conn_end_body_stream(ConnObject *c, PyObject *exc)
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

void conn_fail_body_stream(ConnObject *c, PyObject *type, const char *msg)
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
size_t conn_stream_body(ConnObject *c, char *p, size_t n, int immutable)
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
    mod_out_saved sv;
    if (!(c->pause & CONN_PAUSE_BODY))
        return;
    if (UNLIKELY(c->writing)) {
        /* read by the app's code run while c's answer is written: the
         * requests that follow may not be answered before it is whole, so
         * at the loop's next turn (conn_server_drain_ready) */
        conn_schedule_drain(c);
        return;
    }
    conn_set_pause(c, CONN_PAUSE_BODY, 0);
    if (c->closed)
        return;
    /* (the stream may be read by a view of another connection, while the
     * answers it has made so far wait in st->out) */
    mod_out_enter(c->st, c, &sv);
    conn_process_buffer(c);
    if (conn_flush(c) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
    mod_out_leave(c->st, &sv);
    conn_rearm(c, mod_now_ms());
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

int conn_start_stream(ConnObject *c, RequestObject *req, PyObject *resp,
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
                                            ((ResponseObject *)resp)->stream,
                                            req != NULL ? (PyObject *)req : Py_None, NULL);
    if (coro != NULL)
        task = conn_create_task(c, coro);
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
PyObject *conn_waiter(ConnObject *c)
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
int conn_stream_head_out(ConnObject *c)
{
    PyObject *h = c->ext->stream_head;
    int rc;
    if (h == NULL)
        return 0;
    rc = mod_out_put(c->st, PyBytes_AS_STRING(h), (size_t)PyBytes_GET_SIZE(h));
    Py_CLEAR(c->ext->stream_head);
    return rc < 0 ? -1 : 1;
}

static PyObject *conn_stream_write_now(ConnObject *c, PyObject *data);
static PyObject *conn_stream_end_now(ConnObject *c, PyObject *okobj);

/* fn(c, arg) with st->out c's meanwhile: the app's code it runs (a header
 * value's str() while the head is in it) may write for another. */
static PyObject *conn_stream_call(ConnObject *c, PyObject *(*fn)(ConnObject *, PyObject *),
                                  PyObject *arg)
{
    mod_out_saved sv;
    PyObject *r;
    mod_out_enter(c->st, c, &sv);
    r = fn(c, arg);
    mod_out_leave(c->st, &sv);
    return r;
}

/* _stream_write(item), from the stream's task. */
PyObject *conn_stream_write(ConnObject *c, PyObject *data)
{
    return conn_stream_call(c, conn_stream_write_now, data);
}

static PyObject *conn_stream_write_now(ConnObject *c, PyObject *data)
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

void conn_wake_stream(ConnObject *c)
{
    if (c->ext != NULL)
        mod_future_settle(c->st, &c->ext->stream_waiter, NULL, NULL);
}

/* _stream_sent(n): n body bytes went out without _stream_write (sendfile). */
PyObject *conn_stream_sent(ConnObject *c, PyObject *nobj)
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
PyObject *conn_stream_begin(ConnObject *c, PyObject *unused)
{
    if (!c->streaming)
        Py_RETURN_FALSE;
    c->ext->stream_begun = 1;
    c->ext->stream_begun_at = mod_now_ms();
    return PyBool_FromLong(!c->ext->stream_stop && !c->closed && c->transport != NULL);
}

/* _stream_failed(): the app's iterator raised (_stream_end says the rest) */
PyObject *conn_stream_failed(ConnObject *c, PyObject *unused)
{
    if (c->streaming)
        c->ext->stream_failed = 1;
    Py_RETURN_NONE;
}

/* _stream_end(ok): then the answers queued behind the stream go. */
PyObject *conn_stream_end(ConnObject *c, PyObject *okobj)
{
    return conn_stream_call(c, conn_stream_end_now, okobj);
}

static PyObject *conn_stream_end_now(ConnObject *c, PyObject *okobj)
{
    int ok = PyObject_IsTrue(okobj), aborted = 0, was = c->writing;
    RequestObject *req;
    if (!c->streaming)
        Py_RETURN_NONE;
    c->streaming = 0;
    /* until its end is in st->out and its request done, the app's code that
     * runs (stderr, done-callbacks) does not drain c: a cut body may have
     * nothing after it, and the answers behind go in their turn below */
    c->writing = 1;
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
                               c->ext->stream_head ? "answered 500"
                                                   : "the connection is closed after it");
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
    c->writing = was;
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

