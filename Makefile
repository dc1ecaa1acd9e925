# signalement: every entry point. `make test` and `make demo` set everything up themselves.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SIG     := $(BIN)/signalement

.PHONY: help install lint typecheck test test-unit test-integration test-modern demo bench stack-up stack-down stack-status worker sink clean

help:
	@echo "make test    lint, types, unit + integration tests on a real local Kafka + ClickHouse"
	@echo "make demo    the whole pipeline end to end on the local stack, then tables and report.html"
	@echo "make bench   the benchmark suite (results in bench/results/)"
	@echo "make stack-up | stack-down | stack-status"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,modern]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check streams agents sinks clients tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

stack-up: $(STAMP)
	$(SIG) stack up

stack-down: $(STAMP)
	$(SIG) stack down

stack-status: $(STAMP)
	$(SIG) stack status

test-unit: $(STAMP)
	$(BIN)/pytest -q -m "unit or modern" tests/unit

test-integration: stack-up
	$(BIN)/pytest -q -m integration tests/integration

# one pytest run so its summary line is the last thing printed
test: lint typecheck stack-up
	$(BIN)/pytest -q tests

demo: stack-up
	$(BIN)/python -m streams.demo

bench: stack-up
	$(BIN)/python -m bench all

clean:
	-$(SIG) stack down
	rm -rf $(VENV) .stack .mypy_cache .ruff_cache .pytest_cache
