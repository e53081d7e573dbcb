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
import logging
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3

from . import names
from .probe_transport import ProbeHow, SecretReader, Transport, TransportError, Transports

T = TypeVar("T")
log = logging.getLogger(__name__)

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
        self._transports = Transports(self._https_pool)

    def _https_pool(self, context: ssl.SSLContext) -> urllib3.PoolManager:
        """A pool for pods with spec.security.tls (its context verifies their certificate)."""
        return urllib3.PoolManager(
            num_pools=64,
            maxsize=4,
            retries=urllib3.Retry(total=1, redirect=False, status=0),
            timeout=urllib3.Timeout(total=self.timeout),
            ssl_context=context,
            assert_hostname=False,  # pods are asked by IP; the context pins what it trusts
        )

    def transport(self, pod: dict[str, Any], read: SecretReader | None) -> Transport | None:
        """How to reach `pod` (None: plain HTTP); TransportError when it cannot be reached."""
        how = ProbeHow.of(pod)
        if how is None:
            return None
        namespace = str((pod.get("metadata") or {}).get("namespace") or "")
        return self._transports.get(namespace, how, read)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.clear()

    def get(
        self, pod: dict[str, Any], path: str, transport: Transport | None = None
    ) -> bytes | None:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            return None
        host = f"[{ip}]" if ":" in ip else ip
        http = transport.http if transport is not None and transport.http else self._http
        scheme = transport.scheme if transport is not None else "http"
        url = f"{scheme}://{host}:{rest_port(pod)}{path}"
        tokens, first = (transport.tokens, transport.good) if transport is not None else ((), 0)
        # The token that worked last first; on a 401 the others (a rotation in progress).
        order: list[int | None] = [(first + i) % len(tokens) for i in range(len(tokens))]
        response = None
        for index in order or [None]:
            headers = {"Authorization": f"Bearer {tokens[index]}"} if index is not None else None
            try:
                response = http.request("GET", url, headers=headers, preload_content=True)
            except (urllib3.exceptions.HTTPError, OSError, ValueError):
                return None
            if response.status != 401:
                if index is not None and transport is not None:
                    transport.good = index
                break
        return response.data if response is not None and response.status == 200 else None

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

    def ask(
        self, pods: list[dict[str, Any]], metrics: bool, secrets: SecretReader | None = None
    ) -> list[PodAnswer]:
        """Every running pod's GET /v1/models (and its metrics page when `metrics`).

        `secrets` reads the Secrets a pod with spec.security needs (probe_transport.py);
        a pod whose Secrets cannot be read is counted as not answering."""

        Answer = tuple[dict[str, Any] | None, str | None, dict[str, Any] | None]

        def one(pod: dict[str, Any]) -> Answer:
            try:
                how = self.transport(pod, secrets)
            except TransportError as err:
                log.warning("cannot probe pod %s: %s", pod_uid(pod), err)
                return None, None, None
            return (
                fetch_models(self, pod, how),
                fetch_metrics(self, pod, how) if metrics else None,
                fetch_cache(self, pod, how) if has_model_cache(pod) else None,
            )

        live = running(pods)
        answers = self._all(live, one)
        return [
            PodAnswer(pod_uid(pod), server_restarts(pod), *(answer or (None, None, None)))
            for pod, answer in zip(live, answers, strict=True)
        ]


def fetch_models(
    client: PodClient, pod: dict[str, Any], transport: Transport | None = None
) -> dict[str, Any] | None:
    return _json(client.get(pod, "/v1/models", transport))


def fetch_cache(
    client: PodClient, pod: dict[str, Any], transport: Transport | None = None
) -> dict[str, Any] | None:
    return _json(client.get(pod, "/v1/cache", transport))


def _json(data: bytes | None) -> dict[str, Any] | None:
    try:
        body = json.loads(data) if data is not None else None
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def fetch_metrics(
    client: PodClient, pod: dict[str, Any], transport: Transport | None = None
) -> str | None:
    data = client.get(pod, names.METRICS_PATH, transport)
    return data.decode("utf-8", "replace") if data is not None else None
