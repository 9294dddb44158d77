/*
 * response.c - the Response type and its wire form (JSON text comes from
 * json.c).
 *
 * A Response stays an ordinary mutable object until the connection writes
 * it: code, headers and body can be read and changed by hooks.  Writing
 * appends the status line, headers and body to the module's output buffer
 * (module.c), so a burst of pipelined responses leaves in one write.
 */
#include "common.h"

#include <stddef.h>
#include <structmember.h>

/* ========================================================================
 * Reason phrases (RFC 9110 section 15)
 */

const char *resp_reason(int code)
{
    switch (code) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    case 511: return "Network Authentication Required";
    default: return NULL;
    }
}

/* ========================================================================
 * The Response type
 */

/* Response(json=...): the C encoder (json.c) into the response's reusable
 * JSON buffer, else the app's json_dumps (fulmen.app._json_dumps). */
static int resp_set_json(ResponseObject *self, PyObject *json)
{
    json_buf b = {self->jbuf, 0, self->jcap};
    PyObject *mod = NULL, *dumps = NULL, *s = NULL;
    int rc = json_encode(self->st, &b, json);
    self->jbuf = b.p;
    self->jcap = b.cap;
    self->jlen = b.len;
    if (rc < 0)
        return -1;
    if (rc == 0) {
        Py_CLEAR(self->body);
        self->kind = RESP_JSON;
        return 0;
    }
    /* fallback: json.dumps for what the C encoder does not know */
    mod = PyImport_ImportModule("fulmen.app");
    if (mod == NULL)
        goto error;
    dumps = PyObject_GetAttrString(mod, "_json_dumps");
    if (dumps == NULL)
        goto error;
    s = PyObject_CallOneArg(dumps, json);
    if (s == NULL)
        goto error;
    if (PyUnicode_Check(s)) {
        Py_SETREF(s, PyUnicode_AsUTF8String(s));
        if (s == NULL)
            goto error;
    }
    if (!PyBytes_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "json_dumps must return str or bytes");
        goto error;
    }
    /* keep it a JSON response: copy the text into the JSON buffer */
    b.p = self->jbuf;
    b.len = 0;
    b.cap = self->jcap;
    if (b.cap < (size_t)PyBytes_GET_SIZE(s) &&
        json_buf_grow(&b, (size_t)PyBytes_GET_SIZE(s)) < 0) {
        self->jbuf = b.p;
        self->jcap = b.cap;
        goto error;
    }
    memcpy(b.p, PyBytes_AS_STRING(s), (size_t)PyBytes_GET_SIZE(s));
    self->jbuf = b.p;
    self->jcap = b.cap;
    self->jlen = (size_t)PyBytes_GET_SIZE(s);
    Py_CLEAR(self->body);
    self->kind = RESP_JSON;
    Py_DECREF(s);
    Py_DECREF(mod);
    Py_DECREF(dumps);
    return 0;
error:
    Py_XDECREF(mod);
    Py_XDECREF(dumps);
    Py_XDECREF(s);
    return -1;
}

/* The JSON buffer a recycled Response keeps (resp_recycle). */
#define RESP_JSON_KEEP (64u << 10)

static ResponseObject *resp_alloc(fulmen_state *st)
{
    ResponseObject *r;
    if (st->n_resp_free > 0) {
        r = st->resp_free[--st->n_resp_free];
        return r; /* refcount 1, fields cleared */
    }
    r = PyObject_GC_New(ResponseObject, st->ResponseType);
    if (r == NULL)
        return NULL;
    r->st = st;
    r->code = 200;
    r->body = NULL;
    r->content_type = NULL;
    r->headers = NULL;
    r->cookies = NULL;
    r->stream = NULL;
    r->dict = NULL;
    r->jbuf = NULL;
    r->jlen = r->jcap = 0;
    r->kind = RESP_EMPTY;
    r->head_length = 0;
    PyObject_GC_Track(r);
    return r;
}

static void resp_clear_fields(ResponseObject *r)
{
    Py_CLEAR(r->body);
    /* the rest is rarely set: tested together */
    if (UNLIKELY(((uintptr_t)r->content_type | (uintptr_t)r->headers |
                  (uintptr_t)r->cookies | (uintptr_t)r->stream |
                  (uintptr_t)r->dict) != 0)) {
        Py_CLEAR(r->content_type);
        Py_CLEAR(r->headers);
        Py_CLEAR(r->cookies);
        Py_CLEAR(r->stream);
        Py_CLEAR(r->dict);
    }
    r->jlen = 0;
    r->code = 200;
    r->kind = RESP_EMPTY;
    r->head_length = 0;
}

/* Called by the connection when it drops its reference: an object nobody
 * else holds goes back to the freelist instead of being freed. */
static void resp_recycle(ResponseObject *r)
{
    fulmen_state *st = r->st;
    if (Py_REFCNT(r) == 1 && st->n_resp_free < FULMEN_FREELIST_MAX &&
        Py_TYPE(r) == st->ResponseType) {
        resp_clear_fields(r);
        if (UNLIKELY(r->jcap > RESP_JSON_KEEP)) {
            /* one large JSON answer's buffer: not kept for every later one */
            PyMem_Free(r->jbuf);
            r->jbuf = NULL;
            r->jcap = 0;
        }
        /* (as req_release: clearing may have run the app's code) */
        if (LIKELY(Py_REFCNT(r) == 1 && st->n_resp_free < FULMEN_FREELIST_MAX)) {
            st->resp_free[st->n_resp_free++] = r;
            return;
        }
    }
    Py_DECREF(r);
}

/* Does the charset name e[0..n) say UTF-8 ("utf-8" or "utf8", any case)? */
static int resp_is_utf8(const char *e, size_t n)
{
    return (n == 5 && strncasecmp(e, "utf-8", 5) == 0) ||
           (n == 4 && strncasecmp(e, "utf8", 4) == 0);
}

/* Response(text= or body=, ...) labels its Content-Type with a charset as
 * Japronto's did: "<type>; charset=<encoding>", the type being mime_type
 * or the default for the kind, when an encoding is given (any type) or
 * the type is text/ (UTF-8 unless given).  encoding is a str or NULL.  A
 * type with parameters is left alone, and so is a text= response in a
 * text/ type and UTF-8, which resp_put_head labels when it is sent (the
 * mime_type attribute stays the bare type).  Setting the mime_type
 * attribute later sends exactly that type.  Returns 0 or -1. */
static int resp_label_charset(ResponseObject *self, PyObject *encoding)
{
    PyObject *ct;
    const char *t, *e = "utf-8";
    Py_ssize_t tl, el = 5;
    int text_type, utf8;
    if (self->content_type == NULL) {
        if (encoding == NULL)
            return 0;
        self->content_type = PyUnicode_FromString(
            self->kind == RESP_TEXT ? "text/plain" : "application/octet-stream");
        if (self->content_type == NULL)
            return -1;
    }
    if ((t = mod_utf8(self->content_type, &tl)) == NULL ||
        (encoding != NULL && (e = mod_utf8(encoding, &el)) == NULL))
        return -1;
    if (memchr(t, ';', (size_t)tl) != NULL)
        return 0;
    text_type = tl >= 5 && memcmp(t, "text/", 5) == 0;
    utf8 = resp_is_utf8(e, (size_t)el);
    if ((encoding == NULL && !text_type) ||
        (self->kind == RESP_TEXT && text_type && utf8))
        return 0;
    ct = PyUnicode_FromFormat("%U; charset=%s", self->content_type, e);
    if (ct == NULL)
        return -1;
    Py_SETREF(self->content_type, ct);
    return 0;
}

