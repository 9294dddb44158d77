/*
 * fuzz_wsframe.c - libFuzzer harness for the WebSocket frame codec
 * (src/fulmen/_core/wsframe.c).
 *
 * Build and run with `make -f mk/cparser.mk fuzz-ws` (clang,
 * -fsanitize=fuzzer,address,undefined).  The first byte picks what the rest
 * of the input exercises; every piece under test is an exact-size heap copy,
 * so ASan sees any read past its end.
 *
 * Invariants (abort on failure):
 *   0. ws_parse_header: returns 0, 2..14 or a WS_ERR_* code; a header it
 *      accepts obeys RFC 6455 5.2 and the flags (fin/rsv1/masked are 0 or 1,
 *      no reserved opcode, control frames final and <= 125 bytes, masking
 *      as required, RSV1 only where allowed, length < 2^63); every prefix
 *      shorter than the header gives 0 (or, for an error, 0 or that error),
 *      and so does any longer input give the same header; an unmasked
 *      header rebuilt with ws_build_header parses back to the same fields.
 *      Headers built from fuzzed fields parse back to those fields or to
 *      the error their fields call for.
 *   1. the UTF-8 validator agrees with a byte-at-a-time reference (RFC 3629)
 *      whole, split at a fuzzed point and byte by byte, at every SIMD level,
 *      and fails at the first invalid byte's chunk, never later.
 *   2. ws_unmask is its own inverse, and unmasking in two pieces (with the
 *      right offset) or at another SIMD level gives the same bytes.
 *   3. ws_parse_close writes its outputs only on success, with a code that
 *      ws_close_code_valid() accepts (or 1005 for an empty payload) and a
 *      reason inside the payload; ws_accept_key accepts only 24-character
 *      keys and always writes 28 base64 characters.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsframe.h"
#include "fuzzutil.h"

static int fz_best_level;

static uint8_t *
fz_copy(const uint8_t *data, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    if (p == NULL)
        abort();
    if (n)
        memcpy(p, data, n);
    return p;
}

static int
fz_is_error(int rc)
{
    return rc <= WS_ERR_RSV && rc >= WS_ERR_UTF8;
}

static int
fz_header_eq(const ws_header *a, const ws_header *b)
{
    return a->payload_len == b->payload_len && a->fin == b->fin &&
           a->rsv1 == b->rsv1 && a->opcode == b->opcode &&
           a->masked == b->masked && memcmp(a->mask, b->mask, 4) == 0;
}

static int
fz_reserved_opcode(unsigned op)
{
    return (op >= 0x3 && op <= 0x7) || op >= 0xB;
}

static void
fz_header(const uint8_t *data, size_t size)
{
    unsigned flags;
    uint8_t *buf;
    ws_header h, h2;
    size_t n, k;
    int rc, r2;
    if (size < 1)
        return;
    flags = data[0] & 7;
    if ((flags & WS_HDR_REQUIRE_MASK) && (flags & WS_HDR_FORBID_MASK))
        flags &= ~(unsigned)WS_HDR_FORBID_MASK;
    data++;
    size--;
    buf = fz_copy(data, size);
    rc = ws_parse_header(buf, size, flags, &h);
    FZ_CHECK(rc == 0 || fz_is_error(rc) || (rc >= 2 && rc <= WS_MAX_HEADER));
    FZ_CHECK(rc <= 0 || (size_t)rc <= size);
    if (rc > 0) {
        FZ_CHECK(h.fin <= 1 && h.rsv1 <= 1 && h.masked <= 1);
        FZ_CHECK(h.opcode <= 0xF && !fz_reserved_opcode(h.opcode));
        FZ_CHECK(h.payload_len < (UINT64_C(1) << 63));
        if (h.opcode >= WS_OP_CLOSE)
            FZ_CHECK(h.fin && h.payload_len <= WS_MAX_CONTROL_PAYLOAD && !h.rsv1);
        if (h.rsv1)
            FZ_CHECK((flags & WS_HDR_ALLOW_RSV1) && h.opcode != WS_OP_CONT);
        if (flags & WS_HDR_REQUIRE_MASK)
            FZ_CHECK(h.masked);
        if (flags & WS_HDR_FORBID_MASK)
            FZ_CHECK(!h.masked);
        if (!h.masked)
            FZ_CHECK(memcmp(h.mask, "\0\0\0\0", 4) == 0);
        FZ_CHECK((size_t)rc == 2 + (h.masked ? 4 : 0) +
                                   ((buf[1] & 0x7F) == 126   ? 2
                                    : (buf[1] & 0x7F) == 127 ? 8
                                                             : 0));
        /* bytes past the header change nothing */
        for (k = (size_t)rc; k <= size; k += (k < (size_t)rc + 4 ? 1 : 64)) {
            uint8_t *pre = fz_copy(buf, k);
            r2 = ws_parse_header(pre, k, flags, &h2);
            FZ_CHECK(r2 == rc && fz_header_eq(&h, &h2));
            free(pre);
        }
        if (!h.masked) {
            uint8_t out[10];
            n = ws_build_header(out, h.fin, h.rsv1, h.opcode, h.payload_len);
            FZ_CHECK(n == 2 || n == 4 || n == 10);
            r2 = ws_parse_header(out, n, flags | WS_HDR_ALLOW_RSV1, &h2);
            FZ_CHECK(r2 == (int)n && fz_header_eq(&h, &h2));
        }
    }
    /* a prefix of an accepted header is incomplete; a prefix of a bad one
     * is incomplete or already shows that error */
    for (k = 0; k < size && k < WS_MAX_HEADER && (rc <= 0 || k < (size_t)rc); k++) {
        uint8_t *pre = fz_copy(buf, k);
        r2 = ws_parse_header(pre, k, flags, &h2);
        if (rc > 0)
            FZ_CHECK(r2 == 0);
        else
            FZ_CHECK(r2 == 0 || r2 == rc);
        free(pre);
    }
    free(buf);

    /* headers built from fuzzed fields */
    if (size >= 9) {
        uint8_t out[10];
        int fin = data[0] & 1, rsv1 = (data[0] >> 1) & 1;
        int op = (data[0] >> 4) & 0xF;
        uint64_t len;
        memcpy(&len, data + 1, 8);
        len >>= (data[0] >> 2) & 3 ? 8 * ((data[0] >> 2) & 3) + 30 : 0;
        len &= ~(UINT64_C(1) << 63);
        n = ws_build_header(out, fin, rsv1, op, len);
        FZ_CHECK(n == (len < 126 ? 2u : len <= 0xFFFF ? 4u : 10u));
        rc = ws_parse_header(out, n, WS_HDR_FORBID_MASK | WS_HDR_ALLOW_RSV1, &h);
        if (fz_reserved_opcode((unsigned)op))
            FZ_CHECK(rc == WS_ERR_OPCODE || (rsv1 && rc == WS_ERR_RSV));
        else if (op >= WS_OP_CLOSE && (!fin || len > WS_MAX_CONTROL_PAYLOAD || rsv1))
            FZ_CHECK(rc == WS_ERR_CTRL_FRAGMENTED || rc == WS_ERR_CTRL_TOO_LONG ||
                     rc == WS_ERR_RSV);
        else if (op == WS_OP_CONT && rsv1)
            FZ_CHECK(rc == WS_ERR_RSV);
        else
            FZ_CHECK(rc == (int)n && h.fin == fin && h.rsv1 == rsv1 &&
                     h.opcode == op && h.payload_len == len && !h.masked);
    }
}

