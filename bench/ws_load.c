/*
 * ws_load.c - WebSocket echo load generator for fulmen's bench lab
 * (bench/run.py --scenarios ws-echo).  One thread, epoll, non-blocking.
 *
 *     make bench/ws_load
 *     bench/ws_load -p 8080 [-P /ws] [-c 100] [-D 1] [-s 64] [-d 5] [-w 1] [-T]
 *
 * N connections each do the RFC 6455 client handshake (fixed
 * Sec-WebSocket-Key, no extensions offered; the answer must be 101 with
 * the matching Sec-WebSocket-Accept and no Sec-WebSocket-Extensions), then
 * keep `depth` masked messages of `size` bytes in flight: every echoed
 * message is checked (opcode, length, content: each payload carries its own
 * sequence number) and answered by a new one, so a connection always has
 * `depth` messages outstanding (a sliding window, not batches).
 *
 * Phases: connect + handshake (at most 5 s), warm-up (-w s, not counted),
 * measurement (-d s).  At the start and end of the measurement it prints
 * "WSLOAD phase=measure" and "WSLOAD phase=done" (flushed) so a harness can
 * read the server's CPU time exactly over the measured window; then one
 * "WSSTATS key=value ..." line and a human summary.  Latency is the round
 * trip of one message (its send to its echo), 1 us resolution up to 1 s.
 * Connections that fail are counted as errors and not reopened.
 * Exit status: 0 if some messages were echoed and there were no errors.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF 65536
#define HIST_US 1000000 /* latency histogram: 1 us buckets up to 1 s */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* RFC 6455 section 1.3 */

enum { C_CONNECTING, C_HANDSHAKE, C_OPEN, C_CLOSING, C_DEAD, C_CLOSED };
enum { PH_SETUP, PH_WARM, PH_MEASURE, PH_STOP };

typedef struct {
    int fd, state;
    uint64_t sent, recvd; /* sequence numbers: next to send, next expected */
    uint64_t *t_sent;     /* ring of depth send times (ns) */
    uint8_t *rbuf;
    size_t rlen;
    uint8_t *obuf; /* pending output */
    size_t olen, ocap;
    int want_out;
    uint8_t *frag; /* payload of a fragmented message being reassembled */
    size_t flen;
    int fop;
} conn_t;

static const char *host = "127.0.0.1", *path = "/ws";
static int port = 8080, nconns = 100, depth = 1, opcode = 2, phase = PH_SETUP;
static size_t msize = 64;
static double duration = 5, warmup = 0;
static int epfd;
static uint64_t errors, messages, *hist, hist_over, lat_max;
static uint32_t rng = 2463534242u;
static const char *first_error;

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
drop(conn_t *c, int state)
{
    c->state = state;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
}

static void
fail(conn_t *c, const char *why)
{
    if (c->state >= C_DEAD) return;
    if (c->state == C_CLOSING) { /* torn down while closing: fine */
        drop(c, C_CLOSED);
        return;
    }
    errors++;
    if (!first_error) first_error = why;
    drop(c, C_DEAD);
}

/* payload of message `seq`: 16 hex digits of seq, then a-z; valid UTF-8 */
static void
fill_payload(uint8_t *p, uint64_t seq)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < msize; i++)
        p[i] = i < 16 ? (uint8_t)hex[(seq >> (60 - 4 * i)) & 15] : (uint8_t)('a' + (i + seq) % 26);
}

static int
out_reserve(conn_t *c, size_t n)
{
    if (c->olen + n <= c->ocap) return 0;
    size_t cap = c->ocap ? c->ocap : 4096;
    while (cap < c->olen + n) cap *= 2;
    uint8_t *b = realloc(c->obuf, cap);
    if (!b) return -1;
    c->obuf = b;
    c->ocap = cap;
    return 0;
}

/* append one masked frame; payload NULL means message `seq` */
static int
queue_frame(conn_t *c, int op, const uint8_t *payload, size_t len, uint64_t seq)
{
    if (out_reserve(c, 14 + len)) return -1;
    uint8_t *h = c->obuf + c->olen, *p;
    size_t hl = 2;
    h[0] = (uint8_t)(0x80 | op);
    if (len < 126) {
        h[1] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5; /* xorshift32 mask key */
    uint8_t key[4] = {(uint8_t)rng, (uint8_t)(rng >> 8), (uint8_t)(rng >> 16), (uint8_t)(rng >> 24)};
    memcpy(h + hl, key, 4);
    p = h + hl + 4;
    if (payload)
        memcpy(p, payload, len);
    else
        fill_payload(p, seq);
    for (size_t i = 0; i < len; i++) p[i] ^= key[i & 3];
    c->olen += hl + 4 + len;
    return 0;
}

static void
flush_out(conn_t *c)
{
    while (c->olen) {
        ssize_t n = write(c->fd, c->obuf, c->olen);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            fail(c, "write failed");
            return;
        }
        memmove(c->obuf, c->obuf + n, c->olen - (size_t)n);
        c->olen -= (size_t)n;
    }
    int want = c->olen > 0;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want;
    }
}