/* RFC 9110 15: codes outside 100..599 are invalid, and a 1xx is interim
 * (15.2): the client would still wait for the final answer, and take the
 * next one on the connection for it.  What the error adds for code c. */
#define RESP_CODE_WHY(c) \
    ((c) >= 100 && (c) < 200 ? " (a 1xx is interim: a view cannot answer with one)" : "")

/* A status code as Response(code=) and .code take it: an int from 200 to
 * 599 (ValueError otherwise, however large; TypeError for no int).
 * Returns it, or -1 with the exception set. */
static int resp_code_of(PyObject *v)
{
    int overflow;
    long c;
    if (!PyLong_Check(v) || PyBool_Check(v)) {
        PyErr_Format(PyExc_TypeError, "code must be an int, such as 200, not %R", v);
        return -1;
    }
    c = PyLong_AsLongAndOverflow(v, &overflow);
    if (c == -1 && PyErr_Occurred())
        return -1;
    if (overflow || c < 200 || c > 599) {
        PyErr_Format(PyExc_ValueError, "code must be between 200 and 599, not %R%s", v,
                     overflow ? "" : RESP_CODE_WHY(c));
        return -1;
    }
    return (int)c;
}

/* A mime_type as Response(mime_type=) and .mime_type take it: a str that
 * is not empty (an empty one would send an empty Content-Type).  0, or -1
 * with the exception set. */
static int resp_check_mime(PyObject *v)
{
    if (!PyUnicode_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "mime_type must be a str");
        return -1;
    }
    if (PyUnicode_GET_LENGTH(v) == 0) {
        PyErr_SetString(PyExc_ValueError, "mime_type must not be empty (None: the default)");
        return -1;
    }
    return 0;
}

/* headers= as Response() and .headers take it: a dict; a list or tuple of
 * (name, value) pairs, checked now (a bad one failed only when sent, far
 * from the view); or another mapping, copied into a dict.  A new
 * reference, or NULL with a TypeError. */
static PyObject *resp_headers_of(PyObject *v)
{
    static const char why[] = "headers must be a dict or a list of (name, value) pairs";
    PyObject *d;
    if (PyDict_Check(v)) {
        PyObject *k, *val;
        Py_ssize_t pos = 0;
        while (PyDict_Next(v, &pos, &k, &val))
            if (!PyUnicode_Check(k))
                goto name;
        return Py_NewRef(v);
    }
    if (PyList_Check(v) || PyTuple_Check(v)) {
        Py_ssize_t i;
        for (i = 0; i < PySequence_Fast_GET_SIZE(v); i++) {
            PyObject *p = PySequence_Fast_GET_ITEM(v, i);
            if (!(PyTuple_Check(p) || PyList_Check(p)) || PySequence_Fast_GET_SIZE(p) != 2) {
                PyErr_Format(PyExc_TypeError, "%s: item %zd is %.200R", why, i, p);
                return NULL;
            }
            if (!PyUnicode_Check(PySequence_Fast_GET_ITEM(p, 0))) {
                v = p; /* (a borrowed reference, for the message) */
                goto name;
            }
        }
        return Py_NewRef(v);
    }
    d = PyDict_New();
    if (d == NULL || PyDict_Update(d, v) < 0) {
        Py_XDECREF(d);
        PyErr_SetString(PyExc_TypeError, why);
        return NULL;
    }
    v = resp_headers_of(d); /* its names checked: d again, or NULL */
    Py_DECREF(d);
    return v;
name:
    PyErr_Format(PyExc_TypeError, "header names must be str (values may be anything "
                 "str() takes): %.200R", v);
    return NULL;
}

static int resp_set_body(ResponseObject *self, PyObject *v, void *c);

static int resp_init_args(ResponseObject *self, PyObject *code, PyObject *text,
                          PyObject *body, PyObject *json, PyObject *mime_type,
                          PyObject *encoding, PyObject *headers,
                          PyObject *cookies)
{
    int n_content = (text != NULL && text != Py_None) +
                    (body != NULL && body != Py_None) +
                    (json != NULL && json != Py_None);
    if (n_content > 1) {
        PyErr_SetString(PyExc_TypeError,
                        "Response() takes only one of text=, body= and json=");
        return -1;
    }
    if (code != NULL && code != Py_None) {
        int c = resp_code_of(code);
        if (c < 0)
            return -1;
        self->code = c;
    }
    if (mime_type != NULL && mime_type != Py_None) {
        if (resp_check_mime(mime_type) < 0)
            return -1;
        Py_INCREF(mime_type);
        Py_XSETREF(self->content_type, mime_type);
    }
    if (headers != NULL && headers != Py_None) {
        if ((headers = resp_headers_of(headers)) == NULL)
            return -1;
        Py_XSETREF(self->headers, headers);
    }
    if (cookies != NULL && cookies != Py_None) {
        if (!PyDict_Check(cookies)) {
            PyErr_SetString(PyExc_TypeError,
                            "cookies must be a dict or an http.cookies.SimpleCookie");
            return -1;
        }
        Py_INCREF(cookies);
        Py_XSETREF(self->cookies, cookies);
    }
    if (text != NULL && text != Py_None) {
        if (!PyUnicode_Check(text)) {
            PyErr_Format(PyExc_TypeError, "text must be a str, not %.100s",
                         Py_TYPE(text)->tp_name);
            return -1;
        }
        if (encoding != NULL && encoding != Py_None) {
            const char *enc;
            if (!PyUnicode_Check(encoding)) {
                PyErr_SetString(PyExc_TypeError, "encoding must be a str");
                return -1;
            }
            enc = PyUnicode_AsUTF8(encoding);
            if (enc == NULL)
                return -1;
            if (strcmp(enc, "utf-8") != 0 && strcmp(enc, "utf8") != 0) {
                PyObject *b = PyUnicode_AsEncodedString(text, enc, "strict");
                if (b == NULL)
                    return -1;
                Py_XSETREF(self->body, b);
                self->kind = RESP_TEXT;
                return resp_label_charset(self, encoding);
            }
        }
        /* as .text = text: in the charset a mime_type given names */
        if (resp_set_body(self, text, NULL) < 0)
            return -1;
        if (encoding != NULL && encoding != Py_None)
            return resp_label_charset(self, encoding);
    } else if (body != NULL && body != Py_None) {
        if (PyBytes_Check(body)) {
            Py_INCREF(body);
        } else if (PyByteArray_Check(body) || PyMemoryView_Check(body)) {
            body = PyBytes_FromObject(body);
            if (body == NULL)
                return -1;
        } else {
            PyErr_Format(PyExc_TypeError, "body must be bytes, not %.100s",
                         Py_TYPE(body)->tp_name);
            return -1;
        }
        Py_XSETREF(self->body, body);
        self->kind = RESP_BODY;
        if (encoding == Py_None)
            encoding = NULL;
        if (encoding != NULL && !PyUnicode_Check(encoding)) {
            PyErr_SetString(PyExc_TypeError, "encoding must be a str");
            return -1;
        }
        if (encoding != NULL) {
            /* a label for bytes made elsewhere: one Python knows, as for text= */
            const char *enc = PyUnicode_AsUTF8(encoding);
            if (enc == NULL)
                return -1;
            if (!PyCodec_KnownEncoding(enc)) {
                PyErr_Format(PyExc_LookupError, "unknown encoding: %s", enc);
                return -1;
            }
        }
        return resp_label_charset(self, encoding);
    } else if (json != NULL && json != Py_None) {
        if (resp_set_json(self, json) < 0)
            return -1;
    }
    return 0;
}

