/*
 * module.c - fulmen._core: module state, type registration, multi-phase init,
 * the cached Date header and the shared output buffer.
 */
#include "common.h"

#include <string.h>
#include <strings.h> /* strncasecmp */
#include <time.h>

static struct PyModuleDef mod_def;

/* ========================================================================
 * State access
 */

fulmen_state *mod_state_of_type(PyTypeObject *tp)
{
    PyObject *m = PyType_GetModuleByDef(tp, &mod_def);
    if (m == NULL)
        return NULL;
    return (fulmen_state *)PyModule_GetState(m);
}

int64_t mod_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int mod_list_has(const char *v, size_t n, const char *tok, size_t tl, int icase)
{
    size_t i = 0;
    while (i < n) {
        size_t s, e;
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        s = i;
        while (i < n && v[i] != ',')
            i++;
        e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl &&
            (icase ? strncasecmp(v + s, tok, tl) : memcmp(v + s, tok, tl)) == 0)
            return 1;
    }
    return 0;
}

void mod_content_type(const char *v, size_t n, size_t *mtl, const char **cs, size_t *csl)
{
    const char *end = v + n, *p = memchr(v, ';', n);
    *cs = NULL;
    *csl = 0;
    *mtl = (size_t)((p ? p : end) - v);
    while (*mtl > 0 && (v[*mtl - 1] == ' ' || v[*mtl - 1] == '\t'))
        (*mtl)--;
    while (p != NULL && p < end) {
        const char *q = p + 1, *e;
        while (q < end && (*q == ' ' || *q == '\t'))
            q++;
        e = memchr(q, ';', (size_t)(end - q));
        if (e == NULL)
            e = end;
        if (e - q > 8 && strncasecmp(q, "charset=", 8) == 0) {
            q += 8;
            if (q < e && *q == '"')
                q++;
            *cs = q;
            while (q < e && *q != '"' && *q != ' ' && *q != '\t')
                q++;
            *csl = (size_t)(q - *cs);
            return;
        }
        p = e < end ? e : NULL;
    }
}

/* Futures: method calls by interned name (CPython's type attribute cache
 * then finds the method at once; a name made per call misses it, and costs
 * a lookup through the type's whole MRO: that was most of a WebSocket
 * message's time).
 *
 * A new one: loop.create_future(), or where that is the stock method
 * (future_type is then asyncio.Future: ServerObject.future_type), what it
 * does, Future(loop=loop), made as a call of the type makes it (tp_new,
 * tp_init) but with a keyword dict made once (*kw): uvloop's method call
 * and a new dict per future were most of what was left. */
PyObject *mod_future_new(fulmen_state *st, PyObject *loop, PyObject *future_type,
                         PyObject **kw)
{
    PyTypeObject *tp = (PyTypeObject *)future_type;
    PyObject *f;
    if (future_type == NULL || !PyType_Check(future_type) || tp->tp_new == NULL || kw == NULL)
        return PyObject_CallMethodNoArgs(loop, st->s_create_future);
    if (*kw == NULL && (*kw = Py_BuildValue("{sO}", "loop", loop)) == NULL)
        return NULL;
    f = tp->tp_new(tp, st->empty_tuple, *kw);
    if (f != NULL && tp->tp_init(f, st->empty_tuple, *kw) < 0)
        Py_CLEAR(f);
    return f;
}

int mod_future_pending(fulmen_state *st, PyObject **fut)
{
    PyObject *r;
    if (*fut == NULL)
        return 0;
    r = PyObject_CallMethodNoArgs(*fut, st->s_done);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    if (r == Py_True) {
        Py_CLEAR(*fut); /* its awaiter was cancelled (asyncio.wait_for, say) */
        return 0;
    }
    return 1;
}

