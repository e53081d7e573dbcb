"""Ask each running server pod for GET /v1/models; an unreachable pod is counted, not fatal."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from . import names

MAX_PODS = 20


def rest_port(pod: dict[str, Any]) -> int:
    """The server container's port named "http" (8501 unless the pod says otherwise)."""
    for container in pod.get("spec", {}).get("containers", []):
        if container.get("name") != names.SERVER_CONTAINER:
            continue
        for port in container.get("ports", []) or []:
            if port.get("name") == "http":
                return int(port["containerPort"])
    return names.REST_CONTAINER_PORT


def fetch_models(pod: dict[str, Any], timeout: float = 2.0) -> dict[str, Any] | None:
    ip = (pod.get("status") or {}).get("podIP")
    if not ip or (pod.get("status") or {}).get("phase") != "Running":
        return None
    host = f"[{ip}]" if ":" in ip else ip
    url = f"http://{host}:{rest_port(pod)}/v1/models"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (pod URL)
            body = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def probe_pods(
    pods: list[dict[str, Any]], deadline: float = 3.0
) -> tuple[list[dict[str, Any]], int]:
    """(reports, unreachable count) for the running pods among `pods`.

    All pods are asked at once and the round waits at most `deadline` seconds in total:
    one hung pod (or twenty) cannot stretch a status round to 2 s a pod.
    """
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"][:MAX_PODS]
    if not running:
        return [], 0
    pool = ThreadPoolExecutor(max_workers=len(running), thread_name_prefix="probe")
    try:
        futures = [pool.submit(fetch_models, pod, deadline) for pod in running]
        done, _late = wait(futures, timeout=deadline)
        reports = [r for f in futures if f in done and (r := f.result()) is not None]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return reports, len(running) - len(reports)
