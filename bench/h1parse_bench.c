/*
 * h1parse_bench.c - micro-benchmark of the HTTP/1.1 request-head parser.
 *
 * A program, not a test: prints ns/request and GB/s for each request set at
 * each SIMD level the CPU has.  Build with `make -f mk/cparser.mk
 * parser-bench` (-O3, no -march: the SIMD paths come from target
 * attributes and runtime dispatch, as in the extension).
 *
 * Sets:
 *   browser   page and sub-resource GETs as Chrome, Firefox and Safari send
 *             them, 10-15 fields, 450-900 bytes
 *   api       POST/PUT heads with Content-Type, Content-Length, a bearer
 *             token, 7-10 fields
 *   tiny      "GET / HTTP/1.1\r\nHost: x\r\n\r\n" pipelined back to back in
 *             one buffer, parsed one after another as a server would
 *
 * For comparison, building with -DH1_BENCH_PICO and picohttpparser.c (see
 * PICO_DIR in mk/cparser.mk) adds a row for phr_parse_request() on the
 * same sets; it validates less (no semantics, accepts bare LF) and is built
 * with -msse4.2.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "h1parse.h"

#ifdef H1_BENCH_PICO
#include "picohttpparser.h"
#endif

static const char *browser_set[] = {
    /* Chrome 124, top-level navigation */
    "GET /news/2024/05/index.html?utm_source=feed&utm_medium=rss HTTP/1.1\r\n"
    "Host: www.example-news.com\r\n"
    "Connection: keep-alive\r\n"
    "sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n"
    "sec-ch-ua-mobile: ?0\r\n"
    "sec-ch-ua-platform: \"Windows\"\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n"
    "Sec-Fetch-Site: none\r\n"
    "Sec-Fetch-Mode: navigate\r\n"
    "Sec-Fetch-User: ?1\r\n"
    "Sec-Fetch-Dest: document\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language: en-US,en;q=0.9,de;q=0.8\r\n"
    "Cookie: _ga=GA1.1.1234567890.1700000000; session=eyJ1aWQiOjQyLCJleHAiOjE3MDAwMDAwMDB9; theme=dark\r\n"
    "\r\n",
    /* Chrome 124, script sub-resource */
    "GET /static/js/app.3f9a2c1b.js HTTP/1.1\r\n"
    "Host: www.example-news.com\r\n"
    "Connection: keep-alive\r\n"
    "sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n"
    "sec-ch-ua-mobile: ?0\r\n"
    "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n"
    "sec-ch-ua-platform: \"Windows\"\r\n"
    "Accept: */*\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "Sec-Fetch-Mode: no-cors\r\n"
    "Sec-Fetch-Dest: script\r\n"
    "Referer: https://www.example-news.com/news/2024/05/index.html\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language: en-US,en;q=0.9,de;q=0.8\r\n"
    "Cookie: _ga=GA1.1.1234567890.1700000000; session=eyJ1aWQiOjQyLCJleHAiOjE3MDAwMDAwMDB9; theme=dark\r\n"
    "\r\n",
    /* Firefox 125, navigation */
    "GET /docs/getting-started/ HTTP/1.1\r\n"
    "Host: docs.example.org\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: https://www.google.com/\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: csrftoken=Zx8yQ2wE4rT6yU8iO0pA1sD3fG5hJ7kL; sessionid=abcdefghijklmnopqrstuvwxyz012345\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "Sec-Fetch-Dest: document\r\n"
    "Sec-Fetch-Mode: navigate\r\n"
    "Sec-Fetch-Site: cross-site\r\n"
    "Sec-Fetch-User: ?1\r\n"
    "Priority: u=0, i\r\n"
    "\r\n",
    /* Firefox 125, image */
    "GET /img/logo-2x.png HTTP/1.1\r\n"
    "Host: docs.example.org\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\n"
    "Accept: image/avif,image/webp,*/*\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Connection: keep-alive\r\n"
    "Referer: https://docs.example.org/docs/getting-started/\r\n"
    "Cookie: csrftoken=Zx8yQ2wE4rT6yU8iO0pA1sD3fG5hJ7kL; sessionid=abcdefghijklmnopqrstuvwxyz012345\r\n"
    "Sec-Fetch-Dest: image\r\n"
    "Sec-Fetch-Mode: no-cors\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "Priority: u=5, i\r\n"
    "\r\n",
    /* Safari 17 */
    "GET /shop/cart?step=2 HTTP/1.1\r\n"
    "Host: shop.example.com\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "Cookie: cart=7f3e9a; uid=1029384756; consent=1\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Sec-Fetch-Mode: navigate\r\n"
    "User-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15\r\n"
    "Accept-Language: en-GB,en;q=0.9\r\n"
    "Referer: https://shop.example.com/shop/item/4711\r\n"
    "Sec-Fetch-Dest: document\r\n"
    "Connection: keep-alive\r\n"
    "\r\n",
    /* picohttpparser's bench request (Firefox 3.6) */
    "GET /wp-content/uploads/2010/03/hello-kitty-darth-vader-pink.jpg HTTP/1.1\r\n"
    "Host: www.kittyhell.com\r\n"
    "User-Agent: Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10.6; ja-JP-mac; rv:1.9.2.3) Gecko/20100401 Firefox/3.6.3 Pathtraq/0.9\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: ja,en-us;q=0.7,en;q=0.3\r\n"
    "Accept-Encoding: gzip,deflate\r\n"
    "Accept-Charset: Shift_JIS,utf-8;q=0.7,*;q=0.7\r\n"
    "Keep-Alive: 115\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: wp_ozh_wsa_visits=2; wp_ozh_wsa_visit_lasttime=xxxxxxxxxx; "
    "__utma=xxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.x; "
    "__utmz=xxxxxxxxx.xxxxxxxxxx.x.x.utmccn=(referral)|utmcsr=reader.livedoor.com|utmcct=/reader/|utmcmd=referral\r\n"
    "\r\n",
};