/* stream= (an iterable or async iterable of bytes/str) or file= (a path) */
static int resp_init_stream(ResponseObject *self, PyObject *stream, PyObject *file)
{
    if (stream == Py_None)
        stream = NULL;
    if (file == Py_None)
        file = NULL;
    if (stream == NULL && file == NULL)
        return 0;
    if ((stream && file) || self->kind != RESP_EMPTY) {
        PyErr_SetString(PyExc_TypeError,
                        "Response() takes only one of text=, body=, json=, stream= and file=");
        return -1;
    }
    if (stream != NULL) {
        if (PyUnicode_Check(stream) || PyBytes_Check(stream) ||
            (!PyObject_HasAttrString(stream, "__aiter__") &&
             !PyObject_HasAttrString(stream, "__iter__"))) {
            PyErr_SetString(PyExc_TypeError,
                            "stream must be an iterable or async iterable of bytes or str");
            return -1;
        }
        self->kind = RESP_STREAM;
        Py_INCREF(stream);
        Py_XSETREF(self->stream, stream);
    } else {
        PyObject *path = PyOS_FSPath(file);
        if (path == NULL)
            return -1;
        self->kind = RESP_FILE;
        Py_XSETREF(self->stream, path);
    }
    return 0;
}

static const char *resp_kwnames[] = {"code", "text", "body", "json",
                                     "mime_type", "encoding", "headers",
                                     "cookies", "stream", "file", NULL};

/* A subclass's instance, with a plain Response's defaults: its __init__
 * (Response's, or the subclass's own, which may take other arguments and
 * call super().__init__(...)) makes the rest. */
static ResponseObject *resp_subclass_new(fulmen_state *st, PyTypeObject *type)
{
    ResponseObject *self = (ResponseObject *)PyType_GenericAlloc(type, 0);
    if (self == NULL)
        return NULL;
    self->st = st;
    self->code = 200;
    return self;
}

/* Response(code=200, text=None, body=None, json=None, mime_type=None,
 *          encoding='utf-8', headers=None, cookies=None, stream=None,
 *          file=None) as an instance of type (Response or a subclass). */
static PyObject *resp_build(fulmen_state *st, PyTypeObject *type, PyObject *const *args,
                            Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *vals[10];
    Py_ssize_t i, nkw;
    ResponseObject *self;
    if (nargs == 0 && kwnames != NULL && PyTuple_GET_SIZE(kwnames) == 1 &&
        type == st->ResponseType) {
        /* Response(text=...) and Response(json=...), the usual calls: what
         * resp_init_args does for them */
        PyObject *k = PyTuple_GET_ITEM(kwnames, 0);
        if (k == st->kw_response[1] && PyUnicode_Check(args[0])) {
            self = resp_alloc(st);
            if (self == NULL)
                return NULL;
            Py_INCREF(args[0]);
            self->body = args[0];
            self->kind = RESP_TEXT;
            return (PyObject *)self;
        }
        if (k == st->kw_response[3] && args[0] != Py_None) {
            self = resp_alloc(st);
            if (self == NULL)
                return NULL;
            if (resp_set_json(self, args[0]) < 0) {
                Py_DECREF(self);
                return NULL;
            }
            return (PyObject *)self;
        }
    }
    if (nargs > 8) {
        PyErr_SetString(PyExc_TypeError, "Response() takes at most 8 positional arguments");
        return NULL;
    }
    memset(vals, 0, sizeof(vals));
    for (i = 0; i < nargs; i++)
        vals[i] = args[i];
    if (nargs >= 1 && (PyUnicode_Check(args[0]) ||
                       (args[0] == Py_None && nargs >= 2 && PyLong_Check(args[1])))) {
        /* Japronto's positional order is (text, code, body, ...): a str
         * (or None, before an int) first is the text, and the code (if
         * any) follows it */
        vals[0] = nargs >= 2 ? args[1] : NULL;
        vals[1] = args[0];
    }
    nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (i = 0; i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        int j;
        for (j = 0; j < 10; j++)
            if (k == st->kw_response[j])
                break;
        if (j == 10)
            for (j = 0; resp_kwnames[j]; j++)
                if (PyUnicode_CompareWithASCIIString(k, resp_kwnames[j]) == 0)
                    break;
        if (resp_kwnames[j] == NULL) {
            PyErr_Format(PyExc_TypeError,
                         "Response() got an unexpected keyword argument '%U'", k);
            return NULL;
        }
        if (vals[j] != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "Response() got multiple values for argument '%U'", k);
            return NULL;
        }
        vals[j] = args[nargs + i];
    }
    self = type == st->ResponseType ? resp_alloc(st) : resp_subclass_new(st, type);
    if (self == NULL)
        return NULL;
    if (resp_init_args(self, vals[0], vals[1], vals[2], vals[3], vals[4],
                       vals[5], vals[6], vals[7]) < 0 ||
        (UNLIKELY(vals[8] != NULL || vals[9] != NULL) &&
         resp_init_stream(self, vals[8], vals[9]) < 0)) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyObject *resp_vectorcall(PyObject *type, PyObject *const *args,
                                 size_t nargsf, PyObject *kwnames)
{
    /* the exact type carries its module; a subclass looks it up */
    fulmen_state *st = ((PyHeapTypeObject *)type)->ht_module
        ? PyModule_GetState(((PyHeapTypeObject *)type)->ht_module)
        : mod_state_of_type((PyTypeObject *)type);
    if (st == NULL)
        return NULL;
    return resp_build(st, (PyTypeObject *)type, args, PyVectorcall_NARGS(nargsf), kwnames);
}

PyObject *resp_make(fulmen_state *st, PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames)
{
    return resp_build(st, st->ResponseType, args, nargs, kwnames);
}

static PyObject *resp_tp_new(PyTypeObject *type, PyObject *args, PyObject *kw);

/* Response.__init__(*args, **kw): the response made again from these
 * arguments, as Response(...) makes one (the exact type's calls do not
 * come here: resp_vectorcall builds them at once).  Its own attributes
 * (__dict__) stay. */
