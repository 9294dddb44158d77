/*
 * test_wsframe.c - C unit tests for the WebSocket frame codec
 * (src/fulmen/_core/wsframe.c).
 *
 * Every input is copied so that it ends exactly at a PROT_NONE guard page,
 * so an over-read crashes.  Headers are also parsed at every prefix length;
 * unmasking runs every offset and length 0..300 at every SIMD level against
 * a byte-at-a-time reference; the UTF-8 validator is compared, whole and fed
 * byte by byte (where it must fail at the exact byte), with a reference that
 * decides validity arithmetically from code-point ranges rather than from a
 * byte table, over every code point and every overlong, surrogate,
 * truncated and out-of-range form.
 *
 * Last line of output: "N passed, M failed"; exit status 1 on failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "wsframe.h"
#include "testutil.h"


/* xorshift64*: deterministic test data */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t
rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static int best_level;

/* ------------------------------------------------------------------------
 * Frame headers
 */

/* Encode a header by hand (independently of ws_build_header): lenbytes is
 * 0 (7-bit), 2 or 8. */
static size_t
mk_header(uint8_t *out, unsigned b0, int masked, uint64_t plen, int lenbytes,
          const uint8_t key[4])
{
    size_t n = 0;
    out[n++] = (uint8_t)b0;
    if (lenbytes == 0)
        out[n++] = (uint8_t)((masked ? 0x80 : 0) | plen);
    else {
        out[n++] = (uint8_t)((masked ? 0x80 : 0) | (lenbytes == 2 ? 126 : 127));
        for (int i = lenbytes - 1; i >= 0; i--)
            out[n++] = (uint8_t)(plen >> (8 * i));
    }
    if (masked) {
        memcpy(out + n, key, 4);
        n += 4;
    }
    return n;
}

/* Parse hdr[0..n) placed at the guard, and every prefix of it. */
static void
check_valid_header(const char *name, const uint8_t *hdr, size_t n,
                   unsigned flags, unsigned b0, int masked, uint64_t plen,
                   const uint8_t key[4])
{
    ws_header h;
    int rc, prefix_ok = 1;
    uint8_t *p;
    static const uint8_t zero[4];

    for (size_t k = 0; k < n; k++) {
        p = guard_at(hdr, k, 1);
        if (ws_parse_header(p, k, flags, &h) != 0) prefix_ok = 0;
    }
    check(prefix_ok, name, "a strict prefix did not return 0");

    p = guard_at(hdr, n, 1);
    memset(&h, 0xEE, sizeof h);
    rc = ws_parse_header(p, n, flags, &h);
    check(rc == (int)n, name, "header size");
    check(h.fin == (b0 >> 7) && h.rsv1 == ((b0 >> 6) & 1) &&
              h.opcode == (b0 & 15) && h.masked == masked &&
              h.payload_len == plen &&
              memcmp(h.mask, masked ? key : zero, 4) == 0,
          name, "header fields");
}

