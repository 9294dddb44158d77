/*
 * request.c - the Request type and its Headers mapping.
 *
 * A Request is a set of spans into the bytes it came in (`raw`): nothing is
 * decoded until a view asks, and what was decoded is cached.  Requests that
 * nobody else holds when their response has left are reset and reused.
 */
#include "common.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <structmember.h>

#include "multipart.h"

/* ========================================================================
 * Headers: a dict with Title-Case keys whose lookups ignore case.
 */

/* Title-Case a header name into a new str ("content-type" -> "Content-Type").
 * Common names come from a table of interned strings. */
static PyObject *req_title_slow(const char *s, Py_ssize_t n);
/* Header names common enough to keep one interned str each (module state
 * holds them, in this order). */
static const struct {
    const char *name;
    uint8_t len;
} req_common[FULMEN_COMMON_HEADERS] = {
    {"Host", 4}, {"Accept", 6}, {"Cookie", 6}, {"Origin", 6}, {"Referer", 7},
    {"Upgrade", 7}, {"Connection", 10}, {"User-Agent", 10}, {"Content-Type", 12},
    {"Content-Length", 14}, {"Authorization", 13}, {"Accept-Encoding", 15},
    {"Accept-Language", 15}, {"Cache-Control", 13}, {"X-Forwarded-For", 15},
    {"X-Forwarded-Proto", 17}, {"X-Request-Id", 12}, {"If-None-Match", 13},
    {"If-Modified-Since", 17}, {"Sec-Fetch-Mode", 14}, {"Sec-Fetch-Site", 14},
    {"Sec-Fetch-Dest", 14}, {"Pragma", 6}, {"Transfer-Encoding", 17},
    {"Expect", 6}, {"Range", 5}, {"X-Token", 7}, {"Dnt", 3},
};

static PyObject *req_title(fulmen_state *st, const char *s, Py_ssize_t n)
{
    int i;
    for (i = 0; i < FULMEN_COMMON_HEADERS; i++) {
        if (req_common[i].len != n || ((s[0] ^ req_common[i].name[0]) & ~0x20) != 0 ||
            strncasecmp(req_common[i].name, s, (size_t)n) != 0)
            continue;
        if (st->hdr_names[i] == NULL &&
            (st->hdr_names[i] = PyUnicode_InternFromString(req_common[i].name)) == NULL)
            return NULL;
        Py_INCREF(st->hdr_names[i]);
        return st->hdr_names[i];
    }
    return req_title_slow(s, n);
}

static PyObject *req_title_slow(const char *s, Py_ssize_t n)
{
    PyObject *u = PyUnicode_New(n, 127);
    Py_UCS1 *d;
    Py_ssize_t i;
    int up = 1;
    if (u == NULL)
        return NULL;
    d = PyUnicode_1BYTE_DATA(u);
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (up && ch >= 'a' && ch <= 'z')
            ch -= 32;
        else if (!up && ch >= 'A' && ch <= 'Z')
            ch += 32;
        if (ch >= 0x80)
            ch = '?';
        d[i] = ch;
        /* as Japronto: a letter after any non-letter is upper-case */
        up = !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'));
    }
    return u;
}

static PyObject *req_title_key(PyObject *key)
{
    Py_ssize_t n;
    const char *s;
    if (!PyUnicode_Check(key) || !PyUnicode_IS_ASCII(key))
        return NULL;
    s = mod_utf8(key, &n);
    if (s == NULL) {
        PyErr_Clear();
        return NULL;
    }
    return req_title_slow(s, n);
}

static PyObject *req_headers_subscript(PyObject *self, PyObject *key)
{
    PyObject *v = PyDict_GetItemWithError(self, key), *t;
    if (v != NULL) {
        Py_INCREF(v);
        return v;
    }
    if (PyErr_Occurred())
        return NULL;
    t = req_title_key(key);
    if (t != NULL) {
        v = PyDict_GetItemWithError(self, t);
        Py_DECREF(t);
        if (v != NULL) {
            Py_INCREF(v);
            return v;
        }
        if (PyErr_Occurred())
            return NULL;
    }
    PyErr_SetObject(PyExc_KeyError, key);
    return NULL;
}

static int req_headers_contains(PyObject *self, PyObject *key)
{
    int r = PyDict_Contains(self, key);
    PyObject *t;
    if (r != 0)
        return r;
    t = req_title_key(key);
    if (t == NULL)
        return 0;
    r = PyDict_Contains(self, t);
    Py_DECREF(t);
    return r;
}

static PyObject *req_headers_get(PyObject *self, PyObject *const *args,
                                 Py_ssize_t nargs)
{
    PyObject *v;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get() takes 1 or 2 arguments");
        return NULL;
    }
    v = req_headers_subscript(self, args[0]);
    if (v == NULL && PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyErr_Clear();
        v = nargs == 2 ? args[1] : Py_None;
        Py_INCREF(v);
    }
    return v;
}

/* The key a header is stored under: an ASCII str Title-Cased, as the
 * server stores the client's; any other key as it is.  New reference, or
 * NULL with an exception. */
static PyObject *req_headers_key(PyObject *key)
{
    PyObject *t = req_title_key(key);
    if (t == NULL && !PyErr_Occurred())
        t = Py_NewRef(key);
    return t;
}

/* headers[k] = v and del headers[k], under the Title-Cased key, so that a
 * hook's "x-request-id" is the view's "X-Request-Id" */
static int req_headers_ass_subscript(PyObject *self, PyObject *key, PyObject *v)
{
    PyObject *k = req_headers_key(key);
    int rc;
    if (k == NULL)
        return -1;
    rc = v != NULL ? PyDict_SetItem(self, k, v) : PyDict_DelItem(self, k);
    Py_DECREF(k);
    if (rc < 0 && v == NULL && PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyErr_Clear();
        PyErr_SetObject(PyExc_KeyError, key);
    }
    return rc;
}

/* pop(name[, default]) */
static PyObject *req_headers_pop(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *k, *v;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "pop() takes 1 or 2 arguments");
        return NULL;
    }
    if ((k = req_headers_key(args[0])) == NULL)
        return NULL;
    v = PyDict_GetItemWithError(self, k);
    Py_XINCREF(v);
    if (v != NULL && PyDict_DelItem(self, k) < 0)
        Py_CLEAR(v);
    Py_DECREF(k);
    if (v == NULL && !PyErr_Occurred()) {
        if (nargs == 2)
            return Py_NewRef(args[1]);
        PyErr_SetObject(PyExc_KeyError, args[0]);
    }
    return v;
}

/* setdefault(name, default=None) */
static PyObject *req_headers_setdefault(PyObject *self, PyObject *const *args,
                                        Py_ssize_t nargs)
{
    PyObject *k, *v;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "setdefault() takes 1 or 2 arguments");
        return NULL;
    }
    if ((k = req_headers_key(args[0])) == NULL)
        return NULL;
    v = PyDict_SetDefault(self, k, nargs == 2 ? args[1] : Py_None);
    Py_DECREF(k);
    return Py_XNewRef(v);
}

/* update(other=(), **kw): as dict's, each key stored as headers[k] = v is */
static PyObject *req_headers_update(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *all = PyDict_New(), *other = NULL, *k, *v;
    Py_ssize_t pos = 0;
    if (all == NULL || !PyArg_UnpackTuple(args, "update", 0, 1, &other))
        goto error;
    if (other != NULL) {
        /* a mapping is what has keys(), as for dict.update */
        if ((PyObject_HasAttrString(other, "keys") ? PyDict_Merge(all, other, 1)
                                                   : PyDict_MergeFromSeq2(all, other, 1)) < 0)
            goto error;
    }
    if (kw != NULL && PyDict_Update(all, kw) < 0)
        goto error;
    while (PyDict_Next(all, &pos, &k, &v))
        if (req_headers_ass_subscript(self, k, v) < 0)
            goto error;
    Py_DECREF(all);
    Py_RETURN_NONE;
error:
    Py_XDECREF(all);
    return NULL;
}

/* Headers(other=(), **kw), filled as update() fills it */
static int req_headers_init(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *r = req_headers_update(self, args, kw);
    Py_XDECREF(r);
    return r != NULL ? 0 : -1;
}

/* copy(): a Headers, whose lookups still ignore case (dict's gives a dict) */
static PyObject *req_headers_copy(PyObject *self, PyObject *unused)
{
    PyObject *d = PyObject_CallNoArgs((PyObject *)Py_TYPE(self));
    if (d != NULL && PyDict_Update(d, self) < 0)
        Py_CLEAR(d);
    return d;
}

/* headers |= other: as update() */
static PyObject *req_headers_ior(PyObject *self, PyObject *other)
{
    PyObject *args = PyTuple_Pack(1, other), *r;
    if (args == NULL)
        return NULL;
    r = req_headers_update(self, args, NULL);
    Py_DECREF(args);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    return Py_NewRef(self);
}

/* headers | other: a Headers, copied then updated (other | headers, with a
 * dict on the left, is the dict's) */
static PyObject *req_headers_or(PyObject *a, PyObject *b)
{
    PyNumberMethods *nb = Py_TYPE(a)->tp_as_number;
    PyObject *d, *r;
    if (nb == NULL || nb->nb_or != req_headers_or || !PyDict_Check(b))
        return PyDict_Type.tp_as_number->nb_or(a, b);
    if ((d = req_headers_copy(a, NULL)) == NULL)
        return NULL;
    r = req_headers_ior(d, b);
    Py_DECREF(d);
    return r;
}

static PyMethodDef req_headers_methods[] = {
    {"get", (PyCFunction)(void (*)(void))req_headers_get, METH_FASTCALL,
     "get(name, default=None): case-insensitive lookup"},
    {"pop", (PyCFunction)(void (*)(void))req_headers_pop, METH_FASTCALL,
     "pop(name[, default]): case-insensitive"},
    {"setdefault", (PyCFunction)(void (*)(void))req_headers_setdefault, METH_FASTCALL,
     "setdefault(name, default=None): the name stored Title-Cased"},
    {"update", (PyCFunction)(void (*)(void))req_headers_update, METH_VARARGS | METH_KEYWORDS,
     "update(other=(), **kw): the names stored Title-Cased"},
    {"copy", req_headers_copy, METH_NOARGS, "a copy, still a Headers"},
    {NULL},
};

