/*
 * files.c - files answered in C, for the usual request.
 *
 * Two ways in, one answer.  StaticFiles(root, fallback) is the view
 * add_static registers; files_response() resolves a Response(file=path)
 * a view returned.  Both answer here, with no Python run, the requests a
 * site sees most: GET or HEAD of a whole regular file of at most FILES_SMALL
 * bytes, and its revalidation (If-None-Match, or an If-Modified-Since
 * that repeats Last-Modified: 304 for a file of any size).  The answer is
 * the one fulmen.streams gives (ETag, Last-Modified, Accept-Ranges, the
 * same Content-Type), to HEAD too, and every other case goes to it: 206,
 * 412, other dates, big files (streamed), errors (403, 404).
 *
 * StaticFiles also takes only a plain path (no escape, no "." or ".."
 * segment, no empty one), opened with one openat2() of root/path that
 * refuses any symbolic link on the way (RESOLVE_NO_SYMLINKS: root is a
 * realpath, and with no link nor ".." the path cannot leave it); then one
 * fstat() and one read().  The path is resolved on every request, as the
 * Python view does: a directory swapped in under root's name is served at
 * once.  Requests it does not take go to its fallback, streams'
 * serve_static, which answers all of them.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stddef.h>
#include <structmember.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define FILES_SMALL (64 * 1024) /* streams.SMALL_FILE */
/* the methods answered here: a HEAD gets the GET's head, Content-Length
 * included (the file is read all the same, at most FILES_SMALL bytes, and
 * its bytes left out when the answer is written) */
#define FILES_GET_OR_HEAD(r) \
    ((r)->h.method_id == H1_M_GET || (r)->h.method_id == H1_M_HEAD)
#define FILES_EXT_MAX 15        /* longest extension kept in the type cache */
#define FILES_EXT_SLOTS 32

typedef struct {
    char ext[FILES_EXT_MAX + 1];
    uint8_t len;
    PyObject *ctype; /* str */
} files_ext;

/* What both ways in share, made on first use (st->files). */
struct files_cache {
    PyObject *ext_ctype;    /* streams._ext_content_type */
    PyObject *h_etag, *h_last_modified, *h_accept_ranges, *v_bytes;
    int64_t lm_sec;         /* the last Last-Modified formatted */
    PyObject *lm_str;       /* ... as a str */
    files_ext exts[FILES_EXT_SLOTS];
    int n_exts;
    unsigned long long hits; /* Response(file=...) answered here (tests) */
};

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    fulmen_state *st;
    PyObject *root;          /* bytes: the realpath of the directory */
    PyObject *fallback;      /* the Python view */
    int no_openat2;          /* the kernel refused openat2: Python only */
    unsigned long long hits; /* requests answered here (tests) */
} FilesObject;

