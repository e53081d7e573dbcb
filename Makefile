# Two commands do all set-up on a fresh machine:
#   make demo   -- the operator, a TFModel's pods and a canary rollout on the embedded
#                  single-node cluster (root; KEEP=1 leaves the cluster up, make demo-down
#                  stops it)
#   make test   -- lint + the whole test suite (what CI runs)
# make demo-server: the server-only TF Serving tutorial walk-through (no cluster, no root).
VENV ?= .venv
PYTHON ?= python3
KEEP ?=
DEMO_API_PORT ?= 16443

.PHONY: setup demo demo-down demo-server test lint bench bench-quick
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[server,operator,demo,dev]'
	touch $@

demo: setup
	$(VENV)/bin/python -m tfmodel_devcluster.demo cluster --api-port=$(DEMO_API_PORT) $(if $(filter-out 0,$(KEEP)),--keep)

demo-down: setup
	$(VENV)/bin/python -m tfmodel_devcluster.demo down

demo-server: setup
	$(VENV)/bin/python -m tfmodel_devcluster.demo walkthrough

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
