# make demo   install everything, then run one archive window on local infrastructure
# make test   install everything, then run the test suite
# make soak   install everything, then push ~20,000 records through the local stack with faults
#             injected; fails on any duplicate or lost record (options: make soak SOAK_ARGS="--records 1500",
#             see python -m bench.soak --help)
# make bench  install everything, then measure every figure of docs/benchmarks.md beside its budget
#             (a few minutes; options: make bench BENCH_ARGS="--only a,c" or "--json", see python -m bench --help)
# make scale  install everything, then measure the connector at a bank's volume (issue 16): storage operations
#             and dollars per archived pair, CPU per record, peak memory over a big window, Azure's limits
#             (about ten minutes; options: make scale SCALE_ARGS="--quick" or "--json", see python -m bench.scale --help)
# make lint   ruff, then pyright (`make types`); CI runs it before the tests and fails on any finding
# make types  pyright alone (pinned in package.json; settings in pyproject.toml): standard everywhere, strict
#             on shared/domain and shared/service, so adapters and fakes cannot drift from their ports
# make audit  known vulnerabilities in every pinned requirements file and what they pull in (scripts/pip-audit;
#             accepted ones, each with its reason and review date, in .ci/pip-audit-exceptions.toml)

VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test soak bench scale lint types audit install clean

demo: install
	$(PY) -m shared.cli demo

test: install
	$(PY) -m pytest

soak: install
	$(PY) -m bench.soak $(SOAK_ARGS)

bench: install
	$(PY) -m bench $(BENCH_ARGS)

scale: install
	$(PY) -m bench.scale $(SCALE_ARGS)

lint: install
	$(PY) -m ruff check .
	node_modules/.bin/pyright

types: install
	node_modules/.bin/pyright

audit:
	scripts/pip-audit

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || "$$(scripts/find-python313)" -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$$(grep -E '^pip==' requirements-dev.txt)"
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

clean:
	rm -rf $(VENV) .venv-audit node_modules .demo .pytest_cache test-artifacts
