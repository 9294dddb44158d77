# mk/cparser.mk - build, test, benchmark and fuzz the pure-C HTTP/1.1 parser
# (src/fulmen/_core/h1parse.c), the multipart/form-data
# parser (multipart.c) and the WebSocket frame codec (wsframe.c) without
# Python.
#
# Included by the top-level Makefile; also usable alone:
#     make -f mk/cparser.mk ctest
#     make -f mk/cparser.mk parser-bench
#     make -f mk/cparser.mk fuzz FUZZ_SECONDS=60
#
# Targets:
#   ctest         tests/c/test_h1parse, tests/c/test_multipart and
#                 tests/c/test_wsframe, built with -O2 -Wall -Wextra -Werror,
#                 each run once plain and once under
#                 -fsanitize=address,undefined
#   parser-bench  bench/h1parse_bench at -O3
#   ws-bench      bench/ws_bench at -O3 (unmask and UTF-8 GB/s per SIMD level)
#   fuzz          libFuzzer harness (clang), seeded from the h2o corpus
#   fuzz-ws       libFuzzer harness for the WebSocket frame codec
#   fuzz-mp       libFuzzer harness for the multipart/form-data parser
#   cparser-clean remove what these targets build

CC ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif
FUZZ_CC ?=
FUZZ_SECONDS ?= 60
# FUZZ_JOBS > 1 runs libFuzzer with -fork=$(FUZZ_JOBS)
FUZZ_JOBS ?= 1
FUZZ_SEED_DIR ?= ../shared/conformance/h2o-http1-corpus

CPARSER_DIR := src/fulmen/_core
CPARSER_SRC := $(CPARSER_DIR)/h1parse.c
CPARSER_HDR := $(CPARSER_DIR)/h1parse.h $(CPARSER_DIR)/simd.h
CPARSER_WARN := -Wall -Wextra -Werror
CPARSER_INC := -I$(CPARSER_DIR)

CTEST_BIN := tests/c/test_h1parse
CTEST_ASAN_BIN := build/cparser/test_h1parse_asan
MP_SRC := $(CPARSER_DIR)/multipart.c
MP_HDR := $(CPARSER_DIR)/multipart.h
MPTEST_BIN := tests/c/test_multipart
MPTEST_ASAN_BIN := build/cparser/test_multipart_asan
WS_SRC := $(CPARSER_DIR)/wsframe.c
WS_HDR := $(CPARSER_DIR)/wsframe.h
WSTEST_BIN := tests/c/test_wsframe
WSTEST_ASAN_BIN := build/cparser/test_wsframe_asan
WSBENCH_BIN := bench/ws_bench
BENCH_BIN := bench/h1parse_bench
FUZZ_BIN := tests/fuzz/fuzz_h1parse
FUZZ_CORPUS := tests/fuzz/corpus
FUZZ_WS_BIN := tests/fuzz/fuzz_wsframe
FUZZ_MP_BIN := tests/fuzz/fuzz_multipart

.PHONY: ctest parser-bench ws-bench fuzz fuzz-ws fuzz-mp cparser-clean

$(CTEST_BIN): tests/c/test_h1parse.c tests/c/testutil.h $(CPARSER_SRC) $(CPARSER_HDR)
	$(CC) -O2 -g $(CPARSER_WARN) $(CPARSER_INC) -o $@ tests/c/test_h1parse.c $(CPARSER_SRC)

$(CTEST_ASAN_BIN): tests/c/test_h1parse.c tests/c/testutil.h $(CPARSER_SRC) $(CPARSER_HDR)
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	    -fno-sanitize-recover=all $(CPARSER_WARN) $(CPARSER_INC) \
	    -o $@ tests/c/test_h1parse.c $(CPARSER_SRC)

$(MPTEST_BIN): tests/c/test_multipart.c tests/c/testutil.h $(MP_SRC) $(MP_HDR)
	$(CC) -O2 -g $(CPARSER_WARN) $(CPARSER_INC) -o $@ tests/c/test_multipart.c $(MP_SRC)

$(MPTEST_ASAN_BIN): tests/c/test_multipart.c tests/c/testutil.h $(MP_SRC) $(MP_HDR)
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	    -fno-sanitize-recover=all $(CPARSER_WARN) $(CPARSER_INC) \
	    -o $@ tests/c/test_multipart.c $(MP_SRC)

$(WSTEST_BIN): tests/c/test_wsframe.c tests/c/testutil.h $(WS_SRC) $(WS_HDR)
	$(CC) -O2 -g $(CPARSER_WARN) $(CPARSER_INC) -o $@ tests/c/test_wsframe.c $(WS_SRC)

$(WSTEST_ASAN_BIN): tests/c/test_wsframe.c tests/c/testutil.h $(WS_SRC) $(WS_HDR)
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	    -fno-sanitize-recover=all $(CPARSER_WARN) $(CPARSER_INC) \
	    -o $@ tests/c/test_wsframe.c $(WS_SRC)

ctest: $(CTEST_BIN) $(CTEST_ASAN_BIN) $(MPTEST_BIN) $(MPTEST_ASAN_BIN) \
       $(WSTEST_BIN) $(WSTEST_ASAN_BIN)
	./$(CTEST_BIN)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./$(CTEST_ASAN_BIN)
	./$(MPTEST_BIN)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./$(MPTEST_ASAN_BIN)
	./$(WSTEST_BIN)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./$(WSTEST_ASAN_BIN)

