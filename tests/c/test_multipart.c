/*
 * test_multipart.c - C unit tests for the multipart/form-data parser
 * (src/fulmen/_core/multipart.c).
 *
 * Every input is parsed twice: once placed so that it ends exactly at a
 * PROT_NONE guard page (an over-read crashes) and once so that it starts
 * right after one (an under-read crashes).  Both runs must agree.  Every
 * valid body is also parsed truncated at each byte offset, where the parser
 * must fail (or finish, if the close delimiter survived the cut) after
 * returning a prefix of the full result, and under seeded random
 * mutations, where it only has to stay in bounds and terminate.
 *
 * Last line of output: "N passed, M failed"; exit status 1 on failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "multipart.h"
#include "testutil.h"


/* ------------------------------------------------------------------------
 * Running the parser
 */
#define MAXP 64

typedef struct {
    int nparts;
    int rc; /* final return: 0 (done) or -1 */
    mp_part parts[MAXP];
} result;

/* Parse body[0..len) placed against a guard page; every span must lie
 * inside the body and the loop must end within len + 2 calls. */
static void
run(const char *name, const char *body, size_t len, const char *bnd,
    size_t blen, int at_end, result *r)
{
    char *buf = guard_at(body, len, at_end);
    mp_parser p;
    int calls = 0;

    memset(r, 0, sizeof *r);
    mp_init(&p, buf, len, bnd, blen);
    for (;;) {
        mp_part part;
        int rc = mp_next(&p, &part);
        if (++calls > (int)len + 2) {
            check(0, name, "mp_next does not terminate");
            r->rc = -1;
            return;
        }
        if (rc != 1) {
            if (rc != 0 && rc != -1) check(0, name, "bad return code");
            r->rc = rc;
            /* the verdict is sticky */
            if (mp_next(&p, &part) != rc) check(0, name, "verdict not sticky");
            return;
        }
        {
            const mp_span *sp[] = {&part.name, &part.filename,
                                   &part.content_type, &part.data};
            size_t i;
            for (i = 0; i < 4; i++)
                if (sp[i]->off > len || sp[i]->len > len - sp[i]->off) {
                    check(0, name, "span out of bounds");
                    r->rc = -1;
                    return;
                }
            if (!part.has_filename && part.filename.len != 0)
                check(0, name, "filename without has_filename");
        }
        if (r->nparts < MAXP) r->parts[r->nparts] = part;
        r->nparts++;
    }
}

static int
span_eq(const char *body, mp_span s, const char *want)
{
    return s.len == strlen(want) && memcmp(body + s.off, want, s.len) == 0;
}

static int
same_part(const mp_part *a, const mp_part *b)
{
    return a->name.off == b->name.off && a->name.len == b->name.len &&
           a->filename.off == b->filename.off &&
           a->filename.len == b->filename.len &&
           a->content_type.off == b->content_type.off &&
           a->content_type.len == b->content_type.len &&
           a->data.off == b->data.off && a->data.len == b->data.len &&
           a->has_filename == b->has_filename;
}

/* Parse at both guard placements and require the same outcome. */
static void
run2(const char *name, const char *body, size_t len, const char *bnd,
     size_t blen, result *r)
{
    static result r2;
    int i, same;
    run(name, body, len, bnd, blen, 1, r);
    run(name, body, len, bnd, blen, 0, &r2);
    same = r->rc == r2.rc && r->nparts == r2.nparts;
    for (i = 0; same && i < r->nparts && i < MAXP; i++)
        same = same_part(&r->parts[i], &r2.parts[i]);
    check(same, name, "front and back guard placements disagree");
}

/* ------------------------------------------------------------------------
 * Valid bodies, with expected parts
 */
typedef struct {
    const char *name;
    const char *filename; /* NULL: has_filename must be 0 */
    const char *ctype;    /* "" when absent */
    const char *data;
    size_t dlen; /* 0: strlen(data) */
} want_part;

/* Every byte-offset truncation of a valid body: a prefix of the parts, then
 * -1, or 0 only if the whole close delimiter is still there. */
