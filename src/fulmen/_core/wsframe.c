/*
 * wsframe.c - WebSocket (RFC 6455) frame codec.  See wsframe.h for the API.
 *
 * Pure C, no Python.h, no allocation.  Sections:
 *   - frame headers: parse (with every protocol check RFC 6455 5.2/5.5 and
 *     RFC 7692 6.1 ask of a receiver) and build
 *   - unmasking: scalar twin, SSE2 and AVX2, picked at run time
 *   - UTF-8: ASCII fast path (same three levels) and a whole-sequence
 *     path in front of a DFA that fails at the first byte that cannot
 *     start or continue a valid sequence
 *   - close frames, handshake (SHA-1 and base64, written for this file)
 *
 * Bounds: no function reads p[n] or beyond.  The vector loops stop at the
 * last whole vector and hand the tail to the scalar code; in-place XOR
 * cannot re-process an overlapping last vector the way a scanner can.
 */
#include "wsframe.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WS_HAVE_X86 1
#else
#define WS_HAVE_X86 0
#endif

#ifndef LIKELY
#define LIKELY(x) __builtin_expect(!!(x), 1)
#endif
#ifndef UNLIKELY
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#endif

/* ------------------------------------------------------------------------
 * SIMD level
 */

static int ws_simd_level = -1; /* -1: not detected yet */

static int
ws_best_level(void)
{
#if WS_HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) return WS_SIMD_AVX2;
    if (__builtin_cpu_supports("sse2")) return WS_SIMD_SSE2;
#endif
    return WS_SIMD_SCALAR;
}

int
ws_set_simd_level(int level)
{
    int best = ws_best_level();

    if (level < 0 || level > best) level = best;
    __atomic_store_n(&ws_simd_level, level, __ATOMIC_RELAXED);
    return level;
}

static inline int
ws_level(void)
{
    int level = __atomic_load_n(&ws_simd_level, __ATOMIC_RELAXED);

    if (UNLIKELY(level < 0)) level = ws_set_simd_level(-1);
    return level;
}

/* ------------------------------------------------------------------------
 * Frame headers
 *
 *   byte 0: FIN RSV1 RSV2 RSV3 opcode(4)
 *   byte 1: MASK len7        len7 = 126: 16-bit length follows,
 *                            len7 = 127: 64-bit length follows (MSB 0)
 *   then the extended length, then the 4-byte key when MASK is set.
 */

/* 1 for the opcodes RFC 6455 defines. */
static const uint8_t ws_opcode_known[16] = {
    [WS_OP_CONT] = 1, [WS_OP_TEXT] = 1,  [WS_OP_BINARY] = 1,
    [WS_OP_CLOSE] = 1, [WS_OP_PING] = 1, [WS_OP_PONG] = 1,
};

int
ws_parse_header(const uint8_t *buf, size_t len, unsigned flags, ws_header *h)
{
    unsigned b0, b1, op, len7, masked;
    size_t need;
    uint64_t plen;

    /* Byte 0 alone can prove the first four errors: report them before
     * asking for more, so a bad frame fails without waiting for byte 1. */
    if (UNLIKELY(len == 0)) return 0;
    b0 = buf[0];
    op = b0 & 0x0F;
    if (UNLIKELY(b0 & 0x30)) return WS_ERR_RSV; /* RSV2, RSV3 */
    if (UNLIKELY(!ws_opcode_known[op])) return WS_ERR_OPCODE;
    if (UNLIKELY(b0 & 0x40)) {
        /* RFC 7692 6.1: the "Per-Message Compressed" bit goes on the first
         * frame of a data message only. */
        if (!(flags & WS_HDR_ALLOW_RSV1) ||
            (op != WS_OP_TEXT && op != WS_OP_BINARY))
            return WS_ERR_RSV;
    }
    if (UNLIKELY((op & 0x8) && !(b0 & 0x80))) return WS_ERR_CTRL_FRAGMENTED;

    if (UNLIKELY(len < 2)) return 0;
    b1 = buf[1];
    masked = b1 >> 7;
    len7 = b1 & 0x7F;
    if (UNLIKELY((flags & WS_HDR_REQUIRE_MASK) && !masked))
        return WS_ERR_UNMASKED;
    if (UNLIKELY((flags & WS_HDR_FORBID_MASK) && masked)) return WS_ERR_MASKED;
    /* A minimal encoder uses 126/127 only for 126+ bytes: a control frame
     * announcing one is too long (or non-minimal) - fail without waiting
     * for the extended length. */
    if (UNLIKELY((op & 0x8) && len7 > WS_MAX_CONTROL_PAYLOAD))
        return WS_ERR_CTRL_TOO_LONG;

    if (LIKELY(len7 < 126)) {
        need = 2;
        plen = len7;
    } else if (len7 == 126) {
        need = 4;
        if (len < need) return 0;
        plen = ((uint64_t)buf[2] << 8) | buf[3];
    } else {
        if (len < 3) return 0;
        if (UNLIKELY(buf[2] & 0x80)) return WS_ERR_LEN_MSB;
        need = 10;
        if (len < need) return 0;
        plen = 0;
        for (int i = 2; i < 10; i++) plen = (plen << 8) | buf[i];
    }
    if (masked) {
        need += 4;
        if (len < need) return 0;
        memcpy(h->mask, buf + need - 4, 4);
    } else {
        memset(h->mask, 0, 4);
    }
    h->payload_len = plen;
    h->fin = (uint8_t)(b0 >> 7);
    h->rsv1 = (uint8_t)((b0 >> 6) & 1);
    h->opcode = (uint8_t)op;
    h->masked = (uint8_t)masked;
    return (int)need;
}