static const char *api_set[] = {
    "POST /api/v1/orders HTTP/1.1\r\n"
    "Host: api.example.com\r\n"
    "User-Agent: python-httpx/0.27.0\r\n"
    "Accept: application/json\r\n"
    "Accept-Encoding: gzip, deflate\r\n"
    "Connection: keep-alive\r\n"
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 187\r\n"
    "\r\n",
    "PUT /api/v1/users/42/profile HTTP/1.1\r\n"
    "Host: api.example.com\r\n"
    "Content-Type: application/json; charset=utf-8\r\n"
    "Content-Length: 1024\r\n"
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImFiYzEyMyJ9.eyJzdWIiOiI0MiIsInNjb3BlIjoicHJvZmlsZTp3cml0ZSJ9.c2lnbmF0dXJl\r\n"
    "Accept: application/json\r\n"
    "X-Request-Id: 6f1c2b7e-0d2a-4c55-9d1e-2a3b4c5d6e7f\r\n"
    "User-Agent: okhttp/4.12.0\r\n"
    "Accept-Encoding: gzip\r\n"
    "\r\n",
    "POST /graphql HTTP/1.1\r\n"
    "Host: gateway.example.com\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 342\r\n"
    "Accept: application/graphql-response+json, application/json\r\n"
    "Origin: https://app.example.com\r\n"
    "Authorization: Bearer 0123456789abcdef0123456789abcdef\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\n"
    "Connection: keep-alive\r\n"
    "\r\n",
    "POST /upload HTTP/1.1\r\n"
    "Host: files.example.com\r\n"
    "Transfer-Encoding: chunked\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Expect: 100-continue\r\n"
    "Authorization: Basic dXNlcjpwYXNzd29yZA==\r\n"
    "User-Agent: curl/8.5.0\r\n"
    "Accept: */*\r\n"
    "\r\n",
};

#define TINY "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
#define TINY_N 1024

static double
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile uint64_t sink;

typedef struct {
    const char **reqs;
    size_t *lens;
    size_t n;
    size_t bytes; /* of one pass */
} set;

/* One pass over a set with the fulmen parser: returns requests parsed. */
static size_t
pass_h1(const set *s, int pipelined)
{
    h1_parser p;
    h1_request req;
    h1_header hdrs[32];
    size_t i, n = 0;

    req.headers = hdrs;
    if (pipelined) {
        const char *b = s->reqs[0];
        size_t off = 0, len = s->lens[0];
        while (off < len) {
            int rc;
            h1_parser_init(&p, 8192, 32);
            rc = h1_parse_request(&p, b + off, len - off, &req);
            if (rc <= 0) abort();
            sink += req.flags;
            off += (size_t)rc;
            n++;
        }
        return n;
    }
    for (i = 0; i < s->n; i++) {
        int rc;
        h1_parser_init(&p, 8192, 32);
        rc = h1_parse_request(&p, s->reqs[i], s->lens[i], &req);
        if (rc <= 0) {
            fprintf(stderr, "bench request %zu rejected: %d %s\n", i,
                    req.error_status, req.error_reason);
            abort();
        }
        sink += req.num_headers + req.flags;
        n++;
    }
    return n;
}

#ifdef H1_BENCH_PICO
static size_t
pass_pico(const set *s, int pipelined)
{
    const char *method, *path;
    size_t method_len, path_len, num_headers, i, n = 0;
    int minor, rc;
    struct phr_header hdrs[32];

    if (pipelined) {
        const char *b = s->reqs[0];
        size_t off = 0, len = s->lens[0];
        while (off < len) {
            num_headers = 32;
            rc = phr_parse_request(b + off, len - off, &method, &method_len,
                                   &path, &path_len, &minor, hdrs,
                                   &num_headers, 0);
            if (rc <= 0) abort();
            sink += num_headers;
            off += (size_t)rc;
            n++;
        }
        return n;
    }
    for (i = 0; i < s->n; i++) {
        num_headers = 32;
        rc = phr_parse_request(s->reqs[i], s->lens[i], &method, &method_len,
                               &path, &path_len, &minor, hdrs, &num_headers,
                               0);
        if (rc <= 0) abort();
        sink += num_headers;
        n++;
    }
    return n;
}
#endif