static void
truncations(const char *name, const char *body, size_t len, const char *bnd,
            const result *full)
{
    static result r;
    size_t cut, blen = strlen(bnd);
    int bad = 0;
    for (cut = 0; cut < len; cut++) {
        int i;
        run(name, body, cut, bnd, blen, 1, &r);
        if (r.nparts > full->nparts) bad = 1;
        for (i = 0; !bad && i < r.nparts && i < MAXP; i++)
            if (!same_part(&r.parts[i], &full->parts[i])) bad = 1;
        if (r.rc == 0 && r.nparts != full->nparts) bad = 1;
        if (bad) {
            fprintf(stderr, "  truncated at %zu: rc=%d nparts=%d\n", cut, r.rc,
                    r.nparts);
            break;
        }
    }
    check(!bad, name, "truncation yields more than a prefix of the parts");
}

static void
expect_ok(const char *name, const char *body, size_t len, const char *bnd,
          const want_part *w, int nw)
{
    static result r;
    char *buf;
    int i;

    run2(name, body, len, bnd, strlen(bnd), &r);
    if (r.rc != 0 || r.nparts != nw) {
        char msg[96];
        snprintf(msg, sizeof msg, "rc=%d nparts=%d, want rc=0 nparts=%d", r.rc,
                 r.nparts, nw);
        check(0, name, msg);
        return;
    }
    buf = guard_at(body, len, 1); /* run2's last run was at the front; re-place */
    for (i = 0; i < nw; i++) {
        const mp_part *p = &r.parts[i];
        size_t dl = w[i].dlen ? w[i].dlen : strlen(w[i].data);
        int ok = span_eq(buf, p->name, w[i].name) &&
                 span_eq(buf, p->content_type, w[i].ctype) &&
                 p->data.len == dl &&
                 memcmp(buf + p->data.off, w[i].data, dl) == 0;
        if (w[i].filename)
            ok = ok && p->has_filename && span_eq(buf, p->filename, w[i].filename);
        else
            ok = ok && !p->has_filename && p->filename.len == 0;
        if (!ok) {
            fprintf(stderr, "  part %d: name=%.*s data=%.*s\n", i,
                    (int)p->name.len, buf + p->name.off, (int)p->data.len,
                    buf + p->data.off);
        }
        check(ok, name, "part content");
    }
    truncations(name, body, len, bnd, &r);
}

static void
expect_err(const char *name, const char *body, size_t len, const char *bnd,
           int nparts_before)
{
    static result r;
    char msg[96];
    run2(name, body, len, bnd, strlen(bnd), &r);
    snprintf(msg, sizeof msg, "rc=%d nparts=%d, want rc=-1 nparts=%d", r.rc,
             r.nparts, nparts_before);
    check(r.rc == -1 && r.nparts == nparts_before, name, msg);
}

#define S(lit) lit, sizeof(lit) - 1
#define CD "Content-Disposition: form-data; name="

/* A one-part body whose header block is exactly `block` bytes long. */
static size_t
hdr_block_body(char *body, size_t block)
{
    size_t n = 0, hstart, fill;
    n += (size_t)sprintf(body + n, "--b\r\n");
    hstart = n;
    n += (size_t)sprintf(body + n, CD "h\r\nX-Pad: ");
    fill = block - (n - hstart) - 4;
    memset(body + n, 'p', fill);
    n += fill;
    n += (size_t)sprintf(body + n, "\r\n\r\n");
    if (n - hstart != block) abort();
    n += (size_t)sprintf(body + n, "v\r\n--b--");
    return n;
}

static void
test_valid(void)
{
    {
        static const char body[] =
            "--XyZ\r\n"
            CD "\"title\"\r\n"
            "\r\n"
            "Hello, world\r\n"
            "--XyZ\r\n"
            CD "\"count\"\r\n"
            "\r\n"
            "42\r\n"
            "--XyZ\r\n"
            "Content-Disposition: form-data; name=\"upload\"; "
            "filename=\"a b.txt\"\r\n"
            "Content-Type: text/plain\r\n"
            "\r\n"
            "line1\r\nline2\r\n\r\n"
            "\r\n"
            "--XyZ--\r\n";
        static const want_part w[] = {
            {"title", NULL, "", "Hello, world", 0},
            {"count", NULL, "", "42", 0},
            {"upload", "a b.txt", "text/plain", "line1\r\nline2\r\n\r\n", 0},
        };
        expect_ok("fields and a file", S(body), "XyZ", w, 3);
    }
    {
        static const char body[] =
            "--b\r\n" CD "\"empty\"\r\n\r\n\r\n"
            "--b\r\n" CD "\"x\"\r\n\r\nv\r\n"
            "--b--";
        static const want_part w[] = {
            {"empty", NULL, "", "", 0},
            {"x", NULL, "", "v", 0},
        };
        expect_ok("empty field, no CRLF after close", S(body), "b", w, 2);
    }
    {
        static const char body[] =
            "This is the preamble.\r\nIt is ignored --b not at line start\r\n"
            "--b\r\n" CD "a\r\n\r\n1\r\n"
            "--b--\r\n"
            "epilogue --b\r\n" CD "zzz\r\n\r\nnot a part\r\n--b--\r\n";
        static const want_part w[] = {{"a", NULL, "", "1", 0}};
        expect_ok("preamble and epilogue", S(body), "b", w, 1);
    }
    {
        static const char body[] =
            "\r\n--b\r\n" CD "a\r\n\r\n1\r\n--b--\r\n";
        static const want_part w[] = {{"a", NULL, "", "1", 0}};
        expect_ok("empty preamble (leading CRLF)", S(body), "b", w, 1);
    }
    {
        static const char body[] = "--b\r\n" CD "a\r\n\r\n1\r\n--b-- \t";
        static const want_part w[] = {{"a", NULL, "", "1", 0}};
        expect_ok("padding after the close delimiter", S(body), "b", w, 1);
    }
    {
        static const char body[] = "--b\r\n" CD "a\r\n\r\n1\r\n--b--\t\r\nepilogue";
        static const want_part w[] = {{"a", NULL, "", "1", 0}};
        expect_ok("padding, CRLF and an epilogue after the close", S(body), "b", w, 1);
    }
    {
        static const char body[] =
            "--b \t \r\n" CD "a\r\n\r\n1\r\n--b\t\r\n" CD "b\r\n\r\n2\r\n--b--";
        static const want_part w[] = {
            {"a", NULL, "", "1", 0},
            {"b", NULL, "", "2", 0},
        };
        expect_ok("transport padding", S(body), "b", w, 2);
    }
    {
        static const char body[] =
            "--b\r\n"
            "content-disposition:FORM-DATA ;NAME = tok_en-1 ; x=\"y;z\"; "
            "FileName=\"\"\r\n"
            "CONTENT-TYPE:   application/octet-stream  \r\n"
            "X-Other: whatever \t\r\n"
            "\r\n"
            "data\r\n--b--\r\n";
        static const want_part w[] = {
            {"tok_en-1", "", "application/octet-stream", "data", 0},
        };
        expect_ok("case, whitespace, empty filename", S(body), "b", w, 1);
    }
    {
        static const char body[] =
            "--b\r\n"
            "Content-Disposition: form-data; name=\"q\\\"x\"; "
            "filename*=UTF-8''%e2%82%ac.txt; filename=\"e.txt\"\r\n"
            "\r\n"
            "d\r\n--b--\r\n";
        static const want_part w[] = {{"q\\\"x", "e.txt", "", "d", 0}};
        expect_ok("escaped quote, filename* ignored", S(body), "b", w, 1);
    }
    {
        /* the empty line of part g is the delimiter's CRLF: g has no body */
        static const char body[] =
            "--abc\r\n" CD "f\r\n\r\n"
            "x\r\n--abc\r\n" CD "g\r\n\r\n--abc--";
        static const want_part w[] = {
            {"f", NULL, "", "x", 0},
            {"g", NULL, "", "", 0},
        };
        expect_ok("last part without body", S(body), "abc", w, 2);
    }
    {
        static const char body[] =
            "--abc\r\n" CD "f\r\n\r\n"
            "\r\n--ab\r\n--abX--abc\n--abc\r--abc\r\r\n-abc\r\n"
            "\r\n--abc--\r\n";
        static const want_part w[] = {
            {"f", NULL, "", "\r\n--ab\r\n--abX--abc\n--abc\r--abc\r\r\n-abc\r\n",
             0},
        };
        expect_ok("near misses of the delimiter in data", S(body), "abc", w, 1);
    }
    {
        static const char body[] =
            "--outer\r\n"
            CD "\"files\"\r\n"
            "Content-Type: multipart/mixed; boundary=inner\r\n"
            "\r\n"
            "--inner\r\n"
            "Content-Disposition: file; filename=\"a.txt\"\r\n"
            "\r\n"
            "A\r\n"
            "--inner--\r\n"
            "--outer--\r\n";
        static const want_part w[] = {
            {"files", NULL, "multipart/mixed; boundary=inner",
             "--inner\r\nContent-Disposition: file; filename=\"a.txt\"\r\n"
             "\r\nA\r\n--inner--",
             0},
        };
        expect_ok("nested multipart/mixed is data", S(body), "outer", w, 1);
    }
    {
        static const char body[] = "--b--\r\n";
        expect_ok("empty form", S(body), "b", NULL, 0);
    }
    {
        static const char body[] =
            "--b\r\n" CD "bin; filename=x.bin\r\n\r\n"
            "\0\x01\xff\r\0\n--b\r\n"
            "--b--";
        static const want_part w[] = {
            {"bin", "x.bin", "", "\0\x01\xff\r\0\n--b", 9},
        };
        expect_ok("binary data with NULs", S(body), "b", w, 1);
    }
    {
        static const char body[] =
            "--a'()+_,-./:=? z\r\n" CD "n\r\n\r\nv\r\n--a'()+_,-./:=? z--";
        static const want_part w[] = {{"n", NULL, "", "v", 0}};
        expect_ok("boundary with all bchars", S(body), "a'()+_,-./:=? z", w, 1);
    }
    {
        /* 32 header lines is the limit, inclusive */
        char body[4096];
        size_t n = 0;
        int i;
        n += (size_t)sprintf(body + n, "--b\r\n" CD "h\r\n");
        for (i = 1; i < 32; i++)
            n += (size_t)sprintf(body + n, "X-H%d: %d\r\n", i, i);
        n += (size_t)sprintf(body + n, "\r\nv\r\n--b--\r\n");
        {
            static const want_part w[] = {{"h", NULL, "", "v", 0}};
            expect_ok("32 header lines", body, n, "b", w, 1);
        }
    }
    {
        /* the header block (empty line included) may be 16384 bytes */
        static char body[20000];
        static const want_part w[] = {{"h", NULL, "", "v", 0}};
        size_t n = hdr_block_body(body, 16384);
        expect_ok("16 KB header block", body, n, "b", w, 1);
        n = hdr_block_body(body, 16385);
        expect_err("16 KB + 1 header block", body, n, "b", 0);
    }
}

