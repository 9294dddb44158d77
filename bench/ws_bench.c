/*
 * ws_bench.c - throughput of the WebSocket codec's hot loops
 * (src/fulmen/_core/wsframe.c) at every SIMD level: ws_unmask() and
 * ws_utf8_validate() on ASCII, mixed (mostly ASCII, some 2-3 byte) and
 * CJK (all 3-byte) text.  Prints figures; asserts nothing about time.
 *
 *     make -f mk/cparser.mk ws-bench
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wsframe.h"

#define BUF_LEN (256 * 1024) /* fits in L2: measures the loop, not DRAM */
#define TARGET_BYTES (1ull << 30)
#define REPS 5 /* best of: the figure least disturbed by other load */

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void
fill_text(uint8_t *b, size_t n, int kind)
{
    static const char *mixed[] = {"hello ", "world ", "\xc3\xa9t\xc3\xa9 ",
                                  "\xe2\x82\xac 42 ", "{\"k\": 1}, "};
    size_t i = 0, w = 0;
    while (i < n) {
        const char *s = kind == 0   ? "the quick brown fox jumps over "
                        : kind == 1 ? mixed[w++ % 5]
                                    : "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e";
        size_t l = strlen(s);
        if (i + l > n) break;
        memcpy(b + i, s, l);
        i += l;
    }
    memset(b + i, ' ', n - i);
}

int
main(void)
{
    static const char *lvname[] = {"scalar", "sse2", "avx2"};
    static const char *kinds[] = {"ascii", "mixed", "cjk"};
    uint8_t *buf = malloc(BUF_LEN);
    const uint8_t key[4] = {1, 2, 3, 4};
    int best = ws_set_simd_level(-1);
    size_t iters = (size_t)(TARGET_BYTES / BUF_LEN);

    if (!buf) return 2;
    printf("%-8s %-16s %10s\n", "level", "loop", "GB/s");
    for (int lv = 0; lv <= best; lv++) {
        double t0, t;
        ws_set_simd_level(lv);
        memset(buf, 0x5A, BUF_LEN);
        t = 1e30;
        for (int r = 0; r < REPS; r++) {
            t0 = now();
            for (size_t i = 0; i < iters; i++) ws_unmask(buf, BUF_LEN, key, i);
            if (now() - t0 < t) t = now() - t0;
        }
        printf("%-8s %-16s %10.2f\n", lvname[lv], "unmask",
               (double)iters * BUF_LEN / t / 1e9);
        for (int k = 0; k < 3; k++) {
            size_t it = k == 0 ? iters : iters / 16;
            int bad = 0;
            fill_text(buf, BUF_LEN, k);
            t = 1e30;
            for (int r = 0; r < REPS; r++) {
                t0 = now();
                for (size_t i = 0; i < it; i++) {
                    ws_utf8_state st = {0};
                    bad |= ws_utf8_validate(&st, buf, BUF_LEN);
                }
                if (now() - t0 < t) t = now() - t0;
            }
            printf("%-8s utf8 %-11s %10.2f%s\n", lvname[lv], kinds[k],
                   (double)it * BUF_LEN / t / 1e9, bad ? " (INVALID?)" : "");
        }
    }
    free(buf);
    return 0;
}
