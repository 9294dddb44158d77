/*
 * test_h1parse.c - C unit tests for the HTTP/1.1 request parser and the
 * chunked decoder (src/fulmen/_core/h1parse.c).
 *
 * Every input is placed so that it ends exactly at a PROT_NONE guard page,
 * so an over-read crashes the test.  Each request is parsed whole, in every
 * two-way split and byte by byte, at every SIMD level the CPU has, and all
 * of those must agree.  The buffer is moved between incremental calls (the
 * prefix is re-copied to end at the guard page), which also checks that
 * the parser keeps only offsets.
 *
 * Last line of output: "N passed, M failed"; exit status 1 on failure.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "h1parse.h"
#include "testutil.h"

static int cur_level;

static void
fail(const char *name, const char *mode, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL [%s] level=%d %s: ", name, cur_level, mode);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void
check_mode(int ok, const char *name, const char *mode, const char *what)
{
    if (ok)
        n_pass++;
    else {
        n_fail++;
        fail(name, mode, "%s", what);
    }
}

/* ------------------------------------------------------------------------
 * Request rendering: everything the parser reports, as one string, so that
 * whole / split / byte-by-byte / per-level results compare with strcmp.
 */
#define MAXH 128

static int
spans_ok(const h1_request *r, size_t len)
{
    const h1_span *sp[] = {&r->method, &r->target, &r->path, &r->query};
    size_t i;
    for (i = 0; i < 4; i++)
        if ((size_t)sp[i]->off + sp[i]->len > len) return 0;
    for (i = 0; i < r->num_headers; i++) {
        const h1_header *h = &r->headers[i];
        if ((size_t)h->name.off + h->name.len > len) return 0;
        if ((size_t)h->value.off + h->value.len > len) return 0;
    }
    return 1;
}

static void
render(char *out, size_t cap, int rc, const h1_request *r, const char *buf)
{
    size_t n = 0, i;
#define PUT(...) n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, __VA_ARGS__)
    if (rc == H1_ERROR) {
        PUT("ERROR %d", r->error_status);
        return;
    }
    if (rc == H1_PARTIAL) {
        PUT("PARTIAL");
        return;
    }
    PUT("rc=%d m=%.*s(%d) t=%.*s p=%u:%.*s q=%.*s v=1.%d f=%04x cl=%llu h=%u hi=%u|",
        rc, (int)r->method.len, buf + r->method.off, r->method_id,
        (int)r->target.len, buf + r->target.off, r->path.off,
        (int)r->path.len, buf + r->path.off, (int)r->query.len,
        buf + r->query.off, r->version_minor, r->flags,
        (unsigned long long)r->content_length, /* 0 without H1_F_HAS_CL */
        r->num_headers, (r->flags & H1_F_HAS_HOST) ? r->host_index : 999);
    for (i = 0; i < r->num_headers; i++)
        PUT("%.*s: %.*s\n", (int)r->headers[i].name.len,
            buf + r->headers[i].name.off, (int)r->headers[i].value.len,
            buf + r->headers[i].value.off);
#undef PUT
}

typedef struct {
    uint32_t max_size, max_headers;
} limits;

/* Parse raw whole, ending at the guard page.  out gets the rendering. */
static int
parse_whole(const char *raw, size_t len, limits lim, char *out, size_t cap,
            h1_request *req, h1_header *hdrs)
{
    h1_parser p;
    char *b = guard_at(raw, len, 1);
    int rc;
    h1_parser_init(&p, lim.max_size, lim.max_headers);
    req->headers = hdrs;
    rc = h1_parse_request(&p, b, len, req);
    if (rc > 0 && !spans_ok(req, (size_t)rc)) {
        snprintf(out, cap, "SPAN OUT OF RANGE");
        return rc;
    }
    render(out, cap, rc, req, b);
    /* a second call on a finished parse repeats the verdict */
    if (rc != H1_PARTIAL) {
        int rc2 = h1_parse_request(&p, b, len, req);
        if (rc2 != rc) snprintf(out, cap, "REPEAT CALL CHANGED %d -> %d", rc, rc2);
    }
    return rc;
}

/* Feed raw[0..len) through the given sequence of increasing lengths
 * (the last one is len).  Returns the final rc; out is its rendering.
 * Stops early on an error.  *bad is set if an intermediate call gave a
 * complete result before the final step when the head is longer. */
static int
parse_steps(const char *raw, size_t len, const size_t *steps, size_t nsteps,
            limits lim, char *out, size_t cap)
{
    h1_parser p;
    h1_request req;
    h1_header hdrs[MAXH];
    size_t i;
    int rc = H1_PARTIAL;
    char *b = NULL;

    (void)len; /* steps[nsteps - 1] == len */
    h1_parser_init(&p, lim.max_size, lim.max_headers);
    req.headers = hdrs;
    for (i = 0; i < nsteps; i++) {
        size_t k = steps[i];
        b = guard_at(raw, k, 1); /* moves the bytes: offsets must survive */
        rc = h1_parse_request(&p, b, k, &req);
        if (rc != H1_PARTIAL) break;
    }
    if (rc > 0 && !spans_ok(&req, (size_t)rc)) {
        snprintf(out, cap, "SPAN OUT OF RANGE");
        return rc;
    }
    render(out, cap, rc, &req, b);
    return rc;
}

/* Run whole / every two-way split / byte-by-byte and compare with the
 * whole-buffer rendering, which must equal want (if non-NULL). */
static void
run_request(const char *name, const char *raw, size_t len, limits lim,
            const char *want)
{
    static char whole[65536], got[65536];
    static size_t steps[300000];
    h1_request req;
    h1_header hdrs[MAXH];
    size_t k;
    int rc, ok;

    rc = parse_whole(raw, len, lim, whole, sizeof(whole), &req, hdrs);
    if (want) {
        ok = strcmp(whole, want) == 0;
        if (!ok) {
            n_fail++;
            fail(name, "whole", "\n   got:  %s\n   want: %s", whole, want);
        } else
            n_pass++;
    }

    /* every two-way split: prefix k, then everything */
    ok = 1;
    for (k = 1; k < len && ok; k++) {
        steps[0] = k;
        steps[1] = len;
        parse_steps(raw, len, steps, 2, lim, got, sizeof(got));
        if (strcmp(got, whole) != 0) {
            ok = 0;
            fail(name, "split", "at %zu:\n   got:  %s\n   whole: %s", k, got, whole);
        }
    }
    check_mode(ok, name, "split", "split result differs");

    /* byte by byte */
    for (k = 0; k < len; k++)
        steps[k] = k + 1;
    parse_steps(raw, len, steps, len, lim, got, sizeof(got));
    ok = strcmp(got, whole) == 0;
    if (!ok) fail(name, "bytewise", "\n   got:  %s\n   whole: %s", got, whole);
    check_mode(ok, name, "bytewise", "bytewise result differs");

    /* a prefix shorter than the head must be PARTIAL (or the same error) */
    if (rc > 0) {
        h1_parser p;
        h1_request r2;
        h1_header h2[MAXH];
        int rc2;
        char *b = guard_at(raw, (size_t)rc - 1, 1);
        h1_parser_init(&p, lim.max_size, lim.max_headers);
        r2.headers = h2;
        rc2 = h1_parse_request(&p, b, (size_t)rc - 1, &r2);
        check_mode(rc2 == H1_PARTIAL, name, "prefix", "head minus one byte not PARTIAL");
    }
}

/* ------------------------------------------------------------------------
 * Request tables
 */
#define R(s) .raw = s, .len = sizeof(s) - 1

#define F_KA H1_F_KEEP_ALIVE
#define F_HOST H1_F_HAS_HOST

struct vcase {
    const char *name;
    const char *raw;
    size_t len;
    const char *want; /* rendering; "rc=" is filled in from the head end */
    limits lim;
};

