"""What the operator keeps of the objects it watches, and one TFModel's view of them (pure).

The children and the server pods carry `app.kubernetes.io/managed-by: tfmodel-operator`;
the operator watches each such kind by that label (kopf indexes, handlers.py) instead of
reading them every status round. An index keeps a trimmed copy of each object, only the
fields a reconcile reads, so 1,000 TFModels' Deployments, Services and pods stay small in
memory. A reconcile gets a `View`: a snapshot of its own objects taken on the event loop
(the indexes change there), so a worker thread never reads a dict that is being written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import names
from .scaling import HANDOVER_MANAGER

WATCH_LABELS = {"app.kubernetes.io/managed-by": names.FIELD_MANAGER}
TFMODEL_LABEL = f"{names.GROUP}/tfmodel"
_KEPT_MANAGERS = (names.FIELD_MANAGER, HANDOVER_MANAGER)


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    kept = {
        k: meta[k]
        for k in ("name", "namespace", "uid", "resourceVersion", "generation", "ownerReferences")
        if k in meta
    }
    # Only the operator's own managedFields entries: what applied.py and scaling.py read.
    managed = [
        e
        for e in meta.get("managedFields") or []
        if e.get("manager") in _KEPT_MANAGERS and e.get("operation") == "Apply"
    ]
    if managed:
        kept["managedFields"] = managed
    return kept


def trim_child(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a child a reconcile reads: ownership, managedFields, the Deployment's
    replicas and status (for the TFModel's status)."""
    out: dict[str, Any] = {"metadata": _meta(obj)}
    if kind == "Deployment":
        spec = obj.get("spec") or {}
        out["spec"] = {"replicas": spec["replicas"]} if "replicas" in spec else {}
        out["status"] = dict(obj.get("status") or {})
    return out


MODEL_CACHE_ARG = "--model_cache_dir="  # probe.has_model_cache reads it


def trim_pod(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fields probe.py reads: phase, IP, the server container's ports and restarts,
    whether it has a model cache (its --model_cache_dir argument); uid for the analysis's
    per-pod baselines."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    containers = []
    for c in (obj.get("spec") or {}).get("containers") or []:
        if c.get("name") != names.SERVER_CONTAINER:
            continue
        kept: dict[str, Any] = {"name": c.get("name"), "ports": c.get("ports") or []}
        cache_args = [a for a in c.get("args") or [] if str(a).startswith(MODEL_CACHE_ARG)]
        if cache_args:
            kept["args"] = cache_args
        containers.append(kept)
    kept_status: dict[str, Any] = {k: status[k] for k in ("phase", "podIP") if k in status}
    # The server container's restarts: a restarted pod's counters start again (analysis).
    restarts = [
        {"name": s.get("name"), "restartCount": s.get("restartCount", 0)}
        for s in status.get("containerStatuses") or []
        if s.get("name") == names.SERVER_CONTAINER
    ]
    if restarts:
        kept_status["containerStatuses"] = restarts
    kept_meta = {k: meta[k] for k in ("name", "namespace", "uid") if k in meta}
    how = (meta.get("annotations") or {}).get(names.PROBE_ANNOTATION)
    if how:  # how to reach its server (spec.security)
        kept_meta["annotations"] = {names.PROBE_ANNOTATION: how}
    return {
        "metadata": kept_meta,
        "spec": {"containers": containers},
        "status": kept_status,
    }


def tfmodel_of(labels: Mapping[str, str]) -> str | None:
    return labels.get(TFMODEL_LABEL)


@dataclass(frozen=True)
class View:
    """One TFModel's watched objects at one moment.

    `children[(kind, name)]` is the cached child, None when the watch has none by that name
    (it may still exist without the operator's label: the caller GETs before creating);
    kinds not in `indexed` are not watched and are read from the API. `pods`: its pods.
    """

    children: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    indexed: frozenset[str] = frozenset()
    pods: list[dict[str, Any]] | None = None  # None: not watched, LIST them

    def child(self, kind: str, name: str) -> tuple[bool, dict[str, Any] | None]:
        """(known, object): known is False when `kind` is not watched."""
        if kind not in self.indexed:
            return False, None
        return True, self.children.get((kind, name))
