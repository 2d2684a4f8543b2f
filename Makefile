# Everything installs into ./.venv from the project's own files; only Python >= 3.11
# and make are needed on the machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CHECK_PYTHON := $(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'

.PHONY: run test lint format bench bench-smoke soak clean

# gateway/__init__.py holds the version: a new one reinstalls, so the installed metadata follows.
$(STAMP): pyproject.toml gateway/__init__.py
	@$(CHECK_PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The listen address is checked first (standard library only): a taken GATEWAY_PORT
# stops `run` at once, before any install.
run:  ## the gateway on the embedded default (Postgres + SeaweedFS under ./.gateway-data), with the demo project
	@$(CHECK_PYTHON)
	@$(PYTHON) -m gateway.portcheck
	@$(MAKE) --no-print-directory $(STAMP)
	$(VENV)/bin/artifact-gateway dev --demo

test: $(STAMP)  ## the whole test suite against real Postgres and SeaweedFS
	@VENV=$(VENV) scripts/system-deps.sh
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)  ## benchmarks in loadtests/ (~20 min; prints a table, writes loadtests/results/*.json)
	@$(PY) -c 'import mlflow, boto3' 2>/dev/null || $(PY) -m pip install --quiet -e '.[dev,bench]' \
		|| echo "the bench extra did not install: the mlflow scenario will be skipped"
	$(PY) -m loadtests.run --wait-quiet 120

bench-smoke: $(STAMP)  ## the benchmarks with tiny sizes (< 1 min): proves they still run
	$(PY) -m loadtests.run --quick

soak: $(STAMP)  ## a 10-minute mixed workload: RSS, descriptors, connections sampled
	$(PY) -m loadtests.soak --minutes 10

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
