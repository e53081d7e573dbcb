"""One reconcile pass: apply the children, check what the schema cannot, write status.

Runs on a worker thread, one at a time per TFModel (handlers.py). The children and pods
come from the operator's watches (cache.View); the API is read only for what is not
watched. A rollout decision is written first, with the TFModel's resourceVersion as a
precondition, and its event posted only once that write succeeded: a decision taken from
an outdated snapshot fails with a conflict and is taken again from the fresh object.
"""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from . import kubeapi, names, ownership
from .analysis import PodScrape
from .applied import RECHECK_S, AppliedChildren
from .cache import View
from .children import CONFIGMAP, DEPLOYMENT, KINDS, build_children
from .ownership import Ownership
from .probe import PodAnswer, PodClient
from .promtext import model_figures, shadow_figures
from .rollout import (
    RUNNING,
    AnalysisWindows,
    CanaryObservation,
    RolloutState,
    advance,
    effective_spec,
)
from .rollout import Event as RolloutEvent
from .rollout import summary as rollout_summary
from .scaling import HANDOVER_MANAGER, replicas_handover
from .spec import SpecError, TFModelSpec, parse_spec
from .status import Observation, build_status, merge_conditions

Problem = tuple[str, str]  # (reason, message) for the Degraded condition


def apply_children(
    api: ApiClient,
    body: Any,
    spec: TFModelSpec,
    logger: logging.Logger | logging.LoggerAdapter,
    applied: AppliedChildren | None = None,
    view: View | None = None,
    report_transient: bool = True,
) -> tuple[list[Problem], dict[str, Any] | None]:
    """Apply every child this TFModel controls or may create; report the rest.

    Returns the problems and the live Deployment when it is this TFModel's (for status).
    Never raises for one child: an object someone else controls is left alone
    (ChildConflict) and a rejected apply is reported with the API server's message
    (ApplyFailed); the other children are still applied. The Deployment waits for its
    ConfigMap: pods must never mount a ConfigMap that is missing or not this TFModel's.
    With `applied`, a child already as last applied is not applied again (applied.py).
    With `view`, watched children are not read from the API (a cache miss of a child to
    create is: an object without the operator's label is not watched, and must not be
    taken over). Without `report_transient`, an error that may pass (kubeapi.transient)
    is raised instead of reported: the next round retries before anyone sees Degraded.
    """
    view = view if view is not None else View()
    meta = body["metadata"]
    name, namespace, owner_uid = meta["name"], meta["namespace"], meta["uid"]
    applied = applied if applied is not None else AppliedChildren()
    children = build_children(name, namespace, spec, servicemonitors_served(api, applied))
    kopf.adopt(children.present, owner=body)
    problems: list[Problem] = []
    deployment: dict[str, Any] | None = None
    config_ok = True
    for manifest in children.present:
        kind = KINDS[manifest["kind"]]
        child = manifest["metadata"]["name"]
        key = (kind.kind, namespace, child)
        if kind is DEPLOYMENT and not config_ok:
            continue  # the ConfigMap's problem is reported; pods would not start without it
        ok = False
        try:
            known, live = view.child(kind.kind, child)
            if (
                kind is not DEPLOYMENT
                and not known
                and applied.recently_checked(key, manifest, time.monotonic())
            ):
                ok = True
                if kind is CONFIGMAP:
                    config_ok = True
                continue  # not watched (ServiceMonitor): re-read every RECHECK_S only
            if live is None:
                live = kubeapi.get(api, kind.api_version, kind.plural, namespace, child)
            owned = ownership.classify(live, owner_uid)
            if owned is Ownership.FOREIGN:
                assert live is not None
                applied.forget(key)
                problems.append(
                    ("ChildConflict", ownership.conflict_message(kind.kind, child, live, name))
                )
            else:
                handover = (
                    replicas_handover(name, namespace, spec, live) if kind is DEPLOYMENT else None
                )
                if (
                    handover is None
                    and live is not None
                    and applied.up_to_date(key, manifest, live)
                ):
                    result = live
                else:
                    if handover is not None:
                        kubeapi.apply(api, handover, kind.plural, field_manager=HANDOVER_MANAGER)
                        logger.info(
                            "autoscaling on: Deployment %s keeps %s replicas for the HPA",
                            child,
                            handover["spec"]["replicas"],
                        )
                    # Create without force: should an object appear in between, a field
                    # conflict fails the apply instead of overwriting it.
                    result = kubeapi.apply(
                        api, manifest, kind.plural, force=owned is Ownership.OURS
                    )
                    applied.remember(key, manifest, result)
                if not known:
                    applied.checked(key, time.monotonic())
                if kind is DEPLOYMENT:
                    deployment = result
                ok = True
        except ApiException as err:
            applied.forget(key)
            if kubeapi.transient(err) and not report_transient:
                raise
            problems.append(
                (
                    "ApplyFailed",
                    f"{kind.kind} {child} was not applied: {kubeapi.error_message(err)}",
                )
            )
        if kind is CONFIGMAP:
            config_ok = ok
    for kind, child in children.absent:
        key = (kind.kind, namespace, child)
        known, live = view.child(kind.kind, child)
        if known and live is None:
            continue  # not watched: none of ours by that name
        if not known and key in applied.known_absent:
            continue
        try:
            if not known:
                live = kubeapi.get(api, kind.api_version, kind.plural, namespace, child)
            if ownership.classify(live, owner_uid) is Ownership.OURS:
                kubeapi.delete_if_present(api, kind.api_version, kind.plural, namespace, child)
                logger.info("deleted %s %s: no longer in the spec", kind.kind, child)
            applied.mark_absent(key)
        except ApiException as err:
            if kubeapi.transient(err) and not report_transient:
                raise
            problems.append(
                (
                    "ApplyFailed",
                    f"{kind.kind} {child} was not deleted: {kubeapi.error_message(err)}",
                )
            )
    return problems, deployment