int mod_future_settle(fulmen_state *st, PyObject **fut, PyObject *result, PyObject *exc)
{
    PyObject *f, *r;
    int settled;
    switch (mod_future_pending(st, fut)) {
    case 0:
        return 0; /* none, or done: the caller keeps the value */
    case -1:
        PyErr_WriteUnraisable(*fut);
        Py_CLEAR(*fut);
        return 0;
    }
    f = *fut;
    *fut = NULL;
    r = exc != NULL ? PyObject_CallMethodOneArg(f, st->s_set_exception, exc)
                    : PyObject_CallMethodOneArg(f, st->s_set_result,
                                                result != NULL ? result : Py_None);
    settled = r != NULL;
    if (r == NULL)
        PyErr_WriteUnraisable(f);
    Py_XDECREF(r);
    Py_DECREF(f);
    return settled;
}

/* Fail *fut with exc if it is still pending, without asyncio's "exception
 * was never retrieved" log when nobody awaits it (a send not awaited). */
void mod_future_fail_quietly(fulmen_state *st, PyObject **fut, PyObject *exc)
{
    PyObject *f = *fut;
    if (f == NULL)
        return;
    Py_INCREF(f);
    if (mod_future_settle(st, fut, NULL, exc) &&
        PyObject_SetAttrString(f, "_log_traceback", Py_False) < 0)
        PyErr_Clear(); /* a loop's own future type: it may log */
    Py_DECREF(f);
}

/* ========================================================================
 * Date header: an IMF-fixdate, recomputed at most once a second.
 */

