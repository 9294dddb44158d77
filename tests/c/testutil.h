/*
 * testutil.h - what the C tests share: pass/fail counting, and the
 * guard-page buffer [PROT_NONE][GUARD_CAP writable][PROT_NONE] in which an
 * input is placed against either guard, so that reading past its end (or
 * before its start) crashes the test instead of passing unnoticed.
 */
#ifndef FULMEN_TESTUTIL_H
#define FULMEN_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int n_pass, n_fail;

static inline void
check(int ok, const char *name, const char *what)
{
    if (ok)
        n_pass++;
    else {
        n_fail++;
        fprintf(stderr, "FAIL [%s]: %s\n", name, what);
    }
}

#define GUARD_CAP (2 * 1024 * 1024)

static uint8_t *guard_base; /* first writable byte, right after a guard page */
static uint8_t *guard_end;  /* first byte of the trailing guard page */

static inline void
guard_init(void)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t n = GUARD_CAP + 2 * pg;
    uint8_t *m = mmap(NULL, n, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    if (mprotect(m, pg, PROT_NONE) != 0 ||
        mprotect(m + pg + GUARD_CAP, pg, PROT_NONE) != 0) {
        perror("mprotect");
        exit(2);
    }
    guard_base = m + pg;
    guard_end = m + pg + GUARD_CAP;
}

/* Copy len bytes to end at the trailing guard page (at_end) or to start
 * right after the leading one; returns their start. */
static inline void *
guard_at(const void *src, size_t len, int at_end)
{
    uint8_t *p;
    if (len > GUARD_CAP) {
        fprintf(stderr, "input too large for the guard buffer\n");
        exit(2);
    }
    p = at_end ? guard_end - len : guard_base;
    memmove(p, src, len);
    return p;
}

#endif
