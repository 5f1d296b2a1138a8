# One way to do each chore. Every target creates the virtual environment from a lock first:
# `make run` from the runtime lock alone; `make test`, `lint` and `bench` add the development lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed

.PHONY: run test lint bench lock check-locks clean

$(RUNTIME): requirements/prod.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/prod.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(RUNTIME)

$(STAMP): requirements/dev.lock $(RUNTIME)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	@touch $(STAMP)

run: $(RUNTIME)  ## Start the service on the embedded default (SQLite, in-process executor).
	$(BIN)/payhook serve

test: $(STAMP)  ## The whole suite; the harness starts throwaway PostgreSQL and Redis itself.
	$(BIN)/python -m pytest --cov --cov-report=term:skip-covered --cov-fail-under=85

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# After changing dependencies in pyproject.toml (needs uv: `pip install uv`). --universal keeps
# platform markers (uvloop only where it exists), so the locks install on Linux, macOS and Windows.
lock:  ## Re-resolve the locked dependencies, keeping every pin that still fits.
	uv pip compile pyproject.toml --universal --extra dev --python-version 3.11 --generate-hashes -o requirements/dev.lock
	uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes -o requirements/prod.lock

check-locks: $(RUNTIME)  ## Download the runtime lock's wheels for Windows and macOS (network).
	$(BIN)/python .ci/check_locks.py requirements/prod.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage

bench: $(STAMP)  ## Speed targets against a ceiling measured in the same run (several minutes).
	@command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)