static void
test_header_valid(void)
{
    static const unsigned ops[] = {WS_OP_CONT, WS_OP_TEXT,  WS_OP_BINARY,
                                   WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
    static const uint64_t lens[] = {0,       1,          100,
                                    125,     126,        127,
                                    1000,    65535,      65536,
                                    1u << 20, 0xFFFFFFFFull, 0x100000000ull,
                                    0x7FFFFFFFFFFFFFFFull};
    const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    char name[128];
    int nvalid = 0;

    for (size_t o = 0; o < sizeof ops / sizeof *ops; o++)
        for (int fin = 0; fin <= 1; fin++)
            for (int masked = 0; masked <= 1; masked++)
                for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
                    for (int lb = 0; lb <= 8; lb += (lb ? 6 : 2)) {
                        uint8_t hdr[WS_MAX_HEADER + 8];
                        unsigned op = ops[o], b0 = (fin ? 0x80 : 0) | op;
                        uint64_t plen = lens[li];
                        unsigned flags;
                        size_t n;
                        /* lb: 0, 2, 8 - what fits, non-minimal included */
                        if (lb == 0 && plen > 125) continue;
                        if (lb == 2 && plen > 0xFFFF) continue;
                        /* control frames: final, <= 125, and (see the
                         * error table) 7-bit length only */
                        if ((op & 8) && (!fin || plen > 125 || lb)) continue;
                        n = mk_header(hdr, b0, masked, plen, lb, key);
                        flags = masked ? WS_HDR_REQUIRE_MASK
                                       : WS_HDR_FORBID_MASK;
                        snprintf(name, sizeof name,
                                 "hdr op=%u fin=%d mask=%d len=%llu enc=%d",
                                 op, fin, masked, (unsigned long long)plen,
                                 lb);
                        check_valid_header(name, hdr, n, flags, b0, masked,
                                           plen, key);
                        /* no flags: either mask state is fine */
                        check_valid_header(name, hdr, n, 0, b0, masked, plen,
                                           key);
                        /* trailing payload bytes change nothing */
                        {
                            uint8_t buf[64];
                            ws_header h;
                            memcpy(buf, hdr, n);
                            memset(buf + n, 0x5A, sizeof buf - n);
                            check(ws_parse_header(guard_at(buf, sizeof buf, 1),
                                                  sizeof buf, flags,
                                                  &h) == (int)n,
                                  name, "with trailing bytes");
                        }
                        nvalid++;
                    }
    /* RSV1 where permessage-deflate allows it */
    {
        uint8_t hdr[16];
        size_t n = mk_header(hdr, 0xC1, 1, 5, 0, key);
        check_valid_header("rsv1 text deflate", hdr, n,
                           WS_HDR_ALLOW_RSV1 | WS_HDR_REQUIRE_MASK, 0xC1, 1, 5,
                           key);
        n = mk_header(hdr, 0x42, 1, 300, 2, key);
        check_valid_header("rsv1 binary non-final deflate", hdr, n,
                           WS_HDR_ALLOW_RSV1, 0x42, 1, 300, key);
    }
    printf("header: %d valid encodings\n", nvalid);
}

typedef struct {
    const char *name;
    uint8_t bytes[14];
    size_t len;
    unsigned flags;
    int err;
    size_t err_at; /* the shortest prefix that must report err */
} hdr_err_case;

#define RM WS_HDR_REQUIRE_MASK
static const hdr_err_case hdr_err_cases[] = {
    {"rsv1 no ext", {0xC1, 0x85, 1, 2, 3, 4}, 6, RM, WS_ERR_RSV, 1},
    {"rsv2", {0xA1, 0x85, 1, 2, 3, 4}, 6, RM | WS_HDR_ALLOW_RSV1, WS_ERR_RSV, 1},
    {"rsv3", {0x91, 0x85, 1, 2, 3, 4}, 6, RM | WS_HDR_ALLOW_RSV1, WS_ERR_RSV, 1},
    {"rsv1 cont deflate", {0x40, 0x85, 1, 2, 3, 4}, 6, RM | WS_HDR_ALLOW_RSV1,
     WS_ERR_RSV, 1},
    {"rsv1 ping deflate", {0xC9, 0x80, 1, 2, 3, 4}, 6, RM | WS_HDR_ALLOW_RSV1,
     WS_ERR_RSV, 1},
    {"rsv1 close deflate", {0xC8, 0x80, 1, 2, 3, 4}, 6, RM | WS_HDR_ALLOW_RSV1,
     WS_ERR_RSV, 1},
    {"op 3", {0x83, 0x80, 1, 2, 3, 4}, 6, RM, WS_ERR_OPCODE, 1},
    {"op 4", {0x84, 0x80, 1, 2, 3, 4}, 6, RM, WS_ERR_OPCODE, 1},
    {"op 5", {0x85, 0x80, 1, 2, 3, 4}, 6, RM, WS_ERR_OPCODE, 1},
    {"op 6", {0x86, 0x80, 1, 2, 3, 4}, 6, RM, WS_ERR_OPCODE, 1},
    {"op 7", {0x87, 0x80, 1, 2, 3, 4}, 6, RM, WS_ERR_OPCODE, 1},
    {"op B", {0x8B, 0x80, 1, 2, 3, 4}, 6, RM, WS_ERR_OPCODE, 1},
    {"op C", {0x8C, 0x80, 1, 2, 3, 4}, 6, RM, WS_ERR_OPCODE, 1},
    {"op D", {0x8D, 0x80, 1, 2, 3, 4}, 6, RM, WS_ERR_OPCODE, 1},
    {"op E", {0x8E, 0x80, 1, 2, 3, 4}, 6, RM, WS_ERR_OPCODE, 1},
    {"op F", {0x8F, 0x80, 1, 2, 3, 4}, 6, RM, WS_ERR_OPCODE, 1},
    {"op 3 non-final", {0x03, 0x80, 1, 2, 3, 4}, 6, 0, WS_ERR_OPCODE, 1},
    {"close fin=0", {0x08, 0x80, 1, 2, 3, 4}, 6, RM, WS_ERR_CTRL_FRAGMENTED, 1},
    {"ping fin=0", {0x09, 0x80, 1, 2, 3, 4}, 6, RM, WS_ERR_CTRL_FRAGMENTED, 1},
    {"pong fin=0", {0x0A, 0x80, 1, 2, 3, 4}, 6, 0, WS_ERR_CTRL_FRAGMENTED, 1},
    {"ping len 126", {0x89, 0xFE, 0, 126, 1, 2, 3, 4}, 8, RM,
     WS_ERR_CTRL_TOO_LONG, 2},
    {"ping len16 125", {0x89, 0xFE, 0, 125, 1, 2, 3, 4}, 8, RM,
     WS_ERR_CTRL_TOO_LONG, 2},
    {"close len 127", {0x88, 0xFF, 0, 0, 0, 0, 0, 0, 0, 200, 1, 2, 3, 4}, 14,
     RM, WS_ERR_CTRL_TOO_LONG, 2},
    {"pong unmasked len 126", {0x8A, 0x7E, 0, 126}, 4, 0,
     WS_ERR_CTRL_TOO_LONG, 2},
    {"len64 msb", {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, 14, RM,
     WS_ERR_LEN_MSB, 3},
    {"len64 all ones", {0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                        0xFF}, 10, 0, WS_ERR_LEN_MSB, 3},
    {"unmasked text", {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'}, 7, RM,
     WS_ERR_UNMASKED, 2},
    {"unmasked ping", {0x89, 0x00}, 2, RM, WS_ERR_UNMASKED, 2},
    {"masked from server", {0x81, 0x85, 1, 2, 3, 4}, 6, WS_HDR_FORBID_MASK,
     WS_ERR_MASKED, 2},
};
#undef RM

static void
test_header_errors(void)
{
    for (size_t c = 0; c < sizeof hdr_err_cases / sizeof *hdr_err_cases; c++) {
        const hdr_err_case *tc = &hdr_err_cases[c];
        int ok = 1;
        ws_header h;
        for (size_t k = 0; k <= tc->len; k++) {
            uint8_t *p = guard_at(tc->bytes, k, 1);
            int want = k < tc->err_at ? 0 : tc->err;
            int rc = ws_parse_header(p, k, tc->flags, &h);
            if (rc != want) {
                fprintf(stderr, "  prefix %zu: got %d want %d\n", k, rc, want);
                ok = 0;
            }
        }
        check(ok, tc->name, "error at the earliest byte, 0 before");
    }
    /* control frame payload of exactly 125 is fine */
    {
        const uint8_t b[] = {0x88, 0xFD, 9, 9, 9, 9};
        ws_header h;
        check(ws_parse_header(guard_at(b, 6, 1), 6, WS_HDR_REQUIRE_MASK, &h) ==
                      6 &&
                  h.payload_len == 125,
              "close len 125", "accepted");
    }
    /* every first byte: exactly the defined ones pass byte 0 */
    {
        int ok = 1;
        for (unsigned b0 = 0; b0 < 256; b0++) {
            uint8_t b[2] = {(uint8_t)b0, 0x00};
            ws_header h;
            unsigned op = b0 & 15;
            int known = op <= 2 || (op >= 8 && op <= 10);
            int good = known && !(b0 & 0x70) && (!(op & 8) || (b0 & 0x80));
            int rc = ws_parse_header(guard_at(b, 2, 1), 2, 0, &h);
            if ((rc == 2) != good || (rc != 2 && rc >= 0)) ok = 0;
        }
        check(ok, "first byte sweep", "valid iff defined opcode, no RSV, "
                                      "control frames final");
    }
}

static void
test_build_header(void)
{
    static const struct {
        uint64_t len;
        size_t n;
        uint8_t bytes[10];
    } cases[] = {
        {0, 2, {0x81, 0}},
        {125, 2, {0x81, 125}},
        {126, 4, {0x81, 126, 0, 126}},
        {65535, 4, {0x81, 126, 0xFF, 0xFF}},
        {65536, 10, {0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
        {0x0102030405060708ull, 10, {0x81, 127, 1, 2, 3, 4, 5, 6, 7, 8}},
    };
    char name[64];

    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint8_t out[10];
        size_t n = ws_build_header(out, 1, 0, WS_OP_TEXT, cases[i].len);
        snprintf(name, sizeof name, "build len=%llu",
                 (unsigned long long)cases[i].len);
        check(n == cases[i].n && memcmp(out, cases[i].bytes, n) == 0, name,
              "bytes");
    }
    /* round trip through the parser, all flag bits */
    {
        int ok = 1;
        static const uint64_t lens[] = {0, 1, 125, 126, 65535, 65536,
                                        0x7FFFFFFFFFFFFFFFull};
        for (int fin = 0; fin <= 1; fin++)
            for (int rsv1 = 0; rsv1 <= 1; rsv1++)
                for (int op = 1; op <= 2; op++)
                    for (size_t li = 0; li < 7; li++) {
                        uint8_t out[10];
                        ws_header h;
                        size_t n = ws_build_header(out, fin, rsv1, op, lens[li]);
                        int rc = ws_parse_header(
                            guard_at(out, n, 1), n,
                            WS_HDR_FORBID_MASK | WS_HDR_ALLOW_RSV1, &h);
                        if (rc != (int)n || h.fin != fin || h.rsv1 != rsv1 ||
                            h.opcode != op || h.masked ||
                            h.payload_len != lens[li])
                            ok = 0;
                    }
        check(ok, "build round trip", "parse(build(x)) == x");
    }
    {
        uint8_t out[10];
        size_t n = ws_build_header(out, 1, 0, WS_OP_CLOSE, 2);
        check(n == 2 && out[0] == 0x88 && out[1] == 2, "build close", "bytes");
    }
}

/* ------------------------------------------------------------------------
 * Unmasking
 */

static void
ref_unmask(uint8_t *d, size_t n, const uint8_t key[4], size_t off)
{
    for (size_t i = 0; i < n; i++) d[i] ^= key[(off + i) % 4];
}

#define UNMASK_MAX 300
#define SENTINEL_LEN 64

static void
test_unmask(void)
{
    const uint8_t key[4] = {0x12, 0x9c, 0xe7, 0x41};
    uint8_t src[UNMASK_MAX], want[UNMASK_MAX];
    char name[96];

    for (size_t i = 0; i < UNMASK_MAX; i++) src[i] = (uint8_t)rng();
    for (int lv = 0; lv <= best_level; lv++) {
        ws_set_simd_level(lv);
        for (size_t off = 0; off <= UNMASK_MAX; off++) {
            int ok = 1;
            for (size_t len = 0; len <= UNMASK_MAX; len++) {
                /* sentinel bytes before the data catch writes below it; the
                 * guard page after it catches reads and writes above */
                uint8_t *d = guard_end - len;
                memset(d - SENTINEL_LEN, 0xA5, SENTINEL_LEN);
                memcpy(d, src, len);
                memcpy(want, src, len);
                ref_unmask(want, len, key, off);
                ws_unmask(d, len, key, off);
                if (memcmp(d, want, len) != 0) ok = 0;
                for (size_t j = 1; j <= SENTINEL_LEN; j++)
                    if (d[-(ptrdiff_t)j] != 0xA5) ok = 0;
            }
            snprintf(name, sizeof name, "unmask level=%d offset=%zu", lv, off);
            check(ok, name, "lengths 0..300 match the reference");
        }
    }

    /* 1 MiB, unmasked whole and in random pieces, at every level */
    {
        size_t n = 1u << 20;
        uint8_t *orig = malloc(n), *ref = malloc(n);
        if (!orig || !ref) exit(2);
        for (size_t i = 0; i < n; i++) orig[i] = (uint8_t)rng();
        memcpy(ref, orig, n);
        ref_unmask(ref, n, key, 0);
        for (int lv = 0; lv <= best_level; lv++) {
            uint8_t *d = guard_end - n;
            size_t pos = 0;
            ws_set_simd_level(lv);
            memcpy(d, orig, n);
            ws_unmask(d, n, key, 0);
            snprintf(name, sizeof name, "unmask 1MiB level=%d", lv);
            check(memcmp(d, ref, n) == 0, name, "whole");
            memcpy(d, orig, n);
            while (pos < n) {
                size_t piece = (size_t)(rng() % 700);
                if (piece > n - pos) piece = n - pos;
                ws_unmask(d + pos, piece, key, pos);
                pos += piece;
            }
            check(memcmp(d, ref, n) == 0, name, "in pieces");
            ws_unmask(d, n, key, 0);
            check(memcmp(d, orig, n) == 0, name, "involution");
        }
        free(orig);
        free(ref);
    }
    ws_set_simd_level(-1);
}

/* ------------------------------------------------------------------------
 * UTF-8
 *
 * Reference: at each sequence the lead byte fixes the length L; after each
 * byte, the bytes so far pin the code point to the range [lo, hi] of their
 * possible completions.  The prefix is viable iff that range meets the
 * values that need exactly L bytes, minus the surrogates.  The first byte
 * where it is not viable is where a fail-fast validator must fail.
 */

/* 1: valid and complete; 0: valid prefix, ends inside a sequence;
 * -1: invalid, *bad = index of the first byte that made it so. */
static int
ref_utf8(const uint8_t *s, size_t n, size_t *bad)
{
    static const uint32_t minv[5] = {0, 0, 0x80, 0x800, 0x10000};
    static const uint32_t maxv[5] = {0, 0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
    size_t i = 0;

    while (i < n) {
        uint8_t b = s[i];
        int L = b < 0x80 ? 1
                : (b & 0xE0) == 0xC0 ? 2
                : (b & 0xF0) == 0xE0 ? 3
                : (b & 0xF8) == 0xF0 ? 4
                                     : 0;
        uint32_t v;
        if (L == 0) {
            *bad = i;
            return -1;
        }
        v = L == 1 ? b : (uint32_t)(b & (0x7F >> L));
        for (int k = 0; k < L; k++) {
            uint32_t lo, hi, a, z;
            int rest = L - 1 - k;
            if (k > 0) {
                if (i + k >= n) return 0;
                if ((s[i + k] & 0xC0) != 0x80) {
                    *bad = i + k;
                    return -1;
                }
                v = (v << 6) | (s[i + k] & 0x3F);
            }
            lo = v << (6 * rest);
            hi = lo | ((1u << (6 * rest)) - 1);
            a = lo > minv[L] ? lo : minv[L];
            z = hi < maxv[L] ? hi : maxv[L];
            if (a > z || (a >= 0xD800 && z <= 0xDFFF)) {
                *bad = i + k;
                return -1;
            }
        }
        i += L;
    }
    return 1;
}

static size_t
enc_utf8(uint8_t *o, uint32_t cp, int nbytes) /* nbytes may be overlong */
{
    if (nbytes == 1) {
        o[0] = (uint8_t)cp;
    } else {
        for (int k = nbytes - 1; k > 0; k--) {
            o[k] = (uint8_t)(0x80 | (cp & 0x3F));
            cp >>= 6;
        }
        o[0] = (uint8_t)((0xFF00 >> nbytes) | cp);
    }
    return (size_t)nbytes;
}

static int
min_len(uint32_t cp)
{
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

typedef struct {
    const char *name;
    long runs, bad;
    char first[160];
} u8_tally;

static void
u8_fail(u8_tally *t, const uint8_t *s, size_t n, const char *why)
{
    if (t->bad++ == 0) {
        int o = snprintf(t->first, sizeof t->first, "%s:", why);
        for (size_t i = 0; i < n && i < 24 && o < (int)sizeof t->first - 4; i++)
            o += snprintf(t->first + o, sizeof t->first - (size_t)o, " %02x",
                          s[i]);
    }
}

/* Compare the validator with the reference on s[0..n): fed whole, fed byte
 * by byte (must fail at exactly the reference's byte).  `want` (-2 = don't care) is the expected reference
 * verdict and *want_bad the expected failing index, checking the reference
 * itself on constructed inputs. */
static void
u8_run(u8_tally *t, const uint8_t *src, size_t n, int want, size_t want_bad)
{
    size_t bad = (size_t)-1;
    const uint8_t *s = guard_at(src, n, 1);
    int r = ref_utf8(s, n, &bad);
    ws_utf8_state st;
    int rc;

    t->runs++;
    if (want != -2 && (r != want || (r < 0 && bad != want_bad))) {
        u8_fail(t, src, n, "reference disagrees with construction");
        return;
    }
    /* whole */
    ws_utf8_init(&st);
    rc = ws_utf8_validate(&st, s, n);
    if (rc != (r < 0 ? -1 : 0) || ws_utf8_finish(&st) != (r == 1 ? 0 : -1)) {
        u8_fail(t, src, n, "whole");
        return;
    }
    /* byte by byte, each byte at the guard */
    ws_utf8_init(&st);
    for (size_t i = 0; i < n; i++) {
        rc = ws_utf8_validate(&st, guard_at(src + i, 1, 1), 1);
        if (rc != 0) {
            if (r >= 0 || i != bad) u8_fail(t, src, n, "bytewise fail point");
            /* sticky */
            if (ws_utf8_validate(&st, (const uint8_t *)"a", 1) != -1 ||
                ws_utf8_finish(&st) != -1)
                u8_fail(t, src, n, "not sticky");
            return;
        }
    }
    if (r < 0 || ws_utf8_finish(&st) != (r == 1 ? 0 : -1)) {
        u8_fail(t, src, n, "bytewise verdict");
        return;
    }
}

/* Random chunking of longer inputs; the chunk that fails must be the one
 * holding the reference's bad byte. */
static void
u8_run_chunked(u8_tally *t, const uint8_t *src, size_t n)
{
    size_t bad = (size_t)-1, pos = 0;
    int r = ref_utf8(src, n, &bad);
    ws_utf8_state st;

    t->runs++;
    ws_utf8_init(&st);
    while (pos < n) {
        size_t piece = 1 + (size_t)(rng() % 80);
        int rc;
        if (piece > n - pos) piece = n - pos;
        rc = ws_utf8_validate(&st, guard_at(src + pos, piece, 1), piece);
        if (rc != 0) {
            if (r >= 0 || bad < pos || bad >= pos + piece)
                u8_fail(t, src, n, "chunked fail point");
            return;
        }
        pos += piece;
    }
    if (r < 0 || ws_utf8_finish(&st) != (r == 1 ? 0 : -1))
        u8_fail(t, src, n, "chunked verdict");
}

static void
u8_report(u8_tally *t, int lv)
{
    char name[96], what[256];
    snprintf(name, sizeof name, "utf8 %s level=%d", t->name, lv);
    snprintf(what, sizeof what, "%ld of %ld inputs disagree; first: %s", t->bad,
             t->runs, t->first);
    check(t->bad == 0 && t->runs > 0, name, what);
}

static void
test_utf8_level(int lv)
{
    uint8_t b[16];

    /* every scalar value, shortest form: valid; every strict prefix of a
     * multi-byte one: valid but unfinished */
    {
        u8_tally t = {.name = "all code points"}, tr = {.name = "truncated"};
        for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
            size_t n;
            if (cp >= 0xD800 && cp <= 0xDFFF) continue;
            n = enc_utf8(b, cp, min_len(cp));
            u8_run(&t, b, n, 1, 0);
            for (size_t k = 1; k < n; k++) u8_run(&tr, b, k, 0, 0);
        }
        u8_report(&t, lv);
        u8_report(&tr, lv);
    }
    /* surrogates: fail at the second byte (ED A0..BF) */
    {
        u8_tally t = {.name = "surrogates"};
        for (uint32_t cp = 0xD800; cp <= 0xDFFF; cp++) {
            size_t n = enc_utf8(b, cp, 3);
            u8_run(&t, b, n, -1, 1);
            u8_run(&t, b, 2, -1, 1);
        }
        u8_report(&t, lv);
    }
    /* overlong: every value in every longer form.  C0/C1 fail at once;
     * E0 80..9F and F0 80..8F at the second byte. */
    {
        u8_tally t = {.name = "overlong"};
        for (uint32_t cp = 0; cp < 0x10000; cp++)
            for (int L = min_len(cp) + 1; L <= 4; L++) {
                size_t n = enc_utf8(b, cp, L);
                size_t at = (L == 2) ? 0 : 1;
                u8_run(&t, b, n, -1, at);
            }
        u8_report(&t, lv);
    }
    /* above U+10FFFF: F4 90.. fails at byte 1, F5..F7 at byte 0; the old
     * 5- and 6-byte forms (F8..FD) at byte 0 */
    {
        u8_tally t = {.name = "above 10FFFF"};
        for (uint32_t cp = 0x110000; cp <= 0x1FFFFF; cp++) {
            size_t n = enc_utf8(b, cp, 4);
            u8_run(&t, b, n, -1, b[0] == 0xF4 ? 1 : 0);
        }
        for (uint32_t cp = 0x200000; cp < 0x80000000u; cp += 0x1357) {
            int L = cp < 0x4000000 ? 5 : 6;
            size_t n = enc_utf8(b, cp, L);
            u8_run(&t, b, n, -1, 0);
        }
        u8_report(&t, lv);
    }
    /* every 1- and 2-byte string, and every 3-byte string whose last byte
     * is on a class boundary (or any byte for a 3rd byte test of E0..F4) */
    {
        static const uint8_t edge[] = {0x00, 0x41, 0x7F, 0x80, 0x81, 0x8F,
                                       0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1,
                                       0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0,
                                       0xF4, 0xF5, 0xFF};
        u8_tally t = {.name = "exhaustive 1-3 bytes"};
        for (unsigned x = 0; x < 256; x++) {
            b[0] = (uint8_t)x;
            u8_run(&t, b, 1, -2, 0);
            for (unsigned y = 0; y < 256; y++) {
                b[1] = (uint8_t)y;
                u8_run(&t, b, 2, -2, 0);
                for (size_t z = 0; z < sizeof edge; z++) {
                    b[2] = edge[z];
                    u8_run(&t, b, 3, -2, 0);
                }
            }
        }
        /* 4-byte: every lead F0..F4 x every second byte x edge x edge */
        for (unsigned x = 0xF0; x <= 0xF4; x++)
            for (unsigned y = 0; y < 256; y++)
                for (size_t z = 0; z < sizeof edge; z++)
                    for (size_t w = 0; w < sizeof edge; w++) {
                        b[0] = (uint8_t)x;
                        b[1] = (uint8_t)y;
                        b[2] = edge[z];
                        b[3] = edge[w];
                        u8_run(&t, b, 4, -2, 0);
                    }
        u8_report(&t, lv);
    }
    /* long mixed strings: ASCII runs (fast path, vector tails) around
     * multi-byte code points, some with one corrupted byte; whole, byte by
     * byte, and in random pieces */
    {
        u8_tally t = {.name = "mixed strings"};
        static uint8_t s[1200];
        for (int iter = 0; iter < 4000; iter++) {
            size_t n = 0;
            while (n < 1000) {
                unsigned kind = (unsigned)(rng() % 4);
                if (kind < 2) {
                    size_t run = (size_t)(rng() % 90);
                    for (size_t i = 0; i < run; i++)
                        s[n++] = (uint8_t)(0x20 + rng() % 0x5F);
                } else {
                    uint32_t cp;
                    do cp = (uint32_t)(rng() % 0x110000);
                    while (cp >= 0xD800 && cp <= 0xDFFF);
                    n += enc_utf8(s + n, cp, min_len(cp));
                }
            }
            if (iter % 3 == 1) s[rng() % n] = (uint8_t)rng();
            if (iter % 7 == 3) n -= (size_t)(rng() % 3); /* maybe truncate */
            u8_run(&t, s, n, -2, 0);
            u8_run_chunked(&t, s, n);
        }
        u8_report(&t, lv);
    }
}

static void
test_utf8(void)
{
    /* the reference itself, on hand-checked inputs */
    {
        static const struct {
            const char *s;
            int r;
            size_t bad;
        } v[] = {
            {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 1, 0}, /* kosme */
            {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited",
             -1, 12},
            {"\xf4\x8f\xbf\xbf", 1, 0},
            {"\xf4\x90\x80\x80", -1, 1},
            {"\xed\x9f\xbf", 1, 0},
            {"\xee\x80\x80", 1, 0},
            {"\xef\xbf\xbf", 1, 0}, /* U+FFFF is a valid scalar */
            {"\xc0\xaf", -1, 0},
            {"\xe0\x80\xaf", -1, 1},
            {"\xf0\x80\x80\xaf", -1, 1},
            {"\x80", -1, 0},
            {"a\xbf", -1, 1},
            {"\xfe", -1, 0},
            {"\xe0\xa0", 0, 0},
            {"\xe1\x80\x41", -1, 2},
        };
        int ok = 1;
        for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
            size_t bad = (size_t)-1;
            int r = ref_utf8((const uint8_t *)v[i].s, strlen(v[i].s), &bad);
            if (r != v[i].r || (r < 0 && bad != v[i].bad)) {
                fprintf(stderr, "  reference case %zu: %d at %zu\n", i, r, bad);
                ok = 0;
            }
        }
        check(ok, "utf8 reference", "hand-checked vectors");
    }
    for (int lv = 0; lv <= best_level; lv++) {
        ws_set_simd_level(lv);
        test_utf8_level(lv);
    }
    ws_set_simd_level(-1);
    /* a valid text split into two frames at every byte */
    {
        const char *txt = "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc"
                          "\xc3\xa0\xc3\xa1-UTF-8!! \xf0\x9f\x98\x80 "
                          "\xe2\x82\xac\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e";
        size_t n = strlen(txt);
        int ok = 1;
        for (size_t cut = 0; cut <= n; cut++) {
            ws_utf8_state st = {0};
            if (ws_utf8_validate(&st, guard_at(txt, cut, 1), cut) != 0 ||
                ws_utf8_validate(&st, guard_at(txt + cut, n - cut, 1),
                                 n - cut) != 0 ||
                ws_utf8_finish(&st) != 0)
                ok = 0;
        }
        check(ok, "utf8 split frames", "valid at every cut");
    }
    {
        ws_utf8_state st = {0};
        check(ws_utf8_validate(&st, guard_end, 0) == 0 &&
                  ws_utf8_finish(&st) == 0,
              "utf8 empty", "valid");
    }
}

/* ------------------------------------------------------------------------
 * SHA-1 and the accept key
 */

static void
hex20(const uint8_t d[20], char out[41])
{
    for (int i = 0; i < 20; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void
test_sha1(void)
{
    static const struct {
        const char *msg;
        size_t repeat_a; /* when msg is NULL: that many 'a's */
        const char *hex;
    } v[] = {
        {"", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {"abc", 0, "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 0,
         "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
        {"The quick brown fox jumps over the lazy dog", 0,
         "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"},
        {NULL, 1000000, "34aa973cd4c4daa4f61eeb2bdbad27316534016f"},
        /* padding boundaries */
        {NULL, 55, "c1c8bbdc22796e28c0e15163d20899b65621d65a"},
        {NULL, 56, "c2db330f6083854c99d4b5bfb6e8f29f201be699"},
        {NULL, 63, "03f09f5b158a7a8cdad920bddc29b81c18a551f5"},
        {NULL, 64, "0098ba824b5c16427bd7a1122a5a442a25ec644d"},
        {NULL, 65, "11655326c708d70319be2610e8a57d9a5b959d3b"},
        {NULL, 119, "ee971065aaa017e0632a8ca6c77bb3bf8b1dfc56"},
        {NULL, 120, "f34c1488385346a55709ba056ddd08280dd4c6d6"},
        {NULL, 127, "89d95fa32ed44a7c610b7ee38517ddf57e0bb975"},
        {NULL, 128, "ad5b3fdbcb526778c2839d2f151ea753995e26a0"},
    };
    char name[64];

    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        uint8_t d[20];
        char hex[41];
        const uint8_t *p;
        size_t n;
        if (v[i].msg) {
            n = strlen(v[i].msg);
            p = guard_at(v[i].msg, n, 1);
            snprintf(name, sizeof name, "sha1 \"%.20s\"", v[i].msg);
        } else {
            n = v[i].repeat_a;
            memset(guard_end - n, 'a', n);
            p = guard_end - n;
            snprintf(name, sizeof name, "sha1 %zu x 'a'", n);
        }
        ws_sha1(p, n, d);
        hex20(d, hex);
        check(strcmp(hex, v[i].hex) == 0, name, hex);
    }
}

static void
test_accept_key(void)
{
    static const struct {
        const char *key, *accept;
    } ok[] = {
        {"dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
        {"x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="},
    };
    static const char *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 */
        "dGhlIHNhbXBsZSBub25jZQ===", /* 25 */
        "dGhlIHNhbXBsZSBub25jZQ==\n",
        " dGhlIHNhbXBsZSBub25jZQ==",
        "dGhlIHNhbXBsZSBub25jZQAA", /* 18 bytes' worth, no padding */
        "dGhlIHNhbXBsZSBub25jZ===",
        "dGhlIHNhbXBsZSBub25j=Q==",
        "dGhlIHNhbXBsZSBub25jZQ=A",
        "dGhlIHNhbXBsZSBub25jZ-==",
        "dGhlIHNhbXBsZSBub25jZ_==",
        "dGhlIHNhbX.sZSBub25jZQ==",
        "dGhlIHNhbXBsZSBub 5jZQ==",
        "dGhlIHNhbXBsZSBub25jZQ\0\0",
    };
    char name[96];

    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char out[29] = {0};
        size_t n = strlen(ok[i].key);
        int rc = ws_accept_key((const char *)guard_at(ok[i].key, n, 1), n, out);
        snprintf(name, sizeof name, "accept %s", ok[i].key);
        check(rc == 0 && strcmp(out, ok[i].accept) == 0, name, out);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char out[28];
        size_t n = i == sizeof bad / sizeof *bad - 1 ? 24 : strlen(bad[i]);
        memset(out, 'Z', sizeof out);
        snprintf(name, sizeof name, "accept rejects #%zu", i);
        check(ws_accept_key((const char *)guard_at(bad[i], n, 1), n, out) ==
                      -1 &&
                  out[0] == 'Z',
              name, "invalid key rejected, out untouched");
    }
}

/* ------------------------------------------------------------------------
 * Close frames
 */

static void
test_close(void)
{
    /* every 16-bit code against the RFC 6455 7.4 list */
    {
        int ok = 1;
        for (unsigned c = 0; c <= 70000; c++) {
            int want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011) ||
                       (c >= 3000 && c <= 4999);
            if (ws_close_code_valid(c) != want) ok = 0;
        }
        check(ok, "close codes", "0..70000 against the list");
    }
    {
        static const unsigned valid[] = {1000, 1001, 1002, 1003, 1007, 1008,
                                         1009, 1010, 1011, 3000, 3999, 4000,
                                         4999};
        static const unsigned invalid[] = {0,    999,  1004, 1005, 1006, 1012,
                                           1013, 1014, 1015, 1016, 1100, 2000,
                                           2999, 5000, 65535};
        int ok = 1;
        for (size_t i = 0; i < sizeof valid / sizeof *valid; i++)
            ok &= ws_close_code_valid(valid[i]) == 1;
        for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++)
            ok &= ws_close_code_valid(invalid[i]) == 0;
        check(ok, "close codes autobahn 7.7/7.9", "valid and invalid lists");
    }

    {
        unsigned code = 0;
        const uint8_t *reason = NULL;
        size_t rlen = 99;
        const uint8_t *p = guard_end;
        check(ws_parse_close(p, 0, 0, &code, &reason, &rlen) == 0 &&
                  code == 1005 && rlen == 0,
              "close empty", "1005, no reason");
    }
    {
        unsigned code = 7;
        const uint8_t *reason;
        size_t rlen;
        const uint8_t b[] = {0x03};
        check(ws_parse_close(guard_at(b, 1, 1), 1, 0, &code, &reason, &rlen) ==
                      WS_ERR_CLOSE_PAYLOAD &&
                  code == 7,
              "close 1 byte", "rejected");
    }
    {
        uint8_t b[126];
        unsigned code;
        const uint8_t *reason;
        size_t rlen;
        b[0] = 0x03;
        b[1] = 0xE8;
        memset(b + 2, '*', sizeof b - 2);
        check(ws_parse_close(guard_at(b, 126, 1), 126, 0, &code, &reason, &rlen) ==
                  WS_ERR_CLOSE_PAYLOAD,
              "close 126 bytes", "rejected");
        check(ws_parse_close(guard_at(b, 125, 1), 125, 0, &code, &reason, &rlen) ==
                      0 &&
                  code == 1000 && rlen == 123,
              "close 125 bytes", "accepted");
    }
    {
        const uint8_t b[] = {0x03, 0xE8, 'b', 'y', 'e'};
        unsigned code;
        const uint8_t *reason;
        size_t rlen;
        const uint8_t *p = guard_at(b, sizeof b, 1);
        check(ws_parse_close(p, sizeof b, 0, &code, &reason, &rlen) == 0 &&
                  code == 1000 && reason == p + 2 && rlen == 3 &&
                  memcmp(reason, "bye", 3) == 0,
              "close 1000 bye", "code and reason span");
    }
    {
        const uint8_t b[] = {0x03, 0xEC}; /* 1004 */
        unsigned code;
        const uint8_t *reason;
        size_t rlen;
        check(ws_parse_close(guard_at(b, 2, 1), 2, 0, &code, &reason, &rlen) ==
                  WS_ERR_CLOSE_CODE,
              "close 1004", "rejected");
    }
    {
        const uint8_t b[] = {0x03, 0xF4, 'x'}; /* 1012: the echo of ours only */
        unsigned code;
        const uint8_t *reason;
        size_t rlen;
        check(ws_parse_close(guard_at(b, 3, 1), 3, 0, &code, &reason, &rlen) ==
                  WS_ERR_CLOSE_CODE,
              "close 1012", "rejected");
        check(ws_parse_close(guard_at(b, 3, 1), 3, 1013, &code, &reason, &rlen) ==
                  WS_ERR_CLOSE_CODE,
              "close 1012 after our 1013", "rejected");
        check(ws_parse_close(guard_at(b, 3, 1), 3, 1012, &code, &reason, &rlen) == 0 &&
                  code == 1012 && rlen == 1,
              "close 1012 after our 1012", "accepted");
    }
    {
        const uint8_t b[] = {0x0F, 0xA0}; /* 4000 */
        unsigned code;
        const uint8_t *reason;
        size_t rlen;
        check(ws_parse_close(guard_at(b, 2, 1), 2, 0, &code, &reason, &rlen) ==
                          0 &&
                  code == 4000 && rlen == 0,
              "close 4000", "accepted");
    }
    {
        /* Autobahn 7.5.1 reason */
        const uint8_t b[] = {0x03, 0xE8, 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf,
                             0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
                             0x65, 0x64, 0x69, 0x74, 0x65, 0x64};
        const uint8_t t[] = {0x03, 0xE8, 'o', 'k', 0xe2, 0x82};
        unsigned code;
        const uint8_t *reason;
        size_t rlen;
        int rc = ws_parse_close(guard_at(b, sizeof b, 1), sizeof b, 0, &code,
                                &reason, &rlen);
        check(rc == WS_ERR_UTF8 && ws_error_status(rc) == 1007,
              "close bad utf8 reason", "WS_ERR_UTF8, status 1007");
        check(ws_parse_close(guard_at(t, sizeof t, 1), sizeof t, 0, &code,
                             &reason, &rlen) == WS_ERR_UTF8,
              "close truncated utf8 reason", "WS_ERR_UTF8");
    }
    {
        int ok = 1;
        for (int e = WS_ERR_CLOSE_CODE; e <= WS_ERR_RSV; e++)
            ok &= ws_error_status(e) == 1002;
        check(ok, "error status", "1002 for protocol errors");
    }
}

/* ------------------------------------------------------------------------ */

int
main(void)
{
    guard_init();
    best_level = ws_set_simd_level(-1);
    printf("best SIMD level: %d\n", best_level);
    test_header_valid();
    test_header_errors();
    test_build_header();
    test_unmask();
    test_utf8();
    test_sha1();
    test_accept_key();
    test_close();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
