# One way to do each chore. Every target creates the virtual environment from the lock first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench lock clean

$(STAMP): requirements/dev.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

run: $(STAMP)  ## Start the service on the embedded default (SQLite, in-process executor).
	$(BIN)/payhook serve

test: $(STAMP)  ## The whole suite; the harness starts throwaway PostgreSQL and Redis itself.
	$(BIN)/python -m pytest --cov --cov-report=term:skip-covered --cov-fail-under=85

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

lock:  ## Re-resolve the locked dependencies (needs uv).
	uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements/dev.lock
	uv pip compile pyproject.toml --python-version 3.11 --generate-hashes -o requirements/prod.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage

bench: $(STAMP)  ## Speed targets against a ceiling measured in the same run (several minutes).
	@command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)
