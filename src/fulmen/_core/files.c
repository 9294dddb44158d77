/*
 * files.c - add_static's view, in C for the usual request.
 *
 * StaticFiles(root, fallback, content_type) is the view add_static
 * registers.  It answers here, with no Python run, the request a site
 * sees most: GET of a whole regular file of at most FILES_SMALL bytes,
 * with no Range nor conditional header, at a plain path (no escape, no
 * "." or ".." segment, no empty one).  Such a file costs one openat2() of
 * root/path that refuses any symbolic link on the way (RESOLVE_NO_SYMLINKS:
 * root is a realpath, and with no link nor ".." the path cannot leave it),
 * one fstat() and one read().  The path is resolved on every request, as
 * the Python view does: a directory swapped in under root's name is
 * served at once.  The answer is the one the Python view gives: ETag,
 * Last-Modified, Accept-Ranges and the same Content-Type.
 *
 * Every other request, and every one this path cannot finish (no such
 * file, a symbolic link, a directory, a big file, a kernel without
 * openat2), goes to fallback, streams.serve_static, which answers all of
 * them (404, 403, 304, 206, HEAD, links that stay inside the root).
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
#define FILES_EXT_MAX 15        /* longest extension kept in the type cache */
#define FILES_EXT_SLOTS 32

typedef struct {
    char ext[FILES_EXT_MAX + 1];
    uint8_t len;
    PyObject *ctype; /* str */
} files_ext;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    fulmen_state *st;
    PyObject *root;         /* bytes: the realpath of the directory */
    int no_openat2;         /* the kernel refused openat2: Python only */
    PyObject *fallback;     /* the Python view */
    PyObject *content_type; /* extension -> Content-Type, or None */
    PyObject *h_etag, *h_last_modified, *h_accept_ranges, *v_bytes;
    int64_t lm_sec;         /* the last Last-Modified formatted */
    PyObject *lm_str;
    files_ext exts[FILES_EXT_SLOTS];
    int n_exts;
    unsigned long long hits; /* requests answered here (tests) */
} FilesObject;

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

/* The request has a header that can change a file's answer: Range or a
 * precondition (streams._conditional). */
static int files_conditional(RequestObject *r)
{
    static const struct {
        const char *name;
        uint8_t len;
    } names[] = {{"range", 5},
                 {"if-match", 8},
                 {"if-none-match", 13},
                 {"if-modified-since", 17},
                 {"if-unmodified-since", 19}};
    uint32_t i;
    size_t k, j;
    for (i = 0; i < r->h.num_headers; i++) {
        const h1_header *h = &r->h.headers[i];
        const char *p = r->base + h->name.off;
        for (k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
            if (h->name.len != names[k].len)
                continue;
            for (j = 0; j < names[k].len && (p[j] | 0x20) == names[k].name[j]; j++)
                ;
            if (j == names[k].len)
                return 1;
        }
    }
    return 0;
}

/* The Content-Type for the file name ending rel[0..n): by its extension
 * (as posixpath.splitext finds it), from the cache or else asked of
 * content_type(ext) once.  Returns a borrowed str, or NULL, with no
 * exception set, when the Python view must decide (a compression suffix
 * such as ".gz", where the type depends on more of the name). */
