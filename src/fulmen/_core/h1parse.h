/*
 * h1parse.h - strict, incremental, zero-copy HTTP/1.1 request-head parser.
 *
 * Pure C: no Python.h.  Spans are (offset, length) pairs relative to the start
 * of the buffer handed to h1_parse_request(), so a caller may move the bytes
 * (grow or rebase its buffer) between calls as long as the request start moves
 * with them.
 *
 * Strictness follows RFC 9112 / RFC 9110; see h1parse.c for the rule list.
 */
#ifndef FULMEN_H1PARSE_H
#define FULMEN_H1PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint32_t off;
    uint32_t len;
} h1_span;

typedef struct {
    h1_span name;
    h1_span value; /* leading/trailing OWS stripped */
} h1_header;

/* Well-known methods, recognised while parsing so the server can dispatch
 * without string compares.  Any other token method is H1_M_OTHER. */
enum h1_method {
    H1_M_OTHER = 0,
    H1_M_GET,
    H1_M_HEAD,
    H1_M_POST,
    H1_M_PUT,
    H1_M_DELETE,
    H1_M_PATCH,
    H1_M_OPTIONS,
    H1_M_CONNECT,
    H1_M_TRACE,
};

/* Return values of h1_parse_request(): >0 is the head length in bytes. */
#define H1_PARTIAL (-2)
#define H1_ERROR (-1)

/* Flags on a parsed request (h1_request.flags). */
#define H1_F_CHUNKED        0x0001 /* Transfer-Encoding ends in chunked     */
#define H1_F_HAS_CL         0x0002 /* Content-Length present and valid     */
#define H1_F_CONN_CLOSE     0x0004 /* Connection: close token               */
#define H1_F_CONN_KEEPALIVE 0x0008 /* Connection: keep-alive token          */
#define H1_F_CONN_UPGRADE   0x0010 /* Connection: upgrade token             */
#define H1_F_EXPECT_CONTINUE 0x0020 /* Expect: 100-continue                 */
#define H1_F_HAS_TE         0x0040 /* any Transfer-Encoding header present  */
#define H1_F_HAS_HOST       0x0080
#define H1_F_UPGRADE        0x0100 /* an Upgrade header is present          */
#define H1_F_KEEP_ALIVE     0x0200 /* computed: the connection may persist  */
#define H1_F_ASTERISK       0x0400 /* target is "*" (OPTIONS *)             */
#define H1_F_ABSOLUTE       0x0800 /* target was absolute-form              */
#define H1_F_HAS_CT         0x1000 /* a Content-Type header seen            */

typedef struct {
    h1_span method;
    h1_span target;       /* the whole request-target as sent              */
    h1_span path;         /* origin-form path (for absolute-form: the path  */
                          /* part after the authority; "/" when empty,     */
                          /* which is reported as len 0 - treat as "/").   */
                          /* "*" for H1_F_ASTERISK; len 0 for CONNECT.     */
                          /* A "#fragment" is excluded from path and query */
    h1_span query;        /* after '?', without it; len 0 when absent       */
    uint8_t method_id;    /* enum h1_method                                */
    uint8_t version_minor; /* 0 or 1 (1.2..1.9 are reported as 1)          */
    uint16_t flags;       /* H1_F_*                                        */
    uint16_t error_status; /* on H1_ERROR: 400, 414, 431, 501 or 505        */
    uint64_t content_length; /* H1_F_HAS_CL's value; 0 without one         */
    uint32_t num_headers;
    uint32_t host_index;  /* index of the Host header when H1_F_HAS_HOST    */
    h1_header *headers;   /* caller-provided array of max_headers entries   */
    const char *error_reason; /* static string, for logs/debug bodies       */
} h1_request;

/* Incremental parser state.  Zero it with h1_parser_init() before the first
 * byte of each request head.  Everything here is private to h1parse.c. */
