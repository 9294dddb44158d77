/*
 * simd.h - byte-class scanners for the HTTP/1.1 parser (h1parse.c).
 *
 * Pure C, no Python.h.  Each scanner exists three times: a scalar twin, an
 * SSE path and an AVX2 path.  The vector versions carry a target attribute so
 * the file compiles without -march flags; h1parse.c picks one at run time
 * (__builtin_cpu_supports) and compiles its parsing loop once per level so
 * that the chosen scanner inlines into it.
 *
 * Contract shared by every scanner here:
 *     h1_scan_X(s, pos, end) returns the offset of the first byte in
 *     s[pos..end) that is NOT in class X, or end when all of them are.
 * No scanner ever reads s[end] or beyond, nor anything before s[0]: the
 * vector tails re-read the last full vector of the buffer, s[end-W..end),
 * instead of running past the end (only when end >= W, else scalar).
 */
#ifndef FULMEN_SIMD_H
#define FULMEN_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define H1_HAVE_X86 1
#else
#define H1_HAVE_X86 0
#endif

#ifndef LIKELY
#define LIKELY(x) __builtin_expect(!!(x), 1)
#endif
#ifndef UNLIKELY
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#endif
#ifndef NOINLINE
#define NOINLINE __attribute__((noinline))
#endif
#define H1_ALWAYS_INLINE inline __attribute__((always_inline))
#define H1_MAYBE_UNUSED __attribute__((unused))

/* Scanner levels accepted by h1_set_simd_level(). */
#define H1_SIMD_SCALAR 0
#define H1_SIMD_SSE42 1
#define H1_SIMD_AVX2 2

/* ------------------------------------------------------------------------
 * Byte classes (RFC 9110 / RFC 9112)
 */

/* tchar: "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
 *        "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
H1_MAYBE_UNUSED static const uint8_t h1_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

/* field-value bytes: HTAB / SP / VCHAR / obs-text.  Everything else (NUL,
 * the other CTLs, CR, LF, DEL) ends a value scan. */
H1_MAYBE_UNUSED static const uint8_t h1_value_ok[256] = {
    ['\t'] = 1, [0x20 ... 0x7e] = 1, [0x80 ... 0xff] = 1,
};

/* request-target bytes: VCHAR only (no SP, no CTL, no DEL, no 8-bit). */
H1_MAYBE_UNUSED static const uint8_t h1_target_ok[256] = {
    [0x21 ... 0x7e] = 1,
};

/* ------------------------------------------------------------------------
 * Scalar twins
 */

static H1_ALWAYS_INLINE size_t
h1_scan_token(const unsigned char *s, size_t pos, size_t end)
{
    while (LIKELY(end - pos >= 8)) {
        if (!h1_tchar[s[pos]]) return pos;
        if (!h1_tchar[s[pos + 1]]) return pos + 1;
        if (!h1_tchar[s[pos + 2]]) return pos + 2;
        if (!h1_tchar[s[pos + 3]]) return pos + 3;
        if (!h1_tchar[s[pos + 4]]) return pos + 4;
        if (!h1_tchar[s[pos + 5]]) return pos + 5;
        if (!h1_tchar[s[pos + 6]]) return pos + 6;
        if (!h1_tchar[s[pos + 7]]) return pos + 7;
        pos += 8;
    }
    while (pos < end && h1_tchar[s[pos]])
        pos++;
    return pos;
}

/* "qf": the request-target bytes other than '?' and '#', used to split a
 * target that the target scanner has already validated. */
static H1_ALWAYS_INLINE size_t
h1_scan_qf_scalar(const unsigned char *s, size_t pos, size_t end)
{
    while (pos < end && s[pos] != '?' && s[pos] != '#')
        pos++;
    return pos;
}

#define H1_ONES 0x0101010101010101ULL
#define H1_HIGHS 0x8080808080808080ULL

/* SWAR: nonzero when some byte of x is < n (n <= 128).  Exact as a
 * yes/no answer, which is all we use it for. */
