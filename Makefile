# The two quick-start commands of the README, and what CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# 1. install and watch the sidecar judge a replayed two-replica Keycloak story
demo: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/keycloak-sidecar demo

# 2. install everything and run the whole test suite (what .ci/run runs)
test: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	bash .ci/install-tools.sh
	bash .ci/build-kubeapiserver.sh --if-possible >/dev/null
	$(MAKE) lint typecheck unit

lint:
	$(BIN)/ruff check sidecar tests benchmarks
	$(BIN)/ruff format --check sidecar

typecheck:
	$(BIN)/mypy

unit:
	$(BIN)/python -m pytest

# the benchmark suite (issue 6): installs mtail, wrk, hyperfine and time when missing
bench: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/python benchmarks/run.py

bench-quick: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/python benchmarks/run.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
