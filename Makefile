# Two commands for a newcomer: `make demo` and `make test`. Each sets up
# everything it needs (the virtual environment, and any system package) first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test lint typecheck unit bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || \
	  { echo "installing python3-venv (Debian)"; apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: setup
	$(BIN)/keystrap demo

test: setup lint typecheck unit

lint: setup
	$(BIN)/ruff check keystrap tests bench
	$(BIN)/ruff format --check keystrap tests bench

typecheck: setup
	$(BIN)/mypy --strict keystrap

unit: setup
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/core.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
