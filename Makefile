# kitrade — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium
# Optional extra package index for torch. Empty (default): torch comes from PyPI, whose Linux
# wheels are the CUDA build (several GB, they also run on CPU). CPU-only machines:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
# (about 200 MB); a given CUDA version: TORCH_INDEX=https://download.pytorch.org/whl/cu128.
TORCH_INDEX ?=
PIP_INDEX := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))

.PHONY: install run test test-fast check lint format bench clean browser-deps constraints

# constraints.txt: the versions the tests passed with (see README "Installation").
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -c constraints.txt $(PIP_INDEX) -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)  ## create or update .venv with kitrade and its test dependencies

run: $(STAMP)  ## start the whole platform on its embedded defaults
	$(BIN)/kitrade up

# Test files spread over both cores (each worker its own PostgreSQL, Ray clusters, ports and
# temp dirs); TEST_WORKERS=0 runs them one after another in this process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: $(STAMP) browser-deps  ## the whole test suite
	$(PYTEST)

test-fast: $(STAMP)  ## skip the slow suites
	$(PYTEST) -m "not slow"

# The dashboard's browser tests drive Debian's chromium with Playwright (`playwright install`
# downloads browsers from a CDN; the Debian package needs only apt).
browser-deps:  ## install Debian's chromium for the browser tests when it is missing
	@if [ -x "$(CHROMIUM)" ] || [ "$$KITRADE_SKIP_BROWSER" = "1" ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	else \
		echo "browser-deps: $(CHROMIUM) is missing and this is not root with apt-get:" \
			"install Debian's chromium, or set KITRADE_SKIP_BROWSER=1 to skip the browser tests" >&2; \
	fi

check: $(STAMP)  ## lint, formatting and types (configured in pyproject.toml); CI runs it first
	$(BIN)/ruff check kitrade tests scripts
	$(BIN)/ruff format --check kitrade tests scripts
	$(BIN)/mypy kitrade

lint: $(STAMP)
	$(BIN)/ruff check kitrade tests scripts
	$(BIN)/ruff format --check kitrade tests scripts

format: $(STAMP)
	$(BIN)/ruff format kitrade tests scripts
	$(BIN)/ruff check --fix kitrade tests scripts

bench: $(STAMP)
	$(BIN)/python scripts/bench_ingest.py

constraints:  ## write constraints.txt from the current .venv (after the tests pass)
	@{ sed -n '1,/^[^#]/{/^#/p}' constraints.txt; \
	  $(BIN)/python -m pip freeze --exclude-editable | sed -E 's/^(torch==[^+]*)\+.*/\1/'; } \
	  > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