static files_cache *files_cache_get(fulmen_state *st)
{
    files_cache *fc = st->files;
    PyObject *mod;
    if (LIKELY(fc != NULL))
        return fc;
    if ((fc = PyMem_Calloc(1, sizeof(*fc))) == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    st->files = fc;
    mod = PyImport_ImportModule("fulmen.streams");
    if (mod != NULL) {
        fc->ext_ctype = PyObject_GetAttrString(mod, "_ext_content_type");
        Py_DECREF(mod);
    }
    if (fc->ext_ctype == NULL ||
        (fc->h_etag = PyUnicode_InternFromString("ETag")) == NULL ||
        (fc->h_last_modified = PyUnicode_InternFromString("Last-Modified")) == NULL ||
        (fc->h_accept_ranges = PyUnicode_InternFromString("Accept-Ranges")) == NULL ||
        (fc->v_bytes = PyUnicode_InternFromString("bytes")) == NULL) {
        files_cache_free(st);
        return NULL;
    }
    return fc;
}

void files_cache_free(fulmen_state *st)
{
    files_cache *fc = st->files;
    int i;
    if (fc == NULL)
        return;
    st->files = NULL;
    Py_XDECREF(fc->ext_ctype);
    Py_XDECREF(fc->h_etag);
    Py_XDECREF(fc->h_last_modified);
    Py_XDECREF(fc->h_accept_ranges);
    Py_XDECREF(fc->v_bytes);
    Py_XDECREF(fc->lm_str);
    for (i = 0; i < fc->n_exts; i++)
        Py_XDECREF(fc->exts[i].ctype);
    PyMem_Free(fc);
}

/* rel[0..n) names a file below the root in its plain form: segments of
 * ASCII bytes other than '%', '\\' and NUL, none empty, "." or "..".
 * Others (escapes, odd spellings) are left to the Python view. */
static int files_plain_path(const char *rel, size_t n)
{
    size_t i, seg = 0;
    if (n == 0 || n >= PATH_MAX)
        return 0;
    for (i = 0; i <= n; i++) {
        char c = i < n ? rel[i] : '/';
        if (c == '/') {
            size_t len = i - seg;
            if (len == 0 || (rel[seg] == '.' && (len == 1 || (len == 2 && rel[seg + 1] == '.'))))
                return 0;
            seg = i + 1;
        } else if (c == '%' || c == '\\' || c == '\0' || (unsigned char)c >= 0x80) {
            return 0;
        }
    }
    return 1;
}

/* The validators a request sent, when it sent only these two of the
 * headers that can change a file's answer. */
typedef struct {
    const char *inm, *ims; /* If-None-Match, If-Modified-Since values, or NULL */
    size_t inm_len, ims_len;
} files_cond;

/* One validator header: 0 with *v (NULL when absent) and *n, or -1 when
 * it is repeated or not ASCII (Python weighs it). */
static int files_validator(RequestObject *r, const char *lname, const char **v, size_t *n)
{
    int i = req_find_header(r, lname);
    size_t j;
    *v = NULL;
    *n = 0;
    if (i < 0)
        return 0;
    if (req_find_header_from(r, lname, (uint32_t)i + 1) >= 0)
        return -1;
    *v = r->base + r->h.headers[i].value.off;
    *n = r->h.headers[i].value.len;
    for (j = 0; j < *n; j++)
        if ((unsigned char)(*v)[j] >= 0x80)
            return -1;
    return 0;
}

/* Sort the request's headers that can change a file's answer: 0 and cd
 * filled (If-None-Match and If-Modified-Since, once each at most, in
 * ASCII, are weighed here), or -1 when Python must weigh them (Range,
 * If-Match, If-Unmodified-Since, a repeated or non-ASCII one). */
static int files_conditions(RequestObject *r, files_cond *cd)
{
    if (req_find_header(r, "range") >= 0 || req_find_header(r, "if-match") >= 0 ||
        req_find_header(r, "if-unmodified-since") >= 0)
        return -1;
    if (files_validator(r, "if-none-match", &cd->inm, &cd->inm_len) < 0 ||
        files_validator(r, "if-modified-since", &cd->ims, &cd->ims_len) < 0)
        return -1;
    return 0;
}

/* streams._not_modified for the validators in cd: 1 (304), 0 (the file),
 * -1 (Python must tell: an If-Modified-Since in another form than this
 * Last-Modified).  If-None-Match, when sent, decides alone (RFC 9110
 * 13.2.2): a "*", the ETag or its weak form among its comma-separated
 * members. */
static int files_not_modified(const files_cond *cd, const char *etag, size_t elen,
                              const char *lm, size_t lmlen)
{
    if (cd->inm != NULL) {
        char weak[72];
        if (elen + 2 > sizeof(weak))
            return -1;
        weak[0] = 'W';
        weak[1] = '/';
        memcpy(weak + 2, etag, elen);
        return mod_list_has(cd->inm, cd->inm_len, "*", 1, 0) ||
               mod_list_has(cd->inm, cd->inm_len, etag, elen, 0) ||
               mod_list_has(cd->inm, cd->inm_len, weak, elen + 2, 0);
    }
    if (cd->ims != NULL)
        return cd->ims_len == lmlen && memcmp(cd->ims, lm, lmlen) == 0 ? 1 : -1;
    return 0;
}

/* The Content-Type for the file name ending name[0..n): by its extension
 * (as posixpath.splitext finds it), from the cache or else asked of
 * streams._ext_content_type(ext) once.  Returns a borrowed str, or NULL,
 * with no exception set, when Python must decide (a compression suffix
 * such as ".gz", where the type depends on more of the name; a long or
 * non-ASCII extension). */
static PyObject *files_ctype(files_cache *fc, const char *name, size_t n)
{
    size_t b = n, d, len, i;
    int k;
    PyObject *v;
    while (b > 0 && name[b - 1] != '/')
        b--;
    d = n;
    while (d > b && name[d - 1] != '.')
        d--;
    if (d == b) /* no dot */
        d = n;
    else {
        size_t j = b;
        d--; /* the dot; leading dots of the name start no extension */
        while (j < d && name[j] == '.')
            j++;
        if (j == d)
            d = n;
    }
    len = n - d;
    if (len > FILES_EXT_MAX)
        return NULL;
    for (k = 0; k < fc->n_exts; k++)
        if (fc->exts[k].len == len && memcmp(fc->exts[k].ext, name + d, len) == 0)
            return fc->exts[k].ctype;
    for (i = d; i < n; i++)
        if ((unsigned char)name[i] >= 0x80)
            return NULL;
    if (fc->n_exts == FILES_EXT_SLOTS)
        return NULL;
    v = PyObject_CallFunction(fc->ext_ctype, "s#", name + d, (Py_ssize_t)len);
    if (v == NULL || !PyUnicode_Check(v)) {
        if (v == NULL)
            PyErr_WriteUnraisable(fc->ext_ctype);
        Py_XDECREF(v); /* None: Python decides */
        return NULL;
    }
    memcpy(fc->exts[fc->n_exts].ext, name + d, len);
    fc->exts[fc->n_exts].len = (uint8_t)len;
    fc->exts[fc->n_exts].ctype = v;
    return fc->exts[fc->n_exts++].ctype;
}

/* Open root/rel[0..n) for reading, following no symbolic link: the fd,
 * or -1 (no such file, a link, too long; the Python view then finds out
 * which).  O_NONBLOCK: a FIFO does not block the open. */
static int files_open(FilesObject *f, const char *rel, size_t n)
{
    char path[PATH_MAX];
    size_t rlen = (size_t)PyBytes_GET_SIZE(f->root);
    struct open_how how;
    int fd;
    if (rlen + 1 + n >= sizeof(path))
        return -1;
    memcpy(path, PyBytes_AS_STRING(f->root), rlen);
    path[rlen] = '/';
    memcpy(path + rlen + 1, rel, n);
    path[rlen + 1 + n] = '\0';
    memset(&how, 0, sizeof(how));
    how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    do
        fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
    while (fd < 0 && errno == EINTR);
    if (fd < 0 && (errno == ENOSYS || errno == EPERM || errno == E2BIG))
        f->no_openat2 = 1; /* an old kernel, a seccomp filter */
    return fd;
}

/* A Last-Modified value for an mtime in seconds (the last one is kept):
 * a new reference, or NULL (with an exception, or none when the date has
 * no IMF-fixdate). */
static PyObject *files_last_modified(files_cache *fc, int64_t sec)
{
    char buf[64];
    if (fc->lm_str == NULL || fc->lm_sec != sec) {
        PyObject *s;
        int n = mod_format_date(buf, sizeof(buf), sec);
        if (n < 0) /* a year past 9999: Python's affair */
            return NULL;
        if ((s = PyUnicode_FromStringAndSize(buf, n)) == NULL)
            return NULL;
        Py_XSETREF(fc->lm_str, s);
        fc->lm_sec = sec;
    }
    Py_INCREF(fc->lm_str);
    return fc->lm_str;
}

/* read() fd whole into a bytes object of at most size bytes (fewer when
 * the file got shorter since its fstat): a new reference, or NULL with no
 * exception set when the read failed (the Python view tries again). */
static PyObject *files_read(fulmen_state *st, int fd, size_t size)
{
    PyObject *b;
    size_t got = 0;
    if (size == 0) {
        Py_INCREF(st->empty_bytes);
        return st->empty_bytes;
    }
    b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (b == NULL)
        return NULL;
    while (got < size) {
        ssize_t k = read(fd, PyBytes_AS_STRING(b) + got, size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            Py_DECREF(b);
            return NULL;
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    if (got < size && _PyBytes_Resize(&b, (Py_ssize_t)got) < 0)
        return NULL;
    return b;
}

/* k is a str that names none of the headers a file answer sets. */
static int files_not_ours(PyObject *k)
{
    static const char *const ours[] = {"etag", "last-modified", "accept-ranges",
                                       "content-length", "content-range"};
    Py_ssize_t n;
    size_t i;
    const char *s = PyUnicode_Check(k) ? PyUnicode_AsUTF8AndSize(k, &n) : NULL;
    if (s == NULL) {
        PyErr_Clear();
        return 0;
    }
    for (i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
        if ((size_t)n == strlen(ours[i]) && strncasecmp(s, ours[i], (size_t)n) == 0)
            return 0;
    return 1;
}

/* The app's headers of a Response(file=...) as a new dict or list, to
 * which the file's are added (streams._headers_of): from none, a dict or
 * a list of pairs that name none of the file's own headers; NULL with no
 * exception for anything else (Python's, which replaces them). */
static PyObject *files_app_headers(PyObject *h)
{
    PyObject *k, *v;
    Py_ssize_t pos = 0, i;
    if (h == NULL)
        return PyDict_New();
    if (PyDict_CheckExact(h)) {
        while (PyDict_Next(h, &pos, &k, &v))
            if (!files_not_ours(k))
                return NULL;
        return PyDict_Copy(h);
    }
    if (!PyList_CheckExact(h))
        return NULL;
    for (i = 0; i < PyList_GET_SIZE(h); i++) {
        PyObject *p = PyList_GET_ITEM(h, i);
        if (!PyTuple_CheckExact(p) || PyTuple_GET_SIZE(p) != 2 ||
            !files_not_ours(PyTuple_GET_ITEM(p, 0)))
            return NULL;
    }
    return PyList_GetSlice(h, 0, PyList_GET_SIZE(h));
}

/* headers[k] = v, for the dict or list of files_app_headers. */
static int files_put(PyObject *headers, PyObject *k, PyObject *v)
{
    PyObject *p;
    int rc;
    if (PyDict_CheckExact(headers))
        return PyDict_SetItem(headers, k, v);
    if ((p = PyTuple_Pack(2, k, v)) == NULL)
        return -1;
    rc = PyList_Append(headers, p);
    Py_DECREF(p);
    return rc;
}

/* The answer for an open regular file, given the request's validators
 * cd: 304, or 200 with its bytes when it has at most FILES_SMALL; headers
 * (the app's, then ETag, Last-Modified and Accept-Ranges), the
 * Content-Type ctype (200 only) and cookies (both may be NULL).  NULL
 * with no exception: Python should answer; NULL with one: an error. */
static PyObject *files_answer(fulmen_state *st, files_cache *fc, int fd, const struct stat *sb,
                              const files_cond *cd, PyObject *headers, PyObject *ctype,
                              PyObject *cookies)
{
    ResponseObject *r = NULL;
    PyObject *body = NULL, *etag = NULL, *lm = NULL, *hdrs = NULL;
    char buf[64];
    int64_t mtime_ns = (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
    int64_t lm_sec = (int64_t)sb->st_mtim.tv_sec;
    const char *lmb;
    Py_ssize_t lmlen;
    int n, nm;
    if (mtime_ns < 0)
        goto error;
    n = snprintf(buf, sizeof(buf), "\"%llx-%llx\"", (unsigned long long)mtime_ns,
                 (unsigned long long)sb->st_size);
    if (lm_sec > st->date_sec && st->date_sec > 0)
        lm_sec = st->date_sec; /* dated in the future: modified now (RFC 9110 8.8.2.1) */
    if ((lm = files_last_modified(fc, lm_sec)) == NULL ||
        (lmb = PyUnicode_AsUTF8AndSize(lm, &lmlen)) == NULL) /* ASCII: its own bytes */
        goto error;
    nm = files_not_modified(cd, buf, (size_t)n, lmb, (size_t)lmlen);
    if (nm < 0 || (nm == 0 && sb->st_size > FILES_SMALL))
        goto error;
    if ((hdrs = files_app_headers(headers)) == NULL ||
        (etag = PyUnicode_FromStringAndSize(buf, n)) == NULL ||
        files_put(hdrs, fc->h_etag, etag) < 0 || files_put(hdrs, fc->h_last_modified, lm) < 0 ||
        files_put(hdrs, fc->h_accept_ranges, fc->v_bytes) < 0)
        goto error;
    if (nm == 0 && (body = files_read(st, fd, (size_t)sb->st_size)) == NULL)
        goto error;
    r = (ResponseObject *)resp_new_simple(st, nm ? 304 : 200, NULL, hdrs);
    if (r == NULL)
        goto error;
    if (nm == 0) { /* a 304 has no body, nor a Content-Type (streams) */
        r->body = body;
        r->kind = RESP_BODY;
        r->head_length = 1;
        body = NULL;
        Py_XINCREF(ctype);
        r->content_type = ctype;
    }
    Py_XINCREF(cookies);
    r->cookies = cookies;
error:
    Py_XDECREF(body);
    Py_XDECREF(etag);
    Py_XDECREF(lm);
    Py_XDECREF(hdrs);
    return (PyObject *)r;
}

/* fstat() the open fd: a regular file is answered (see files_answer).
 * Closes fd. */
static PyObject *files_answer_fd(fulmen_state *st, files_cache *fc, int fd, const files_cond *cd,
                                 PyObject *headers, PyObject *ctype, PyObject *cookies)
{
    struct stat sb;
    PyObject *res = NULL;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode))
        res = files_answer(st, fc, fd, &sb, cd, headers, ctype, cookies);
    close(fd);
    return res;
}

PyObject *files_response(fulmen_state *st, RequestObject *req, PyObject *resp)
{
    ResponseObject *f = (ResponseObject *)resp;
    files_cache *fc;
    PyObject *path = NULL, *ctype, *cookies = f->cookies, *res = NULL;
    files_cond cd;
    int fd;
    if (req == NULL || !FILES_GET_OR_HEAD(req) || f->code != 200 ||
        files_conditions(req, &cd) < 0)
        return NULL;
    if (cookies != NULL && PyDict_GET_SIZE(cookies) == 0) /* a dict or SimpleCookie */
        cookies = NULL;
    if ((fc = files_cache_get(st)) == NULL)
        return NULL;
    if (!PyUnicode_FSConverter(f->stream, &path)) {
        PyErr_Clear(); /* a NUL in it, say: Python's 404 */
        return NULL;
    }
    do
        fd = open(PyBytes_AS_STRING(path), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        goto done; /* Python's 403 or 404; and no slot of the type cache */
    ctype = f->content_type;
    if (ctype == NULL &&
        (ctype = files_ctype(fc, PyBytes_AS_STRING(path), (size_t)PyBytes_GET_SIZE(path))) == NULL) {
        close(fd);
        goto done;
    }
    if ((res = files_answer_fd(st, fc, fd, &cd, f->headers, ctype, cookies)) != NULL)
        fc->hits++;
done:
    Py_DECREF(path);
    return res;
}

PyObject *files_py_response(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    fulmen_state *st = PyModule_GetState(m);
    PyObject *res;
    if (nargs != 2 || Py_TYPE(args[0]) != st->RequestType ||
        Py_TYPE(args[1]) != st->ResponseType || ((ResponseObject *)args[1])->kind != RESP_FILE)
        Py_RETURN_NONE;
    res = files_response(st, (RequestObject *)args[0], args[1]);
    if (res == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return res;
}

PyObject *files_py_hits(PyObject *m, PyObject *unused)
{
    fulmen_state *st = PyModule_GetState(m);
    return PyLong_FromUnsignedLongLong(st->files != NULL ? st->files->hits : 0);
}

static PyObject *files_call(PyObject *self, PyObject *const *args, size_t nargsf,
                            PyObject *kwnames)
{
    FilesObject *f = (FilesObject *)self;
    files_cache *fc;
    files_cond cd;
    RequestObject *r;
    PyObject *ctype, *res;
    const char *rel;
    size_t n;
    int fd;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL ||
        Py_TYPE(args[0]) != f->st->RequestType || f->no_openat2)
        goto fallback;
    r = (RequestObject *)args[0];
    if (!FILES_GET_OR_HEAD(r) || r->n_params != 1 || r->base == NULL)
        goto fallback;
    rel = r->base + r->params[0].off;
    n = r->params[0].len;
    if (!files_plain_path(rel, n) || files_conditions(r, &cd) < 0)
        goto fallback;
    if ((fc = files_cache_get(f->st)) == NULL)
        return NULL;
    /* the file first: a name that is no file takes no slot of the type
     * cache (32 requests for made-up extensions would fill it for good) */
    if ((fd = files_open(f, rel, n)) < 0)
        goto fallback;
    if ((ctype = files_ctype(fc, rel, n)) == NULL) {
        close(fd);
        goto fallback;
    }
    res = files_answer_fd(f->st, fc, fd, &cd, NULL, ctype, NULL);
    if (res != NULL) {
        f->hits++;
        return res;
    }
    if (PyErr_Occurred())
        return NULL;
fallback:
    return PyObject_Vectorcall(f->fallback, args, nargsf, kwnames);
}

static PyObject *files_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"root", "fallback", NULL};
    fulmen_state *st = mod_state_of_type(tp);
    FilesObject *f = NULL;
    PyObject *root, *fallback, *path = NULL;
    Py_ssize_t len;
    const char *p;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO:StaticFiles", kwlist, &root, &fallback))
        return NULL;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "StaticFiles: fallback must be callable");
        return NULL;
    }
    if (!PyUnicode_FSConverter(root, &path))
        return NULL;
    len = PyBytes_GET_SIZE(path);
    p = PyBytes_AS_STRING(path);
    if (len == 0 || p[0] != '/') {
        PyErr_SetString(PyExc_ValueError, "StaticFiles: root must be an absolute path");
        goto error;
    }
    while (len > 0 && p[len - 1] == '/') /* kept without a final '/' ("/" becomes "") */
        len--;
    f = (FilesObject *)tp->tp_alloc(tp, 0);
    if (f == NULL || (f->root = PyBytes_FromStringAndSize(p, len)) == NULL)
        goto error;
    f->vectorcall = files_call;
    f->st = st;
    Py_INCREF(fallback);
    f->fallback = fallback;
    Py_DECREF(path);
    return (PyObject *)f;
error:
    Py_XDECREF(path);
    Py_XDECREF(f);
    return NULL;
}

