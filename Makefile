# Corral: `make run` runs the reference web app under Corral; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_HOME := $(CURDIR)/.corral-run

.PHONY: setup run test test-fast lint docs bench clean soak

$(STAMP): pyproject.toml examples/webapp/requirements.txt examples/webapp/requirements-test.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' -r examples/webapp/requirements.txt -r examples/webapp/requirements-test.txt
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	@bash examples/run.sh "$(CURDIR)" "$(RUN_HOME)"

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -x -m "not slow"

# The reliability suite for longer (CI runs it with 8 s of chaos per test)
SOAK_SECONDS ?= 120
soak: $(STAMP)
	CORRAL_SOAK_SECONDS=$(SOAK_SECONDS) $(PY) -m pytest -q -p no:cacheprovider -s --timeout=$$(( $(SOAK_SECONDS) * 3 + 120 )) tests/reliability

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/mypy

docs: $(STAMP)
	$(PY) -m corral.config.docs --write
	$(PY) -m corral.tools.protocol_docs --write docs/protocol.md
	$(PY) -m corral.cli.pm2 --write

bench: $(STAMP)
	$(PY) bench/run.py --write docs/benchmarks.md

clean:
	rm -rf $(VENV) .corral-run build dist src/*.egg-info
