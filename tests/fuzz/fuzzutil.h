/*
 * fuzzutil.h - what the libFuzzer harnesses in tests/fuzz share.
 */
#ifndef FULMEN_FUZZUTIL_H
#define FULMEN_FUZZUTIL_H

#include <stdio.h>
#include <stdlib.h>

/* An invariant: a failure aborts, which libFuzzer reports as a crash with
 * the input that caused it. */
#define FZ_CHECK(cond)                                                   \
    do {                                                                 \
        if (!(cond)) {                                                   \
            fprintf(stderr, "invariant failed: %s (line %d)\n", #cond,  \
                    __LINE__);                                           \
            abort();                                                     \
        }                                                                \
    } while (0)

#endif
