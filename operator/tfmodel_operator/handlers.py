"""kopf handlers: thin wrappers around reconcile.reconcile (all logic lives in pure modules).

Nothing registers at import: `register()` puts the handlers on a registry with the settings
it is given (main.py passes the command line's), so no setting travels through the
environment and importing this module has no effect.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
import kubernetes

from . import names
from .applied import AppliedChildren
from .reconcile import reconcile

RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)


def _api_client() -> kubernetes.client.ApiClient:
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)
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


def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
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
    memo.api = _api_client()
    memo.applied = AppliedChildren()  # shared by every object's handlers (memo is copied shallow)


# What kopf passes as `logger` (its handler protocols' type).
KopfLogger = logging.Logger | logging.LoggerAdapter


def reconcile_handler(*, body: kopf.Body, memo: kopf.Memo, logger: KopfLogger, **_: Any) -> None:
    reconcile(memo.api, body, logger, memo.applied)


def refresh(*, body: kopf.Body, memo: kopf.Memo, logger: KopfLogger, **_: Any) -> None:
    """Repairs drift (server-side apply writes nothing when nothing changed) and refreshes status."""
    try:
        reconcile(memo.api, body, logger, memo.applied)
    except kopf.PermanentError:
        pass  # already reported in status by reconcile


def deleted(*, name: str, logger: KopfLogger, **_: Any) -> None:
    # Children carry owner references; the garbage collector removes them.
    logger.info("TFModel %s deleted; its children go with it via owner references", name)


def register(registry: kopf.OperatorRegistry, status_interval: float) -> kopf.OperatorRegistry:
    """Put the operator's handlers on `registry`; the timer runs every `status_interval` s."""
    kopf.on.startup(registry=registry)(configure)
    # A fresh registry lacks kopf's default login handlers: log in as the kubernetes client.
    kopf.on.login(registry=registry)(kopf.login_via_client)
    kopf.on.resume(*RESOURCE, registry=registry)(reconcile_handler)
    kopf.on.create(*RESOURCE, registry=registry)(reconcile_handler)
    kopf.on.update(*RESOURCE, registry=registry)(reconcile_handler)
    kopf.timer(
        *RESOURCE, interval=status_interval, initial_delay=status_interval, registry=registry
    )(refresh)
    kopf.on.delete(*RESOURCE, optional=True, registry=registry)(deleted)
    return registry
