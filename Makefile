# The two commands of the README: `make demo` and `make test`.
# Each creates .venv (if needed) and installs what it needs into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The distributions of this repository, installed editable, in one pip call
# so that rocketman-core's dependencies resolve to these folders.
CORE := -e backends/memory -e backends/threads -e .
ALL := $(CORE) -e relays/redis -e backends/redis -e examples/rocketman-nats

# Every distribution of this repository, for `make wheels`.
DISTRIBUTIONS := . backends/memory backends/threads backends/redis[hiredis] relays/redis examples/rocketman-nats
DIST ?= dist

.PHONY: demo test check install-core install-all bench wheels clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install-core: $(BIN)/python
	$(BIN)/pip install --quiet $(CORE)

install-all: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt $(ALL)

demo: install-core
	$(BIN)/rocketman demo

check: install-all
	$(BIN)/ruff check .
	$(BIN)/mypy --strict rocketman_core backends/memory/rocketman_memory backends/threads/rocketman_threads \
		backends/redis/rocketman_redis relays/redis/rocketman_relay_redis examples/rocketman-nats/rocketman_nats \
		examples/fastapi-app/app.py

test: check
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install-all
	$(BIN)/pip install --quiet -r bench/requirements.txt
	$(BIN)/python -m bench

# Wheels of every distribution and of everything they depend on, in $(DIST):
# `pip install --no-index --find-links dist rocketman-redis` then works on a
# machine without an index (same Python version and platform as this one).
wheels: $(BIN)/python
	rm -rf $(DIST)
	$(BIN)/pip wheel --quiet --wheel-dir $(DIST) $(DISTRIBUTIONS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