static int files_traverse(FilesObject *f, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(f));
    Py_VISIT(f->fallback);
    return 0;
}

static int files_clear(FilesObject *f)
{
    Py_CLEAR(f->fallback);
    return 0;
}

static void files_dealloc(FilesObject *f)
{
    PyTypeObject *tp = Py_TYPE(f);
    PyObject_GC_UnTrack(f);
    files_clear(f);
    Py_CLEAR(f->root);
    tp->tp_free(f);
    Py_DECREF(tp);
}

static PyObject *files_get_hits(FilesObject *f, void *c)
{
    return PyLong_FromUnsignedLongLong(f->hits);
}

static PyObject *files_get_fallback(FilesObject *f, void *c)
{
    PyObject *v = f->fallback ? f->fallback : Py_None;
    Py_INCREF(v);
    return v;
}

static PyGetSetDef files_getset[] = {
    {"hits", (getter)files_get_hits, NULL, "requests answered in C", NULL},
    {"fallback", (getter)files_get_fallback, NULL, "the Python view for the rest", NULL},
    {NULL},
};

static PyMemberDef files_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(FilesObject, vectorcall), READONLY},
    {NULL},
};

static PyType_Slot files_slots[] = {
    {Py_tp_new, files_new},
    {Py_tp_dealloc, files_dealloc},
    {Py_tp_traverse, files_traverse},
    {Py_tp_clear, files_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_getset, files_getset},
    {Py_tp_members, files_members},
    {Py_tp_doc, "StaticFiles(root, fallback): add_static's view."},
    {0, NULL},
};

PyType_Spec files_spec = {
    .name = "fulmen._core.StaticFiles",
    .basicsize = sizeof(FilesObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = files_slots,
};
