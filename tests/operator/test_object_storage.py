"""Builders for TFModels whose models live in an S3-compatible bucket."""

from __future__ import annotations

import pytest
from tfmodel_operator import names
from tfmodel_operator.cache import trim_pod
from tfmodel_operator.deployment import build_deployment
from tfmodel_operator.model_config import render_models_config
from tfmodel_operator.probe import has_model_cache
from tfmodel_operator.spec import SpecError, parse_spec
from tfmodel_operator.status import cache_summaries, models_status
from tfmodel_server.model_servers.config_file import (
    parse_model_server_config,
    validate_model_server_config,
)

S3 = {
    "endpoint": "http://seaweedfs.storage.svc:8333",
    "bucket": "models",
    "prefix": "tf_serving/resnet/",
    "region": "us-east-1",
    "secretRef": {"name": "s3-credentials"},
}


def pod(raw: dict) -> dict:
    return build_deployment("t", "ns", parse_spec(raw))["spec"]["template"]["spec"]


def test_storage_s3_becomes_an_s3_base_path_the_server_accepts():
    spec = parse_spec({"models": [{"name": "resnet", "storage": {"s3": S3}}]})
    assert spec.models[0].base_path == "s3://models/tf_serving/resnet"
    text = render_models_config(spec)
    validate_model_server_config(parse_model_server_config(text, "models.config"), "t")


