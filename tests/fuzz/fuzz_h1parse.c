/*
 * fuzz_h1parse.c - libFuzzer harness for the HTTP/1.1 request parser and
 * the chunked decoder (src/fulmen/_core/h1parse.c).
 *
 * Build and run with `make -f mk/cparser.mk fuzz` (clang,
 * -fsanitize=fuzzer,address,undefined).  The whole input is the request
 * stream; nothing is stripped off it, so raw HTTP seeds work as they are.
 * Control values are derived from the input without consuming it:
 *     first byte  -> the two-way split point (data[0] * size / 256)
 *     last byte   -> limits (last ^ '\n') & 3, so a seed ending in LF
 *                    gets the default 8 KB / 64 headers.
 *
 * Invariants (abort on failure):
 *   1. every span of a complete parse lies in [0, head length);
 *      head length <= size and <= max_header_size;
 *      an error carries one of 400/414/431/501/505 and a reason;
 *   2. parsing in two pieces (prefix, then all) gives the same result as
 *      parsing whole, and so does feeding byte by byte (inputs <= 4 KB);
 *      a prefix is parsed from an exact-size heap copy so ASan sees any
 *      read past its end;
 *   3. every available SIMD level (scalar, SSE4.2, AVX2) agrees;
 *   4. the chunked decoder run on the bytes after the head (or on the
 *      whole input when there is no head) keeps dst <= src <= len,
 *      total == dst, and agrees with itself when fed in two pieces.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h1parse.h"
#include "fuzzutil.h"

#define FZ_MAXH 64

typedef struct {
    int rc;
    h1_request req;
    h1_header hdrs[FZ_MAXH];
} fz_result;

static const struct {
    uint32_t max_size, max_headers;
} fz_limits[4] = {{8192, 64}, {256, 8}, {1024, 4}, {65536, 64}};

static int fz_best_level;

static int
fz_span_ok(h1_span s, size_t len)
{
    return (size_t)s.off + s.len <= len;
}

static void
fz_check_result(const fz_result *r, size_t size, uint32_t max_size)
{
    uint32_t i;

    if (r->rc == H1_ERROR) {
        int st = r->req.error_status;
        FZ_CHECK(st == 400 || st == 413 || st == 414 || st == 417 || st == 431 ||
                 st == 501 || st == 505);
        FZ_CHECK(r->req.error_reason != NULL);
        return;
    }
    if (r->rc == H1_PARTIAL) {
        FZ_CHECK(size <= max_size);
        return;
    }
    FZ_CHECK(r->rc > 0);
    FZ_CHECK((size_t)r->rc <= size && (uint32_t)r->rc <= max_size);
    FZ_CHECK(fz_span_ok(r->req.method, (size_t)r->rc));
    FZ_CHECK(fz_span_ok(r->req.target, (size_t)r->rc));
    FZ_CHECK(fz_span_ok(r->req.path, (size_t)r->rc));
    FZ_CHECK(fz_span_ok(r->req.query, (size_t)r->rc));
    FZ_CHECK(r->req.method.len > 0 && r->req.target.len > 0);
    FZ_CHECK(r->req.version_minor <= 1);
    FZ_CHECK(r->req.num_headers <= FZ_MAXH);
    for (i = 0; i < r->req.num_headers; i++) {
        FZ_CHECK(fz_span_ok(r->hdrs[i].name, (size_t)r->rc));
        FZ_CHECK(fz_span_ok(r->hdrs[i].value, (size_t)r->rc));
        FZ_CHECK(r->hdrs[i].name.len > 0);
    }
    if (r->req.flags & H1_F_HAS_HOST)
        FZ_CHECK(r->req.host_index < r->req.num_headers);
    if (r->req.flags & H1_F_CHUNKED)
        FZ_CHECK(!(r->req.flags & H1_F_HAS_CL));
    if (r->req.version_minor == 1) FZ_CHECK(r->req.flags & H1_F_HAS_HOST);
}

/* Field-by-field comparison (struct padding is not compared). */
static int
fz_same(const fz_result *a, const fz_result *b)
{
    const h1_request *x = &a->req, *y = &b->req;
    uint32_t i;

#define SPAN_EQ(s, t) ((s).off == (t).off && (s).len == (t).len)
    if (a->rc != b->rc) return 0;
    if (a->rc == H1_ERROR) return x->error_status == y->error_status;
    if (a->rc == H1_PARTIAL) return 1;
    if (!SPAN_EQ(x->method, y->method) || !SPAN_EQ(x->target, y->target) ||
        !SPAN_EQ(x->path, y->path) || !SPAN_EQ(x->query, y->query))
        return 0;
    if (x->method_id != y->method_id || x->version_minor != y->version_minor ||
        x->flags != y->flags || x->num_headers != y->num_headers)
        return 0;
    if ((x->flags & H1_F_HAS_CL) && x->content_length != y->content_length)
        return 0;
    if ((x->flags & H1_F_HAS_HOST) && x->host_index != y->host_index) return 0;
    for (i = 0; i < x->num_headers; i++)
        if (!SPAN_EQ(a->hdrs[i].name, b->hdrs[i].name) ||
            !SPAN_EQ(a->hdrs[i].value, b->hdrs[i].value))
            return 0;
#undef SPAN_EQ
    return 1;
}