static PyObject *files_ctype(FilesObject *f, const char *rel, size_t n)
{
    size_t b = n, d, len;
    int i;
    PyObject *v;
    while (b > 0 && rel[b - 1] != '/')
        b--;
    d = n;
    while (d > b && rel[d - 1] != '.')
        d--;
    if (d == b) /* no dot */
        d = n;
    else {
        size_t k = b;
        d--; /* the dot; leading dots of the name start no extension */
        while (k < d && rel[k] == '.')
            k++;
        if (k == d)
            d = n;
    }
    len = n - d;
    if (len > FILES_EXT_MAX)
        return NULL;
    for (i = 0; i < f->n_exts; i++)
        if (f->exts[i].len == len && memcmp(f->exts[i].ext, rel + d, len) == 0)
            return f->exts[i].ctype;
    if (f->n_exts == FILES_EXT_SLOTS)
        return NULL;
    v = PyObject_CallFunction(f->content_type, "s#", rel + d, (Py_ssize_t)len);
    if (v == NULL || !PyUnicode_Check(v)) {
        if (v == NULL)
            PyErr_WriteUnraisable(f->content_type);
        Py_XDECREF(v); /* None: the Python view decides */
        return NULL;
    }
    memcpy(f->exts[f->n_exts].ext, rel + d, len);
    f->exts[f->n_exts].len = (uint8_t)len;
    f->exts[f->n_exts].ctype = v;
    return f->exts[f->n_exts++].ctype;
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
static PyObject *files_last_modified(FilesObject *f, int64_t sec)
{
    char buf[64];
    if (f->lm_str == NULL || f->lm_sec != sec) {
        PyObject *s;
        int n = mod_format_date(buf, sizeof(buf), sec);
        if (n < 0) /* a year past 9999: the Python view's affair */
            return NULL;
        if ((s = PyUnicode_FromStringAndSize(buf, n)) == NULL)
            return NULL;
        Py_XSETREF(f->lm_str, s);
        f->lm_sec = sec;
    }
    Py_INCREF(f->lm_str);
    return f->lm_str;
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

/* The answer for an open regular file: 200 with its bytes, ETag,
 * Last-Modified and Accept-Ranges.  NULL with no exception: the Python
 * view should answer; NULL with one: an error. */
static PyObject *files_answer(FilesObject *f, int fd, const struct stat *sb, PyObject *ctype)
{
    fulmen_state *st = f->st;
    ResponseObject *r = NULL;
    PyObject *body = NULL, *etag = NULL, *lm = NULL, *headers = NULL;
    char buf[64];
    int64_t mtime_ns = (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
    int n;
    if (mtime_ns < 0)
        return NULL;
    n = snprintf(buf, sizeof(buf), "\"%llx-%llx\"", (unsigned long long)mtime_ns,
                 (unsigned long long)sb->st_size);
    if ((etag = PyUnicode_FromStringAndSize(buf, n)) == NULL ||
        (lm = files_last_modified(f, (int64_t)sb->st_mtim.tv_sec)) == NULL)
        goto error;
    headers = Py_BuildValue("[(OO)(OO)(OO)]", f->h_etag, etag, f->h_last_modified, lm,
                            f->h_accept_ranges, f->v_bytes);
    if (headers == NULL)
        goto error;
    body = files_read(st, fd, (size_t)sb->st_size);
    if (body == NULL)
        goto error;
    r = (ResponseObject *)resp_new_simple(st, 200, NULL, headers);
    if (r == NULL)
        goto error;
    r->body = body;
    r->kind = RESP_BODY;
    Py_INCREF(ctype);
    r->content_type = ctype;
    body = NULL;
    f->hits++;
error:
    Py_XDECREF(body);
    Py_XDECREF(etag);
    Py_XDECREF(lm);
    Py_XDECREF(headers);
    return (PyObject *)r;
}

static PyObject *files_call(PyObject *self, PyObject *const *args, size_t nargsf,
                            PyObject *kwnames)
{
    FilesObject *f = (FilesObject *)self;
    RequestObject *r;
    PyObject *ctype, *res = NULL;
    const char *rel;
    size_t n;
    struct stat sb;
    int fd;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL ||
        Py_TYPE(args[0]) != f->st->RequestType || f->no_openat2)
        goto fallback;
    r = (RequestObject *)args[0];
    if (r->h.method_id != H1_M_GET || r->n_params != 1 || r->base == NULL)
        goto fallback;
    rel = r->base + r->params[0].off;
    n = r->params[0].len;
    if (!files_plain_path(rel, n) || files_conditional(r) ||
        (ctype = files_ctype(f, rel, n)) == NULL)
        goto fallback;
    fd = files_open(f, rel, n);
    if (fd < 0)
        goto fallback;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size <= FILES_SMALL)
        res = files_answer(f, fd, &sb, ctype);
    close(fd);
    if (res != NULL || PyErr_Occurred())
        return res;
fallback:
    return PyObject_Vectorcall(f->fallback, args, nargsf, kwnames);
}

static PyObject *files_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"root", "fallback", "content_type", NULL};
    fulmen_state *st = mod_state_of_type(tp);
    FilesObject *f = NULL;
    PyObject *root, *fallback, *ctype, *path = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:StaticFiles", kwlist, &root, &fallback,
                                     &ctype))
        return NULL;
    if (!PyCallable_Check(fallback) || !PyCallable_Check(ctype)) {
        PyErr_SetString(PyExc_TypeError, "StaticFiles: fallback and content_type must be callable");
        return NULL;
    }
    if (!PyUnicode_FSConverter(root, &path))
        return NULL;
    f = (FilesObject *)tp->tp_alloc(tp, 0);
    if (f == NULL)
        goto error;
    f->vectorcall = files_call;
    f->st = st;
    {
        /* kept without a final '/' ("/" itself becomes "") */
        Py_ssize_t len = PyBytes_GET_SIZE(path);
        const char *p = PyBytes_AS_STRING(path);
        if (len == 0 || p[0] != '/') {
            PyErr_SetString(PyExc_ValueError, "StaticFiles: root must be an absolute path");
            goto error;
        }
        while (len > 0 && p[len - 1] == '/')
            len--;
        if ((f->root = PyBytes_FromStringAndSize(p, len)) == NULL)
            goto error;
    }
    Py_INCREF(fallback);
    f->fallback = fallback;
    Py_INCREF(ctype);
    f->content_type = ctype;
    if ((f->h_etag = PyUnicode_InternFromString("ETag")) == NULL ||
        (f->h_last_modified = PyUnicode_InternFromString("Last-Modified")) == NULL ||
        (f->h_accept_ranges = PyUnicode_InternFromString("Accept-Ranges")) == NULL ||
        (f->v_bytes = PyUnicode_InternFromString("bytes")) == NULL)
        goto error;
    Py_DECREF(path);
    return (PyObject *)f;
error:
    Py_XDECREF(path);
    Py_XDECREF(f);
    return NULL;
}

static int files_traverse(FilesObject *f, visitproc visit, void *arg)
{
    int i;
    Py_VISIT(Py_TYPE(f));
    Py_VISIT(f->fallback);
    Py_VISIT(f->content_type);
    for (i = 0; i < f->n_exts; i++)
        Py_VISIT(f->exts[i].ctype);
    return 0;
}

static int files_clear(FilesObject *f)
{
    int i;
    Py_CLEAR(f->fallback);
    Py_CLEAR(f->content_type);
    for (i = 0; i < f->n_exts; i++)
        Py_CLEAR(f->exts[i].ctype);
    f->n_exts = 0;
    return 0;
}

static void files_dealloc(FilesObject *f)
{
    PyTypeObject *tp = Py_TYPE(f);
    PyObject_GC_UnTrack(f);
    files_clear(f);
    Py_CLEAR(f->h_etag);
    Py_CLEAR(f->h_last_modified);
    Py_CLEAR(f->h_accept_ranges);
    Py_CLEAR(f->v_bytes);
    Py_CLEAR(f->lm_str);
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
    {Py_tp_doc, "StaticFiles(root, fallback, content_type): add_static's view."},
    {0, NULL},
};

PyType_Spec files_spec = {
    .name = "fulmen._core.StaticFiles",
    .basicsize = sizeof(FilesObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = files_slots,
};