static PyType_Slot req_headers_slots[] = {
    {Py_mp_subscript, req_headers_subscript},
    {Py_mp_ass_subscript, req_headers_ass_subscript},
    {Py_tp_init, req_headers_init},
    {Py_nb_or, req_headers_or},
    {Py_nb_inplace_or, req_headers_ior},
    {Py_sq_contains, req_headers_contains},
    {Py_tp_methods, req_headers_methods},
    {Py_tp_doc, "Request headers: Title-Case keys, case-insensitive lookups and writes."},
    {0, NULL},
};

PyType_Spec req_headers_spec = {
    .name = "fulmen.Headers",
    .basicsize = 0,
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = req_headers_slots,
};

/* ========================================================================
 * Percent-decoding and the query mapping
 */


/* Percent-decode s[0..n) (and '+' as space when plus) into a str, decoding
 * the bytes as UTF-8 with invalid sequences replaced. */
static PyObject *req_unquote(const char *s, size_t n, int plus)
{
    char stackbuf[256] = {0}, *buf = stackbuf;
    size_t i, o = 0;
    PyObject *res;
    if (memchr(s, '%', n) == NULL && (!plus || memchr(s, '+', n) == NULL))
        return PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, "replace");
    if (n > sizeof(stackbuf)) {
        buf = PyMem_Malloc(n);
        if (buf == NULL)
            return PyErr_NoMemory();
    }
    for (i = 0; i < n; i++) {
        int v = mod_pct_at(s, i, n);
        if (v >= 0) {
            buf[o++] = (char)v;
            i += 2;
        } else if (plus && s[i] == '+') {
            buf[o++] = ' ';
        } else {
            buf[o++] = s[i];
        }
    }
    res = PyUnicode_DecodeUTF8(buf, (Py_ssize_t)o, "replace");
    if (buf != stackbuf)
        PyMem_Free(buf);
    return res;
}

/* Query: a dict of the last value of each key, plus getall(key). */
static PyObject *req_list1(PyObject *v)
{
    PyObject *l = PyList_New(1);
    if (l != NULL) {
        Py_INCREF(v);
        PyList_SET_ITEM(l, 0, v);
    }
    return l;
}

typedef struct {
    PyDictObject dict;
    PyObject *all; /* dict key -> list of values, for keys seen twice; or NULL */
} QueryObject;

static PyObject *req_query_getall(QueryObject *q, PyObject *const *args,
                                  Py_ssize_t nargs)
{
    PyObject *v;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "getall() takes 1 or 2 arguments");
        return NULL;
    }
    if (q->all != NULL) {
        v = PyDict_GetItemWithError(q->all, args[0]);
        if (v != NULL)
            return PySequence_List(v);
        if (PyErr_Occurred())
            return NULL;
    }
    v = PyDict_GetItemWithError((PyObject *)q, args[0]);
    if (v != NULL)
        return req_list1(v);
    if (PyErr_Occurred())
        return NULL;
    if (nargs == 2) {
        Py_INCREF(args[1]);
        return args[1];
    }
    PyErr_SetObject(PyExc_KeyError, args[0]);
    return NULL;
}

static int req_query_traverse(QueryObject *q, visitproc visit, void *arg)
{
    Py_VISIT(q->all);
    return PyDict_Type.tp_traverse((PyObject *)q, visit, arg);
}

static int req_query_clear(QueryObject *q)
{
    Py_CLEAR(q->all);
    return PyDict_Type.tp_clear((PyObject *)q);
}

static void req_query_dealloc(QueryObject *q)
{
    PyTypeObject *tp = Py_TYPE(q);
    PyObject_GC_UnTrack(q);
    Py_CLEAR(q->all);
    PyDict_Type.tp_dealloc((PyObject *)q);
    Py_DECREF(tp);
}

/* A copy of q->all: key -> a new list of the same values; NULL with no
 * exception when there is none. */
