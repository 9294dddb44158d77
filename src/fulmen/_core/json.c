/*
 * json.c - JSON in C: the decoder behind request.json and the encoder behind
 * Response(json=...).
 *
 * The decoder accepts what json.loads() accepts with its defaults (RFC 8259
 * plus NaN, Infinity and -Infinity; duplicate keys: the last wins; lone
 * surrogate escapes kept as lone surrogates; control characters in strings
 * rejected) and returns the same objects.  Its input is the body's bytes,
 * validated as UTF-8 inside strings (everything outside strings must be
 * ASCII anyway).  Inputs json.loads would decode as UTF-16/32 go to
 * json.loads itself.  Every error is a fulmen.InvalidJSON, a subclass of
 * both fulmen.BadRequest and json.JSONDecodeError, with json.loads' message
 * and position (in characters).
 *
 * The encoder writes exactly json.dumps(obj) with its defaults for exact
 * dict, list, tuple, str, int, float, bool and None, and says "fall back"
 * for anything else.
 */
#include "common.h"

#include <math.h>

#define JSON_MAX_DEPTH 1000 /* containers nested deeper are an error */
#define JSON_KEY_MAX 24     /* longest key the key cache holds */
#define JSON_STACK_INLINE 256

/* ========================================================================
 * Byte scanning, 8 bytes at a time
 */

#define JSON_ONES 0x0101010101010101ULL
#define JSON_HIGHS 0x8080808080808080ULL

INLINE uint64_t json_load8(const unsigned char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    x = __builtin_bswap64(x);
#endif
    return x;
}

/* Marks (high bit of a byte) the bytes of x that are zero.  Bytes above the
 * lowest true mark may be marked falsely (borrow), so only the lowest mark
 * is exact: callers use ctz on the result. */
INLINE uint64_t json_zero_bytes(uint64_t x)
{
    return (x - JSON_ONES) & ~x & JSON_HIGHS;
}

/* Decoder: '"', '\\', < 0x20 or >= 0x80; lowest mark exact. */
INLINE uint64_t json_dec_special8(uint64_t x)
{
    return json_zero_bytes(x ^ (JSON_ONES * '"')) |
           json_zero_bytes(x ^ (JSON_ONES * '\\')) |
           ((x - JSON_ONES * 0x20) & ~x & JSON_HIGHS) | (x & JSON_HIGHS);
}

/* The first byte in [p, end) that is '"', '\\', a control character or
 * not ASCII, or end. */
INLINE const unsigned char *json_scan_plain(const unsigned char *p,
                                            const unsigned char *end)
{
    while (end - p >= 8) {
        uint64_t m = json_dec_special8(json_load8(p));
        if (m)
            return p + (__builtin_ctzll(m) >> 3);
        p += 8;
    }
    while (p < end && *p != '"' && *p != '\\' && *p >= 0x20 && *p < 0x80)
        p++;
    return p;
}

/* ========================================================================
 * Decoder
 */

typedef struct {
    fulmen_state *st;
    const unsigned char *start; /* first byte of the text (after a BOM) */
    const unsigned char *end;
    int depth;
    /* values of the open containers: each container pushes its items (or
     * key, value pairs) and builds itself from them when it closes, so that
     * lists and dicts get their final size at once */
    PyObject **stack;
    Py_ssize_t top, cap;
    PyObject *inline_stack[JSON_STACK_INLINE];
} json_dec;

/* What the first pass over a string found. */
typedef struct {
    Py_ssize_t nchars;
    Py_UCS4 maxchar;
    int plain; /* ASCII without escapes: the bytes are the characters */
} json_str_info;

static PyObject *json_dec_value(json_dec *d, const unsigned char **pp);

/* The character offset of byte position at (json.loads reports positions
 * in characters of the decoded text).  The prefix before at is valid UTF-8
 * whenever an error is reported there. */
static Py_ssize_t json_char_pos(json_dec *d, const unsigned char *at)
{
    const unsigned char *q;
    Py_ssize_t n = 0;
    for (q = d->start; q < at; q++)
        n += (*q & 0xC0) != 0x80;
    return n;
}

/* Raise exc, an InvalidJSON.  Its str() stays what request.json has always
 * said ("request body is not valid JSON"); json.loads' details are in
 * .msg, .pos, .lineno and .colno. */
static void json_raise(fulmen_state *st, PyObject *exc)
{
    PyObject *args = Py_BuildValue("(s)", "request body is not valid JSON");
    if (args == NULL || PyObject_SetAttrString(exc, "args", args) < 0) {
        Py_XDECREF(args);
        return;
    }
    Py_DECREF(args);
    PyErr_SetObject(st->InvalidJSON, exc);
}

/* Set fulmen.InvalidJSON(msg, doc, pos) for an error at byte position at,
 * chained to the exception being handled, if any.  Always returns NULL. */
static NOINLINE PyObject *json_error(json_dec *d, const char *msg,
                                     const unsigned char *at)
{
    PyObject *cause = NULL, *doc = NULL, *exc = NULL;
    Py_ssize_t pos = json_char_pos(d, at);
    if (PyErr_Occurred()) {
        PyObject *t, *tb;
        PyErr_Fetch(&t, &cause, &tb);
        PyErr_NormalizeException(&t, &cause, &tb);
        Py_XDECREF(t);
        Py_XDECREF(tb);
    }
    doc = PyUnicode_DecodeUTF8((const char *)d->start, d->end - d->start,
                               "replace");
    if (doc == NULL)
        goto cleanup;
    exc = PyObject_CallFunction(d->st->InvalidJSON, "sOn", msg, doc, pos);
    if (exc == NULL)
        goto cleanup;
    if (cause != NULL) {
        PyException_SetCause(exc, cause);
        cause = NULL;
    }
    json_raise(d->st, exc);
cleanup:
    Py_XDECREF(cause);
    Py_XDECREF(doc);
    Py_XDECREF(exc);
    return NULL;
}