DISCOVERY_RECHECK_S = 300.0


def servicemonitors_served(api: ApiClient, applied: AppliedChildren) -> bool:
    """Whether the cluster serves monitoring.coreos.com/v1 ServiceMonitors (the Prometheus
    Operator's CRD); asked at most every DISCOVERY_RECHECK_S seconds."""
    now = time.monotonic()
    checked = applied.discovery.get("servicemonitors")
    if checked is not None and now - checked[0] < DISCOVERY_RECHECK_S:
        return checked[1]
    try:
        listing = kubeapi.request(api, "GET", "/apis/monitoring.coreos.com/v1")
        served = any(r.get("name") == "servicemonitors" for r in listing.get("resources", []))
    except ApiException:
        served = False  # 404: no such API group
    applied.discovery["servicemonitors"] = (now, served)
    return served


def find_problems(
    api: ApiClient,
    namespace: str,
    spec: TFModelSpec,
    applied: AppliedChildren | None = None,
    report_transient: bool = True,
) -> list[Problem]:
    """Invalid state the CRD schema cannot see (objects that must exist).

    A claim found is not looked up again for RECHECK_S seconds (with `applied`); a missing
    one every round, so its Degraded clears as soon as it exists.
    """
    problems: list[Problem] = []
    claim = spec.storage.get("persistentVolumeClaim", {}).get("claimName")
    key = ("PersistentVolumeClaim", namespace, claim or "")
    now = time.monotonic()
    if (
        claim
        and applied is not None
        and now - applied.last_checked.get(key, -RECHECK_S) < RECHECK_S
    ):
        return problems
    if claim:
        try:
            pvc = kubeapi.get(api, "v1", "persistentvolumeclaims", namespace, claim)
        except ApiException as err:
            if kubeapi.transient(err) and not report_transient:
                raise
            pvc = {}
            problems.append(
                ("StorageUnchecked", f"cannot read PersistentVolumeClaim {claim}: {err.reason}")
            )
        if pvc is None:
            problems.append(
                (
                    "StorageNotFound",
                    f"PersistentVolumeClaim {claim} (spec.storage.persistentVolumeClaim.claimName) "
                    f"does not exist in namespace {namespace}; pods cannot start until it does",
                )
            )
        elif pvc and applied is not None:
            applied.checked(key, now)
    return problems


