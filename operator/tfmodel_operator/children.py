"""Everything a TFModel owns, as manifests: the single entry point of the pure builders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import names
from .configmap import build_configmap
from .deployment import build_deployment
from .scaling import build_hpa, build_pdb
from .services import build_headless_service, build_service, build_servicemonitor
from .spec import TFModelSpec


@dataclass(frozen=True)
class ChildKind:
    api_version: str
    kind: str
    plural: str


CONFIGMAP = ChildKind("v1", "ConfigMap", "configmaps")
DEPLOYMENT = ChildKind("apps/v1", "Deployment", "deployments")
SERVICE = ChildKind("v1", "Service", "services")
HPA = ChildKind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
PDB = ChildKind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets")
SERVICEMONITOR = ChildKind("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors")
KINDS = {k.kind: k for k in (CONFIGMAP, DEPLOYMENT, SERVICE, HPA, PDB, SERVICEMONITOR)}


@dataclass(frozen=True)
class Children:
    present: list[dict[str, Any]]  # to apply, ConfigMap first so pods never start without it
    absent: list[tuple[ChildKind, str]]  # optional children to delete (kind, name)


def build_children(
    tfmodel: str, namespace: str, spec: TFModelSpec, service_monitor: bool = False
) -> Children:
    """`service_monitor`: the cluster serves monitoring.coreos.com/v1 ServiceMonitors."""
    present = [
        build_configmap(tfmodel, namespace, spec),
        build_deployment(tfmodel, namespace, spec),
        build_service(tfmodel, namespace, spec),
        build_headless_service(tfmodel, namespace, spec),
    ]
    absent: list[tuple[ChildKind, str]] = []
    for kind, child, manifest in (
        (HPA, names.hpa_name(tfmodel), build_hpa(tfmodel, namespace, spec)),
        (PDB, names.pdb_name(tfmodel), build_pdb(tfmodel, namespace, spec)),
    ):
        if manifest is None:
            absent.append((kind, child))
        else:
            present.append(manifest)
    if service_monitor:
        present.append(build_servicemonitor(tfmodel, namespace, spec.security))
    return Children(present=present, absent=absent)
