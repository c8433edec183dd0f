# The newcomer's path: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: install run test bench chromium lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

# Starts A2I Local (seeded), moto's S3, a Celery worker and beat and the web
# server; Ctrl-C stops them all.
run: install
	$(BIN)/python scripts/run.py

# ruff, configured in pyproject.toml; `make test` runs it first, so CI fails on a lint error.
lint: install
	$(BIN)/ruff check .

# Browser tests drive Debian's chromium; install it when missing and we can.
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed: browser tests will be skipped (apt-get install chromium)"; fi; }

# The suite runs on PostgreSQL when one answers on 127.0.0.1 and DATABASE_URL is unset
# (as in CI and production); otherwise on SQLite, where the tests that start a real
# Celery worker are skipped (a worker cannot open the in-memory SQLite test database).
# PYTEST_WORKERS pytest-xdist workers (worksteal: the fuzz tests take minutes each);
# PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
test: install chromium lint
	@if [ -z "$$DATABASE_URL" ] && command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1; then \
	  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/a2i_dashboard; \
	  echo "make test: PostgreSQL at $$DATABASE_URL (pytest-django creates test_a2i_dashboard)"; \
	fi; \
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var/*.sqlite3* var/staticfiles