/* RFC 3629 validity of p[0..n): the index of the first byte at which the
 * text stops being a valid prefix, or n when it is one; *complete is 1
 * when it also ends at a code-point boundary. */
static size_t
fz_utf8_ref(const uint8_t *p, size_t n, int *complete)
{
    size_t i = 0;
    *complete = 1;
    while (i < n) {
        unsigned c = p[i], need, lo = 0x80, hi = 0xBF, k;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0;
            if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            if (c == 0xF4)
                hi = 0x8F;
        } else {
            *complete = 0;
            return i;
        }
        for (k = 1; k <= need; k++) {
            if (i + k >= n) {
                *complete = 0;
                return n;
            }
            if (p[i + k] < lo || p[i + k] > hi) {
                *complete = 0;
                return i + k;
            }
            lo = 0x80;
            hi = 0xBF;
        }
        i += need + 1;
    }
    return n;
}

static void
fz_utf8(const uint8_t *data, size_t size)
{
    uint8_t *buf;
    size_t split, bad, i;
    int complete, level;
    if (size < 1)
        return;
    split = data[0];
    data++;
    size--;
    split = size ? split * size / 256 : 0;
    buf = fz_copy(data, size);
    bad = fz_utf8_ref(buf, size, &complete);
    for (level = 0; level <= fz_best_level; level++) {
        ws_utf8_state s;
        int a, b;
        ws_set_simd_level(level);
        ws_utf8_init(&s);
        a = ws_utf8_validate(&s, buf, size);
        FZ_CHECK(a == (bad < size ? -1 : 0));
        FZ_CHECK(ws_utf8_finish(&s) == (bad == size && complete ? 0 : -1));
        /* in two pieces: the first fails iff the bad byte is in it */
        ws_utf8_init(&s);
        a = ws_utf8_validate(&s, buf, split);
        FZ_CHECK(a == (bad < split ? -1 : 0));
        b = ws_utf8_validate(&s, buf + split, size - split);
        FZ_CHECK(b == (bad < size ? -1 : 0));
        FZ_CHECK(ws_utf8_finish(&s) == (bad == size && complete ? 0 : -1));
        if (size <= 4096 && level == 0) {
            ws_utf8_init(&s);
            for (i = 0; i < size; i++) {
                a = ws_utf8_validate(&s, buf + i, 1);
                FZ_CHECK(a == (bad <= i ? -1 : 0));
            }
            FZ_CHECK(ws_utf8_finish(&s) == (bad == size && complete ? 0 : -1));
        }
    }
    ws_set_simd_level(-1);
    free(buf);
}