@dataclass(frozen=True)
class PodView:
    """What the TFModel's running pods answered this round."""

    reports: list[dict[str, Any]]  # GET /v1/models bodies
    unreachable: int
    answers: list[PodAnswer] = field(default_factory=list)  # every running pod's (analysis)

    @classmethod
    def of(cls, answers: list[PodAnswer]) -> PodView:
        reports = [a.models for a in answers if a.models is not None]
        return cls(reports, len(answers) - len(reports), answers)

    @property
    def caches(self) -> list[dict[str, Any]]:
        """The GET /v1/cache bodies (pods serving s3:// models)."""
        return [a.cache for a in self.answers if a.cache is not None]


_pod_client: PodClient | None = None
_windows = AnalysisWindows()


def default_pod_client() -> PodClient:
    """The operator's one long-lived pod client (created on first use)."""
    global _pod_client
    if _pod_client is None:
        _pod_client = PodClient()
    return _pod_client


NOT_ASKED = PodView([], 0)  # no rollout running: advance() reads no pod figures


def rollout_running(body: Any) -> bool:
    """Whether a model's rollout is Waiting or Progressing (its next step reads the pods)."""
    rollouts = (body.get("status") or {}).get("rollouts") or []
    return any(r.get("phase") in RUNNING for r in rollouts)


def observe_pods(
    api: ApiClient,
    namespace: str,
    tfmodel: str,
    scrape: bool,
    view: View | None = None,
    client: PodClient | None = None,
) -> PodView:
    """Ask the TFModel's pods (from the watch in `view`, else one LIST)."""
    pods = view.pods if view is not None else None
    if pods is None:
        pods = kubeapi.list_objects(api, "v1", "pods", namespace, names.selector_string(tfmodel))

    def secrets(ns: str, name: str) -> dict[str, bytes] | None:
        return kubeapi.read_secret(api, ns, name)

    return PodView.of((client or default_pod_client()).ask(pods, metrics=scrape, secrets=secrets))


def pod_scrapes(model: str, pods: PodView) -> tuple[PodScrape, ...]:
    """Every running pod's figures for `model` (None where it did not answer)."""
    out = []
    for answer in pods.answers:
        versions, shadow = None, {}
        if answer.metrics is not None:
            try:
                versions = model_figures(answer.metrics, model)
                shadow = shadow_figures(answer.metrics, model)
            except ValueError:
                versions = None  # not Prometheus text: as good as no answer
        out.append(PodScrape(answer.uid, answer.restarts, versions, shadow))
    return tuple(out)


def canary_observation(model: str, version: int, pods: PodView) -> CanaryObservation:
    """Is `version` AVAILABLE on every reachable pod (none unreachable), and the figures."""
    everywhere = bool(pods.reports) and pods.unreachable == 0
    for report in pods.reports:
        entry: dict[str, Any] = next(
            (m for m in report.get("models", []) if m.get("name") == model), {}
        )
        states = {
            int(v.get("version", -1)): v.get("state") for v in entry.get("model_version_status", [])
        }
        everywhere = everywhere and states.get(version) == "AVAILABLE"
    return CanaryObservation(everywhere, pod_scrapes(model, pods))


