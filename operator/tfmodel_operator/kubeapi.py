"""Minimal generic Kubernetes REST calls on top of kubernetes.client.ApiClient.

Server-side apply needs no per-kind client: one PATCH with `application/apply-patch+yaml`
and a field manager creates or updates an object, and writes nothing when nothing changed.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from . import names


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
    """One API call; returns the decoded JSON body, raises ApiException on a non-2xx status."""
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
    response = api.call_api(*serialized, _request_timeout=timeout)
    data = response.read()
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


def patch_status(
    api: ApiClient, namespace: str, name: str, status: dict[str, Any]
) -> dict[str, Any]:
    path = (
        resource_path(f"{names.GROUP}/{names.VERSION}", names.PLURAL, namespace, name) + "/status"
    )
    return request(
        api, "PATCH", path, body={"status": status}, content_type="application/merge-patch+json"
    )
