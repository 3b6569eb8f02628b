# Nurture: the two commands that matter are `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=
# Tests run on every core (pytest-xdist): much of the suite waits on subprocesses, a browser and
# databases. PYTEST_WORKERS=0 runs them in this one process, e.g. to use a debugger.
PYTEST_WORKERS ?= auto

.PHONY: install run test test-fast bench lock migrate clean

install: $(STAMP)

# Reinstall only when the lock file or the project metadata changes.
$(STAMP): requirements.lock pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	# The project itself on the venv's path, so `.venv/bin/python -m core run` works from any folder.
	$(BIN)/python -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "nurture.pth").write_text("$(CURDIR)\n")'
	touch $(STAMP)

migrate: install
	$(BIN)/python -m core db upgrade

run: migrate
	$(BIN)/python -m core run

test: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal -m "not e2e" $(PYTEST_ARGS)

# The quick benchmarks; bench/dashboard.py, bench/notion.py and bench/scale.py take longer (see --help).
bench: install
	$(BIN)/python bench/intake.py --client httpx
	$(BIN)/python bench/intake.py --client raw --baseline
	$(BIN)/python bench/dispatch.py

# Re-pin every dependency (needs uv: pip install uv).
lock:
	uv pip compile requirements.in --python-version 3.11 --generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache
