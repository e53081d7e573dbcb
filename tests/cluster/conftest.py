"""The `cluster` tests: one real single-node Kubernetes cluster per session (tests/cluster)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tfmodel_devcluster.cluster import Cluster, ClusterError, start
from tfmodel_devcluster.demo.steps import OPERATOR_NS, RELEASE, install_operator


def pytest_configure(config: pytest.Config) -> None:
    # Registered here, not in pyproject.toml: pyproject is the images' dependency layer key.
    config.addinivalue_line(
        "markers", "cluster: runs on the real single-node Kubernetes cluster (root, containerd)"
    )


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """kube-apiserver+etcd, controller-manager, scheduler, kubelet on containerd, kube-proxy.

    Fails (never skips) when the cluster cannot be built or started: select the other tests
    with `-m "not cluster"` on a machine that cannot run it.
    """
    try:
        running = start()
    except ClusterError as exc:
        pytest.fail(f"cannot start the test cluster: {exc}", pytrace=False)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[None]:
    """The operator's helm release for one test module (the demo's install, status every 2 s)."""
    install_operator(cluster)
    yield
    cluster.helm("uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait", check=False)