def test_credentials_come_from_the_secret_by_reference_only():
    spec = {"models": [{"name": "resnet", "storage": {"s3": S3}}]}
    container = pod(spec)["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_ENDPOINT_URL"]["value"] == S3["endpoint"]
    assert env["AWS_REGION"]["value"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"] == {
        "secretKeyRef": {"name": "s3-credentials", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "s3-credentials", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    assert all("value" not in env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    # A non-AWS endpoint: path-style requests unless the spec says otherwise.
    assert "--s3_addressing_style=path" in container["args"]
    assert f"--model_cache_dir={names.MODEL_CACHE_DIR}" in container["args"]


def test_cache_is_an_emptydir_sized_by_the_spec_and_no_models_volume_when_all_on_s3():
    spec = {
        "models": [{"name": "resnet", "basePath": "s3://models/resnet"}],
        "objectStore": {"region": "eu-west-1"},
        "modelCache": {"sizeLimit": "20Gi"},
    }
    p = pod(spec)
    volumes = {v["name"]: v for v in p["volumes"]}
    assert volumes["model-cache"] == {"name": "model-cache", "emptyDir": {"sizeLimit": "20Gi"}}
    assert "models" not in volumes
    mounts = {m["name"]: m for m in p["containers"][0]["volumeMounts"]}
    assert mounts["model-cache"]["mountPath"] == names.MODEL_CACHE_DIR
    assert "models" not in mounts
    env = {e["name"]: e for e in p["containers"][0]["env"]}
    assert set(env) == {"AWS_REGION"}  # no secret: the pod's own identity (IRSA, node role)
    assert "--s3_addressing_style=auto" in p["containers"][0]["args"]


def test_local_models_keep_their_volume_next_to_s3_models():
    spec = {
        "models": [
            {"name": "local", "basePath": "/models/local"},
            {"name": "remote", "storage": {"s3": S3}},
        ],
        "storage": {"hostPath": {"path": "/srv/models"}},
    }
    volumes = {v["name"] for v in pod(spec)["volumes"]}
    assert {"models", "model-cache"} <= volumes


def test_no_object_store_no_cache_no_env():
    p = pod(
        {
            "models": [{"name": "m", "basePath": "/models/m"}],
            "storage": {"hostPath": {"path": "/d"}},
        }
    )
    assert "env" not in p["containers"][0]
    assert "model-cache" not in {v["name"] for v in p["volumes"]}
    assert not any(a.startswith("--model_cache_dir") for a in p["containers"][0]["args"])


@pytest.mark.parametrize(
    "raw,message",
    [
        (
            {"models": [{"name": "m", "basePath": "s3://b/m", "storage": {"s3": S3}}]},
            "exactly one of basePath or storage.s3",
        ),
        ({"models": [{"name": "m", "basePath": "/models/m"}]}, "models m are on it"),
        (
            {
                "models": [
                    {"name": "a", "storage": {"s3": S3}},
                    {"name": "b", "storage": {"s3": S3 | {"endpoint": "http://other:9000"}}},
                ]
            },
            "same endpoint, region, secretRef",
        ),
        ({"models": [{"name": "m", "storage": {"s3": S3 | {"bucket": ""}}}]}, "bucket is empty"),
        (
            {"models": [{"name": "m", "storage": {"s3": S3 | {"prefix": "a/../b"}}}]},
            "has an empty, . or .. part",
        ),
        ({"models": [{"name": "m", "basePath": "gs://b/m"}]}, "under /models/ .* or s3://"),
    ],
)
def test_object_store_spec_errors(raw, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(raw)


def test_only_pods_with_a_model_cache_are_asked_for_it():
    on_s3 = pod({"models": [{"name": "resnet", "storage": {"s3": S3}}]})
    local = pod(
        {
            "models": [{"name": "a", "basePath": "/models/a"}],
            "storage": {"hostPath": {"path": "/srv/models"}},
        }
    )
    assert has_model_cache({"spec": on_s3}) is True
    assert has_model_cache({"spec": local}) is False
    # The operator's pod cache keeps what the probe reads, this argument included.
    assert has_model_cache(trim_pod({"spec": on_s3})) is True
    assert has_model_cache(trim_pod({"spec": local})) is False


def _cache(state: str, fetched: int, total: int = 100, error: str = "") -> dict:
    return {"state": state, "bytes_fetched": fetched, "bytes_total": total, "error": error}


def test_cache_summary_per_version_is_small_for_many_pods():
    """Three pods' GET /v1/cache: counts and byte totals per version, not a row per pod."""
    caches = [
        {"models": {"resnet": {"1": _cache("cached", 100), "2": _cache("downloading", 40)}}},
        {"models": {"resnet": {"1": _cache("cached", 0), "2": _cache("cached", 100)}}},
        {"models": {"resnet": {"1": _cache("cached", 100), "2": _cache("failed", 10, error="x")}}},
        {"models": {"other": {"1": _cache("cached", 5)}}},
    ]
    summaries = cache_summaries("resnet", caches * 100)  # 400 pods: the same few fields
    assert summaries[1] == {
        "state": "Cached",
        "downloadingPods": 0,
        "cachedPods": 300,
        "failedPods": 0,
        "sizeBytes": 100,
        "fetchedBytes": 20000,
        "fetchedBytesMinPerPod": 0,  # a restarted container reused its cache
        "fetchedBytesMaxPerPod": 100,  # no pod fetched it twice
    }
    assert summaries[2]["state"] == "Downloading"
    assert (summaries[2]["downloadingPods"], summaries[2]["failedPods"]) == (100, 100)
    assert summaries[2]["error"] == "x"
    without_downloads = [c for i, c in enumerate(caches) if i != 0]
    assert cache_summaries("resnet", without_downloads)[2]["state"] == "Failed"


def test_models_status_shows_the_cache_beside_each_reported_version():
    spec = parse_spec({"models": [{"name": "resnet", "storage": {"s3": S3}}]})
    reports = [
        {
            "models": [
                {"name": "resnet", "model_version_status": [{"version": 1, "state": "AVAILABLE"}]}
            ]
        }
    ]
    caches = [{"models": {"resnet": {"1": _cache("cached", 100), "9": _cache("cached", 1)}}}]
    (model,) = models_status(spec, reports, caches)
    (row,) = model["versions"]  # version 9 is no longer reported: not shown
    assert row["state"] == "AVAILABLE" and row["availablePods"] == 1
    assert row["cache"]["state"] == "Cached" and row["cache"]["fetchedBytes"] == 100
    (plain,) = models_status(spec, reports)
    assert "cache" not in plain["versions"][0]
