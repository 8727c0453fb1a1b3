# The front door: `make run` and `make test`. Everything they need is installed into .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test browser bench lint format clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## run: start a local etcd on 127.0.0.1:2379 (unless one listens there) and sync capabilities/ in watch mode
run: install
	@$(BIN)/python scripts/run-local.py

## test: lint, type-check, check the layering, then every test (integration tests start their own etcd);
## the interop tests need the chora-base corpus: $CHORA_BASE_CORPUS, else ../shared/fixtures/chora-base
test: install lint browser
	$(BIN)/pytest

## browser: Debian's chromium, which the web view's tests drive headless (nothing if it is there)
browser:
	@bash scripts/install-browser.sh

## bench: the benchmark of issue 5 (48, 1,000 and 10,000 capabilities; a table, and JSON in bench/results/);
## its options go in ARGS, e.g. make bench ARGS="--sizes 50000"
bench: install
	$(BIN)/python bench/run.py $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/python scripts/check-module-length.py
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .local .mypy_cache .ruff_cache .pytest_cache .hypothesis
