# make demo   install everything, then run one archive window on local infrastructure
# make test   install everything, then run the test suite
# make lint   ruff

VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint install clean

demo: install
	$(PY) -m shared.cli demo

test: install
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || "$$(scripts/find-python313)" -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

clean:
	rm -rf $(VENV) node_modules .demo .pytest_cache test-artifacts