/* The want string is render()'s output without the leading "rc=N ". */
static const struct vcase valid[] = {
    {"simple GET", R("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: x\n"},
    {"browser GET (chrome)",
     R("GET /static/app.js?v=3 HTTP/1.1\r\n"
       "Host: www.example.com\r\n"
       "Connection: keep-alive\r\n"
       "sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\"\r\n"
       "sec-ch-ua-mobile: ?0\r\n"
       "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n"
       "sec-ch-ua-platform: \"Linux\"\r\n"
       "Accept: */*\r\n"
       "Sec-Fetch-Site: same-origin\r\n"
       "Sec-Fetch-Mode: no-cors\r\n"
       "Sec-Fetch-Dest: script\r\n"
       "Referer: https://www.example.com/\r\n"
       "Accept-Encoding: gzip, deflate, br, zstd\r\n"
       "Accept-Language: en-US,en;q=0.9\r\n"
       "Cookie: a=1; b=2; session=abcdef0123456789\r\n\r\n"),
     "m=GET(1) t=/static/app.js?v=3 p=4:/static/app.js q=v=3 v=1.1 f=0288 cl=0 h=14 hi=0|"
     "Host: www.example.com\nConnection: keep-alive\n"
     "sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\"\n"
     "sec-ch-ua-mobile: ?0\n"
     "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\n"
     "sec-ch-ua-platform: \"Linux\"\nAccept: */*\nSec-Fetch-Site: same-origin\n"
     "Sec-Fetch-Mode: no-cors\nSec-Fetch-Dest: script\nReferer: https://www.example.com/\n"
     "Accept-Encoding: gzip, deflate, br, zstd\nAccept-Language: en-US,en;q=0.9\n"
     "Cookie: a=1; b=2; session=abcdef0123456789\n"},
    {"POST with body", R("POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"),
     "m=POST(3) t=/api p=5:/api q= v=1.1 f=0282 cl=5 h=2 hi=0|Host: a\nContent-Length: 5\n"},
    {"query split at first ?", R("GET /test.cgi?foo=bar?baz HTTP/1.1\r\nHost: a\r\n\r\n"),
     "m=GET(1) t=/test.cgi?foo=bar?baz p=4:/test.cgi q=foo=bar?baz v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n"},
    {"empty query", R("GET /x? HTTP/1.1\r\nHost: a\r\n\r\n"),
     "m=GET(1) t=/x? p=4:/x q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n"},
    {"fragment dropped", R("GET /forums/1/topics/2375?page=1#posts-17408 HTTP/1.1\r\nHost: a\r\n\r\n"),
     "m=GET(1) t=/forums/1/topics/2375?page=1#posts-17408 p=4:/forums/1/topics/2375 q=page=1 v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n"},
    {"fragment no query", R("GET /a#b?c HTTP/1.1\r\nHost: a\r\n\r\n"),
     "m=GET(1) t=/a#b?c p=4:/a q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n"},
    {"quotes in target", R("GET /with_\"lovely\"_quotes?foo=\\\"bar\\\" HTTP/1.1\r\nHost: a\r\n\r\n"),
     "m=GET(1) t=/with_\"lovely\"_quotes?foo=\\\"bar\\\" p=4:/with_\"lovely\"_quotes q=foo=\\\"bar\\\" v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n"},
    {"absolute-form", R("GET http://example.com/p/q?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"),
     "m=GET(1) t=http://example.com/p/q?x=1 p=22:/p/q q=x=1 v=1.1 f=0a80 cl=0 h=1 hi=0|Host: example.com\n"},
    {"absolute-form no path", R("GET http://hypnotoad.org?hail=all HTTP/1.1\r\nHost: h\r\n\r\n"),
     "m=GET(1) t=http://hypnotoad.org?hail=all p=24: q=hail=all v=1.1 f=0a80 cl=0 h=1 hi=0|Host: h\n"},
    {"absolute-form https upper", R("GET HTTPS://Example.com:8443 HTTP/1.1\r\nHost: h\r\n\r\n"),
     "m=GET(1) t=HTTPS://Example.com:8443 p=28: q= v=1.1 f=0a80 cl=0 h=1 hi=0|Host: h\n"},
    {"absolute-form userinfo", R("GET http://a%12:b!&*$@hypnotoad.org:1234/toto HTTP/1.1\r\nHost: h\r\n\r\n"),
     "m=GET(1) t=http://a%12:b!&*$@hypnotoad.org:1234/toto p=40:/toto q= v=1.1 f=0a80 cl=0 h=1 hi=0|Host: h\n"},
    {"OPTIONS *", R("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
     "m=OPTIONS(7) t=* p=8:* q= v=1.1 f=0680 cl=0 h=1 hi=0|Host: a\n"},
    {"M-SEARCH *", R("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\r\n"),
     "m=M-SEARCH(0) t=* p=9:* q= v=1.1 f=0680 cl=0 h=2 hi=0|HOST: 239.255.255.250:1900\nMAN: \"ssdp:discover\"\n"},
    {"CONNECT authority", R("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
     "m=CONNECT(8) t=example.com:443 p=23: q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: example.com:443\n"},
    {"leading CRLF", R("\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
     "m=GET(1) t=/ p=6:/ q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: x\n"},
    {"HTTP/1.0 no Host", R("GET /test HTTP/1.0\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n"),
     "m=GET(1) t=/test p=4:/test q= v=1.0 f=0000 cl=0 h=2 hi=999|User-Agent: ApacheBench/2.3\nAccept: */*\n"},
    {"HTTP/1.0 keep-alive", R("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.0 f=0208 cl=0 h=1 hi=999|Connection: Keep-Alive\n"},
    {"HTTP/1.0 keep-alive+close", R("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.0 f=000c cl=0 h=1 hi=999|Connection: keep-alive, close\n"},
    {"Connection: close", R("PUT /url HTTP/1.1\r\nHost: a\r\nConnection: close\t\r\nContent-Length: 0\r\n\r\n"),
     "m=PUT(4) t=/url p=4:/url q= v=1.1 f=0086 cl=0 h=3 hi=0|Host: a\nConnection: close\nContent-Length: 0\n"},
    {"Connection list", R("PUT /url HTTP/1.1\r\nHost: a\r\nConnection: close, token, upgrade, token, keep-alive\r\n\r\n"),
     "m=PUT(4) t=/url p=4:/url q= v=1.1 f=009c cl=0 h=2 hi=0|Host: a\nConnection: close, token, upgrade, token, keep-alive\n"},
    {"Connection empty elements", R("GET / HTTP/1.1\r\nHost: a\r\nConnection: ,, close ,\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0084 cl=0 h=2 hi=0|Host: a\nConnection: ,, close ,\n"},
    {"HTTP/1.2 is 1.1", R("GET / HTTP/1.2\r\nHost: a\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n"},
    {"Host with port", R("GET / HTTP/1.1\r\nHost: a.b:8080\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: a.b:8080\n"},
    {"Host with empty port", R("GET / HTTP/1.1\r\nHost: a:\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: a:\n"},
    {"Host IPv6 literal with port", R("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: [::1]:80\n"},
    {"Host IPv6 literal", R("GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: [fe80::1%25eth0]\n"},
    {"absolute-form IPv6 literal", R("GET http://[::1]:80/x HTTP/1.1\r\nHost: h\r\n\r\n"),
     "m=GET(1) t=http://[::1]:80/x p=19:/x q= v=1.1 f=0a80 cl=0 h=1 hi=0|Host: h\n"},
    {"HTTP/1.9 is 1.1", R("GET / HTTP/1.9\r\nHost: a\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n"},
    {"TE chunked", R("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
     "m=POST(3) t=/u p=5:/u q= v=1.1 f=02c1 cl=0 h=2 hi=0|Host: a\nTransfer-Encoding: chunked\n"},
    {"TE Chunked case + OWS", R("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  ChunKed \t\r\n\r\n"),
     "m=POST(3) t=/u p=5:/u q= v=1.1 f=02c1 cl=0 h=2 hi=0|Host: a\nTransfer-Encoding: ChunKed\n"},
    {"TE empty elements", R("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked,\r\n\r\n"),
     "m=POST(3) t=/u p=5:/u q= v=1.1 f=02c1 cl=0 h=2 hi=0|Host: a\nTransfer-Encoding: , chunked,\n"},
    {"TE in HTTP/1.0", R("POST /u HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"),
     "m=POST(3) t=/u p=5:/u q= v=1.0 f=0049 cl=0 h=2 hi=999|Connection: keep-alive\nTransfer-Encoding: chunked\n"},
    {"Expect 100-continue", R("PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 10\r\n\r\n"),
     "m=PUT(4) t=/u p=4:/u q= v=1.1 f=02a2 cl=10 h=3 hi=0|Host: a\nExpect: 100-Continue\nContent-Length: 10\n"},
    {"Expect list", R("PUT /u HTTP/1.1\r\nHost: a\r\nExpect: , 100-continue ,\r\n\r\n"),
     "m=PUT(4) t=/u p=4:/u q= v=1.1 f=02a0 cl=0 h=2 hi=0|Host: a\nExpect: , 100-continue ,\n"},
    {"Expect in 1.0 ignored", R("PUT /u HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"),
     "m=PUT(4) t=/u p=4:/u q= v=1.0 f=0000 cl=0 h=1 hi=999|Expect: 100-continue\n"},
    {"Upgrade websocket", R("GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n"),
     "m=GET(1) t=/demo p=4:/demo q= v=1.1 f=0390 cl=0 h=3 hi=0|Host: example.com\nConnection: Upgrade\nUpgrade: WebSocket\n"},
    {"Content-Length leading zeros", R("PUT /url HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\nOhai: world\r\n\r\nabc"),
     "m=PUT(4) t=/url p=4:/url q= v=1.1 f=0282 cl=3 h=3 hi=0|Host: a\nContent-Length: 003\nOhai: world\n"},
    {"Content-Length OWS", R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\t42\t  \r\n\r\n"),
     "m=POST(3) t=/ p=5:/ q= v=1.1 f=0282 cl=42 h=2 hi=0|Host: a\nContent-Length: 42\n"},
    {"Content-Length 2^62", R("POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 4611686018427387904\r\n\r\n"),
     "m=POST(3) t=/ p=5:/ q= v=1.1 f=0282 cl=4611686018427387904 h=2 hi=0|Host: a\ncontent-length: 4611686018427387904\n"},
    {"obs-text and tabs in value", R("GET / HTTP/1.1\r\nHost: a\r\nTest: D\xc3\xbcsseldorf\r\nHeader2:\t Value2\r\nX: a\tb\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0280 cl=0 h=4 hi=0|Host: a\nTest: D\xc3\xbcsseldorf\nHeader2: Value2\nX: a\tb\n"},
    {"empty values", R("GET / HTTP/1.1\r\nHost:\r\nX-Empty:   \r\nY:\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0280 cl=0 h=3 hi=0|Host: \nX-Empty: \nY: \n"},
    {"odd token names", R("GET /dumbpack HTTP/1.1\r\nHost: a\r\naaaaaaaaaaaaa:++++++++++\r\n!#$%&'*+-.^_`|~09AZaz: x\r\n\r\n"),
     "m=GET(1) t=/dumbpack p=4:/dumbpack q= v=1.1 f=0280 cl=0 h=3 hi=0|Host: a\naaaaaaaaaaaaa: ++++++++++\n!#$%&'*+-.^_`|~09AZaz: x\n"},
    {"Host IPv6 + port", R("GET / HTTP/1.1\r\nhOsT: [::1]:8080\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0280 cl=0 h=1 hi=0|hOsT: [::1]:8080\n"},
    {"Host index", R("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nHost: 0.0.0.0=5000\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0280 cl=0 h=3 hi=2|A: 1\nB: 2\nHost: 0.0.0.0=5000\n"},
    {"methods HEAD", R("HEAD /url HTTP/1.1\r\nHost: a\r\n\r\n"),
     "m=HEAD(2) t=/url p=5:/url q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n"},
    {"methods DELETE", R("DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n"),
     "m=DELETE(5) t=/x p=7:/x q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n"},
    {"methods PATCH", R("PATCH /x HTTP/1.1\r\nHost: a\r\n\r\n"),
     "m=PATCH(6) t=/x p=6:/x q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n"},
    {"methods TRACE", R("TRACE /x HTTP/1.1\r\nHost: a\r\n\r\n"),
     "m=TRACE(9) t=/x p=6:/x q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n"},
    {"methods lowercase get", R("get /x HTTP/1.1\r\nHost: a\r\n\r\n"),
     "m=get(0) t=/x p=4:/x q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n"},
    {"methods REPORT", R("REPORT /test HTTP/1.1\r\nHost: a\r\n\r\n"),
     "m=REPORT(0) t=/test p=7:/test q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n"},
    {"method GETX", R("GETX / HTTP/1.1\r\nHost: a\r\n\r\n"),
     "m=GETX(0) t=/ p=5:/ q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n"},
    {"no space after colon", R("GET / HTTP/1.1\r\nHost:x\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: x\n"},
    {"no headers 1.0", R("GET / HTTP/1.0\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.0 f=0000 cl=0 h=0 hi=999|"},
    {"pipelined: first only", R("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"),
     "m=GET(1) t=/1 p=4:/1 q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n"},
    {"max headers exactly", R("GET / HTTP/1.1\r\nHost: a\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0280 cl=0 h=4 hi=0|Host: a\nB: 2\nC: 3\nD: 4\n",
     {8192, 4}},
    {"max size exactly", R("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0280 cl=0 h=1 hi=0|Host: a\n", {27, 8}},
    {"long value, 300 bytes", R("GET / HTTP/1.1\r\nHost: a\r\nX: "
       "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
       "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
       "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\r\n\r\n"),
     "m=GET(1) t=/ p=4:/ q= v=1.1 f=0280 cl=0 h=2 hi=0|Host: a\nX: "
     "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\n"},
};

struct icase {
    const char *name;
    const char *raw;
    size_t len;
    int status;
    limits lim;
};

static const struct icase invalid[] = {
    /* request smuggling */
    {"CL + TE", R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), 400},
    {"TE + CL", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), 400},
    {"CL + TE identity", R("PUT /url HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: identity\r\n\r\n"), 400},
    {"CL + empty TEs", R("POST / HTTP/1.1\r\nHost: foo\r\nContent-Length: 10\r\nTransfer-Encoding:\r\nTransfer-Encoding:\r\n\r\n"), 400},
    {"duplicate CL equal", R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"), 400},
    {"duplicate CL differ", R("PUT /url HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n"), 400},
    {"Expect unknown", R("POST / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\nContent-Length: 1\r\n\r\n"), 417},
    {"Expect list with unknown", R("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, foo\r\n\r\n"), 417},
    {"Expect parameter", R("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue;a=b\r\n\r\n"), 417},
    {"duplicate Content-Type", R("POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\ncontent-type: application/json\r\n\r\n"), 400},
    {"duplicate Content-Type equal", R("POST / HTTP/1.1\r\nHost: a\r\nContent-Type: a/b\r\nCONTENT-TYPE: a/b\r\n\r\n"), 400},
    {"CL plus sign", R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"), 400},
    {"CL minus sign", R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n"), 400},
    {"CL hex", R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n"), 400},
    {"CL inner space", R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4 2\r\n\r\n"), 400},
    {"CL list", R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"), 400},
    {"CL list no space", R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,5\r\n\r\n"), 400},
    {"CL empty", R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"), 400},
    {"CL overflow", R("PUT /url HTTP/1.1\r\nContent-Length: 1000000000000000000000\r\n"), 413},
    {"CL 2^62+1", R("PUT /url HTTP/1.1\r\nContent-Length: 4611686018427387905\r\n"), 413},
    {"CL space before colon", R("PUT /url HTTP/1.1\r\nHost: a\r\nContent-Length : 4\r\n\r\nabcd"), 400},
    {"CL CR in name", R("PUT /url HTTP/1.1\r\nContent\rLength: 003\r\n\r\nabc"), 400},
    {"TE chunked, gzip", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), 400},
    {"TE gzip, chunked", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501},
    {"TE deflate, chunked", R("POST / HTTP/1.1\r\nAccept: */*\r\nHost: a\r\nTransfer-Encoding: deflate, chunked\r\n\r\n5\r\nWorld\r\n0\r\n\r\n"), 501},
    {"TE deflate / chunked lines", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n"), 501},
    {"TE chunked / deflate lines", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: deflate\r\n\r\n"), 400},
    {"TE xchunked", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"), 400},
    {"TE xchunked, chunked", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked, chunked\r\n\r\n"), 501},
    {"TE chunkedchunked", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedchunked\r\n\r\n"), 400},
    {"TE chunked VT", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0b\r\n\r\n"), 400},
    {"TE chunked junk", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked x\r\n\r\n"), 400},
    {"TE space before colon", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"), 400},
    {"TE chunked twice", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), 400},
    {"TE chunked twice lines", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), 400},
    {"TE quoted", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"), 400},
    {"TE params", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n"), 400},
    {"TE identity", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"), 400},
    {"TE pigeons", R("PUT /url HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: pigeons\r\n\r\n"), 400},
    {"TE empty", R("PUT /url HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n"), 400},
    {"TE obs-fold", R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n"), 400},
    /* line endings and folding */
    {"obs-fold", R("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"), 400},
    {"obs-fold tab", R("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n"), 400},
    {"space before first header", R("GET / HTTP/1.1\r\n Host: foo\r\n\r\n"), 400},
    {"space before first header partial", R("GET / HTTP/1.1\r\n Host: foo"), 400},
    {"bare LF request line", R("GET / HTTP/1.1\nHost: a\r\n\r\n"), 400},
    {"bare LF header", R("GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n"), 400},
    {"bare LF end", R("GET / HTTP/1.1\r\nHost: a\r\n\n"), 400},
    {"bare LF empty value", R("POST / HTTP/1.1\r\nHost: localhost:5000\r\nx:\nTransfer-Encoding: chunked\r\n\r\n"), 400},
    {"bare LF folding", R("GET / HTTP/1.1\r\nLine1:   abc\n\tdef\n ghi\n\r\n"), 400},
    {"bare LF all", R("POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n"), 400},
    {"bare CR in value", R("GET / HTTP/1.1\r\nFoo: 1\rBar: 2\r\n\r\n"), 400},
    {"bare CR empty value", R("POST / HTTP/1.1\r\nHost: a\r\nx:\rTransfer-Encoding: chunked\r\n\r\n"), 400},
    {"bare CR after version", R("GET / HTTP/1.1\rLine: 1\r\n"), 400},
    {"bare CR at end", R("GET / HTTP/1.1\r\nHost: a\r\n\rZGET /evil: HTTP/1.1\r\n"), 400},
    {"CR CR LF", R("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"), 400},
    {"keep CR alive", R("PUT /url HTTP/1.1\r\nConnection: keep\ralive\r\n\r\n"), 400},
    {"CR ESC in name", R("GET / HTTP/1.1\r\nHost: w\r\nConnection\r\x1b" "5\xc3\x95" "eep-Alive\r\n\r\n"), 400},
    {"leading bare LF", R("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"leading bare CR", R("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"two leading CRLF", R("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"leading CRLF then LF", R("\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    /* field syntax */
    {"NUL in value", R("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"), 400},
    {"FF value", R("GET /url HTTP/1.1\r\nHeader1: \x0c\r\n\r\n\r\n"), 400},
    {"FF in value", R("GET /url HTTP/1.1\r\nHeader1: hello\x0cworld\r\n\r\n"), 400},
    {"DEL in value", R("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n"), 400},
    {"ESC in value", R("GET / HTTP/1.1\r\nHost: a\r\nX: a\x1b[0m\r\n\r\n"), 400},
    {"NUL in name", R("GET / HTTP/1.1\r\nHost: a\r\nX\0: a\r\n\r\n"), 400},
    {"name with @", R("GET / HTTP/1.1\r\nFo@: Failure\r\n\r\n"), 400},
    {"name with ctl", R("GET / HTTP/1.1\r\nFoo\x01\test: Bar\r\n\r\n"), 400},
    {"empty name", R("GET / HTTP/1.1\r\n: Bar\r\n\r\n"), 400},
    {"no colon", R("GET / HTTP/1.1\r\nname\r\n : value\r\n\r\n"), 400},
    {"name with 8bit", R("GET / HTTP/1.1\r\nH\xc3\xa9: a\r\n\r\n"), 400},
    {"header then space after value", R("POST /hello HTTP/1.1\r\nHost: localhost\r\nFoo: bar\r\n Content-Length: 38\r\n\r\n"), 400},
    /* Host */
    {"missing Host", R("GET / HTTP/1.1\r\n\r\n"), 400},
    {"missing Host 1.2", R("GET / HTTP/1.2\r\nX: y\r\n\r\n"), 400},
    {"two Hosts", R("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), 400},
    {"Host with space", R("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400},
    {"Host with slash", R("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400},
    {"Host with at", R("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), 400},
    {"Host with 8bit", R("GET / HTTP/1.1\r\nHost: \xc3\xa9.com\r\n\r\n"), 400},
    /* Host = uri-host [ ":" port ] (RFC 9110 7.2): the order of the
     * characters too */
    {"Host port not digits", R("GET / HTTP/1.1\r\nHost: a:b\r\n\r\n"), 400},
    {"Host two ports", R("GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n"), 400},
    {"Host IPv6 without brackets", R("GET / HTTP/1.1\r\nHost: ::1\r\n\r\n"), 400},
    {"Host unclosed bracket", R("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), 400},
    {"Host empty brackets", R("GET / HTTP/1.1\r\nHost: []:80\r\n\r\n"), 400},
    {"Host bracket in name", R("GET / HTTP/1.1\r\nHost: a]b\r\n\r\n"), 400},
    {"Host text after literal", R("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n"), 400},
    {"Host nested bracket", R("GET / HTTP/1.1\r\nHost: [[::1]]\r\n\r\n"), 400},
    {"Host port after port", R("GET / HTTP/1.1\r\nHost: [::1]:80:90\r\n\r\n"), 400},
    {"Host literal not IPv6", R("GET / HTTP/1.1\r\nHost: [zz]:80\r\n\r\n"), 400},
    {"Host port past 65535", R("GET / HTTP/1.1\r\nHost: h:70000\r\n\r\n"), 400},
    {"Host port with no host", R("GET / HTTP/1.1\r\nHost: :80\r\n\r\n"), 400},
    {"Host bad pct-encoding", R("GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n"), 400},
    {"absolute-form literal not IPv6", R("GET http://[1.2.3.4]/ HTTP/1.1\r\nHost: h\r\n\r\n"),
     400},
    {"absolute-form port not digits", R("GET http://a:b/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"absolute-form unclosed bracket", R("GET http://[::1/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"absolute-form userinfo, bad port", R("GET http://u:p@a:b/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    /* an http(s) URI with an empty host is invalid (RFC 9110 4.2.1) */
    {"absolute-form empty host, port", R("GET http://:80/x HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"absolute-form empty host, userinfo", R("GET http://@/x HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"absolute-form empty host after userinfo",
     R("GET https://u:p@:8080/x HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"absolute-form empty host, query", R("GET http://?q HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    /* request line */
    {"HTTP/2.0", R("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505},
    {"HTTP/0.9", R("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), 505},
    {"HTTP/3.0", R("GET / HTTP/3.0\r\nHost: a\r\n\r\n"), 505},
    {"HTTP/5.6", R("GET / HTTP/5.6\r\nHost: a\r\n\r\n"), 505},
    /* 505 only for a version of the grammar (HTTP/DIGIT.DIGIT) */
    {"HTTP/01.1", R("GET / HTTP/01.1\r\nHost: a\r\n\r\n"), 400},
    {"HTTP/2", R("GET / HTTP/2\r\nHost: a\r\n\r\n"), 400},
    {"HTTP/2.x", R("GET / HTTP/2.x\r\nHost: a\r\n\r\n"), 400},
    {"HTTP/1.10", R("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), 400},
    {"HTTP/11.1", R("GET / HTTP/11.1\r\nHost: a\r\n\r\n"), 400},
    {"HTTP/1", R("GET / HTTP/1\r\nHost: a\r\n\r\n"), 400},
    {"HTTP/a.1", R("GET / HTTP/a.1\r\nHost: a\r\n\r\n"), 400},
    {"HTTP/1.x", R("GET / HTTP/1.x\r\nHost: a\r\n\r\n"), 400},
    {"lowercase http", R("GET / http/1.1\r\nHost: a\r\n\r\n"), 400},
    {"IHTTP", R("GET /music/sweet/music IHTTP/1.0\r\nHost: example.com\r\n\r\n"), 400},
    {"ICE", R("GET /music/sweet/music ICE/1.0\r\nHost: example.com\r\n\r\n"), 400},
    {"RTSP", R("PUT /music/sweet/music RTSP/1.0\r\nHost: example.com\r\n\r\n"), 400},
    {"HTTP/0.9 request", R("GET /\r\n\r\n"), 400},
    {"trailing space after version", R("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400},
    {"double space after method", R("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"double space after target", R("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"tab separator", R("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"leading space", R(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"empty method", R(" / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"method with @", R("GE@T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"target with space", R("GET /foo bar/ HTTP/1.1\r\n\r\n"), 400},
    {"target with 8bit", R("GET /\xce\xb4\xc2\xb6/pope?q=1#narf HTTP/1.1\r\nHost: github.com\r\n\r\n"), 400},
    {"target with DEL", R("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"target with NUL", R("GET /a\0 HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"target with tab", R("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"target relative", R("GET foo HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"target authority non-CONNECT", R("GET example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"target ftp", R("GET ftp://x/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"target empty authority", R("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"target http: only", R("GET http: HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"asterisk with GET", R("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"asterisk plus", R("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"absolute-form authority space-less junk", R("GET http://a<b>/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"absolute-form authority quote", R("GET http://a\"b/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"absolute-form authority backslash", R("GET http://a\\b@c/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"absolute-form authority brace", R("GET https://a{b}:1?q HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"CONNECT origin-form", R("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"CONNECT no port", R("CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"CONNECT empty port", R("CONNECT example.com: HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"CONNECT userinfo", R("CONNECT u@example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"Connection invalid", R("GET / HTTP/1.1\r\nHost: a\r\nConnection: close;x\r\n\r\n"), 400},
    /* limits */
    {"too many headers", R("GET / HTTP/1.1\r\nHost: a\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n"), 431, {8192, 4}},
    {"too many headers partial", R("GET / HTTP/1.1\r\nHost: a\r\nB: 2\r\nC: 3\r\nD: 4\r\nE"), 431, {8192, 4}},
    {"head one byte too big", R("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 431, {26, 8}},
    {"head too big partial", R("GET / HTTP/1.1\r\nHost: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), 431, {32, 8}},
    {"request line too long", R("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n"), 414, {32, 8}},
    {"request line too long at version", R("GET /aaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n"), 414, {30, 8}},
    {"method too long", R("GETGETGETGETGETGETGETGETGETGETGETGETGETGET / HTTP/1.1\r\n\r\n"), 501, {16, 8}},
    {"invalid byte past the limit is not seen", R("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\x01 HTTP/1.1\r\n\r\n"), 414, {20, 8}},
};

/* Render the expected string for a valid case: "rc=N " + want. */
static void
expect_string(char *out, size_t cap, const struct vcase *c)
{
    const char *e = NULL;
    size_t i, rc;
    for (i = 0; i + 4 <= c->len; i++)
        if (memcmp(c->raw + i, "\r\n\r\n", 4) == 0) {
            e = c->raw + i;
            break;
        }
    rc = e ? (size_t)(e - c->raw) + 4 : 0;
    snprintf(out, cap, "rc=%zu %s", rc, c->want);
}

static limits
lim_of(limits l)
{
    if (!l.max_size) l.max_size = 8192;
    if (!l.max_headers) l.max_headers = 64;
    return l;
}

static void
run_tables(void)
{
    static char want[65536];
    size_t i;

    for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        expect_string(want, sizeof(want), &valid[i]);
        run_request(valid[i].name, valid[i].raw, valid[i].len,
                    lim_of(valid[i].lim), want);
    }
    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        snprintf(want, sizeof(want), "ERROR %d", invalid[i].status);
        run_request(invalid[i].name, invalid[i].raw, invalid[i].len,
                    lim_of(invalid[i].lim), want);
    }
}

/* ------------------------------------------------------------------------
 * Generated requests: limits, big heads, pipelining
 */
static size_t
build(char *out, size_t cap, const char *line, int nhdr, size_t vlen)
{
    size_t n = 0;
    int i;
    n += (size_t)snprintf(out + n, cap - n, "%s\r\nHost: example.com\r\n", line);
    for (i = 0; i < nhdr; i++) {
        n += (size_t)snprintf(out + n, cap - n, "X-Header-%d: ", i);
        memset(out + n, 'v', vlen);
        n += vlen;
        memcpy(out + n, "\r\n", 2);
        n += 2;
    }
    memcpy(out + n, "\r\n", 2);
    return n + 2;
}

static int
parse_once(const char *raw, size_t len, limits lim, h1_request *req,
           h1_header *hdrs)
{
    static char tmp[65536];
    return parse_whole(raw, len, lim, tmp, sizeof(tmp), req, hdrs);
}

static void
run_generated(void)
{
    static char buf[200000], line[70000];
    h1_request req;
    h1_header hdrs[MAXH];
    size_t n;
    int rc;
    limits lim;

    /* 100 headers of 50 bytes, limit 100 headers: ok; 99: 431 */
    n = build(buf, sizeof(buf), "GET / HTTP/1.1", 99, 50);
    lim.max_size = 65536;
    lim.max_headers = 100;
    rc = parse_once(buf, n, lim, &req, hdrs);
    check_mode(rc == (int)n && req.num_headers == 100, "gen 100 headers", "whole", "not parsed");
    run_request("gen 100 headers", buf, n, lim, NULL);
    lim.max_headers = 99;
    rc = parse_once(buf, n, lim, &req, hdrs);
    check_mode(rc == H1_ERROR && req.error_status == 431, "gen 101 headers", "whole", "not 431");

    /* exact size limit */
    lim.max_headers = 100;
    lim.max_size = (uint32_t)n;
    rc = parse_once(buf, n, lim, &req, hdrs);
    check_mode(rc == (int)n, "gen exact size", "whole", "not accepted at exact size");
    lim.max_size = (uint32_t)n - 1;
    rc = parse_once(buf, n, lim, &req, hdrs);
    check_mode(rc == H1_ERROR && req.error_status == 431, "gen size-1", "whole", "not 431");

    /* one 16 KB header value, trickled one byte at a time */
    n = build(buf, sizeof(buf), "GET / HTTP/1.1", 1, 16384);
    lim.max_size = 32768;
    run_request("gen 16KB value", buf, n, lim, NULL);
    lim.max_size = 16000;
    rc = parse_once(buf, n, lim, &req, hdrs);
    check_mode(rc == H1_ERROR && req.error_status == 431, "gen 16KB value over", "whole", "not 431");

    /* long target: 8000 bytes, ok under 16 KB, 414 under 4 KB */
    memcpy(line, "GET /", 5);
    memset(line + 5, 'a', 8000);
    memcpy(line + 8005, "?q=1 HTTP/1.1", 14);
    n = build(buf, sizeof(buf), line, 3, 10);
    lim.max_size = 16384;
    rc = parse_once(buf, n, lim, &req, hdrs);
    check_mode(rc == (int)n && req.path.len == 8001 && req.query.len == 3,
          "gen long target", "whole", "not parsed");
    run_request("gen long target", buf, n, lim, NULL);
    lim.max_size = 4096;
    rc = parse_once(buf, n, lim, &req, hdrs);
    check_mode(rc == H1_ERROR && req.error_status == 414, "gen long target 414", "whole", "not 414");

    /* value lengths 0..100 around every vector width, with a bad byte at
     * every position of the value */
    {
        size_t vl, bad;
        for (vl = 0; vl <= 100; vl++) {
            n = build(buf, sizeof(buf), "GET /x HTTP/1.1", 1, vl);
            lim.max_size = 8192;
            lim.max_headers = 8;
            rc = parse_once(buf, n, lim, &req, hdrs);
            check_mode(rc == (int)n && req.headers[1].value.len == vl, "gen value len",
                  "whole", "value length");
            for (bad = 0; bad < vl; bad++) {
                static const char badc[] = {0x00, 0x01, 0x0a, 0x0d, 0x1f, 0x7f};
                char *v = buf + n - 4 - vl + bad;
                char keep = *v;
                *v = badc[bad % sizeof(badc)];
                rc = parse_once(buf, n, lim, &req, hdrs);
                check_mode(rc == H1_ERROR && req.error_status == 400, "gen bad value byte",
                      "whole", "not rejected");
                *v = '\t'; /* HTAB is fine */
                rc = parse_once(buf, n, lim, &req, hdrs);
                check_mode(rc == (int)n, "gen tab value byte", "whole", "tab rejected");
                *v = (char)0xff; /* obs-text is fine */
                rc = parse_once(buf, n, lim, &req, hdrs);
                check_mode(rc == (int)n, "gen obs-text value byte", "whole", "obs-text rejected");
                *v = keep;
            }
        }
    }

    /* target lengths 1..100 with a bad byte at every position */
    {
        size_t tl, bad;
        for (tl = 1; tl <= 100; tl++) {
            memcpy(line, "GET /", 5);
            memset(line + 5, 'p', tl - 1);
            memcpy(line + 4 + tl, " HTTP/1.1", 10);
            n = build(buf, sizeof(buf), line, 0, 0);
            lim.max_size = 8192;
            rc = parse_once(buf, n, lim, &req, hdrs);
            check_mode(rc == (int)n && req.target.len == tl, "gen target len", "whole", "target");
            for (bad = 1; bad < tl; bad++) {
                static const char badc[] = {0x00, 0x09, 0x7f, (char)0x80, (char)0xff, 0x1f};
                char keep = buf[4 + bad];
                buf[4 + bad] = badc[bad % sizeof(badc)];
                rc = parse_once(buf, n, lim, &req, hdrs);
                check_mode(rc == H1_ERROR && req.error_status == 400, "gen bad target byte",
                      "whole", "not rejected");
                buf[4 + bad] = keep;
            }
        }
    }

    /* pipelined: 50 requests back to back, parsed one after another */
    {
        size_t off = 0, total = 0;
        int i, ok = 1;
        for (i = 0; i < 50; i++)
            total += (size_t)snprintf(buf + total, sizeof(buf) - total,
                                      "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n%s", i,
                                      i % 7 == 3 ? "\r\n" : "");
        {
            char *b = guard_at(buf, total, 1);
            for (i = 0; i < 50 && ok; i++) {
                h1_parser p;
                char want[32];
                h1_parser_init(&p, 8192, 64);
                req.headers = hdrs;
                rc = h1_parse_request(&p, b + off, total - off, &req);
                snprintf(want, sizeof(want), "/%d", i);
                if (rc <= 0 || req.path.len != strlen(want) ||
                    memcmp(b + off + req.path.off, want, req.path.len) != 0)
                    ok = 0;
                off += rc > 0 ? (size_t)rc : 0;
            }
        }
        check_mode(ok && off == total, "gen pipelined", "whole", "pipeline");
    }
}

/* ------------------------------------------------------------------------
 * Chunked decoder
 */
struct ccase {
    const char *name;
    const char *raw;
    size_t len;
    int rc;              /* expected final verdict */
    const char *body;    /* decoded body when rc == DONE */
    size_t consumed;     /* 0: the whole input */
    uint64_t max_body;   /* 0: 1 MB */
};

#define CR(s) .raw = s, .len = sizeof(s) - 1

static const struct ccase chunked_cases[] = {
    {"simple", CR("5\r\nhello\r\n0\r\n\r\n"), H1_CHUNK_DONE, "hello"},
    {"two chunks", CR("5\r\nhello\r\n6\r\n world\r\n000\r\n\r\n"), H1_CHUNK_DONE, "hello world"},
    {"hex cases", CR("a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n"), H1_CHUNK_DONE,
     "0123456789abcdefghij"},
    {"leading zeros", CR("0005\r\nhello\r\n0\r\n\r\n"), H1_CHUNK_DONE, "hello"},
    {"empty body", CR("0\r\n\r\n"), H1_CHUNK_DONE, ""},
    {"extensions", CR("5;ilovew3;somuchlove=aretheseparametersfor;another=withvalue\r\nhello\r\n"
                      "6;blahblah;blah\r\n world\r\n0;last=\"yes\"\r\n\r\n"), H1_CHUNK_DONE, "hello world"},
    {"quoted extension", CR("5;ilovew3=\"I \\\"love\\\"; \\\\extensions\\\\\";somuchlove=\"aretheseparametersfor\";blah;foo=bar\r\n"
                            "hello\r\n0\r\n\r\n"), H1_CHUNK_DONE, "hello"},
    {"quoted obs-text", CR("1;a=\"\xff\t \"\r\nx\r\n0\r\n\r\n"), H1_CHUNK_DONE, "x"},
    /* BWS around ';' and '=' (RFC 9112 7.1.1, RFC 9110 5.6.3) */
    {"ext BWS before ;", CR("5 ;name=val\r\nhello\r\n0\t;last\r\n\r\n"), H1_CHUNK_DONE, "hello"},
    {"ext BWS after ;", CR("5; name\r\nhello\r\n0;\t \tx=y\r\n\r\n"), H1_CHUNK_DONE, "hello"},
    {"ext BWS around =", CR("5; name = \"v\"\r\nhello\r\n0;a\t=\ttok\r\n\r\n"), H1_CHUNK_DONE, "hello"},
    {"ext BWS everywhere", CR("3 \t ; a = b ; c ;d\t=\t\"x y\" ;e\r\nabc\r\n0\r\n\r\n"), H1_CHUNK_DONE, "abc"},
    {"trailers", CR("5\r\nhello\r\n6\r\n world\r\n0\r\nVary: *\r\nContent-Type: text/plain\r\n\r\n"),
     H1_CHUNK_DONE, "hello world"},
    {"empty trailer value", CR("0\r\nX:\r\n\r\n"), H1_CHUNK_DONE, ""},
    {"data with CRLF inside", CR("4\r\n\r\n\r\n\r\n0\r\n\r\n"), H1_CHUNK_DONE, "\r\n\r\n"},
    {"trailing pipelined data", CR("3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n"), H1_CHUNK_DONE, "abc", 13},
    {"max body exact", CR("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"), H1_CHUNK_DONE, "helloworld", 0, 10},
    {"15 hex digits, zero data", CR("0\r\n\r\n"), H1_CHUNK_DONE, ""},
    /* errors */
    {"bad hex", CR("x\r\nhello\r\n"), H1_CHUNK_ERROR},
    {"empty size", CR("\r\nhello\r\n"), H1_CHUNK_ERROR},
    {"empty size after chunk", CR("3\r\nfoo\r\n\r\n"), H1_CHUNK_ERROR},
    {"space after size", CR("a \r\n0123456789\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"space then LF", CR("3 \n  \r\nfoo\r\n\r\n"), H1_CHUNK_ERROR},
    {"size garbage", CR("2 erfrferferf\r\naa\r\n0 rrrr\r\n\r\n"), H1_CHUNK_ERROR},
    {"sign", CR("+5\r\nhello\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"0x prefix", CR("0x5\r\nhello\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"bare LF after size", CR("5\nhello\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"CR CR after size", CR("5\r\r;ABCD\r\n34\r\nE\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"bare LF after data", CR("5\r\nhello\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"data longer than size", CR("5\r\nhelloX\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"data then 0", CR("5\r\nABCDE0\r\n\r\n"), H1_CHUNK_ERROR},
    {"empty extension", CR("2;\r\naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext BWS then CRLF after size", CR("2 \t\r\naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext BWS then CRLF after name", CR("2;a \r\naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext BWS then CRLF after value", CR("2;a=b\t\r\naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext BWS then CRLF after quote", CR("2;a=\"b\" \r\naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext BWS then CRLF after ;", CR("2; \r\naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext BWS then CRLF after =", CR("2;a= \r\naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext BWS inside size", CR("1 0;a\r\n0123456789abcdef\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext BWS before size", CR("\t2;a\r\naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext BWS inside name", CR("2;a b\r\naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext BWS inside value", CR("2;a=b c\r\naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext BWS then junk", CR("2 x\r\naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext BWS double =", CR("2;a = = b\r\naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext BWS bare LF", CR("2 ;a \naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext BWS bare CR", CR("2 ;a=b \raa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext VT not BWS", CR("2\x0b;a\r\naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext FF not BWS", CR("2;\x0c" "a\r\naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext BWS too big", CR("b ;a\r\nhello world\r\n0\r\n\r\n"), H1_CHUNK_TOO_BIG, NULL, 0, 10},
    {"ext empty value", CR("2;a=\r\naa\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext unterminated quote", CR("5;ilovew3=\"abc\";somuchlove=\"def; ghi\r\nhello\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext junk after quote", CR("5;a=\"b\"c\r\nhello\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext NUL", CR("5;a\0\r\nhello\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"ext bare LF in quote", CR("5;a=\"\n\"\r\nhello\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"16 significant digits", CR("1000000000000000\r\n"), H1_CHUNK_TOO_BIG},
    {"huge size", CR("FFFFFFFFFFFFFFFFFFFFFFFF\r\n"), H1_CHUNK_TOO_BIG},
    {"65 digits", CR("00000000000000000000000000000000000000000000000000000000000000001\r\nx\r\n0\r\n\r\n"), H1_CHUNK_ERROR},
    {"15 digits over max", CR("FFFFFFFFFFFFFFF\r\n"), H1_CHUNK_TOO_BIG},
    {"too big", CR("b\r\nhello world\r\n0\r\n\r\n"), H1_CHUNK_TOO_BIG, NULL, 0, 10},
    {"too big cumulative", CR("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), H1_CHUNK_TOO_BIG, NULL, 0, 10},
    {"trailer obs-fold", CR("0\r\nX: a\r\n b\r\n\r\n"), H1_CHUNK_ERROR},
    {"trailer bare LF", CR("0\r\nX: a\n\r\n"), H1_CHUNK_ERROR},
    {"trailer no colon", CR("0\r\nX\r\n\r\n"), H1_CHUNK_ERROR},
    {"trailer space name", CR("0\r\nX : a\r\n\r\n"), H1_CHUNK_ERROR},
    {"trailer NUL", CR("0\r\nX: a\0\r\n\r\n"), H1_CHUNK_ERROR},
    {"final bare LF", CR("0\r\n\n"), H1_CHUNK_ERROR},
    {"final CR junk", CR("0\r\n\rx"), H1_CHUNK_ERROR},
    {"last chunk bare LF", CR("0\n\r\n"), H1_CHUNK_ERROR},
    /* incomplete */
    {"partial in data", CR("5\r\nhel"), H1_CHUNK_PARTIAL},
    {"partial in trailer", CR("0\r\nX: y"), H1_CHUNK_PARTIAL},
    {"partial no final CRLF", CR("5;ilovew3;somuchlove=aretheseparametersfor;another=withvalue\r\nhello\r\n0\r\n"), H1_CHUNK_PARTIAL},
};

/* Feed a chunked body through the given steps, moving the bytes so that the
 * current input always ends at the guard page.  Returns the verdict; fills
 * out/outlen with the decoded body and *consumed with the final *src. */
static int
chunk_steps(const char *raw, size_t len, const size_t *steps, size_t nsteps,
            uint64_t max_body, char *out, size_t *outlen, size_t *consumed,
            int *inv_ok)
{
    static char work[65536];
    h1_chunked c;
    size_t src = 0, dst = 0, i, have = 0;
    int rc = H1_CHUNK_PARTIAL;
    char *b;

    (void)len; /* steps[nsteps - 1] == len */
    *inv_ok = 1;
    h1_chunked_init(&c, max_body);
    for (i = 0; i < nsteps; i++) {
        size_t k = steps[i];
        memcpy(work + have, raw + have, k - have); /* new raw bytes */
        have = k;
        b = guard_at(work, k, 1);
        rc = h1_chunked_decode(&c, b, k, &src, &dst);
        memcpy(work, b, k);
        if (dst > src || src > k) *inv_ok = 0;
        if (rc != H1_CHUNK_PARTIAL) break;
    }
    memcpy(out, work, dst);
    *outlen = dst;
    *consumed = src;
    if (c.total != dst) *inv_ok = 0;
    return rc;
}

static void
run_chunked(void)
{
    static size_t steps[70000];
    static char out[65536];
    size_t i, k;

    for (i = 0; i < sizeof(chunked_cases) / sizeof(chunked_cases[0]); i++) {
        const struct ccase *cc = &chunked_cases[i];
        uint64_t mb = cc->max_body ? cc->max_body : (1u << 20);
        size_t olen, cons, want_cons = cc->consumed ? cc->consumed : cc->len;
        int rc, inv, ok;
        size_t mode;

        /* mode 0: whole; 1..len-1: two-way split; len: byte by byte */
        for (mode = 0; mode <= cc->len; mode++) {
            size_t n = 0;
            const char *mname = mode == 0 ? "whole" : mode == cc->len ? "bytewise" : "split";
            if (mode == 0)
                steps[n++] = cc->len;
            else if (mode < cc->len) {
                steps[n++] = mode;
                steps[n++] = cc->len;
            } else
                for (k = 1; k <= cc->len; k++)
                    steps[n++] = k;
            rc = chunk_steps(cc->raw, cc->len, steps, n, mb, out, &olen, &cons, &inv);
            ok = rc == cc->rc && inv;
            if (ok && rc == H1_CHUNK_DONE)
                ok = olen == strlen(cc->body) && memcmp(out, cc->body, olen) == 0 &&
                     cons == want_cons;
            if (!ok) {
                fail(cc->name, mname, "at %zu: rc=%d (want %d) body=%.*s consumed=%zu inv=%d",
                     mode, rc, cc->rc, (int)olen, out, cons, inv);
                n_fail++;
                break;
            }
        }
        if (mode > cc->len) n_pass++;
    }

    /* many chunks of varying sizes, bytewise and split */
    {
        static char raw[60000], body[30000];
        size_t n = 0, bl = 0, olen, cons;
        int j, rc, inv, ok = 1;
        for (j = 0; j < 200; j++) {
            int sz = (j * 37) % 101;
            if (sz == 0) sz = 1;
            n += (size_t)snprintf(raw + n, sizeof(raw) - n, j % 3 ? "%x\r\n" : "%X;n=v\r\n", sz);
            for (k = 0; k < (size_t)sz; k++)
                raw[n++] = body[bl++] = (char)('a' + (j + (int)k) % 26);
            memcpy(raw + n, "\r\n", 2);
            n += 2;
        }
        memcpy(raw + n, "0\r\nT: v\r\n\r\n", 11);
        n += 11;
        for (k = 0; k < n; k++)
            steps[k] = k + 1;
        rc = chunk_steps(raw, n, steps, n, 1 << 20, out, &olen, &cons, &inv);
        ok = rc == H1_CHUNK_DONE && inv && olen == bl && memcmp(out, body, bl) == 0 && cons == n;
        check_mode(ok, "many chunks", "bytewise", "mismatch");
        for (k = 1; k < n && ok; k += 7) {
            steps[0] = k;
            steps[1] = n;
            rc = chunk_steps(raw, n, steps, 2, 1 << 20, out, &olen, &cons, &inv);
            ok = rc == H1_CHUNK_DONE && inv && olen == bl && memcmp(out, body, bl) == 0;
        }
        check_mode(ok, "many chunks", "split", "mismatch");
    }

    /* size line and trailer bounds */
    {
        static char raw[40000];
        size_t n, olen, cons;
        int rc, inv;
        n = (size_t)snprintf(raw, sizeof(raw), "1;e=");
        memset(raw + n, 'x', 5000);
        n += 5000;
        memcpy(raw + n, "\r\nx\r\n0\r\n\r\n", 10);
        n += 10;
        steps[0] = n;
        rc = chunk_steps(raw, n, steps, 1, 1 << 20, out, &olen, &cons, &inv);
        check_mode(rc == H1_CHUNK_ERROR, "size line over 4096", "whole", "not rejected");

        n = (size_t)snprintf(raw, sizeof(raw), "0\r\n");
        for (k = 0; k < 400; k++)
            n += (size_t)snprintf(raw + n, sizeof(raw) - n, "X-Trailer-%zu: %050zu\r\n", k, k);
        memcpy(raw + n, "\r\n", 2);
        n += 2;
        steps[0] = n;
        rc = chunk_steps(raw, n, steps, 1, 1 << 20, out, &olen, &cons, &inv);
        check_mode(rc == H1_CHUNK_ERROR, "trailers over 16 KB", "whole", "not rejected");
    }
}

/* ------------------------------------------------------------------------
 * h1_host_valid: a forwarded host, checked as the parser checks Host
 */

/* The parser's Host check (a fast path for name ":" port, word-wide) agrees
 * with h1_host_valid on v, with and without spaces around it. */
static void
host_parse_agrees(const char *v, int good)
{
    static const char *const fmt[] = {"GET / HTTP/1.1\r\nHost: %s\r\n\r\n",
                                      "GET / HTTP/1.1\r\nHost:%s\r\n\r\n",
                                      "GET / HTTP/1.1\r\nHost:\t %s \r\n\r\n"};
    static char raw[512];
    h1_request req;
    h1_header hdrs[MAXH];
    limits lim = {8192, 100};
    size_t k;
    for (k = 0; k < sizeof(fmt) / sizeof(*fmt); k++) {
        int n = snprintf(raw, sizeof(raw), fmt[k], v);
        int rc = parse_once(raw, (size_t)n, lim, &req, hdrs);
        check_mode(good ? rc == n : rc == H1_ERROR && req.error_status == 400, v, fmt[k],
                   good ? "Host refused by the parser" : "Host taken by the parser");
    }
}

static void
run_host_valid(void)
{
    static const char *good[] = {
        "", "a", "app.test", "app.test:8443", "app.test:", "127.0.0.1", "[2001:db8::1]",
        "[2001:db8::1]:80", "xn--bcher-kva.example", "a_b~c%41!$&'()*+,;=",
        "[::ffff:1.2.3.4]", "[fe80::1%25eth0]", "[fe80::1%25a%2Fb]:1", "[v1.a:b]", "[vF.x!]",
        "h:65535", "h:000000000000000000000080", "a%41b", "%41:80", "%7e",
        /* ports of every length about the parser's eight-byte word */
        "h:1", "h:12", "h:123", "h:1234", "h:12345", "h:59999", "h:60000", "h:65534",
        "h:065535", "h:0000065535", "app.test:00000080", "12345", "123456789", "1:2",
        "127.0.0.1:8080", "a.b:9", "x:",
    };
    static const char *bad[] = {
        "evil.test/path", "a b", "a\"b", "app.test:80:80", "app.test:x", "[2001:db8::1",
        "2001:db8::1]", "[]", "[a[b]]", "a]b", "[::1]x", "host\\x", "h\xc3\xa9",
        /* what is in brackets is an IPv6address or an IPvFuture (RFC 3986
         * 3.2.2), and a port one no TCP port is past 65535 */
        "[zz]", "[1.2.3.4]", "[:]:1", "[ab]", "[::1%eth0]", "[::1%25]", "[::1%25a!]", "[v.x]",
        "[v1.]", "[vg.x]", "[v1.x%41]", "h:65536", "h:70000", "h:99999999999",
        /* a '%' is pct-encoded: two hex digits after it; no port without a host */
        "%", "a%zz", "a%2", "a%", "%g1", ":80", ":",
        "h:65540", "h:66000", "h:99999", "h:100000", "h:0065536", "h:12345678", ":12345678",
        "h:1:2", "h::1", "a b:80", ":1",
    };
    size_t i;
    for (i = 0; i < sizeof(good) / sizeof(*good); i++) {
        uint8_t *p = guard_at(good[i], strlen(good[i]), 1);
        check(h1_host_valid((const char *)p, strlen(good[i])), good[i], "a Host value refused");
        host_parse_agrees(good[i], 1);
    }
    for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        uint8_t *p = guard_at(bad[i], strlen(bad[i]), 1);
        check(!h1_host_valid((const char *)p, strlen(bad[i])), bad[i], "no Host value taken");
        host_parse_agrees(bad[i], 0);
    }
}

/* ------------------------------------------------------------------------ */

int
main(void)
{
    int best, lvl;

    guard_init();
    best = h1_simd_best();
    for (lvl = 0; lvl <= best; lvl++) {
        cur_level = h1_set_simd_level(lvl);
        if (cur_level != lvl) {
            n_fail++;
            fprintf(stderr, "FAIL could not select level %d\n", lvl);
            continue;
        }
        run_tables();
        run_generated();
    }
    cur_level = h1_set_simd_level(-1);
    run_chunked();
    run_host_valid();
    printf("simd levels tested: 0..%d\n", best);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