static int resp_tp_init(ResponseObject *self, PyObject *args, PyObject *kw)
{
    ResponseObject *fresh, tmp;
    size_t off = offsetof(ResponseObject, code);
    PyObject *dict = self->dict;
    fresh = (ResponseObject *)resp_tp_new(self->st->ResponseType, args, kw);
    if (fresh == NULL)
        return -1;
    /* swap everything after the head and st: fresh takes the old fields
     * away with it; then the __dict__s go back */
    memcpy((char *)&tmp + off, (char *)self + off, sizeof(tmp) - off);
    memcpy((char *)self + off, (char *)fresh + off, sizeof(tmp) - off);
    memcpy((char *)fresh + off, (char *)&tmp + off, sizeof(tmp) - off);
    fresh->dict = self->dict;
    self->dict = dict;
    Py_DECREF(fresh);
    return 0;
}

static PyObject *resp_tp_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PyObject *kwnames = NULL, *res = NULL;
    PyObject *stack[16];
    Py_ssize_t nargs = PyTuple_GET_SIZE(args), nkw = kw ? PyDict_GET_SIZE(kw) : 0;
    Py_ssize_t i = 0, pos = 0;
    PyObject *k, *v;
    fulmen_state *st = mod_state_of_type(type);
    if (st == NULL)
        return NULL;
    if (type != st->ResponseType)
        return (PyObject *)resp_subclass_new(st, type); /* its __init__ takes the arguments */
    if (nargs + nkw > 16) {
        PyErr_SetString(PyExc_TypeError, "Response() takes at most 8 arguments");
        return NULL;
    }
    for (i = 0; i < nargs; i++)
        stack[i] = PyTuple_GET_ITEM(args, i);
    if (nkw) {
        kwnames = PyTuple_New(nkw);
        if (kwnames == NULL)
            return NULL;
        i = 0;
        while (PyDict_Next(kw, &pos, &k, &v)) {
            Py_INCREF(k);
            PyTuple_SET_ITEM(kwnames, i, k);
            stack[nargs + i] = v;
            i++;
        }
    }
    res = resp_vectorcall((PyObject *)type, stack, (size_t)nargs, kwnames);
    Py_XDECREF(kwnames);
    return res;
}

PyObject *resp_new_simple(fulmen_state *st, int code, const char *text,
                          PyObject *extra_headers)
{
    ResponseObject *r = resp_alloc(st);
    if (r == NULL)
        return NULL;
    r->code = code;
    if (text != NULL) {
        r->body = PyUnicode_FromString(text);
        if (r->body == NULL) {
            Py_DECREF(r);
            return NULL;
        }
        r->kind = RESP_TEXT;
    }
    if (extra_headers != NULL) {
        Py_INCREF(extra_headers);
        r->headers = extra_headers;
    }
    return (PyObject *)r;
}

static int resp_traverse(ResponseObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->body);
    Py_VISIT(self->content_type);
    Py_VISIT(self->headers);
    Py_VISIT(self->cookies);
    Py_VISIT(self->stream);
    Py_VISIT(self->dict);
    return 0;
}

static int resp_clear(ResponseObject *self)
{
    resp_clear_fields(self);
    return 0;
}

static void resp_dealloc(ResponseObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    resp_clear_fields(self);
    PyMem_Free(self->jbuf);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* ---- attributes: mutable until written ---- */

static PyObject *resp_get_body(ResponseObject *self, void *c)
{
    if (self->kind == RESP_JSON)
        return PyBytes_FromStringAndSize(self->jbuf, (Py_ssize_t)self->jlen);
    if (self->body == NULL)
        return PyBytes_FromStringAndSize("", 0);
    if (PyUnicode_Check(self->body))
        return PyUnicode_AsUTF8String(self->body);
    Py_INCREF(self->body);
    return self->body;
}

/* The charset the response's Content-Type names when that is not UTF-8,
 * NUL-terminated in buf[RESP_CHARSET_CAP] (a Response(encoding=) or a
 * mime_type with one): 1; 0 for none, UTF-8, or a name too long for a
 * codec's; -1 with an exception. */
#define RESP_CHARSET_CAP 64
static int resp_charset(ResponseObject *self, char *buf)
{
    const char *t, *cs;
    Py_ssize_t tl;
    size_t mtl, csl;
    if (self->content_type == NULL)
        return 0;
    if ((t = mod_utf8(self->content_type, &tl)) == NULL)
        return -1;
    mod_content_type(t, (size_t)tl, &mtl, &cs, &csl);
    if (cs == NULL || csl == 0 || csl >= RESP_CHARSET_CAP || resp_is_utf8(cs, csl))
        return 0;
    memcpy(buf, cs, csl);
    buf[csl] = 0;
    return 1;
}

/* .body = v; a str is kept to be sent as UTF-8, or encoded now with the
 * charset the type names (the bytes must be what the label says). */
static int resp_set_body(ResponseObject *self, PyObject *v, void *c)
{
    char cs[RESP_CHARSET_CAP];
    int rc;
    if (v == NULL || v == Py_None) {
        Py_CLEAR(self->body);
        self->kind = RESP_EMPTY;
        return 0;
    }
    if (PyUnicode_Check(v)) {
        if ((rc = resp_charset(self, cs)) < 0)
            return -1;
        v = rc == 1 ? PyUnicode_AsEncodedString(v, cs, "strict") : Py_NewRef(v);
        if (v == NULL)
            return -1;
        self->kind = RESP_TEXT;
    } else if (PyBytes_Check(v)) {
        if (self->kind != RESP_TEXT)
            self->kind = RESP_BODY;
        Py_INCREF(v);
    } else {
        PyErr_SetString(PyExc_TypeError, "body must be bytes or str");
        return -1;
    }
    Py_XSETREF(self->body, v);
    self->jlen = 0;
    return 0;
}

/* .text: a str body as it is; bytes decoded with the charset the type
 * names (UTF-8 by default, and always for JSON), bad bytes replaced */
static PyObject *resp_get_text(ResponseObject *self, void *c)
{
    char cs[RESP_CHARSET_CAP];
    int rc;
    if (self->body != NULL && PyUnicode_Check(self->body)) {
        Py_INCREF(self->body);
        return self->body;
    }
    if (self->kind == RESP_JSON)
        return PyUnicode_DecodeUTF8(self->jbuf, (Py_ssize_t)self->jlen, "replace");
    if (self->body == NULL)
        return PyUnicode_FromString("");
    if ((rc = resp_charset(self, cs)) < 0)
        return NULL;
    return PyUnicode_Decode(PyBytes_AS_STRING(self->body), PyBytes_GET_SIZE(self->body),
                            rc == 1 ? cs : "utf-8", "replace");
}

static int resp_set_text(ResponseObject *self, PyObject *v, void *c)
{
    if (v != NULL && !PyUnicode_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "text must be a str");
        return -1;
    }
    return resp_set_body(self, v, c);
}

static PyObject *resp_get_code(ResponseObject *self, void *c)
{
    return PyLong_FromLong(self->code);
}

static int resp_set_code(ResponseObject *self, PyObject *v, void *c)
{
    int x;
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete code");
        return -1;
    }
    if ((x = resp_code_of(v)) < 0)
        return -1;
    self->code = x;
    return 0;
}

static PyObject *resp_get_headers(ResponseObject *self, void *c)
{
    if (self->headers == NULL) {
        self->headers = PyDict_New();
        if (self->headers == NULL)
            return NULL;
    }
    Py_INCREF(self->headers);
    return self->headers;
}

