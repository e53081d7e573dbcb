"""Server pods without a kubelet: Pod objects whose status the test writes, and one small
HTTP stand-in answering for every pod (GET /v1/models and the Prometheus metrics).

Every simulated pod has podIP 127.0.0.1 and the stand-in's port as its "http" port, so the
operator's probes reach the stand-in. The stand-in reports the versions it is told as
AVAILABLE for every model asked about, and renders its metrics with the server's own
metrics code (tfmodel_server.monitoring.metrics), so the text is what real pods export.
Each scrape adds `requests_per_scrape` OK requests per served version: the canary sees
traffic without a load generator.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kubernetes
from prometheus_client import generate_latest
from tfmodel_operator import names
from tfmodel_server.monitoring.metrics import ServingMetrics

POD_IP = "127.0.0.1"


class StandIn:
    """The HTTP stand-in for every simulated server pod (one port, loopback only)."""

    def __init__(
        self,
        models: Iterable[str] = ("lin",),
        versions: Iterable[int] = (1,),
        requests_per_scrape: int = 50,
    ) -> None:
        self.models = list(models)
        self.versions = list(versions)
        self.requests_per_scrape = requests_per_scrape
        self.metrics = ServingMetrics()
        self.hits = {"models": 0, "metrics": 0}
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path == "/v1/models":
                    body = json.dumps(stand_in.models_report()).encode()
                    kind = "application/json"
                elif self.path == names.METRICS_PATH:
                    body = stand_in.scrape()
                    kind = "text/plain; version=0.0.4"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((POD_IP, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> StandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def models_report(self) -> dict[str, Any]:
        with self._lock:
            self.hits["models"] += 1
            versions = list(self.versions)
        return {
            "models": [
                {
                    "name": model,
                    "model_version_status": [
                        {
                            "version": str(v),
                            "state": "AVAILABLE",
                            "status": {"error_code": "OK", "error_message": ""},
                        }
                        for v in versions
                    ],
                }
                for model in self.models
            ]
        }

    def scrape(self) -> bytes:
        with self._lock:
            self.hits["metrics"] += 1
            for model in self.models:
                for version in self.versions:
                    for _ in range(self.requests_per_scrape):
                        self.metrics.record_request(
                            model, "Predict", "GRPC", "OK", 900.0, version, "serving_default"
                        )
            return generate_latest(self.metrics.registry)


def pod_manifest(tfmodel: str, index: int, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{tfmodel}-sim-{index}", "labels": names.common_labels(tfmodel)},
        "spec": {
            "containers": [
                {
                    "name": names.SERVER_CONTAINER,
                    "image": "tfmodel-server:simulated",
                    "ports": [{"name": "http", "containerPort": port}],
                }
            ]
        },
    }


RUNNING_STATUS = {
    "status": {
        "phase": "Running",
        "podIP": POD_IP,
        "podIPs": [{"ip": POD_IP}],
        "conditions": [{"type": "Ready", "status": "True"}],
    }
}


def start_pods(
    api: kubernetes.client.ApiClient,
    namespace: str,
    tfmodels: Iterable[str],
    pods_each: int,
    port: int,
    threads: int = 8,
) -> int:
    """Create `pods_each` Pods per TFModel and write their status Running; returns the count."""
    core = kubernetes.client.CoreV1Api(api)

    def one(args: tuple[str, int]) -> None:
        tfmodel, index = args
        manifest = pod_manifest(tfmodel, index, port)
        core.create_namespaced_pod(namespace, manifest)
        core.patch_namespaced_pod_status(manifest["metadata"]["name"], namespace, RUNNING_STATUS)

    work = [(t, i) for t in tfmodels for i in range(pods_each)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, work))
    return len(work)


def mark_deployment_ready(
    api: kubernetes.client.ApiClient, namespace: str, name: str, replicas: int
) -> None:
    """What the Deployment controller would write once `replicas` pods are ready."""
    apps = kubernetes.client.AppsV1Api(api)
    live = apps.read_namespaced_deployment(name, namespace)
    apps.patch_namespaced_deployment_status(
        name,
        namespace,
        {
            "status": {
                "observedGeneration": live.metadata.generation,
                "replicas": replicas,
                "readyReplicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
            }
        },
    )


def main() -> None:
    """`python -m tests.operator.fakefleet`: serve as the stand-in in a process of its own
    (the benchmark's own threads then cannot slow its answers); prints the port, serves
    until stdin closes."""
    import sys

    stand_in = StandIn(models=["lin"], versions=[1, 2]).start()
    print(stand_in.port, flush=True)
    sys.stdin.read()
    stand_in.stop()


if __name__ == "__main__":
    main()
