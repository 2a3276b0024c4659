# Two commands for a newcomer: `make demo` and `make test`. Each sets up
# everything it needs (the virtual environment, and any system package) first.

# The interpreter .venv is made from: the system's python3 when it is 3.11 or
# later, else the first python3 on PATH (`make PYTHON=...` chooses another).
# Why the system's first: Debian builds its python3 with profile-guided and
# link-time optimisation and libpython linked in, which pyenv's default build
# is not, and the server's request path takes about 11 % less CPU on it
# (docs/performance.md §3).
ifndef PYTHON
PYTHON := $(firstword $(shell for p in /usr/bin/python3 python3; do \
  $$p -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null && echo $$p; done) python3)
endif
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# A PYTHON that is no Python 3.11 or later stops here, before anything is
# installed or removed.
ifneq ($(shell $(PYTHON) -c 'import sys; print(sys.version_info >= (3, 11))' 2>/dev/null),True)
$(error PYTHON=$(PYTHON) is no Python 3.11 or later; leave it unset, or name one such as python3.11)
endif
# Names the interpreter .venv was made from: another PYTHON makes it again.
MADE_FROM := $(VENV)/.made-from$(subst /,-,$(realpath $(shell command -v $(PYTHON))))

.PHONY: setup demo test lint typecheck unit bench instructions fuzz fuzz-seeds clean

setup: $(STAMP)

# Debian packages: python3-venv and python3-dev (if the Python lacks venv, or the
# headers tinydtls's Python binding builds against); zbar-tools, whose
# zbarimg is the independent QR decoder the tests check our PNGs against;
# libcoap3-bin, whose coap-client is the independent DTLS-PSK peer; openssl,
# for a DTLS handshake with any PSK bytes; and autoconf, automake and libtool,
# which DTLSSocket (tinydtls, aiocoap's DTLS server) needs to build from source;
# nodejs and npm, which run MicroPython's WebAssembly port (package-lock.json);
# chromium, the browser Playwright drives in the console's tests (never downloaded);
# and postgresql, whose initdb and pg_ctl start the tests' private cluster (a
# temporary directory, Unix socket only; the system's own cluster is not used).
SYSTEM_STAMP := $(VENV)/.system-stamp

$(SYSTEM_STAMP):
	@missing=""; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	$(PYTHON) -c 'import os, sysconfig; assert os.path.exists(sysconfig.get_path("include") + "/Python.h")' \
	  2>/dev/null || missing="$$missing python3-dev"; \
	command -v zbarimg >/dev/null || missing="$$missing zbar-tools"; \
	command -v coap-client-openssl >/dev/null || missing="$$missing libcoap3-bin"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v autoreconf >/dev/null || missing="$$missing autoconf"; \
	command -v automake >/dev/null || missing="$$missing automake"; \
	command -v libtoolize >/dev/null || missing="$$missing libtool"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@mkdir -p $(VENV) && touch $@

$(MADE_FROM):
	@mkdir -p $(VENV) && rm -f $(VENV)/.made-from* && touch $@

$(STAMP): pyproject.toml lab/pyproject.toml package-lock.json $(SYSTEM_STAMP) $(MADE_FROM)
	$(PYTHON) -m venv --clear $(VENV)
	@touch $(SYSTEM_STAMP) $(MADE_FROM)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./lab
	npm ci --no-audit --no-fund --silent
	@touch $@

demo: setup
	$(BIN)/keystrap demo

test: setup lint typecheck unit

lint: setup
	$(BIN)/ruff check keystrap lab tests bench fuzz
	$(BIN)/ruff format --check keystrap lab tests bench fuzz

typecheck: setup
	$(BIN)/mypy --strict keystrap lab/keystrap_lab tests bench fuzz

# Two workers (pytest-xdist), one per core of CI's machine: most process-based
# tests spend their time waiting on timers and child processes, so a second
# test runs meanwhile; worksteal rebalances when one worker draws the long ones.
unit: setup
	$(BIN)/pytest -n 2 --dist worksteal

# The quick benchmarks; bench/services.py, server_scale.py, oob.py, faults.py and
# flood.py take longer and are run on their own (README, docs/performance.md).
bench: setup
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/core.py
	$(BIN)/python bench/dtls.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/compare.py

# The SBS's instructions per bootstrap, counted by valgrind's callgrind: the one
# figure the machine's load does not move (bench/instructions.py). Valgrind is
# installed here if missing, as the tests' system packages are above.
instructions: setup
	@command -v valgrind >/dev/null || { echo "installing Debian packages: valgrind"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }
	$(BIN)/python bench/instructions.py

FUZZ_SECONDS ?= 600
FUZZ_TARGETS := wire oob qr config settings

# Each target starts from the committed seeds (fuzz/seeds/TARGET, made by
# fuzz/make_seeds.py); what it finds goes to fuzz/corpus/TARGET (not committed).
fuzz: setup
	$(BIN)/python -m pip install --quiet -e '.[fuzz]'
	@for target in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$target; \
	  echo "fuzzing $$target for $(FUZZ_SECONDS) s"; \
	  $(BIN)/python fuzz/fuzz_$$target.py fuzz/corpus/$$target fuzz/seeds/$$target \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 | tail -n 12 || exit 1; \
	done

fuzz-seeds: setup
	$(BIN)/python fuzz/make_seeds.py

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis
