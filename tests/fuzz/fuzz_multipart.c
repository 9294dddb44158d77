/*
 * fuzz_multipart.c - libFuzzer harness for the multipart/form-data parser
 * (src/fulmen/_core/multipart.c).
 *
 * Build and run with `make -f mk/cparser.mk fuzz-mp` (clang,
 * -fsanitize=fuzzer,address,undefined).  Input layout: the first line (up to
 * the first LF) is a Content-Type value, the rest is the body.  The boundary
 * comes from mp_boundary() on that value; when it has none, the first
 * (byte 0 % 71) bytes of the body's own first line are used instead, so the
 * fuzzer reaches the part grammar without having to spell a Content-Type.
 * The value and the body are exact-size heap copies, so ASan sees any read
 * past their ends.
 *
 * Invariants (abort on failure):
 *   1. mp_boundary returns 0 with a span of 1..70 characters inside the value
 *      (after its "boundary=" and without quotes), or -1.
 *   2. mp_next returns 1, 0 or -1 and terminates: at most one part per
 *      delimiter, so no more than len / (blen + 4) + 1 parts.
 *   3. every span of a part lies inside the body, its data follows its
 *      headers, parts come in order without overlapping, and no part's data
 *      contains the delimiter "\r\n--boundary".
 *   4. 0 and -1 are sticky: a further call returns the same.
 *   5. parsing again from the start gives the same parts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"
#include "fuzzutil.h"

#define FZ_MAX_PARTS 4096

static mp_part fz_parts[FZ_MAX_PARTS];

static int
fz_span_in(mp_span s, size_t len)
{
    return s.off <= len && s.len <= len - s.off;
}

static int
fz_span_eq(mp_span a, mp_span b)
{
    return a.off == b.off && a.len == b.len;
}

static int
fz_part_eq(const mp_part *a, const mp_part *b)
{
    return fz_span_eq(a->name, b->name) && fz_span_eq(a->filename, b->filename) &&
           fz_span_eq(a->content_type, b->content_type) &&
           fz_span_eq(a->data, b->data) && a->has_filename == b->has_filename;
}

static int
fz_contains(const char *h, size_t hn, const char *n, size_t nn)
{
    size_t i;
    if (nn > hn)
        return 0;
    for (i = 0; i + nn <= hn; i++)
        if (memcmp(h + i, n, nn) == 0)
            return 1;
    return 0;
}

/* Runs the parser to the end; returns the number of parts, and the final
 * result (0 or -1) in *last. */
static size_t
fz_run(const char *body, size_t len, const char *b, size_t blen, int *last)
{
    mp_parser p;
    mp_part part;
    char delim[4 + 70];
    size_t n = 0, prev_end = 0, limit = len / (blen + 4) + 1;
    int rc;
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, b, blen);
    mp_init(&p, body, len, b, blen);
    while ((rc = mp_next(&p, &part)) == 1) {
        FZ_CHECK(n < limit && n < FZ_MAX_PARTS);
        FZ_CHECK(fz_span_in(part.name, len) && fz_span_in(part.filename, len) &&
                 fz_span_in(part.content_type, len) && fz_span_in(part.data, len));
        FZ_CHECK(part.has_filename == 0 || part.has_filename == 1);
        FZ_CHECK(part.has_filename || part.filename.len == 0);
        FZ_CHECK(part.name.off >= prev_end && part.data.off >= part.name.off + part.name.len);
        if (part.content_type.len)
            FZ_CHECK(part.content_type.off >= prev_end &&
                     part.content_type.off + part.content_type.len <= part.data.off);
        FZ_CHECK(!fz_contains(body + part.data.off, part.data.len, delim, 4 + blen));
        prev_end = part.data.off + part.data.len;
        fz_parts[n++] = part;
    }
    FZ_CHECK(rc == 0 || rc == -1);
    FZ_CHECK(mp_next(&p, &part) == rc);
    FZ_CHECK(mp_next(&p, &part) == rc);
    *last = rc;
    return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t ctlen = nl ? (size_t)(nl - data) : size;
    size_t len = nl ? size - ctlen - 1 : 0, blen = 0, n1, n2, i;
    char *ct = malloc(ctlen ? ctlen : 1), *body = malloc(len ? len : 1);
    const char *b = NULL;
    int last1, last2;
    mp_part first[8];
    if (ct == NULL || body == NULL)
        abort();
    memcpy(ct, data, ctlen);
    if (len)
        memcpy(body, nl + 1, len);
    if (mp_boundary(ct, ctlen, &b, &blen) == 0) {
        FZ_CHECK(blen >= 1 && blen <= 70);
        FZ_CHECK(b > ct && b + blen <= ct + ctlen);
        FZ_CHECK(memchr(b, '"', blen) == NULL);
    } else if (len > 0) {
        /* the body's first line, after its leading dashes, as the boundary */
        const char *eol = memchr(body, '\r', len);
        size_t line = eol ? (size_t)(eol - body) : len, skip = 0;
        while (skip < line && body[skip] == '-')
            skip++;
        b = body + skip;
        blen = line - skip;
        if (blen > (size_t)(data[0] % 71))
            blen = (size_t)(data[0] % 71);
    }
    if (b != NULL && blen >= 1) {
        n1 = fz_run(body, len, b, blen, &last1);
        for (i = 0; i < n1 && i < 8; i++)
            first[i] = fz_parts[i];
        n2 = fz_run(body, len, b, blen, &last2);
        FZ_CHECK(n1 == n2 && last1 == last2);
        for (i = 0; i < n1 && i < 8; i++)
            FZ_CHECK(fz_part_eq(&first[i], &fz_parts[i]));
    }
    /* no usable boundary: the parser must refuse, not read */
    {
        mp_parser p;
        mp_part part;
        mp_init(&p, body, len, NULL, 0);
        FZ_CHECK(mp_next(&p, &part) == -1);
    }
    free(ct);
    free(body);
    return 0;
}