/* ------------------------------------------------------------------------
 * Large bodies: correctness and linear scanning
 */
static void
test_large(void)
{
    size_t data_len = 1500 * 1000, n = 0, i;
    char *body = malloc(data_len + 256);
    static const char hdr[] = "--BoUnDaRy1234567890\r\n" CD "big; "
                              "filename=\"big.bin\"\r\n\r\n";
    static const char tail[] = "\r\n--BoUnDaRy1234567890--\r\n";
    static result r;
    size_t d0;

    if (body == NULL) exit(2);
    memcpy(body, hdr, sizeof hdr - 1);
    n = sizeof hdr - 1;
    d0 = n;
    /* near-miss delimiters all through the data: "\r\n--BoUnDaRy123456789" */
    for (i = 0; i < data_len; i++) {
        static const char pat[] = "\r\n--BoUnDaRy123456789X";
        body[n + i] = pat[i % (sizeof pat - 1)];
    }
    n += data_len;
    memcpy(body + n, tail, sizeof tail - 1);
    n += sizeof tail - 1;

    run2("large file with near misses", body, n, "BoUnDaRy1234567890", 18, &r);
    check(r.rc == 0 && r.nparts == 1 && r.parts[0].data.off == d0 &&
              r.parts[0].data.len == data_len,
          "large file with near misses", "data span");
    free(body);

    /* many small parts */
    {
        size_t cap = 1000 * 64, k;
        char *b2 = malloc(cap);
        n = 0;
        if (b2 == NULL) exit(2);
        for (k = 0; k < 1000; k++)
            n += (size_t)sprintf(b2 + n, "--q\r\n" CD "f%zu\r\n\r\n%zu\r\n",
                                 k, k);
        n += (size_t)sprintf(b2 + n, "--q--\r\n");
        run2("1000 parts", b2, n, "q", 1, &r);
        check(r.rc == 0 && r.nparts == 1000, "1000 parts", "count");
        free(b2);
    }
}

