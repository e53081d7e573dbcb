"""Ask each running server pod for GET /v1/models, its metrics and, when its server has a
model cache (s3:// models), GET /v1/cache; an unreachable pod is counted, not fatal.

Every running pod is asked (no cap: under an HPA all of them serve the canary), at most
`concurrency` at once, on one long-lived client: a pooled urllib3 manager (keep-alive
connections to pods asked every round) and one thread pool, both kept for the operator's
life (PodClient). The handlers are synchronous (kopf runs them on its thread pool); a
round's total wait is bounded by `deadline`, so hung pods cannot stretch it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3

from . import names

T = TypeVar("T")

DEFAULT_CONCURRENCY = 32
DEFAULT_TIMEOUT_S = 2.0  # one request
DEFAULT_DEADLINE_S = 3.0  # one round, all pods


def rest_port(pod: dict[str, Any]) -> int:
    """The server container's port named "http" (8501 unless the pod says otherwise)."""
    for container in pod.get("spec", {}).get("containers", []):
        if container.get("name") != names.SERVER_CONTAINER:
            continue
        for port in container.get("ports", []) or []:
            if port.get("name") == "http":
                return int(port["containerPort"])
    return names.REST_CONTAINER_PORT


def running(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods with a server to ask: phase Running and an IP."""
    return [
        p
        for p in pods
        if (p.get("status") or {}).get("phase") == "Running"
        and (p.get("status") or {}).get("podIP")
    ]


def server_restarts(pod: dict[str, Any]) -> int:
    """The server container's restartCount (a restart resets its counters)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == names.SERVER_CONTAINER:
            return int(status.get("restartCount", 0))
    return 0


def has_model_cache(pod: dict[str, Any]) -> bool:
    """Whether the pod's server caches s3:// versions (the operator passes
    --model_cache_dir only then): only those pods are asked for GET /v1/cache."""
    for container in pod.get("spec", {}).get("containers", []):
        if container.get("name") == names.SERVER_CONTAINER:
            args = [*(container.get("command") or []), *(container.get("args") or [])]
            return any(str(a).startswith("--model_cache_dir=") for a in args)
    return False


def pod_uid(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


@dataclass(frozen=True)
class PodAnswer:
    """What one running pod answered this round (None: no answer in time)."""

    uid: str
    restarts: int
    models: dict[str, Any] | None
    metrics: str | None = None
    cache: dict[str, Any] | None = None  # GET /v1/cache (pods with a model cache)


class PodClient:
    """One long-lived HTTP client for every pod probe (thread-safe)."""

    def __init__(
        self,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = DEFAULT_TIMEOUT_S,
        deadline: float = DEFAULT_DEADLINE_S,
    ) -> None:
        self.timeout, self.deadline = timeout, deadline
        # One retry: a kept-alive connection the pod closed meanwhile fails on reuse (GETs
        # are idempotent); no redirects.
        self._http = urllib3.PoolManager(
            num_pools=256,
            maxsize=4,
            retries=urllib3.Retry(total=1, redirect=False, status=0),
            timeout=urllib3.Timeout(total=timeout),
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="probe")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.clear()

    def get(self, pod: dict[str, Any], path: str) -> bytes | None:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            return None
        host = f"[{ip}]" if ":" in ip else ip
        try:
            response = self._http.request(
                "GET", f"http://{host}:{rest_port(pod)}{path}", preload_content=True
            )
        except (urllib3.exceptions.HTTPError, OSError, ValueError):
            return None
        return response.data if response.status == 200 else None

    def _all(self, items: list[T], ask: Callable[[T], Any]) -> list[Any]:
        """ask(item) for every item, `concurrency` at a time; None where past the deadline."""
        if not items:
            return []
        with self._lock:  # submit order is fair across concurrent rounds
            futures: list[Future[Any]] = [self._pool.submit(ask, item) for item in items]
        end = time.monotonic() + self.deadline
        done, _late = wait_futures(futures, timeout=max(0.0, end - time.monotonic()))
        out = []
        for future in futures:
            if future in done and future.exception() is None:
                out.append(future.result())
            else:
                future.cancel()
                out.append(None)
        return out

    def ask(self, pods: list[dict[str, Any]], metrics: bool) -> list[PodAnswer]:
        """Every running pod's GET /v1/models (and its metrics page when `metrics`)."""

        Answer = tuple[dict[str, Any] | None, str | None, dict[str, Any] | None]

        def one(pod: dict[str, Any]) -> Answer:
            return (
                fetch_models(self, pod),
                fetch_metrics(self, pod) if metrics else None,
                fetch_cache(self, pod) if has_model_cache(pod) else None,
            )

        live = running(pods)
        answers = self._all(live, one)
        return [
            PodAnswer(pod_uid(pod), server_restarts(pod), *(answer or (None, None, None)))
            for pod, answer in zip(live, answers, strict=True)
        ]


def fetch_models(client: PodClient, pod: dict[str, Any]) -> dict[str, Any] | None:
    return _json(client.get(pod, "/v1/models"))


def fetch_cache(client: PodClient, pod: dict[str, Any]) -> dict[str, Any] | None:
    return _json(client.get(pod, "/v1/cache"))


def _json(data: bytes | None) -> dict[str, Any] | None:
    try:
        body = json.loads(data) if data is not None else None
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def fetch_metrics(client: PodClient, pod: dict[str, Any]) -> str | None:
    data = client.get(pod, names.METRICS_PATH)
    return data.decode("utf-8", "replace") if data is not None else None