size_t
ws_build_header(uint8_t out[10], int fin, int rsv1, int opcode, uint64_t len)
{
    len &= 0x7FFFFFFFFFFFFFFFull;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0F));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

/* ------------------------------------------------------------------------
 * Unmasking
 *
 * Each path first rotates the key so that k[0] applies to data[0]; after
 * that, any multiple of 4 bytes in, the rotated key lines up again, which
 * is what lets the vector loops hand their tail to the scalar twin.
 */

static void
ws_unmask_scalar(uint8_t *d, size_t n, const uint8_t k[4])
{
    size_t i = 0;
    uint32_t k32;
    uint64_t k64;

    memcpy(&k32, k, 4);
    /* Both halves hold k[0..3] in memory order on either endianness. */
    k64 = ((uint64_t)k32 << 32) | k32;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, d + i, 8);
        w ^= k64;
        memcpy(d + i, &w, 8);
    }
    for (; i < n; i++) d[i] ^= k[i & 3];
}

#if WS_HAVE_X86
__attribute__((target("sse2"))) static void
ws_unmask_sse2(uint8_t *d, size_t n, const uint8_t k[4])
{
    size_t i = 0;
    int32_t k32;
    __m128i kv;

    memcpy(&k32, k, 4);
    kv = _mm_set1_epi32(k32);
    for (; i + 64 <= n; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(d + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(d + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(d + i + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(d + i + 48));
        _mm_storeu_si128((__m128i *)(d + i), _mm_xor_si128(a, kv));
        _mm_storeu_si128((__m128i *)(d + i + 16), _mm_xor_si128(b, kv));
        _mm_storeu_si128((__m128i *)(d + i + 32), _mm_xor_si128(c, kv));
        _mm_storeu_si128((__m128i *)(d + i + 48), _mm_xor_si128(e, kv));
    }
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(d + i));
        _mm_storeu_si128((__m128i *)(d + i), _mm_xor_si128(a, kv));
    }
    ws_unmask_scalar(d + i, n - i, k);
}

__attribute__((target("avx2"))) static void
ws_unmask_avx2(uint8_t *d, size_t n, const uint8_t k[4])
{
    size_t i = 0;
    int32_t k32;
    __m256i kv;

    memcpy(&k32, k, 4);
    kv = _mm256_set1_epi32(k32);
    for (; i + 128 <= n; i += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(d + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(d + i + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(d + i + 64));
        __m256i e = _mm256_loadu_si256((const __m256i *)(d + i + 96));
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_xor_si256(a, kv));
        _mm256_storeu_si256((__m256i *)(d + i + 32), _mm256_xor_si256(b, kv));
        _mm256_storeu_si256((__m256i *)(d + i + 64), _mm256_xor_si256(c, kv));
        _mm256_storeu_si256((__m256i *)(d + i + 96), _mm256_xor_si256(e, kv));
    }
    for (; i + 32 <= n; i += 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(d + i));
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_xor_si256(a, kv));
    }
    ws_unmask_scalar(d + i, n - i, k);
}
#endif

void
ws_unmask(uint8_t *data, size_t len, const uint8_t key[4], size_t offset)
{
    uint8_t k[4];

    for (int i = 0; i < 4; i++) k[i] = key[(offset + (size_t)i) & 3];
#if WS_HAVE_X86
    if (len >= 32) {
        int level = ws_level();
        if (LIKELY(level == WS_SIMD_AVX2)) {
            ws_unmask_avx2(data, len, k);
            return;
        }
        if (level == WS_SIMD_SSE2) {
            ws_unmask_sse2(data, len, k);
            return;
        }
    }
#endif
    ws_unmask_scalar(data, len, k);
}

