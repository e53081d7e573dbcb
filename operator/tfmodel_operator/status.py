"""TFModel status from the Deployment and the servers' GET /v1/models reports (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import names
from .spec import TFModelSpec


@dataclass(frozen=True)
class Observation:
    """What the operator saw this round."""

    generation: int
    deployment: dict[str, Any] | None
    reports: list[dict[str, Any]] = field(default_factory=list)  # GET /v1/models bodies
    unreachable_pods: int = 0
    caches: list[dict[str, Any]] = field(default_factory=list)  # GET /v1/cache bodies
    problems: list[tuple[str, str]] = field(default_factory=list)  # (reason, message)


def _condition(ctype: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def _rollout(obs: Observation) -> tuple[int, int, int, bool, str]:
    """(desired, ready, updated, rolled_out, message) from the Deployment."""
    dep = obs.deployment or {}
    desired = int(dep.get("spec", {}).get("replicas", 1))
    st = dep.get("status") or {}
    ready = int(st.get("readyReplicas", 0))
    updated = int(st.get("updatedReplicas", 0))
    seen = int(st.get("observedGeneration", 0)) >= int(dep.get("metadata", {}).get("generation", 1))
    total = int(st.get("replicas", 0))
    rolled_out = seen and updated >= desired and total <= desired
    if not seen:
        message = "the Deployment controller has not seen the latest pod template yet"
    else:
        message = f"{updated}/{desired} replicas updated, {ready} ready"
    return desired, ready, updated, rolled_out, message


def _deployment_failures(obs: Observation) -> list[tuple[str, str]]:
    failures = []
    for cond in (obs.deployment or {}).get("status", {}).get("conditions", []) or []:
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            failures.append(("ReplicaFailure", cond.get("message", "")))
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            failures.append(("ProgressDeadlineExceeded", cond.get("message", "")))
    return failures


def _rejected_configs(obs: Observation) -> list[tuple[str, str]]:
    """A server keeps its previous config when a new models.config fails; say so."""
    errors = sorted(
        {
            str(r["config_status"].get("error") or "rejected")
            for r in obs.reports
            if isinstance(r.get("config_status"), dict) and r["config_status"].get("ok") is False
        }
    )
    return [("ConfigRejected", f"a server rejected models.config: {e}") for e in errors]


_STATE_ORDER = ["START", "LOADING", "AVAILABLE", "UNLOADING", "END"]


def models_status(
    spec: TFModelSpec, reports: list[dict[str, Any]], caches: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Per model: the versions the reachable pods report (worst state wins) and their labels;
    for s3:// models each version's download summary from the pods' caches."""
    result = []
    for model in spec.models:
        versions: dict[int, dict[str, Any]] = {}
        labels: dict[str, int] = {}
        reachable = 0
        for report in reports:
            entry = next((m for m in report.get("models", []) if m.get("name") == model.name), None)
            if entry is None:
                continue
            reachable += 1
            labels = {k: int(v) for k, v in (entry.get("version_labels") or {}).items()} or labels
            for vs in entry.get("model_version_status", []):
                version = int(vs.get("version", 0))
                state = str(vs.get("state", "UNKNOWN"))
                row = versions.setdefault(
                    version, {"version": version, "state": state, "availablePods": 0}
                )
                if state == "AVAILABLE":
                    row["availablePods"] += 1
                elif row["state"] == "AVAILABLE" or _rank(state) < _rank(row["state"]):
                    row["state"] = state
                error = (vs.get("status") or {}).get("error_message")
                if error:
                    row["errorMessage"] = error
        for version, summary in cache_summaries(model.name, caches or []).items():
            if version in versions:
                versions[version]["cache"] = summary
        entry_out: dict[str, Any] = {
            "name": model.name,
            "reachablePods": reachable,
            "versions": [versions[v] for v in sorted(versions)],
        }
        if labels:
            entry_out["versionLabels"] = labels
        result.append(entry_out)
    return result


_CACHE_STATES = ("downloading", "cached", "failed")


