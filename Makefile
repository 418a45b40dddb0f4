# The README's two commands: `make demo` and `make test`. Both build .venv with what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CI fails below this total coverage of plx/ (tests + the plx processes they start): 92.5% measured
# on 2026-11-26 (485 tests); keep it a little under what the whole suite measures.
COVERAGE_FLOOR ?= 90

.PHONY: demo test lint bench bench-plx clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Python's .pyc files and plx's record code (plx/structs.py) are written once, up front: where
# PYTHONDONTWRITEBYTECODE is set (some CI images), every plx process would otherwise compile every
# module it imports (a quarter of tests/integration/test_run.py's time).
PRECOMPILE = env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m compileall -q plx && \
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -c "import plx.cli, plx.engine, plx.executors.local"

demo: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(PRECOMPILE)
	$(BIN)/plx run graphs/demo.yaml
	@echo
	@echo "Next: . $(BIN)/activate; plx log; plx log last; plx get last metrics -o -"

test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,dask]'
	$(PRECOMPILE)
	$(BIN)/ruff check plx
	$(BIN)/ruff format --check plx
	$(BIN)/mypy plx
	$(BIN)/python -m coverage erase
	@# -q comes from pyproject; a second -q would hide the summary line. coverage measures the plx
	@# processes the tests start too (pyproject: [tool.coverage.run] patch = subprocess).
	$(BIN)/python -m coverage run -m pytest -p no:cacheprovider
	$(BIN)/python -m coverage combine -q
	$(BIN)/python -m coverage report --format=total --fail-under=$(COVERAGE_FLOOR) > /dev/null || { $(BIN)/python -m coverage report --sort=cover | tail -15; echo "coverage below the floor of $(COVERAGE_FLOOR)%"; exit 1; }
	@echo "coverage: $$($(BIN)/python -m coverage report --format=total)% of plx/ (floor $(COVERAGE_FLOOR)%; tests and the plx processes they start)"

# The benchmark suite against make, doit and Snakemake (pinned, in their own venv): writes BENCHMARKS.md.
# Not part of `make test`: figures from a shared machine are noisy. `make bench-plx` runs plx's own micro-benchmarks.
BENCH_VENV := bench/.venv
DOIT_VERSION := 0.37.0
SNAKEMAKE_VERSION := 9.27.1
BENCH_ARGS ?=

$(BENCH_VENV)/bin/snakemake:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/pip install -q doit==$(DOIT_VERSION) snakemake==$(SNAKEMAKE_VERSION)

# plx as its users get it (a regular install, like its peers): an editable one starts ~4 ms later.
bench: $(BENCH_VENV)/bin/snakemake
	$(BENCH_VENV)/bin/pip install -q .
	$(BENCH_VENV)/bin/pip install -q --force-reinstall --no-deps .
	$(BENCH_VENV)/bin/python bench/suite.py $(BENCH_ARGS)

bench-plx: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .plx
