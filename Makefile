# The README's two commands: `make demo` and `make test`. Both build .venv with what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

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

bench: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .plx