static int resp_set_headers(ResponseObject *self, PyObject *v, void *c)
{
    if (v == Py_None)
        v = NULL;
    if (v != NULL && (v = resp_headers_of(v)) == NULL)
        return -1;
    Py_XSETREF(self->headers, v);
    return 0;
}

static PyObject *resp_get_cookies(ResponseObject *self, void *c)
{
    if (self->cookies == NULL && (self->cookies = PyDict_New()) == NULL)
        return NULL;
    Py_INCREF(self->cookies);
    return self->cookies;
}

static int resp_set_cookies(ResponseObject *self, PyObject *v, void *c)
{
    if (v != NULL && v != Py_None && !PyDict_Check(v)) {
        PyErr_SetString(PyExc_TypeError,
                        "cookies must be a dict or an http.cookies.SimpleCookie");
        return -1;
    }
    if (v == Py_None)
        v = NULL;
    Py_XINCREF(v);
    Py_XSETREF(self->cookies, v);
    return 0;
}

static int resp_put_header(fulmen_state *st, PyObject *k, PyObject *v, int *seen,
                           uint64_t *length);

/* Set-Cookie headers, rendered by fulmen.app._render_cookies (cold path). */
static int resp_put_cookies(fulmen_state *st, PyObject *cookies)
{
    PyObject *mod = NULL, *fn = NULL, *lst = NULL, *name = NULL;
    Py_ssize_t i;
    int rc = -1, seen = 0;
    mod = PyImport_ImportModule("fulmen.app");
    if (mod == NULL)
        goto done;
    fn = PyObject_GetAttrString(mod, "_render_cookies");
    if (fn == NULL)
        goto done;
    lst = PyObject_CallOneArg(fn, cookies);
    if (lst == NULL)
        goto done;
    Py_SETREF(lst, PySequence_Fast(lst, "cookies must render to a list"));
    if (lst == NULL)
        goto done;
    name = PyUnicode_FromString("Set-Cookie");
    if (name == NULL)
        goto done;
    for (i = 0; i < PySequence_Fast_GET_SIZE(lst); i++) {
        rc = resp_put_header(st, name, PySequence_Fast_GET_ITEM(lst, i), &seen, NULL);
        if (rc < 0)
            goto done;
    }
    rc = 0;
done:
    Py_XDECREF(mod);
    Py_XDECREF(fn);
    Py_XDECREF(lst);
    Py_XDECREF(name);
    return rc;
}

static PyObject *resp_get_mime(ResponseObject *self, void *c)
{
    const char *d;
    if (self->content_type) {
        Py_INCREF(self->content_type);
        return self->content_type;
    }
    if (self->kind == RESP_FILE || self->kind == RESP_STREAM)
        Py_RETURN_NONE; /* decided when it is sent */
    d = self->kind == RESP_TEXT ? "text/plain"
        : self->kind == RESP_JSON ? "application/json"
        : self->kind == RESP_BODY ? "application/octet-stream" : "text/plain";
    return PyUnicode_FromString(d);
}

static int resp_set_mime(ResponseObject *self, PyObject *v, void *c)
{
    if (v != NULL && v != Py_None && resp_check_mime(v) < 0)
        return -1;
    if (v == Py_None)
        v = NULL;
    Py_XINCREF(v);
    Py_XSETREF(self->content_type, v);
    return 0;
}

static PyObject *resp_get_json(ResponseObject *self, void *c)
{
    PyObject *mod, *res, *body = resp_get_body(self, c);
    if (body == NULL)
        return NULL;
    mod = PyImport_ImportModule("json");
    if (mod == NULL) {
        Py_DECREF(body);
        return NULL;
    }
    res = PyObject_CallMethod(mod, "loads", "O", body);
    Py_DECREF(mod);
    Py_DECREF(body);
    return res;
}

static PyObject *resp_repr(ResponseObject *self)
{
    return PyUnicode_FromFormat("<Response %d>", self->code);
}

static PyObject *resp_get_file(ResponseObject *self, void *c)
{
    PyObject *o = self->kind == RESP_FILE ? self->stream : Py_None;
    Py_INCREF(o);
    return o;
}

static PyObject *resp_get_stream(ResponseObject *self, void *c)
{
    PyObject *o = self->kind == RESP_STREAM ? self->stream : Py_None;
    Py_INCREF(o);
    return o;
}