typedef struct {
    uint32_t max_header_size; /* request line + headers, bytes              */
    uint32_t max_headers;     /* capacity of h1_request.headers             */
    /* private resume state */
    uint32_t line_start;      /* offset of the first line not yet complete  */
    uint32_t scan_pos;        /* bytes of that line already checked         */
    uint8_t stage;            /* resume point (enum in h1parse.c)           */
    uint8_t leading_crlf;     /* the leading empty line was consumed        */
    uint8_t pad[2];
    uint32_t aux[4];
} h1_parser;

static inline void h1_parser_init(h1_parser *p, uint32_t max_header_size,
                                  uint32_t max_headers)
{
    memset(p, 0, sizeof(*p));
    /* the head length is returned as an int */
    if (max_header_size > 0x7fffffffu) max_header_size = 0x7fffffffu;
    p->max_header_size = max_header_size;
    p->max_headers = max_headers;
}

/* Parse the request head in buf[0..len).  buf must start where the previous
 * call's buf started (the same request), and len must not shrink.
 * Returns the head length (> 0, including the final CRLF CRLF, and including
 * one leading empty line if present) when complete, H1_PARTIAL when more bytes
 * are needed, H1_ERROR with req->error_status set on a protocol error.
 * Bytes already examined by an earlier call are not examined again.
 * On H1_PARTIAL, req holds a partial state that the next call continues:
 * pass the same req (headers array included). */
typedef int (*h1_parse_fn)(h1_parser *p, const unsigned char *buf, size_t len,
                           h1_request *req);
/* the scanner in effect (see h1_set_simd_level); called through this
 * pointer so that a request costs no level test and no extra call frame */
extern h1_parse_fn h1_parse_impl;

static inline int h1_parse_request(h1_parser *p, const char *buf, size_t len,
                                   h1_request *req)
{
    return h1_parse_impl(p, (const unsigned char *)buf, len, req);
}

/* Select the scanner: 0 = scalar, 1 = SSE4.2, 2 = AVX2, -1 = the default:
 * SSE4.2 where the CPU has it (the AVX2 build of the parse loop measured
 * 4-8% slower on every request set of bench/h1parse_bench.c, on the Zen 4
 * this lab runs on), else scalar.  A level the CPU lacks gives its best.
 * Returns the level in effect.  Process-wide; for tests and benchmarks. */
int h1_set_simd_level(int level);

/* The highest level the CPU supports (tests and benchmarks try each). */
int h1_simd_best(void);

/* Is s[0..n) a Host value (RFC 9110 7.2: uri-host [":" port]), as the
 * parser checks the Host field?  For the hosts a proxy forwards. */
int h1_host_valid(const char *s, size_t n);

/* ------------------------------------------------------------------------
 * Chunked transfer coding, decoded in place.
 */
typedef struct {
    uint64_t chunk_remaining; /* private */
    uint64_t total;           /* decoded body bytes so far                 */
    uint64_t max_body;        /* limit on total; exceeding it is H1_TOO_BIG */
    uint32_t scan;            /* private */
    uint8_t state;            /* private */
    uint8_t pad[3];
} h1_chunked;

#define H1_CHUNK_DONE 0       /* last-chunk and trailers consumed           */
#define H1_CHUNK_PARTIAL (-2)
#define H1_CHUNK_ERROR (-1)
#define H1_CHUNK_TOO_BIG (-3)

void h1_chunked_init(h1_chunked *c, uint64_t max_body);

/* Decode chunked data in place.  buf[*src..len) are raw bytes not yet
 * consumed; decoded body bytes are written to buf[*dst..] (dst <= src always).
 * On return *src and *dst are advanced.  Returns H1_CHUNK_DONE when the whole
 * body, trailers and final CRLF are consumed (*src then points just past the
 * message), H1_CHUNK_PARTIAL when more input is needed, H1_CHUNK_ERROR on a
 * malformed body, H1_CHUNK_TOO_BIG when total would pass max_body. */
int h1_chunked_decode(h1_chunked *c, char *buf, size_t len, size_t *src,
                      size_t *dst);

#endif
