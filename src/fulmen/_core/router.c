/*
 * router.c - Route objects and the Matcher that finds them.
 *
 * Static paths live in an open-addressing hash table keyed by the raw path
 * bytes: one hash and one memcmp per request, whatever the number of routes.
 * Parametric patterns live in a segment trie in which, at each segment,
 * literal children are tried first, then prefixed parameters (Japronto's
 * /user-{id}: literal text, then a parameter to the end of the segment),
 * longest prefix first, then typed parameters, then plain {name}, then
 * {x:path} (prefixed ones before the plain one), so the most specific route
 * wins; a candidate whose subtree does not match gives way to the next.
 * Matching works on the raw (percent-encoded) path, so "%2F" never acts as
 * a separator.
 *
 * Patterns are parsed in Python (fulmen/router.py), which hands the matcher
 * a list of segments: a str for a literal segment, an int kind for a
 * parameter (ROUTER_P_*), or a (prefix, kind) tuple for a prefixed one.
 */
#include "common.h"

#include <stddef.h>
#include <structmember.h>


/* ========================================================================
 * Route
 */

static int router_route_traverse(RouteObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->pattern);
    Py_VISIT(self->handler);
    Py_VISIT(self->methods);
    Py_VISIT(self->name);
    Py_VISIT(self->param_names);
    Py_VISIT(self->param_types);
    Py_VISIT(self->extra);
    Py_VISIT(self->task_name);
    return 0;
}

static int router_route_clear(RouteObject *self)
{
    Py_CLEAR(self->pattern);
    Py_CLEAR(self->handler);
    Py_CLEAR(self->methods);
    Py_CLEAR(self->name);
    Py_CLEAR(self->param_names);
    Py_CLEAR(self->param_types);
    Py_CLEAR(self->extra);
    Py_CLEAR(self->task_name);
    return 0;
}

static void router_route_dealloc(RouteObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    router_route_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* Route(pattern, handler, methods, name, param_names, param_types,
 *       is_async, extra) */
static PyObject *router_route_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"pattern", "handler", "methods", "name",
                             "param_names", "param_types", "is_async",
                             "extra", NULL};
    PyObject *pattern, *handler, *methods, *name, *pn, *pt, *extra = Py_None;
    int is_async = 0, is_ws = 0, is_stream = 0;
    unsigned long long max_body = 0;
    RouteObject *self;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "UOOOO!O!|pO", kwlist, &pattern,
                                     &handler, &methods, &name, &PyTuple_Type,
                                     &pn, &PyTuple_Type, &pt, &is_async, &extra))
        return NULL;
    if (!PyCallable_Check(handler)) {
        PyErr_SetString(PyExc_TypeError, "handler must be callable");
        return NULL;
    }
    if (extra == Py_None) {
        extra = PyDict_New();
        if (extra == NULL)
            return NULL;
    } else if (!PyDict_Check(extra)) {
        PyErr_SetString(PyExc_TypeError, "extra must be a dict");
        return NULL;
    } else {
        PyObject *mb = PyDict_GetItemString(extra, "max_body_size");
        PyObject *wsflag = PyDict_GetItemString(extra, "websocket");
        if (wsflag != NULL && PyObject_IsTrue(wsflag) == 1)
            is_ws = 1;
        wsflag = PyDict_GetItemString(extra, "stream");
        if (wsflag != NULL && PyObject_IsTrue(wsflag) == 1)
            is_stream = 1;
        if (mb != NULL && mb != Py_None) {
            max_body = PyLong_AsUnsignedLongLong(mb);
            if (max_body == (unsigned long long)-1 && PyErr_Occurred())
                return NULL;
        }
        Py_INCREF(extra);
    }
    self = (RouteObject *)tp->tp_alloc(tp, 0);
    if (self == NULL) {
        Py_DECREF(extra);
        return NULL;
    }
    Py_INCREF(pattern);
    self->pattern = pattern;
    Py_INCREF(handler);
    self->handler = handler;
    Py_INCREF(methods);
    self->methods = methods;
    Py_INCREF(name);
    self->name = name;
    Py_INCREF(pn);
    self->param_names = pn;
    Py_INCREF(pt);
    self->param_types = pt;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pt) && i < FULMEN_MAX_PARAMS; i++) {
        /* the type names as codes, for request.match_dict */
        static const char *names[ROUTER_P_KINDS] = {"str", "int", "float", "uuid", "path"};
        PyObject *t = PyTuple_GET_ITEM(pt, i);
        for (int k = 0; k < ROUTER_P_KINDS; k++)
            if (PyUnicode_Check(t) && PyUnicode_CompareWithASCIIString(t, names[k]) == 0)
                self->param_kind[i] = (uint8_t)k;
    }
    self->extra = extra;
    self->is_async = is_async;
    self->is_ws = is_ws;
    self->is_stream = is_stream;
    self->max_body = max_body;
    return (PyObject *)self;
}

static PyObject *router_route_repr(RouteObject *self)
{
    return PyUnicode_FromFormat("<Route %R %R>", self->pattern, self->methods);
}

