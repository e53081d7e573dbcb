# Two commands do all set-up on a fresh machine:
#   make demo   -- export a model, serve it, query it, hot-load v2 (the TF Serving tutorial)
#   make test   -- lint + the whole test suite (what CI runs)
VENV ?= .venv
PYTHON ?= python3

.PHONY: setup demo test lint bench bench-quick
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[server,operator,dev]'
	touch $@

demo: setup
	$(VENV)/bin/tfmodel-demo walkthrough

test: setup
	bash scripts/test.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The whole benchmark matrix (tfmodel, MLServer, KServe, the limits, the compute-bound CNN);
# writes docs/benchmarks.md. `make bench-quick` (or BENCH_ARGS=--quick) takes a few minutes.
BENCH_ARGS ?=
bench: setup
	$(VENV)/bin/python -m bench.run $(BENCH_ARGS)

bench-quick: setup
	$(VENV)/bin/python -m bench.run --quick $(BENCH_ARGS)
