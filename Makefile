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

.PHONY: setup lock demo demo-down demo-server test lint images push bench bench-quick bench-operator
setup: $(VENV)/.installed

# constraints.txt pins every dependency of every extra (the lock): the venv, both images
# (Dockerfile.server, Dockerfile.operator) and CI install through it.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[server,operator,demo,dev]'
	touch $@

# Regenerate the lock after a dependency changes in pyproject.toml (tests/project/test_lock.py
# fails until then). Linux x86_64, Python 3.11: what the venv, the images and CI run.
UV_VERSION ?= 0.13.10
lock:
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	test -x $(VENV)/bin/uv || $(VENV)/bin/pip install --quiet 'uv==$(UV_VERSION)'
	$(VENV)/bin/uv pip compile pyproject.toml --all-extras --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock' \
	  --quiet -o constraints.txt

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

# The two images for a cluster of your own (docs/own-cluster.md), with docker, podman or buildah:
#   make images [REGISTRY=registry.example.com/ml] [TAG=...]   then   make push REGISTRY=...
REGISTRY ?=
images:
	REGISTRY='$(REGISTRY)' bash scripts/images.sh build

push: images
	REGISTRY='$(REGISTRY)' bash scripts/images.sh push

# The whole benchmark matrix (tfmodel, MLServer, KServe, the limits, the compute-bound CNN);
# writes docs/benchmarks.md. `make bench-quick` (or BENCH_ARGS=--quick) takes a few minutes.
BENCH_ARGS ?=
bench: setup
	$(VENV)/bin/python -m bench.run $(BENCH_ARGS)

bench-quick: setup
	$(VENV)/bin/python -m bench.run --quick $(BENCH_ARGS)

# The operator at scale (docs/operator-at-scale.md): N TFModels against the test API server.
# OPERATOR_BENCH_ARGS='--counts 50,200,1000' or '--before ../main/operator' (side by side).
OPERATOR_BENCH_ARGS ?= --counts 50,200
bench-operator: setup
	$(VENV)/bin/python -m bench.operator $(OPERATOR_BENCH_ARGS)