static PyMemberDef router_route_members[] = {
    {"pattern", T_OBJECT, offsetof(RouteObject, pattern), READONLY, NULL},
    {"handler", T_OBJECT, offsetof(RouteObject, handler), READONLY, NULL},
    {"methods", T_OBJECT, offsetof(RouteObject, methods), READONLY, NULL},
    {"name", T_OBJECT, offsetof(RouteObject, name), READONLY, NULL},
    {"param_names", T_OBJECT, offsetof(RouteObject, param_names), READONLY, NULL},
    {"param_types", T_OBJECT, offsetof(RouteObject, param_types), READONLY, NULL},
    {"extra", T_OBJECT, offsetof(RouteObject, extra), READONLY, NULL},
    {"is_async", T_INT, offsetof(RouteObject, is_async), READONLY, NULL},
    {NULL},
};

static PyType_Slot router_route_slots[] = {
    {Py_tp_new, router_route_new},
    {Py_tp_dealloc, router_route_dealloc},
    {Py_tp_traverse, router_route_traverse},
    {Py_tp_clear, router_route_clear},
    {Py_tp_members, router_route_members},
    {Py_tp_repr, router_route_repr},
    {0, NULL},
};

PyType_Spec router_route_spec = {
    .name = "fulmen._core.Route",
    .basicsize = sizeof(RouteObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = router_route_slots,
};

/* ========================================================================
 * Matcher data structures
 */

/* The routes that share one path, by method. */
typedef struct {
    RouteObject *by_method[H1_M_TRACE + 1]; /* [0]: routes with no method set */
    PyObject *other;                        /* dict str -> route, or NULL */
    PyObject *allow;                        /* str for 405's Allow */
} router_endpoint;

typedef struct router_node router_node;

typedef struct {
    char *seg;
    uint32_t len;
    router_node *child;
} router_edge;

/* A prefixed parameter: literal text, then a parameter of `kind` that takes
 * the rest of the segment (of the path, for ROUTER_P_PATH), at least one
 * byte of it. */
typedef struct {
    char *prefix;
    uint32_t len;
    int kind;
    router_node *child;
} router_pedge;

struct router_node {
    router_edge *edges;
    uint32_t n_edges;
    uint32_t n_pedges;
    router_pedge *pedges; /* in the order they are tried: router_pedge_cmp */
    router_node *param[ROUTER_P_KINDS];
    int endpoint; /* index into endpoints, or -1 */
};

typedef struct {
    uint64_t hash;
    char *key;
    uint32_t len;
    int endpoint; /* -1: empty slot */
} router_slot;

typedef struct {
    PyObject_HEAD
    router_endpoint *endpoints;
    int n_endpoints, cap_endpoints;
    router_slot *table;
    uint32_t table_cap; /* power of two */
    uint32_t table_used;
    router_node *root;
    PyObject *routes; /* list: keeps every route alive */
    PyObject *allows; /* dict: tuple of endpoint indices -> their Allow, merged */
} MatcherObject;

/* A multiplicative hash over 8-byte words (paths are short).  The last 1..7
 * bytes are gathered with loads of their own rather than copied into a word
 * through memory, which would stall on store forwarding. */
static uint64_t router_hash(const char *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n, w;
    while (n >= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    if (n > 0) {
        if (n >= 4) {
            uint32_t a, b;
            memcpy(&a, p, 4);
            memcpy(&b, p + n - 4, 4);
            w = ((uint64_t)a << 32) | b;
        } else {
            w = ((uint64_t)(unsigned char)p[0] << 16) |
                ((uint64_t)(unsigned char)p[n >> 1] << 8) | (unsigned char)p[n - 1];
        }
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 29;
    }
    return h;
}

/* a[0..n) == b[0..n), for the short keys of the path table: word loads
 * that may overlap instead of a call to memcmp (whose length dispatch
 * mispredicts when the length varies from call to call). */
static inline int router_key_eq(const char *a, const char *b, size_t n)
{
    uint64_t x, y;
    uint32_t u, v;
    if (n >= 8) {
        size_t i;
        for (i = 0; i + 8 < n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            if (x != y)
                return 0;
        }
        memcpy(&x, a + n - 8, 8);
        memcpy(&y, b + n - 8, 8);
        return x == y;
    }
    if (n >= 4) {
        memcpy(&u, a, 4);
        memcpy(&v, b, 4);
        if (u != v)
            return 0;
        memcpy(&u, a + n - 4, 4);
        memcpy(&v, b + n - 4, 4);
        return u == v;
    }
    if (n == 0)
        return 1;
    return a[0] == b[0] && a[n >> 1] == b[n >> 1] && a[n - 1] == b[n - 1];
}

/* Order of literal edges: by length, then bytes (binary search). */
static int router_edge_cmp(const char *a, uint32_t al, const char *b, uint32_t bl)
{
    if (al != bl)
        return al < bl ? -1 : 1;
    return memcmp(a, b, al);
}

/* Index of the edge equal to s[0..n), or where it would be inserted
 * (with *found = 0). */
static uint32_t router_edge_find(const router_node *node, const char *s, uint32_t n,
                                 int *found)
{
    uint32_t lo = 0, hi = node->n_edges;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        int c = router_edge_cmp(node->edges[mid].seg, node->edges[mid].len, s, n);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static router_node *router_node_new(void)
{
    router_node *n = PyMem_Calloc(1, sizeof(router_node));
    if (n == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    n->endpoint = -1;
    return n;
}

static void router_node_free(router_node *n)
{
    uint32_t i;
    int k;
    if (n == NULL)
        return;
    for (i = 0; i < n->n_edges; i++) {
        PyMem_Free(n->edges[i].seg);
        router_node_free(n->edges[i].child);
    }
    PyMem_Free(n->edges);
    for (i = 0; i < n->n_pedges; i++) {
        PyMem_Free(n->pedges[i].prefix);
        router_node_free(n->pedges[i].child);
    }
    PyMem_Free(n->pedges);
    for (k = 0; k < ROUTER_P_KINDS; k++)
        router_node_free(n->param[k]);
    PyMem_Free(n);
}

/* The order in which prefixed parameters are tried, as a rank: every
 * one-segment kind before ROUTER_P_PATH, and the typed kinds before str,
 * as for plain parameters. */
static int router_kind_rank(int kind)
{
    switch (kind) {
    case ROUTER_P_INT:
        return 0;
    case ROUTER_P_FLOAT:
        return 1;
    case ROUTER_P_UUID:
        return 2;
    case ROUTER_P_STR:
        return 3;
    }
    return 4;
}

/* Order of prefixed parameters: {x:path} ones last; otherwise the longer
 * prefix first, then by kind rank, then by prefix bytes.  Equal (0) only
 * for the same prefix and kind, which share one child. */
static int router_pedge_cmp(const router_pedge *e, const char *p, uint32_t n, int kind)
{
    int ra = router_kind_rank(e->kind), rb = router_kind_rank(kind);
    if ((ra == 4) != (rb == 4))
        return ra == 4 ? 1 : -1;
    if (e->len != n)
        return e->len > n ? -1 : 1;
    if (ra != rb)
        return ra < rb ? -1 : 1;
    return memcmp(e->prefix, p, n);
}

/* The child of node for the prefixed parameter (p[0..n), kind), created
 * if need be; NULL with an exception set on failure. */
static router_node *router_pedge_child(router_node *node, const char *p, uint32_t n,
                                       int kind)
{
    uint32_t j;
    char *prefix = NULL;
    router_node *child = NULL;
    router_pedge *ed;
    for (j = 0; j < node->n_pedges; j++) {
        int c = router_pedge_cmp(&node->pedges[j], p, n, kind);
        if (c == 0)
            return node->pedges[j].child;
        if (c > 0)
            break;
    }
    prefix = PyMem_Malloc(n);
    child = router_node_new();
    if (prefix == NULL || child == NULL)
        goto error;
    ed = PyMem_Realloc(node->pedges, sizeof(router_pedge) * (node->n_pedges + 1));
    if (ed == NULL)
        goto error;
    node->pedges = ed;
    memmove(&ed[j + 1], &ed[j], sizeof(router_pedge) * (node->n_pedges - j));
    memcpy(prefix, p, n);
    ed[j].prefix = prefix;
    ed[j].len = n;
    ed[j].kind = kind;
    ed[j].child = child;
    node->n_pedges++;
    return child;
error:
    PyMem_Free(prefix);
    router_node_free(child);
    PyErr_NoMemory();
    return NULL;
}

static int router_endpoint_new(MatcherObject *m)
{
    if (m->n_endpoints == m->cap_endpoints) {
        int cap = m->cap_endpoints ? m->cap_endpoints * 2 : 16;
        router_endpoint *e = PyMem_Realloc(m->endpoints, sizeof(*e) * (size_t)cap);
        if (e == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        m->endpoints = e;
        m->cap_endpoints = cap;
    }
    memset(&m->endpoints[m->n_endpoints], 0, sizeof(router_endpoint));
    return m->n_endpoints++;
}

/* Find or create the static-table entry for key; returns the endpoint. */
static int router_table_endpoint(MatcherObject *m, const char *key, uint32_t len)
{
    uint64_t h = router_hash(key, len);
    uint32_t i, mask;
    int e;
    if ((m->table_used + 1) * 2 > m->table_cap) {
        uint32_t cap = m->table_cap ? m->table_cap * 2 : 64, j;
        router_slot *t = PyMem_Calloc(cap, sizeof(router_slot));
        if (t == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (j = 0; j < cap; j++)
            t[j].endpoint = -1;
        for (j = 0; j < m->table_cap; j++) {
            router_slot *s = &m->table[j];
            uint32_t k;
            if (s->endpoint < 0)
                continue;
            for (k = (uint32_t)s->hash & (cap - 1); t[k].endpoint >= 0; k = (k + 1) & (cap - 1))
                ;
            t[k] = *s;
        }
        PyMem_Free(m->table);
        m->table = t;
        m->table_cap = cap;
    }
    mask = m->table_cap - 1;
    for (i = (uint32_t)h & mask; m->table[i].endpoint >= 0; i = (i + 1) & mask) {
        router_slot *s = &m->table[i];
        if (s->hash == h && s->len == len && router_key_eq(s->key, key, len))
            return s->endpoint;
    }
    e = router_endpoint_new(m);
    if (e < 0)
        return -1;
    m->table[i].key = PyMem_Malloc(len ? len : 1);
    if (m->table[i].key == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(m->table[i].key, key, len);
    m->table[i].hash = h;
    m->table[i].len = len;
    m->table[i].endpoint = e;
    m->table_used++;
    return e;
}

static const char *const router_method_names[] = {
    NULL, "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
    "CONNECT", "TRACE"};

static int router_method_id(PyObject *s)
{
    int i;
    for (i = 1; i <= H1_M_TRACE; i++)
        if (PyUnicode_CompareWithASCIIString(s, router_method_names[i]) == 0)
            return i;
    return 0;
}

/* Recompute the Allow value of an endpoint: its methods, sorted.  A route
 * with no method set takes every method but TRACE (and CONNECT, which no
 * route sees): the 405 to TRACE lists the standard ones. */
static int router_endpoint_allow(router_endpoint *e)
{
    PyObject *names = PySet_New(NULL), *lst = NULL, *sep = NULL, *s = NULL;
    int i, rc = -1;
    if (names == NULL)
        goto done;
    for (i = 1; i <= H1_M_TRACE; i++) {
        if (e->by_method[i] == NULL &&
            (e->by_method[0] == NULL || i == H1_M_CONNECT || i == H1_M_TRACE))
            continue;
        s = PyUnicode_FromString(router_method_names[i]);
        if (s == NULL || PySet_Add(names, s) < 0)
            goto done;
        Py_CLEAR(s);
    }
    if (e->by_method[H1_M_GET] != NULL) {
        s = PyUnicode_FromString("HEAD");
        if (s == NULL || PySet_Add(names, s) < 0)
            goto done;
        Py_CLEAR(s);
    }
    /* OPTIONS is answered automatically when no route takes it */
    s = PyUnicode_FromString("OPTIONS");
    if (s == NULL || PySet_Add(names, s) < 0)
        goto done;
    Py_CLEAR(s);
    if (e->other != NULL) {
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(e->other, &pos, &k, &v))
            if (PySet_Add(names, k) < 0)
                goto done;
    }
    lst = PySequence_List(names);
    if (lst == NULL || PyList_Sort(lst) < 0)
        goto done;
    sep = PyUnicode_FromString(", ");
    if (sep == NULL)
        goto done;
    s = PyUnicode_Join(sep, lst);
    if (s == NULL)
        goto done;
    Py_XSETREF(e->allow, s);
    s = NULL;
    rc = 0;
done:
    Py_XDECREF(names);
    Py_XDECREF(lst);
    Py_XDECREF(sep);
    Py_XDECREF(s);
    return rc;
}

/* Put route into endpoint e for each of its methods; a method taken twice
 * is a ValueError (an ambiguous route table fails at start-up). */
static int router_endpoint_add(router_endpoint *e, RouteObject *route)
{
    PyObject *it = NULL, *meth;
    int id;
    if (route->methods == Py_None) {
        if (e->by_method[0] != NULL) {
            PyErr_Format(PyExc_ValueError,
                         "route %R is defined twice for any method", route->pattern);
            return -1;
        }
        Py_INCREF(route);
        e->by_method[0] = route;
        return router_endpoint_allow(e);
    }
    it = PyObject_GetIter(route->methods);
    if (it == NULL)
        return -1;
    while ((meth = PyIter_Next(it)) != NULL) {
        if (!PyUnicode_Check(meth)) {
            PyErr_SetString(PyExc_TypeError, "methods must be str");
            goto error;
        }
        id = router_method_id(meth);
        if (id != 0) {
            if (e->by_method[id] != NULL) {
                PyErr_Format(PyExc_ValueError, "route %R is defined twice for %U",
                             route->pattern, meth);
                goto error;
            }
            Py_INCREF(route);
            e->by_method[id] = route;
        } else {
            if (e->other == NULL && (e->other = PyDict_New()) == NULL)
                goto error;
            if (PyDict_Contains(e->other, meth)) {
                PyErr_Format(PyExc_ValueError, "route %R is defined twice for %U",
                             route->pattern, meth);
                goto error;
            }
            if (PyDict_SetItem(e->other, meth, (PyObject *)route) < 0)
                goto error;
        }
        Py_DECREF(meth);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return -1;
    return router_endpoint_allow(e);
error:
    Py_XDECREF(meth);
    Py_DECREF(it);
    return -1;
}

/* ========================================================================
 * Matcher type
 */

static PyObject *router_matcher_new(PyTypeObject *tp, PyObject *a, PyObject *k)
{
    MatcherObject *m = (MatcherObject *)tp->tp_alloc(tp, 0);
    if (m == NULL)
        return NULL;
    m->root = router_node_new();
    m->routes = PyList_New(0);
    if (m->root == NULL || m->routes == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    return (PyObject *)m;
}

static int router_matcher_traverse(MatcherObject *m, visitproc visit, void *arg)
{
    int i, j;
    Py_VISIT(Py_TYPE(m));
    Py_VISIT(m->routes);
    Py_VISIT(m->allows);
    for (i = 0; i < m->n_endpoints; i++) {
        for (j = 0; j <= H1_M_TRACE; j++)
            Py_VISIT(m->endpoints[i].by_method[j]);
        Py_VISIT(m->endpoints[i].other);
    }
    return 0;
}

static int router_matcher_clear(MatcherObject *m)
{
    int i, j;
    Py_CLEAR(m->routes);
    Py_CLEAR(m->allows);
    for (i = 0; i < m->n_endpoints; i++) {
        for (j = 0; j <= H1_M_TRACE; j++)
            Py_CLEAR(m->endpoints[i].by_method[j]);
        Py_CLEAR(m->endpoints[i].other);
        Py_CLEAR(m->endpoints[i].allow);
    }
    return 0;
}

static void router_matcher_dealloc(MatcherObject *m)
{
    PyTypeObject *tp = Py_TYPE(m);
    uint32_t i;
    PyObject_GC_UnTrack(m);
    router_matcher_clear(m);
    PyMem_Free(m->endpoints);
    for (i = 0; i < m->table_cap; i++)
        if (m->table[i].endpoint >= 0)
            PyMem_Free(m->table[i].key);
    PyMem_Free(m->table);
    router_node_free(m->root);
    tp->tp_free(m);
    Py_DECREF(tp);
}

/* add(route, segments): segments is a list of str (literal) and int (kind).
 * A pattern with no parameter goes to the static table under `pattern`. */
static PyObject *router_matcher_add(MatcherObject *m, PyObject *args)
{
    PyObject *route, *segs, *key = NULL;
    Py_ssize_t i, n;
    router_node *node;
    int e = -1, has_param = 0;
    fulmen_state *st = mod_state_of_type(Py_TYPE(m));
    if (st == NULL)
        return NULL;
    if (!PyArg_ParseTuple(args, "O!O!|U", st->RouteType, &route, &PyList_Type, &segs, &key))
        return NULL;
    n = PyList_GET_SIZE(segs);
    for (i = 0; i < n; i++)
        if (!PyUnicode_Check(PyList_GET_ITEM(segs, i)))
            has_param = 1;
    if (!has_param) {
        Py_ssize_t len;
        const char *p = PyUnicode_AsUTF8AndSize(key ? key : ((RouteObject *)route)->pattern, &len);
        if (p == NULL)
            return NULL;
        e = router_table_endpoint(m, p, (uint32_t)len);
        if (e < 0)
            return NULL;
    } else {
        node = m->root;
        for (i = 0; i < n; i++) {
            PyObject *s = PyList_GET_ITEM(segs, i), *prefix = NULL;
            if (PyTuple_Check(s)) {
                /* (prefix, kind) */
                if (PyTuple_GET_SIZE(s) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(s, 0)) ||
                    !PyLong_Check(PyTuple_GET_ITEM(s, 1))) {
                    PyErr_SetString(PyExc_TypeError, "a prefixed segment is (str, int)");
                    return NULL;
                }
                prefix = PyTuple_GET_ITEM(s, 0);
                s = PyTuple_GET_ITEM(s, 1);
            }
            if (PyLong_Check(s)) {
                long kind = PyLong_AsLong(s);
                if (kind < 0 || kind >= ROUTER_P_KINDS) {
                    PyErr_SetString(PyExc_ValueError, "bad parameter kind");
                    return NULL;
                }
                if (kind == ROUTER_P_PATH && i != n - 1) {
                    PyErr_Format(PyExc_ValueError,
                                 "route %R: a {name:path} parameter must be last",
                                 ((RouteObject *)route)->pattern);
                    return NULL;
                }
                if (prefix != NULL && PyUnicode_GET_LENGTH(prefix) > 0) {
                    Py_ssize_t plen;
                    const char *p = PyUnicode_AsUTF8AndSize(prefix, &plen);
                    if (p == NULL)
                        return NULL;
                    if (memchr(p, '/', (size_t)plen) != NULL) {
                        PyErr_SetString(PyExc_ValueError, "a prefix cannot hold '/'");
                        return NULL;
                    }
                    node = router_pedge_child(node, p, (uint32_t)plen, (int)kind);
                    if (node == NULL)
                        return NULL;
                    continue;
                }
                if (node->param[kind] == NULL &&
                    (node->param[kind] = router_node_new()) == NULL)
                    return NULL;
                node = node->param[kind];
            } else if (!PyUnicode_Check(s)) {
                PyErr_SetString(PyExc_TypeError, "a segment is a str, an int or a tuple");
                return NULL;
            } else {
                Py_ssize_t len;
                uint32_t j;
                const char *p = PyUnicode_AsUTF8AndSize(s, &len);
                router_edge *ed;
                if (p == NULL)
                    return NULL;
                int found;
                char *seg;
                router_node *child;
                j = router_edge_find(node, p, (uint32_t)len, &found);
                if (!found) {
                    seg = PyMem_Malloc(len ? (size_t)len : 1);
                    child = router_node_new();
                    ed = PyMem_Realloc(node->edges, sizeof(router_edge) * (node->n_edges + 1));
                    if (seg == NULL || child == NULL || ed == NULL) {
                        PyMem_Free(seg);
                        router_node_free(child);
                        if (ed != NULL)
                            node->edges = ed;
                        return PyErr_NoMemory();
                    }
                    node->edges = ed;
                    memmove(&ed[j + 1], &ed[j], sizeof(router_edge) * (node->n_edges - j));
                    memcpy(seg, p, (size_t)len);
                    ed[j].seg = seg;
                    ed[j].len = (uint32_t)len;
                    ed[j].child = child;
                    node->n_edges++;
                }
                node = node->edges[j].child;
            }
        }
        if (node->endpoint < 0) {
            e = router_endpoint_new(m);
            if (e < 0)
                return NULL;
            node->endpoint = e;
        }
        e = node->endpoint;
    }
    if (router_endpoint_add(&m->endpoints[e], (RouteObject *)route) < 0)
        return NULL;
    if (PyList_Append(m->routes, route) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- matching ---- */

static int router_seg_ok(int kind, const char *s, size_t n)
{
    size_t i = 0;
    int dot = 0, digits = 0;
    switch (kind) {
    case ROUTER_P_STR:
        return n > 0;
    case ROUTER_P_INT:
        if (n > 0 && s[0] == '-')
            i = 1;
        if (i == n || n - i > 18)
            return 0;
        for (; i < n; i++)
            if (s[i] < '0' || s[i] > '9')
                return 0;
        return 1;
    case ROUTER_P_FLOAT:
        if (n > 0 && s[0] == '-')
            i = 1;
        if (n - i > 64)
            return 0;
        for (; i < n; i++) {
            if (s[i] == '.' && !dot)
                dot = 1;
            else if (s[i] >= '0' && s[i] <= '9')
                digits++;
            else
                return 0;
        }
        return digits > 0;
    case ROUTER_P_UUID:
        if (n != 36)
            return 0;
        for (i = 0; i < 36; i++) {
            char c = s[i];
            if (i == 8 || i == 13 || i == 18 || i == 23) {
                if (c != '-')
                    return 0;
            } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                         (c >= 'A' && c <= 'F'))) {
                return 0;
            }
        }
        return 1;
    }
    return 0;
}


/* Percent-decode s[0..n) into out, which has room for n bytes; returns
 * the length. */
static size_t router_unquote(const char *s, size_t n, char *out)
{
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        int v = mod_pct_at(s, i, n);
        if (v >= 0) {
            out[o++] = (char)v;
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    return o;
}

/* The number of bytes of s[0..n) (raw, percent-encoded) that spell
 * prefix[0..pl) once decoded, or 0 when they do not: a prefix is compared
 * the way literal segments are, so "/user%2D5" reaches /user-{id}. */
static size_t router_prefix_decoded(const char *s, size_t n, const char *prefix, size_t pl)
{
    size_t i = 0, k;
    for (k = 0; k < pl; k++) {
        int v;
        unsigned char c;
        if (i >= n)
            return 0;
        if ((v = mod_pct_at(s, i, n)) >= 0) {
            c = (unsigned char)v;
            i += 3;
        } else {
            c = (unsigned char)s[i++];
        }
        if (c != (unsigned char)prefix[k])
            return 0;
    }
    return i;
}

/* What a request asks of the endpoints its path reaches: a route for its
 * method.  The walk goes past an endpoint without one (as Japronto's
 * matcher went past a route for other methods) and notes it for the 405's
 * Allow. */
#define ROUTER_SEEN 8
typedef struct {
    MatcherObject *m;
    int method_id;
    const char *method;
    size_t mlen;
    RouteObject *route;         /* the route taken */
    int n_seen;                 /* endpoints of the path without the method */
    int seen[ROUTER_SEEN];
} router_want;

/* The route of endpoint ep for the method, or NULL. */
static RouteObject *router_endpoint_route(router_endpoint *ep, int method_id,
                                          const char *method, size_t mlen)
{
    RouteObject *r = ep->by_method[method_id];
    if (r == NULL && method_id == H1_M_HEAD)
        r = ep->by_method[H1_M_GET];
    if (r == NULL && method_id == H1_M_OTHER && ep->other != NULL) {
        PyObject *ms = PyUnicode_DecodeLatin1(method, (Py_ssize_t)mlen, NULL);
        if (ms != NULL) {
            r = (RouteObject *)PyDict_GetItemWithError(ep->other, ms);
            Py_DECREF(ms);
        }
        PyErr_Clear();
    }
    /* TRACE echoes the request, its Cookie and Authorization too (cross-site
     * tracing): only a route that lists it gets it */
    if (r == NULL && method_id != H1_M_TRACE)
        r = ep->by_method[0];
    return r;
}

/* Endpoint e (or -1) found for the path: e when it has a route for the
 * method (in w->route), else -1, the walk going on. */
static inline int router_take(router_want *w, int e)
{
    if (e < 0)
        return -1;
    w->route = router_endpoint_route(&w->m->endpoints[e], w->method_id, w->method, w->mlen);
    if (LIKELY(w->route != NULL))
        return e;
    if (w->n_seen < ROUTER_SEEN)
        w->seen[w->n_seen++] = e;
    return -1;
}

static int router_walk(router_want *w, router_node *node, const char *path, size_t pos,
                       size_t len, h1_span *params, int np, int *n_params);

/* Try the prefixed parameters of node from index *j on, for the segment
 * path[pos..end), stopping before the first {x:path} one (one_seg) or
 * trying only those (!one_seg); *j is left at the first one not tried.
 * Returns the endpoint or -1. */
static NOINLINE int router_walk_prefixed(router_want *w, router_node *node, uint32_t *j,
                                         int one_seg, const char *path, size_t pos,
                                         size_t end, size_t len, h1_span *params, int np,
                                         int *n_params)
{
    int pct = memchr(path + pos, '%', end - pos) != NULL, e;
    for (; *j < node->n_pedges; (*j)++) {
        const router_pedge *pe = &node->pedges[*j];
        size_t at;
        if ((pe->kind == ROUTER_P_PATH) == one_seg)
            break;
        if (end - pos >= pe->len && memcmp(path + pos, pe->prefix, pe->len) == 0)
            at = pos + pe->len;
        else if (pct && (at = router_prefix_decoded(path + pos, end - pos, pe->prefix,
                                                   pe->len)) > 0)
            at += pos;
        else
            continue;
        params[np].off = (uint32_t)at;
        if (pe->kind == ROUTER_P_PATH) {
            if (at >= len || router_take(w, pe->child->endpoint) < 0)
                continue;
            params[np].len = (uint32_t)(len - at);
            *n_params = np + 1;
            return pe->child->endpoint;
        }
        if (!router_seg_ok(pe->kind, path + at, end - at))
            continue;
        params[np].len = (uint32_t)(end - at);
        e = router_walk(w, pe->child, path, end + 1, len, params, np + 1, n_params);
        if (e >= 0)
            return e;
    }
    return -1;
}

/* Depth-first match of path[pos..len) below node; returns the endpoint
 * index or -1.  Literal edges first, then prefixed parameters, then typed
 * parameters, then {name}, then prefixed {x:path}, then {name:path}. */
static int router_walk(router_want *w, router_node *node, const char *path, size_t pos,
                       size_t len, h1_span *params, int np, int *n_params)
{
    size_t end;
    uint32_t j;
    int e;
    static const int order[] = {ROUTER_P_INT, ROUTER_P_FLOAT, ROUTER_P_UUID, ROUTER_P_STR};
    if (pos > len) {
        if (router_take(w, node->endpoint) < 0)
            return -1;
        *n_params = np;
        return node->endpoint;
    }
    end = pos;
    while (end < len && path[end] != '/')
        end++;
    if (node->n_edges > 0) {
        int found;
        j = router_edge_find(node, path + pos, (uint32_t)(end - pos), &found);
        if (found) {
            e = router_walk(w, node->edges[j].child, path, end + 1, len, params, np,
                            n_params);
            if (e >= 0)
                return e;
        }
    }
    if (UNLIKELY(node->n_edges > 0 && memchr(path + pos, '%', end - pos) != NULL)) {
        /* a percent-encoded segment: compare its decoded form with the
         * literals ("%2F" decodes to '/', which no literal holds); decoded,
         * it is no longer than it was */
        char small[256], *dec = small;
        if (end - pos > sizeof(small))
            dec = PyMem_Malloc(end - pos);
        if (dec != NULL) {
            size_t dl = router_unquote(path + pos, end - pos, dec);
            int found;
            j = router_edge_find(node, dec, (uint32_t)dl, &found);
            e = found ? router_walk(w, node->edges[j].child, path, end + 1, len, params, np,
                                    n_params)
                      : -1;
            if (dec != small)
                PyMem_Free(dec);
            if (e >= 0)
                return e;
        }
    }
    if (np < FULMEN_MAX_PARAMS) {
        int k;
        uint32_t pj = 0;
        if (UNLIKELY(node->n_pedges > 0)) {
            e = router_walk_prefixed(w, node, &pj, 1, path, pos, end, len, params, np,
                                     n_params);
            if (e >= 0)
                return e;
        }
        for (k = 0; k < 4; k++) {
            router_node *child = node->param[order[k]];
            if (child == NULL || !router_seg_ok(order[k], path + pos, end - pos))
                continue;
            params[np].off = (uint32_t)pos;
            params[np].len = (uint32_t)(end - pos);
            e = router_walk(w, child, path, end + 1, len, params, np + 1, n_params);
            if (e >= 0)
                return e;
        }
        if (UNLIKELY(pj < node->n_pedges)) {
            e = router_walk_prefixed(w, node, &pj, 0, path, pos, end, len, params, np,
                                     n_params);
            if (e >= 0)
                return e;
        }
        if (node->param[ROUTER_P_PATH] != NULL && len > pos &&
            router_take(w, node->param[ROUTER_P_PATH]->endpoint) >= 0) {
            params[np].off = (uint32_t)pos;
            params[np].len = (uint32_t)(len - pos);
            *n_params = np + 1;
            return node->param[ROUTER_P_PATH]->endpoint;
        }
    }
    return -1;
}

/* The endpoint of the static route keyed key[0..len), or -1 (the table
 * exists: table_cap > 0). */
static inline int router_table_find(MatcherObject *m, const char *key, size_t len)
{
    uint64_t h = router_hash(key, len);
    uint32_t mask = m->table_cap - 1, i;
    for (i = (uint32_t)h & mask; m->table[i].endpoint >= 0; i = (i + 1) & mask) {
        router_slot *s = &m->table[i];
        if (s->hash == h && s->len == len && router_key_eq(s->key, key, len))
            return s->endpoint;
    }
    return -1;
}

/* The static route of path's canonical spelling, or -1: the spelling
 * router.py registers a static route under (urllib.parse.quote, safe
 * "/!$&'()*+,;=:@-._~"), so that "/lo%76e", "/a%3Ab" and "/caf%c3%a9" find
 * /love, /a:b and /café as the decoded path would (RFC 3986 6.2.2).  An
 * escape of a character quote() leaves alone is decoded, any other escape
 * upper-cased; "%2F" stays an escape, since it never separates segments. */
static NOINLINE int router_table_canonical(MatcherObject *m, const char *path, size_t len)
{
    /* the canonical spelling is no longer than path: an escape stays one
     * or becomes one character */
    char small[2048], *out = small;
    size_t i, o = 0;
    int e;
    if (len > sizeof(small) && (out = PyMem_Malloc(len)) == NULL)
        return -1;
    for (i = 0; i < len; i++) {
        int v = mod_pct_at(path, i, len);
        unsigned char c;
        if (v < 0) {
            out[o++] = path[i];
            continue;
        }
        c = (unsigned char)v;
        i += 2;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            (c != 0 && strchr("-._~!$&'()*+,;=:@", c) != NULL)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = "0123456789ABCDEF"[c >> 4];
            out[o++] = "0123456789ABCDEF"[c & 15];
        }
    }
    e = router_table_find(m, out, o);
    if (out != small)
        PyMem_Free(out);
    return e;
}

/* The Allow of a 405 whose path reached the endpoints w->seen, none with a
 * route for the method: theirs merged (the target supports every method
 * one of them takes), made once per set and kept.  Borrowed; NULL when
 * out of memory. */
static NOINLINE PyObject *router_allow(router_want *w)
{
    MatcherObject *m = w->m;
    PyObject *key = NULL, *names = NULL, *lst = NULL, *sep = NULL, *s = NULL, *r = NULL;
    int i;
    if (w->n_seen == 1)
        return m->endpoints[w->seen[0]].allow;
    if (m->allows == NULL && (m->allows = PyDict_New()) == NULL)
        goto done;
    if ((key = PyTuple_New(w->n_seen)) == NULL)
        goto done;
    for (i = 0; i < w->n_seen; i++) {
        PyObject *n = PyLong_FromLong(w->seen[i]);
        if (n == NULL)
            goto done;
        PyTuple_SET_ITEM(key, i, n);
    }
    r = PyDict_GetItemWithError(m->allows, key);
    if (r != NULL || PyErr_Occurred())
        goto done;
    if ((names = PySet_New(NULL)) == NULL || (sep = PyUnicode_FromString(", ")) == NULL)
        goto done;
    for (i = 0; i < w->n_seen; i++) {
        PyObject *parts = PyUnicode_Split(m->endpoints[w->seen[i]].allow, sep, -1);
        Py_ssize_t k;
        if (parts == NULL)
            goto done;
        for (k = 0; k < PyList_GET_SIZE(parts); k++)
            if (PySet_Add(names, PyList_GET_ITEM(parts, k)) < 0) {
                Py_DECREF(parts);
                goto done;
            }
        Py_DECREF(parts);
    }
    if ((lst = PySequence_List(names)) == NULL || PyList_Sort(lst) < 0 ||
        (s = PyUnicode_Join(sep, lst)) == NULL || PyDict_SetItem(m->allows, key, s) < 0)
        goto done;
    r = s; /* the dict holds it */
done:
    if (r == NULL)
        PyErr_Clear();
    Py_XDECREF(key);
    Py_XDECREF(names);
    Py_XDECREF(lst);
    Py_XDECREF(sep);
    Py_XDECREF(s);
    return r;
}

RouteObject *router_match(PyObject *matcher, const char *path, size_t len,
                          int method_id, const char *method, size_t mlen,
                          h1_span *params, int *n_params, PyObject **allow)
{
    router_want w;
    MatcherObject *m = (MatcherObject *)matcher;
    int e = -1;
    w.m = m;
    w.method_id = method_id;
    w.method = method;
    w.mlen = mlen;
    w.route = NULL;
    w.n_seen = 0;
    *n_params = 0;
    *allow = NULL;
    if (m->table_cap)
        e = router_take(&w, router_table_find(m, path, len));
    if (UNLIKELY(e < 0 && m->table_cap && memchr(path, '%', len) != NULL))
        e = router_take(&w, router_table_canonical(m, path, len));
    if (e < 0 && len > 0 && path[0] == '/')
        e = router_walk(&w, m->root, path, 1, len, params, 0, n_params);
    if (e >= 0)
        return w.route;
    if (w.n_seen > 0)
        *allow = router_allow(&w);
    return NULL;
}

/* match(path, method) -> (route, [param strs]) or (None, allow): for tests */
static PyObject *router_matcher_match(MatcherObject *m, PyObject *args)
{
    const char *path, *method;
    Py_ssize_t plen, mlen;
    h1_span params[FULMEN_MAX_PARAMS];
    int np = 0, i;
    PyObject *ms, *allow, *lst;
    RouteObject *r;
    if (!PyArg_ParseTuple(args, "s#U", &path, &plen, &ms) ||
        (method = PyUnicode_AsUTF8AndSize(ms, &mlen)) == NULL)
        return NULL;
    r = router_match((PyObject *)m, path, (size_t)plen, router_method_id(ms), method,
                     (size_t)mlen, params, &np, &allow);
    if (r == NULL)
        return Py_BuildValue("(OO)", Py_None, allow ? allow : Py_None);
    lst = PyList_New(np);
    if (lst == NULL)
        return NULL;
    for (i = 0; i < np; i++)
        PyList_SET_ITEM(lst, i, PyUnicode_FromStringAndSize(path + params[i].off,
                                                            params[i].len));
    return Py_BuildValue("(ON)", (PyObject *)r, lst);
}

static PyMethodDef router_matcher_methods[] = {
    {"add", (PyCFunction)router_matcher_add, METH_VARARGS,
     "add(route, segments): register a route."},
    {"match", (PyCFunction)router_matcher_match, METH_VARARGS,
     "match(path, method) -> (route, params) or (None, allow)."},
    {NULL},
};

static PyType_Slot router_matcher_slots[] = {
    {Py_tp_new, router_matcher_new},
    {Py_tp_dealloc, router_matcher_dealloc},
    {Py_tp_traverse, router_matcher_traverse},
    {Py_tp_clear, router_matcher_clear},
    {Py_tp_methods, router_matcher_methods},
    {0, NULL},
};

PyType_Spec router_matcher_spec = {
    .name = "fulmen._core.Matcher",
    .basicsize = sizeof(MatcherObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = router_matcher_slots,
};
