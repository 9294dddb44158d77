/*
 * multipart.c - zero-copy multipart/form-data body parser
 * (RFC 7578, RFC 2046 5.1, RFC 2183 for Content-Disposition).
 *
 * Pure C, no Python.h.  The public API is in multipart.h; every other
 * symbol here is static.  The body is complete in memory, so each call to
 * mp_next() returns one whole part as spans (offsets) into it.
 *
 * +---------------------------------------------------------------------+
 * | Grammar accepted                                                    |
 * +---------------------------------------------------------------------+
 *   body         = [preamble CRLF] dash-boundary tail-open part
 *                  *(CRLF dash-boundary tail-open part)
 *                  CRLF dash-boundary "--" tail-close
 *   tail-close   = *(SP / HTAB) [CRLF *OCTET]  (padding, then the epilogue)
 *   dash-boundary = "--" boundary
 *   tail-open    = *(SP / HTAB) CRLF          (transport padding)
 *   part         = *header-line (CRLF data / <nothing>)
 *   header-line  = token ":" OWS value OWS CRLF
 *
 *  - The CRLF in front of "--boundary" belongs to the delimiter, so a
 *    part's data ends just before it.  A part whose last header line is
 *    directly followed by the delimiter (no empty line: RFC 2046 makes the
 *    body optional) has empty data.
 *  - "--boundary--" as the very first delimiter is an empty form (what
 *    browsers send when no field is submitted): mp_next() returns 0.
 *  - Anything after the close delimiter's CRLF is epilogue and is ignored;
 *    anything else after "--boundary--" (but padding) is an error.
 *  - A dash-boundary followed by anything but padding + CRLF or "--" is an
 *    error: the boundary must not occur inside the body (RFC 2046).  This
 *    includes the preamble and a body that starts with "--boundaryX".
 *  - Header lines: CRLF only (a bare LF or CR is an error), no obs-fold,
 *    no CTL except HTAB in values, at most MP_MAX_HEADERS lines and
 *    MP_MAX_HEADER_BYTES bytes per part (counting every CRLF and the empty
 *    line).  Bytes past that window are never looked at while in headers.
 *  - Content-Disposition is required, exactly once: type "form-data"
 *    (case-insensitive) with a name parameter; filename is optional (an
 *    empty filename="" still sets has_filename).  Parameter values are a
 *    token or a quoted-string; for the latter the raw span between the
 *    quotes is returned (backslash escapes are skipped over, not undone).
 *    Unknown parameters, including filename* (RFC 5987), are ignored;
 *    a repeated name or filename parameter is an error.
 *  - Content-Type at most once; its trimmed value is returned as is.
 *    Other header fields are validated and ignored.  A nested
 *    multipart/mixed part is not expanded: it is just data.
 *
 * Errors are sticky: after -1 every further mp_next() returns -1, after
 * the close delimiter every further call returns 0.
 *
 * Cost: the delimiter "\r\n--boundary" is located with memmem(), which is
 * linear in glibc (two-way), and every search starts where the previous
 * part ended, so a body is scanned O(n) overall whatever its content.
 */
#define _GNU_SOURCE /* memmem */

#include "multipart.h"

#include <string.h>

#define MP_LIKELY(x) __builtin_expect(!!(x), 1)
#define MP_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define MP_MAX_BOUNDARY 70
#define MP_MAX_HEADERS 32
#define MP_MAX_HEADER_BYTES 16384

/* mp_parser.state */
enum {
    MP_ST_START = 0, /* before the first delimiter                        */
    MP_ST_PART,      /* pos = first byte of a part's header block         */
    MP_ST_DONE,      /* close delimiter seen                              */
    MP_ST_ERROR,     /* malformed; sticky                                 */
};

/* ------------------------------------------------------------------------
 * Character classes
 */

/* tchar of RFC 9110 5.6.2 */
static const unsigned char mp_tchar[256] = {
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1,
};

/* bchars of RFC 2046 5.1.1 (bcharnospace plus space) */
static const unsigned char mp_bchar[256] = {
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
    ['\''] = 1, ['('] = 1, [')'] = 1, ['+'] = 1, ['_'] = 1, [','] = 1,
    ['-'] = 1, ['.'] = 1, ['/'] = 1, [':'] = 1, ['='] = 1, ['?'] = 1,
    [' '] = 1,
};

