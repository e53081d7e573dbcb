"""Server-side apply three ways against the test kube-apiserver: the operator's kubeapi.apply
(one PATCH on kubernetes.client.ApiClient, dict in and out), the typed CoreV1Api with the
apply content type, and kubernetes.dynamic's DynamicClient.server_side_apply.

    python -m bench.kubeapi_paths [--calls 200]

Reports per path: the API requests made before the first apply (discovery) and, per apply
of a ConfigMap whose data changes every call, the client's CPU time and the wall time
(p50), with the answer as a plain dict (what the operator works on). One process, one
API server, the paths interleaved so the machine's load hits each alike.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes import dynamic
from tfmodel_operator import kubeapi

from tests.operator.kube import start_cluster

NAMESPACE = "kubeapi-paths"
MANAGER = "bench-kubeapi-paths"


def counting(api: kubernetes.client.ApiClient) -> list[str]:
    """Record every request `api` sends (method and path), from now on."""
    sent: list[str] = []
    request = api.rest_client.request

    def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(f"{method} {url.split('?')[0].split('://', 1)[-1].split('/', 1)[-1]}")
        return request(method, url, *args, **kwargs)

    api.rest_client.request = counted
    return sent


def manifest(name: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {"models.config": f"model_config_list {{ config {{ name: 'm{i}' }} }}"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kubeapi_paths")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args(argv)
    kube = start_cluster(Path(tempfile.mkdtemp(prefix="tfmodel-kubeapi-paths-")))
    try:
        api = kube.admin
        kube.create_namespace(NAMESPACE)
        core = kubernetes.client.CoreV1Api(api)

        def plain(i: int) -> dict[str, Any]:
            return kubeapi.apply(api, manifest("plain", i), "configmaps", field_manager=MANAGER)

        def typed(i: int) -> dict[str, Any]:
            body = manifest("typed", i)
            answer = core.patch_namespaced_config_map(
                "typed",
                NAMESPACE,
                body,
                field_manager=MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
            )
            return api.sanitize_for_serialization(answer)

        sent = counting(api)
        # A cold start: no discovery cache file from an earlier process.
        cache = Path(tempfile.mkdtemp(prefix="tfmodel-kubeapi-paths-dyn-")) / "discovery.json"
        dyn = dynamic.DynamicClient(api, cache_file=str(cache))
        configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
        discovery = len(sent)

        def dynamic_apply(i: int) -> dict[str, Any]:
            body = manifest("dynamic", i)
            answer = configmaps.server_side_apply(
                body=body,
                name="dynamic",
                namespace=NAMESPACE,
                field_manager=MANAGER,
                force_conflicts=True,
            )
            return answer.to_dict()

        paths = {"kubeapi.apply": plain, "CoreV1Api (typed)": typed, "DynamicClient": dynamic_apply}
        cpu: dict[str, list[float]] = {k: [] for k in paths}
        wall: dict[str, list[float]] = {k: [] for k in paths}
        for i in range(args.calls):
            for label, fn in paths.items():
                c0, w0 = time.process_time(), time.perf_counter()
                out = fn(i)
                cpu[label].append(time.process_time() - c0)
                wall[label].append(time.perf_counter() - w0)
                assert out["metadata"]["name"]
        print(
            f"{args.calls} applies per path; requests before DynamicClient's first apply "
            f"(discovery): {discovery} (kubeapi.apply and CoreV1Api: 0)"
        )
        print("| path | client CPU per apply, ms (p50) | wall per apply, ms (p50) |")
        print("|---|---|---|")
        for label in paths:
            print(
                f"| {label} | {statistics.median(cpu[label]) * 1000:.2f} | "
                f"{statistics.median(wall[label]) * 1000:.1f} |"
            )
    finally:
        kube.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
