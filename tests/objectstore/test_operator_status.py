"""The operator's view of an s3:// model: its probe asks a real server for GET /v1/cache
and the TFModel status shows each version's download beside its state.

A real tfmodel-server on SeaweedFS; the pod the probe asks is the one the operator builds
(build_deployment), pointed at that process.
"""

from __future__ import annotations

from tfmodel_operator import names
from tfmodel_operator.deployment import build_deployment
from tfmodel_operator.probe import PodClient
from tfmodel_operator.reconcile import PodView
from tfmodel_operator.spec import parse_spec
from tfmodel_operator.status import Observation, build_status

from tests.objectstore.seaweed import REGION, SeaweedS3, upload_dir
from tests.objectstore.test_server_s3 import s3_server
from tests.server.savedmodels import export_linear


def operator_pod(seaweed: SeaweedS3, bucket: str, rest_port: int) -> dict:
    """The server pod the operator builds for this model, as if Running on 127.0.0.1."""
    spec = parse_spec(
        {
            "models": [
                {
                    "name": "linear",
                    "storage": {
                        "s3": {
                            "endpoint": seaweed.endpoint,
                            "bucket": bucket,
                            "prefix": "models/linear",
                            "region": REGION,
                            "secretRef": {"name": "s3-credentials"},
                        }
                    },
                }
            ]
        }
    )
    template = build_deployment("t", "ns", spec)["spec"]["template"]
    for container in template["spec"]["containers"]:
        if container["name"] == names.SERVER_CONTAINER:
            for port in container["ports"]:
                if port["name"] == "http":
                    port["containerPort"] = rest_port
    return {
        "metadata": {"uid": "pod-1", **template["metadata"]},
        "spec": template["spec"],
        "status": {"phase": "Running", "podIP": "127.0.0.1"},
    }


def test_status_shows_each_version_cached_and_the_bytes_the_pod_fetched(seaweed, bucket, tmp_path):
    v1 = export_linear(tmp_path / "local", 1, a=0.5, b=2.0)
    upload_dir(seaweed.client(), v1, bucket, "models/linear/1")
    size = sum(p.stat().st_size for p in v1.rglob("*") if p.is_file())
    with s3_server(seaweed, f"s3://{bucket}/models/linear", tmp_path / "cache") as server:
        server.wait_ready()
        pod = operator_pod(seaweed, bucket, server.rest_port)
        client = PodClient(timeout=10.0, deadline=20.0)
        try:
            view = PodView.of(client.ask([pod], metrics=False))
        finally:
            client.close()
    assert view.unreachable == 0 and len(view.caches) == 1
    spec = parse_spec({"models": [{"name": "linear", "basePath": f"s3://{bucket}/models/linear"}]})
    obs = Observation(1, None, reports=view.reports, caches=view.caches)
    (model,) = build_status("t", spec, obs)["models"]
    (version,) = model["versions"]
    assert version["version"] == 1 and version["state"] == "AVAILABLE"
    assert version["cache"] == {
        "state": "Cached",
        "downloadingPods": 0,
        "cachedPods": 1,
        "failedPods": 0,
        "sizeBytes": size,
        "fetchedBytes": size,
        "fetchedBytesMinPerPod": size,
        "fetchedBytesMaxPerPod": size,
    }