/* ------------------------------------------------------------------------
 * UTF-8
 *
 * A DFA over byte classes.  Its states say exactly which bytes may come
 * next (RFC 3629 section 4), so the transition to REJECT happens on the
 * first byte that no valid string could have there:
 *   E0 must be followed by A0..BF (else overlong), ED by 80..9F (else a
 *   surrogate), F0 by 90..BF (overlong), F4 by 80..8F (> U+10FFFF);
 *   C0, C1 and F5..FF can never appear.
 * States are pre-multiplied by the class count to index one flat table.
 */

enum {
    U8_CLASSES = 12,
    U8_ACCEPT = 0 * U8_CLASSES,
    U8_REJECT = 1 * U8_CLASSES,
    U8_TAIL1 = 2 * U8_CLASSES, /* one more 80..BF                */
    U8_TAIL2 = 3 * U8_CLASSES, /* two more 80..BF                */
    U8_TAIL3 = 4 * U8_CLASSES, /* three more 80..BF              */
    U8_E0 = 5 * U8_CLASSES,    /* A0..BF, then one more          */
    U8_ED = 6 * U8_CLASSES,    /* 80..9F, then one more          */
    U8_F0 = 7 * U8_CLASSES,    /* 90..BF, then two more          */
    U8_F4 = 8 * U8_CLASSES,    /* 80..8F, then two more          */
    U8_STATES = 9,
};

/* Byte classes: 0 ASCII, 1 80..8F, 2 90..9F, 3 A0..BF, 4 never valid,
 * 5 C2..DF, 6 E0, 7 E1..EC/EE..EF, 8 ED, 9 F0, 10 F1..F3, 11 F4. */
static const uint8_t ws_u8_class[256] = {
    [0x00 ... 0x7F] = 0, [0x80 ... 0x8F] = 1, [0x90 ... 0x9F] = 2,
    [0xA0 ... 0xBF] = 3, [0xC0 ... 0xC1] = 4, [0xC2 ... 0xDF] = 5,
    [0xE0] = 6,          [0xE1 ... 0xEC] = 7, [0xED] = 8,
    [0xEE ... 0xEF] = 7, [0xF0] = 9,          [0xF1 ... 0xF3] = 10,
    [0xF4] = 11,         [0xF5 ... 0xFF] = 4,
};

/* Short names so the table reads as a matrix; undefined right after. */
#define R_ U8_REJECT
#define A_ U8_ACCEPT
#define T1 U8_TAIL1
#define T2 U8_TAIL2
#define T3 U8_TAIL3
static const uint8_t ws_u8_next[U8_STATES * U8_CLASSES] = {
    /* class:    asc 80-8F 90-9F A0-BF bad C2-DF E0  E1-EF ED  F0  F1-F3 F4 */
    /* ACCEPT */ A_, R_,   R_,   R_,   R_, T1,   U8_E0, T2, U8_ED, U8_F0, T3, U8_F4,
    /* REJECT */ R_, R_,   R_,   R_,   R_, R_,   R_, R_,    R_, R_, R_,    R_,
    /* TAIL1  */ R_, A_,   A_,   A_,   R_, R_,   R_, R_,    R_, R_, R_,    R_,
    /* TAIL2  */ R_, T1,   T1,   T1,   R_, R_,   R_, R_,    R_, R_, R_,    R_,
    /* TAIL3  */ R_, T2,   T2,   T2,   R_, R_,   R_, R_,    R_, R_, R_,    R_,
    /* E0     */ R_, R_,   R_,   T1,   R_, R_,   R_, R_,    R_, R_, R_,    R_,
    /* ED     */ R_, T1,   T1,   R_,   R_, R_,   R_, R_,    R_, R_, R_,    R_,
    /* F0     */ R_, R_,   T2,   T2,   R_, R_,   R_, R_,    R_, R_, R_,    R_,
    /* F4     */ R_, T2,   R_,   R_,   R_, R_,   R_, R_,    R_, R_, R_,    R_,
};
#undef R_
#undef A_
#undef T1
#undef T2
#undef T3

/* ASCII scanners: the offset of the first byte >= 0x80 in p[i..n), or n. */
static size_t
ws_ascii_scalar(const uint8_t *p, size_t i, size_t n)
{
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull) break;
    }
    while (i < n && p[i] < 0x80) i++;
    return i;
}

