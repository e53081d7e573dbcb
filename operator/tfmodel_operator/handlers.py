"""kopf handlers: thin wrappers around reconcile.reconcile (all logic lives in pure modules).

Nothing registers at import: `register()` puts the handlers on a registry with the settings
it is given (main.py passes the command line's), so no setting travels through the
environment and importing this module has no effect.

One reconcile per TFModel at a time: kopf runs an object's change handlers in order, but
its timer as a task of its own, so both could run at once. Every handler here is async and
takes the object's lock (on the event loop) before it hands the blocking reconcile to the
operator's worker pool; a timer tick that finds its object busy is skipped (the running
reconcile does the same work). The children and pods come from label-selected watches
(kopf indexes, cache.py), so a status round costs no API request unless something changed.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import kopf
import kubernetes
from kubernetes.client.exceptions import ApiException

from . import kubeapi, names
from .applied import AppliedChildren
from .cache import WATCH_LABELS, View, tfmodel_of, trim_child, trim_pod
from .children import CONFIGMAP, DEPLOYMENT, HPA, PDB, SERVICE, ChildKind
from .reconcile import PodView, observe_pods, reconcile, rollout_running

RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)

# Rounds in a row that may fail on errors that can pass (429, 5xx, no connection: already
# retried with backoff inside each call) before the TFModel is reported Degraded.
TRANSIENT_ROUNDS = 3
# While a rollout runs, its TFModel gets a status round this often besides the timer's: its
# steps are decided at rounds, and a step's pause should not end up to one interval late.
# Only HTTP to the pods (their metrics); API requests only when a step is decided.
ROLLOUT_ROUND_S = 2.0
# Worker threads for the blocking reconciles (API calls, pod probes). Enough that a few
# slow pods (a probe waits up to 3 s) do not hold up everyone else's rounds; few enough that
# the operator cannot open more than this many API requests at once, whatever the fleet.
# Changes (create, edit, resume) have a pool of their own, as large, so an edit never queues
# behind a thousand status rounds, and 20 simultaneous edits do not go in waves (8 threads
# did: bench/operator.py, docs/operator-at-scale.md).
DEFAULT_WORKERS = 16


def change_workers(workers: int) -> int:
    return max(4, workers)


def _api_client(connections: int) -> kubernetes.client.ApiClient:
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)
    # One connection per worker thread: no reconcile waits for a pooled connection.
    configuration.connection_pool_maxsize = connections
    return kubernetes.client.ApiClient(configuration)


# Where earlier releases kept the diff base; removed on the first handling after an upgrade.
LEGACY_DIFFBASE_ANNOTATION = f"{names.GROUP}/last-handled-configuration"


class StatusDiffBase(kopf.StatusDiffBaseStorage):
    """kopf's diff base (the last handled spec, as one JSON string) in status, not annotations.

    All annotations of an object share 262144 bytes, so a spec that size or larger (valid:
    the CRD allows 64 models with long paths and many labels) failed to be handled at all.
    A status field shares only the object's own limit (etcd's 1.5 MiB request size) with the
    spec it copies, so any spec up to about 700 KiB works.
    """

    def __init__(self) -> None:
        super().__init__(field=f"status.{names.STATUS_DIFFBASE}")

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        super().store(body=body, patch=patch, essence=essence)
        if LEGACY_DIFFBASE_ANNOTATION in body.metadata.annotations:
            patch.metadata.annotations[LEGACY_DIFFBASE_ANNOTATION] = None


class RoutineAtDebug(logging.Filter):
    """kopf logs every handler success at INFO ("Timer 'refresh' succeeded." 4 times a minute
    per TFModel): those lines are DEBUG here, so the log at INFO says only what changed."""

    ROUTINE = (" succeeded.", "is processed: ")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and any(s in record.getMessage() for s in self.ROUTINE):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


@dataclass
class ObjectState:
    """Per TFModel (by UID), in this process only."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The TFModel as this operator last wrote it, and the resourceVersion it replaced: a
    # handler whose body is still at that version (the watch lags) starts from the write.
    written: dict[str, Any] | None = None
    replaced: str | None = None
    transient_rounds: int = 0
    pods: PodView | None = None  # what the pods answered in the last status round, and when
    pods_at: float = float("-inf")
    follow_up: asyncio.TimerHandle | None = None  # the next extra round while a rollout runs
    live_body: kopf.Body | None = None
    deleted: bool = False