int mod_format_date(char *buf, size_t cap, int64_t sec)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                    "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr",
                                       "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)sec;
    struct tm tm;
    int n;
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
        return -1;
    n = snprintf(buf, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

void mod_refresh_date(fulmen_state *st)
{
    time_t now = time(NULL);
    if ((int64_t)now == st->date_sec)
        return;
    st->date_sec = (int64_t)now;
    mod_format_date(st->date, sizeof(st->date), (int64_t)now);
    for (int k = 0; k < 4; k++) {
        static const char *ct[4] = {"text/plain; charset=utf-8",
                                    "text/plain; charset=utf-8",
                                    "application/octet-stream",
                                    "application/json"};
        int n = snprintf(st->pfx[k], sizeof(st->pfx[k]),
                         "HTTP/1.1 200 OK\r\nServer: fulmen\r\nDate: %s\r\n"
                         "Content-Type: %s\r\nContent-Length: ",
                         st->date, ct[k]);
        st->pfx_len[k] = (uint8_t)n;
        st->pfx_body_len[k] = -1;
    }
}

/* ========================================================================
 * Output buffer
 */

/* Give back an output buffer that one large answer grew past
 * MOD_OUT_KEEP, once it is empty: the next grows it again from scratch. */
NOINLINE void mod_out_trim(fulmen_state *st)
{
    if (st->out_len != 0 || st->out_cap <= MOD_OUT_KEEP)
        return;
    PyMem_Free(st->out);
    st->out = NULL;
    st->out_cap = 0;
}

NOINLINE int mod_out_grow(fulmen_state *st, size_t extra)
{
    size_t need = st->out_len + extra;
    size_t cap = st->out_cap ? st->out_cap : 16384;
    char *p;
    if (need <= st->out_cap)
        return 0;
    while (cap < need)
        cap *= 2;
    p = PyMem_Realloc(st->out, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    st->out = p;
    st->out_cap = cap;
    return 0;
}

void mod_out_enter(fulmen_state *st, void *c, mod_out_saved *sv)
{
    sv->conn = st->out_conn;
    sv->mine = c;
    sv->aside = st->out_conn != c && (st->out_len != 0 || st->out_chunks != NULL);
    if (sv->aside) {
        sv->out = st->out;
        sv->len = st->out_len;
        sv->cap = st->out_cap;
        sv->big = st->out_big;
        sv->chunks = st->out_chunks;
        sv->busy = st->out_busy;
        st->out = NULL;
        st->out_len = st->out_cap = st->out_big = 0;
        st->out_chunks = NULL;
        st->out_busy = 0;
    }
    st->out_conn = c;
}

void mod_out_leave(fulmen_state *st, mod_out_saved *sv)
{
    if (sv->aside) {
        /* (c's flush emptied it; what a failure left unsent is dropped) */
        PyMem_Free(st->out);
        Py_XDECREF(st->out_chunks);
        st->out = sv->out;
        st->out_len = sv->len;
        st->out_cap = sv->cap;
        st->out_big = sv->big;
        st->out_chunks = sv->chunks;
        st->out_busy = sv->busy;
        st->out_conn = sv->conn;
    } else {
        /* (what c's failure left unsent stays c's) */
        st->out_conn = st->out_len != 0 || st->out_chunks != NULL ? sv->mine : sv->conn;
    }
}

/* Append a body.  Small bodies are copied; a large one is passed to the
 * transport by reference (writelines) to save the copy.  bytes_obj may be
 * NULL (then p is always copied). */
int mod_out_body(fulmen_state *st, PyObject *bytes_obj, const char *p, size_t n)
{
    PyObject *seg = NULL;
    if (n < 65536 || bytes_obj == NULL || !PyBytes_CheckExact(bytes_obj))
        return mod_out_put(st, p, n);
    if (st->out_chunks == NULL) {
        st->out_chunks = PyList_New(0);
        if (st->out_chunks == NULL)
            goto error;
    }
    seg = PyBytes_FromStringAndSize(st->out, (Py_ssize_t)st->out_len);
    if (seg == NULL)
        goto error;
    if (PyList_Append(st->out_chunks, seg) < 0)
        goto error;
    if (PyList_Append(st->out_chunks, bytes_obj) < 0)
        goto error;
    st->out_len = 0;
    st->out_big += n;
    Py_DECREF(seg);
    return 0;
error:
    Py_XDECREF(seg);
    return -1;
}

/* ========================================================================
 * Module functions
 */

static PyObject *mod_in_create_task(PyObject *m, PyObject *unused)
{
    return PyBool_FromLong(((fulmen_state *)PyModule_GetState(m))->in_create_task > 0);
}

static PyObject *mod_http_date(PyObject *m, PyObject *unused)
{
    fulmen_state *st = PyModule_GetState(m);
    mod_refresh_date(st);
    return PyUnicode_FromString(st->date);
}

static PyObject *mod_date_sec(PyObject *m, PyObject *unused)
{
    fulmen_state *st = PyModule_GetState(m);
    mod_refresh_date(st);
    return PyLong_FromLongLong(st->date_sec);
}

static PyObject *mod_parse_debug(PyObject *m, PyObject *args)
{
    /* _parse(bytes) -> (head_len_or_status, dict): for tests of the wiring
     * between the parser and Python; the parser has its own C tests. */
    Py_buffer buf;
    h1_parser p;
    h1_request r;
    h1_header hs[128];
    PyObject *res = NULL;
    int n;
    if (!PyArg_ParseTuple(args, "y*", &buf))
        return NULL;
    memset(&r, 0, sizeof(r));
    r.headers = hs;
    h1_parser_init(&p, 1 << 20, 128);
    n = h1_parse_request(&p, buf.buf, (size_t)buf.len, &r);
    if (n == H1_ERROR)
        res = Py_BuildValue("(is)", -(int)r.error_status,
                            r.error_reason ? r.error_reason : "");
    else
        res = Py_BuildValue("(iiiK)", n, (int)r.flags, (int)r.num_headers,
                            (unsigned long long)r.content_length);
    PyBuffer_Release(&buf);
    return res;
}

static PyMethodDef mod_methods[] = {
    {"http_date", mod_http_date, METH_NOARGS, "The cached Date header value."},
    {"_date_sec", mod_date_sec, METH_NOARGS,
     "The second of that Date (an answer made now says it, or a later one)."},
    {"_parse", mod_parse_debug, METH_VARARGS, "Parse one request head (tests)."},
    {"_json_loads", json_py_loads, METH_O, "json_decode(bytes) (tests)."},
    {"_stderr_write", conn_log_stderr_write, METH_O,
     "Write bytes to fd 2 as far as it takes them without blocking; keep the rest."},
    {"_stderr_drain", conn_log_stderr_drain, METH_O,
     "Wait at most that many seconds for fd 2 to take what waits; the bytes left."},
    {"_in_create_task", mod_in_create_task, METH_NOARGS,
     "Whether the engine is inside loop.create_task() for a stream or a WebSocket."},
    {"_file_hits", files_py_hits, METH_NOARGS,
     "Response(file=...) answers made in C so far (tests)."},
    {"_file_response", (PyCFunction)(void (*)(void))files_py_response, METH_FASTCALL,
     "The answer Response(file=...) gives this request when C makes it, else None."},
    {NULL, NULL, 0, NULL},
};

/* ========================================================================
 * Init
 */

static int mod_add_type(PyObject *m, PyType_Spec *spec, PyObject *base,
                        PyTypeObject **slot)
{
    PyObject *t = PyType_FromModuleAndSpec(m, spec, base);
    if (t == NULL)
        return -1;
    *slot = (PyTypeObject *)t;
    if (PyModule_AddType(m, (PyTypeObject *)t) < 0)
        return -1;
    return 0;
}

/* A new exception class fulmen.<name> in *slot (strong), added to the
 * module; base is a class or a tuple of them. */
int mod_add_exception(PyObject *m, const char *name, const char *doc, PyObject *base,
                      PyObject **slot)
{
    char qual[64];
    snprintf(qual, sizeof(qual), "fulmen.%s", name);
    *slot = PyErr_NewExceptionWithDoc(qual, doc, base, NULL);
    if (*slot == NULL || PyModule_AddObjectRef(m, name, *slot) < 0)
        return -1;
    return 0;
}

/* str() of a WebSocketClosed(code, reason): OSError's would read the code
 * as an errno ("[Errno 1006] gone"). */
static PyObject *mod_ws_closed_str(PyObject *self, PyObject *unused)
{
    PyObject *args = PyObject_GetAttrString(self, "args"), *r, *code, *reason;
    if (args == NULL)
        return NULL;
    if (!PyTuple_Check(args) || PyTuple_GET_SIZE(args) != 2) {
        r = ((PyTypeObject *)PyExc_OSError)->tp_str(self);
        Py_DECREF(args);
        return r;
    }
    code = PyTuple_GET_ITEM(args, 0);
    reason = PyTuple_GET_ITEM(args, 1);
    if (reason == Py_None || (PyUnicode_Check(reason) && PyUnicode_GET_LENGTH(reason) == 0))
        r = PyUnicode_FromFormat("the WebSocket is closed (%S)", code);
    else
        r = PyUnicode_FromFormat("the WebSocket is closed (%S: %S)", code, reason);
    Py_DECREF(args);
    return r;
}

static PyMethodDef mod_ws_closed_str_def = {"__str__", mod_ws_closed_str, METH_NOARGS,
                                            NULL};

#define INTERN(field, s)                                   \
    do {                                                   \
        if ((st->field = PyUnicode_InternFromString(s)) == NULL) \
            return -1;                                     \
    } while (0)

static int mod_exec(PyObject *m)
{
    fulmen_state *st = PyModule_GetState(m);
    static const char *methods[] = {NULL,     "GET",   "HEAD",    "POST",
                                    "PUT",    "DELETE", "PATCH",  "OPTIONS",
                                    "CONNECT", "TRACE"};
    static const char *kwnames[] = {"code", "text", "body", "json", "mime_type",
                                    "encoding", "headers", "cookies", "stream",
                                    "file"};
    int i;

    if (mod_add_type(m, &conn_server_spec, NULL, &st->ServerType) < 0 ||
        mod_add_type(m, &conn_spec, NULL, &st->ConnType) < 0 ||
        mod_add_type(m, &req_spec, NULL, &st->RequestType) < 0 ||
        mod_add_type(m, &resp_spec, NULL, &st->ResponseType) < 0 ||
        mod_add_type(m, &router_route_spec, NULL, &st->RouteType) < 0 ||
        mod_add_type(m, &router_matcher_spec, NULL, &st->MatcherType) < 0 ||
        mod_add_type(m, &aw_resume_spec, NULL, &st->ResumeType) < 0 ||
        mod_add_type(m, &aw_ready_spec, NULL, &st->ReadyType) < 0 ||
        mod_add_type(m, &aw_shared_spec, NULL, &st->SharedType) < 0 ||
        mod_add_type(m, &ws_spec, NULL, &st->WebSocketType) < 0)
        return -1;
    resp_type_ready(st->ResponseType);
    if (req_type_ready(m, st) < 0)
        return -1;
    if (mod_add_exception(m, "BadRequest",
                          "The request body cannot be parsed as asked (answered with 400).",
                          PyExc_ValueError, &st->BadRequest) < 0)
        return -1;
    if (json_init(m, st) < 0) /* fulmen.InvalidJSON(BadRequest, JSONDecodeError) */
        return -1;
    if (mod_add_exception(m, "RequestTooLarge",
                          "The request body passed its size limit (answered with 413).",
                          st->BadRequest, &st->RequestTooLarge) < 0)
        return -1;
    if (mod_add_type(m, &req_stream_spec, NULL, &st->BodyStreamType) < 0 ||
        mod_add_type(m, &files_spec, NULL, &st->StaticFilesType) < 0)
        return -1;
    if (mod_add_exception(m, "RequestTimeout",
                          "The request body stopped arriving for body_timeout while "
                          "request.stream() awaited it (answered with 408).",
                          PyExc_TimeoutError, &st->RequestTimeout) < 0)
        return -1;
    if (mod_add_exception(m, "ClientDisconnected",
                          "The connection was gone while request.stream() awaited the "
                          "body, or while a streamed answer was written: nobody is left "
                          "to answer.",
                          PyExc_ConnectionResetError, &st->ClientDisconnected) < 0 ||
        mod_add_exception(m, "WebSocketClosed",
                          "The WebSocket is closed; args are (code, reason).",
                          PyExc_ConnectionError, &st->WebSocketClosed) < 0)
        return -1;
    {
        PyObject *d = PyDescr_NewMethod((PyTypeObject *)st->WebSocketClosed,
                                        &mod_ws_closed_str_def);
        int rc = d != NULL ? PyObject_SetAttrString(st->WebSocketClosed, "__str__", d) : -1;
        Py_XDECREF(d);
        if (rc < 0)
            return -1;
    }
    {
        static PyStructSequence_Field fields[] = {
            {"name", "the file name the client sent"},
            {"type", "the part's Content-Type, or None"},
            {"body", "the file's content (bytes)"},
            {NULL, NULL}};
        static PyStructSequence_Desc desc = {
            "fulmen.File", "An uploaded file from a multipart/form-data body.",
            fields, 3};
        st->FileType = PyStructSequence_NewType(&desc);
        if (st->FileType == NULL || PyModule_AddType(m, st->FileType) < 0)
            return -1;
    }
    if (mod_add_type(m, &req_headers_spec, (PyObject *)&PyDict_Type,
                     &st->HeadersType) < 0 ||
        mod_add_type(m, &req_query_spec, (PyObject *)&PyDict_Type,
                     &st->QueryType) < 0)
        return -1;

    INTERN(s_write, "write");
    INTERN(s_writelines, "writelines");
    INTERN(s_close, "close");
    INTERN(s_pause_reading, "pause_reading");
    INTERN(s_resume_reading, "resume_reading");
    INTERN(s_get_extra_info, "get_extra_info");
    INTERN(s_peername, "peername");
    INTERN(s_create_task, "create_task");
    INTERN(s_get_task_factory, "get_task_factory");
    INTERN(s_call_soon, "call_soon");
    INTERN(s_throw, "throw");
    INTERN(s_close_gen, "close");
    INTERN(s_get_write_buffer_size, "get_write_buffer_size");
    INTERN(s_is_closing, "is_closing");
    INTERN(s_create_future, "create_future");
    INTERN(s_done, "done");
    INTERN(s_set_result, "set_result");
    INTERN(s_set_exception, "set_exception");
    INTERN(s_abort, "abort");
    INTERN(s_sslcontext, "sslcontext");
    INTERN(s_socket, "socket");
    INTERN(s_fileno, "fileno");
    INTERN(s_version10, "1.0");
    INTERN(s_version11, "1.1");
    for (i = 1; i <= H1_M_TRACE; i++)
        if ((st->method_str[i] = PyUnicode_InternFromString(methods[i])) == NULL)
            return -1;
    for (i = 0; i < 10; i++)
        if ((st->kw_response[i] = PyUnicode_InternFromString(kwnames[i])) == NULL)
            return -1;
    if ((st->empty_bytes = PyBytes_FromStringAndSize("", 0)) == NULL)
        return -1;
    {
        PyObject *k = PyUnicode_InternFromString("context");
        PyObject *l = PyUnicode_InternFromString("loop");
        PyObject *n = PyUnicode_InternFromString("name");
        PyObject *e = PyUnicode_InternFromString("eager_start");
        st->kw_context = k ? PyTuple_Pack(1, k) : NULL;
        st->kw_task = k && l && n ? PyTuple_Pack(3, l, n, k) : NULL;
        st->kw_task_eager = k && l && n && e ? PyTuple_Pack(4, l, n, k, e) : NULL;
        Py_XDECREF(k);
        Py_XDECREF(l);
        Py_XDECREF(n);
        Py_XDECREF(e);
        if (st->kw_context == NULL || st->kw_task == NULL || st->kw_task_eager == NULL)
            return -1;
    }
    if ((st->empty_str = PyUnicode_FromStringAndSize("", 0)) == NULL)
        return -1;
    if ((st->empty_tuple = PyTuple_New(0)) == NULL)
        return -1;
    if ((st->ws_accept = resp_new_simple(st, 101, NULL, NULL)) == NULL ||
        PyModule_AddObjectRef(m, "_WS_ACCEPT", st->ws_accept) < 0)
        return -1;
    st->date_sec = -1;
    mod_refresh_date(st);
    if (PyModule_AddIntConstant(m, "SIMD_LEVEL", h1_set_simd_level(-1)) < 0)
        return -1;
    return 0;
}

static int mod_traverse(PyObject *m, visitproc visit, void *arg)
{
    fulmen_state *st = PyModule_GetState(m);
    int i;
    Py_VISIT(st->ServerType);
    Py_VISIT(st->ConnType);
    Py_VISIT(st->RequestType);
    Py_VISIT(st->ResponseType);
    Py_VISIT(st->HeadersType);
    Py_VISIT(st->RouteType);
    Py_VISIT(st->MatcherType);
    Py_VISIT(st->ResumeType);
    Py_VISIT(st->QueryType);
    Py_VISIT(st->FileType);
    Py_VISIT(st->BadRequest);
    Py_VISIT(st->InvalidJSON);
    Py_VISIT(st->WebSocketType);
    Py_VISIT(st->ReadyType);
    Py_VISIT(st->SharedType);
    Py_VISIT(st->ws_accept);
    Py_VISIT(st->WebSocketClosed);
    Py_VISIT(st->ClientDisconnected);
    Py_VISIT(st->RequestTimeout);
    Py_VISIT(st->RequestTooLarge);
    Py_VISIT(st->BodyStreamType);
    Py_VISIT(st->StaticFilesType);
    Py_VISIT(st->json_loads);
    Py_VISIT(st->uuid_type);
    Py_VISIT(st->task_swap);
    Py_VISIT(st->current_tasks);
    Py_VISIT(st->kw_context);
    Py_VISIT(st->kw_task);
    Py_VISIT(st->kw_task_eager);
    for (i = 0; i < st->n_req_free; i++)
        Py_VISIT(st->req_free[i]);
    for (i = 0; i < st->n_resp_free; i++)
        Py_VISIT(st->resp_free[i]);
    Py_VISIT(st->out_chunks);
    Py_VISIT(st->rbytes);
    return 0;
}

static int mod_clear(PyObject *m)
{
    fulmen_state *st = PyModule_GetState(m);
    int i;
    for (i = 0; i < st->n_req_free; i++)
        Py_CLEAR(st->req_free[i]);
    st->n_req_free = 0;
    for (i = 0; i < st->n_resp_free; i++)
        Py_CLEAR(st->resp_free[i]);
    st->n_resp_free = 0;
    Py_CLEAR(st->ServerType);
    Py_CLEAR(st->ConnType);
    Py_CLEAR(st->RequestType);
    Py_CLEAR(st->ResponseType);
    Py_CLEAR(st->HeadersType);
    Py_CLEAR(st->RouteType);
    Py_CLEAR(st->MatcherType);
    Py_CLEAR(st->ResumeType);
    Py_CLEAR(st->QueryType);
    Py_CLEAR(st->FileType);
    Py_CLEAR(st->BadRequest);
    json_clear(st);
    files_cache_free(st);
    Py_CLEAR(st->WebSocketType);
    Py_CLEAR(st->ReadyType);
    Py_CLEAR(st->SharedType);
    Py_CLEAR(st->WebSocketClosed);
    Py_CLEAR(st->ClientDisconnected);
    Py_CLEAR(st->RequestTimeout);
    Py_CLEAR(st->RequestTooLarge);
    Py_CLEAR(st->BodyStreamType);
    Py_CLEAR(st->StaticFilesType);
    Py_CLEAR(st->json_loads);
    Py_CLEAR(st->uuid_type);
    Py_CLEAR(st->task_swap);
    Py_CLEAR(st->current_tasks);
    Py_CLEAR(st->kw_context);
    Py_CLEAR(st->kw_task);
    Py_CLEAR(st->kw_task_eager);
    Py_CLEAR(st->s_write);
    Py_CLEAR(st->s_writelines);
    Py_CLEAR(st->s_close);
    Py_CLEAR(st->s_pause_reading);
    Py_CLEAR(st->s_resume_reading);
    Py_CLEAR(st->s_get_extra_info);
    Py_CLEAR(st->s_peername);
    Py_CLEAR(st->s_create_task);
    Py_CLEAR(st->s_get_task_factory);
    Py_CLEAR(st->s_call_soon);
    Py_CLEAR(st->s_throw);
    Py_CLEAR(st->s_close_gen);
    Py_CLEAR(st->s_get_write_buffer_size);
    Py_CLEAR(st->s_is_closing);
    Py_CLEAR(st->s_create_future);
    Py_CLEAR(st->s_done);
    Py_CLEAR(st->s_set_result);
    Py_CLEAR(st->s_set_exception);
    Py_CLEAR(st->s_abort);
    Py_CLEAR(st->s_sslcontext);
    Py_CLEAR(st->s_socket);
    Py_CLEAR(st->s_fileno);
    Py_CLEAR(st->s_version10);
    Py_CLEAR(st->s_version11);
    for (i = 1; i <= H1_M_TRACE; i++)
        Py_CLEAR(st->method_str[i]);
    for (i = 0; i < 10; i++)
        Py_CLEAR(st->kw_response[i]);
    for (i = 0; i < FULMEN_COMMON_HEADERS; i++)
        Py_CLEAR(st->hdr_names[i]);
    Py_CLEAR(st->empty_bytes);
    Py_CLEAR(st->empty_str);
    Py_CLEAR(st->empty_tuple);
    Py_CLEAR(st->ws_accept);
    Py_CLEAR(st->bad_header);
    Py_CLEAR(st->out_chunks);
    Py_CLEAR(st->rbytes);
    return 0;
}

static void mod_free(void *m)
{
    fulmen_state *st = PyModule_GetState((PyObject *)m);
    mod_clear((PyObject *)m);
    PyMem_Free(st->out);
    st->out = NULL;
    PyMem_Free(st->log);
    st->log = NULL;
}

static PyModuleDef_Slot mod_slots[] = {
    {Py_mod_exec, mod_exec},
    {0, NULL},
};

static struct PyModuleDef mod_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fulmen._core",
    .m_doc = "fulmen's HTTP engine.",
    .m_size = sizeof(fulmen_state),
    .m_methods = mod_methods,
    .m_slots = mod_slots,
    .m_traverse = mod_traverse,
    .m_clear = mod_clear,
    .m_free = mod_free,
};

PyMODINIT_FUNC PyInit__core(void)
{
    return PyModuleDef_Init(&mod_def);
}
