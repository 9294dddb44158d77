# fulmen: `make run` serves examples/hello.py, `make test` runs every test.
# Both set everything up on a fresh machine (a .venv with the project in it).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8080
C_SOURCES := $(wildcard src/fulmen/_core/*.c src/fulmen/_core/*.h)
FUZZ_SECONDS ?= 60

.PHONY: all venv build run test pytest asan bench bench-all bench-instr bench-plot bench-peers clean

all: build

$(VENV)/.ready: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=68" wheel
	$(PY) -m pip install -q "uvloop>=0.19" "pytest>=7" "hypothesis>=6"
	$(PY) -m pip install -q --no-build-isolation -e .
	touch $@

venv: $(VENV)/.ready

# the extension, built in place (the editable install points at src/)
$(VENV)/.built: $(VENV)/.ready $(C_SOURCES)
	$(PY) setup.py -q build_ext --inplace
	touch $@

build: $(VENV)/.built

run: build
	$(PY) examples/hello.py --port $(PORT)

include mk/cparser.mk

pytest: build
	$(PY) -m pytest tests -q

test: build ctest
	$(PY) -m pytest tests -q

# The whole suite against an AddressSanitizer + UBSan build of the extension.
ASAN_LIB = $(shell gcc -print-file-name=libasan.so)
asan: venv
	rm -rf build/asan && mkdir -p build/asan
	cp -r src/fulmen build/asan/
	rm -f build/asan/fulmen/_core*.so
	FULMEN_SANITIZE=address,undefined $(PY) setup.py -q build_ext --build-lib build/asan --build-temp build/asan-tmp --force
	PYTHONPATH=$(CURDIR)/build/asan LD_PRELOAD=$(ASAN_LIB) \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  PYTHONMALLOC=malloc $(PY) -m pytest tests -q -p no:cacheprovider

# Benchmarks (bench/RESULTS.md): wrk, 100 connections, plain and 24-deep pipelined,
# server pinned to CPU 0 and wrk to CPU 1; peers from /tmp/fulmen-peers when installed.
# BENCH_ARGS passes options to run.py, e.g. make bench BENCH_ARGS="--quick".
bench: build
	$(PY) bench/run.py $(BENCH_ARGS)

bench-all: build
	$(PY) bench/run.py --all $(BENCH_ARGS)

# instructions per request under valgrind --tool=callgrind (deterministic)
bench-instr: build
	$(PY) bench/instr.py

# PNG bar charts of the latest run (bench/out/plot-*.png); matplotlib is optional
bench-plot: venv
	$(PY) -c "import matplotlib" 2>/dev/null || $(PY) -m pip install -q matplotlib
	$(PY) bench/plot.py

clean:
	rm -rf build src/fulmen/_core*.so $(VENV)/.built
