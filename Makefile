# One dev loop for people and CI. `make run` and `make test` are the two commands a new
# user needs; everything else is what CI runs, in order (see .ci/run).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Local development runs with DEBUG on unless told otherwise: it supplies a throwaway
# SECRET_KEY and the dev webhook key. Production sets DEBUG=false and real secrets.
export DEBUG ?= true

.PHONY: install migrate run test lint fmt typecheck migrations-check check bench-webhook clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	$(PY) manage.py migrate --noinput

# The task worker runs beside the server, so side effects (notifications, forwarding,
# recordings) happen locally too. Ctrl-C reaches both (one process group) and the worker
# finishes its current task; if the server stops by itself, the EXIT trap stops the worker
# the same way. The worker runs without autoreload so that one signal means one clean stop.
run: migrate
	$(PY) manage.py outbox_requeue
	@trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT; \
	trap 'wait $$worker 2>/dev/null; exit 130' INT; \
	trap 'exit 143' TERM; \
	$(PY) manage.py db_worker --no-reload & worker=$$!; \
	$(PY) manage.py runserver $(HOST):$(PORT)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: install
	$(VENV)/bin/mypy .

migrations-check: install
	$(PY) manage.py makemigrations --check --dry-run

check: lint typecheck migrations-check test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test_retellhub_*.sqlite3*