static void
fz_parse_whole(const uint8_t *data, size_t size, int lim, fz_result *r)
{
    h1_parser p;

    memset(r, 0, sizeof(*r));
    r->req.headers = r->hdrs;
    h1_parser_init(&p, fz_limits[lim].max_size, fz_limits[lim].max_headers);
    r->rc = h1_parse_request(&p, (const char *)data, size, &r->req);
}

/* prefix k from an exact-size heap copy, then the whole input */
static void
fz_parse_split(const uint8_t *data, size_t size, size_t k, int lim,
               fz_result *r)
{
    h1_parser p;
    char *pre = malloc(k ? k : 1);

    FZ_CHECK(pre != NULL);
    memcpy(pre, data, k);
    memset(r, 0, sizeof(*r));
    r->req.headers = r->hdrs;
    h1_parser_init(&p, fz_limits[lim].max_size, fz_limits[lim].max_headers);
    r->rc = h1_parse_request(&p, pre, k, &r->req);
    free(pre);
    if (r->rc == H1_PARTIAL)
        r->rc = h1_parse_request(&p, (const char *)data, size, &r->req);
}

static void
fz_parse_bytewise(const uint8_t *data, size_t size, int lim, fz_result *r)
{
    h1_parser p;
    size_t k;

    memset(r, 0, sizeof(*r));
    r->req.headers = r->hdrs;
    r->rc = H1_PARTIAL;
    h1_parser_init(&p, fz_limits[lim].max_size, fz_limits[lim].max_headers);
    for (k = 1; k <= size && r->rc == H1_PARTIAL; k++)
        r->rc = h1_parse_request(&p, (const char *)data, k, &r->req);
}

/* Decode body[0..n) (a heap copy) in one or two calls.  Returns the
 * verdict; *out_dst / *out_src get the final offsets. */
static int
fz_chunked(const uint8_t *body, size_t n, size_t split, char *work,
           size_t *out_src, size_t *out_dst)
{
    h1_chunked c;
    size_t src = 0, dst = 0;
    int rc;

    memcpy(work, body, n);
    h1_chunked_init(&c, 1u << 20);
    rc = h1_chunked_decode(&c, work, split, &src, &dst);
    FZ_CHECK(dst <= src && src <= split);
    FZ_CHECK(c.total == dst && c.total <= c.max_body);
    if (rc == H1_CHUNK_PARTIAL && split < n) {
        rc = h1_chunked_decode(&c, work, n, &src, &dst);
        FZ_CHECK(dst <= src && src <= n);
        FZ_CHECK(c.total == dst && c.total <= c.max_body);
    }
    FZ_CHECK(rc == H1_CHUNK_DONE || rc == H1_CHUNK_PARTIAL ||
             rc == H1_CHUNK_ERROR || rc == H1_CHUNK_TOO_BIG);
    /* a finished decoder repeats its verdict without moving */
    if (rc != H1_CHUNK_PARTIAL) {
        size_t s2 = src, d2 = dst;
        FZ_CHECK(h1_chunked_decode(&c, work, n, &s2, &d2) == rc);
        FZ_CHECK(s2 == src && d2 == dst);
    }
    *out_src = src;
    *out_dst = dst;
    return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fz_result whole, other;
    size_t split;
    int lim, lvl;

    if (size == 0) return 0;
    if (!fz_best_level) fz_best_level = h1_set_simd_level(-1) + 1;
    split = (size_t)data[0] * size / 256;
    lim = (data[size - 1] ^ '\n') & 3;

    h1_set_simd_level(0);
    fz_parse_whole(data, size, lim, &whole);
    fz_check_result(&whole, size, fz_limits[lim].max_size);

    for (lvl = 0; lvl < fz_best_level; lvl++) {
        h1_set_simd_level(lvl);
        if (lvl) {
            fz_parse_whole(data, size, lim, &other);
            FZ_CHECK(fz_same(&whole, &other));
        }
        fz_parse_split(data, size, split, lim, &other);
        FZ_CHECK(fz_same(&whole, &other));
        if (size <= 4096) {
            fz_parse_bytewise(data, size, lim, &other);
            FZ_CHECK(fz_same(&whole, &other));
        }
    }

    /* the chunked decoder on what follows the head */
    {
        size_t off = whole.rc > 0 ? (size_t)whole.rc : 0, n = size - off;
        uint8_t *body = malloc(n ? n : 1);
        char *work = malloc(n ? n : 1);
        size_t s1, d1, s2, d2;
        int r1, r2;

        FZ_CHECK(body && work);
        memcpy(body, data + off, n);
        r1 = fz_chunked(body, n, n, work, &s1, &d1);
        r2 = fz_chunked(body, n, split < n ? split : n, work, &s2, &d2);
        FZ_CHECK(r1 == r2);
        if (r1 == H1_CHUNK_DONE || r1 == H1_CHUNK_PARTIAL) FZ_CHECK(d1 == d2);
        if (r1 == H1_CHUNK_DONE) FZ_CHECK(s1 == s2);
        free(body);
        free(work);
    }
    return 0;
}