static PyObject *req_query_all_copy(PyObject *all)
{
    PyObject *d, *k, *v, *l;
    Py_ssize_t pos = 0;
    if (all == NULL || (d = PyDict_New()) == NULL)
        return NULL;
    while (PyDict_Next(all, &pos, &k, &v)) {
        if ((l = PySequence_List(v)) == NULL || PyDict_SetItem(d, k, l) < 0) {
            Py_XDECREF(l);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(l);
    }
    return d;
}

/* copy(): a Query, getall() included (dict's gives a dict) */
static PyObject *req_query_copy(QueryObject *q, PyObject *unused)
{
    QueryObject *n = (QueryObject *)PyObject_CallNoArgs((PyObject *)Py_TYPE(q));
    if (n == NULL || PyDict_Update((PyObject *)n, (PyObject *)q) < 0)
        goto error;
    if (q->all != NULL && (n->all = req_query_all_copy(q->all)) == NULL)
        goto error;
    return (PyObject *)n;
error:
    Py_XDECREF(n);
    return NULL;
}

/* pickle and copy.deepcopy: the items, then the repeated values' lists as
 * its state (__setstate__) */
static PyObject *req_query_reduce(QueryObject *q, PyObject *unused)
{
    PyObject *items = PyDict_Items((PyObject *)q), *it;
    if (items == NULL)
        return NULL;
    it = PyObject_GetIter(items);
    Py_DECREF(items);
    if (it == NULL)
        return NULL;
    return Py_BuildValue("O()ONN", (PyObject *)Py_TYPE(q), q->all ? q->all : Py_None,
                         Py_NewRef(Py_None), it);
}

static PyObject *req_query_setstate(QueryObject *q, PyObject *state)
{
    PyObject *all = NULL;
    if (state != Py_None) {
        if (!PyDict_Check(state)) {
            PyErr_SetString(PyExc_TypeError, "Query state must be a dict or None");
            return NULL;
        }
        if ((all = req_query_all_copy(state)) == NULL)
            return NULL;
    }
    Py_XSETREF(q->all, all);
    Py_RETURN_NONE;
}

static PyMethodDef req_query_methods[] = {
    {"getall", (PyCFunction)(void (*)(void))req_query_getall, METH_FASTCALL,
     "getall(key[, default]): every value of key, in order"},
    {"copy", (PyCFunction)req_query_copy, METH_NOARGS, "a copy, still a Query"},
    {"__reduce__", (PyCFunction)req_query_reduce, METH_NOARGS, NULL},
    {"__setstate__", (PyCFunction)req_query_setstate, METH_O, NULL},
    {NULL},
};

static PyType_Slot req_query_slots[] = {
    {Py_tp_methods, req_query_methods},
    {Py_tp_traverse, req_query_traverse},
    {Py_tp_clear, req_query_clear},
    {Py_tp_dealloc, req_query_dealloc},
    {Py_tp_doc, "Query parameters: the last value of each key; getall(key) for all."},
    {0, NULL},
};

PyType_Spec req_query_spec = {
    .name = "fulmen.Query",
    .basicsize = sizeof(QueryObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = req_query_slots,
};

static int req_query_add(QueryObject *q, PyObject *k, PyObject *v);

/* Parse a query string: split on '&' and '=', then percent-decode. */
/* A query string, or a urlencoded form (limit: how many fields it may have,
 * else BadRequest; 0 for no limit). */
static PyObject *req_parse_query(fulmen_state *st, const char *s, size_t n, uint64_t limit)
{
    QueryObject *q = (QueryObject *)PyObject_CallNoArgs((PyObject *)st->QueryType);
    PyObject *k = NULL, *v = NULL;
    size_t i = 0;
    uint64_t count = 0;
    if (q == NULL)
        return NULL;
    while (i < n) {
        size_t end = i, eq;
        while (end < n && s[end] != '&')
            end++;
        eq = i;
        while (eq < end && s[eq] != '=')
            eq++;
        if (end > i) {
            if (UNLIKELY(limit && ++count > limit)) {
                PyErr_Format(st->BadRequest, "a form of more than %llu fields",
                             (unsigned long long)limit);
                goto error;
            }
            k = req_unquote(s + i, eq - i, 1);
            if (k == NULL)
                goto error;
            v = eq < end ? req_unquote(s + eq + 1, end - eq - 1, 1)
                         : PyUnicode_FromStringAndSize("", 0);
            if (v == NULL)
                goto error;
            if (req_query_add(q, k, v) < 0)
                goto error;
            Py_CLEAR(k);
            Py_CLEAR(v);
        }
        i = end + 1;
    }
    return (PyObject *)q;
error:
    Py_XDECREF(k);
    Py_XDECREF(v);
    Py_DECREF(q);
    return NULL;
}

/* ========================================================================
 * Request lifecycle
 */

/* The lazy caches, py_method .. done_callbacks: consecutive PyObject *
 * members, tested together (most views touch none of them). */
#define REQ_N_LAZY \
    ((offsetof(RequestObject, done_callbacks) - offsetof(RequestObject, py_method)) / \
     sizeof(PyObject *) + 1)
_Static_assert(offsetof(RequestObject, done_callbacks) - offsetof(RequestObject, py_method) ==
               (REQ_N_LAZY - 1) * sizeof(PyObject *), "lazy caches must be consecutive");

static void req_clear_fields(RequestObject *r)
{
    PyObject **lazy = &r->py_method;
    uintptr_t any = 0;
    size_t i;
    Py_CLEAR(r->conn);
    Py_CLEAR(r->raw);
    for (i = 0; i < REQ_N_LAZY; i++)
        any |= (uintptr_t)lazy[i];
    if (any)
        for (i = 0; i < REQ_N_LAZY; i++)
            Py_CLEAR(lazy[i]);
    Py_CLEAR(r->route);
    r->base = NULL;
    r->n_params = 0;
    r->body.off = r->body.len = 0;
}

/* CPython 3.11 specializes `request.method(...)` calls (LOAD_METHOD_WITH_DICT)
 * only for an object whose instance dict exists, so there a request always
 * holds one, empty between requests: an empty dict shares its keys with
 * every other empty dict, so one specialization serves every request.
 * 3.12+ does the opposite (LOAD_ATTR_METHOD_LAZY_DICT only while the dict
 * does not exist), so there a request starts without one.  Returns -1 when
 * a fresh dict cannot be made. */
static int req_reset_dict(RequestObject *r)
{
#if PY_VERSION_HEX >= 0x030C0000
    Py_CLEAR(r->dict);
    return 0;
#else
    PyObject *d = r->dict;
    if (d != NULL && PyDict_CheckExact(d) && Py_REFCNT(d) == 1 && PyDict_GET_SIZE(d) == 0)
        return 0;
    r->dict = PyDict_New();
    Py_XDECREF(d);
    return r->dict == NULL ? -1 : 0;
#endif
}

RequestObject *req_acquire(fulmen_state *st, uint32_t max_headers)
{
    RequestObject *r;
    if (st->n_req_free > 0) {
        r = st->req_free[--st->n_req_free];
    } else {
        r = PyObject_GC_New(RequestObject, st->RequestType);
        if (r == NULL)
            return NULL;
        memset((char *)r + sizeof(PyObject), 0,
               sizeof(RequestObject) - sizeof(PyObject));
        r->st = st;
        r->h.headers = r->inline_headers;
        r->header_cap = FULMEN_INLINE_HEADERS;
        PyObject_GC_Track(r);
        if (req_reset_dict(r) < 0) {
            Py_DECREF(r);
            return NULL;
        }
    }
    /* r->h is left as it is: the parser clears it before its first byte */
    (void)max_headers;
    return r;
}

int req_ensure_header_cap(RequestObject *r, uint32_t cap)
{
    h1_header *p;
    if (cap <= r->header_cap)
        return 0;
    if (r->h.headers == r->inline_headers) {
        p = PyMem_Malloc(sizeof(h1_header) * cap);
        if (p != NULL)
            memcpy(p, r->inline_headers, sizeof(r->inline_headers));
    } else {
        p = PyMem_Realloc(r->h.headers, sizeof(h1_header) * cap);
    }
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    r->h.headers = p;
    r->header_cap = cap;
    return 0;
}

int req_own_raw(RequestObject *r)
{
    PyObject *b;
    if (r->raw == NULL || r->raw != r->st->rbytes)
        return 0;
    b = PyBytes_FromStringAndSize(r->base, (Py_ssize_t)r->rawlen);
    if (b == NULL)
        return -1;
    Py_SETREF(r->raw, b);
    r->base = PyBytes_AS_STRING(b); /* spans are relative to base: still valid */
    return 0;
}

/* Drop the caller's reference; a request nobody else holds is reused. */
void req_release(RequestObject *r)
{
    fulmen_state *st = r->st;
    if (UNLIKELY(Py_REFCNT(r) > 1)) {
        /* the app keeps it beyond its answer */
        if (req_own_raw(r) < 0)
            PyErr_Clear(); /* no memory: the read buffer stays with the request */
        if (r->done_callbacks == NULL)
            r->done_callbacks = Py_NewRef(Py_None); /* done (req_add_done_callback) */
    }
    if (Py_REFCNT(r) == 1 && st->n_req_free < FULMEN_FREELIST_MAX) {
        req_clear_fields(r);
        if (req_reset_dict(r) < 0) {
            PyErr_Clear(); /* out of memory: let this one go */
            Py_DECREF(r);
            return;
        }
        if (r->h.headers != r->inline_headers && r->header_cap > 128) {
            PyMem_Free(r->h.headers);
            r->h.headers = r->inline_headers;
            r->header_cap = FULMEN_INLINE_HEADERS;
        }
        /* clearing ran the app's code (a __del__), which may have taken a
         * reference to r, or filled the freelist meanwhile */
        if (LIKELY(Py_REFCNT(r) == 1 && st->n_req_free < FULMEN_FREELIST_MAX)) {
            st->req_free[st->n_req_free++] = r;
            return;
        }
    }
    Py_DECREF(r);
}

static int req_traverse(RequestObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->conn);
    Py_VISIT(self->raw);
    Py_VISIT(self->py_method);
    Py_VISIT(self->py_path);
    Py_VISIT(self->py_qs);
    Py_VISIT(self->py_headers);
    Py_VISIT(self->py_body);
    Py_VISIT(self->py_match_dict);
    Py_VISIT(self->py_query);
    Py_VISIT(self->py_cookies);
    Py_VISIT(self->py_form);
    Py_VISIT(self->py_files);
    Py_VISIT(self->py_text);
    Py_VISIT(self->py_json);
    Py_VISIT(self->body_stream);
    Py_VISIT(self->py_extra);
    Py_VISIT(self->done_callbacks);
    Py_VISIT(self->dict);
    Py_VISIT(self->route);
    return 0;
}

static int req_clear(RequestObject *self)
{
    req_clear_fields(self);
    Py_CLEAR(self->dict);
    return 0;
}

static void req_dealloc(RequestObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    req_clear_fields(self);
    Py_CLEAR(self->dict);
    if (self->h.headers != self->inline_headers)
        PyMem_Free(self->h.headers);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* ========================================================================
 * Lazy attributes
 */

#define REQ_SPAN(r, s) ((r)->base + (s).off)

/* The body's bytes: in request.body's bytes object once that exists (a
 * body that spanned reads arrives straight there), else in the raw bytes. */
static inline const char *req_body_ptr(RequestObject *r)
{
    return r->py_body != NULL ? PyBytes_AS_STRING(r->py_body) : REQ_SPAN(r, r->body);
}

static PyObject *req_get_body_obj(RequestObject *r);
static int req_trust_proxy(RequestObject *r);
static int req_forwarded(RequestObject *r, const char *xname, const char *fparam,
                         const char **vp, size_t *np);

static PyObject *req_get_method(RequestObject *r, void *c)
{
    if (r->py_method == NULL) {
        if (r->h.method_id != H1_M_OTHER) {
            r->py_method = r->st->method_str[r->h.method_id];
            Py_INCREF(r->py_method);
        } else {
            r->py_method = PyUnicode_DecodeLatin1(REQ_SPAN(r, r->h.method),
                                                  r->h.method.len, NULL);
            if (r->py_method == NULL)
                return NULL;
        }
    }
    Py_INCREF(r->py_method);
    return r->py_method;
}

/* The path, percent-decoded (routing already happened on the raw path, so
 * an encoded "/" never separated segments). */
static PyObject *req_get_path(RequestObject *r, void *c)
{
    if (r->py_path == NULL) {
        if (r->h.path.len == 0)
            r->py_path = PyUnicode_FromStringAndSize("/", 1);
        else
            r->py_path = req_unquote(REQ_SPAN(r, r->h.path), r->h.path.len, 0);
        if (r->py_path == NULL)
            return NULL;
    }
    Py_INCREF(r->py_path);
    return r->py_path;
}

static PyObject *req_get_raw_path(RequestObject *r, void *c)
{
    if (r->h.path.len == 0)
        return PyUnicode_FromStringAndSize("/", 1);
    return PyUnicode_DecodeLatin1(REQ_SPAN(r, r->h.path), r->h.path.len, NULL);
}

static PyObject *req_get_query(RequestObject *r, void *c)
{
    if (r->py_query == NULL) {
        r->py_query = req_parse_query(r->st, REQ_SPAN(r, r->h.query), r->h.query.len, 0);
        if (r->py_query == NULL)
            return NULL;
    }
    Py_INCREF(r->py_query);
    return r->py_query;
}

/* Index of the first header named `lname` (lower case) at index `from`
 * or after, or -1. */
int req_find_header_from(RequestObject *r, const char *lname, uint32_t from)
{
    size_t n = strlen(lname);
    uint32_t i;
    for (i = from; i < r->h.num_headers; i++) {
        const h1_header *h = &r->h.headers[i];
        const char *p = REQ_SPAN(r, h->name);
        size_t k;
        if (h->name.len != n)
            continue;
        for (k = 0; k < n; k++)
            if (((unsigned char)p[k] | 0x20) != (unsigned char)lname[k])
                break;
        if (k == n)
            return (int)i;
    }
    return -1;
}

int req_find_header(RequestObject *r, const char *lname)
{
    return req_find_header_from(r, lname, 0);
}

/* Split Content-Type into the media type and its charset parameter. */
static void req_content_type(RequestObject *r, const char **mt, size_t *mtl,
                             const char **cs, size_t *csl)
{
    int i = req_find_header(r, "content-type");
    *mt = *cs = NULL;
    *mtl = *csl = 0;
    if (i < 0)
        return;
    *mt = REQ_SPAN(r, r->h.headers[i].value);
    mod_content_type(*mt, r->h.headers[i].value.len, mtl, cs, csl);
}

static PyObject *req_get_mime_type(RequestObject *r, void *c)
{
    const char *mt, *cs;
    size_t mtl, csl;
    req_content_type(r, &mt, &mtl, &cs, &csl);
    if (mt == NULL)
        Py_RETURN_NONE;
    return PyUnicode_DecodeLatin1(mt, (Py_ssize_t)mtl, NULL);
}

static PyObject *req_get_encoding(RequestObject *r, void *c)
{
    const char *mt, *cs;
    size_t mtl, csl;
    req_content_type(r, &mt, &mtl, &cs, &csl);
    if (cs == NULL || csl == 0)
        Py_RETURN_NONE;
    return PyUnicode_DecodeLatin1(cs, (Py_ssize_t)csl, NULL);
}

/* Text codecs Python has that are no charset: a client naming one in
 * Content-Type gets BadRequest like for an unknown name.  punycode's and
 * idna's decoders also take time quadratic in their input (a 10 MB body
 * held a worker for about half an hour). */
static const char *const req_not_charsets[] = {
    "idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape", NULL,
};

/* The canonical codec name for the charset cs[0..csl) the client sent, or
 * NULL with BadRequest set when it is no character encoding Python has. */
static PyObject *req_charset_codec(fulmen_state *st, const char *cs, size_t csl)
{
    char enc[64];
    PyObject *codecs = NULL, *info = NULL, *name = NULL, *text = NULL, *shown;
    int i, ok = 0;
    if (csl >= sizeof(enc))
        goto refuse;
    for (i = 0; i < (int)csl; i++)
        if ((unsigned char)cs[i] - 1u >= 0x7fu)
            goto refuse; /* NUL or not ASCII: no codec's name (a token) */
    memcpy(enc, cs, csl);
    enc[csl] = 0;
    codecs = PyImport_ImportModule("codecs");
    if (codecs == NULL)
        goto error;
    info = PyObject_CallMethod(codecs, "lookup", "s", enc);
    if (info == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_LookupError))
            goto error;
        PyErr_Clear();
        goto refuse;
    }
    name = PyObject_GetAttrString(info, "name");
    text = PyObject_GetAttrString(info, "_is_text_encoding");
    if (name == NULL || text == NULL || !PyUnicode_Check(name))
        goto error;
    ok = PyObject_IsTrue(text);
    if (ok < 0)
        goto error;
    for (i = 0; ok && req_not_charsets[i] != NULL; i++)
        if (PyUnicode_CompareWithASCIIString(name, req_not_charsets[i]) == 0)
            ok = 0;
    if (!ok)
        goto refuse;
    Py_DECREF(codecs);
    Py_DECREF(info);
    Py_DECREF(text);
    return name;
refuse:
    shown = PyUnicode_DecodeLatin1(cs, (Py_ssize_t)(csl > 64 ? 64 : csl), NULL);
    if (shown != NULL) {
        PyErr_Format(st->BadRequest, "the body's charset %R is not one the server can decode",
                     shown);
        Py_DECREF(shown);
    }
error:
    Py_XDECREF(codecs);
    Py_XDECREF(info);
    Py_XDECREF(name);
    Py_XDECREF(text);
    return NULL;
}