def configure(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    workers: int = DEFAULT_WORKERS,
    status_interval: float = 15.0,
) -> None:
    # Progress (written only while a handler retries) in our own annotations; the diff base
    # in status (see StatusDiffBase).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP)
    settings.persistence.diffbase_storage = StatusDiffBase()
    settings.persistence.finalizer = f"{names.GROUP}/finalizer"
    # Only warnings become Kubernetes events; routine handler chatter stays in the log.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    # No watching of CRDs and namespaces: RBAC for them is not least privilege, and the
    # operator knows its one resource and its namespaces up front.
    settings.scanning.disabled = True
    # Every handler here is async (the reconciles run on memo.executor, sized on purpose);
    # kopf's own pool only serves what remains sync, which is nothing: keep it minimal.
    settings.execution.max_workers = 1
    # One kopf worker task per object with pending events is cheap (asyncio), and a limit
    # would make one namespace's edits wait for another's: leave the queueing unlimited.
    settings.queueing.worker_limit = None
    memo.api = _api_client(workers + change_workers(workers))
    memo.applied = AppliedChildren()  # shared by every object's handlers (memo is copied shallow)
    memo.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="round")
    memo.change_executor = ThreadPoolExecutor(
        max_workers=change_workers(workers), thread_name_prefix="change"
    )
    memo.objects = {}  # uid -> ObjectState
    memo.status_interval = status_interval
    kopf_objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, RoutineAtDebug) for f in kopf_objects.filters):
        kopf_objects.addFilter(RoutineAtDebug())


# What kopf passes as `logger` (its handler protocols' type).
KopfLogger = logging.Logger | logging.LoggerAdapter

# The watched kinds (kopf indexes, keyed by (namespace, name); pods by (namespace, TFModel)).
INDEXED: dict[str, ChildKind] = {
    "tfmodel_configmaps": CONFIGMAP,
    "tfmodel_deployments": DEPLOYMENT,
    "tfmodel_services": SERVICE,
    "tfmodel_hpas": HPA,
    "tfmodel_pdbs": PDB,
}
PODS_INDEX = "tfmodel_pods"


def _child_names(tfmodel: str) -> list[tuple[str, str]]:
    return [
        (CONFIGMAP.kind, names.configmap_name(tfmodel)),
        (DEPLOYMENT.kind, names.deployment_name(tfmodel)),
        (SERVICE.kind, names.service_name(tfmodel)),
        (SERVICE.kind, names.headless_service_name(tfmodel)),
        (HPA.kind, names.hpa_name(tfmodel)),
        (PDB.kind, names.pdb_name(tfmodel)),
    ]


def view_of(body: kopf.Body, kwargs: dict[str, Any]) -> View:
    """This TFModel's objects from the indexes (called on the event loop, which writes them)."""
    name, namespace = body.metadata.name, body.metadata.namespace
    by_kind = {kind.kind: kwargs[index] for index, kind in INDEXED.items()}
    children: dict[tuple[str, str], dict[str, Any] | None] = {}
    for kind, child in _child_names(name):
        store = by_kind[kind].get((namespace, child))
        children[(kind, child)] = next(iter(store), None) if store else None
    pods = list(kwargs[PODS_INDEX].get((namespace, name)) or ())
    return View(children=children, indexed=frozenset(by_kind), pods=pods)


def _freshest(body: kopf.Body, state: ObjectState) -> dict[str, Any]:
    """The TFModel as last known: `body` (kopf swaps in a new dict per event, so this
    snapshot stays whole), or this process's own last write while the watch has not
    delivered it yet (the body is still at the version that write replaced)."""
    raw = dict(body)
    if state.written is not None and raw["metadata"].get("resourceVersion") == state.replaced:
        return state.written
    return raw


async def _reconcile(
    body: kopf.Body, memo: kopf.Memo, logger: KopfLogger, kwargs: dict[str, Any], timer: bool
) -> None:
    state: ObjectState = memo.objects.setdefault(body.metadata.uid, ObjectState())
    if timer and state.lock.locked():
        return  # a reconcile of this object is running: it does what this tick would
    loop = asyncio.get_running_loop()
    pool = memo.executor if timer else memo.change_executor
    pods: PodView | None = None
    latest = _freshest(body, state)
    if timer:
        state.live_body = body  # a timer's body is kopf's live view of the object
        # The pods are asked before this object's turn is taken: a probe waits up to
        # seconds for a slow pod, and an edit must not wait behind it.
        view = view_of(body, kwargs)
        probe = functools.partial(
            observe_pods,
            memo.api,
            body.metadata.namespace or "",
            body.metadata.name or "",
            rollout_running(latest),
            view,
        )
        pods = await loop.run_in_executor(pool, contextvars.copy_context().run, probe)
        state.pods, state.pods_at = pods, loop.time()
    elif not rollout_running(latest) and loop.time() - state.pods_at < memo.status_interval:
        pods = state.pods  # a change's status shows the last round's pods, not a new probe
    async with state.lock:
        raw = _freshest(body, state)
        view = view_of(body, kwargs)
        report = state.transient_rounds + 1 >= TRANSIENT_ROUNDS
        # kopf.event needs kopf's context variables in the worker thread.
        call = functools.partial(
            contextvars.copy_context().run,
            reconcile,
            memo.api,
            raw,
            logger,
            memo.applied,
            view,
            report,
            pods,
        )
        try:
            written = await loop.run_in_executor(pool, call)
        except ApiException as err:
            if not kubeapi.transient(err):
                raise
            state.transient_rounds += 1
            logger.info(
                "API server busy or unreachable (%s); round %d of %d before Degraded",
                kubeapi.error_message(err),
                state.transient_rounds,
                TRANSIENT_ROUNDS,
            )
            if not timer:  # a change must not be dropped: kopf retries the handler
                raise kopf.TemporaryError(kubeapi.error_message(err), delay=2.0) from err
            return
        state.transient_rounds = 0
        if written is not None:
            state.written, state.replaced = written, raw["metadata"].get("resourceVersion")
        if rollout_running(written or raw) and state.follow_up is None:
            state.follow_up = loop.call_later(
                ROLLOUT_ROUND_S, _follow_up, memo, logger, kwargs, state
            )


