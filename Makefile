# The README's two commands: `make demo` and `make test`. Both build .venv with what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench bench-plx clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

demo: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/plx run graphs/demo.yaml
	@echo
	@echo "Next: . $(BIN)/activate; plx log; plx log last; plx get last metrics -o -"

test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,dask]'
	$(BIN)/ruff check plx
	$(BIN)/ruff format --check plx
	$(BIN)/mypy plx
	$(BIN)/python -m pytest -p no:cacheprovider  # -q comes from pyproject; a second -q would hide the summary line

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

bench: $(BENCH_VENV)/bin/snakemake
	$(BENCH_VENV)/bin/pip install -q -e .
	$(BENCH_VENV)/bin/python bench/suite.py $(BENCH_ARGS)

bench-plx: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .plx