/* ------------------------------------------------------------------------
 * Invalid bodies
 */
static void
test_invalid(void)
{
    expect_err("empty body", "", 0, "b", 0);
    expect_err("no delimiter", S("just some text\r\n"), "b", 0);
    expect_err("missing close delimiter",
               S("--b\r\n" CD "a\r\n\r\nvalue\r\n"), "b", 0);
    expect_err("missing close after a part",
               S("--b\r\n" CD "a\r\n\r\n1\r\n--b\r\n" CD "c\r\n\r\n2"), "b", 1);
    /* the delimiter needs a CRLF of its own after the last header line */
    expect_err("header line then dash-boundary", S("--b\r\n" CD "a\r\n--b--"),
               "b", 0);
    expect_err("ends at a dash-boundary",
               S("--b\r\n" CD "a\r\n\r\n1\r\n--b"), "b", 0);
    expect_err("ends at an open delimiter",
               S("--b\r\n" CD "a\r\n\r\n1\r\n--b\r\n"), "b", 1);
    expect_err("close with one dash", S("--b\r\n" CD "a\r\n\r\n1\r\n--b-"), "b",
               0);
    expect_err("bytes after a close delimiter",
               S("--b\r\n" CD "a\r\n\r\n1\r\n--b--junk\r\n--b\r\n" CD "c\r\n\r\n2\r\n--b--"),
               "b", 0);
    expect_err("bytes after padding after a close delimiter",
               S("--b\r\n" CD "a\r\n\r\n1\r\n--b-- x"), "b", 0);
    expect_err("bytes after a first close delimiter", S("--b--x\r\n"), "b", 0);
    expect_err("garbage after boundary",
               S("--bX\r\n" CD "a\r\n\r\n1\r\n--b--"), "b", 0);
    expect_err("garbage after a later boundary",
               S("--b\r\n" CD "a\r\n\r\n1\r\n--bb\r\n--b--"), "b", 0);
    expect_err("header without colon",
               S("--b\r\n" CD "a\r\nNoColonHere\r\n\r\n1\r\n--b--"), "b", 0);
    expect_err("space before colon",
               S("--b\r\nContent-Disposition : form-data; name=a\r\n\r\n1\r\n"
                 "--b--"),
               "b", 0);
    expect_err("empty header name", S("--b\r\n" CD "a\r\n: x\r\n\r\n1\r\n--b--"),
               "b", 0);
    expect_err("obs-fold", S("--b\r\n" CD "a\r\n X-Folded\r\n\r\n1\r\n--b--"),
               "b", 0);
    expect_err("bare LF in headers",
               S("--b\r\n" CD "a\nX: y\r\n\r\n1\r\n--b--"), "b", 0);
    expect_err("bare LF empty line", S("--b\r\n" CD "a\r\n\n1\r\n--b--"), "b",
               0);
    expect_err("bare CR in header",
               S("--b\r\n" CD "a\r\nX: a\rb\r\n\r\n1\r\n--b--"), "b", 0);
    expect_err("NUL in header", S("--b\r\n" CD "a\r\nX: a\0b\r\n\r\n1\r\n--b--"),
               "b", 0);
    expect_err("LF-only body", S("--b\n" CD "a\n\nvalue\n--b--\n"), "b", 0);
    expect_err("LF-only body after preamble",
               S("pre\n--b\n" CD "a\n\nvalue\n--b--\n"), "b", 0);
    expect_err("LF-only delimiters inside a CRLF body",
               S("--b\r\n" CD "a\r\n\r\n1\n--b\n" CD "c\r\n\r\n2\n--b--\n"),
               "b", 0);
    expect_err("no Content-Disposition",
               S("--b\r\nContent-Type: text/plain\r\n\r\n1\r\n--b--"), "b", 0);
    expect_err("no headers", S("--b\r\n\r\n1\r\n--b--"), "b", 0);
    expect_err("no name",
               S("--b\r\nContent-Disposition: form-data; filename=\"f\"\r\n"
                 "\r\n1\r\n--b--"),
               "b", 0);
    expect_err("name* only",
               S("--b\r\nContent-Disposition: form-data; name*=x\r\n\r\n1\r\n"
                 "--b--"),
               "b", 0);
    expect_err("not form-data",
               S("--b\r\nContent-Disposition: attachment; name=a\r\n\r\n1\r\n"
                 "--b--"),
               "b", 0);
    expect_err("form-data prefix",
               S("--b\r\nContent-Disposition: form-datax; name=a\r\n\r\n1\r\n"
                 "--b--"),
               "b", 0);
    expect_err("empty disposition",
               S("--b\r\nContent-Disposition:\r\n\r\n1\r\n--b--"), "b", 0);
    expect_err("unterminated quoted name",
               S("--b\r\nContent-Disposition: form-data; name=\"abc\r\n\r\n1"
                 "\r\n--b--"),
               "b", 0);
    expect_err("backslash at end of quoted name",
               S("--b\r\nContent-Disposition: form-data; name=\"abc\\\r\n\r\n"
                 "1\r\n--b--"),
               "b", 0);
    expect_err("parameter without value",
               S("--b\r\nContent-Disposition: form-data; name=\r\n\r\n1\r\n"
                 "--b--"),
               "b", 0);
    expect_err("parameter without '='",
               S("--b\r\nContent-Disposition: form-data; name\r\n\r\n1\r\n"
                 "--b--"),
               "b", 0);
    expect_err("junk after a parameter",
               S("--b\r\nContent-Disposition: form-data; name=\"a\"x\r\n\r\n1"
                 "\r\n--b--"),
               "b", 0);
    expect_err("duplicate name parameter",
               S("--b\r\nContent-Disposition: form-data; name=a; name=b\r\n"
                 "\r\n1\r\n--b--"),
               "b", 0);
    expect_err("duplicate Content-Disposition",
               S("--b\r\n" CD "a\r\n" CD "b\r\n\r\n1\r\n--b--"), "b", 0);
    expect_err("duplicate Content-Type",
               S("--b\r\n" CD "a\r\nContent-Type: a/b\r\nContent-Type: c/d\r\n"
                 "\r\n1\r\n--b--"),
               "b", 0);
    expect_err("second part bad",
               S("--b\r\n" CD "a\r\n\r\n1\r\n--b\r\nX: y\r\n\r\n2\r\n--b--"),
               "b", 1);
    {
        char body[4096];
        size_t n = 0;
        int i;
        n += (size_t)sprintf(body + n, "--b\r\n" CD "h\r\n");
        for (i = 1; i < 33; i++)
            n += (size_t)sprintf(body + n, "X-H%d: %d\r\n", i, i);
        n += (size_t)sprintf(body + n, "\r\nv\r\n--b--\r\n");
        expect_err("33 header lines", body, n, "b", 0);
    }
    {
        static char body[40000];
        size_t n = (size_t)sprintf(body, "--b\r\n" CD "h\r\nX-Pad: ");
        memset(body + n, 'p', 30000);
        n += 30000;
        n += (size_t)sprintf(body + n, "\r\n\r\nv\r\n--b--");
        expect_err("huge header line", body, n, "b", 0);
    }
    {
        /* boundary lengths rejected by mp_init */
        static result r;
        char b71[72];
        memset(b71, 'a', 71);
        b71[71] = 0;
        run("mp_init blen 0", S("----\r\n"), "", 0, 1, &r);
        check(r.rc == -1 && r.nparts == 0, "mp_init blen 0", "rc");
        run("mp_init blen 71", S("--x--"), b71, 71, 1, &r);
        check(r.rc == -1 && r.nparts == 0, "mp_init blen 71", "rc");
        run("mp_init NULL boundary", S("--x--"), NULL, 1, 1, &r);
        check(r.rc == -1 && r.nparts == 0, "mp_init NULL boundary", "rc");
    }
}