def cache_summaries(model: str, caches: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per version of `model`, what the pods' GET /v1/cache say, summed over pods so the
    status stays small however many pods there are: how many pods are downloading it,
    hold it cached or failed to, its size, and the bytes fetched (in all, and the least
    and most one pod fetched: at most sizeBytes when each pod fetched it once).

    `state`: Downloading while any pod downloads it, else Failed if any failed, else
    Cached. (Loaded is the version's own state: AVAILABLE.)"""
    per_version: dict[int, list[dict[str, Any]]] = {}
    for body in caches:
        entries = (body.get("models") or {}).get(model) or {}
        if not isinstance(entries, dict):
            continue
        for version, entry in entries.items():
            if isinstance(entry, dict) and str(version).isdigit():
                per_version.setdefault(int(version), []).append(entry)
    out: dict[int, dict[str, Any]] = {}
    for version, entries in sorted(per_version.items()):
        counts = {st: sum(1 for e in entries if e.get("state") == st) for st in _CACHE_STATES}
        fetched = [int(e.get("bytes_fetched") or 0) for e in entries]
        summary: dict[str, Any] = {
            "state": "Downloading"
            if counts["downloading"]
            else "Failed"
            if counts["failed"]
            else "Cached",
            "downloadingPods": counts["downloading"],
            "cachedPods": counts["cached"],
            "failedPods": counts["failed"],
            "sizeBytes": max(int(e.get("bytes_total") or 0) for e in entries),
            "fetchedBytes": sum(fetched),
            "fetchedBytesMinPerPod": min(fetched),
            "fetchedBytesMaxPerPod": max(fetched),
        }
        error = next((str(e["error"]) for e in entries if e.get("error")), "")
        if error:
            summary["error"] = error[:500]
        out[version] = summary
    return out


def _rank(state: str) -> int:
    return _STATE_ORDER.index(state) if state in _STATE_ORDER else -1


def _label_summary(spec: TFModelSpec, label: str) -> str:
    """`model:version` per model with the label; the canary's split share as `@N%`."""
    parts = []
    for m in spec.models:
        if label not in dict(m.labels):
            continue
        part = f"{m.name}:{dict(m.labels)[label]}"
        if label == "canary" and m.canary_traffic_percent is not None:
            part += f"@{m.canary_traffic_percent}%"
        parts.append(part)
    return ",".join(parts)


def address(tfmodel: str, namespace: str, spec: TFModelSpec) -> dict[str, str]:
    """Where clients reach the fleet (in-cluster DNS names, independent of the cluster domain)."""
    svc = f"{names.service_name(tfmodel)}.{namespace}.svc"
    headless = f"{names.headless_service_name(tfmodel)}.{namespace}.svc"
    return {
        "grpc": f"{svc}:{spec.service.grpc_port}",
        "rest": f"http://{svc}:{spec.service.rest_port}",
        "grpcHeadless": f"dns:///{headless}:{spec.service.grpc_port}",
    }


def build_status(
    tfmodel: str, spec: TFModelSpec, obs: Observation, namespace: str | None = None
) -> dict[str, Any]:
    """The whole desired `status` (without lastTransitionTime; see merge_conditions)."""
    desired, ready, _updated, rolled_out, rollout_msg = _rollout(obs)
    if spec.autoscaling is None and obs.deployment is None:
        desired = spec.replicas
    models = models_status(spec, obs.reports, obs.caches)
    load_errors = [
        f"{m['name']} version {v['version']}: {v['errorMessage']}"
        for m in models
        for v in m["versions"]
        if v.get("errorMessage") and v["state"] != "AVAILABLE"
    ]
    problems = list(obs.problems) + _deployment_failures(obs) + _rejected_configs(obs)
    if load_errors:
        problems.append(("ModelLoadFailed", "; ".join(load_errors)))
    gen = obs.generation

    if obs.deployment is None:
        ready_cond = _condition(
            "Ready", False, "DeploymentMissing", "the Deployment does not exist yet", gen
        )
    elif desired == 0:
        ready_cond = _condition("Ready", False, "ScaledToZero", "spec.replicas is 0", gen)
    elif ready >= desired and rolled_out:
        ready_cond = _condition(
            "Ready", True, "AllReplicasReady", f"{ready}/{desired} replicas ready", gen
        )
    else:
        ready_cond = _condition(
            "Ready", False, "ReplicasNotReady", f"{ready}/{desired} replicas ready", gen
        )
    progressing = _condition(
        "Progressing",
        obs.deployment is not None and not rolled_out,
        "RolloutComplete" if obs.deployment is not None and rolled_out else "RollingOut",
        rollout_msg if obs.deployment is not None else "waiting for the Deployment",
        gen,
    )
    if problems:
        degraded = _condition(
            "Degraded", True, problems[0][0], "; ".join(m for _r, m in problems), gen
        )
    else:
        degraded = _condition("Degraded", False, "AsExpected", "no problems found", gen)

    status: dict[str, Any] = {
        "observedGeneration": gen,
        "replicas": int((obs.deployment or {}).get("status", {}).get("replicas", 0)),
        "readyReplicas": ready,
        "selector": names.selector_string(tfmodel),
        "modelNames": ",".join(m.name for m in spec.models),
        "readySummary": f"{ready}/{desired}",
        "stableVersions": _label_summary(spec, "stable"),
        "canaryVersions": _label_summary(spec, "canary"),
        "conditions": [ready_cond, progressing, degraded],
        "models": models,
    }
    if namespace is not None:
        status["address"] = address(tfmodel, namespace, spec)
    return status


def merge_conditions(
    new: list[dict[str, Any]], old: list[dict[str, Any]], now: str
) -> list[dict[str, Any]]:
    """Keep each condition's lastTransitionTime unless its status changed."""
    previous = {c.get("type"): c for c in old or []}
    merged = []
    for cond in new:
        before = previous.get(cond["type"])
        if (
            before is not None
            and before.get("status") == cond["status"]
            and before.get("lastTransitionTime")
        ):
            stamp = before["lastTransitionTime"]
        else:
            stamp = now
        merged.append({**cond, "lastTransitionTime": stamp})
    return merged