static H1_ALWAYS_INLINE uint64_t
h1_swar_has_less(uint64_t x, unsigned n)
{
    return (x - H1_ONES * n) & ~x & H1_HIGHS;
}

static H1_ALWAYS_INLINE uint64_t
h1_swar_has_byte(uint64_t x, unsigned b)
{
    return h1_swar_has_less(x ^ (H1_ONES * b), 1);
}

static H1_ALWAYS_INLINE size_t
h1_scan_value_scalar(const unsigned char *s, size_t pos, size_t end)
{
    while (end - pos >= 8) {
        uint64_t x;
        memcpy(&x, s + pos, 8);
        if (UNLIKELY(h1_swar_has_less(x, 0x20) | h1_swar_has_byte(x, 0x7f))) {
            /* something suspicious, maybe only an HTAB: look closely */
            size_t stop = pos + 8;
            for (; pos < stop; pos++)
                if (!h1_value_ok[s[pos]]) return pos;
            continue;
        }
        pos += 8;
    }
    while (pos < end && h1_value_ok[s[pos]])
        pos++;
    return pos;
}

static H1_ALWAYS_INLINE size_t
h1_scan_target_scalar(const unsigned char *s, size_t pos, size_t end)
{
    while (end - pos >= 8) {
        uint64_t x;
        memcpy(&x, s + pos, 8);
        if (UNLIKELY(h1_swar_has_less(x, 0x21) | (x & H1_HIGHS) |
                     h1_swar_has_byte(x, 0x7f))) {
            size_t stop = pos + 8;
            for (; pos < stop; pos++)
                if (!h1_target_ok[s[pos]]) return pos;
            /* not reached: the SWAR test is exact */
            continue;
        }
        pos += 8;
    }
    while (pos < end && h1_target_ok[s[pos]])
        pos++;
    return pos;
}

#if H1_HAVE_X86

/* ------------------------------------------------------------------------
 * SSE (128-bit).  Plain SSE2 compares are faster than pcmpestri for these
 * classes; the level is named after the sse4.2 target the dispatcher tests.
 */

/* bit i set when byte i is a CTL other than HTAB, or DEL */
__attribute__((target("sse4.2"))) static H1_ALWAYS_INLINE unsigned
h1_sse_value_bad(__m128i v)
{
    __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
    __m128i tab = _mm_cmpeq_epi8(v, _mm_set1_epi8('\t'));
    __m128i del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
    return (unsigned)_mm_movemask_epi8(
        _mm_or_si128(_mm_andnot_si128(tab, ctl), del));
}

/* bit i set when byte i is <= 0x20 or >= 0x7f */
__attribute__((target("sse4.2"))) static H1_ALWAYS_INLINE unsigned
h1_sse_target_bad(__m128i v)
{
    /* signed compare: 0x80..0xff are negative, so "< 0x21" catches them */
    __m128i lo = _mm_cmplt_epi8(v, _mm_set1_epi8(0x21));
    __m128i del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
    return (unsigned)_mm_movemask_epi8(_mm_or_si128(lo, del));
}

__attribute__((target("sse4.2"))) static H1_ALWAYS_INLINE unsigned
h1_sse_qf_bad(__m128i v)
{
    return (unsigned)_mm_movemask_epi8(
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('?')),
                     _mm_cmpeq_epi8(v, _mm_set1_epi8('#'))));
}

#define H1_DEFINE_SSE_SCAN(name, badfn, scalar)                               \
    __attribute__((target("sse4.2"))) static H1_ALWAYS_INLINE size_t name(   \
        const unsigned char *s, size_t pos, size_t end)                       \
    {                                                                         \
        unsigned m;                                                           \
        while (end - pos >= 16) {                                             \
            m = badfn(_mm_loadu_si128((const __m128i *)(s + pos)));           \
            if (m) return pos + (size_t)__builtin_ctz(m);                     \
            pos += 16;                                                        \
        }                                                                     \
        if (pos == end) return end;                                           \
        if (end < 16) return scalar(s, pos, end);                             \
        /* re-read the last 16 bytes, drop those before pos */                \
        m = badfn(_mm_loadu_si128((const __m128i *)(s + end - 16)));          \
        m >>= 16 - (end - pos);                                               \
        return m ? pos + (size_t)__builtin_ctz(m) : end;                      \
    }

