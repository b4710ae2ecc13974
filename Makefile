# Two entry points: `make demo` runs nurture end to end on SQLite with a local SMTP capture;
# `make test` runs the test suite. Both create ./.venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench

$(BIN)/nurture: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/nurture

demo: $(BIN)/nurture
	$(BIN)/nurture demo

test: $(BIN)/nurture
	$(BIN)/pytest

lint: $(BIN)/nurture
	$(BIN)/ruff check src tests
	$(BIN)/mypy src

bench: $(BIN)/nurture
	$(BIN)/python bench/run.py