static PyGetSetDef resp_getset[] = {
    {"file", (getter)resp_get_file, NULL, "the path of a file response, or None", NULL},
    {"stream", (getter)resp_get_stream, NULL, "the iterable of a streamed response, or None", NULL},
    {"code", (getter)resp_get_code, (setter)resp_set_code, "status code", NULL},
    {"status_code", (getter)resp_get_code, (setter)resp_set_code, "status code", NULL},
    {"body", (getter)resp_get_body, (setter)resp_set_body, "body bytes", NULL},
    {"text", (getter)resp_get_text, (setter)resp_set_text, "body as str", NULL},
    {"json", (getter)resp_get_json, NULL, "body parsed as JSON", NULL},
    {"headers", (getter)resp_get_headers, (setter)resp_set_headers, "extra headers", NULL},
    {"mime_type", (getter)resp_get_mime, (setter)resp_set_mime, "media type", NULL},
    {"cookies", (getter)resp_get_cookies, (setter)resp_set_cookies, "cookies to set", NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

static PyMemberDef resp_members[] = {
    {"__dictoffset__", T_PYSSIZET, offsetof(ResponseObject, dict), READONLY},
    {NULL},
};

static PyType_Slot resp_slots[] = {
    {Py_tp_new, resp_tp_new},
    {Py_tp_init, resp_tp_init},
    {Py_tp_dealloc, resp_dealloc},
    {Py_tp_traverse, resp_traverse},
    {Py_tp_clear, resp_clear},
    {Py_tp_getset, resp_getset},
    {Py_tp_members, resp_members},
    {Py_tp_repr, resp_repr},
    {Py_tp_doc, "Response(code=200, text=None, body=None, json=None, "
                "mime_type=None, encoding='utf-8', headers=None, cookies=None)"},
    {0, NULL},
};

PyType_Spec resp_spec = {
    .name = "fulmen.Response",
    .basicsize = sizeof(ResponseObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = resp_slots,
};

/* ========================================================================
 * Wire form
 */

/* A header name must be a token; a value must hold no control character
 * but HTAB (RFC 9110 5.5: CR, LF and NUL would split or cut the head, the
 * others make it invalid). */
static int resp_header_safe(const char *n, Py_ssize_t nl, const char *v,
                            Py_ssize_t vl)
{
    static const char *tchar = "!#$%&'*+-.^_`|~";
    Py_ssize_t i;
    if (nl == 0)
        return 0;
    for (i = 0; i < nl; i++) {
        unsigned char ch = (unsigned char)n[i];
        if (!((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') ||
              (ch && strchr(tchar, ch))))
            return 0;
    }
    for (i = 0; i < vl; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7F)
            return 0;
    }
    return 1;
}

static int resp_ieq(const char *a, Py_ssize_t al, const char *lower_b)
{
    Py_ssize_t i;
    for (i = 0; i < al; i++) {
        if (lower_b[i] == 0 || ((unsigned char)a[i] | 0x20) != (unsigned char)lower_b[i])
            return 0;
    }
    return lower_b[al] == 0;
}

static const char *resp_str_utf8(PyObject *o, Py_ssize_t *n)
{
    if (PyUnicode_Check(o))
        return mod_utf8(o, n);
    if (PyBytes_Check(o)) {
        *n = PyBytes_GET_SIZE(o);
        return PyBytes_AS_STRING(o);
    }
    PyErr_Format(PyExc_TypeError, "header names and values must be str, not %.100s",
                 Py_TYPE(o)->tp_name);
    return NULL;
}

/* k: v is a Connection header with the "close" option (RFC 9112 9.6). */
static int resp_is_close(PyObject *k, PyObject *v)
{
    Py_ssize_t nl, vl;
    const char *n, *s;
    if (!PyUnicode_Check(k) || !PyUnicode_Check(v) ||
        (n = PyUnicode_AsUTF8AndSize(k, &nl)) == NULL || !resp_ieq(n, nl, "connection") ||
        (s = PyUnicode_AsUTF8AndSize(v, &vl)) == NULL) {
        PyErr_Clear(); /* (not UTF-8: not sent either) */
        return 0;
    }
    return mod_list_has(s, (size_t)vl, "close", 5, 1);
}

/* The app's headers on r say "Connection: close": the connection ends
 * after this answer (which says so), as the app asked.  Otherwise the
 * server's own Connection header stands and the app's is dropped. */
int resp_asks_close(PyObject *resp)
{
    PyObject *h = ((ResponseObject *)resp)->headers, *k, *v;
    Py_ssize_t pos = 0, i;
    if (h == NULL)
        return 0;
    if (PyDict_Check(h)) {
        while (PyDict_Next(h, &pos, &k, &v))
            if (resp_is_close(k, v))
                return 1;
    } else if (PyList_Check(h) || PyTuple_Check(h)) {
        for (i = 0; i < PySequence_Fast_GET_SIZE(h); i++) {
            PyObject *p = PySequence_Fast_GET_ITEM(h, i);
            if ((PyTuple_Check(p) || PyList_Check(p)) && PySequence_Fast_GET_SIZE(p) == 2 &&
                resp_is_close(PySequence_Fast_GET_ITEM(p, 0), PySequence_Fast_GET_ITEM(p, 1)))
                return 1;
        }
    }
    return 0;
}

#define RESP_SEEN_CT 1      /* the app set Content-Type */
#define RESP_SEEN_CL 2      /* the app set Content-Length (kept: streams) */
#define RESP_ALLOW_CL 4     /* in: a streamed body may carry the app's length */
#define RESP_SEEN_SERVER 8  /* the app set Server (it replaces ours) */

/* Emit one user header; returns 0, -1 (exception) or -2 (unsafe).  *seen
 * collects RESP_SEEN_* and may carry RESP_ALLOW_CL in; the value of a
 * Content-Length it keeps goes to *length (not NULL with RESP_ALLOW_CL). */
static int resp_put_header(fulmen_state *st, PyObject *k, PyObject *v, int *seen,
                           uint64_t *length)
{
    Py_ssize_t nl, vl;
    const char *n, *val;
    PyObject *vs = NULL;
    int rc = -1;
    /* k and v are borrowed from the app's dict or list, which a value's
     * __str__ may change: held while n points into k */
    Py_INCREF(k);
    Py_INCREF(v);
    n = resp_str_utf8(k, &nl);
    if (n == NULL)
        goto done;
    if (!PyUnicode_Check(v) && !PyBytes_Check(v)) {
        /* bytes-like values go out as bytes do, not as their repr() */
        vs = PyByteArray_Check(v) || PyMemoryView_Check(v) ? PyBytes_FromObject(v)
                                                           : PyObject_Str(v);
        if (vs == NULL)
            goto done;
    }
    val = resp_str_utf8(vs != NULL ? vs : v, &vl);
    if (val == NULL)
        goto done;
    if (!resp_header_safe(n, nl, val, vl)) {
        Py_XSETREF(st->bad_header, Py_NewRef(k));
        rc = -2;
        goto done;
    }
    /* the value goes out without the spaces and tabs around it (RFC 9110
     * 5.5: they are not part of it, and a recipient strips them anyway) */
    while (vl > 0 && (val[0] == ' ' || val[0] == '\t'))
        val++, vl--;
    while (vl > 0 && (val[vl - 1] == ' ' || val[vl - 1] == '\t'))
        vl--;
    /* framing is ours: the app cannot set it (but a stream may say its
     * length, which must then be a plain decimal: the app's mistake is a
     * 500 before anything goes, not a body framed some other way) */
    if (resp_ieq(n, nl, "content-length")) {
        Py_ssize_t i;
        uint64_t len = 0;
        rc = 0;
        if (!(*seen & RESP_ALLOW_CL))
            goto done;
        for (i = 0; i < vl && i < 18 && val[i] >= '0' && val[i] <= '9'; i++)
            len = len * 10 + (uint64_t)(val[i] - '0');
        if (vl == 0 || i < vl) {
            PyErr_Format(PyExc_ValueError, "a stream's Content-Length must be a number of "
                         "bytes (at most 18 digits), not %R", v);
            rc = -1;
            goto done;
        }
        if (*seen & RESP_SEEN_CL) {
            if (len != *length) {
                PyErr_Format(PyExc_ValueError, "a stream has two different Content-Length "
                             "values (%llu and %R)", (unsigned long long)*length, v);
                rc = -1;
            }
            goto done; /* (the same value twice goes once) */
        }
        *seen |= RESP_SEEN_CL;
        *length = len;
    } else if (resp_ieq(n, nl, "transfer-encoding") || resp_ieq(n, nl, "connection") ||
               resp_ieq(n, nl, "date")) {
        /* (Date is one value, the server's clock: RFC 9110 6.6.1) */
        rc = 0;
        goto done;
    } else if (resp_ieq(n, nl, "server")) {
        *seen |= RESP_SEEN_SERVER;
    }
    if (resp_ieq(n, nl, "content-type"))
        *seen |= RESP_SEEN_CT;
    if (mod_out_reserve(st, (size_t)(nl + vl + 4)) < 0)
        goto done;
    memcpy(st->out + st->out_len, n, (size_t)nl);
    st->out_len += (size_t)nl;
    memcpy(st->out + st->out_len, ": ", 2);
    st->out_len += 2;
    memcpy(st->out + st->out_len, val, (size_t)vl);
    st->out_len += (size_t)vl;
    memcpy(st->out + st->out_len, "\r\n", 2);
    st->out_len += 2;
    rc = 0;
done:
    Py_XDECREF(vs);
    Py_DECREF(k);
    Py_DECREF(v);
    return rc;
}

static int resp_put_status(fulmen_state *st, int code)
{
    char line[64];
    const char *reason = resp_reason(code);
    int n;
    if (code == 200)
        return mod_out_put(st, "HTTP/1.1 200 OK\r\n", 17);
    n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", code,
                 reason ? reason : "Unknown");
    return mod_out_put(st, line, (size_t)n);
}

static int resp_put_common(fulmen_state *st)
{
    char *o;
    if (mod_out_reserve(st, 64) < 0)
        return -1;
    o = st->out + st->out_len;
    memcpy(o, "Server: fulmen\r\nDate: ", 22);
    memcpy(o + 22, st->date, 29);
    memcpy(o + 51, "\r\n", 2);
    st->out_len += 53;
    return 0;
}

static int resp_put_digits_end(fulmen_state *st, size_t n, int conn_hdr);

/* "Content-Length: N\r\n", the Connection header if any, and the blank
 * line that ends the head. */
static int resp_put_length(fulmen_state *st, size_t n, int conn_hdr)
{
    if (mod_out_put(st, "Content-Length: ", 16) < 0)
        return -1;
    return resp_put_digits_end(st, n, conn_hdr);
}

/* N, CRLF, the Connection header if any, and the blank line. */
static int resp_put_digits_end(fulmen_state *st, size_t n, int conn_hdr)
{
    /* the digits end at digits + 24; 16 bytes are copied from the first
     * (fixed-size moves), of which the literal below overwrites the extra */
    char digits[40], *d = mod_utoa_rev(digits + 24, n), *o;
    size_t nd = (size_t)(digits + 24 - d);
    if (mod_out_reserve(st, 24 + 30) < 0)
        return -1;
    o = st->out + st->out_len;
    if (LIKELY(nd <= 16))
        memcpy(o, d, 16);
    else
        memcpy(o, d, nd);
    o += nd;
#define RESP_LIT(lit) (memcpy(o, lit, sizeof(lit) - 1), o += sizeof(lit) - 1)
    if (conn_hdr == 1)
        RESP_LIT("\r\nConnection: close\r\n\r\n");
    else if (conn_hdr == 2)
        RESP_LIT("\r\nConnection: keep-alive\r\n\r\n");
    else
        RESP_LIT("\r\n\r\n");
#undef RESP_LIT
    st->out_len = (size_t)(o - st->out);
    return 0;
}

static int resp_put_conn_end(fulmen_state *st, int conn_hdr);

int resp_serialize_status(fulmen_state *st, int code, const char *text,
                          int head_only, int conn_hdr, const char *extra_hdrs)
{
    size_t tl = text ? strlen(text) : 0;
    if (resp_put_status(st, code) < 0 || resp_put_common(st) < 0)
        return -1;
    if (extra_hdrs && mod_out_put(st, extra_hdrs, strlen(extra_hdrs)) < 0)
        return -1;
    if (mod_out_put(st, "Content-Type: text/plain; charset=utf-8\r\n", 41) < 0)
        return -1;
    if (head_only) /* as resp_serialize: no length, no body */
        return resp_put_conn_end(st, conn_hdr);
    if (resp_put_length(st, tl, conn_hdr) < 0)
        return -1;
    return mod_out_put(st, text, tl);
}

/* Status line, Server, Date, the app's headers and cookies, Content-Type.
 * *seen carries RESP_ALLOW_CL in and RESP_SEEN_* out, *length (may be NULL)
 * the app's Content-Length when RESP_SEEN_CL.  Returns 0, -1 or -2 (unsafe
 * header); on failure the caller rewinds st->out.
 * (A 1xx never gets here: Response refuses one, see RESP_CODE_WHY.) */
static int resp_put_head_now(fulmen_state *st, ResponseObject *r, int *seen,
                             uint64_t *length);

/* The head of r; the app's code it runs meanwhile (a header value's
 * str(), the cookies) sees st->out_busy.  That code may replace the body,
 * which is read after; a code or a kind of body (a stream, a file) it
 * changes would no longer match the status line and framing: an error. */
static int resp_put_head(fulmen_state *st, ResponseObject *r, int *seen, uint64_t *length)
{
    int rc, code = r->code, streamed = r->kind >= RESP_STREAM;
    st->out_busy++;
    rc = resp_put_head_now(st, r, seen, length);
    st->out_busy--;
    if (rc == 0 && (r->code != code || (r->kind >= RESP_STREAM) != streamed)) {
        PyErr_SetString(PyExc_RuntimeError, "the response's code or kind of body was "
                        "changed while its head was written (by a header value's str()?)");
        rc = -1;
    }
    return rc;
}

static int resp_put_head_now(fulmen_state *st, ResponseObject *r, int *seen,
                             uint64_t *length)
{
    int rc;
    size_t common;
    if (resp_put_status(st, r->code) < 0)
        return -1;
    common = st->out_len;
    if (resp_put_common(st) < 0)
        return -1;
    if (r->headers != NULL) {
        /* held: a value's str() may set r->headers to something else */
        PyObject *h = Py_NewRef(r->headers);
        rc = 0;
        if (PyDict_Check(h)) {
            Py_ssize_t pos = 0;
            PyObject *k, *v;
            while (rc == 0 && PyDict_Next(h, &pos, &k, &v))
                rc = resp_put_header(st, k, v, seen, length);
        } else {
            PyObject *seq = PySequence_Fast(h, "headers must be a dict or a list of pairs");
            Py_ssize_t i;
            if (seq == NULL)
                rc = -1;
            for (i = 0; rc == 0 && i < PySequence_Fast_GET_SIZE(seq); i++) {
                PyObject *pair = PySequence_Fast_GET_ITEM(seq, i);
                if (!((PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2) ||
                      (PyList_Check(pair) && PyList_GET_SIZE(pair) == 2))) {
                    PyErr_SetString(PyExc_TypeError, "each header must be a (name, value) pair");
                    rc = -1;
                } else {
                    rc = resp_put_header(st, PySequence_Fast_GET_ITEM(pair, 0),
                                         PySequence_Fast_GET_ITEM(pair, 1), seen, length);
                }
            }
            Py_XDECREF(seq);
        }
        Py_DECREF(h);
        if (rc < 0)
            return rc;
    }
    if (UNLIKELY(*seen & RESP_SEEN_SERVER)) {
        /* the app's Server replaces ours, resp_put_common's first line */
        static const size_t ours = sizeof("Server: fulmen\r\n") - 1;
        memmove(st->out + common, st->out + common + ours, st->out_len - common - ours);
        st->out_len -= ours;
    }
    if (r->cookies != NULL && PyDict_GET_SIZE(r->cookies) > 0 &&
        (rc = resp_put_cookies(st, r->cookies)) < 0)
        return rc;
    if (*seen & RESP_SEEN_CT)
        return 0;
    if (r->content_type != NULL) {
        Py_ssize_t cl;
        const char *ct = mod_utf8(r->content_type, &cl);
        if (ct == NULL)
            return -1;
        if (!resp_header_safe("a", 1, ct, cl)) {
            Py_XSETREF(st->bad_header, PyUnicode_FromString("Content-Type"));
            return -2;
        }
        if (mod_out_put(st, "Content-Type: ", 14) < 0 ||
            mod_out_put(st, ct, (size_t)cl) < 0)
            return -1;
        /* text still a str (sent as UTF-8), not bytes in its encoding= */
        if (r->kind == RESP_TEXT && (r->body == NULL || PyUnicode_Check(r->body)) &&
            memchr(ct, ';', (size_t)cl) == NULL &&
            cl >= 5 && memcmp(ct, "text/", 5) == 0 &&
            mod_out_put(st, "; charset=utf-8", 15) < 0)
            return -1;
        return mod_out_put(st, "\r\n", 2);
    }
    if (r->code == 204 || r->code == 304)
        return 0; /* no content, no type (a 304's would replace a cache's, RFC 9111 4.3.4) */
    if (r->kind == RESP_TEXT || r->kind == RESP_EMPTY)
        return mod_out_put(st, "Content-Type: text/plain; charset=utf-8\r\n", 41);
    if (r->kind == RESP_JSON)
        return mod_out_put(st, "Content-Type: application/json\r\n", 32);
    return mod_out_put(st, "Content-Type: application/octet-stream\r\n", 40);
}

static int resp_put_conn_end(fulmen_state *st, int conn_hdr)
{
    const char *ch = conn_hdr == 1 ? "Connection: close\r\n\r\n"
                     : conn_hdr == 2 ? "Connection: keep-alive\r\n\r\n" : "\r\n";
    return mod_out_put(st, ch, strlen(ch));
}

/* r's body as it stands: *body and *blen, and *bobj the bytes object it
 * is in (NULL for text and JSON).  0, or -1 with an exception. */
INLINE int resp_body_of(ResponseObject *r, const char **body, Py_ssize_t *blen,
                        PyObject **bobj)
{
    *body = NULL;
    *blen = 0;
    *bobj = NULL;
    if (r->kind == RESP_JSON) {
        *body = r->jbuf;
        *blen = (Py_ssize_t)r->jlen;
    } else if (r->body != NULL) {
        if (PyUnicode_Check(r->body)) {
            *body = mod_utf8(r->body, blen);
            if (*body == NULL)
                return -1;
        } else {
            *body = PyBytes_AS_STRING(r->body);
            *blen = PyBytes_GET_SIZE(r->body);
            *bobj = r->body;
        }
    }
    return 0;
}

int resp_serialize(fulmen_state *st, PyObject *obj, int head_only, int conn_hdr)
{
    ResponseObject *r = (ResponseObject *)obj;
    size_t mark = st->out_len;
    const char *body;
    Py_ssize_t blen;
    PyObject *bobj;
    int seen = 0, rc;

    if (LIKELY(r->code == 200 && r->headers == NULL && r->cookies == NULL &&
               r->content_type == NULL && !head_only && r->kind <= RESP_JSON)) {
        /* the common case: one copy of a head cached with the date */
        int k = r->kind;
        if (resp_body_of(r, &body, &blen, &bobj) < 0)
            return -1;
        /* a copy of fixed size: gcc turns one of variable size into
         * `rep movsq`, which costs more than the rest of this function */
        if (mod_out_reserve(st, sizeof(st->pfx[k])) < 0)
            goto error;
        memcpy(st->out + st->out_len, st->pfx[k], sizeof(st->pfx[k]));
        if (LIKELY(st->pfx_body_len[k] == (int64_t)blen && conn_hdr == 0)) {
            /* the same length as last time: the whole head was copied */
            st->out_len += st->pfx_full_len[k];
        } else {
            size_t at = st->out_len + st->pfx_len[k];
            st->out_len = at;
            if (resp_put_digits_end(st, (size_t)blen, conn_hdr) < 0)
                goto error;
            if (conn_hdr == 0 && st->out_len - at <= sizeof(st->pfx[k]) - st->pfx_len[k]) {
                memcpy(st->pfx[k] + st->pfx_len[k], st->out + at, st->out_len - at);
                st->pfx_full_len[k] = (uint8_t)(st->pfx_len[k] + (st->out_len - at));
                st->pfx_body_len[k] = (int64_t)blen;
            }
        }
        if (blen > 0 && mod_out_body(st, bobj, body, (size_t)blen) < 0)
            goto error;
        return 0;
    }
    rc = resp_put_head(st, r, &seen, NULL);
    if (rc < 0) {
        st->out_len = mark;
        return rc;
    }
    /* the body as it is now: writing the head ran the app's code (a
     * header value's str(), the cookies), which may have replaced it */
    if (resp_body_of(r, &body, &blen, &bobj) < 0)
        goto error;
    /* HEAD: no body, and no Content-Length either (RFC 9110 8.6 makes it
     * optional there): a HEAD answer then frames the same for every reader,
     * including clients and test tools that read it like a GET answer (the
     * conformance corpus replay does).  File answers keep theirs (streams.py,
     * and files.c's head_length): the size is what a HEAD for a file is
     * usually asked for. */
    if (r->code < 200 || r->code == 204 || r->code == 304 || (head_only && !r->head_length)) {
        if (resp_put_conn_end(st, conn_hdr) < 0)
            goto error;
        return 0;
    }
    if (UNLIKELY(r->code == 205))
        blen = 0; /* no content, said with a length of 0 (RFC 9110 15.3.6) */
    if (resp_put_length(st, (size_t)blen, conn_hdr) < 0)
        goto error;
    if (blen > 0 && !head_only && mod_out_body(st, bobj, body, (size_t)blen) < 0)
        goto error;
    return 0;
error:
    st->out_len = mark;
    return -1;
}

int resp_serialize_stream_head(fulmen_state *st, PyObject *obj, int conn_hdr,
                               int chunked_ok, uint64_t *length)
{
    ResponseObject *r = (ResponseObject *)obj;
    size_t mark = st->out_len;
    /* 204 and 304 have no content (RFC 9110 6.4.1): no framing at all,
     * neither the app's Content-Length nor chunked (RFC 9112 6.1).  A 1xx
     * never gets that far: resp_put_head refuses it. */
    int no_content = r->code == 204 || r->code == 304 || r->code == 205;
    int seen = no_content ? 0 : RESP_ALLOW_CL, rc, frame;
    *length = 0;
    rc = resp_put_head(st, r, &seen, length);
    if (rc < 0) {
        st->out_len = mark;
        return rc;
    }
    if (no_content) {
        frame = RESP_FRAME_NONE;
        /* 205 has no content either, but says so (RFC 9110 15.3.6) */
        if (r->code == 205 && mod_out_put(st, "Content-Length: 0\r\n", 19) < 0)
            goto error;
    } else if (seen & RESP_SEEN_CL) {
        frame = RESP_FRAME_LENGTH;
    } else if (chunked_ok) {
        frame = RESP_FRAME_CHUNKED;
        if (mod_out_put(st, "Transfer-Encoding: chunked\r\n", 28) < 0)
            goto error;
    } else {
        /* HTTP/1.0 and no length: the body ends when the connection does */
        frame = RESP_FRAME_CLOSE;
        conn_hdr = 1;
    }
    if (resp_put_conn_end(st, conn_hdr) < 0)
        goto error;
    return frame;
error:
    st->out_len = mark;
    return -1;
}

void resp_release(fulmen_state *st, PyObject *r)
{
    if (Py_TYPE(r) == st->ResponseType)
        resp_recycle((ResponseObject *)r);
    else
        Py_DECREF(r);
}

/* Called once after the type is created: calls of the type go through
 * resp_vectorcall, which skips tuple and dict packing. */
void resp_type_ready(PyTypeObject *tp)
{
    tp->tp_vectorcall = resp_vectorcall;
}
