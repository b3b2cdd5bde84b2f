# kitrade — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-fast lint format bench clean browser-deps

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	# torch is pinned to the CPU build in pyproject.toml; see README "GPU" for CUDA.
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)  ## create or update .venv with kitrade and its test dependencies

run: $(STAMP)  ## start the whole platform on its embedded defaults
	$(BIN)/kitrade up

test: $(STAMP)  ## the whole test suite
	$(BIN)/python -m pytest

test-fast: $(STAMP)  ## skip the slow suites
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check kitrade tests scripts
	$(BIN)/ruff format --check kitrade tests scripts

format: $(STAMP)
	$(BIN)/ruff format kitrade tests scripts
	$(BIN)/ruff check --fix kitrade tests scripts

bench: $(STAMP)
	$(BIN)/python scripts/bench_ingest.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
