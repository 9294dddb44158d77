/*
 * h1parse.c - strict, incremental, zero-copy HTTP/1.1 request-head parser.
 *
 * Pure C, no Python.h.  The public API is in h1parse.h; every other symbol
 * here is static.  The file holds the request-head parser and, further
 * down, the chunked body decoder; the byte-class scanners are in simd.h.
 *
 * +---------------------------------------------------------------------+
 * | Rules (RFC 9112 / RFC 9110), every violation is an error:           |
 * +---------------------------------------------------------------------+
 *  - CRLF line endings only; a bare LF or a bare CR anywhere is 400.
 *  - At most one empty line (CRLF) before the request line, counted in the
 *    returned head length (RFC 9112 2.2); a second one is 400.
 *  - request-line = method SP request-target SP HTTP-version CRLF, with
 *    exactly one SP each.  method is a token.  The target is VCHAR only:
 *    no CTL, SP, DEL or byte >= 0x80.
 *  - HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive.  1.0 and 1.1
 *    are accepted, 1.2..1.9 report version_minor = 1, any other major is
 *    505.  Everything else malformed is 400.
 *  - Targets: origin-form "/..."; absolute-form "http://" or "https://"
 *    (scheme case-insensitive, non-empty authority of Host characters
 *    and '@', H1_F_ABSOLUTE); the
 *    authority-form "host:port" only for CONNECT (and CONNECT only takes
 *    it); "*" only for OPTIONS or an extension method (H1_F_ASTERISK).
 *    path/query split at the first '?'.  A fragment ("#...") is tolerated
 *    and left out of path and query (target still spans it).
 *    Spans when a part is absent:
 *      absolute-form without a path: path = {end of authority, 0}, which
 *        the caller treats as "/";
 *      "*": path = the "*" itself;
 *      authority-form: path = {end of target, 0};
 *      no query: query = {end of path or fragment start, 0}.
 *  - field-line = token ":" OWS value OWS CRLF.  No whitespace before ':'.
 *    value bytes: HTAB, SP, VCHAR, obs-text.  A line starting with SP or
 *    HTAB (obs-fold) is 400.
 *  - Limits: a head longer than max_header_size is 431 (414 while still in
 *    the request line, 501 in the method), more than max_headers fields is
 *    431.  Bytes past max_header_size are never looked at.
 *  - Semantics (field names case-insensitive):
 *      Host: required in HTTP/1.1, at most one, value limited to authority
 *        characters (reg-name / IP-literal / port).  An empty value is
 *        allowed (RFC 9110 7.2).
 *      Content-Length: 1*DIGIT up to 2^62 (413 past it), exactly one such field.
 *      Transfer-Encoding: token list across all TE fields, in order;
 *        "chunked" must be present, once, and last, else 400; any other
 *        coding in front of it is 501 (we decode none); parameters are
 *        400.  TE together with Content-Length is 400.  TE in HTTP/1.0
 *        is honoured but the connection is not kept alive.
 *      Connection: token list; close / keep-alive / upgrade flags.
 *      Expect: 100-continue (HTTP/1.1 only).  Upgrade: presence.
 *
 * +---------------------------------------------------------------------+
 * | Incremental parsing                                                 |
 * +---------------------------------------------------------------------+
 * The parse loop is a resumable state machine.  On H1_PARTIAL it saves
 * where it stopped (p->stage, p->line_start, p->scan_pos, p->aux), so the
 * next call continues at the first unexamined byte; at most the ten bytes
 * of an incomplete "HTTP/1.1\r\n" or a lone trailing CR are looked at again.
 *
 * The loop is compiled once per SIMD level: this file includes itself with
 * H1_LEVEL set to 0, 1 and 2 so that each copy inlines its scanners.
 */

#ifndef H1_LEVEL /* ======================= first pass: common code ====== */

#include "h1parse.h"

#include <arpa/inet.h> /* inet_pton: the IPv6address of an IP-literal */
#include <string.h>

#include "simd.h"

/* ------------------------------------------------------------------------
 * Private parser state.  h1_parser.stage holds where to resume.
 */
enum {
    H1_ST_START = 0,   /* nothing examined yet                              */
    H1_ST_METHOD,      /* in the method; scan_pos bytes are tchars          */
    H1_ST_TARGET,      /* in the target; aux[1] = target start              */
    H1_ST_VERSION,     /* aux[1] = version start                            */
    H1_ST_HDR_LINE,    /* at the start of a field line or the final CRLF    */
    H1_ST_HDR_NAME,    /* in a field name                                   */
    H1_ST_HDR_VALUE,   /* in a field value; aux[1] = offset of the colon    */
    H1_ST_DONE,        /* complete; line_start = head length                */
    H1_ST_ERROR,       /* failed; req->error_status holds the verdict       */
};

/* p->aux[0]: Transfer-Encoding list state, carried across TE fields */
#define H1_TE_CHUNKED 0x1 /* the last coding so far is chunked          */
#define H1_TE_OTHER 0x2   /* some coding other than chunked was listed   */

#define H1_CL_MAX (1ULL << 62)

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define H1_U32(a, b, c, d)                                                  \
    (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | \
     (uint32_t)(d))
#else
#define H1_U32(a, b, c, d)                                                  \
    ((uint32_t)(a) | ((uint32_t)(b) << 8) | ((uint32_t)(c) << 16) |         \
     ((uint32_t)(d) << 24))
#endif

static H1_ALWAYS_INLINE uint32_t
h1_load32(const unsigned char *s)
{
    uint32_t w;
    memcpy(&w, s, 4);
    return w;
}

static H1_ALWAYS_INLINE h1_span
h1_mkspan(size_t off, size_t len)
{
    h1_span sp = {(uint32_t)off, (uint32_t)len};
    return sp;
}

/* Characters of a Host value or authority-form target: unreserved and
 * sub-delims (3), and ':', the brackets of an IP-literal and the '%' of
 * pct-encoded (1: their order is checked by h1_host_form_ok); 0 for the
 * rest.  Bit 0 says "a Host character", bit 1 "none of those four". */
static const uint8_t h1_host_ok[256] = {
    ['0' ... '9'] = 3, ['A' ... 'Z'] = 3, ['a' ... 'z'] = 3,
    ['-'] = 3, ['.'] = 3, ['_'] = 3, ['~'] = 3, ['%'] = 1,
    ['!'] = 3, ['$'] = 3, ['&'] = 3, ['\''] = 3, ['('] = 3, [')'] = 3,
    ['*'] = 3, ['+'] = 3, [','] = 3, [';'] = 3, ['='] = 3,
    [':'] = 1, ['['] = 1, [']'] = 1,
};