static int
send_message(conn_t *c)
{
    c->t_sent[c->sent % (uint64_t)depth] = now_ns();
    if (queue_frame(c, opcode, NULL, msize, c->sent)) return -1;
    c->sent++;
    return 0;
}

static void
start_messages(conn_t *c)
{
    for (int i = 0; i < depth; i++)
        if (send_message(c)) {
            fail(c, "out of memory");
            return;
        }
}

/* a complete message arrived */
static int
on_message(conn_t *c, int op, const uint8_t *p, size_t len)
{
    static uint8_t *want;
    if (!want && !(want = malloc(msize))) return -1;
    if (op != opcode || len != msize) return -1;
    fill_payload(want, c->recvd);
    if (memcmp(p, want, msize)) return -1;
    if (phase == PH_MEASURE) {
        uint64_t us = (now_ns() - c->t_sent[c->recvd % (uint64_t)depth]) / 1000;
        if (us < HIST_US)
            hist[us]++;
        else
            hist_over++;
        if (us > lat_max) lat_max = us;
        messages++;
    }
    c->recvd++;
    if (phase != PH_STOP && send_message(c)) return -1;
    return 0;
}

static void
parse_frames(conn_t *c)
{
    size_t off = 0;
    while (c->state == C_OPEN || c->state == C_CLOSING) {
        uint8_t *b = c->rbuf + off;
        size_t avail = c->rlen - off, hl = 2;
        if (avail < 2) break;
        int fin = b[0] & 0x80, op = b[0] & 0x0f;
        uint64_t len = b[1] & 0x7f;
        if (b[0] & 0x70) { fail(c, "RSV bits set in a server frame"); return; }
        if (b[1] & 0x80) { fail(c, "masked server frame"); return; }
        if (len == 126) {
            if (avail < 4) break;
            len = (uint64_t)b[2] << 8 | b[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | b[2 + i];
            hl = 10;
        }
        if (len > RBUF - 16) { fail(c, "server frame too large"); return; }
        if (avail < hl + len) break;
        uint8_t *p = b + hl;
        off += hl + (size_t)len;
        if (op == 9) { /* ping: answer pong */
            if (queue_frame(c, 10, p, (size_t)len, 0)) { fail(c, "out of memory"); return; }
        } else if (op == 10) {
            /* unsolicited pong: ignore */
        } else if (op == 8) {
            if (c->state == C_CLOSING) {
                drop(c, C_CLOSED); /* the close handshake is complete */
                return;
            }
            { fail(c, "server sent close"); return; }
        } else if (op == 0 || !fin || c->flen || c->fop) { /* fragmented message */
            if ((op == 0) != (c->fop != 0)) { fail(c, "bad fragmentation"); return; }
            if (op) c->fop = op;
            if (c->flen + len > msize * 2 + 16) { fail(c, "reassembled message too large"); return; }
            uint8_t *f = realloc(c->frag, c->flen + (size_t)len + 1);
            if (!f) { fail(c, "out of memory"); return; }
            c->frag = f;
            memcpy(c->frag + c->flen, p, (size_t)len);
            c->flen += (size_t)len;
            if (fin) {
                int r = on_message(c, c->fop, c->frag, c->flen);
                c->flen = 0;
                c->fop = 0;
                if (r) { fail(c, "wrong echo (opcode, length or content)"); return; }
            }
        } else if (on_message(c, op, p, (size_t)len)) {
            { fail(c, "wrong echo (opcode, length or content)"); return; }
        }
    }
    if (c->state != C_OPEN && c->state != C_CLOSING) return;
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
    flush_out(c);
}

static int
handshake_done(conn_t *c)
{
    uint8_t *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end) {
        if (c->rlen >= RBUF - 1) fail(c, "handshake answer too long");
        return 0;
    }
    size_t hlen = (size_t)(end - c->rbuf) + 4;
    char *h = (char *)c->rbuf;
    h[hlen - 2] = 0; /* terminate the header block (overwrites the final CRLF) */
    if (strncmp(h, "HTTP/1.1 101 ", 13)) {
        fail(c, "handshake: status is not 101");
        return 0;
    }
    int accept_ok = 0;
    for (char *line = strstr(h, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
        char *l = line + 2;
        if (!strncasecmp(l, "Sec-WebSocket-Extensions:", 25)) {
            fail(c, "handshake: server chose an extension");
            return 0;
        }
        if (!strncasecmp(l, "Sec-WebSocket-Accept:", 21)) {
            char *v = l + 21;
            while (*v == ' ' || *v == '\t') v++;
            accept_ok = !strncmp(v, WS_ACCEPT, strlen(WS_ACCEPT)) &&
                        (v[strlen(WS_ACCEPT)] == '\r' || v[strlen(WS_ACCEPT)] == ' ');
        }
    }
    if (!accept_ok) {
        fail(c, "handshake: wrong or missing Sec-WebSocket-Accept");
        return 0;
    }
    memmove(c->rbuf, c->rbuf + hlen, c->rlen - hlen);
    c->rlen -= hlen;
    c->state = C_OPEN;
    return 1;
}

static void
on_event(conn_t *c, uint32_t ev)
{
    if (c->state >= C_DEAD) return;
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) { fail(c, "connect failed"); return; }
        c->state = C_HANDSHAKE;
        char req[512];
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: " WS_KEY "\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n",
                         path, host, port);
        if (out_reserve(c, (size_t)n)) { fail(c, "out of memory"); return; }
        memcpy(c->obuf, req, (size_t)n);
        c->olen = (size_t)n;
        c->want_out = 1; /* registered with EPOLLOUT for the connect */
        flush_out(c);
        return;
    }
    if (ev & EPOLLOUT) {
        flush_out(c);
        if (c->state >= C_DEAD) return;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t n = read(c->fd, c->rbuf + c->rlen, RBUF - 1 - c->rlen);
        if (n == 0) { fail(c, "server closed the connection"); return; }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            { fail(c, "read failed"); return; }
        }
        c->rlen += (size_t)n;
        if (c->state == C_HANDSHAKE) {
            if (!handshake_done(c)) return;
            if (phase != PH_SETUP) start_messages(c);
        }
        parse_frames(c);
    }
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: ws_load -p PORT [-H host] [-P path] [-c conns] [-D depth] [-s size]\n"
            "               [-d seconds] [-w warmup-seconds] [-T (text; default binary)]\n");
    exit(2);
}