static void
fz_unmask(const uint8_t *data, size_t size)
{
    uint8_t key[4], *a, *b, *c;
    size_t split, off;
    int level;
    if (size < 6)
        return;
    memcpy(key, data, 4);
    off = data[4] & 7;
    split = data[5];
    data += 6;
    size -= 6;
    split = size ? split * size / 256 : 0;
    a = fz_copy(data, size);
    ws_set_simd_level(0);
    ws_unmask(a, size, key, off);
    for (level = 0; level <= fz_best_level; level++) {
        ws_set_simd_level(level);
        b = fz_copy(data, size);
        ws_unmask(b, size, key, off);
        FZ_CHECK(size == 0 || memcmp(a, b, size) == 0);
        c = fz_copy(data, size);
        ws_unmask(c, split, key, off);
        ws_unmask(c + split, size - split, key, off + split);
        FZ_CHECK(size == 0 || memcmp(a, c, size) == 0);
        ws_unmask(c, size, key, off);
        FZ_CHECK(size == 0 || memcmp(c, data, size) == 0);
        free(b);
        free(c);
    }
    ws_set_simd_level(-1);
    free(a);
}

static void
fz_close(const uint8_t *data, size_t size)
{
    uint8_t *buf = fz_copy(data, size);
    unsigned code = 77777;
    const uint8_t *reason = (const uint8_t *)"x";
    size_t rlen = 99999;
    char out[28];
    int rc = ws_parse_close(buf, size, 0, &code, &reason, &rlen);
    FZ_CHECK(rc == 0 || rc == WS_ERR_CLOSE_PAYLOAD || rc == WS_ERR_CLOSE_CODE ||
             rc == WS_ERR_UTF8);
    if (rc == 0) {
        FZ_CHECK(size <= WS_MAX_CONTROL_PAYLOAD && size != 1);
        if (size == 0)
            FZ_CHECK(code == 1005 && rlen == 0);
        else
            FZ_CHECK(ws_close_code_valid(code) && code == (unsigned)(buf[0] << 8 | buf[1]) &&
                     reason == buf + 2 && rlen == size - 2);
    } else {
        FZ_CHECK(code == 77777 && rlen == 99999);
        FZ_CHECK(ws_error_status(rc) == (rc == WS_ERR_UTF8 ? 1007u : 1002u));
    }
    memset(out, '#', sizeof(out));
    rc = ws_accept_key((const char *)buf, size, out);
    if (rc == 0) {
        int i;
        FZ_CHECK(size == 24 && buf[22] == '=' && buf[23] == '=');
        for (i = 0; i < 28; i++)
            FZ_CHECK((out[i] >= 'A' && out[i] <= 'Z') || (out[i] >= 'a' && out[i] <= 'z') ||
                     (out[i] >= '0' && out[i] <= '9') || out[i] == '+' || out[i] == '/' ||
                     (i == 27 && out[i] == '='));
    } else {
        FZ_CHECK(rc == -1 && out[0] == '#' && out[27] == '#');
    }
    free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fz_best_level == 0)
        fz_best_level = ws_set_simd_level(-1);
    if (size < 1)
        return 0;
    switch (data[0] & 3) {
    case 0:
        fz_header(data + 1, size - 1);
        break;
    case 1:
        fz_utf8(data + 1, size - 1);
        break;
    case 2:
        fz_unmask(data + 1, size - 1);
        break;
    default:
        fz_close(data + 1, size - 1);
        break;
    }
    return 0;
}