/* request.text: the body decoded with the charset of Content-Type (UTF-8
 * without one), bad bytes replaced.  A charset that is no character
 * encoding Python has is BadRequest (400). */
/* On a stream=True route the body comes only through request.stream():
 * body, text, json, form and files raise RuntimeError rather than answer
 * as if there were none (an empty body, or a 400 for the client).
 * Returns 0, or -1 with that set. */
static int req_body_streamed(RequestObject *r, const char *what)
{
    if (LIKELY(r->body_stream == NULL))
        return 0;
    PyErr_Format(PyExc_RuntimeError, "request.%s: this route reads its body as it comes "
                 "(stream=True): use request.stream()", what);
    return -1;
}

static PyObject *req_get_text(RequestObject *r, void *c)
{
    const char *mt, *cs;
    size_t mtl, csl;
    const char *name;
    PyObject *codec, *res = NULL;
    if (r->py_text != NULL)
        return Py_NewRef(r->py_text);
    if (UNLIKELY(req_body_streamed(r, "text") < 0))
        return NULL;
    req_content_type(r, &mt, &mtl, &cs, &csl);
    if (cs == NULL || csl == 0) {
        res = PyUnicode_DecodeUTF8(req_body_ptr(r), r->body.len, "replace");
    } else {
        codec = req_charset_codec(r->st, cs, csl);
        if (codec == NULL)
            return NULL;
        name = PyUnicode_AsUTF8(codec);
        if (name != NULL)
            res = PyUnicode_Decode(req_body_ptr(r), r->body.len, name, "replace");
        Py_DECREF(codec);
    }
    r->py_text = Py_XNewRef(res);
    return res;
}

/* request.json: the body parsed by json.c.  Malformed JSON raises
 * fulmen.InvalidJSON, a BadRequest (answered with 400) that is also a
 * json.JSONDecodeError.  A request without a body at all (neither
 * Content-Length nor Transfer-Encoding) gives None, as on Japronto.  The
 * value is parsed once: each access gives the same object, as on Japronto
 * (a hook that adds to it is seen by the view). */
static PyObject *req_get_json(RequestObject *r, void *c)
{
    if (r->py_json != NULL)
        return Py_NewRef(r->py_json);
    if (!(r->h.flags & (H1_F_HAS_CL | H1_F_HAS_TE)))
        Py_RETURN_NONE;
    if (UNLIKELY(req_body_streamed(r, "json") < 0))
        return NULL;
    r->py_json = json_decode(r->st, req_body_ptr(r), r->body.len);
    return Py_XNewRef(r->py_json);
}

/* Add v under k to a Query (keeping every value for getall). */
static int req_query_add(QueryObject *q, PyObject *k, PyObject *v)
{
    PyObject *lst;
    if (PyDict_Contains((PyObject *)q, k)) {
        if (q->all == NULL && (q->all = PyDict_New()) == NULL)
            return -1;
        lst = PyDict_GetItemWithError(q->all, k);
        if (lst == NULL) {
            if (PyErr_Occurred())
                return -1;
            lst = req_list1(PyDict_GetItem((PyObject *)q, k));
            if (lst == NULL || PyDict_SetItem(q->all, k, lst) < 0) {
                Py_XDECREF(lst);
                return -1;
            }
            Py_DECREF(lst);
        }
        if (PyList_Append(lst, v) < 0)
            return -1;
    }
    return PyDict_SetItem((PyObject *)q, k, v);
}

/* Parse the body as a form once: urlencoded or multipart/form-data.
 * Sets py_form (a Query of str) and py_files (a Query of File). */
static int req_parse_form(RequestObject *r)
{
    fulmen_state *st = r->st;
    const char *mt, *cs, *b;
    size_t mtl, csl, bl;
    QueryObject *form = NULL, *files = NULL;
    PyObject *k = NULL, *v = NULL;
    mp_parser mp;
    mp_part part;
    int rc, ci;
    /* the server's max_form_parts (the default when the request outlived
     * its connection) */
    uint64_t limit = r->conn != NULL
                         ? ((ServerObject *)conn_get_server(r->conn))->max_form_parts
                         : FULMEN_MAX_FORM_PARTS;
    uint64_t count = 0;
    if (r->py_form != NULL)
        return 0;
    files = (QueryObject *)PyObject_CallNoArgs((PyObject *)st->QueryType);
    if (files == NULL)
        goto error;
    req_content_type(r, &mt, &mtl, &cs, &csl);
    if (mt != NULL && mtl == 33 &&
        strncasecmp(mt, "application/x-www-form-urlencoded", 33) == 0) {
        form = (QueryObject *)req_parse_query(st, req_body_ptr(r), r->body.len, limit);
        if (form == NULL)
            goto error;
    } else if (mt != NULL && mtl == 19 && strncasecmp(mt, "multipart/form-data", 19) == 0) {
        form = (QueryObject *)PyObject_CallNoArgs((PyObject *)st->QueryType);
        if (form == NULL)
            goto error;
        ci = req_find_header(r, "content-type");
        if (mp_boundary(REQ_SPAN(r, r->h.headers[ci].value), r->h.headers[ci].value.len,
                        &b, &bl) < 0) {
            PyErr_SetString(st->BadRequest, "multipart/form-data without a valid boundary");
            goto error;
        }
        mp_init(&mp, req_body_ptr(r), r->body.len, b, bl);
        while ((rc = mp_next(&mp, &part)) == 1) {
            const char *base = req_body_ptr(r);
            if (UNLIKELY(limit && ++count > limit)) {
                PyErr_Format(st->BadRequest, "a form of more than %llu parts",
                             (unsigned long long)limit);
                goto error;
            }
            k = PyUnicode_DecodeUTF8(base + part.name.off, (Py_ssize_t)part.name.len, "replace");
            if (k == NULL)
                goto error;
            if (part.has_filename) {
                PyObject *fname, *ftype, *fbody;
                v = PyStructSequence_New(st->FileType);
                if (v == NULL)
                    goto error;
                fname = PyUnicode_DecodeUTF8(base + part.filename.off,
                                             (Py_ssize_t)part.filename.len, "replace");
                if (part.content_type.len) {
                    ftype = PyUnicode_DecodeLatin1(base + part.content_type.off,
                                                   (Py_ssize_t)part.content_type.len, NULL);
                } else {
                    ftype = Py_None;
                    Py_INCREF(ftype);
                }
                fbody = PyBytes_FromStringAndSize(base + part.data.off, (Py_ssize_t)part.data.len);
                if (fname == NULL || ftype == NULL || fbody == NULL) {
                    Py_XDECREF(fname);
                    Py_XDECREF(ftype);
                    Py_XDECREF(fbody);
                    goto error;
                }
                PyStructSequence_SET_ITEM(v, 0, fname);
                PyStructSequence_SET_ITEM(v, 1, ftype);
                PyStructSequence_SET_ITEM(v, 2, fbody);
                if (req_query_add(files, k, v) < 0)
                    goto error;
            } else {
                v = PyUnicode_DecodeUTF8(base + part.data.off, (Py_ssize_t)part.data.len,
                                         "replace");
                if (v == NULL || req_query_add(form, k, v) < 0)
                    goto error;
            }
            Py_CLEAR(k);
            Py_CLEAR(v);
        }
        if (rc < 0) {
            PyErr_SetString(st->BadRequest, "malformed multipart/form-data body");
            goto error;
        }
    } else {
        form = (QueryObject *)PyObject_CallNoArgs((PyObject *)st->QueryType);
        if (form == NULL)
            goto error;
    }
    r->py_form = (PyObject *)form;
    r->py_files = (PyObject *)files;
    return 0;
error:
    Py_XDECREF(k);
    Py_XDECREF(v);
    Py_XDECREF(form);
    Py_XDECREF(files);
    return -1;
}