/* InvalidJSON from the ValueError being handled (e.g. an int over
 * sys.get_int_max_str_digits()), keeping its message. */
static NOINLINE PyObject *json_error_from_value(json_dec *d,
                                                const unsigned char *at)
{
    PyObject *t, *v, *tb, *s;
    const char *msg;
    if (!PyErr_ExceptionMatches(PyExc_ValueError))
        return NULL;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    s = v != NULL ? PyObject_Str(v) : NULL;
    msg = s != NULL ? PyUnicode_AsUTF8(s) : NULL;
    PyErr_Clear();
    PyErr_Restore(t, v, tb);
    json_error(d, msg != NULL ? msg : "Invalid number", at);
    Py_XDECREF(s);
    return NULL;
}

INLINE const unsigned char *json_skip_ws(const unsigned char *p,
                                         const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

static NOINLINE int json_stack_grow(json_dec *d)
{
    Py_ssize_t cap = d->cap * 2;
    PyObject **s;
    if (d->stack == d->inline_stack) {
        s = PyMem_Malloc((size_t)cap * sizeof(PyObject *));
        if (s != NULL)
            memcpy(s, d->stack, (size_t)d->top * sizeof(PyObject *));
    } else {
        s = PyMem_Realloc(d->stack, (size_t)cap * sizeof(PyObject *));
    }
    if (s == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    d->stack = s;
    d->cap = cap;
    return 0;
}

/* Push a new reference (stolen, also on failure). */
INLINE int json_push(json_dec *d, PyObject *o)
{
    if (UNLIKELY(d->top == d->cap) && json_stack_grow(d) < 0) {
        Py_DECREF(o);
        return -1;
    }
    d->stack[d->top++] = o;
    return 0;
}

/* ---- strings ---------------------------------------------------------- */


/* The 4 hex digits at p (p + 4 <= end checked by the caller), or -1. */
INLINE int json_hex4(const unsigned char *p)
{
    int a = mod_hexval(p[0]), b = mod_hexval(p[1]), c = mod_hexval(p[2]),
        e = mod_hexval(p[3]);
    if ((a | b | c | e) < 0)
        return -1;
    return (a << 12) | (b << 8) | (c << 4) | e;
}

/* Length of the valid UTF-8 sequence at p (2..4), or 0 when invalid,
 * truncated, overlong, a surrogate or above U+10FFFF.  *cp gets the code
 * point.  json.loads would take a surrogate's three bytes (it decodes bytes
 * with 'surrogatepass'); they are no UTF-8 (RFC 3629, RFC 8259 8.1). */
INLINE int json_utf8_seq(const unsigned char *p, const unsigned char *end,
                         Py_UCS4 *cp)
{
    unsigned char c = p[0];
    if (c >= 0xC2 && c <= 0xDF) {
        if (end - p < 2 || (p[1] & 0xC0) != 0x80)
            return 0;
        *cp = ((Py_UCS4)(c & 0x1F) << 6) | (p[1] & 0x3F);
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        if (end - p < 3 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80)
            return 0;
        *cp = ((Py_UCS4)(c & 0x0F) << 12) | ((Py_UCS4)(p[1] & 0x3F) << 6) |
              (p[2] & 0x3F);
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        if (end - p < 4 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return 0;
        *cp = ((Py_UCS4)(c & 0x07) << 18) | ((Py_UCS4)(p[1] & 0x3F) << 12) |
              ((Py_UCS4)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
        return 4;
    }
    return 0;
}

static NOINLINE const unsigned char *json_str_fail(json_dec *d, const char *msg,
                                                  const unsigned char *at)
{
    json_error(d, msg, at);
    return NULL;
}

/* First pass over the string whose opening quote is at q[-1]: validate it,
 * count its characters and find its largest one.  Returns the position of
 * the closing quote, or NULL with InvalidJSON set. */
static const unsigned char *json_str_scan(json_dec *d, const unsigned char *q,
                                          json_str_info *info)
{
    const unsigned char *open = q - 1, *end = d->end, *run;
    Py_ssize_t n = 0;
    Py_UCS4 maxc = 127;
    q = json_scan_plain(q, end);
    if (LIKELY(q < end && *q == '"')) {
        info->nchars = q - open - 1;
        info->maxchar = 127;
        info->plain = 1;
        return q;
    }
    n = q - open - 1;
    for (;;) {
        Py_UCS4 ch;
        if (UNLIKELY(q >= end))
            return json_str_fail(d, "Unterminated string starting at", open);
        if (*q == '"')
            break;
        if (*q == '\\') {
            if (end - q < 2)
                return json_str_fail(d, "Unterminated string starting at", open);
            switch (q[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n':
            case 'r': case 't':
                ch = 0;
                q += 2;
                break;
            case 'u': {
                /* json.loads wants one more character after the digits
                 * (the closing quote at least) before it reads them, and
                 * looks for the low half of a pair only when that holds
                 * for it as well */
                int v = end - q > 6 ? json_hex4(q + 2) : -1;
                if (v < 0)
                    return json_str_fail(d, "Invalid \\uXXXX escape", q + 1);
                ch = (Py_UCS4)v;
                q += 6;
                if (ch >= 0xD800 && ch <= 0xDBFF && end - q > 6 &&
                    q[0] == '\\' && q[1] == 'u') {
                    int lo = json_hex4(q + 2);
                    if (lo < 0)
                        return json_str_fail(d, "Invalid \\uXXXX escape", q + 1);
                    if (lo >= 0xDC00 && lo <= 0xDFFF) {
                        ch = 0x10000 + ((ch - 0xD800) << 10) + ((Py_UCS4)lo - 0xDC00);
                        q += 6;
                    }
                }
                break;
            }
            default:
                return json_str_fail(d, "Invalid \\escape", q);
            }
        } else if (*q < 0x20) {
            return json_str_fail(d, "Invalid control character at", q);
        } else {
            int k = json_utf8_seq(q, end, &ch);
            if (k == 0)
                return json_str_fail(d, "Invalid UTF-8 in string", q);
            q += k;
        }
        if (ch > maxc)
            maxc = ch;
        n++;
        run = q;
        q = json_scan_plain(q, end);
        n += q - run;
    }
    info->nchars = n;
    info->maxchar = maxc;
    info->plain = 0;
    return q;
}

/* Second pass: write the characters of the validated string body [s, e)
 * into data of the given kind. */
INLINE void json_str_fill(int kind, void *data, const unsigned char *s,
                          const unsigned char *e)
{
    Py_ssize_t i = 0;
    while (s < e) {
        Py_UCS4 ch = *s;
        if (ch == '\\') {
            switch (s[1]) {
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case 'n': ch = '\n'; break;
            case 'r': ch = '\r'; break;
            case 't': ch = '\t'; break;
            case 'u': ch = (Py_UCS4)json_hex4(s + 2); s += 4; break;
            default: ch = s[1]; break;
            }
            s += 2;
            if (ch >= 0xD800 && ch <= 0xDBFF && e - s >= 6 && s[0] == '\\' &&
                s[1] == 'u') {
                Py_UCS4 lo = (Py_UCS4)json_hex4(s + 2);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    ch = 0x10000 + ((ch - 0xD800) << 10) + (lo - 0xDC00);
                    s += 6;
                }
            }
        } else if (ch < 0x80) {
            s++;
        } else {
            s += json_utf8_seq(s, e, &ch);
        }
        PyUnicode_WRITE(kind, data, i, ch);
        i++;
    }
}

/* The str for a string whose opening quote is at q[-1]; *pp is set past
 * the closing quote. */
static PyObject *json_dec_str(json_dec *d, const unsigned char *q,
                              const unsigned char **pp)
{
    json_str_info info = {0, 127, 1};
    const unsigned char *close = json_str_scan(d, q, &info);
    PyObject *s;
    if (close == NULL)
        return NULL;
    *pp = close + 1;
    s = PyUnicode_New(info.nchars, info.maxchar);
    if (s == NULL)
        return NULL;
    if (info.plain)
        memcpy(PyUnicode_1BYTE_DATA(s), q, (size_t)info.nchars);
    else if (PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND)
        json_str_fill(PyUnicode_1BYTE_KIND, PyUnicode_DATA(s), q, close);
    else if (PyUnicode_KIND(s) == PyUnicode_2BYTE_KIND)
        json_str_fill(PyUnicode_2BYTE_KIND, PyUnicode_DATA(s), q, close);
    else
        json_str_fill(PyUnicode_4BYTE_KIND, PyUnicode_DATA(s), q, close);
    return s;
}

INLINE size_t json_key_slot(const unsigned char *p, size_t n)
{
    uint64_t h, a, b;
    if (n >= 8) {
        a = json_load8(p) ^ (json_load8(p + n - 8) * 0x9E3779B97F4A7C15ULL);
        b = json_load8(p + (n - 8) / 2);
        h = a ^ (b * 0xC2B2AE3D27D4EB4FULL);
    } else if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, p, 4);
        memcpy(&y, p + n - 4, 4);
        h = x | ((uint64_t)y << 32);
    } else if (n > 0) {
        h = p[0] | ((uint64_t)p[n / 2] << 8) | ((uint64_t)p[n - 1] << 16);
    } else {
        h = 0;
    }
    h ^= n;
    h *= 0x9E3779B97F4A7C15ULL;
    return (size_t)(h >> (64 - JSON_KEY_CACHE_BITS));
}

INLINE int json_key_is(PyObject *k, const unsigned char *q, size_t n)
{
    return k != NULL && (size_t)PyUnicode_GET_LENGTH(k) == n &&
           memcmp(PyUnicode_1BYTE_DATA(k), q, n) == 0;
}

/* An object key: short ASCII keys come from the key cache (interned str),
 * the rest is built like any string.  The cache is 2-way: a key lives in
 * the pair of slots {h, h ^ 1}, the newer one in slot h. */
static PyObject *json_dec_key(json_dec *d, const unsigned char *q,
                              const unsigned char **pp)
{
    const unsigned char *close = json_scan_plain(q, d->end);
    size_t n = (size_t)(close - q), slot;
    PyObject *k, **e0, **e1;
    if (UNLIKELY(close >= d->end || *close != '"' || n > JSON_KEY_MAX))
        return json_dec_str(d, q, pp);
    *pp = close + 1;
    slot = json_key_slot(q, n);
    e0 = &d->st->json_keys[slot];
    e1 = &d->st->json_keys[slot ^ 1];
    if (LIKELY(json_key_is(*e0, q, n))) {
        Py_INCREF(*e0);
        return *e0;
    }
    if (json_key_is(*e1, q, n)) {
        Py_INCREF(*e1);
        return *e1;
    }
    k = PyUnicode_New((Py_ssize_t)n, 127);
    if (k == NULL)
        return NULL;
    memcpy(PyUnicode_1BYTE_DATA(k), q, n);
    PyUnicode_InternInPlace(&k);
    Py_INCREF(k);
    if (*e0 != NULL) {
        Py_XDECREF(*e1); /* evict the older of the pair */
        *e1 = *e0;
    }
    *e0 = k;
    return k;
}

/* ---- numbers ---------------------------------------------------------- */

static const double json_pow10[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A number's text [s, e) that the fast paths did not take: big ints go
 * through PyLong_FromString, floats through PyOS_string_to_double (what
 * json.loads uses: correctly rounded). */
static NOINLINE PyObject *json_dec_number_slow(json_dec *d,
                                               const unsigned char *s,
                                               const unsigned char *e,
                                               int is_float)
{
    char small[64], *buf = small;
    size_t n = (size_t)(e - s);
    PyObject *res = NULL;
    if (n >= sizeof(small)) {
        buf = PyMem_Malloc(n + 1);
        if (buf == NULL)
            return PyErr_NoMemory();
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (is_float) {
        double v = PyOS_string_to_double(buf, NULL, NULL);
        if (!(v == -1.0 && PyErr_Occurred()))
            res = PyFloat_FromDouble(v);
    } else {
        res = PyLong_FromString(buf, NULL, 10);
        if (res == NULL)
            json_error_from_value(d, s);
    }
    if (buf != small)
        PyMem_Free(buf);
    return res;
}

/* A number at p (a digit or '-').  Returns NULL without an exception when
 * there is no number at p ("Expecting value"). */
static PyObject *json_dec_number(json_dec *d, const unsigned char **pp)
{
    const unsigned char *s = *pp, *p = s, *end = d->end, *digits;
    uint64_t m = 0;
    int neg = 0, is_float = 0, nd = 0, frac = 0;
    int64_t exp10 = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9')
        return NULL;
    digits = p;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            m = m * 10 + (uint64_t)(*p - '0');
            p++;
        }
        nd = (int)(p - digits) > 19 ? 99 : (int)(p - digits);
    }
    if (p + 1 < end && *p == '.' && p[1] >= '0' && p[1] <= '9') {
        const unsigned char *f = ++p;
        is_float = 1;
        while (p < end && *p >= '0' && *p <= '9') {
            if (m == 0 && *p == '0') {
                /* leading zeros of 0.000123 are not significant */
            } else if (nd < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                nd++;
            } else {
                nd = 99;
            }
            p++;
        }
        /* past 400 digits the count no longer fits the fast path's
         * exponent arithmetic: the slow path reads the text */
        if (p - f > 400)
            nd = 99;
        else
            frac = (int)(p - f);
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        const unsigned char *x = p + 1;
        int eneg = 0;
        if (x < end && (*x == '+' || *x == '-')) {
            eneg = *x == '-';
            x++;
        }
        if (x < end && *x >= '0' && *x <= '9') {
            is_float = 1;
            while (x < end && *x >= '0' && *x <= '9') {
                if (exp10 < 100000)
                    exp10 = exp10 * 10 + (*x - '0');
                x++;
            }
            if (eneg)
                exp10 = -exp10;
            p = x;
        }
    }
    *pp = p;
    if (!is_float) {
        if (LIKELY(nd <= 18))
            return PyLong_FromLongLong(neg ? -(long long)m : (long long)m);
        return json_dec_number_slow(d, s, p, 0);
    }
    /* Clinger's fast path: m < 2^53 and 10^|e| <= 10^22 are exact doubles,
     * so one IEEE multiplication or division rounds correctly and gives
     * what a correctly rounded strtod gives. */
    exp10 -= frac;
    if (nd <= 19 && m < (1ULL << 53) && exp10 >= -22 && exp10 <= 22) {
        double v = (double)m;
        v = exp10 >= 0 ? v * json_pow10[exp10] : v / json_pow10[-exp10];
        return PyFloat_FromDouble(neg ? -v : v);
    }
    return json_dec_number_slow(d, s, p, 1);
}

/* ---- containers ------------------------------------------------------- */

/* From 3.13, json.loads names a comma before ']' or '}' ("Illegal trailing
 * comma ...", at the comma); before, it expected a value or a key after it. */
#if PY_VERSION_HEX >= 0x030D0000
#define JSON_TRAILING_COMMA_MSG 1
#else
#define JSON_TRAILING_COMMA_MSG 0
#endif

static PyObject *json_dec_array(json_dec *d, const unsigned char **pp)
{
    const unsigned char *p = *pp, *end = d->end, *comma;
    Py_ssize_t base = d->top, n, i;
    PyObject *list, *v;
    p = json_skip_ws(p, end);
    if (p < end && *p == ']') {
        *pp = p + 1;
        return PyList_New(0);
    }
    for (;;) {
        v = json_dec_value(d, &p);
        if (v == NULL || json_push(d, v) < 0)
            return NULL;
        p = json_skip_ws(p, end);
        if (p < end && *p == ']')
            break;
        if (p >= end || *p != ',')
            return json_error(d, "Expecting ',' delimiter", p);
        comma = p;
        p = json_skip_ws(p + 1, end);
        if (UNLIKELY(JSON_TRAILING_COMMA_MSG && p < end && *p == ']'))
            return json_error(d, "Illegal trailing comma before end of array", comma);
    }
    *pp = p + 1;
    n = d->top - base;
    list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (i = 0; i < n; i++)
        PyList_SET_ITEM(list, i, d->stack[base + i]);
    d->top = base;
    return list;
}

static PyObject *json_dec_object(json_dec *d, const unsigned char **pp)
{
    const unsigned char *p = *pp, *end = d->end, *comma;
    Py_ssize_t base = d->top, n, i;
    PyObject *dict, *v;
    p = json_skip_ws(p, end);
    if (p < end && *p == '}') {
        *pp = p + 1;
        return PyDict_New();
    }
    for (;;) {
        if (p >= end || *p != '"')
            return json_error(d, "Expecting property name enclosed in double quotes", p);
        v = json_dec_key(d, p + 1, &p);
        if (v == NULL || json_push(d, v) < 0)
            return NULL;
        p = json_skip_ws(p, end);
        if (p >= end || *p != ':')
            return json_error(d, "Expecting ':' delimiter", p);
        p = json_skip_ws(p + 1, end);
        v = json_dec_value(d, &p);
        if (v == NULL || json_push(d, v) < 0)
            return NULL;
        p = json_skip_ws(p, end);
        if (p < end && *p == '}')
            break;
        if (p >= end || *p != ',')
            return json_error(d, "Expecting ',' delimiter", p);
        comma = p;
        p = json_skip_ws(p + 1, end);
        if (UNLIKELY(JSON_TRAILING_COMMA_MSG && p < end && *p == '}'))
            return json_error(d, "Illegal trailing comma before end of object", comma);
    }
    *pp = p + 1;
    n = (d->top - base) / 2;
#if PY_VERSION_HEX < 0x030D0000 /* private API, moved in 3.13 */
    dict = n > 5 ? _PyDict_NewPresized(n) : PyDict_New();
#else
    dict = PyDict_New();
#endif
    if (dict == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        if (PyDict_SetItem(dict, d->stack[base + 2 * i],
                           d->stack[base + 2 * i + 1]) < 0) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    for (i = base; i < d->top; i++)
        Py_DECREF(d->stack[i]);
    d->top = base;
    return dict;
}

/* ---- values ----------------------------------------------------------- */

INLINE int json_match(const unsigned char *p, const unsigned char *end,
                      const char *lit, size_t n)
{
    return (size_t)(end - p) >= n && memcmp(p, lit, n) == 0;
}

/* The value at *pp (whitespace already skipped); *pp is set past it.
 * Returns a new reference, or NULL with an exception set. */
static PyObject *json_dec_value(json_dec *d, const unsigned char **pp)
{
    const unsigned char *p = *pp, *end = d->end;
    PyObject *v;
    if (UNLIKELY(p >= end))
        return json_error(d, "Expecting value", p);
    switch (*p) {
    case '"':
        return json_dec_str(d, p + 1, pp);
    case '{':
    case '[':
        if (UNLIKELY(++d->depth > JSON_MAX_DEPTH))
            return json_error(d, "Maximum nesting depth exceeded", p);
        *pp = p + 1;
        v = *p == '{' ? json_dec_object(d, pp) : json_dec_array(d, pp);
        d->depth--;
        return v;
    case 'n':
        if (json_match(p, end, "null", 4)) {
            *pp = p + 4;
            Py_RETURN_NONE;
        }
        break;
    case 't':
        if (json_match(p, end, "true", 4)) {
            *pp = p + 4;
            Py_RETURN_TRUE;
        }
        break;
    case 'f':
        if (json_match(p, end, "false", 5)) {
            *pp = p + 5;
            Py_RETURN_FALSE;
        }
        break;
    case 'N':
        if (json_match(p, end, "NaN", 3)) {
            *pp = p + 3;
            return PyFloat_FromDouble(Py_NAN);
        }
        break;
    case 'I':
        if (json_match(p, end, "Infinity", 8)) {
            *pp = p + 8;
            return PyFloat_FromDouble(Py_HUGE_VAL);
        }
        break;
    case '-':
        if (json_match(p, end, "-Infinity", 9)) {
            *pp = p + 9;
            return PyFloat_FromDouble(-Py_HUGE_VAL);
        }
        /* fall through */
    default:
        if (*p == '-' || (*p >= '0' && *p <= '9')) {
            v = json_dec_number(d, pp);
            if (v != NULL || PyErr_Occurred())
                return v;
        }
        break;
    }
    return json_error(d, "Expecting value", p);
}

/* Inputs that json.loads would not read as UTF-8 (its detect_encoding():
 * a UTF-16/32 BOM, or NULs among the first bytes). */
static int json_not_utf8(const unsigned char *p, size_t n)
{
    if (n >= 2 && ((p[0] == 0xFF && p[1] == 0xFE) || (p[0] == 0xFE && p[1] == 0xFF)))
        return 1;
    if (n >= 4)
        return p[0] == 0 || p[1] == 0;
    if (n == 2)
        return p[0] == 0 || p[1] == 0;
    return 0;
}

/* UTF-16/32 text: json.loads, with its ValueError (or RecursionError)
 * turned into InvalidJSON. */
static NOINLINE PyObject *json_decode_other(fulmen_state *st, const char *p,
                                            size_t n)
{
    PyObject *body = NULL, *res = NULL, *t, *v, *tb, *exc = NULL;
    PyObject *msg = NULL, *doc = NULL, *pos = NULL;
    if (st->json_loads == NULL) {
        PyObject *mod = PyImport_ImportModule("json");
        if (mod == NULL)
            return NULL;
        st->json_loads = PyObject_GetAttrString(mod, "loads");
        Py_DECREF(mod);
        if (st->json_loads == NULL)
            return NULL;
    }
    body = PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    if (body == NULL)
        return NULL;
    res = PyObject_CallOneArg(st->json_loads, body);
    Py_DECREF(body);
    if (res != NULL || !(PyErr_ExceptionMatches(PyExc_ValueError) ||
                         PyErr_ExceptionMatches(PyExc_RecursionError)))
        return res;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (v != NULL && PyObject_HasAttrString(v, "pos")) {
        msg = PyObject_GetAttrString(v, "msg");
        doc = PyObject_GetAttrString(v, "doc");
        pos = PyObject_GetAttrString(v, "pos");
    } else {
        PyErr_Clear();
        msg = v != NULL ? PyObject_Str(v) : NULL;
        doc = PyUnicode_FromStringAndSize("", 0);
        pos = PyLong_FromLong(0);
    }
    if (msg != NULL && doc != NULL && pos != NULL)
        exc = PyObject_CallFunctionObjArgs(st->InvalidJSON, msg, doc, pos, NULL);
    if (exc != NULL) {
        PyException_SetCause(exc, v);
        v = NULL;
        json_raise(st, exc);
    }
    Py_XDECREF(t);
    Py_XDECREF(v);
    Py_XDECREF(tb);
    Py_XDECREF(exc);
    Py_XDECREF(msg);
    Py_XDECREF(doc);
    Py_XDECREF(pos);
    return NULL;
}

PyObject *json_decode(fulmen_state *st, const char *text, size_t n)
{
    json_dec d;
    const unsigned char *p = (const unsigned char *)text;
    PyObject *res = NULL;
    Py_ssize_t i;
    if (UNLIKELY(json_not_utf8(p, n)))
        return json_decode_other(st, text, n);
    if (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF)
        p += 3; /* json.loads decodes bytes with utf-8-sig */
    d.st = st;
    d.start = p;
    d.end = (const unsigned char *)text + n;
    d.depth = 0;
    d.stack = d.inline_stack;
    d.top = 0;
    d.cap = JSON_STACK_INLINE;
    p = json_skip_ws(p, d.end);
    res = json_dec_value(&d, &p);
    if (res == NULL)
        goto cleanup;
    p = json_skip_ws(p, d.end);
    if (p != d.end) {
        Py_CLEAR(res);
        json_error(&d, "Extra data", p);
    }
cleanup:
    for (i = 0; i < d.top; i++)
        Py_DECREF(d.stack[i]);
    if (d.stack != d.inline_stack)
        PyMem_Free(d.stack);
    return res;
}

/* _json_loads(bytes) -> object: json_decode for the tests. */
PyObject *json_py_loads(PyObject *m, PyObject *arg)
{
    Py_buffer buf;
    PyObject *res;
    if (PyObject_GetBuffer(arg, &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    res = json_decode(PyModule_GetState(m), buf.buf, (size_t)buf.len);
    PyBuffer_Release(&buf);
    return res;
}

/* ========================================================================
 * Encoder
 */

NOINLINE int json_buf_grow(json_buf *b, size_t extra)
{
    size_t cap = b->cap ? b->cap : 256;
    char *p;
    while (cap < b->len + extra)
        cap *= 2;
    p = PyMem_Realloc(b->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

INLINE int json_reserve(json_buf *b, size_t n)
{
    if (UNLIKELY(b->len + n > b->cap))
        return json_buf_grow(b, n);
    return 0;
}

INLINE int json_put(json_buf *b, const char *s, size_t n)
{
    if (json_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static const char json_hex[] = "0123456789abcdef";

/* For each byte of an ASCII string: 0 when it is written as is, else the
 * second character of its two-character escape, or 'u' for \u00XX. */
static const char json_esc[256] = {
    [0x00 ... 0x07] = 'u', ['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n',
    [0x0b] = 'u', ['\f'] = 'f', ['\r'] = 'r', [0x0e ... 0x1f] = 'u',
    ['"'] = '"', ['\\'] = '\\', [0x7f ... 0xff] = 'u',
};

/* Encoder: '"', '\\', < 0x20 or 0x7f in an ASCII string; lowest mark
 * exact. */
INLINE uint64_t json_enc_special8(uint64_t x)
{
    return json_zero_bytes(x ^ (JSON_ONES * '"')) |
           json_zero_bytes(x ^ (JSON_ONES * '\\')) |
           json_zero_bytes(x ^ (JSON_ONES * 0x7f)) |
           ((x - JSON_ONES * 0x20) & ~x & JSON_HIGHS);
}

/* Write ch (< 0x10000) as \uXXXX at o. */
INLINE char *json_put_u(char *o, Py_UCS4 ch)
{
    o[0] = '\\';
    o[1] = 'u';
    o[2] = json_hex[(ch >> 12) & 15];
    o[3] = json_hex[(ch >> 8) & 15];
    o[4] = json_hex[(ch >> 4) & 15];
    o[5] = json_hex[ch & 15];
    return o + 6;
}

/* An ASCII string, followed by ": " when key is set.  Room for the plain
 * text is reserved once, and only an escape (rare) checks for the 5 more
 * bytes it may need.  Plain runs are copied 8 bytes at a time as they are
 * scanned: a word is stored before it is checked, which is safe because
 * the space reserved for the rest of the string covers it. */
INLINE int json_enc_ascii(json_buf *b, const unsigned char *a, Py_ssize_t n,
                          int key)
{
    const unsigned char *s = a, *end = a + n;
    char *o;
    if (json_reserve(b, (size_t)n + 4) < 0)
        return -1;
    o = b->p + b->len;
    *o++ = '"';
    for (;;) {
        while (end - s >= 8) {
            uint64_t x, m;
            memcpy(&x, s, 8);
            memcpy(o, &x, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            x = __builtin_bswap64(x);
#endif
            m = json_enc_special8(x);
            if (m) {
                unsigned k = (unsigned)__builtin_ctzll(m) >> 3;
                s += k;
                o += k;
                goto special;
            }
            s += 8;
            o += 8;
        }
        if (s < end) {
            /* the last 1..7 bytes, without a loop when they are plain: the
             * string's last 8 bytes again (the earlier ones were copied
             * as they are), or two overlapping words of a short string */
            size_t t = (size_t)(end - s);
            uint64_t x;
            if (n >= 8) {
                memcpy(&x, end - 8, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
                x = __builtin_bswap64(x);
#endif
                if (!json_enc_special8(x)) {
                    memcpy(o + t - 8, end - 8, 8);
                    o += t;
                    break;
                }
            } else if (t >= 4) {
                uint32_t lo, hi;
                memcpy(&lo, s, 4);
                memcpy(&hi, end - 4, 4);
                x = (uint64_t)lo | ((uint64_t)hi << 32); /* any byte order */
                if (!json_enc_special8(x)) {
                    memcpy(o, s, 4);
                    memcpy(o + t - 4, end - 4, 4);
                    o += t;
                    break;
                }
            }
        }
        while (s < end && !json_esc[*s])
            *o++ = (char)*s++;
        if (s == end)
            break;
    special:
        /* the reservation covers the rest of the string and the tail, an
         * escape needs 1 or 5 bytes more */
        if (UNLIKELY((size_t)(o - b->p) + (size_t)(end - s) + 8 > b->cap)) {
            b->len = (size_t)(o - b->p);
            if (json_buf_grow(b, (size_t)(end - s) + 8) < 0)
                return -1;
            o = b->p + b->len;
        }
        o[0] = '\\';
        o[1] = json_esc[*s];
        if (o[1] == 'u')
            o = json_put_u(o, *s);
        else
            o += 2;
        s++;
    }
    *o++ = '"';
    if (key) {
        *o++ = ':';
        *o++ = ' ';
    }
    b->len = (size_t)(o - b->p);
    return 0;
}

/* A non-ASCII string (ensure_ascii: everything above 0x7e is \uXXXX, a
 * pair of them above U+FFFF). */
INLINE char *json_enc_wide(char *o, int kind, const void *data, Py_ssize_t n)
{
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        if (ch < 0x80 && !json_esc[ch]) {
            *o++ = (char)ch;
        } else if (ch < 0x80 && json_esc[ch] != 'u') {
            o[0] = '\\';
            o[1] = json_esc[ch];
            o += 2;
        } else if (ch < 0x10000) {
            o = json_put_u(o, ch);
        } else {
            ch -= 0x10000;
            o = json_put_u(o, 0xD800 | (ch >> 10));
            o = json_put_u(o, 0xDC00 | (ch & 0x3FF));
        }
    }
    return o;
}

/* The str s, followed by ": " when key is set. */
INLINE int json_enc_str(json_buf *b, PyObject *s, int key)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    char *o;
    if (LIKELY(PyUnicode_IS_ASCII(s)))
        return json_enc_ascii(b, data, n, key);
    if (json_reserve(b, (size_t)n * (kind == PyUnicode_4BYTE_KIND ? 12 : 6) + 4) < 0)
        return -1;
    o = b->p + b->len;
    *o++ = '"';
    if (kind == PyUnicode_1BYTE_KIND)
        o = json_enc_wide(o, PyUnicode_1BYTE_KIND, data, n);
    else if (kind == PyUnicode_2BYTE_KIND)
        o = json_enc_wide(o, PyUnicode_2BYTE_KIND, data, n);
    else
        o = json_enc_wide(o, PyUnicode_4BYTE_KIND, data, n);
    *o++ = '"';
    if (key) {
        *o++ = ':';
        *o++ = ' ';
    }
    b->len = (size_t)(o - b->p);
    return 0;
}

static int json_enc_int(json_buf *b, long long x)
{
    char tmp[24], *e = tmp + sizeof(tmp), *s;
    uint64_t u = x < 0 ? 0 - (uint64_t)x : (uint64_t)x;
    s = mod_utoa_rev(e, u);
    if (x < 0)
        *--s = '-';
    return json_put(b, s, (size_t)(e - s));
}

/* repr(v) for finite v without going through dtoa when that is provably
 * the same text: |v| in [1e-4, 1e15) (where repr uses fixed notation) and
 * v is the double nearest to m / 10^k for some m < 10^15.  For the smallest
 * such k, m is unique (neighbouring candidates are more than 2 ulps apart)
 * and without trailing zeros, so its digits are the shortest that round-
 * trip, which is what repr prints.  fl(m / 10^k) == v is checked exactly
 * (Clinger: m and 10^k are exact doubles, one division rounds correctly).
 * Returns the length written to out (>= 32 bytes), or 0. */
static int json_float_short(double v, char *out)
{
    double a = fabs(v), t;
    uint64_t m = 0, ip, fp;
    int k;
    char *o = out, tmp[24], *e = tmp + sizeof(tmp), *s;
    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    for (k = 0; k <= 17; k++) {
        t = a * json_pow10[k];
        if (t >= 1e15)
            return 0;
        m = (uint64_t)(t + 0.5);
        if ((double)m / json_pow10[k] == a)
            break;
    }
    if (k > 17)
        return 0;
    if (signbit(v))
        *o++ = '-';
    if (k == 0) {
        ip = m;
        fp = 0;
    } else {
        uint64_t p = 1;
        int i;
        for (i = 0; i < k; i++)
            p *= 10;
        ip = m / p;
        fp = m % p;
    }
    s = mod_utoa_rev(e, ip);
    memcpy(o, s, (size_t)(e - s));
    o += e - s;
    *o++ = '.';
    if (k == 0) {
        *o++ = '0';
    } else {
        /* k digits, with leading zeros */
        char *f = o + k;
        int i;
        for (i = 0; i < k; i++) {
            f[-1 - i] = (char)('0' + fp % 10);
            fp /= 10;
        }
        o = f;
    }
    return (int)(o - out);
}

static int json_enc_float(json_buf *b, double d)
{
    char tmp[32], *s;
    int n, rc;
    if (d != d)
        return json_put(b, "NaN", 3);
    if (d == Py_HUGE_VAL)
        return json_put(b, "Infinity", 8);
    if (d == -Py_HUGE_VAL)
        return json_put(b, "-Infinity", 9);
    if (d == 0.0)
        return signbit(d) ? json_put(b, "-0.0", 4) : json_put(b, "0.0", 3);
    n = json_float_short(d, tmp);
    if (n > 0)
        return json_put(b, tmp, (size_t)n);
    s = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (s == NULL)
        return -1;
    rc = json_put(b, s, strlen(s));
    PyMem_Free(s);
    return rc;
}

/* The encoder never calls back into Python (exact types only, no object
 * allocation), so the containers cannot change under it and borrowed
 * references stay valid. */
static int json_enc_value(json_buf *b, PyObject *v, int depth)
{
    PyTypeObject *tp = Py_TYPE(v);
    int rc;
    if (UNLIKELY(depth > 200))
        return 1;
    if (tp == &PyUnicode_Type)
        return json_enc_str(b, v, 0);
    if (tp == &PyLong_Type) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow)
            return 1;
        if (x == -1 && PyErr_Occurred())
            return -1;
        return json_enc_int(b, x);
    }
    if (tp == &PyFloat_Type)
        return json_enc_float(b, PyFloat_AS_DOUBLE(v));
    if (v == Py_None)
        return json_put(b, "null", 4);
    if (v == Py_True)
        return json_put(b, "true", 4);
    if (v == Py_False)
        return json_put(b, "false", 5);
    if (tp == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *k, *val;
        int first = 1;
        if (json_put(b, "{", 1) < 0)
            return -1;
        while (PyDict_Next(v, &pos, &k, &val)) {
            if (Py_TYPE(k) != &PyUnicode_Type)
                return 1;
            if (!first && json_put(b, ", ", 2) < 0)
                return -1;
            first = 0;
            if (json_enc_str(b, k, 1) < 0)
                return -1;
            if ((rc = json_enc_value(b, val, depth + 1)) != 0)
                return rc;
        }
        return json_put(b, "}", 1);
    }
    if (tp == &PyList_Type || tp == &PyTuple_Type) {
        Py_ssize_t i, n = PySequence_Fast_GET_SIZE(v);
        PyObject **items = PySequence_Fast_ITEMS(v);
        if (json_put(b, "[", 1) < 0)
            return -1;
        for (i = 0; i < n; i++) {
            if (i && json_put(b, ", ", 2) < 0)
                return -1;
            if ((rc = json_enc_value(b, items[i], depth + 1)) != 0)
                return rc;
        }
        return json_put(b, "]", 1);
    }
    return 1;
}

int json_encode(fulmen_state *st, json_buf *b, PyObject *obj)
{
    return json_enc_value(b, obj, 0);
}

/* ========================================================================
 * Module state
 */

int json_init(PyObject *m, fulmen_state *st)
{
    PyObject *mod = NULL, *jde = NULL, *bases = NULL;
    int rc = -1;
    mod = PyImport_ImportModule("json");
    if (mod == NULL)
        goto cleanup;
    jde = PyObject_GetAttrString(mod, "JSONDecodeError");
    if (jde == NULL)
        goto cleanup;
    bases = PyTuple_Pack(2, st->BadRequest, jde);
    if (bases == NULL)
        goto cleanup;
    if (mod_add_exception(m, "InvalidJSON",
                          "The request body is not valid JSON: a BadRequest (400) and a "
                          "json.JSONDecodeError (msg, doc, pos).",
                          bases, &st->InvalidJSON) < 0)
        goto cleanup;
    rc = 0;
cleanup:
    Py_XDECREF(mod);
    Py_XDECREF(jde);
    Py_XDECREF(bases);
    return rc;
}

void json_clear(fulmen_state *st)
{
    size_t i;
    Py_CLEAR(st->InvalidJSON);
    for (i = 0; i < (size_t)1 << JSON_KEY_CACHE_BITS; i++)
        Py_CLEAR(st->json_keys[i]);
}