/* ------------------------------------------------------------------------
 * Random mutations of a valid body: must stay in bounds and terminate.
 */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static void
test_mutations(void)
{
    static const char seed[] =
        "pre\r\n--zz\r\n" CD "\"a\"; filename=\"f\\\"g\"\r\n"
        "Content-Type: text/plain\r\n\r\nA\r\n--zz\r\n"
        "Content-Disposition: form-data; name=b\r\n\r\n\r\n--zz--\r\nepi";
    static const char alphabet[] = "\r\n-z\";=: \\aF";
    char buf[sizeof seed + 8];
    static result r;
    int it, k, okc = 0;

    for (it = 0; it < 20000; it++) {
        size_t n = sizeof seed - 1;
        int nm = 1 + (int)(rng() % 4);
        memcpy(buf, seed, n);
        for (k = 0; k < nm; k++) {
            size_t at = (size_t)(rng() % n);
            switch (rng() % 3) {
            case 0: /* replace */
                buf[at] = alphabet[rng() % (sizeof alphabet - 1)];
                break;
            case 1: /* delete */
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default: /* random byte */
                buf[at] = (char)(rng() & 0xff);
            }
        }
        run("mutation", buf, n, "zz", 2, 1, &r);
        run("mutation", buf, n, "zz", 2, 0, &r);
        if (r.rc == 0) okc++;
    }
    check(1, "mutations", "completed");
    printf("mutations: %d of 20000 still parsed\n", okc);
}

