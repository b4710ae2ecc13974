# Two entry points: `make demo` runs nurture end to end on SQLite with a local SMTP capture, then
# serves the dashboard on the result until Ctrl-C (`nurture demo --no-serve` stops after the
# summary); `make test` runs the test suite. Both create ./.venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-loaded lint bench

$(BIN)/nurture: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/nurture

demo: $(BIN)/nurture
	$(BIN)/nurture demo

test: $(BIN)/nurture
	$(BIN)/pytest

# The suite with both cores kept busy by two CPU-bound processes (ended with the run, and
# after two hours at most): the tests wait for conditions, never for fixed times, so they
# pass on a loaded machine too.
test-loaded: $(BIN)/nurture
	@trap 'kill $$busy 2>/dev/null' EXIT; busy=""; \
	for core in 1 2; do timeout 7200 $(BIN)/python -c 'while 1: pass' & busy="$$busy $$!"; done; \
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(BIN)/nurture
	$(BIN)/ruff check src tests
	$(BIN)/mypy src

# Every benchmark in one run (bench/suite.py): the sections on SQLite, the same and the relay,
# scale-out and import ones on the local PostgreSQL server ($(BENCH_PG), its schema dropped and
# rebuilt), then the data-side ones on a database of 1M leads, 10M events and 5M sends built
# in $(BENCH_PG_BIG) (set NURTURE_BENCH_PG_BIG_URL to reuse one already built). Ends with one
# table of every row and each section's time; under an hour on a quiet 2-core machine.
# BENCH_ARGS=--quick for a smoke run, --plan for the plan and estimate only.
BENCH_PG ?= postgresql+psycopg://postgres@127.0.0.1:5432/nurture_bench
BENCH_PG_BIG ?= postgresql+psycopg://postgres@127.0.0.1:5432/nurture_bench_big
bench: $(BIN)/nurture
	$(BIN)/python bench/suite.py --pg $(BENCH_PG) --pg-big $(or $(NURTURE_BENCH_PG_BIG_URL),$(BENCH_PG_BIG)) $(BENCH_ARGS)
