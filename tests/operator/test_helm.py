"""The Helm chart: lint, schema, CRD copy, template + server-side dry-run, install, RBAC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.operator.kube import KubeCluster
from tests.operator.operator_proc import (
    CHART,
    IMAGE_VALUES,
    OPERATOR_NAMESPACE,
    RELEASE,
    Objects,
    OperatorProcess,
    install_chart,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]


def render(kube: KubeCluster, *args: str) -> list[dict]:
    out = kube.helm("template", "t", str(CHART), *IMAGE_VALUES, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_crd_in_chart_is_identical_to_crds_dir():
    chart_crds = sorted(p.name for p in (CHART / "crds").iterdir())
    repo_crds = sorted(p.name for p in (ROOT / "crds").iterdir())
    assert chart_crds == repo_crds
    for name in repo_crds:
        assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), name


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set", "singleNamespace=true"],
        ["--set", "rbac.create=false,serviceAccount.create=false,serviceAccount.name=x"],
    ],
)
def test_helm_lint_strict(kube: KubeCluster, values: list[str]):
    done = kube.helm("lint", "--strict", str(CHART), *IMAGE_VALUES, *values)
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize(
    "values,message",
    [
        (["--set", "replicaCount=2"], "replicaCount"),
        (["--set", "nosuchvalue=1"], "nosuchvalue"),
        (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (["--set", "singleNamespace=yes"], "singleNamespace"),
    ],
)
def test_values_schema_rejects_bad_values(kube: KubeCluster, values: list[str], message: str):
    done = kube.helm("lint", "--strict", str(CHART), *IMAGE_VALUES, *values, check=False)
    assert done.returncode != 0
    assert message in done.stdout + done.stderr


def test_install_without_an_image_says_what_to_set(kube: KubeCluster):
    """No public registry hosts the images, so the chart has no default: helm stops and says
    which value to set and how to build and push the image."""
    done = kube.helm("template", "t", str(CHART), check=False)
    assert done.returncode != 0
    assert "image.repository is not set" in done.stderr
    assert "make push REGISTRY=" in done.stderr and "docs/own-cluster.md" in done.stderr
    rendered = render(kube, "--set", "image.tag=abc")
    dep = next(d for d in rendered if d["kind"] == "Deployment")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "localhost/tfmodel-operator:abc"
    )


def test_chart_defaults_name_no_registry():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["repository"] == ""


def test_chart_notes_explain_crd_upgrades():
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "never upgrades" in notes and "kubectl apply --server-side" in notes
    assert "never upgrades" in (CHART / "README.md").read_text()


@pytest.mark.parametrize("single", [False, True])
def test_template_passes_server_side_dry_run(kube: KubeCluster, namespace: str, single: bool):
    out = kube.helm(
        "template", "dry", str(CHART), *IMAGE_VALUES, "--namespace", namespace, "--include-crds",
        "--set", f"singleNamespace={str(single).lower()}",
    ).stdout  # fmt: skip
    done = kube.kubectl(
        "apply", "--dry-run=server", "--server-side", "-n", namespace, "-f", "-", input=out
    )
    kinds = {line.split("/")[0] for line in done.stdout.splitlines()}
    assert "deployment.apps" in kinds and "serviceaccount" in kinds
    assert ("role.rbac.authorization.k8s.io" in kinds) == single
    assert ("clusterrole.rbac.authorization.k8s.io" in kinds) == (not single)


def test_operator_pod_is_hardened(kube: KubeCluster):
    dep = next(d for d in render(kube) if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "--all-namespaces" in container["args"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"


def test_rbac_is_least_privilege(kube: KubeCluster):
    role = next(d for d in render(kube) if d["kind"] == "ClusterRole")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert not any("*" in item for item in granted)
    assert not any(resource in ("namespaces", "nodes") for _g, resource, _v in granted)
    # Secrets: get by name only (the ones a TFModel's spec.security names, for the operator's
    # probes); no list or watch, so it cannot enumerate them.
    assert {v for g, r, v in granted if r == "secrets"} == {"get"}
    # Read-only where the operator only reads.
    assert {v for g, r, v in granted if r == "pods"} == {"list", "watch"}
    assert {v for g, r, v in granted if r == "persistentvolumeclaims"} == {"get"}
    assert {v for g, r, v in granted if r == "tfmodels"} == {"get", "list", "watch", "patch"}
    # Deleted only when they leave the spec: the HPA and the PDB.
    deletable = {r for g, r, v in granted if v == "delete"}
    assert deletable == {"horizontalpodautoscalers", "poddisruptionbudgets"}
    assert {v for g, r, v in granted if r == "servicemonitors"} == {"get", "create", "patch"}


def test_helm_install_cluster_wide(kube: KubeCluster):
    sa_kubeconfig = install_chart(kube)
    status = kube.helm("status", RELEASE, "-n", OPERATOR_NAMESPACE, "-o", "json").stdout
    assert json.loads(status)["info"]["status"] == "deployed"
    kube.kubectl("get", "clusterrole", RELEASE)
    dep = json.loads(
        kube.kubectl("get", "deployment", RELEASE, "-n", OPERATOR_NAMESPACE, "-o", "json").stdout
    )
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == RELEASE

    def can(*args: str) -> bool:
        done = kube.kubectl("auth", "can-i", *args, kubeconfig=sa_kubeconfig, check=False)
        return done.stdout.strip() == "yes"

    assert can("patch", "deployments.apps", "-n", "anywhere")
    assert can("watch", "tfmodels.serving.tfmodel.io", "--all-namespaces")
    # Secrets by name only (those spec.security names, for the operator's probes): no list.
    assert can("get", "secrets", "-n", "anywhere")
    assert not can("list", "secrets", "-n", "anywhere")
    assert not can("watch", "secrets", "--all-namespaces")
    assert not can("delete", "tfmodels.serving.tfmodel.io", "-n", "anywhere")
    assert not can("create", "pods", "-n", "anywhere")


def test_single_namespace_install_runs_operator_with_role_only(kube: KubeCluster, namespace: str):
    install_chart(kube)  # the CRD (helm skips an existing one in crds/)
    release = "solo"
    done = kube.helm(
        "install", release, str(CHART), *IMAGE_VALUES, "-n", namespace,
        "--set", "singleNamespace=true",
    )  # fmt: skip
    assert "watches TFModels in namespace" in done.stdout
    kube.kubectl("get", "role", f"{release}-tfmodel-operator", "-n", namespace)
    assert (
        kube.kubectl("get", "clusterrole", f"{release}-tfmodel-operator", check=False).returncode
        != 0
    )
    sa = kube.sa_kubeconfig(namespace, f"{release}-tfmodel-operator")
    other = kube.kubectl(
        "auth", "can-i", "patch", "deployments.apps", "-n", "default", kubeconfig=sa, check=False
    )
    assert other.stdout.strip() == "no"

    operator = OperatorProcess(sa, f"--namespace={namespace}").start()
    try:
        objs = Objects(kube, namespace)
        objs.apply((ROOT / "examples" / "single-model.yaml").read_text())
        dep = wait_for(
            lambda: objs.get("deployment", "half-plus-two"), 30, "Deployment", operator.log
        )
        assert dep["metadata"]["ownerReferences"][0]["kind"] == "TFModel"
        wait_for(lambda: objs.condition("half-plus-two", "Ready"), 30, "status", operator.log)
        kube.kubectl("delete", "tfm", "--all", "-n", namespace, "--wait=false")
    finally:
        operator.stop()
    log = operator.log()
    assert "Forbidden" not in log and " 403" not in log, log[-4000:]
