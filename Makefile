# fulmen: `make run` serves examples/hello.py, `make test` runs every test.
# Both set everything up on a fresh machine (a .venv with the project in it).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080
C_SOURCES := $(wildcard src/fulmen/_core/*.c src/fulmen/_core/*.h)
FUZZ_SECONDS ?= 60

.PHONY: all venv build run test pytest asan bench bench-all bench-instr bench-report bench-plot bench-ws bench-peers autobahn clean

all: build

# OpenSSL's headers for tls.c (TLS in C links libssl and libcrypto, which
# CPython's ssl module already loads): libssl-dev on Debian when missing.
OPENSSL_H := $(firstword $(wildcard /usr/include/openssl/ssl.h /usr/local/include/openssl/ssl.h))
define openssl_dev
if [ -z "$(OPENSSL_H)" ]; then \
    echo "openssl/ssl.h not found: installing libssl-dev" >&2; \
    SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
    $$SUDO apt-get update >&2 && $$SUDO apt-get install -y libssl-dev >&2 || exit 1; \
fi
endef

$(VENV)/.ready: pyproject.toml setup.py
	@$(openssl_dev)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=68" wheel
	$(PY) -m pip install -q "uvloop>=0.19" "pytest>=7" "hypothesis>=6" selenium
	$(PY) -m pip install -q --no-build-isolation -e .
	touch $@

venv: $(VENV)/.ready

# the extension, built in place (the editable install points at src/)
$(VENV)/.built: $(VENV)/.ready $(C_SOURCES)
	@$(openssl_dev)
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
	@$(openssl_dev)
	FULMEN_SANITIZE=address,undefined $(PY) setup.py -q build_ext --build-lib build/asan --build-temp build/asan-tmp --force
	FULMEN_SANITIZED=1 PYTHONPATH=$(CURDIR)/build/asan LD_PRELOAD=$(ASAN_LIB) \
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
# markdown tables of the latest run (bench/out/latest.json), for bench/RESULTS.md
bench-report: venv
	$(PY) bench/report.py

bench-plot: venv
	$(PY) -c "import matplotlib" 2>/dev/null || $(PY) -m pip install -q matplotlib
	$(PY) bench/plot.py

# WebSocket echo (bench/RESULTS.md, ws-echo): bench/ws_load (C, epoll, no
# third-party code) against bench/apps/ws_echo.py and the peers from
# /tmp/fulmen-peers (uvicorn, granian, socketify, websockets, picows): 100
# connections, 64-byte binary messages, 1 and 16 in flight per connection,
# 5 s runs.  BENCH_ARGS as for make bench.
bench/ws_load: bench/ws_load.c
	$(CC) -O2 -Wall -Wextra -o $@ bench/ws_load.c

# The peers' venv comes from ../shared/bench/setup-peers.sh; the two
# WebSocket-only peers, and the websockets package uvicorn's WebSocket
# server needs, are added to it from PyPI here.
PEERS_VENV ?= /tmp/fulmen-peers
bench-ws: build bench/ws_load
	@if [ -x $(PEERS_VENV)/bin/python ] && \
	  ! $(PEERS_VENV)/bin/python -c "import websockets, picows" 2>/dev/null; then \
	  echo "installing websockets and picows into $(PEERS_VENV)"; \
	  $(PEERS_VENV)/bin/python -m pip install -q websockets picows; fi
	$(PY) bench/run.py --scenarios ws-echo $(BENCH_ARGS)

# Autobahn's fuzzingclient against examples/websocket_echo.py; prints the
# summary and fails unless every case is OK, NON-STRICT or INFORMATIONAL.
# wstest (PyPI's autobahntestsuite) is Python 2 code: it is installed with
# pip --target into build/autobahn/site for a python2.7 that runs (on PATH, or
# a pyenv 2.7; a pyenv shim without one does not count).  Without one, the
# pytest conformance suite modelled on the same groups runs instead.
# AUTOBAHN_CASES="1.* 2.*" picks the groups (9, 12 and 13 are the slow ones).
AUTOBAHN_CASES ?= 1.* 2.* 3.* 4.* 5.* 6.* 7.* 9.* 10.* 11.* 12.* 13.*
AUTOBAHN_PORT ?= 9001
AUTOBAHN_DIR := build/autobahn
PY27 = $(shell for p in python2.7 $$HOME/.pyenv/versions/2.7*/bin/python2.7; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
WSTEST = $(PY27) -c "import site, sys; site.addsitedir('$(CURDIR)/$(AUTOBAHN_DIR)/site'); \
	sys.argv[0] = 'wstest'; from autobahntestsuite.wstest import run; run()"

autobahn: build
	@py27='$(PY27)'; \
	if [ -z "$$py27" ]; then \
	  echo "make autobahn: Autobahn's wstest (autobahntestsuite) needs Python 2.7, which is not installable here;"; \
	  echo "make autobahn: running the pytest WebSocket conformance suite (modelled on Autobahn's groups 1-7, 9-13) instead."; \
	  $(PY) -m pytest tests/integration/test_websocket.py -q; \
	  exit $$?; \
	fi; \
	set -e; mkdir -p $(AUTOBAHN_DIR); \
	if [ ! -d $(AUTOBAHN_DIR)/site/autobahntestsuite ]; then \
	  echo "make autobahn: installing autobahntestsuite for $$py27"; \
	  "$$py27" -m pip install -q --disable-pip-version-check --target $(AUTOBAHN_DIR)/site autobahntestsuite; \
	fi; \
	rm -rf $(AUTOBAHN_DIR)/reports; \
	$(PY) -c 'import json, sys; json.dump({"outdir": sys.argv[1], "cases": sys.argv[3:], \
	  "servers": [{"agent": "fulmen", "url": "ws://127.0.0.1:%s" % sys.argv[2]}], \
	  "exclude-cases": [], "exclude-agent-cases": {}}, sys.stdout)' \
	  $(CURDIR)/$(AUTOBAHN_DIR)/reports $(AUTOBAHN_PORT) $(AUTOBAHN_CASES) > $(AUTOBAHN_DIR)/fuzzingclient.json; \
	$(PY) examples/websocket_echo.py --port $(AUTOBAHN_PORT) 2> $(AUTOBAHN_DIR)/server.log & pid=$$!; \
	trap "kill $$pid 2>/dev/null" EXIT; \
	for i in $$(seq 100); do grep -q "listening on" $(AUTOBAHN_DIR)/server.log && break; sleep 0.1; done; \
	(cd $(AUTOBAHN_DIR) && $(WSTEST) -m fuzzingclient -s fuzzingclient.json > wstest.log 2>&1) || \
	  { tail -20 $(AUTOBAHN_DIR)/wstest.log; exit 1; }; \
	$(PY) -c 'import collections, json, sys; r = json.load(open(sys.argv[1]))["fulmen"]; \
	  key = lambda k: [int(x) for x in k.split(".")]; \
	  c = collections.Counter(v["behavior"] for v in r.values()); \
	  cc = collections.Counter(v["behaviorClose"] for v in r.values()); \
	  good = ("OK", "NON-STRICT", "INFORMATIONAL"); \
	  bad = sorted((k for k, v in r.items() if v["behavior"] not in good \
	                or v["behaviorClose"] not in ("OK", "INFORMATIONAL")), key=key); \
	  print("autobahn: %d cases: %s; close: %s" % (len(r), dict(c), dict(cc))); \
	  print("autobahn: not OK: %s" % (" ".join("%s (%s/%s)" % (k, r[k]["behavior"], r[k]["behaviorClose"]) for k in bad) or "none")); \
	  print("autobahn: report in %s" % sys.argv[1].replace("index.json", "index.html")); \
	  sys.exit(1 if bad else 0)' $(AUTOBAHN_DIR)/reports/index.json

# (every venv's build stamp: the in-place .so of each interpreter goes too)
clean:
	rm -rf build src/fulmen/_core*.so $(VENV)/.built $(wildcard .venv*/.built)
