# One way to do each chore. Every target creates the virtual environment from a lock first:
# `make run` from the runtime lock alone; `make test`, `lint` and `bench` add the development lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed

.PHONY: run test lint bench lock check-locks clean

# uv (itself pinned by hash) installs the locks: it downloads in parallel and compiles no
# bytecode up front, so a fresh clone answers in under a minute where pip alone took minutes.
UV := $(BIN)/uv pip install --quiet --python $(BIN)/python

$(BIN)/uv: requirements/uv.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/uv.lock
	@touch $(BIN)/uv

$(RUNTIME): requirements/prod.lock pyproject.toml $(BIN)/uv
	$(UV) --require-hashes -r requirements/prod.lock
	$(UV) --no-deps -e .
	@touch $(RUNTIME)

# This step compiles the bytecode of every installed package once: where PYTHONDONTWRITEBYTECODE
# is set (as in many containers), each payhook process the suite starts would otherwise compile
# everything it imports again, seconds of CPU each.
$(STAMP): requirements/dev.lock $(RUNTIME)
	$(UV) --require-hashes --compile-bytecode -r requirements/dev.lock
	@touch $(STAMP)

run: $(RUNTIME)  ## Start the service on the embedded default (SQLite, in-process executor).
	$(BIN)/payhook serve

# Most of the suite's time is waiting (delays, servers starting), so all but the real_time tests
# run in TEST_WORKERS pytest-xdist processes, a module's tests on one worker (tests/conftest.py),
# each worker with its own PostgreSQL and Redis. The real_time tests (outages, partitions, kill -9
# on a clock) then run alone, one after another, as their time bounds assume. Coverage adds up.
# --no-loadscope-reorder keeps the collection order, which starts with the long end-to-end files.
TEST_WORKERS ?= 3
test: $(STAMP)  ## The whole suite; the harness starts throwaway PostgreSQL and Redis itself.
	$(BIN)/python -m pytest -m "not real_time" -n $(TEST_WORKERS) --dist loadgroup \
		--no-loadscope-reorder --cov --cov-report=
	$(BIN)/python -m pytest -m real_time --cov --cov-append \
		--cov-report=term:skip-covered --cov-fail-under=85

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# After changing dependencies in pyproject.toml (needs uv: `pip install uv`). --universal keeps
# platform markers (uvloop only where it exists), so the locks install on Linux, macOS and Windows.
lock:  ## Re-resolve the locked dependencies, keeping every pin that still fits.
	uv pip compile pyproject.toml --universal --extra dev --python-version 3.11 --generate-hashes -o requirements/dev.lock
	uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes -o requirements/prod.lock
	echo uv | uv pip compile - --universal --python-version 3.11 --generate-hashes -o requirements/uv.lock

check-locks: $(RUNTIME)  ## Download the runtime locks' wheels for Windows and macOS (network).
	$(BIN)/python .ci/check_locks.py requirements/uv.lock requirements/prod.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage

bench: $(STAMP)  ## Speed targets against a ceiling measured in the same run (several minutes).
	@command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)