# PICO_DIR=/path/to/picohttpparser adds phr_parse_request() rows for
# comparison (compiled on its own with -msse4.2, as it needs).
PICO_DIR ?=
ifneq ($(PICO_DIR),)
BENCH_PICO_OBJ := build/cparser/picohttpparser.o
BENCH_PICO_FLAGS := -DH1_BENCH_PICO -I$(PICO_DIR) $(BENCH_PICO_OBJ)
$(BENCH_PICO_OBJ): $(PICO_DIR)/picohttpparser.c
	@mkdir -p $(dir $@)
	$(CC) -O3 -msse4.2 -c -o $@ $<
.PHONY: $(BENCH_BIN)
endif

$(BENCH_BIN): bench/h1parse_bench.c $(CPARSER_SRC) $(CPARSER_HDR) $(BENCH_PICO_OBJ)
	$(CC) -O3 $(CPARSER_WARN) $(CPARSER_INC) -o $@ bench/h1parse_bench.c \
	    $(CPARSER_SRC) $(BENCH_PICO_FLAGS)

parser-bench: $(BENCH_BIN)
	./$(BENCH_BIN)

$(WSBENCH_BIN): bench/ws_bench.c $(WS_SRC) $(WS_HDR)
	$(CC) -O3 $(CPARSER_WARN) $(CPARSER_INC) -o $@ bench/ws_bench.c $(WS_SRC)

ws-bench: $(WSBENCH_BIN)
	./$(WSBENCH_BIN)

# clang with libFuzzer: use $(FUZZ_CC) if given, else clang or clang-14,
# installing clang-14 + its runtime (Debian bookworm) when neither exists.
define cparser_find_clang
$(or $(FUZZ_CC),$(shell command -v clang 2>/dev/null),$(shell command -v clang-14 2>/dev/null))
endef

# The fuzzer's compiler (stdout): clang or clang-14, installing clang-14 + its
# runtime (Debian bookworm) when neither exists.
define cparser_fuzz_cc
cc='$(strip $(cparser_find_clang))'; \
if [ -z "$$cc" ]; then \
    echo "clang not found: installing clang-14 and libclang-rt-14-dev" >&2; \
    SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
    $$SUDO apt-get update >&2 && \
    $$SUDO apt-get install -y clang-14 libclang-rt-14-dev >&2 || exit 1; \
    cc=$$(command -v clang || command -v clang-14); \
fi
endef
FUZZ_FLAGS := -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all $(CPARSER_WARN) $(CPARSER_INC)

$(FUZZ_BIN): tests/fuzz/fuzz_h1parse.c tests/fuzz/fuzzutil.h $(CPARSER_SRC) $(CPARSER_HDR)
	@$(cparser_fuzz_cc); \
	echo "$$cc -g -O1 -fsanitize=fuzzer,address,undefined ... -o $@"; \
	$$cc $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_h1parse.c $(CPARSER_SRC)

$(FUZZ_WS_BIN): tests/fuzz/fuzz_wsframe.c tests/fuzz/fuzzutil.h $(WS_SRC) $(WS_HDR)
	@$(cparser_fuzz_cc); \
	echo "$$cc -g -O1 -fsanitize=fuzzer,address,undefined ... -o $@"; \
	$$cc $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_wsframe.c $(WS_SRC)

$(FUZZ_MP_BIN): tests/fuzz/fuzz_multipart.c tests/fuzz/fuzzutil.h $(MP_SRC) $(MP_HDR)
	@$(cparser_fuzz_cc); \
	echo "$$cc -g -O1 -fsanitize=fuzzer,address,undefined ... -o $@"; \
	$$cc $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_multipart.c $(MP_SRC)

fuzz: $(FUZZ_BIN)
	@mkdir -p $(FUZZ_CORPUS)
	@if [ -d "$(FUZZ_SEED_DIR)" ]; then seed="$(FUZZ_SEED_DIR)"; else \
	    echo "note: seed corpus $(FUZZ_SEED_DIR) not found"; seed=; fi; \
	par=; [ "$(FUZZ_JOBS)" -gt 1 ] && par="-fork=$(FUZZ_JOBS)"; \
	./$(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) $$par \
	    -max_len=16384 -print_final_stats=1 -dict=tests/fuzz/h1parse.dict \
	    -artifact_prefix=tests/fuzz/ $(FUZZ_CORPUS) $$seed

# The codec harness starts from nothing, the multipart one from three seed
# bodies; both keep what they find, and any crashing input, in build/ (not
# committed).
fuzz-ws: $(FUZZ_WS_BIN)
	@mkdir -p build/fuzz-ws
	./$(FUZZ_WS_BIN) -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    -print_final_stats=1 -artifact_prefix=build/fuzz-ws- build/fuzz-ws

fuzz-mp: $(FUZZ_MP_BIN)
	@mkdir -p build/fuzz-mp
	./$(FUZZ_MP_BIN) -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    -print_final_stats=1 -dict=tests/fuzz/multipart.dict \
	    -artifact_prefix=build/fuzz-mp- build/fuzz-mp tests/fuzz/seeds-multipart

cparser-clean:
	rm -f $(CTEST_BIN) $(CTEST_ASAN_BIN) $(MPTEST_BIN) $(MPTEST_ASAN_BIN) \
	    $(WSTEST_BIN) $(WSTEST_ASAN_BIN) $(BENCH_BIN) $(WSBENCH_BIN) $(FUZZ_BIN) \
	    $(FUZZ_WS_BIN) $(FUZZ_MP_BIN)