static PyObject *req_get_form(RequestObject *r, void *c)
{
    if (req_body_streamed(r, "form") < 0 || req_parse_form(r) < 0)
        return NULL;
    Py_INCREF(r->py_form);
    return r->py_form;
}

static PyObject *req_get_files(RequestObject *r, void *c)
{
    if (req_body_streamed(r, "files") < 0 || req_parse_form(r) < 0)
        return NULL;
    Py_INCREF(r->py_files);
    return r->py_files;
}

/* The value of a quoted cookie, s[0..n) between its quotes: the escapes
 * http.cookies writes undone as its _unquote does (backslash and three
 * octal digits, the first 0-3, is that code point, written in UTF-8; a
 * backslash and any other character is that character), then
 * percent-decoded.  A Set-Cookie made by SimpleCookie (set_cookie()
 * included) so comes back as it was set: "S\343o" is "S\u00e3o". */
static PyObject *req_cookie_unescape(const char *s, size_t n)
{
    char stackbuf[256], *buf = stackbuf;
    size_t i, o = 0;
    PyObject *res;
    if (memchr(s, '\\', n) == NULL)
        return req_unquote(s, n, 0);
    if (n > sizeof(stackbuf)) { /* the output is never longer */
        buf = PyMem_Malloc(n);
        if (buf == NULL)
            return PyErr_NoMemory();
    }
    for (i = 0; i < n; i++) {
        unsigned char a, b, d;
        if (s[i] != '\\' || i + 1 == n) {
            buf[o++] = s[i];
            continue;
        }
        a = (unsigned char)s[i + 1];
        if (i + 3 < n && a >= '0' && a <= '3' && (b = (unsigned char)s[i + 2]) >= '0' &&
            b <= '7' && (d = (unsigned char)s[i + 3]) >= '0' && d <= '7') {
            unsigned cp = (unsigned)(a - '0') * 64 + (unsigned)(b - '0') * 8 + (d - '0');
            if (cp < 0x80) {
                buf[o++] = (char)cp;
            } else {
                buf[o++] = (char)(0xC0 | (cp >> 6));
                buf[o++] = (char)(0x80 | (cp & 0x3F));
            }
            i += 3;
        } else {
            buf[o++] = (char)a;
            i++;
        }
    }
    res = req_unquote(buf, o, 0);
    if (buf != stackbuf)
        PyMem_Free(buf);
    return res;
}

/* Cookie header(s): "a=1; b=2" -> {"a": "1", "b": "2"} */
static PyObject *req_get_cookies(RequestObject *r, void *c)
{
    uint32_t i;
    PyObject *d, *k = NULL, *v = NULL;
    if (r->py_cookies != NULL) {
        Py_INCREF(r->py_cookies);
        return r->py_cookies;
    }
    d = PyDict_New();
    if (d == NULL)
        return NULL;
    for (i = 0; i < r->h.num_headers; i++) {
        const h1_header *h = &r->h.headers[i];
        const char *p, *end;
        if (h->name.len != 6 || strncasecmp(REQ_SPAN(r, h->name), "cookie", 6) != 0)
            continue;
        p = REQ_SPAN(r, h->value);
        end = p + h->value.len;
        while (p < end) {
            const char *e = memchr(p, ';', (size_t)(end - p)), *eq, *ks, *ke, *vs, *ve;
            int quoted;
            if (e == NULL)
                e = end;
            ks = p;
            while (ks < e && (*ks == ' ' || *ks == '\t'))
                ks++;
            eq = memchr(ks, '=', (size_t)(e - ks));
            if (eq != NULL && eq > ks) {
                ke = eq;
                while (ke > ks && (ke[-1] == ' ' || ke[-1] == '\t'))
                    ke--;
                vs = eq + 1;
                ve = e;
                while (vs < ve && (*vs == ' ' || *vs == '\t'))
                    vs++;
                while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
                    ve--;
                quoted = ve - vs >= 2 && *vs == '"' && ve[-1] == '"';
                if (quoted) {
                    vs++;
                    ve--;
                }
                k = PyUnicode_DecodeLatin1(ks, ke - ks, NULL);
                v = k == NULL ? NULL
                    : quoted  ? req_cookie_unescape(vs, (size_t)(ve - vs))
                              : req_unquote(vs, (size_t)(ve - vs), 0);
                if (v == NULL || PyDict_SetItem(d, k, v) < 0)
                    goto error;
                Py_CLEAR(k);
                Py_CLEAR(v);
            }
            p = e + 1;
        }
    }
    r->py_cookies = d;
    Py_INCREF(d);
    return d;
error:
    Py_XDECREF(k);
    Py_XDECREF(v);
    Py_DECREF(d);
    return NULL;
}

/* Split the authority [v, end) into host (without the brackets of an IPv6
 * address) and port (the text after its ':', or NULL when there is none).
 * Returns 0 for a '[' without its ']'. */
static int req_split_host(const char *v, const char *end, const char **h, size_t *hl,
                          const char **p, size_t *pl)
{
    const char *colon = NULL;
    *h = *p = NULL;
    *hl = *pl = 0;
    if (v < end && *v == '[') {
        const char *rb = memchr(v, ']', (size_t)(end - v));
        if (rb == NULL)
            return 0;
        *h = v + 1;
        *hl = (size_t)(rb - v - 1);
        if (rb + 1 < end && rb[1] == ':')
            colon = rb + 1;
    } else {
        colon = memchr(v, ':', (size_t)(end - v));
        *h = v;
        *hl = (size_t)((colon ? colon : end) - v);
    }
    if (colon != NULL) {
        *p = colon + 1;
        *pl = (size_t)(end - colon - 1);
    }
    return 1;
}

/* The request's host split into hostname and port: with trusted proxy
 * headers, the host the proxy forwarded (X-Forwarded-Host, or Forwarded's
 * host=) when it sent one, so that both come from the same value; else the
 * authority of an absolute-form target, which RFC 9112 3.2.2 says to use
 * instead of Host (without a userinfo), else the Host header.  Returns 0
 * when there is none, or it is malformed. */
static int req_host(RequestObject *r, const char **h, size_t *hl, const char **p,
                    size_t *pl)
{
    const char *v, *end;
    size_t n;
    *h = *p = NULL;
    *hl = *pl = 0;
    if (req_trust_proxy(r) && req_forwarded(r, "x-forwarded-host", "host", &v, &n) &&
        h1_host_valid(v, n)) /* else no host the proxy could have meant: Host's */
        return req_split_host(v, v + n, h, hl, p, pl);
    if (r->h.flags & H1_F_ABSOLUTE) {
        /* "http://" or "https://", then the authority up to the path span
         * (the parser checked both) */
        const char *at;
        v = REQ_SPAN(r, r->h.target);
        end = REQ_SPAN(r, r->h.path);
        v += (v[4] == ':') ? 7 : 8;
        while ((at = memchr(v, '@', (size_t)(end - v))) != NULL)
            v = at + 1;
    } else if (r->h.flags & H1_F_HAS_HOST) {
        v = REQ_SPAN(r, r->h.headers[r->h.host_index].value);
        end = v + r->h.headers[r->h.host_index].value.len;
    } else {
        return 0;
    }
    return req_split_host(v, end, h, hl, p, pl);
}

static PyObject *req_get_hostname(RequestObject *r, void *c)
{
    const char *h, *p;
    size_t hl, pl;
    if (!req_host(r, &h, &hl, &p, &pl))
        Py_RETURN_NONE;
    return PyUnicode_DecodeLatin1(h, (Py_ssize_t)hl, NULL);
}

/* p[0..pl) as a port number (1 to 5 digits, up to 65535), or -1. */
static long req_port_number(const char *p, size_t pl)
{
    long port = 0;
    size_t i;
    while (pl > 1 && p[0] == '0') { /* leading zeros, as the parser takes them */
        p++;
        pl--;
    }
    if (pl == 0 || pl > 5)
        return -1;
    for (i = 0; i < pl; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        port = port * 10 + (p[i] - '0');
    }
    return port <= 65535 ? port : -1;
}

