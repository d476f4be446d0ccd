# relink: two commands do all the set-up.
#   make book   creates .venv if missing, executes every chapter on PROFILE (default), builds _build/html
#   make test   creates .venv if missing, runs the guards (ruff, mypy, the DP mutation check), the unit tests,
#               then the ci-profile notebooks under nbval
#   make pdf    the book of PROFILE (executed by make book) as one PDF, printed by headless Chromium
PROFILE ?= default
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.relink-installed

.PHONY: book test env lint unit nbval html pdf baselines browser-check paper-dry-run bench clean distclean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

env: $(STAMP)

book: env
	$(PY) -m relink_lib book --profile $(PROFILE)

html: env
	$(PY) -m relink_lib html --profile $(PROFILE)

# the whole book as one PDF (after `make book PROFILE=...`): _build/pdf/$(PROFILE)-relink.pdf and _build/html/relink.pdf;
# needs Debian's chromium and poppler-utils (docs/stack.md). Not part of `make test`.
pdf: env
	$(PY) -m relink_lib pdf --profile $(PROFILE)

test: env lint unit nbval

# the guards: lint and format (rules justified in pyproject.toml), types, and the DP mutation check
lint: env
	$(VENV)/bin/ruff check relink_lib tests benchmarks examples
	$(VENV)/bin/ruff format --check relink_lib tests benchmarks examples
	$(VENV)/bin/mypy

unit: env
	$(PY) -m pytest tests

nbval: env
	$(PY) -m relink_lib nbval

baselines: env
	$(PY) -m relink_lib baselines

paper-dry-run: env
	$(PY) -m relink_lib paper-dry-run

browser-check: env
	$(PY) -m relink_lib browser-check

bench: env
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
	$(PY) benchmarks/summarize.py

clean:
	rm -rf _build

distclean: clean
	rm -rf cache results $(VENV)
