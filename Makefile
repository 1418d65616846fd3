# `make demo` and `make test` each bootstrap .venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test lint unit browser-deps migration clean audit

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# make demo PORT=9000 picks the port; make demo RESET=1 starts the demo data over.
demo: $(STAMP)
	$(BIN)/returnhub demo $(if $(PORT),--port $(PORT)) $(if $(RESET),--reset)

# The browser tests drive Debian's chromium (playwright's own browser download
# is not used), with CJK fonts so Chinese renders; the bench test drives wrk, the
# load client `returnhub bench` prefers. Installed here when missing and we are
# root (CI, fresh machines).
browser-deps:
	@if [ ! -x $(CHROMIUM) ] || [ ! -d /usr/share/fonts/opentype/noto ] || ! command -v wrk >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq chromium fonts-noto-cjk wrk >/dev/null; \
	  else echo "note: chromium, fonts-noto-cjk or wrk missing and not root; their tests skip"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# One pytest worker per core (pytest-xdist), a test file to a worker; each worker has
# its own PostgreSQL database (tests/conftest.py), so the engines' tests never collide.
unit: $(STAMP)
	$(BIN)/pytest -q -n auto --dist loadfile

test: $(STAMP) browser-deps lint unit

# Dependency audit (.ci/audit.py): pip-audit --strict over .venv against PyPI's or OSV's
# advisory data; fails on a known vulnerability with a fix available. When neither
# service is reachable it prints NOT RUN (never a pass) and, unless
# RETURNHUB_AUDIT_REQUIRED=1, goes on: a machine without them can still test.
audit: $(STAMP)
	@$(BIN)/python .ci/audit.py; code=$$?; \
	if [ $$code = 3 ] && [ "$${RETURNHUB_AUDIT_REQUIRED:-0}" != 1 ]; then \
	  echo "warning: dependency audit NOT RUN (no advisory service reachable);" \
	    "RETURNHUB_AUDIT_REQUIRED=1 makes this fail" >&2; exit 0; fi; \
	exit $$code

# A new alembic revision from the model diff: make migration MSG="add x to cases"
migration: $(STAMP)
	@test -n "$(MSG)" || { echo 'usage: make migration MSG="what changed"'; exit 2; }
	rm -f var/migration-base.db
	$(BIN)/python -c "import asyncio, sys; from storage.db import Database; \
	from storage.migrate import upgrade, autogenerate; \
	db = Database('sqlite+aiosqlite:///var/migration-base.db'); \
	asyncio.run(upgrade(db)); asyncio.run(autogenerate(db, sys.argv[1]))" "$(MSG)"
	$(BIN)/ruff format -q storage/migrations/versions
	$(BIN)/ruff check --fix -q storage/migrations/versions

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache build *.egg-info