/* Time 15 rounds of ~40 ms and print the best: the minimum is the figure
 * least disturbed by other load on the machine. */
static void
measure(const char *label, const set *s, int pipelined,
        size_t (*pass)(const set *, int))
{
    double best = 1e30;
    size_t reqs_per_pass = pass(s, pipelined); /* warm up */
    int round;
    long iters = 1;

    /* calibrate: ~40 ms per round */
    for (;;) {
        double t0 = now_ns(), dt;
        long k;
        for (k = 0; k < iters; k++)
            pass(s, pipelined);
        dt = now_ns() - t0;
        if (dt > 20e6) {
            iters = (long)((double)iters * 40e6 / dt) + 1;
            break;
        }
        iters *= 4;
    }
    for (round = 0; round < 15; round++) {
        double t0 = now_ns(), dt;
        long k;
        for (k = 0; k < iters; k++)
            pass(s, pipelined);
        dt = (now_ns() - t0) / (double)iters;
        if (dt < best) best = dt;
    }
    printf("  %-8s %8.1f ns/req %7.2f GB/s  (%zu B/req avg)\n", label,
           best / (double)reqs_per_pass, (double)s->bytes / best,
           s->bytes / reqs_per_pass);
}

/* A 16 KB head fed one byte per call: the cost per byte must stay flat
 * (no re-scanning of what earlier calls saw). */
static void
trickle(void)
{
    static char buf[20000];
    static const char *level_name[] = {"scalar", "sse4.2", "avx2"};
    size_t n, k, vl;
    int lvl, best = h1_simd_best();

    printf("trickle: one header value fed 1 byte per call\n");
    for (lvl = 0; lvl <= best; lvl++) {
        h1_set_simd_level(lvl);
        for (vl = 1024; vl <= 16384; vl *= 4) {
            h1_parser p;
            h1_request req;
            h1_header hdrs[8];
            double t0, dt;
            int rc = H1_PARTIAL;

            n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
            memset(buf + n, 'v', vl);
            n += vl;
            memcpy(buf + n, "\r\n\r\n", 4);
            n += 4;
            req.headers = hdrs;
            h1_parser_init(&p, sizeof(buf), 8);
            t0 = now_ns();
            for (k = 1; k <= n && rc == H1_PARTIAL; k++)
                rc = h1_parse_request(&p, buf, k, &req);
            dt = now_ns() - t0;
            if (rc != (int)n) abort();
            printf("  %-8s %6zu B head %8.1f us total %6.2f ns/byte\n",
                   level_name[lvl], n, dt / 1e3, dt / (double)n);
        }
    }
}

int
main(void)
{
    static const char *level_name[] = {"scalar", "sse4.2", "avx2"};
    static char tiny_buf[sizeof(TINY) * TINY_N];
    static const char *tiny_ptr[1];
    static size_t tiny_len[1];
    size_t browser_len[sizeof(browser_set) / sizeof(browser_set[0])];
    size_t api_len[sizeof(api_set) / sizeof(api_set[0])];
    set sets[3];
    const char *names[3] = {"browser", "api", "tiny"};
    int best, lvl, k;
    size_t i;

    sets[0].reqs = browser_set;
    sets[0].lens = browser_len;
    sets[0].n = sizeof(browser_set) / sizeof(browser_set[0]);
    sets[1].reqs = api_set;
    sets[1].lens = api_len;
    sets[1].n = sizeof(api_set) / sizeof(api_set[0]);
    for (k = 0; k < 2; k++) {
        sets[k].bytes = 0;
        for (i = 0; i < sets[k].n; i++) {
            sets[k].lens[i] = strlen(sets[k].reqs[i]);
            sets[k].bytes += sets[k].lens[i];
        }
    }
    for (i = 0; i < TINY_N; i++)
        memcpy(tiny_buf + i * (sizeof(TINY) - 1), TINY, sizeof(TINY) - 1);
    tiny_ptr[0] = tiny_buf;
    tiny_len[0] = (sizeof(TINY) - 1) * TINY_N;
    sets[2].reqs = tiny_ptr;
    sets[2].lens = tiny_len;
    sets[2].n = 1;
    sets[2].bytes = tiny_len[0];

    best = h1_simd_best();
    printf("h1parse benchmark (best of 15 rounds; GB/s = head bytes parsed / time)\n");
    for (k = 0; k < 3; k++) {
        printf("%s: %zu request(s)%s\n", names[k],
               k == 2 ? (size_t)TINY_N : sets[k].n,
               k == 2 ? ", pipelined in one buffer" : "");
        for (lvl = 0; lvl <= best; lvl++) {
            h1_set_simd_level(lvl);
            measure(level_name[lvl], &sets[k], k == 2, pass_h1);
        }
#ifdef H1_BENCH_PICO
        measure("pico", &sets[k], k == 2, pass_pico);
#endif
    }
    trickle();
    h1_set_simd_level(-1);
    return sink == 42 ? 1 : 0;
}