def advance_rollouts(
    spec: TFModelSpec,
    status: dict[str, Any],
    pods: PodView,
    now: datetime.datetime,
    windows: AnalysisWindows | None = None,
    owner: str = "",
) -> tuple[list[RolloutState], list[RolloutEvent]]:
    """Every model's next rollout state (from the last one in status) and the events.

    `windows` holds each running step's baseline for the TFModel `owner` (its UID).
    """
    windows = windows if windows is not None else AnalysisWindows()
    previous = {}
    for raw in status.get("rollouts") or []:
        try:
            previous[str(raw["model"])] = windows.attach(owner, RolloutState.from_status(raw))
        except (KeyError, TypeError, ValueError):
            continue  # unreadable: start over from the spec
    states, events = [], []
    for model in spec.models:
        before = previous.get(model.name)
        observation = (
            canary_observation(model.name, before.target, pods)
            if before is not None and before.target is not None
            else None
        )
        state, event = advance(model, before, observation, now)
        if state is not None:
            states.append(state)
        if event is not None:
            events.append(event)
    windows.remember(owner, states)
    return states, events


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_status(
    api: ApiClient,
    body: Any,
    spec: TFModelSpec | None,
    problems: list[Problem],
    deployment: dict[str, Any] | None = None,
    pods: PodView | None = None,
    rollouts: list[RolloutState] | None = None,
) -> dict[str, Any] | None:
    """Patch status only when it differs; returns the TFModel as written (None: unchanged).

    `deployment` is this TFModel's live Deployment (None: absent or not this TFModel's),
    `pods` what its pods reported this round, `rollouts` the models' rollout states.
    The write is preconditioned on `body`'s resourceVersion (kubeapi.Conflict otherwise).
    """
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    old = dict(body.get("status") or {})
    if spec is None:  # invalid spec or name: keep what we knew, flag it
        new = {k: v for k, v in old.items() if k not in ("conditions", names.STATUS_DIFFBASE)}
        new["observedGeneration"] = meta.get("generation", 1)
        conditions = [
            {
                "type": "Degraded",
                "status": "True",
                "reason": problems[0][0],
                "message": problems[0][1],
                "observedGeneration": meta.get("generation", 1),
            }
        ]
    else:
        pods = pods if pods is not None else PodView([], 0)
        obs = Observation(
            generation=int(meta.get("generation", 1)),
            deployment=deployment,
            reports=pods.reports,
            unreachable_pods=pods.unreachable,
            caches=pods.caches,
            problems=problems,
        )
        new = build_status(name, spec, obs, namespace)
        if rollouts:
            new["rollouts"] = [r.to_status() for r in rollouts]
            new["rolloutSummary"] = rollout_summary(rollouts)
        elif "rollouts" in old:
            new["rollouts"], new["rolloutSummary"] = [], ""
        conditions = new["conditions"]
    new["conditions"] = merge_conditions(conditions, old.get("conditions", []), _now())
    if all(old.get(k) == v for k, v in new.items()):
        return None
    written = kubeapi.patch_status(api, namespace, name, new, meta["resourceVersion"])
    _post_degraded_event(body, old.get("conditions", []), new["conditions"])
    return written


