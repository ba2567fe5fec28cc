# Caducée developer entry points. Each target creates the virtualenv it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# System packages (libpq headers, Node, Debian's Chromium for the console's browser test).
SYSTEM_STAMP := $(VENV)/.system-deps-stamp
TEST_SYSTEM_STAMP := $(VENV)/.test-system-deps-stamp
ELEMENT_STAMP := tests/element/node_modules/.installed-stamp
PSC_STAMP := deploy/local/psc/node_modules/.installed-stamp

.PHONY: install up down status test test-fast lint typecheck pytest bench clean

$(STAMP): pyproject.toml deploy/constraints.txt $(SYSTEM_STAMP)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c deploy/constraints.txt -e '.[dev]'
	touch $(STAMP)

# The Element-compatible test client (matrix-js-sdk with Element's Rust crypto).
$(ELEMENT_STAMP): tests/element/package.json tests/element/package-lock.json $(TEST_SYSTEM_STAMP)
	npm ci --prefix tests/element --no-audit --no-fund --loglevel=error
	touch $(ELEMENT_STAMP)

# The demo's stand-in Pro Santé Connect (the oidc-provider library, on Node).
$(PSC_STAMP): deploy/local/psc/package.json deploy/local/psc/package-lock.json $(SYSTEM_STAMP)
	npm ci --prefix deploy/local/psc --no-audit --no-fund --loglevel=error
	touch $(PSC_STAMP)

$(SYSTEM_STAMP):
	bash deploy/system-deps.sh
	mkdir -p $(VENV) && touch $(SYSTEM_STAMP)

$(TEST_SYSTEM_STAMP):
	bash deploy/system-deps.sh test
	mkdir -p $(VENV) && touch $(TEST_SYSTEM_STAMP)

install: $(STAMP) $(ELEMENT_STAMP) $(PSC_STAMP)

## Start the local demo federation in the foreground (Ctrl-C stops it).
up: $(STAMP) $(PSC_STAMP)
	$(BIN)/caducee local up

down: $(STAMP)
	$(BIN)/caducee local down

status: $(STAMP)
	$(BIN)/caducee local status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy bot bridge deploy

pytest: $(STAMP) $(ELEMENT_STAMP) $(PSC_STAMP)
	$(BIN)/pytest -q

## The whole suite: lint, types, tests.
test: lint typecheck pytest

## The unit tier: no homeserver, no bot, no PostgreSQL (tests using them are marked `slow`).
test-fast: $(STAMP)
	$(BIN)/pytest -q -n auto -m "not slow and not postgres"

## Benchmarks with same-run baselines (not part of `make test`).
bench: $(STAMP)
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