#if WS_HAVE_X86
__attribute__((target("sse2"))) static size_t
ws_ascii_sse2(const uint8_t *p, size_t i, size_t n)
{
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
        unsigned m = (unsigned)_mm_movemask_epi8(v);
        if (m) return i + (size_t)__builtin_ctz(m);
    }
    return ws_ascii_scalar(p, i, n);
}

__attribute__((target("avx2"))) static size_t
ws_ascii_avx2(const uint8_t *p, size_t i, size_t n)
{
    for (; i + 64 <= n; i += 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(p + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(p + i + 32));
        if (_mm256_movemask_epi8(_mm256_or_si256(a, b))) break;
    }
    for (; i + 32 <= n; i += 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(p + i));
        unsigned m = (unsigned)_mm256_movemask_epi8(v);
        if (m) return i + (size_t)__builtin_ctz(m);
    }
    return ws_ascii_scalar(p, i, n);
}
#endif

static inline size_t
ws_ascii_scan(const uint8_t *p, size_t i, size_t n, int level)
{
#if WS_HAVE_X86
    if (LIKELY(level == WS_SIMD_AVX2)) return ws_ascii_avx2(p, i, n);
    if (level == WS_SIMD_SSE2) return ws_ascii_sse2(p, i, n);
#else
    (void)level;
#endif
    return ws_ascii_scalar(p, i, n);
}

/* Whole sequences, for speed on non-ASCII text: the DFA is one dependent
 * load per byte, while here the bytes of a sequence are checked in
 * parallel.  Per lead byte: sequence length (0 when it cannot lead) and the
 * range its second byte must fall in (RFC 3629 section 4). */
typedef struct {
    uint8_t len, lo, hi;
} ws_u8_lead;

static const ws_u8_lead ws_u8_leads[256] = {
    [0xC2 ... 0xDF] = {2, 0x80, 0xBF}, [0xE0] = {3, 0xA0, 0xBF},
    [0xE1 ... 0xEC] = {3, 0x80, 0xBF}, [0xED] = {3, 0x80, 0x9F},
    [0xEE ... 0xEF] = {3, 0x80, 0xBF}, [0xF0] = {4, 0x90, 0xBF},
    [0xF1 ... 0xF3] = {4, 0x80, 0xBF}, [0xF4] = {4, 0x80, 0x8F},
};

/* From a code-point boundary at p[i], skip valid multi-byte sequences while
 * 4 bytes remain.  Returns where it stopped: at ASCII, near the end, or at
 * a sequence it does not like, which the DFA then takes byte by byte (and
 * rejects at the exact byte if it is invalid). */
static size_t
ws_u8_fast(const uint8_t *p, size_t i, size_t n)
{
    while (i + 4 <= n) {
        const ws_u8_lead *l = &ws_u8_leads[p[i]];
        if (l->len == 0 || p[i + 1] < l->lo || p[i + 1] > l->hi) break;
        if (l->len >= 3 && (p[i + 2] & 0xC0) != 0x80) break;
        if (l->len == 4 && (p[i + 3] & 0xC0) != 0x80) break;
        i += l->len;
    }
    return i;
}

void
ws_utf8_init(ws_utf8_state *s)
{
    s->state = U8_ACCEPT;
}

int
ws_utf8_validate(ws_utf8_state *s, const uint8_t *p, size_t n)
{
    uint32_t st = s->state;
    size_t i = 0;
    int level;

    if (UNLIKELY(st == U8_REJECT)) return -1;
    level = ws_level();
    while (i < n) {
        if (st == U8_ACCEPT) {
            i = ws_ascii_scan(p, i, n, level);
            if (i == n) break;
            i = ws_u8_fast(p, i, n);
            if (i == n) break;
            if (p[i] < 0x80) continue;
        }
        /* The DFA finishes the sequence at hand: one split across calls,
         * one near the end, or one ws_u8_fast() declined. */
        do {
            st = ws_u8_next[st + ws_u8_class[p[i++]]];
            if (UNLIKELY(st == U8_REJECT)) {
                s->state = U8_REJECT;
                return -1;
            }
        } while (i < n && st != U8_ACCEPT);
    }
    s->state = st;
    return 0;
}

int
ws_utf8_finish(const ws_utf8_state *s)
{
    return s->state == U8_ACCEPT ? 0 : -1;
}

/* ------------------------------------------------------------------------
 * Close frames
 */

int
ws_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