def _post_degraded_event(body: Any, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    """A Warning event whenever Degraded turns True or its reason or message changes."""
    before = next((c for c in old if c.get("type") == "Degraded"), {})
    after = next((c for c in new if c.get("type") == "Degraded"), {})
    key = ("status", "reason", "message")
    if tuple(before.get(k) for k in key) == tuple(after.get(k) for k in key):
        return
    if after.get("status") == "True":
        kopf.warn(body, reason=after["reason"], message=after["message"])
    elif before.get("status") == "True":
        kopf.info(body, reason="Recovered", message=f"{before.get('reason')} resolved")


MAX_CONFLICTS = 4


def reconcile(
    api: ApiClient,
    body: Any,
    logger: logging.Logger | logging.LoggerAdapter,
    applied: AppliedChildren | None = None,
    view: View | None = None,
    report_transient: bool = True,
    pods: PodView | None = None,
    pod_client: PodClient | None = None,
    windows: AnalysisWindows | None = None,
) -> dict[str, Any] | None:
    """Bring the children and status in line with the TFModel.

    `pod_client` and `windows` default to the operator's long-lived ones (this module's).

    `pods`: what the pods answered just now (the caller probed them before it took the
    object's turn, so no turn waits for a probe); None: probe them here.

    Returns the TFModel as this pass last wrote it (None when nothing was written).
    PermanentError on a spec or name no child can be built from (reported in status).
    Child conflicts and rejected applies are reported in status and retried every round.
    A status write that meets a newer TFModel (kubeapi.Conflict) re-reads it and decides
    again from there, so no decision is written from an outdated snapshot. Without
    `report_transient`, errors that may pass (kubeapi.transient) are raised, not reported.
    """
    meta = body["metadata"]
    if pods is None and rollout_running(body):
        # Asked once for all attempts: a retry after a conflict re-reads only the TFModel,
        # so the time between that read and the write stays short.
        pods = observe_pods(api, meta["namespace"], meta["name"], True, view, pod_client)
    for _attempt in range(MAX_CONFLICTS):
        try:
            return _reconcile_once(
                api, body, logger, applied, view, report_transient, pods, pod_client, windows
            )
        except kubeapi.Conflict:
            fresh = kubeapi.get_tfmodel(api, meta["namespace"], meta["name"])
            if fresh is None or fresh["metadata"].get("uid") != meta.get("uid"):
                return None  # deleted meanwhile
            body = fresh
            logger.debug("TFModel changed during the round; deciding again from the new object")
    raise kopf.TemporaryError(
        f"the TFModel changed during {MAX_CONFLICTS} rounds in a row; trying again", delay=1
    )


def _reconcile_once(
    api: ApiClient,
    body: Any,
    logger: logging.Logger | logging.LoggerAdapter,
    applied: AppliedChildren | None,
    view: View | None,
    report_transient: bool,
    observed: PodView | None,
    pod_client: PodClient | None,
    windows: AnalysisWindows | None,
) -> dict[str, Any] | None:
    meta = body["metadata"]
    bad_name = names.name_problems(meta["name"])
    if bad_name:
        message = "; ".join(bad_name) + "; no children were created"
        write_status(api, body, None, [("InvalidName", message)])
        raise kopf.PermanentError(message)
    try:
        spec = parse_spec(dict(body["spec"]))
    except (SpecError, KeyError, TypeError, ValueError) as err:
        message = f"invalid spec: {err}"
        write_status(api, body, None, [("InvalidSpec", message)])
        raise kopf.PermanentError(message) from err
    namespace = meta["namespace"]
    running = {
        str(r.get("model"))
        for r in (body.get("status") or {}).get("rollouts") or []
        if r.get("phase") in RUNNING
    }
    # Only a running rollout decides from what the pods say; otherwise the children are
    # applied first and the pods asked afterwards, for status: an edit reaches the
    # ConfigMap without waiting for the probes.
    pods = (
        observe_pods(api, namespace, meta["name"], True, view, pod_client) if running else NOT_ASKED
    )
    states, events = advance_rollouts(
        spec,
        body.get("status") or {},
        pods,
        _utcnow(),
        windows if windows is not None else _windows,  # the step windows outlive a round
        str(meta.get("uid", "")),
    )
    latest: dict[str, Any] | None = None
    if events:
        # A transition is decided once: written alone, on the resourceVersion it was
        # decided from, before the servers are told; its events follow the write.
        latest = kubeapi.patch_status(
            api,
            namespace,
            meta["name"],
            {
                "rollouts": [s.to_status() for s in states],
                "rolloutSummary": rollout_summary(states),
            },
            meta["resourceVersion"],
        )
        body = latest
        for event in events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)
            logger.info("%s: %s", event.reason, event.message)
    served = effective_spec(spec, {s.model: s for s in states})
    problems, deployment = apply_children(
        api, body, served, logger, applied, view, report_transient
    )
    problems += find_problems(api, namespace, spec, applied, report_transient)
    if pods is NOT_ASKED:
        pods = observe_pods(api, namespace, meta["name"], False, view, pod_client)
    changed = write_status(api, body, served, problems, deployment, pods, states)
    if changed is not None:
        latest = changed
        # Logged when the status changes, not every round (warnings would become events:
        # the Degraded condition posts its own).
        for reason, message in problems:
            logger.info("%s: %s", reason, message)
    return latest