static inline int
mp_is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* Control characters other than HTAB (header values may carry obs-text). */
static inline int
mp_is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* Does s[0..n) equal lit (lowercase ASCII) ignoring ASCII case? */
static int
mp_ieq(const unsigned char *s, size_t n, const char *lit)
{
    size_t i;
    if (strlen(lit) != n) return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
        if (c != (unsigned char)lit[i]) return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------
 * Parameter lists (`; name=value`) shared by Content-Type and
 * Content-Disposition.  Everything works on s[0..end) with offsets.
 */

static inline size_t
mp_skip_ows(const unsigned char *s, size_t i, size_t end)
{
    while (i < end && mp_is_ows(s[i])) i++;
    return i;
}

/* Parse one parameter value at s[*i] (end > *i not required): a
 * quoted-string, whose raw inside is returned, or an unquoted run of
 * visible characters other than ';' and '"' (a little wider than token, as
 * clients send e.g. name=a[] unquoted).  Returns 0 and advances *i past the
 * value, or -1 (empty or unterminated). */
static int
mp_param_value(const unsigned char *s, size_t *i, size_t end, mp_span *v)
{
    size_t j = *i;
    int rc = -1;

    if (j >= end) goto done;
    if (s[j] == '"') {
        size_t start = ++j;
        for (;;) {
            if (j >= end) goto done; /* unterminated */
            if (s[j] == '"') break;
            if (s[j] == '\\') {
                if (end - j < 2) goto done;
                j += 2;
                continue;
            }
            j++;
        }
        v->off = start;
        v->len = j - start;
        *i = j + 1;
    } else {
        size_t start = j;
        while (j < end && s[j] > 0x20 && s[j] != 0x7f && s[j] != ';' &&
               s[j] != '"')
            j++;
        if (j == start) goto done;
        v->off = start;
        v->len = j - start;
        *i = j;
    }
    rc = 0;
done:
    return rc;
}

/* Walk `*( OWS ";" OWS name OWS "=" OWS value ) OWS` from s[i] to end and
 * call back with each parameter.  A trailing ';' is tolerated.  Returns 0,
 * or -1 on a syntax error or when cb returns nonzero. */
typedef int (*mp_param_cb)(void *ctx, const unsigned char *s, mp_span name,
                           mp_span value);

static int
mp_params(const unsigned char *s, size_t i, size_t end, mp_param_cb cb,
          void *ctx)
{
    for (;;) {
        mp_span name, value;
        i = mp_skip_ows(s, i, end);
        if (i == end) return 0;
        if (s[i] != ';') return -1;
        i = mp_skip_ows(s, i + 1, end);
        if (i == end) return 0;
        name.off = i;
        while (i < end && mp_tchar[s[i]]) i++;
        name.len = i - name.off;
        if (name.len == 0) return -1;
        i = mp_skip_ows(s, i, end);
        if (i == end || s[i] != '=') return -1;
        i = mp_skip_ows(s, i + 1, end);
        if (mp_param_value(s, &i, end, &value) != 0) return -1;
        if (cb(ctx, s, name, value) != 0) return -1;
    }
}

/* ------------------------------------------------------------------------
 * mp_boundary
 */

typedef struct {
    mp_span b;
    int found;
} mp_bctx;

static int
mp_boundary_cb(void *ctx, const unsigned char *s, mp_span name, mp_span value)
{
    mp_bctx *c = ctx;
    if (!mp_ieq(s + name.off, name.len, "boundary")) return 0;
    if (c->found) return -1; /* ambiguous */
    c->found = 1;
    c->b = value;
    return 0;
}

int
mp_boundary(const char *ct, size_t ctlen, const char **b, size_t *bl)
{
    const unsigned char *s = (const unsigned char *)ct;
    mp_bctx c = {{0, 0}, 0};
    const char *semi;
    size_t i;

    if (ct == NULL || ctlen == 0) return -1;
    /* The media type carries no quotes or ';', so the first ';' ends it. */
    semi = memchr(ct, ';', ctlen);
    if (semi == NULL) return -1;
    if (mp_params(s, (size_t)(semi - ct), ctlen, mp_boundary_cb, &c) != 0)
        return -1;
    if (!c.found || c.b.len == 0 || c.b.len > MP_MAX_BOUNDARY) return -1;
    for (i = 0; i < c.b.len; i++)
        if (!mp_bchar[s[c.b.off + i]]) return -1;
    if (s[c.b.off + c.b.len - 1] == ' ') return -1;
    *b = ct + c.b.off;
    *bl = c.b.len;
    return 0;
}

/* ------------------------------------------------------------------------
 * Part headers
 */

typedef struct {
    mp_part *part;
    int have_name;
} mp_cdctx;

static int
mp_cd_cb(void *ctx, const unsigned char *s, mp_span name, mp_span value)
{
    mp_cdctx *c = ctx;
    if (mp_ieq(s + name.off, name.len, "name")) {
        if (c->have_name) return -1;
        c->have_name = 1;
        c->part->name = value;
    } else if (mp_ieq(s + name.off, name.len, "filename")) {
        if (c->part->has_filename) return -1;
        c->part->has_filename = 1;
        c->part->filename = value;
    }
    return 0;
}

/* Content-Disposition value body[v.off..+v.len): `form-data *(; param)`.
 * Fills part->name / filename / has_filename.  Returns 0 or -1. */
static int
mp_content_disposition(const unsigned char *s, mp_span v, mp_part *part)
{
    size_t i = v.off, end = v.off + v.len;
    mp_cdctx c = {part, 0};

    while (i < end && mp_tchar[s[i]]) i++;
    if (!mp_ieq(s + v.off, i - v.off, "form-data")) return -1;
    if (mp_params(s, i, end, mp_cd_cb, &c) != 0) return -1;
    return c.have_name ? 0 : -1;
}

/* Parse the header block of the part starting at `start`.  On success
 * returns 0, fills name / filename / content_type of *part and sets *eoh
 * to the offset of the CRLF that ends the block: the empty line, or the
 * CRLF of a delimiter that follows the last header line directly.
 * Returns -1 on a malformed block or one without a usable
 * Content-Disposition.  Looks at no byte past start + MP_MAX_HEADER_BYTES. */
static int
mp_headers(const mp_parser *p, size_t start, mp_part *part, size_t *eoh)
{
    const unsigned char *s = (const unsigned char *)p->body;
    size_t end, line = start;
    int nlines = 0, have_cd = 0, have_ct = 0;

    end = p->len - start > MP_MAX_HEADER_BYTES ? start + MP_MAX_HEADER_BYTES
                                               : p->len;
    for (;;) {
        const unsigned char *nl;
        size_t lf, i, name_end;
        mp_span v;

        nl = memchr(s + line, '\n', end - line);
        if (nl == NULL) return -1; /* truncated or over the limit */
        lf = (size_t)(nl - s);
        if (lf == line || s[lf - 1] != '\r') return -1; /* bare LF */
        if (lf - 1 == line) {                           /* empty line */
            *eoh = line;
            break;
        }
        if (++nlines > MP_MAX_HEADERS) return -1;

        /* token ":" OWS value OWS; no whitespace before the colon, which
         * also rules out obs-fold continuation lines. */
        for (i = line; i < lf - 1 && mp_tchar[s[i]]; i++) {}
        if (i == line || s[i] != ':') return -1;
        name_end = i;
        for (i = name_end + 1; i < lf - 1; i++)
            if (mp_is_ctl(s[i])) return -1; /* includes a stray CR */
        i = mp_skip_ows(s, name_end + 1, lf - 1);
        v.off = i;
        i = lf - 1;
        while (i > v.off && mp_is_ows(s[i - 1])) i--;
        v.len = i - v.off;

        if (mp_ieq(s + line, name_end - line, "content-disposition")) {
            if (have_cd) return -1;
            have_cd = 1;
            if (mp_content_disposition(s, v, part) != 0) return -1;
        } else if (mp_ieq(s + line, name_end - line, "content-type")) {
            if (have_ct) return -1;
            have_ct = 1;
            part->content_type = v;
        }
        line = lf + 1;
    }
    return have_cd ? 0 : -1;
}

/* ------------------------------------------------------------------------
 * Delimiters
 */

/* After "--boundary" ends at q (q <= len): "--", transport padding and a
 * CRLF or the end of the body is the close delimiter (returns 1),
 * transport padding + CRLF opens a part at *next (returns 0), anything
 * else is an error (-1). */
static int
mp_delim_tail(const mp_parser *p, size_t q, size_t *next)
{
    const char *s = p->body;
    /* close-delimiter transport-padding [CRLF epilogue] (RFC 2046 5.1.1):
     * "--b--junk" is no end a strict reader would see, so none here */
    int close = p->len - q >= 2 && s[q] == '-' && s[q + 1] == '-';

    if (close) q += 2;
    while (q < p->len && (s[q] == ' ' || s[q] == '\t')) q++;
    if (p->len - q >= 2 && s[q] == '\r' && s[q + 1] == '\n') {
        if (!close) *next = q + 2;
        return close;
    }
    return close && q == p->len ? 1 : -1;
}

/* Offset of the first "\r\n--boundary" at or after `from`, or (size_t)-1. */
static size_t
mp_find_delim(const mp_parser *p, const char *needle, size_t nlen, size_t from)
{
    const char *m;
    if (from > p->len || p->len - from < nlen) return (size_t)-1;
    m = memmem(p->body + from, p->len - from, needle, nlen);
    return m == NULL ? (size_t)-1 : (size_t)(m - p->body);
}

/* ------------------------------------------------------------------------
 * Public API
 */

void
mp_init(mp_parser *p, const char *body, size_t len, const char *boundary,
        size_t blen)
{
    p->body = body;
    p->len = body == NULL ? 0 : len;
    p->boundary = boundary;
    p->blen = blen;
    p->pos = 0;
    p->state = (boundary != NULL && blen >= 1 && blen <= MP_MAX_BOUNDARY)
                   ? MP_ST_START
                   : MP_ST_ERROR;
}

int
mp_next(mp_parser *p, mp_part *part)
{
    char needle[4 + MP_MAX_BOUNDARY];
    size_t nlen, m, eoh, next = 0;
    mp_part tmp;
    int t;

    if (p->state == MP_ST_DONE) return 0;
    if (MP_UNLIKELY(p->state != MP_ST_START && p->state != MP_ST_PART))
        goto error;

    memcpy(needle, "\r\n--", 4);
    memcpy(needle + 4, p->boundary, p->blen);
    nlen = 4 + p->blen;

    if (p->state == MP_ST_START) {
        size_t d; /* offset of the dash-boundary */
        if (p->len >= nlen - 2 && memcmp(p->body, needle + 2, nlen - 2) == 0) {
            d = 0;
        } else {
            m = mp_find_delim(p, needle, nlen, 0);
            if (m == (size_t)-1) goto error;
            d = m + 2;
        }
        t = mp_delim_tail(p, d + nlen - 2, &next);
        if (t < 0) goto error;
        if (t == 1) {
            p->state = MP_ST_DONE;
            return 0;
        }
        p->pos = next;
        p->state = MP_ST_PART;
    }

    memset(&tmp, 0, sizeof tmp);
    if (mp_headers(p, p->pos, &tmp, &eoh) != 0) goto error;

    /* Search from the CRLF ending the header block so that a delimiter
     * right after the last header line (no empty line) is found too.  A
     * match at eoh + 1 is impossible (s[eoh + 1] is '\n'). */
    m = mp_find_delim(p, needle, nlen, eoh);
    if (m == (size_t)-1) goto error; /* missing close delimiter */
    if (m == eoh) {
        tmp.data.off = eoh;
        tmp.data.len = 0;
    } else {
        tmp.data.off = eoh + 2;
        tmp.data.len = m - (eoh + 2);
    }

    t = mp_delim_tail(p, m + nlen, &next);
    if (t < 0) goto error;
    if (t == 1)
        p->state = MP_ST_DONE;
    else
        p->pos = next;
    *part = tmp;
    return 1;

error:
    p->state = MP_ST_ERROR;
    return -1;
}