def _follow_up(
    memo: kopf.Memo, logger: KopfLogger, kwargs: dict[str, Any], state: ObjectState
) -> None:
    """An extra status round while a rollout runs (its steps are decided at rounds).

    On the timer's live body only: a change handler's body is the object at its event, and
    an older body would compute the servers' split from an older rollout state.
    """
    state.follow_up = None
    body = state.live_body
    if state.deleted:
        return
    if body is None:  # no timer tick yet: look again later
        state.follow_up = asyncio.get_running_loop().call_later(
            ROLLOUT_ROUND_S, _follow_up, memo, logger, kwargs, state
        )
        return
    task = asyncio.ensure_future(_reconcile(body, memo, logger, kwargs, timer=True))
    # Errors are the next round's: log them instead of leaving them to the event loop.
    task.add_done_callback(
        lambda t: (
            t.cancelled()
            or t.exception() is None
            or isinstance(t.exception(), kopf.PermanentError)
            or logger.warning("rollout round failed: %s", t.exception())
        )
    )


async def reconcile_handler(
    *, body: kopf.Body, memo: kopf.Memo, logger: KopfLogger, **kwargs: Any
) -> None:
    await _reconcile(body, memo, logger, kwargs, timer=False)


async def refresh(*, body: kopf.Body, memo: kopf.Memo, logger: KopfLogger, **kwargs: Any) -> None:
    """Repairs drift (server-side apply writes nothing when nothing changed) and refreshes status."""
    try:
        await _reconcile(body, memo, logger, kwargs, timer=True)
    except kopf.PermanentError:
        pass  # already reported in status by reconcile


async def deleted(*, name: str, uid: str, memo: kopf.Memo, logger: KopfLogger, **_: Any) -> None:
    # Children carry owner references; the garbage collector removes them.
    state = memo.objects.pop(uid, None)
    if state is not None:
        state.deleted = True
        if state.follow_up is not None:
            state.follow_up.cancel()
    logger.info("TFModel %s deleted; its children go with it via owner references", name)


def _child_indexer(kind: ChildKind) -> Any:
    async def index(*, body: kopf.Body, namespace: str, name: str, **_: Any) -> Any:
        return {(namespace, name): trim_child(kind.kind, body)}

    return index


async def _pod_indexer(
    *, body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> Any:
    tfmodel = tfmodel_of(labels)
    return {(namespace, tfmodel): trim_pod(body)} if tfmodel else None


def _jitter(interval: float) -> Any:
    # Timers of TFModels found at start-up would all fire together every interval: spread
    # their first tick over one interval, so the rounds (and their probes) stay spread.
    def delay(**_: Any) -> float:
        return random.uniform(0.0, interval)  # noqa: S311 (not security)

    return delay


def register(
    registry: kopf.OperatorRegistry, status_interval: float, workers: int = DEFAULT_WORKERS
) -> kopf.OperatorRegistry:
    """Put the operator's handlers on `registry`; the timer runs every `status_interval` s."""

    def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure(settings, memo, workers, status_interval)

    kopf.on.startup(registry=registry)(startup)
    # A fresh registry lacks kopf's default login handlers: log in as the kubernetes client.
    kopf.on.login(registry=registry)(kopf.login_via_client)
    for index_id, kind in INDEXED.items():
        kopf.index(
            kind.api_version, kind.plural, id=index_id, labels=WATCH_LABELS, registry=registry
        )(_child_indexer(kind))
    kopf.index("v1", "pods", id=PODS_INDEX, labels=WATCH_LABELS, registry=registry)(_pod_indexer)
    kopf.on.resume(*RESOURCE, registry=registry)(reconcile_handler)
    kopf.on.create(*RESOURCE, registry=registry)(reconcile_handler)
    kopf.on.update(*RESOURCE, registry=registry)(reconcile_handler)
    kopf.timer(
        *RESOURCE,
        interval=status_interval,
        initial_delay=_jitter(status_interval),
        registry=registry,
    )(refresh)
    kopf.on.delete(*RESOURCE, optional=True, registry=registry)(deleted)
    return registry