H1_DEFINE_SSE_SCAN(h1_scan_value_sse42, h1_sse_value_bad, h1_scan_value_scalar)
H1_DEFINE_SSE_SCAN(h1_scan_target_sse42, h1_sse_target_bad,
                   h1_scan_target_scalar)
H1_DEFINE_SSE_SCAN(h1_scan_qf_sse42, h1_sse_qf_bad, h1_scan_qf_scalar)

/* ------------------------------------------------------------------------
 * AVX2 (256-bit)
 */

__attribute__((target("avx2"))) static H1_ALWAYS_INLINE uint32_t
h1_avx2_value_bad(__m256i v)
{
    __m256i ctl = _mm256_cmpeq_epi8(_mm256_min_epu8(v, _mm256_set1_epi8(0x1f)), v);
    __m256i tab = _mm256_cmpeq_epi8(v, _mm256_set1_epi8('\t'));
    __m256i del = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(0x7f));
    return (uint32_t)_mm256_movemask_epi8(
        _mm256_or_si256(_mm256_andnot_si256(tab, ctl), del));
}

__attribute__((target("avx2"))) static H1_ALWAYS_INLINE uint32_t
h1_avx2_target_bad(__m256i v)
{
    __m256i lo = _mm256_cmpgt_epi8(_mm256_set1_epi8(0x21), v);
    __m256i del = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(0x7f));
    return (uint32_t)_mm256_movemask_epi8(_mm256_or_si256(lo, del));
}

__attribute__((target("avx2"))) static H1_ALWAYS_INLINE uint32_t
h1_avx2_qf_bad(__m256i v)
{
    return (uint32_t)_mm256_movemask_epi8(
        _mm256_or_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('?')),
                        _mm256_cmpeq_epi8(v, _mm256_set1_epi8('#'))));
}

/* Most field values are short ("keep-alive", "?0", "*\/\*"), so the first
 * 16 bytes get one SSE compare before the 32-byte loop starts. */
#define H1_DEFINE_AVX2_SCAN(name, badfn, ssebad, sse)                         \
    __attribute__((target("avx2"))) static H1_ALWAYS_INLINE size_t name(     \
        const unsigned char *s, size_t pos, size_t end)                       \
    {                                                                         \
        uint32_t m;                                                           \
        if (LIKELY(end - pos >= 16)) {                                        \
            m = ssebad(_mm_loadu_si128((const __m128i *)(s + pos)));          \
            if (m) return pos + (size_t)__builtin_ctz(m);                     \
            pos += 16;                                                        \
        }                                                                     \
        while (end - pos >= 32) {                                             \
            m = badfn(_mm256_loadu_si256((const __m256i *)(s + pos)));        \
            if (m) return pos + (size_t)__builtin_ctz(m);                     \
            pos += 32;                                                        \
        }                                                                     \
        if (pos == end) return end;                                           \
        if (end < 32) return sse(s, pos, end);                                \
        m = badfn(_mm256_loadu_si256((const __m256i *)(s + end - 32)));       \
        m >>= 32 - (end - pos);                                               \
        return m ? pos + (size_t)__builtin_ctz(m) : end;                      \
    }

H1_DEFINE_AVX2_SCAN(h1_scan_value_avx2, h1_avx2_value_bad, h1_sse_value_bad,
                    h1_scan_value_sse42)
H1_DEFINE_AVX2_SCAN(h1_scan_target_avx2, h1_avx2_target_bad,
                    h1_sse_target_bad, h1_scan_target_sse42)
H1_DEFINE_AVX2_SCAN(h1_scan_qf_avx2, h1_avx2_qf_bad, h1_sse_qf_bad,
                    h1_scan_qf_sse42)

#endif /* H1_HAVE_X86 */

#endif /* FULMEN_SIMD_H */
