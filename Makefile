# The two commands a fresh machine needs: `make demo` and `make test`.
# Each creates (or reuses) a local virtual environment and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BASE   := $(VENV)/.einrel-base
STAMP  := $(VENV)/.einrel-installed

.PHONY: demo test fuzz lint bench clean docs

# What the demo needs: einrel and the CPU build of torch.
$(BASE): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $(BASE)

# What the tests need on top: the dev tools and Ray.
$(STAMP): $(BASE)
	$(PY) -m pip install -q -e '.[dev,ray]'
	touch $(STAMP)

demo: $(BASE)
	$(PY) -m einrel demo

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples docs
	$(PY) -m ruff format --check src tests benchmarks examples docs
	$(PY) -m mypy
	$(PY) -m pytest -n 2 --dist loadgroup

# The differential harness on many random graphs (FUZZ_EXAMPLES of them, default 50000).
FUZZ_EXAMPLES ?= 50000
fuzz: $(STAMP)
	$(PY) -m pytest tests/test_differential.py -n 2 --fuzz-examples $(FUZZ_EXAMPLES)

# The API reference (pdoc) in docs/api/; any warning fails the build.
docs: $(STAMP)
	$(PY) docs/build_api.py docs/api

lint: $(STAMP)
	$(PY) -m ruff check --fix src tests benchmarks examples docs
	$(PY) -m ruff format src tests benchmarks examples docs

clean:
	rm -rf $(VENV) build dist docs/api src/*.egg-info .pytest_cache .ruff_cache
