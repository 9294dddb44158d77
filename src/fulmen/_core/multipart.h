/*
 * multipart.h - multipart/form-data body parser (RFC 7578 / RFC 2046 5.1).
 *
 * Pure C, no Python.h, zero-copy: parts come back as spans into the body.
 * The body is complete in memory (bounded by the server's body limit), so
 * the parser is not incremental.
 */
#ifndef FULMEN_MULTIPART_H
#define FULMEN_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t off, len;
} mp_span;

typedef struct {
    mp_span name;          /* form field name (from Content-Disposition)     */
    mp_span filename;      /* len 0 and has_filename 0 when not a file        */
    mp_span content_type;  /* the part's Content-Type value, len 0 if absent  */
    mp_span data;          /* the part's content                              */
    int has_filename;
} mp_part;

typedef struct {
    const char *body;
    size_t len;
    const char *boundary;
    size_t blen;
    size_t pos;            /* private */
    int state;             /* private */
} mp_parser;

/* Extract the boundary parameter from a Content-Type value such as
 * `multipart/form-data; boundary="abc"`.  Returns 0 and sets *b and *bl (a span
 * into ct, quotes removed) or -1 when there is none or it is invalid
 * (RFC 2046: 1..70 chars from bchars, not ending in space). */
int mp_boundary(const char *ct, size_t ctlen, const char **b, size_t *bl);

void mp_init(mp_parser *p, const char *body, size_t len, const char *boundary,
             size_t blen);

/* Next part: returns 1 and fills *part, 0 at the close delimiter (done),
 * -1 on a malformed body.  Never reads outside body[0..len). */
int mp_next(mp_parser *p, mp_part *part);

#endif
