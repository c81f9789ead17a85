# The two quick-start commands (`make run`, `make test`) and `make bench` each build .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench chaos soak clean chromium mutate

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/wa-archive dev

# The browser tests drive Debian's chromium package; install it when it is missing (as root, or
# through sudo when there is one).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# Lint and type-check first: they take seconds. The suite runs in three processes (each starts its own
# Temporal, PostgreSQL and S3 on free ports); tests that must share one process are grouped (xdist_group).
test: $(STAMP) chromium lint
	$(BIN)/python -m pytest -n 3 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# `make bench SCALE=10000000`: the scale run (bench/scale.py) instead of the default measurements.
bench: $(STAMP)
	$(BIN)/python -m bench $(if $(SCALE),scale $(SCALE))

# Fault scenarios against the archive run as separate processes (chaos/): a table and chaos/results/latest.json.
chaos: $(STAMP)
	$(BIN)/python -m chaos

# A steady load for SOAK_MINUTES (the real soak: make soak SOAK_MINUTES=60), sampled every minute:
# chaos/results/soak-latest.json and soak-latest.png.
SOAK_MINUTES ?= 10
soak: $(STAMP)
	$(BIN)/python -m chaos soak --minutes $(SOAK_MINUTES)

# Each curated mutation applied to a scratch copy, its named tests run there (long: not part of `make test`).
mutate: $(STAMP)
	$(BIN)/python -m mutate

clean:
	rm -rf $(VENV) .pytest_cache bench/results chaos/results mutate/results