static PyObject *req_get_port(RequestObject *r, void *c)
{
    const char *h, *p;
    size_t hl, pl;
    long port = -1;
    /* X-Forwarded-Port is not read: a proxy set up as docs/deployment.md
     * says passes a client's on untouched */
    if (req_host(r, &h, &hl, &p, &pl) && p != NULL)
        port = req_port_number(p, pl);
    if (port < 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(port);
}

static PyObject *req_get_qs(RequestObject *r, void *c)
{
    if (r->py_qs == NULL) {
        if (r->h.query.len == 0) {
            r->py_qs = r->st->empty_str;
            Py_INCREF(r->py_qs);
        } else {
            r->py_qs = PyUnicode_DecodeLatin1(REQ_SPAN(r, r->h.query),
                                              r->h.query.len, NULL);
            if (r->py_qs == NULL)
                return NULL;
        }
    }
    Py_INCREF(r->py_qs);
    return r->py_qs;
}

static PyObject *req_get_version(RequestObject *r, void *c)
{
    PyObject *v = r->h.version_minor ? r->st->s_version11 : r->st->s_version10;
    Py_INCREF(v);
    return v;
}

static PyObject *req_get_target(RequestObject *r, void *c)
{
    return PyUnicode_DecodeLatin1(REQ_SPAN(r, r->h.target), r->h.target.len, NULL);
}

static PyObject *req_get_headers(RequestObject *r, void *c)
{
    PyObject *d = NULL, *k = NULL, *v = NULL, *old, *multi = NULL, *lst;
    Py_ssize_t pos = 0;
    uint32_t i;
    if (r->py_headers != NULL) {
        Py_INCREF(r->py_headers);
        return r->py_headers;
    }
    /* dict's own tp_new makes an empty Headers (a dict subclass) without
     * the generic type call and an __init__ that has nothing to do */
    {
        PyObject *noargs = PyTuple_New(0); /* the shared empty tuple */
        if (noargs == NULL)
            goto error;
        d = PyDict_Type.tp_new(r->st->HeadersType, noargs, NULL);
        Py_DECREF(noargs);
    }
    if (d == NULL)
        goto error;
    for (i = 0; i < r->h.num_headers; i++) {
        const h1_header *h = &r->h.headers[i];
        k = req_title(r->st, REQ_SPAN(r, h->name), h->name.len);
        if (k == NULL)
            goto error;
        v = PyUnicode_DecodeLatin1(REQ_SPAN(r, h->value), h->value.len, NULL);
        if (v == NULL)
            goto error;
        old = PyDict_GetItemWithError(d, k);
        if (old != NULL) {
            /* repeated field: its values are gathered in multi, joined once
             * all are in (joining as they come copies n^2 bytes) */
            if (multi == NULL && (multi = PyDict_New()) == NULL)
                goto error;
            lst = PyDict_GetItemWithError(multi, k);
            if (lst == NULL) {
                if (PyErr_Occurred() || (lst = PyList_New(1)) == NULL)
                    goto error;
                Py_INCREF(old);
                PyList_SET_ITEM(lst, 0, old);
                if (PyDict_SetItem(multi, k, lst) < 0) {
                    Py_DECREF(lst);
                    goto error;
                }
                Py_DECREF(lst); /* multi holds it */
            }
            if (PyList_Append(lst, v) < 0)
                goto error;
        } else if (PyErr_Occurred() || PyDict_SetItem(d, k, v) < 0) {
            goto error;
        }
        Py_CLEAR(k);
        Py_CLEAR(v);
    }
    while (multi != NULL && PyDict_Next(multi, &pos, &k, &lst)) {
        /* combined as a list (RFC 9110 5.3); Cookie's are "; "-separated
         * (RFC 6265 5.4) */
        PyObject *sep = PyUnicode_FromString(
            PyUnicode_CompareWithASCIIString(k, "Cookie") == 0 ? "; " : ", ");
        PyObject *joined = sep != NULL ? PyUnicode_Join(sep, lst) : NULL;
        int rc = joined != NULL ? PyDict_SetItem(d, k, joined) : -1;
        Py_XDECREF(sep);
        Py_XDECREF(joined);
        k = NULL; /* borrowed */
        if (rc < 0)
            goto error;
    }
    Py_XDECREF(multi);
    r->py_headers = d;
    Py_INCREF(d);
    return d;
error:
    Py_XDECREF(d);
    Py_XDECREF(k);
    Py_XDECREF(v);
    Py_XDECREF(multi);
    return NULL;
}

static PyObject *req_get_body_obj(RequestObject *r);
static PyObject *req_get_body(RequestObject *r, void *c)
{
    if (UNLIKELY(req_body_streamed(r, "body") < 0))
        return NULL;
    return req_get_body_obj(r);
}

static PyObject *req_get_body_obj(RequestObject *r)
{
    if (r->py_body == NULL) {
        if (r->body.len == 0) {
            r->py_body = r->st->empty_bytes;
            Py_INCREF(r->py_body);
        } else {
            r->py_body = PyBytes_FromStringAndSize(REQ_SPAN(r, r->body),
                                                   r->body.len);
            if (r->py_body == NULL)
                return NULL;
        }
    }
    Py_INCREF(r->py_body);
    return r->py_body;
}

static PyObject *req_get_match_dict(RequestObject *r, void *c)
{
    PyObject *d, *v;
    int i;
    if (r->py_match_dict == NULL) {
        d = PyDict_New();
        if (d == NULL)
            return NULL;
        for (i = 0; r->route != NULL && i < r->n_params &&
                    i < PyTuple_GET_SIZE(r->route->param_names); i++) {
            int kind = r->route->param_kind[i];
            if (kind == ROUTER_P_INT && r->params[i].len <= 18) {
                /* the router checked it: [-]digits, at most 18 */
                const char *d = REQ_SPAN(r, r->params[i]);
                uint32_t k = 0, n = r->params[i].len;
                long long x = 0;
                int neg = n > 0 && d[0] == '-';
                for (k = (uint32_t)neg; k < n; k++)
                    x = x * 10 + (d[k] - '0');
                v = PyLong_FromLongLong(neg ? -x : x);
            } else
            v = req_unquote(REQ_SPAN(r, r->params[i]), r->params[i].len, 0);
            if (v != NULL && kind == ROUTER_P_INT && !PyLong_Check(v))
                Py_SETREF(v, PyLong_FromUnicodeObject(v, 10));
            else if (v != NULL && kind == ROUTER_P_FLOAT)
                Py_SETREF(v, PyFloat_FromString(v));
            else if (v != NULL && kind == ROUTER_P_UUID) {
                if (r->st->uuid_type == NULL) {
                    PyObject *mod = PyImport_ImportModule("uuid");
                    if (mod != NULL) {
                        r->st->uuid_type = PyObject_GetAttrString(mod, "UUID");
                        Py_DECREF(mod);
                    }
                }
                if (r->st->uuid_type == NULL)
                    Py_CLEAR(v);
                else
                    Py_SETREF(v, PyObject_CallOneArg(r->st->uuid_type, v));
            }
            if (v == NULL ||
                PyDict_SetItem(d, PyTuple_GET_ITEM(r->route->param_names, i), v) < 0) {
                Py_XDECREF(v);
                Py_DECREF(d);
                return NULL;
            }
            Py_DECREF(v);
        }
        r->py_match_dict = d;
    }
    Py_INCREF(r->py_match_dict);
    return r->py_match_dict;
}

static PyObject *req_get_keep_alive(RequestObject *r, void *c)
{
    return PyBool_FromLong((r->h.flags & H1_F_KEEP_ALIVE) != 0);
}

static PyObject *req_get_extra(RequestObject *r, void *c)
{
    if (r->py_extra == NULL && (r->py_extra = PyDict_New()) == NULL)
        return NULL;
    Py_INCREF(r->py_extra);
    return r->py_extra;
}

static PyObject *req_get_route(RequestObject *r, void *c)
{
    PyObject *o = r->route ? (PyObject *)r->route : Py_None;
    Py_INCREF(o);
    return o;
}

/* conn.c and connio.c expose these through the connection */
PyObject *conn_get_transport(ConnObject *c);
PyObject *conn_view_transport(ConnObject *c);
PyObject *conn_get_app(ConnObject *c);

static PyObject *req_get_transport(RequestObject *r, void *c)
{
    if (r->conn == NULL)
        Py_RETURN_NONE;
    return conn_view_transport(r->conn);
}

static PyObject *req_get_app(RequestObject *r, void *c)
{
    if (r->conn == NULL)
        Py_RETURN_NONE;
    return conn_get_app(r->conn);
}

/* Index of the last header named `lname` (lower case), or -1.  Of repeated
 * field lines the last holds the end of the list (RFC 9110 5.3), which is
 * where a proxy adds its element. */
static int req_find_last_header(RequestObject *r, const char *lname)
{
    int i = req_find_header(r, lname), j;
    while (i >= 0 && (j = req_find_header_from(r, lname, (uint32_t)i + 1)) >= 0)
        i = j;
    return i;
}

/* The value the trusted proxy in front of us wrote: the last element of the
 * X-Forwarded-* header `xname`, or when there is no such header, the
 * parameter `fparam` (for=, proto=, host=) of the last element of
 * Forwarded, without the quotes of a quoted-string.  X-Forwarded-* comes
 * first because the proxies that write it (nginx, as docs/deployment.md
 * sets it up) pass a client's own Forwarded on untouched.  Sets [*vp,
 * *vp + *np) to it and returns 1 when it is from X-Forwarded-*, 2 when from
 * Forwarded; returns 0 when absent or empty. */
static int req_forwarded(RequestObject *r, const char *xname, const char *fparam,
                         const char **vp, size_t *np)
{
    int i = req_find_last_header(r, xname);
    const char *v, *end, *p;
    size_t plen = strlen(fparam);
    if (i >= 0) {
        v = REQ_SPAN(r, r->h.headers[i].value);
        end = v + r->h.headers[i].value.len;
        p = end;
        while (p > v && p[-1] != ',')
            p--;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end == p)
            return 0;
        *vp = p;
        *np = (size_t)(end - p);
        return 1;
    }
    i = req_find_last_header(r, "forwarded");
    if (i < 0)
        return 0;
    v = REQ_SPAN(r, r->h.headers[i].value);
    end = v + r->h.headers[i].value.len;
    p = end;
    while (p > v && p[-1] != ',')
        p--;
    while (p < end) {
        const char *e = memchr(p, ';', (size_t)(end - p)), *q;
        if (e == NULL)
            e = end;
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        if ((size_t)(e - p) > plen && strncasecmp(p, fparam, plen) == 0 && p[plen] == '=') {
            q = p + plen + 1;
            while (e > q && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            if (e - q >= 2 && *q == '"' && e[-1] == '"') {
                q++;
                e--;
            }
            if (e == q)
                return 0;
            *vp = q;
            *np = (size_t)(e - q);
            return 2;
        }
        p = e + 1;
    }
    return 0;
}

/* Proxy headers count only with --proxy-headers and a trusted peer. */
static int req_trust_proxy(RequestObject *r)
{
    return r->conn != NULL && conn_proxy_trusted(r->conn);
}

/* The client's address as the trusted proxy forwarded it (the caller checks
 * the trust): sets [*vp, *vp + *np) and returns 1, or returns 0 when the
 * proxy sent none, or said it has none to tell.  Also the access log's. */
int req_forwarded_client(RequestObject *r, const char **vp, size_t *np)
{
    const char *v, *e, *c;
    char ip[INET6_ADDRSTRLEN + 1];
    struct in6_addr addr;
    size_t n;
    int from = req_forwarded(r, "x-forwarded-for", "for", &v, &n);
    if (from == 0)
        return 0;
    e = v + n;
    /* RFC 7239 6: node = nodename [":" node-port], an IPv6 address in
     * brackets ("[2001:db8::1]:4711"); the port is not the address.  Some
     * proxies write X-Forwarded-For elements that way too (Azure's
     * "10.0.0.1:51234"); a bare IPv6 address has more than one ':'. */
    if (*v == '[') {
        if ((c = memchr(v, ']', n)) != NULL) {
            v++;
            e = c;
        }
    } else if ((c = memchr(v, ':', n)) != NULL &&
               memchr(c + 1, ':', (size_t)(e - c - 1)) == NULL) {
        e = c;
    }
    n = (size_t)(e - v);
    /* "unknown" and obfuscated "_..." identifiers (RFC 7239 6.2, 6.3; some
     * proxies write "unknown" in X-Forwarded-For too) are no address, nor
     * is anything else that is no IPv4 or IPv6 address: the peer's stands */
    if (n == 0 || n >= sizeof(ip) - 1)
        return 0;
    memcpy(ip, v, n);
    ip[n] = '\0';
    if (inet_pton(AF_INET, ip, &addr) != 1 && inet_pton(AF_INET6, ip, &addr) != 1)
        return 0;
    *vp = v;
    *np = n;
    return 1;
}

static PyObject *req_get_remote_addr(RequestObject *r, void *c)
{
    const char *v;
    size_t n;
    if (req_trust_proxy(r) && req_forwarded_client(r, &v, &n))
        return PyUnicode_DecodeLatin1(v, (Py_ssize_t)n, NULL);
    if (r->conn == NULL)
        Py_RETURN_NONE;
    return conn_peer_host(r->conn);
}

static PyObject *req_get_scheme(RequestObject *r, void *c)
{
    PyObject *t, *ssl;
    const char *v;
    size_t n;
    /* "http" or "https", whatever the case (RFC 3986 3.1); another value is
     * not how this server was reached: ignored */
    if (req_trust_proxy(r) && req_forwarded(r, "x-forwarded-proto", "proto", &v, &n) &&
        (n == 4 || n == 5) && strncasecmp(v, "https", n) == 0)
        return PyUnicode_FromString(n == 5 ? "https" : "http");
    if (r->conn == NULL)
        return PyUnicode_FromString("http");
    if (conn_is_tls(r->conn))
        return PyUnicode_FromString("https");
    t = conn_get_transport(r->conn);
    if (t == Py_None) {
        Py_DECREF(t);
        return PyUnicode_FromString("http");
    }
    ssl = PyObject_CallMethodOneArg(t, r->st->s_get_extra_info, r->st->s_sslcontext);
    Py_DECREF(t);
    if (ssl == NULL)
        return NULL;
    t = PyUnicode_FromString(ssl != Py_None ? "https" : "http");
    Py_DECREF(ssl);
    return t;
}

static PyObject *req_add_done_callback(RequestObject *r, PyObject *cb)
{
    if (!PyCallable_Check(cb)) {
        PyErr_SetString(PyExc_TypeError, "callback must be callable");
        return NULL;
    }
    if (PyFunction_Check(cb) &&
        (((PyCodeObject *)PyFunction_GET_CODE(cb))->co_flags &
         (CO_COROUTINE | CO_GENERATOR | CO_ASYNC_GENERATOR | CO_ITERABLE_COROUTINE))) {
        /* its call would make a coroutine (or generator) that nobody runs */
        PyErr_Format(PyExc_TypeError,
                     "done callback %R is an async def or a generator: it would never run "
                     "(a plain function may start a task itself)", cb);
        return NULL;
    }
    if (r->done_callbacks == Py_None) {
        /* the answer is done already (None marks it): it runs now, as it
         * would have then; its error is reported the same way */
        PyObject *res = PyObject_CallOneArg(cb, (PyObject *)r);
        if (res == NULL)
            PyErr_WriteUnraisable(cb);
        Py_XDECREF(res);
        Py_RETURN_NONE;
    }
    if (r->done_callbacks == NULL && (r->done_callbacks = PyList_New(0)) == NULL)
        return NULL;
    if (PyList_Append(r->done_callbacks, cb) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *req_repr(RequestObject *r)
{
    PyObject *m = req_get_method(r, NULL), *p, *res;
    if (m == NULL)
        return NULL;
    p = req_get_path(r, NULL);
    if (p == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    res = PyUnicode_FromFormat("<Request %U %U>", m, p);
    Py_DECREF(m);
    Py_DECREF(p);
    return res;
}

static PyGetSetDef req_getset[] = {
    {"method", (getter)req_get_method, NULL, "request method", NULL},
    {"path", (getter)req_get_path, NULL, "request path, percent-decoded", NULL},
    {"raw_path", (getter)req_get_raw_path, NULL, "request path as sent", NULL},
    {"query", (getter)req_get_query, NULL, "query parameters (getall for repeats)", NULL},
    {"text", (getter)req_get_text, NULL, "body decoded with its charset", NULL},
    {"json", (getter)req_get_json, NULL, "body parsed as JSON", NULL},
    {"mime_type", (getter)req_get_mime_type, NULL, "media type of the body", NULL},
    {"encoding", (getter)req_get_encoding, NULL, "charset of the body, or None", NULL},
    {"cookies", (getter)req_get_cookies, NULL, "cookies sent by the client", NULL},
    {"form", (getter)req_get_form, NULL, "form fields (urlencoded or multipart)", NULL},
    {"files", (getter)req_get_files, NULL, "uploaded files (multipart)", NULL},
    {"hostname", (getter)req_get_hostname, NULL, "host from the Host header", NULL},
    {"port", (getter)req_get_port, NULL, "port from the Host header, or None", NULL},
    {"query_string", (getter)req_get_qs, NULL, "raw query string", NULL},
    {"version", (getter)req_get_version, NULL, "HTTP version, '1.0' or '1.1'", NULL},
    {"target", (getter)req_get_target, NULL, "request-target as sent", NULL},
    {"headers", (getter)req_get_headers, NULL, "request headers", NULL},
    {"body", (getter)req_get_body, NULL, "request body bytes", NULL},
    {"match_dict", (getter)req_get_match_dict, NULL, "route parameters", NULL},
    {"keep_alive", (getter)req_get_keep_alive, NULL, "connection persists", NULL},
    {"extra", (getter)req_get_extra, NULL, "a dict for the app", NULL},
    {"route", (getter)req_get_route, NULL, "the matched route", NULL},
    {"transport", (getter)req_get_transport, NULL, "the asyncio transport", NULL},
    {"app", (getter)req_get_app, NULL, "the Application", NULL},
    {"remote_addr", (getter)req_get_remote_addr, NULL, "the client's address", NULL},
    {"scheme", (getter)req_get_scheme, NULL, "'http' or 'https'", NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

/* request.stream(): the body as an async iterator of bytes.  On a
 * stream=True route the chunks arrive as the client sends them; elsewhere
 * the whole body (already read) comes as one chunk. */
static int req_stream_taken(PyObject *obj);

static PyObject *req_stream(RequestObject *r, PyObject *unused)
{
    PyObject *bs, *body;
    if (r->body_stream != NULL) {
        /* a stream=True route: the one stream of the body as it arrives,
         * which is not kept once read */
        if (req_stream_taken(r->body_stream)) {
            PyErr_SetString(PyExc_RuntimeError,
                            "request.stream() was read from already: the body it "
                            "gave is not kept (read the rest from that stream)");
            return NULL;
        }
        Py_INCREF(r->body_stream);
        return r->body_stream;
    }
    /* an ordinary route: a new stream over the body read already, for
     * every call */
    bs = req_stream_new(r->st, NULL);
    if (bs == NULL)
        return NULL;
    body = req_get_body_obj(r);
    if (body == NULL || req_stream_push(bs, PyBytes_AS_STRING(body),
                                        (size_t)PyBytes_GET_SIZE(body)) < 0) {
        Py_XDECREF(body);
        Py_DECREF(bs);
        return NULL;
    }
    Py_DECREF(body);
    req_stream_end(bs, NULL);
    return bs;
}

/* request.Response: the Response class, reached through a descriptor of
 * its own.  Read as an attribute it gives the class (`request.Response is
 * Response`, as in Japronto).  Called as `request.Response(...)`, CPython
 * never reads it: the type says Py_TPFLAGS_METHOD_DESCRIPTOR, so the
 * lookup is specialized as a method's (3.11's LOAD_METHOD_WITH_DICT, which
 * is why a request always has a dict there; 3.12+'s LOAD_ATTR_METHOD_*),
 * and the call lands in req_maker_call with the request first, straight
 * from the interpreter's generic call: 3.11 specializes no call that passes
 * keyword arguments, and a plain method would add its descriptor's own
 * argument checks on that path. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    fulmen_state *st; /* the module outlives the Request type that holds this */
} ReqMakerObject;

static PyObject *req_maker_call(PyObject *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames)
{
    fulmen_state *st = ((ReqMakerObject *)self)->st;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (UNLIKELY(nargs < 1 || Py_TYPE(args[0]) != st->RequestType)) {
        PyErr_SetString(PyExc_TypeError, "Request.Response needs a request as its first argument");
        return NULL;
    }
    return resp_make(st, args + 1, nargs - 1, kwnames);
}

static PyObject *req_maker_get(PyObject *self, PyObject *obj, PyObject *type)
{
    PyObject *cls = (PyObject *)((ReqMakerObject *)self)->st->ResponseType;
    Py_INCREF(cls);
    return cls;
}

static PyMemberDef req_maker_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(ReqMakerObject, vectorcall), READONLY},
    {NULL},
};

static PyType_Slot req_maker_slots[] = {
    {Py_tp_descr_get, req_maker_get},
    {Py_tp_members, req_maker_members},
    {Py_tp_call, PyVectorcall_Call},
    {0, NULL},
};

static PyType_Spec req_maker_spec = {
    .name = "fulmen._ResponseMaker",
    .basicsize = sizeof(ReqMakerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_HAVE_VECTORCALL |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = req_maker_slots,
};

/* Put request.Response in place (the module's exec, once the Request and
 * Response types exist). */
int req_type_ready(PyObject *m, fulmen_state *st)
{
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(m, &req_maker_spec, NULL);
    ReqMakerObject *mk = NULL;
    int rc = -1;
    if (tp == NULL)
        return -1;
    mk = (ReqMakerObject *)tp->tp_alloc(tp, 0);
    if (mk == NULL)
        goto error;
    mk->vectorcall = req_maker_call;
    mk->st = st;
    if (PyDict_SetItemString(st->RequestType->tp_dict, "Response", (PyObject *)mk) < 0)
        goto error;
    PyType_Modified(st->RequestType);
    rc = 0;
error:
    Py_XDECREF(mk);
    Py_DECREF(tp);
    return rc;
}

static PyMethodDef req_methods[] = {
    {"stream", (PyCFunction)req_stream, METH_NOARGS,
     "The body as an async iterator of bytes chunks."},
    {"add_done_callback", (PyCFunction)req_add_done_callback, METH_O,
     "Call cb(request) once the response has been written."},
    {NULL},
};

static PyMemberDef req_members[] = {
    {"__dictoffset__", T_PYSSIZET, offsetof(RequestObject, dict), READONLY},
    {NULL},
};

static PyObject *req_tp_new(PyTypeObject *tp, PyObject *a, PyObject *k)
{
    PyErr_SetString(PyExc_TypeError, "Request objects are made by the server");
    return NULL;
}

static PyType_Slot req_slots[] = {
    {Py_tp_new, req_tp_new},
    {Py_tp_dealloc, req_dealloc},
    {Py_tp_traverse, req_traverse},
    {Py_tp_clear, req_clear},
    {Py_tp_getset, req_getset},
    {Py_tp_methods, req_methods},
    {Py_tp_members, req_members},
    {Py_tp_repr, req_repr},
    {Py_tp_doc, "An HTTP request; attributes are decoded on first access."},
    {0, NULL},
};

PyType_Spec req_spec = {
    .name = "fulmen.Request",
    .basicsize = sizeof(RequestObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = req_slots,
};

/* ========================================================================
 * BodyStream: the body of a stream=True route, read as it arrives.
 *
 * The connection pushes decoded chunks in (req_stream_push) and ends it;
 * the view pulls them with `async for chunk in request.stream()`.  While
 * more than REQ_STREAM_HIGH bytes wait here the connection stops reading,
 * so an upload of any size takes constant memory.
 */

#define REQ_STREAM_HIGH (256 * 1024)
#define REQ_STREAM_LOW (64 * 1024)

typedef struct {
    PyObject_HEAD
    fulmen_state *st;
    ConnObject *conn;   /* strong while the body is arriving, else NULL */
    PyObject *chunks;   /* list of bytes not yet taken */
    size_t buffered;
    int eof;
    int paused;         /* the connection stopped reading for us */
    PyObject *error;    /* exception instance ending the stream, or NULL */
    PyObject *waiter;   /* the future of a pending __anext__ */
    PyObject *loop;
    int taken;          /* __anext__ was called */
} BodyStreamObject;

PyObject *req_stream_new(fulmen_state *st, ConnObject *c)
{
    BodyStreamObject *b = PyObject_GC_New(BodyStreamObject, st->BodyStreamType);
    if (b == NULL)
        return NULL;
    b->st = st;
    b->conn = c;
    Py_XINCREF(c);
    b->chunks = PyList_New(0);
    b->buffered = 0;
    b->eof = 0;
    b->paused = 0;
    b->error = NULL;
    b->waiter = NULL;
    b->taken = 0;
    b->loop = c ? conn_get_loop(c) : NULL;
    Py_XINCREF(b->loop);
    PyObject_GC_Track(b);
    if (b->chunks == NULL) {
        Py_DECREF(b);
        return NULL;
    }
    return (PyObject *)b;
}

static int req_stream_taken(PyObject *obj)
{
    return ((BodyStreamObject *)obj)->taken;
}

int req_stream_push(PyObject *obj, const char *p, size_t n)
{
    BodyStreamObject *b = (BodyStreamObject *)obj;
    PyObject *chunk;
    if (n == 0 || b->eof || b->error)
        return 0;
    chunk = PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    if (chunk == NULL)
        return -1;
    if (mod_future_settle(b->st, &b->waiter, chunk, NULL)) {
        Py_DECREF(chunk);
        return 0;
    }
    /* nobody waits (or the read that did was cancelled): kept in order */
    if (PyList_Append(b->chunks, chunk) < 0) {
        Py_DECREF(chunk);
        return -1;
    }
    Py_DECREF(chunk);
    b->buffered += n;
    return 0;
}

size_t req_stream_buffered(PyObject *obj)
{
    BodyStreamObject *b = (BodyStreamObject *)obj;
    return b->buffered >= REQ_STREAM_HIGH ? b->buffered : 0;
}

/* A new instance of the exception that ended the stream, for one raise (a
 * new reference, or NULL with an exception set).  The stored one is never
 * raised: its traceback would hold the view's frame, which holds the
 * request, which holds this stream, which holds it, and that cycle (with
 * the connection and its buffers in it) would wait for the collector. */
static NOINLINE PyObject *req_stream_error_copy(BodyStreamObject *b)
{
    PyObject *exc = NULL, *args;
    if (PyExceptionClass_Check(b->error)) /* conn_fail_body_stream, out of memory */
        return PyObject_CallNoArgs(b->error);
    args = PyObject_GetAttrString(b->error, "args");
    if (args != NULL)
        exc = PyObject_CallObject((PyObject *)Py_TYPE(b->error), args);
    Py_XDECREF(args);
    return exc;
}

void req_stream_end(PyObject *obj, PyObject *exc)
{
    BodyStreamObject *b = (BodyStreamObject *)obj;
    PyObject *stop;
    if (b->eof || b->error)
        return;
    if (exc != NULL) {
        Py_INCREF(exc);
        b->error = exc;
        if (b->waiter != NULL) {
            exc = req_stream_error_copy(b);
            if (exc == NULL)
                PyErr_WriteUnraisable(obj); /* the stored one then: a cycle, not a hang */
            mod_future_settle(b->st, &b->waiter, NULL, exc != NULL ? exc : b->error);
            Py_XDECREF(exc);
        }
    } else {
        b->eof = 1;
        if (b->waiter != NULL) {
            stop = PyObject_CallNoArgs(PyExc_StopAsyncIteration);
            if (stop != NULL)
                mod_future_settle(b->st, &b->waiter, NULL, stop);
            Py_XDECREF(stop);
        }
    }
    Py_CLEAR(b->conn);
}

static PyObject *req_stream_anext(BodyStreamObject *b)
{
    PyObject *chunk;
    b->taken = 1;
    if (PyList_GET_SIZE(b->chunks) > 0) {
        chunk = PyList_GET_ITEM(b->chunks, 0);
        Py_INCREF(chunk);
        if (PySequence_DelItem(b->chunks, 0) < 0) {
            Py_DECREF(chunk);
            return NULL;
        }
        b->buffered -= (size_t)PyBytes_GET_SIZE(chunk);
        if (b->paused && b->buffered <= REQ_STREAM_LOW && b->conn != NULL) {
            b->paused = 0;
            conn_body_drained(b->conn);
        }
        Py_SETREF(chunk, aw_ready_new(b->st, chunk));
        return chunk;
    }
    if (b->error != NULL) {
        chunk = req_stream_error_copy(b);
        if (chunk != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(chunk), chunk);
            Py_DECREF(chunk);
        }
        return NULL;
    }
    if (b->eof) {
        PyErr_SetNone(PyExc_StopAsyncIteration);
        return NULL;
    }
    switch (mod_future_pending(b->st, &b->waiter)) {
    case -1:
        return NULL;
    case 1:
        PyErr_SetString(PyExc_RuntimeError, "the body is already being read");
        return NULL;
    }
    if (b->paused && b->conn != NULL) {
        b->paused = 0;
        conn_body_drained(b->conn);
    }
    b->waiter = b->conn != NULL ? conn_new_future(b->conn)
                                : mod_future_new(b->st, b->loop, NULL, NULL);
    if (b->waiter == NULL)
        return NULL;
    Py_INCREF(b->waiter);
    return b->waiter;
}

/* for connstream.c: the connection paused reading because we hold too much */
void req_stream_mark_paused(PyObject *obj);
void req_stream_mark_paused(PyObject *obj)
{
    ((BodyStreamObject *)obj)->paused = 1;
}

static PyObject *req_stream_aiter(PyObject *self)
{
    Py_INCREF(self);
    return self;
}

static int req_stream_traverse(BodyStreamObject *b, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(b));
    Py_VISIT(b->conn);
    Py_VISIT(b->chunks);
    Py_VISIT(b->error);
    Py_VISIT(b->waiter);
    Py_VISIT(b->loop);
    return 0;
}

static int req_stream_clear(BodyStreamObject *b)
{
    Py_CLEAR(b->conn);
    Py_CLEAR(b->chunks);
    Py_CLEAR(b->error);
    Py_CLEAR(b->waiter);
    Py_CLEAR(b->loop);
    return 0;
}

static void req_stream_dealloc(BodyStreamObject *b)
{
    PyTypeObject *tp = Py_TYPE(b);
    PyObject_GC_UnTrack(b);
    req_stream_clear(b);
    tp->tp_free(b);
    Py_DECREF(tp);
}

static PyType_Slot req_stream_slots[] = {
    {Py_am_aiter, req_stream_aiter},
    {Py_am_anext, req_stream_anext},
    {Py_tp_dealloc, req_stream_dealloc},
    {Py_tp_traverse, req_stream_traverse},
    {Py_tp_clear, req_stream_clear},
    {Py_tp_doc, "The request body as it arrives: async for chunk in request.stream()."},
    {0, NULL},
};

PyType_Spec req_stream_spec = {
    .name = "fulmen.BodyStream",
    .basicsize = sizeof(BodyStreamObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = req_stream_slots,
};
