"""Fixtures for the operator tests: one real kube-apiserver (+ etcd) per session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.operator.kube import KubeCluster, KubeHarnessError, start_cluster, unique_name
from tests.operator.operator_proc import Objects, OperatorProcess, install_chart


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeCluster]:
    """A running kube-apiserver with admin kubeconfig, kubectl and helm.

    Fails (never skips) when the server cannot be built or started: the operator
    tests are meaningless without a real API server.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="tfmodel-kube-"))
    try:
        cluster = start_cluster(data_dir)
    except KubeHarnessError as exc:
        shutil.rmtree(data_dir, ignore_errors=True)
        pytest.fail(f"cannot provide the test Kubernetes API server: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def namespace(kube: KubeCluster, request: pytest.FixtureRequest) -> str:
    """A fresh namespace (with its "default" ServiceAccount) for one test."""
    return kube.create_namespace(unique_name(request.node.name, max_len=40))


@pytest.fixture(scope="module")
def operator(kube: KubeCluster) -> Iterator[OperatorProcess]:
    """The operator, run from the chart's RBAC identity, one process per test module."""
    proc = OperatorProcess(install_chart(kube)).start()
    try:
        yield proc
    finally:
        proc.stop()
        log = proc.log()
        assert "Forbidden" not in log and " 403" not in log, log[-4000:]


@pytest.fixture
def objs(kube: KubeCluster, namespace: str, operator: OperatorProcess) -> Iterator[Objects]:
    objects = Objects(kube, namespace)
    yield objects
    # Keep the operator's timer load small for later tests.
    kube.kubectl("delete", "tfm", "--all", "-n", namespace, "--wait=false", check=False)