int
ws_parse_close(const uint8_t *p, size_t n, unsigned sent, unsigned *code,
               const uint8_t **reason, size_t *reason_len)
{
    unsigned c;
    ws_utf8_state u = {U8_ACCEPT};

    if (n == 0) {
        *code = 1005;
        *reason = p;
        *reason_len = 0;
        return 0;
    }
    if (n == 1 || n > WS_MAX_CONTROL_PAYLOAD) return WS_ERR_CLOSE_PAYLOAD;
    c = ((unsigned)p[0] << 8) | p[1];
    if (!ws_close_code_valid(c) && (c != sent || sent == 0)) return WS_ERR_CLOSE_CODE;
    if (ws_utf8_validate(&u, p + 2, n - 2) != 0 || ws_utf8_finish(&u) != 0)
        return WS_ERR_UTF8;
    *code = c;
    *reason = p + 2;
    *reason_len = n - 2;
    return 0;
}

unsigned
ws_error_status(int err)
{
    return err == WS_ERR_UTF8 ? 1007 : 1002;
}

/* ------------------------------------------------------------------------
 * SHA-1 (FIPS 180-4, section 6.1), one-shot: whole blocks straight from the
 * input, then the padded tail (one or two blocks) from a stack buffer.
 */

static inline uint32_t
ws_rol32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

static void
ws_sha1_block(uint32_t hs[5], const uint8_t *blk)
{
    uint32_t w[80];
    uint32_t a = hs[0], b = hs[1], c = hs[2], d = hs[3], e = hs[4];

    for (int t = 0; t < 16; t++)
        w[t] = ((uint32_t)blk[4 * t] << 24) | ((uint32_t)blk[4 * t + 1] << 16) |
               ((uint32_t)blk[4 * t + 2] << 8) | blk[4 * t + 3];
    for (int t = 16; t < 80; t++)
        w[t] = ws_rol32(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    for (int t = 0; t < 80; t++) {
        uint32_t f, k, tmp;
        if (t < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999u;
        } else if (t < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1u;
        } else if (t < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDCu;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6u;
        }
        tmp = ws_rol32(a, 5) + f + e + k + w[t];
        e = d;
        d = c;
        c = ws_rol32(b, 30);
        b = a;
        a = tmp;
    }
    hs[0] += a;
    hs[1] += b;
    hs[2] += c;
    hs[3] += d;
    hs[4] += e;
}

void
ws_sha1(const void *data, size_t len, uint8_t out[20])
{
    const uint8_t *p = data;
    uint32_t hs[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u,
                      0xC3D2E1F0u};
    uint8_t tail[128];
    size_t full = len & ~(size_t)63, rest = len - full, tlen;
    uint64_t bits = (uint64_t)len * 8;

    for (size_t i = 0; i < full; i += 64) ws_sha1_block(hs, p + i);
    /* 0x80, zeros, then the 64-bit bit length: one block if it fits. */
    tlen = rest < 56 ? 64 : 128;
    memset(tail, 0, tlen);
    if (rest) memcpy(tail, p + full, rest);
    tail[rest] = 0x80;
    for (int i = 0; i < 8; i++)
        tail[tlen - 1 - i] = (uint8_t)(bits >> (8 * i));
    ws_sha1_block(hs, tail);
    if (tlen == 128) ws_sha1_block(hs, tail + 64);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(hs[i] >> 24);
        out[4 * i + 1] = (uint8_t)(hs[i] >> 16);
        out[4 * i + 2] = (uint8_t)(hs[i] >> 8);
        out[4 * i + 3] = (uint8_t)hs[i];
    }
}

/* ------------------------------------------------------------------------
 * Handshake
 */

static const char ws_b64_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static int
ws_b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Base64 of exactly 20 bytes: 6 full groups and a 2-byte group + "=". */
static void
ws_b64_encode20(const uint8_t in[20], char out[28])
{
    size_t o = 0;

    for (size_t i = 0; i < 20; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < 20) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < 20) v |= in[i + 2];
        out[o++] = ws_b64_alphabet[(v >> 18) & 63];
        out[o++] = ws_b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < 20 ? ws_b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < 20 ? ws_b64_alphabet[v & 63] : '=';
    }
}

int
ws_accept_key(const char *key, size_t len, char out[28])
{
    uint8_t buf[24 + sizeof ws_guid - 1];
    uint8_t digest[20];

    /* 16 bytes encode as 22 characters and "==".  The four unused low
     * bits of the 22nd character are not checked: decoders ignore them, and
     * rejecting a client over them would gain nothing. */
    if (len != 24 || key[22] != '=' || key[23] != '=') return -1;
    for (size_t i = 0; i < 22; i++)
        if (!ws_b64_char((unsigned char)key[i])) return -1;
    memcpy(buf, key, 24);
    memcpy(buf + 24, ws_guid, sizeof ws_guid - 1);
    ws_sha1(buf, sizeof buf, digest);
    ws_b64_encode20(digest, out);
    return 0;
}