static uint64_t
percentile(uint64_t total, double q)
{
    uint64_t want = (uint64_t)(q * (double)total + 0.5), seen = 0;
    if (want == 0) want = 1;
    for (uint64_t i = 0; i < HIST_US; i++) {
        seen += hist[i];
        if (seen >= want) return i;
    }
    return lat_max;
}

int
main(int argc, char **argv)
{
    int o;
    while ((o = getopt(argc, argv, "H:p:P:c:D:s:d:w:T")) != -1) {
        switch (o) {
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'P': path = optarg; break;
        case 'c': nconns = atoi(optarg); break;
        case 'D': depth = atoi(optarg); break;
        case 's': msize = (size_t)atol(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'T': opcode = 1; break;
        default: usage();
        }
    }
    if (port <= 0 || nconns <= 0 || depth <= 0 || msize < 16 || msize > 16384 || duration <= 0 ||
        warmup < 0)
        usage();
    if ((size_t)depth * (msize + 14) > RBUF / 2) {
        fprintf(stderr, "ws_load: depth * size too large for the %d-byte read buffer\n", RBUF);
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "ws_load: host must be an IPv4 address\n");
        return 2;
    }
    hist = calloc(HIST_US, sizeof *hist);
    conn_t *conns = calloc((size_t)nconns, sizeof *conns);
    struct epoll_event *evs = calloc((size_t)nconns, sizeof *evs);
    epfd = epoll_create1(0);
    if (!hist || !conns || !evs || epfd < 0) return 2;

    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        c->rbuf = malloc(RBUF);
        c->t_sent = calloc((size_t)depth, sizeof *c->t_sent);
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (!c->rbuf || !c->t_sent || c->fd < 0) return 2;
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->state = C_CONNECTING;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS)
            fail(c, "connect failed");
    }

    uint64_t t_setup = now_ns(), t_phase = 0, t_measure = 0, t_end = 0;
    for (;;) {
        int n = epoll_wait(epfd, evs, nconns, 5);
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
        uint64_t t = now_ns();
        int open = 0, pending = 0;
        for (int i = 0; i < nconns; i++) {
            open += conns[i].state == C_OPEN;
            pending += conns[i].state == C_CONNECTING || conns[i].state == C_HANDSHAKE;
        }
        if (phase == PH_SETUP) {
            if (pending && t - t_setup < 5000000000ull) continue;
            for (int i = 0; i < nconns; i++)
                if (conns[i].state != C_OPEN) fail(&conns[i], "handshake timed out");
            if (!open) break;
            phase = warmup > 0 ? PH_WARM : PH_MEASURE;
            t_phase = t;
            if (phase == PH_MEASURE) {
                t_measure = t;
                printf("WSLOAD phase=measure\n");
                fflush(stdout);
            }
            for (int i = 0; i < nconns; i++)
                if (conns[i].state == C_OPEN) {
                    start_messages(&conns[i]);
                    flush_out(&conns[i]);
                }
        } else if (phase == PH_WARM && t - t_phase >= (uint64_t)(warmup * 1e9)) {
            phase = PH_MEASURE;
            t_measure = t;
            printf("WSLOAD phase=measure\n");
            fflush(stdout);
        } else if (phase == PH_MEASURE && t - t_measure >= (uint64_t)(duration * 1e9)) {
            phase = PH_STOP;
            t_end = t;
            printf("WSLOAD phase=done\n");
            fflush(stdout);
            break;
        }
        if (!open) break; /* every connection failed */
    }
    if (!t_end) t_end = now_ns();
    if (phase != PH_STOP) {
        phase = PH_STOP;
        printf("WSLOAD phase=done\n");
        fflush(stdout);
    }
    /* teardown, at most 1 s each: let the messages in flight come back (no
     * new ones are sent), then a close handshake (1000) on every connection */
    int open = 0;
    for (int step = 0; step < 2; step++) {
        uint64_t t0 = now_ns();
        for (;;) {
            int waiting = 0;
            for (int i = 0; i < nconns; i++) {
                conn_t *c = &conns[i];
                waiting += step == 0 ? c->state == C_OPEN && c->recvd != c->sent
                                     : c->state == C_CLOSING;
            }
            if (!waiting || now_ns() - t0 > 1000000000ull) break;
            int n = epoll_wait(epfd, evs, nconns, 5);
            for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
        }
        for (int i = 0; i < nconns; i++) {
            conn_t *c = &conns[i];
            if (step == 0 && c->state == C_OPEN) {
                uint8_t code[2] = {0x03, 0xe8};
                open++;
                c->state = C_CLOSING;
                if (queue_frame(c, 8, code, 2, 0))
                    drop(c, C_CLOSED);
                else
                    flush_out(c);
            } else if (step == 1 && c->state == C_CLOSING) {
                drop(c, C_CLOSED);
            }
        }
    }

    double secs = t_measure ? (double)(t_end - t_measure) / 1e9 : 0;
    uint64_t p50 = messages ? percentile(messages, 0.50) : 0;
    uint64_t p99 = messages ? percentile(messages, 0.99) : 0;
    double rate = secs > 0 ? (double)messages / secs : 0;
    printf("WSSTATS rate=%.1f messages=%llu errors=%llu p50_us=%llu p99_us=%llu max_us=%llu "
           "seconds=%.3f conns=%d open=%d depth=%d size=%zu\n",
           rate, (unsigned long long)messages, (unsigned long long)errors,
           (unsigned long long)p50, (unsigned long long)p99, (unsigned long long)lat_max, secs,
           nconns, open, depth, msize);
    printf("ws_load: ws://%s:%d%s, %d connections, depth %d, %zu-byte %s messages, %.2f s\n",
           host, port, path, nconns, depth, msize, opcode == 1 ? "text" : "binary", secs);
    printf("  messages/s %.0f   total %llu   errors %llu", rate, (unsigned long long)messages,
           (unsigned long long)errors);
    if (first_error) printf(" (first: %s)", first_error);
    printf("\n");
    printf("  round trip p50 %llu us   p99 %llu us   max %llu us\n", (unsigned long long)p50,
           (unsigned long long)p99, (unsigned long long)lat_max);
    return messages && !errors ? 0 : 1;
}
