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


def _get(pod: dict[str, Any], path: str, timeout: float) -> bytes | None:
    ip = (pod.get("status") or {}).get("podIP")
    if not ip or (pod.get("status") or {}).get("phase") != "Running":
        return None
    host = f"[{ip}]" if ":" in ip else ip
    url = f"http://{host}:{rest_port(pod)}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (pod URL)
            return response.read()
    except (OSError, urllib.error.URLError, ValueError):
        return None


def fetch_models(pod: dict[str, Any], timeout: float = 2.0) -> dict[str, Any] | None:
    data = _get(pod, "/v1/models", timeout)
    try:
        body = json.loads(data) if data is not None else None
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def fetch_metrics(pod: dict[str, Any], timeout: float = 2.0) -> str | None:
    data = _get(pod, names.METRICS_PATH, timeout)
    return data.decode("utf-8", "replace") if data is not None else None


def _ask_all(pods: list[dict[str, Any]], fetch: Any, deadline: float) -> list[Any]:
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"][:MAX_PODS]
    if not running:
        return []
    pool = ThreadPoolExecutor(max_workers=len(running), thread_name_prefix="probe")
    try:
        futures = [pool.submit(fetch, pod, deadline) for pod in running]
        done, _late = wait(futures, timeout=deadline)
        return [f.result() if f in done else None for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def scrape_pods(pods: list[dict[str, Any]], deadline: float = 3.0) -> list[str]:
    """The Prometheus text of every running pod that answered within `deadline`."""
    return [text for text in _ask_all(pods, fetch_metrics, deadline) if text is not None]


def probe_pods(
    pods: list[dict[str, Any]], deadline: float = 3.0
) -> tuple[list[dict[str, Any]], int]:
    """(reports, unreachable count) for the running pods among `pods`.

    All pods are asked at once and the round waits at most `deadline` seconds in total:
    one hung pod (or twenty) cannot stretch a status round to 2 s a pod.
    """
    answers = _ask_all(pods, fetch_models, deadline)
    reports = [a for a in answers if a is not None]
    return reports, len(answers) - len(reports)
