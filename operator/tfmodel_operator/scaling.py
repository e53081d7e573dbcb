"""Optional HorizontalPodAutoscaler and PodDisruptionBudget."""

from __future__ import annotations

from typing import Any

from . import names
from .spec import TFModelSpec


def build_hpa(tfmodel: str, namespace: str, spec: TFModelSpec) -> dict[str, Any] | None:
    if spec.autoscaling is None:
        return None
    scaling = spec.autoscaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": names.hpa_name(tfmodel),
            "namespace": namespace,
            "labels": names.common_labels(tfmodel),
        },
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": names.deployment_name(tfmodel),
            },
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.target_cpu_percent,
                        },
                    },
                }
            ],
        },
    }


def build_pdb(tfmodel: str, namespace: str, spec: TFModelSpec) -> dict[str, Any] | None:
    if spec.pdb is None:
        return None
    budget = {k: v for k, v in spec.pdb.items() if k in ("minAvailable", "maxUnavailable")}
    if not budget:
        budget = {"maxUnavailable": 1}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": names.pdb_name(tfmodel),
            "namespace": namespace,
            "labels": names.common_labels(tfmodel),
        },
        "spec": {"selector": {"matchLabels": names.selector_labels(tfmodel)}, **budget},
    }


# Field manager that holds a Deployment's `replicas` while an HPA takes over. A field dropped
# from the apply configuration of its only manager is removed, and a Deployment without
# `replicas` defaults to 1: switching autoscaling on would drop a running fleet to one pod
# until the HPA acted. Handing the field to a second manager first keeps its value.
HANDOVER_MANAGER = f"{names.FIELD_MANAGER}-handover"


def manages_field(obj: dict[str, Any], manager: str, path: tuple[str, ...]) -> bool:
    """Whether `manager`'s Apply entry in managedFields owns the field at `path`."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != manager or entry.get("operation") != "Apply":
            continue
        if entry.get("subresource"):
            continue
        node = entry.get("fieldsV1") or {}
        for key in path:
            node = node.get(f"f:{key}")
            if not isinstance(node, dict):
                break
        else:
            return True
    return False


def replicas_handover(
    tfmodel: str, namespace: str, spec: TFModelSpec, live: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The apply configuration (for HANDOVER_MANAGER) that keeps the live replica count when
    autoscaling is switched on, or None when there is nothing to hand over.

    Needed while the operator's own field manager still owns `spec.replicas` of the live
    Deployment, i.e. exactly on the transition. The count kept is the live one, raised to
    minReplicas: never fewer pods than were running, and the HPA moves it from there.
    """
    if spec.autoscaling is None or live is None:
        return None
    if not manages_field(live, names.FIELD_MANAGER, ("spec", "replicas")):
        return None
    current = int((live.get("spec") or {}).get("replicas", 1))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": names.deployment_name(tfmodel), "namespace": namespace},
        "spec": {"replicas": max(current, spec.autoscaling.min_replicas)},
    }
