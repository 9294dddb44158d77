/*
 * chunked.c - in-place decoder for the chunked transfer coding
 * (RFC 9112 section 7.1).
 *
 * Pure C, no Python.h.  The only public symbols are h1_chunked_init() and
 * h1_chunked_decode() from h1parse.h.
 *
 * Grammar enforced, strictly:
 *
 *   chunked-body   = *chunk last-chunk trailer-section CRLF
 *   chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-size     = 1*HEXDIG            (at most 64 digits, value < 2^60)
 *   last-chunk     = 1*("0") [ chunk-ext ] CRLF
 *   chunk-ext      = *( ";" chunk-ext-name [ "=" chunk-ext-val ] )
 *   chunk-ext-name = token
 *   chunk-ext-val  = token / quoted-string
 *   trailer-section = *( field-line CRLF )
 *
 * The optional BWS of RFC 9112 around ';' and '=' is rejected ("bad"
 * whitespace that senders must not generate and that parsers disagree
 * about).  Extensions and trailer fields are validated and dropped.
 * A chunk-size line may not exceed H1_CK_MAX_LINE bytes and the trailer
 * section H1_CK_MAX_TRAILER bytes.
 *
 * The decoder is a byte-level state machine for the framing and a memmove
 * for chunk data; every framing byte is consumed exactly once, so feeding
 * one byte at a time costs the same as feeding the whole body.
 */
#include "h1parse.h"

#include <string.h>

#include "simd.h"

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

/* hex digit value + 1; 0 for a byte that is not a HEXDIG */
static const uint8_t h1_hexval1[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5,
    ['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10,
    ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

void
h1_chunked_init(h1_chunked *c, uint64_t max_body)
{
    memset(c, 0, sizeof(*c));
    c->max_body = max_body;
    c->state = H1_CK_SIZE0;
}

/* The chunk-size has ended (at ';' or CR).  Returns 0, or the verdict
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
                if (UNLIKELY(c->chunk_remaining >> 56) ||
                    UNLIKELY(c->scan > H1_CK_MAX_DIGITS))
                    goto error; /* a 16th significant digit: absurd size */
                c->chunk_remaining = (c->chunk_remaining << 4) | (d - 1);
                st = H1_CK_SIZE;
                break;
            }
            if (st == H1_CK_SIZE0 || (ch != ';' && ch != '\r')) goto error;
            if (h1_chunked_size_done(c)) goto too_big;
            st = ch == ';' ? H1_CK_EXT_NAME0 : H1_CK_SIZE_LF;
            break;
        }
        case H1_CK_EXT_NAME0:
            if (!h1_tchar[ch]) goto error;
            st = H1_CK_EXT_NAME;
            break;
        case H1_CK_EXT_NAME:
            if (h1_tchar[ch]) break;
            if (ch == '=')
                st = H1_CK_EXT_VAL0;
            else if (ch == ';')
                st = H1_CK_EXT_NAME0;
            else if (ch == '\r')
                st = H1_CK_SIZE_LF;
            else
                goto error;
            break;
        case H1_CK_EXT_VAL0:
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
            if (ch == ';')
                st = H1_CK_EXT_NAME0;
            else if (ch == '\r')
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
