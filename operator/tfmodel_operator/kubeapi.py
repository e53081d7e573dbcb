"""Minimal generic Kubernetes REST calls on top of kubernetes.client.ApiClient.

Server-side apply needs no per-kind client: one PATCH with `application/apply-patch+yaml`
and a field manager creates or updates an object, and writes nothing when nothing changed.

Why not the client's typed APIs or `kubernetes.dynamic` (issue 24 part 3): measured against
the test API server (bench/kubeapi_paths.py, docs/operator-at-scale.md), a server-side apply
costs the same on all three (about 1 ms of client CPU). The typed APIs need one method per
kind and return model classes the operator converts back to dicts; `DynamicClient` first
reads the cluster's discovery documents (22 requests on the test API server, more with every
API group a cluster serves). Neither removes what this module is for: the retries, the
status precondition, the API server's own error messages.

Every call retries what can succeed later (429 with its Retry-After, 5xx, a dropped
connection) with capped, jittered backoff; the caller sees only errors that persist.
"""

from __future__ import annotations

import base64
import json
import random
import time
from typing import Any

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from . import names

ATTEMPTS = 4
BACKOFF_S = 0.25  # doubled per attempt, with jitter: about 0.25, 0.5, 1 s (under 2 s in all)
MAX_RETRY_AFTER_S = 5.0


def resource_path(api_version: str, plural: str, namespace: str, name: str = "") -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def request(
    api: ApiClient,
    method: str,
    path: str,
    *,
    query: list[tuple[str, str]] | None = None,
    body: Any = None,
    content_type: str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """One API call; returns the decoded JSON body, raises ApiException on a non-2xx status.

    A transient failure (`transient`) is retried up to ATTEMPTS times; a connection error
    that persists is raised as ApiException with status 0.
    """
    for attempt in range(ATTEMPTS):
        try:
            return _request_once(api, method, path, query, body, content_type, timeout)
        except ApiException as err:
            if not transient(err) or attempt + 1 == ATTEMPTS:
                raise
            time.sleep(_delay(err, attempt))
    raise AssertionError("unreachable")


def transient(err: ApiException) -> bool:
    """An error a later attempt can get past: throttled (429), a server fault, no connection."""
    return err.status in (0, 429) or (err.status or 0) >= 500


def _delay(err: ApiException, attempt: int) -> float:
    backoff = BACKOFF_S * (2**attempt) * random.uniform(0.5, 1.5)  # noqa: S311 (jitter)
    retry_after = (err.headers or {}).get("Retry-After") if err.status == 429 else None
    try:
        return min(max(backoff, float(retry_after)), MAX_RETRY_AFTER_S) if retry_after else backoff
    except ValueError:
        return backoff


def _request_once(
    api: ApiClient,
    method: str,
    path: str,
    query: list[tuple[str, str]] | None,
    body: Any,
    content_type: str | None,
    timeout: float,
) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    serialized = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    try:
        response = api.call_api(*serialized, _request_timeout=timeout)
        data = response.read()
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise ApiException(status=0, reason=f"no answer from the API server: {err}") from err
    if not 200 <= response.status <= 299:
        raise ApiException(status=response.status, reason=response.reason, http_resp=response)
    return json.loads(data) if data else {}


def apply(
    api: ApiClient,
    manifest: dict[str, Any],
    plural: str,
    *,
    force: bool = True,
    field_manager: str = names.FIELD_MANAGER,
) -> dict[str, Any]:
    """Server-side apply `manifest` as `field_manager`.

    `force` takes over fields another manager set (drift repair on objects this TFModel
    controls); without it a field conflict is a 409 instead. The caller decides which
    objects may be written at all (ownership.py).
    """
    meta = manifest["metadata"]
    path = resource_path(manifest["apiVersion"], plural, meta["namespace"], meta["name"])
    return request(
        api,
        "PATCH",
        path,
        query=[("fieldManager", field_manager), ("force", "true" if force else "false")],
        body=manifest,
        content_type="application/apply-patch+yaml",
    )


def error_message(err: ApiException) -> str:
    """The API server's own message for a failed call (its Status body), else the HTTP reason."""
    try:
        status = json.loads(err.body or "")
    except (TypeError, ValueError):
        status = None
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return f"{err.status} {err.reason}"


def get(
    api: ApiClient, api_version: str, plural: str, namespace: str, name: str
) -> dict[str, Any] | None:
    try:
        return request(api, "GET", resource_path(api_version, plural, namespace, name))
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def read_secret(api: ApiClient, namespace: str, name: str) -> dict[str, bytes] | None:
    """A Secret's data, decoded; None when it is missing or cannot be read (logged by the
    caller as a pod it cannot probe)."""
    try:
        secret = get(api, "v1", "secrets", namespace, name)
    except ApiException:
        return None
    if secret is None:
        return None
    out = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value)
        except ValueError:
            continue
    return out


def list_objects(
    api: ApiClient, api_version: str, plural: str, namespace: str, selector: str
) -> list[dict[str, Any]]:
    path = resource_path(api_version, plural, namespace)
    return request(api, "GET", path, query=[("labelSelector", selector)]).get("items", [])


def delete_if_present(
    api: ApiClient, api_version: str, plural: str, namespace: str, name: str
) -> bool:
    """Delete an object; False if it was already gone."""
    try:
        request(api, "DELETE", resource_path(api_version, plural, namespace, name))
        return True
    except ApiException as err:
        if err.status == 404:
            return False
        raise


TFMODEL_API_VERSION = f"{names.GROUP}/{names.VERSION}"


def get_tfmodel(api: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    return get(api, TFMODEL_API_VERSION, names.PLURAL, namespace, name)


class Conflict(Exception):
    """The TFModel changed since `resource_version` was read: nothing was written."""


def patch_status(
    api: ApiClient, namespace: str, name: str, status: dict[str, Any], resource_version: str
) -> dict[str, Any]:
    """Merge-patch `status` only if the object is still at `resource_version`.

    The API server checks a resourceVersion in a patch body as a precondition (409 when
    it moved), so two decisions taken from different snapshots cannot both be written.
    Returns the object as written (its new resourceVersion).
    """
    path = resource_path(TFMODEL_API_VERSION, names.PLURAL, namespace, name) + "/status"
    body = {"metadata": {"resourceVersion": resource_version}, "status": status}
    try:
        return request(api, "PATCH", path, body=body, content_type="application/merge-patch+json")
    except ApiException as err:
        if err.status == 409:
            raise Conflict(f"TFModel {namespace}/{name} changed since {resource_version}") from err
        raise