/* The AND of h1_host_ok over s[a..b): 3 when every byte is a Host
 * character and none is ':', '[', ']' or '%'; 1 when every byte is one and
 * one of those is there; 0 or 2 when a byte is no Host character.  Four
 * bytes at a time with no branch per byte (Host is on every request). */
static H1_ALWAYS_INLINE unsigned
h1_host_chars_ok(const unsigned char *s, size_t a, size_t b)
{
    unsigned ok = 3;
    for (; a + 4 <= b; a += 4)
        ok &= h1_host_ok[s[a]] & h1_host_ok[s[a + 1]] & h1_host_ok[s[a + 2]] &
              h1_host_ok[s[a + 3]];
    for (; a < b; a++)
        ok &= h1_host_ok[s[a]];
    return ok;
}

/* hex digit value + 1; 0 for a byte that is not a HEXDIG (chunk sizes,
 * pct-encoded hosts) */
static const uint8_t h1_hexval1[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5,
    ['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10,
    ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

/* unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~" (RFC 3986 2.3) */
static H1_ALWAYS_INLINE int
h1_is_unreserved(unsigned char c)
{
    return (unsigned)(c - '0') < 10 || (unsigned)((c | 0x20) - 'a') < 26 || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* The inside s[a..b) of an IP-literal (RFC 3986 3.2.2): an IPv6address,
 * with a zone ID after "%25" (RFC 6874 2), or an IPvFuture
 * ("v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )).  1 when it is. */
static NOINLINE int
h1_ip_literal_ok(const unsigned char *s, size_t a, size_t b)
{
    char addr[46];
    unsigned char in6[16];
    size_t i, end = b;
    if (b - a >= 2 && (s[a] | 0x20) == 'v') {
        for (i = a + 1; i < b && h1_hexval1[s[i]]; i++)
            ;
        if (i == a + 1 || i + 1 >= b || s[i] != '.')
            return 0;
        for (i++; i < b; i++)   /* unreserved / sub-delims / ":" */
            if (h1_host_ok[s[i]] == 0 || s[i] == '%' || s[i] == '[' || s[i] == ']')
                return 0;
        return 1;
    }
    for (i = a; i + 2 < b; i++) {
        if (s[i] == '%') {
            /* ZoneID = 1*( unreserved / pct-encoded ) */
            size_t j = i + 3;
            if (s[i + 1] != '2' || s[i + 2] != '5' || j == b)
                return 0;
            for (; j < b; j++) {
                if (s[j] == '%' && j + 2 < b && h1_hexval1[s[j + 1]] && h1_hexval1[s[j + 2]])
                    j += 2;
                else if (!h1_is_unreserved(s[j]))
                    return 0;
            }
            end = i;
            break;
        }
    }
    if (end - a >= sizeof(addr))
        return 0;
    memcpy(addr, s + a, end - a);
    addr[end - a] = 0;
    return inet_pton(AF_INET6, addr, in6) == 1;
}

/* Host = uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2), for s[a..b)
 * made of Host characters: an IP-literal in brackets, or a reg-name or
 * IPv4address (no ':' nor brackets, a '%' only before two hex digits),
 * then optionally ':' and a port of digits (possibly empty) no greater
 * than 65535 once leading zeros are dropped (no TCP port is more).  A
 * port after no host at all (":80") is refused too, as in a URI (RFC 9110
 * 4.2.1).  Returns 1 when it has that form. */
static NOINLINE int
h1_host_form_ok(const unsigned char *s, size_t a, size_t b)
{
    size_t i = a;
    uint32_t port = 0;
    if (i < b && s[i] == '[') {
        for (i++; i < b && s[i] != ']'; i++)
            if (s[i] == '[') return 0;
        if (i == b || i == a + 1 || !h1_ip_literal_ok(s, a + 1, i)) return 0;
        i++;
    } else {
        for (; i < b && s[i] != ':'; i++) {
            if (s[i] == '[' || s[i] == ']') return 0;
            if (s[i] == '%') {
                if (i + 2 >= b || !h1_hexval1[s[i + 1]] || !h1_hexval1[s[i + 2]]) return 0;
                i += 2;
            }
        }
        if (i == a && i < b) return 0; /* ":port" */
    }
    if (i == b) return 1;
    if (s[i] != ':') return 0;
    for (i++; i < b; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        port = port * 10 + (uint32_t)(s[i] - '0');
        if (port > 65535) return 0;
    }
    return 1;
}

int h1_host_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned hc = h1_host_chars_ok(u, 0, n);
    return hc == 3 || (hc == 1 && h1_host_form_ok(u, 0, n));
}

/* For the field names the parser acts on, indexed by name length: the
 * lower-case first letter.  A cheap filter before the full compare. */
static const char h1_special_first[32] = {
    [4] = 'h',  /* host (handled in the field loop) */
    [6] = 'e',  /* expect */
    [7] = 'u',  /* upgrade */
    [10] = 'c', /* connection */
    [12] = 'c', /* content-type */
    [14] = 'c', /* content-length */
    [17] = 't', /* transfer-encoding */
};

/* Case-insensitive compare of s[0..n) with lower-case lit (letters, digits
 * and '-' only).  ORing 0x20 into the input is exact for tchars and
 * field-value bytes: the only other bytes that OR to a letter, digit or
 * '-' are CTLs, and neither class contains CTLs. */
static H1_ALWAYS_INLINE int
h1_lower_eq(const unsigned char *s, const char *lit, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if ((s[i] | 0x20) != (unsigned char)lit[i]) return 0;
    return 1;
}

static H1_ALWAYS_INLINE uint64_t
h1_load64(const void *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* How many decimal digits end s[vs..ve), at most ve - vs.  Host ends with
 * its port on many requests: eight bytes at a time, the byte at s[ve - 1]
 * being the top one of a little-endian load (the loads stay inside s[0..ve),
 * which the request line alone makes longer than 8 bytes). */
static H1_ALWAYS_INLINE size_t
h1_trailing_digits(const unsigned char *s, size_t vs, size_t ve)
{
    size_t k = 0;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (LIKELY(ve >= 8)) {
        /* t: digits become bytes 0..9; nd: the top bit of each byte that
         * is no digit (t's own top bit, or a low seven bits of 10 or more) */
        uint64_t t = h1_load64(s + ve - 8) ^ 0x3030303030303030ULL;
        uint64_t nd = (((t & 0x7f7f7f7f7f7f7f7fULL) + 0x7676767676767676ULL) | t) &
                      0x8080808080808080ULL;
        if (LIKELY(nd != 0)) {
            k = (size_t)__builtin_clzll(nd) >> 3;
            return k < ve - vs ? k : ve - vs;
        }
    }
#endif
    while (k < ve - vs && (unsigned)(s[ve - k - 1] - '0') < 10)
        k++;
    return k;
}

/* h1_lower_eq() for 4 <= n <= 24, a word at a time (overlapping loads
 * inside s[0..n) and lit[0..n) only). */
static H1_ALWAYS_INLINE int
h1_lower_eq_w(const unsigned char *s, const char *lit, size_t n)
{
    const uint64_t m64 = 0x2020202020202020ULL;
    const uint32_t m32 = 0x20202020u;
    uint32_t a, b;

    if (n >= 8) {
        if ((h1_load64(s) | m64) != h1_load64(lit)) return 0;
        if (n > 16 && (h1_load64(s + 8) | m64) != h1_load64(lit + 8)) return 0;
        return (h1_load64(s + n - 8) | m64) == h1_load64(lit + n - 8);
    }
    memcpy(&a, lit, 4);
    memcpy(&b, lit + n - 4, 4);
    return (h1_load32(s) | m32) == a && (h1_load32(s + n - 4) | m32) == b;
}

static H1_ALWAYS_INLINE int
h1_is_ows(unsigned c)
{
    return c == ' ' || c == '\t';
}

/* ------------------------------------------------------------------------
 * Request line helpers
 */

/* Identify a method token s[0..n).  Methods are case-sensitive. */
static H1_ALWAYS_INLINE int
h1_method_id(const unsigned char *s, size_t n)
{
    switch (n) {
    case 3:
        if (memcmp(s, "GET", 3) == 0) return H1_M_GET;
        if (memcmp(s, "PUT", 3) == 0) return H1_M_PUT;
        break;
    case 4:
        if (memcmp(s, "POST", 4) == 0) return H1_M_POST;
        if (memcmp(s, "HEAD", 4) == 0) return H1_M_HEAD;
        break;
    case 5:
        if (memcmp(s, "PATCH", 5) == 0) return H1_M_PATCH;
        if (memcmp(s, "TRACE", 5) == 0) return H1_M_TRACE;
        break;
    case 6:
        if (memcmp(s, "DELETE", 6) == 0) return H1_M_DELETE;
        break;
    case 7:
        if (memcmp(s, "OPTIONS", 7) == 0) return H1_M_OPTIONS;
        if (memcmp(s, "CONNECT", 7) == 0) return H1_M_CONNECT;
        break;
    }
    return H1_M_OTHER;
}

/* Check the HTTP-version and its CRLF, s[pos..pos+avail), avail < 10 or a
 * failed fast path.  Examines bytes in order so that a byte-by-byte feed
 * and a whole buffer reach the same verdict.  Returns 0 when all ten bytes
 * are present and valid (*minor set), -2 when more bytes are needed, or
 * an HTTP status with *why set: 505 for a well-formed version whose major
 * is not 1, once the whole of it is seen ("HTTP/01.1" is a 400). */
static NOINLINE int
h1_version_slow(const unsigned char *s, size_t avail, int *minor,
                const char **why)
{
    static const char pat[] = "HTTP/x.x\r\n";
    size_t i, n = avail < 10 ? avail : 10;

    for (i = 0; i < n; i++) {
        unsigned c = s[i];
        switch (i) {
        case 5:
            if (c < '0' || c > '9') goto bad;
            break;
        case 7:
            if (c < '0' || c > '9') goto bad;
            *minor = c == '0' ? 0 : 1;
            break;
        case 8:
            if (c != '\r') {
                *why = c == '\n' ? "bare LF" : "invalid HTTP version";
                return 400;
            }
            break;
        case 9:
            if (c != '\n') {
                *why = "bare CR";
                return 400;
            }
            break;
        default:
            if (c != (unsigned char)pat[i]) goto bad;
        }
    }
    if (n < 10)
        return -2;
    if (s[5] != '1') {
        *why = "unsupported HTTP major version";
        return 505;
    }
    return 0;
bad:
    *why = "invalid HTTP version";
    return 400;
}

/* Validate an authority-form target (CONNECT): host ":" port. */
static int
h1_authority_form(const unsigned char *s, size_t a, size_t b)
{
    size_t i, colon = b;

    for (i = a; i < b; i++) {
        if (!h1_host_ok[s[i]]) return 0;
        if (s[i] == ':') colon = i;
    }
    if (colon == b || colon == a || colon + 1 == b) return 0;
    for (i = colon + 1; i < b; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

/* ------------------------------------------------------------------------
 * Field semantics
 */

/* Iterate over a comma-separated token list s[*pos..b) ("#token", RFC 9110
 * 5.6.1): elements are separated by OWS "," OWS, empty elements are
 * skipped.  Returns 1 with the next element in s[*t0..*t1) and *pos moved
 * past it, 0 at the end, -1 on a syntax error (a byte that is neither
 * token, OWS nor ',' - which includes the ';' of parameters and quotes). */
static int
h1_list_next(const unsigned char *s, size_t *pos, size_t b, size_t *t0,
             size_t *t1)
{
    size_t i = *pos;

    while (i < b && (h1_is_ows(s[i]) || s[i] == ','))
        i++;
    *pos = i;
    if (i == b) return 0;
    *t0 = i;
    while (i < b && h1_tchar[s[i]])
        i++;
    if (i == *t0) return -1;
    *t1 = i;
    while (i < b && h1_is_ows(s[i]))
        i++;
    if (i < b && s[i] != ',') return -1;
    *pos = i;
    return 1;
}

/* Act on one of the fields named in h1_special_first (but Host, which the
 * field loop checks itself); [vs, ve) is its OWS-stripped value.  Updates
 * req and p->aux[0].
 * Returns 0, or an error status (400, 413, 417) with *why set. */
static NOINLINE int
h1_field_semantics(h1_parser *p, h1_request *req, const unsigned char *s,
                   size_t name, size_t nlen, size_t vs, size_t ve,
                   const char **why)
{
    size_t i, t0, t1;
    int r;

    switch (nlen) {
    case 6:
        /* a list (RFC 9110 10.1.1) of which only 100-continue is known
         * (and acted on for HTTP/1.1 only); any other expectation, or one
         * with parameters, cannot be met: 417 */
        if (!h1_lower_eq_w(s + name, "expect", 6)) break;
        i = vs;
        while ((r = h1_list_next(s, &i, ve, &t0, &t1)) > 0) {
            if (t1 - t0 != 12 || !h1_lower_eq_w(s + t0, "100-continue", 12))
                break;
            if (req->version_minor == 1)
                req->flags |= H1_F_EXPECT_CONTINUE;
        }
        if (r != 0) {
            *why = "unsupported expectation";
            return 417;
        }
        break;
    case 7:
        if (h1_lower_eq_w(s + name, "upgrade", 7)) req->flags |= H1_F_UPGRADE;
        break;
    case 10:
        if (!h1_lower_eq_w(s + name, "connection", 10)) break;
        if (ve - vs == 10 && h1_lower_eq_w(s + vs, "keep-alive", 10)) {
            req->flags |= H1_F_CONN_KEEPALIVE;
            break;
        }
        i = vs;
        while ((r = h1_list_next(s, &i, ve, &t0, &t1)) > 0) {
            size_t n = t1 - t0;
            if (n == 5 && h1_lower_eq_w(s + t0, "close", 5))
                req->flags |= H1_F_CONN_CLOSE;
            else if (n == 10 && h1_lower_eq_w(s + t0, "keep-alive", 10))
                req->flags |= H1_F_CONN_KEEPALIVE;
            else if (n == 7 && h1_lower_eq_w(s + t0, "upgrade", 7))
                req->flags |= H1_F_CONN_UPGRADE;
        }
        if (r < 0) {
            *why = "invalid Connection";
            return 400;
        }
        break;
    case 12:
        /* one media type per message (RFC 9110 8.3): two cannot be
         * combined into a list, and which one a view would see is a guess */
        if (!h1_lower_eq_w(s + name, "content-type", 12)) break;
        if (req->flags & H1_F_HAS_CT) {
            *why = "duplicate Content-Type";
            return 400;
        }
        req->flags |= H1_F_HAS_CT;
        break;
    case 14: {
        uint64_t v = 0;
        if (!h1_lower_eq_w(s + name, "content-length", 14)) break;
        if (req->flags & H1_F_HAS_CL) {
            *why = "duplicate Content-Length";
            return 400;
        }
        if (vs == ve) {
            *why = "empty Content-Length";
            return 400;
        }
        for (i = vs; i < ve; i++) {
            unsigned d = (unsigned)s[i] - '0';
            if (d > 9) {
                *why = "invalid Content-Length";
                return 400;
            }
            if (v > (H1_CL_MAX - d) / 10) {
                /* a valid length, past any body limit (RFC 9110 8.6) */
                *why = "Content-Length too large";
                return 413;
            }
            v = v * 10 + d;
        }
        req->content_length = v;
        req->flags |= H1_F_HAS_CL;
        break;
    }
    case 17:
        if (!h1_lower_eq_w(s + name, "transfer-encoding", 17)) break;
        req->flags |= H1_F_HAS_TE;
        i = vs;
        while ((r = h1_list_next(s, &i, ve, &t0, &t1)) > 0) {
            if (p->aux[0] & H1_TE_CHUNKED) {
                *why = "chunked is not the final transfer coding";
                return 400;
            }
            if (t1 - t0 == 7 && h1_lower_eq_w(s + t0, "chunked", 7))
                p->aux[0] |= H1_TE_CHUNKED;
            else
                p->aux[0] |= H1_TE_OTHER;
        }
        if (r < 0) {
            *why = "invalid Transfer-Encoding";
            return 400;
        }
        break;
    }
    return 0;
}

/* Checks that need the whole head; sets H1_F_CHUNKED and H1_F_KEEP_ALIVE.
 * Returns 0, or an error status with *why set. */
static H1_ALWAYS_INLINE int
h1_head_semantics(h1_parser *p, h1_request *req, const char **why)
{
    uint32_t f = req->flags;

    if (UNLIKELY(!(f & H1_F_HAS_HOST)) && req->version_minor == 1) {
        *why = "missing Host";
        return 400;
    }
    if (UNLIKELY(f & H1_F_HAS_TE)) {
        if (f & H1_F_HAS_CL) {
            *why = "Content-Length with Transfer-Encoding";
            return 400;
        }
        if (!(p->aux[0] & H1_TE_CHUNKED)) {
            *why = "chunked is not the final transfer coding";
            return 400;
        }
        if (p->aux[0] & H1_TE_OTHER) {
            *why = "unsupported transfer coding";
            return 501;
        }
        f |= H1_F_CHUNKED;
    }
    if (req->version_minor == 1) {
        if (!(f & H1_F_CONN_CLOSE)) f |= H1_F_KEEP_ALIVE;
    } else if ((f & (H1_F_CONN_KEEPALIVE | H1_F_CONN_CLOSE | H1_F_HAS_TE)) ==
               H1_F_CONN_KEEPALIVE) {
        f |= H1_F_KEEP_ALIVE;
    }
    req->flags = (uint16_t)f;
    return 0;
}

/* ========================================================================
 * Chunked transfer coding (RFC 9112 section 7.1), decoded in place.
 *
 * Grammar enforced, strictly:
 *
 *   chunked-body   = *chunk last-chunk trailer-section CRLF
 *   chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-size     = 1*HEXDIG            (at most 64 digits, value < 2^60)
 *   last-chunk     = 1*("0") [ chunk-ext ] CRLF
 *   chunk-ext      = *( BWS ";" BWS chunk-ext-name
 *                         [ BWS "=" BWS chunk-ext-val ] )
 *   chunk-ext-name = token
 *   chunk-ext-val  = token / quoted-string
 *   trailer-section = *( field-line CRLF )
 *
 * BWS (SP / HTAB) is parsed and removed where the grammar has it, as RFC
 * 9110 5.6.3 requires of recipients: between the size or a previous
 * extension and ';', after ';', and on either side of '='.  Nowhere else:
 * whitespace before the size, inside it, or before the CRLF of the line
 * (no ';' after it) is an error.  Extensions and trailer fields are
 * validated and dropped.
 * A chunk-size line may not exceed H1_CK_MAX_LINE bytes and the trailer
 * section H1_CK_MAX_TRAILER bytes, and its size H1_CK_MAX_DIGITS digits.
 * A chunk that would take the body past max_body is H1_CHUNK_TOO_BIG,
 * reported when the size ends, before any of its data, or at a 16th
 * significant digit (past any limit).
 *
 * The decoder is a byte-level state machine for the framing and a memmove
 * for chunk data; every framing byte is consumed exactly once, so feeding
 * one byte at a time costs the same as feeding the whole body.
 */
#define H1_CK_MAX_DIGITS 64
#define H1_CK_MAX_LINE 4096
#define H1_CK_MAX_TRAILER 16384

/* h1_chunked.state */
enum {
    H1_CK_SIZE0 = 0, /* first hex digit of a chunk-size              */
    H1_CK_SIZE,      /* further hex digits                           */
    H1_CK_EXT_NAME0, /* after ';': first byte of an extension name   */
    H1_CK_EXT_NAME,  /* in an extension name                         */
    H1_CK_EXT_VAL0,  /* after '=': token or quoted-string            */
    H1_CK_EXT_TOK,   /* in a token extension value                   */
    H1_CK_EXT_QS,    /* in a quoted-string                           */
    H1_CK_EXT_QP,    /* after a backslash in a quoted-string         */
    H1_CK_EXT_QEND,  /* after the closing quote                      */
    H1_CK_EXT_SEMI,  /* BWS after the size or a value: only ';' next */
    H1_CK_EXT_EQ,    /* BWS after a name: '=' or ';' next            */
    H1_CK_SIZE_LF,   /* CR of the size line seen                     */
    H1_CK_DATA,      /* chunk_remaining data bytes to copy           */
    H1_CK_DATA_CR,   /* CRLF after chunk data                        */
    H1_CK_DATA_LF,
    H1_CK_TR_START,  /* start of a trailer line or the final CRLF    */
    H1_CK_TR_NAME,   /* in a trailer field name                      */
    H1_CK_TR_VALUE,  /* in a trailer field value                     */
    H1_CK_TR_LF,     /* CR of a trailer line seen                    */
    H1_CK_END_LF,    /* CR of the final CRLF seen                    */
    H1_CK_ST_DONE,
    H1_CK_ST_ERROR,
    H1_CK_ST_TOO_BIG,
};

void
h1_chunked_init(h1_chunked *c, uint64_t max_body)
{
    /* field by field: gcc makes a memset of this size `rep stos` */
    c->chunk_remaining = 0;
    c->total = 0;
    c->scan = 0;
    c->pad[0] = c->pad[1] = c->pad[2] = 0;
    c->max_body = max_body;
    c->state = H1_CK_SIZE0;
}

/* The chunk-size has ended (at ';', BWS or CR).  Returns 0, or the verdict
 * when the chunk would take the body past max_body. */
static H1_ALWAYS_INLINE int
h1_chunked_size_done(h1_chunked *c)
{
    if (c->chunk_remaining > c->max_body - c->total) return H1_CHUNK_TOO_BIG;
    return 0;
}

/* Copy chunk data: as many of the chunk's remaining bytes as are present. */
static H1_ALWAYS_INLINE void
h1_chunked_copy(h1_chunked *c, char *buf, size_t len, size_t *src,
                size_t *dst)
{
    size_t n = len - *src;

    if ((uint64_t)n > c->chunk_remaining) n = (size_t)c->chunk_remaining;
    if (*dst != *src) memmove(buf + *dst, buf + *src, n);
    *src += n;
    *dst += n;
    c->total += n;
    c->chunk_remaining -= n;
}

/* See h1parse.h.  Framing bytes are consumed one at a time through the
 * state machine; *src only ever moves forward and *dst never passes it. */
int
h1_chunked_decode(h1_chunked *c, char *buf, size_t len, size_t *src,
                  size_t *dst)
{
    const unsigned char *s = (const unsigned char *)buf;
    size_t i = *src;
    unsigned st = c->state;
    int rc = H1_CHUNK_PARTIAL;

    if (UNLIKELY(st >= H1_CK_ST_DONE)) {
        if (st == H1_CK_ST_DONE) return H1_CHUNK_DONE;
        return st == H1_CK_ST_TOO_BIG ? H1_CHUNK_TOO_BIG : H1_CHUNK_ERROR;
    }

    while (i < len) {
        unsigned ch;

        if (st == H1_CK_DATA) {
            *src = i;
            h1_chunked_copy(c, buf, len, src, dst);
            i = *src;
            if (c->chunk_remaining) break;
            st = H1_CK_DATA_CR;
            continue;
        }

        ch = s[i++];
        if (st < H1_CK_DATA) {
            /* bytes of a chunk-size line */
            if (UNLIKELY(++c->scan > H1_CK_MAX_LINE)) goto error;
        } else if (st >= H1_CK_TR_START) {
            if (UNLIKELY(++c->scan > H1_CK_MAX_TRAILER)) goto error;
        }

        switch (st) {
        case H1_CK_SIZE0:
        case H1_CK_SIZE: {
            unsigned d = h1_hexval1[ch];
            if (d) {
                if (UNLIKELY(c->scan > H1_CK_MAX_DIGITS))
                    goto error;
                if (UNLIKELY(c->chunk_remaining >> 56))
                    goto too_big; /* a 16th significant digit: a valid size,
                                   * past any body limit (RFC 9112 7.1) */
                c->chunk_remaining = (c->chunk_remaining << 4) | (d - 1);
                st = H1_CK_SIZE;
                break;
            }
            if (st == H1_CK_SIZE0) goto error;
            if (ch == ';')
                st = H1_CK_EXT_NAME0;
            else if (ch == '\r')
                st = H1_CK_SIZE_LF;
            else if (h1_is_ows(ch))
                st = H1_CK_EXT_SEMI;
            else
                goto error;
            if (h1_chunked_size_done(c)) goto too_big;
            break;
        }
        case H1_CK_EXT_NAME0:
            if (h1_is_ows(ch)) break;
            if (!h1_tchar[ch]) goto error;
            st = H1_CK_EXT_NAME;
            break;
        case H1_CK_EXT_NAME:
            if (h1_tchar[ch]) break;
            /* fall through */
        case H1_CK_EXT_EQ:
            if (ch == '=')
                st = H1_CK_EXT_VAL0;
            else if (ch == ';')
                st = H1_CK_EXT_NAME0;
            else if (h1_is_ows(ch))
                st = H1_CK_EXT_EQ;
            else if (ch == '\r' && st == H1_CK_EXT_NAME)
                st = H1_CK_SIZE_LF;
            else
                goto error;
            break;
        case H1_CK_EXT_VAL0:
            if (h1_is_ows(ch)) break;
            if (ch == '"')
                st = H1_CK_EXT_QS;
            else if (h1_tchar[ch])
                st = H1_CK_EXT_TOK;
            else
                goto error;
            break;
        case H1_CK_EXT_TOK:
            if (h1_tchar[ch]) break;
            /* fall through */
        case H1_CK_EXT_QEND:
        case H1_CK_EXT_SEMI:
            if (ch == ';')
                st = H1_CK_EXT_NAME0;
            else if (h1_is_ows(ch))
                st = H1_CK_EXT_SEMI;
            else if (ch == '\r' && st != H1_CK_EXT_SEMI)
                st = H1_CK_SIZE_LF;
            else
                goto error;
            break;
        case H1_CK_EXT_QS:
            if (ch == '"')
                st = H1_CK_EXT_QEND;
            else if (ch == '\\')
                st = H1_CK_EXT_QP;
            else if (!h1_value_ok[ch])
                goto error;
            break;
        case H1_CK_EXT_QP:
            if (!h1_value_ok[ch]) goto error;
            st = H1_CK_EXT_QS;
            break;
        case H1_CK_SIZE_LF:
            if (ch != '\n') goto error;
            c->scan = 0;
            st = c->chunk_remaining ? H1_CK_DATA : H1_CK_TR_START;
            break;
        case H1_CK_DATA_CR:
            if (ch != '\r') goto error; /* data longer than its size */
            st = H1_CK_DATA_LF;
            break;
        case H1_CK_DATA_LF:
            if (ch != '\n') goto error;
            st = H1_CK_SIZE0;
            break;
        case H1_CK_TR_START:
            if (ch == '\r')
                st = H1_CK_END_LF;
            else if (h1_tchar[ch])
                st = H1_CK_TR_NAME;
            else
                goto error; /* includes obs-fold and bare LF */
            break;
        case H1_CK_TR_NAME:
            if (h1_tchar[ch]) break;
            if (ch != ':') goto error;
            st = H1_CK_TR_VALUE;
            break;
        case H1_CK_TR_VALUE:
            if (h1_value_ok[ch]) break;
            if (ch != '\r') goto error;
            st = H1_CK_TR_LF;
            break;
        case H1_CK_TR_LF:
            if (ch != '\n') goto error;
            st = H1_CK_TR_START;
            break;
        case H1_CK_END_LF:
            if (ch != '\n') goto error;
            st = H1_CK_ST_DONE;
            rc = H1_CHUNK_DONE;
            goto out;
        default:
            goto error;
        }
    }
    goto out;

too_big:
    st = H1_CK_ST_TOO_BIG;
    rc = H1_CHUNK_TOO_BIG;
    goto out;
error:
    st = H1_CK_ST_ERROR;
    rc = H1_CHUNK_ERROR;
out:
    *src = i;
    c->state = (uint8_t)st;
    return rc;
}

/* ------------------------------------------------------------------------
 * The parse loop, once per SIMD level
 */
#define H1_LEVEL 0
#include "h1parse.c"
#undef H1_LEVEL
#if H1_HAVE_X86
#define H1_LEVEL 1
#include "h1parse.c"
#undef H1_LEVEL
#define H1_LEVEL 2
#include "h1parse.c"
#undef H1_LEVEL
#endif

/* ------------------------------------------------------------------------
 * Public API
 */

static int h1_parse_first(h1_parser *p, const unsigned char *buf, size_t len,
                          h1_request *req);
/* until the first call picks the best level */
h1_parse_fn h1_parse_impl = h1_parse_first;

int
h1_simd_best(void)
{
#if H1_HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) return H1_SIMD_AVX2;
    if (__builtin_cpu_supports("sse4.2")) return H1_SIMD_SSE42;
#endif
    return H1_SIMD_SCALAR;
}

int
h1_set_simd_level(int level)
{
    int best = h1_simd_best();
    h1_parse_fn fn = h1_parse_l0;

    if (level < 0)
        level = best < H1_SIMD_SSE42 ? best : H1_SIMD_SSE42;
    if (level > best) level = best;
#if H1_HAVE_X86
    if (level == H1_SIMD_AVX2) fn = h1_parse_l2;
    else if (level == H1_SIMD_SSE42) fn = h1_parse_l1;
#endif
    __atomic_store_n(&h1_parse_impl, fn, __ATOMIC_RELAXED);
    return level;
}

static int
h1_parse_first(h1_parser *p, const unsigned char *buf, size_t len, h1_request *req)
{
    (void)h1_set_simd_level(-1);
    return h1_parse_impl(p, buf, len, req);
}

#else /* ============================ per-level pass: H1_LEVEL = 0/1/2 == */

#define H1_CAT2(a, b) a##_l##b
#define H1_CAT(a, b) H1_CAT2(a, b)
#define H1_FN(name) H1_CAT(name, H1_LEVEL)

#undef H1_TARGET_ATTR
#undef H1_SCAN_VALUE
#undef H1_SCAN_TARGET
#undef H1_SCAN_QF
#if H1_LEVEL == 2
#define H1_TARGET_ATTR __attribute__((target("avx2")))
#define H1_SCAN_VALUE h1_scan_value_avx2
#define H1_SCAN_TARGET h1_scan_target_avx2
#define H1_SCAN_QF h1_scan_qf_avx2
#elif H1_LEVEL == 1
#define H1_TARGET_ATTR __attribute__((target("sse4.2")))
#define H1_SCAN_VALUE h1_scan_value_sse42
#define H1_SCAN_TARGET h1_scan_target_sse42
#define H1_SCAN_QF h1_scan_qf_sse42
#else
#define H1_TARGET_ATTR
#define H1_SCAN_VALUE h1_scan_value_scalar
#define H1_SCAN_TARGET h1_scan_target_scalar
#define H1_SCAN_QF h1_scan_qf_scalar
#endif

/* Classify the request-target s[t0..t1) (known non-empty, VCHAR only) and
 * fill req->target/path/query and H1_F_ASTERISK / H1_F_ABSOLUTE.
 * Returns 0, or 400 with *why set.  Compiled per level for H1_SCAN_QF. */
H1_TARGET_ATTR static H1_ALWAYS_INLINE int
H1_FN(h1_target_form)(h1_request *req, const unsigned char *s, size_t t0, size_t t1,
               const char **why)
{
    size_t a = t0, f, q;

    req->target = h1_mkspan(t0, t1 - t0);
    if (LIKELY(s[t0] == '/')) {
        if (UNLIKELY(req->method_id == H1_M_CONNECT)) {
            *why = "CONNECT requires an authority-form target";
            return 400;
        }
    } else if (s[t0] == '*') {
        if (t1 - t0 != 1 || (req->method_id != H1_M_OPTIONS &&
                             req->method_id != H1_M_OTHER)) {
            *why = "asterisk-form target is only for OPTIONS";
            return 400;
        }
        req->flags |= H1_F_ASTERISK;
        req->path = h1_mkspan(t0, 1);
        req->query = h1_mkspan(t1, 0);
        return 0;
    } else if (req->method_id == H1_M_CONNECT) {
        if (!h1_authority_form(s, t0, t1)) {
            *why = "invalid authority-form target";
            return 400;
        }
        req->path = h1_mkspan(t1, 0);
        req->query = h1_mkspan(t1, 0);
        return 0;
    } else {
        size_t n = t1 - t0;
        if (n >= 7 && h1_lower_eq(s + t0, "http://", 7))
            a = t0 + 7;
        else if (n >= 8 && h1_lower_eq(s + t0, "https://", 8))
            a = t0 + 8;
        else {
            *why = "invalid request-target";
            return 400;
        }
        t0 = a;
        while (a < t1 && s[a] != '/' && s[a] != '?' && s[a] != '#')
            a++;
        if (a == t0) {
            *why = "absolute-form target without authority";
            return 400;
        }
        /* the authority is the request's host (RFC 9112 3.2.2): the
         * characters of a Host value, and the '@' of a userinfo; after
         * the last '@', the form of a Host value, with a host: an http(s)
         * URI with an empty one is invalid (RFC 9110 4.2.1).  (A userinfo
         * is let through, as llhttp's strict mode does; 4.2.4 only says
         * SHOULD, and the host after it is the one used.) */
        q = t0;
        for (f = t0; f < a; f++) {
            if (UNLIKELY(!h1_host_ok[s[f]] && s[f] != '@')) {
                *why = "invalid authority in request-target";
                return 400;
            }
            if (s[f] == '@') q = f + 1;
        }
        if (q == a || s[q] == ':' || !h1_host_form_ok(s, q, a)) {
            *why = "invalid authority in request-target";
            return 400;
        }
        req->flags |= H1_F_ABSOLUTE;
    }
    q = H1_SCAN_QF(s, a, t1);
    f = q;
    while (f < t1 && s[f] == '?')
        f = H1_SCAN_QF(s, f + 1, t1);
    if (q < f) {
        req->path = h1_mkspan(a, q - a);
        req->query = h1_mkspan(q + 1, f - q - 1);
    } else {
        req->path = h1_mkspan(a, f - a);
        req->query = h1_mkspan(f, 0);
    }
    return 0;
}

/* h1_parse_l<N>: the body of h1_parse_request() for one scanner level.
 * Same contract.  Resumes at p->stage; see the state enum above. */
H1_TARGET_ATTR static int
H1_FN(h1_parse)(h1_parser *p, const unsigned char *s, size_t len,
                h1_request *req)
{
    size_t end = len, pos, line_start, mark, colon, vs, ve;
    uint32_t nh;
    unsigned stage;
    const char *why = NULL;
    int status = 400, r, limited = 0, minor = 1;

    if (UNLIKELY(end > p->max_header_size)) {
        end = p->max_header_size;
        limited = 1;
    }
    line_start = p->line_start;
    pos = line_start + p->scan_pos;
    mark = p->aux[1];
    nh = req->num_headers;

    switch (p->stage) {
    case H1_ST_START:
        goto st_start;
    case H1_ST_METHOD:
        goto st_method;
    case H1_ST_TARGET:
        goto st_target;
    case H1_ST_VERSION:
        goto st_version;
    case H1_ST_HDR_LINE:
        goto st_hdr_line;
    case H1_ST_HDR_NAME:
        goto st_hdr_name;
    case H1_ST_HDR_VALUE:
        goto st_hdr_value;
    case H1_ST_DONE:
        return (int)p->line_start;
    default:
        return H1_ERROR;
    }

#define H1_NEED(st)    \
    do {               \
        stage = (st);  \
        goto partial;  \
    } while (0)
#define H1_FAIL(code, reason) \
    do {                      \
        status = (code);      \
        why = (reason);       \
        goto fail;            \
    } while (0)

st_start: {
    h1_header *hdrs = req->headers;
    memset(req, 0, sizeof(*req));
    req->headers = hdrs;
    req->version_minor = 1;
    nh = 0;
    pos = 0;
    if (UNLIKELY(end < 2)) {
        if (end == 1 && s[0] == '\n') H1_FAIL(400, "bare LF");
        H1_NEED(H1_ST_START);
    }
    if (UNLIKELY(s[0] == '\r' || s[0] == '\n')) {
        if (s[0] == '\n') H1_FAIL(400, "bare LF");
        if (s[1] != '\n') H1_FAIL(400, "bare CR");
        p->leading_crlf = 1;
        pos = 2;
    }
    line_start = pos;
}

st_method: {
    size_t m0 = line_start;
    int id;
    if (LIKELY(pos == m0 && end - pos >= 4) &&
        h1_load32(s + pos) == H1_U32('G', 'E', 'T', ' ')) {
        pos += 3;
        id = H1_M_GET;
    } else {
        pos = h1_scan_token(s, pos, end);
        if (UNLIKELY(pos >= end)) H1_NEED(H1_ST_METHOD);
        if (UNLIKELY(s[pos] != ' ' || pos == m0)) {
            if (pos == m0 && (s[pos] == '\r' || s[pos] == '\n'))
                H1_FAIL(400, s[pos] == '\n' ? "bare LF"
                                            : "too many empty lines before request");
            H1_FAIL(400, "invalid method");
        }
        id = h1_method_id(s + m0, pos - m0);
    }
    req->method = h1_mkspan(m0, pos - m0);
    req->method_id = (uint8_t)id;
    pos++;
    mark = pos;
}

st_target:
    pos = H1_SCAN_TARGET(s, pos, end);
    if (UNLIKELY(pos >= end)) H1_NEED(H1_ST_TARGET);
    if (UNLIKELY(s[pos] != ' ' || pos == mark)) {
        if (s[pos] == '\r' || s[pos] == '\n')
            H1_FAIL(400, "missing HTTP version");
        H1_FAIL(400, pos == mark ? "empty request-target"
                                 : "invalid character in request-target");
    }
    r = H1_FN(h1_target_form)(req, s, mark, pos, &why);
    if (UNLIKELY(r)) H1_FAIL(r, why);
    pos++;
    mark = pos;

st_version:
    pos = mark;
    if (LIKELY(end - pos >= 10)) {
        uint64_t w;
        memcpy(&w, s + pos, 8);
        if (LIKELY(w == ((uint64_t)H1_U32('H', 'T', 'T', 'P') |
                         (uint64_t)H1_U32('/', '1', '.', '1') << 32)) &&
            LIKELY(s[pos + 8] == '\r' && s[pos + 9] == '\n')) {
            minor = 1;
            goto version_ok;
        }
    }
    r = h1_version_slow(s + pos, end - pos, &minor, &why);
    if (r) {
        if (r == -2) H1_NEED(H1_ST_VERSION);
        H1_FAIL(r, why);
    }
version_ok:
    req->version_minor = (uint8_t)minor;
    pos += 10;

    /* ---- field lines ---- */
    for (;;) {
        line_start = pos;
    st_hdr_line:
        if (UNLIKELY(end - pos < 2)) {
            if (pos < end && s[pos] != '\r') goto name_start;
            H1_NEED(H1_ST_HDR_LINE);
        }
        if (s[pos] == '\r') {
            if (UNLIKELY(s[pos + 1] != '\n')) H1_FAIL(400, "bare CR");
            pos += 2;
            goto done;
        }
    name_start:
        if (UNLIKELY(nh >= p->max_headers)) H1_FAIL(431, "too many header fields");
    st_hdr_name:
        pos = h1_scan_token(s, pos, end);
        if (UNLIKELY(pos >= end)) H1_NEED(H1_ST_HDR_NAME);
        if (UNLIKELY(s[pos] != ':' || pos == line_start)) {
            unsigned c = s[pos];
            if (pos == line_start && (c == ' ' || c == '\t'))
                H1_FAIL(400, "obsolete line folding");
            if (c == '\n') H1_FAIL(400, "bare LF");
            if (c == ':') H1_FAIL(400, "empty header name");
            H1_FAIL(400, "invalid header name");
        }
        mark = pos;
        pos++;
    st_hdr_value:
        pos = H1_SCAN_VALUE(s, pos, end);
        if (UNLIKELY(end - pos < 2)) {
            if (pos < end && s[pos] != '\r') goto value_bad;
            H1_NEED(H1_ST_HDR_VALUE);
        }
        if (UNLIKELY(s[pos] != '\r')) goto value_bad;
        if (UNLIKELY(s[pos + 1] != '\n')) H1_FAIL(400, "bare CR");
        colon = mark;
        vs = colon + 1;
        ve = pos;
        /* OWS: most often exactly one space before the value, none after */
        if (LIKELY(vs < ve) && s[vs] == ' ') vs++;
        while (vs < ve && h1_is_ows(s[vs]))
            vs++;
        while (ve > vs && h1_is_ows(s[ve - 1]))
            ve--;
        {
            h1_header *h = &req->headers[nh];
            size_t nlen = colon - line_start;
            h->name = h1_mkspan(line_start, nlen);
            h->value = h1_mkspan(vs, ve - vs);
            if (nlen == 4 && h1_lower_eq_w(s + line_start, "host", 4)) {
                /* Host, on every request: checked here rather than in
                 * h1_field_semantics */
                if (UNLIKELY(req->flags & H1_F_HAS_HOST))
                    H1_FAIL(400, "duplicate Host");
                {
                    /* the usual form, name ":" port, costs one pass: the
                     * port's digits from the end, then the name must hold
                     * Host characters but no ':' nor brackets (hc 3);
                     * anything else (an IP-literal, say) gets the full
                     * check of its form */
                    size_t ne = ve - h1_trailing_digits(s, vs, ve);
                    unsigned hc;
                    ne = ne > vs && s[ne - 1] == ':' ? ne - 1 : ve;
                    hc = h1_host_chars_ok(s, vs, ne);
                    /* a port of five digits past 65535, or of more digits
                     * (leading zeros), gets the full check too */
                    if ((ve - ne > 5 && (ve - ne > 6 || (s[ne + 1] >= '6' &&
                                                          memcmp(s + ne + 1, "65535", 5) > 0))) ||
                        (ne == vs && ne < ve))
                        hc &= 1; /* and so does a port after no host */
                    if (UNLIKELY(hc != 3) && (!(hc & 1) || !h1_host_form_ok(s, vs, ve)))
                        H1_FAIL(400, "invalid Host");
                }
                req->flags |= H1_F_HAS_HOST;
                req->host_index = nh;
            } else if (nlen < 32 &&
                       UNLIKELY(h1_special_first[nlen] == (s[line_start] | 0x20))) {
                r = h1_field_semantics(p, req, s, line_start, nlen, vs, ve, &why);
                if (r) H1_FAIL(r, why);
            }
        }
        nh++;
        pos += 2;
    }

value_bad:
    H1_FAIL(400, s[pos] == '\n' ? "bare LF" : "invalid character in header value");

done:
    req->num_headers = nh;
    r = h1_head_semantics(p, req, &why);
    if (UNLIKELY(r)) H1_FAIL(r, why);
    p->stage = H1_ST_DONE;
    p->line_start = (uint32_t)pos;
    p->scan_pos = 0;
    return (int)pos;

partial:
    if (limited) {
        if (stage == H1_ST_METHOD)
            /* longer than any method (RFC 9112 3) */
            H1_FAIL(501, "method too long");
        if (stage <= H1_ST_VERSION)
            H1_FAIL(414, "request line too long");
        H1_FAIL(431, "request head too large");
    }
    p->stage = (uint8_t)stage;
    p->line_start = (uint32_t)line_start;
    p->scan_pos = (uint32_t)(pos - line_start);
    p->aux[1] = (uint32_t)mark;
    req->num_headers = nh;
    return H1_PARTIAL;

fail:
    p->stage = H1_ST_ERROR;
    req->num_headers = nh;
    req->error_status = (uint16_t)status;
    req->error_reason = why;
    return H1_ERROR;

#undef H1_NEED
#undef H1_FAIL
}

#endif /* H1_LEVEL */