/* ------------------------------------------------------------------------
 * mp_boundary
 */
static void
expect_boundary(const char *ct, const char *want)
{
    const char *b = NULL;
    size_t bl = 0, len = strlen(ct);
    int pass, at_end;
    for (at_end = 0; at_end < 2; at_end++) {
        char *buf = guard_at(ct, len, at_end);
        int rc = mp_boundary(buf, len, &b, &bl);
        if (want == NULL)
            pass = rc == -1;
        else
            pass = rc == 0 && bl == strlen(want) && memcmp(b, want, bl) == 0 &&
                   b >= buf && b + bl <= buf + len;
        if (!pass) fprintf(stderr, "  rc=%d got=%.*s\n", rc, (int)bl, b ? b : "");
        check(pass, ct, want ? want : "(expected -1)");
    }
}

static void
test_boundary(void)
{
    char ct[200];

    expect_boundary("multipart/form-data; boundary=abc", "abc");
    expect_boundary("multipart/form-data;boundary=abc", "abc");
    expect_boundary("multipart/form-data; boundary=\"a b:c\"", "a b:c");
    expect_boundary("MULTIPART/FORM-DATA ; charset=utf-8 ; BOUNDARY = \"xyz\" "
                    "; foo=bar",
                    "xyz");
    expect_boundary("multipart/form-data; foo=\"x;boundary=bad\"; boundary=ok",
                    "ok");
    expect_boundary("multipart/form-data; boundary=----WebKitFormBoundary"
                    "7MA4YWxkTrZu0gW",
                    "----WebKitFormBoundary7MA4YWxkTrZu0gW");
    expect_boundary("multipart/form-data; boundary=abc ;", "abc");
    expect_boundary("multipart/form-data;\tboundary=abc\t", "abc");
    expect_boundary("multipart/form-data; boundary=a'()+_,-./:=?",
                    "a'()+_,-./:=?");
    expect_boundary("multipart/form-data", NULL);
    expect_boundary("", NULL);
    expect_boundary("multipart/form-data; charset=utf-8", NULL);
    expect_boundary("multipart/form-data; boundary=", NULL);
    expect_boundary("multipart/form-data; boundary=\"\"", NULL);
    expect_boundary("multipart/form-data; boundary=\"abc \"", NULL);
    expect_boundary("multipart/form-data; boundary=\"abc", NULL);
    expect_boundary("multipart/form-data; boundary=\"a\\\"b\"", NULL);
    expect_boundary("multipart/form-data; boundary=a@b", NULL);
    expect_boundary("multipart/form-data; boundary=a;boundary=b", NULL);
    expect_boundary("multipart/form-data; boundary=abc junk", NULL);
    expect_boundary("multipart/form-data; boundaryx=abc", NULL);
    expect_boundary("multipart/form-data; =abc", NULL);
    expect_boundary("multipart/form-data; boundary abc", NULL);

    memset(ct, 0, sizeof ct);
    strcpy(ct, "multipart/form-data; boundary=");
    memset(ct + strlen(ct), 'x', 70);
    expect_boundary(ct, ct + strlen("multipart/form-data; boundary="));
    strcat(ct, "x"); /* 71 */
    expect_boundary(ct, NULL);
    {
        /* NULL / zero length */
        const char *b;
        size_t bl;
        check(mp_boundary(NULL, 0, &b, &bl) == -1, "mp_boundary NULL", "rc");
    }
}

int
main(void)
{
    guard_init();
    test_boundary();
    test_valid();
    test_invalid();
    test_large();
    test_mutations();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
