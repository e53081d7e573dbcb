"""Render a TFModel's models.config (ModelServerConfig) and batching.config (BatchingParameters)."""

from __future__ import annotations

import json

from . import names
from .spec import Batching, ModelSpec, TFModelSpec, VersionPolicy
from .textproto import Message, render


def _policy_message(policy: VersionPolicy) -> Message:
    if policy.kind == "latest":
        return [("latest", [("num_versions", policy.num_versions)])]
    if policy.kind == "specific":
        return [("specific", [("versions", v) for v in policy.versions])]
    return [("all", [])]


def _model_message(model: ModelSpec) -> Message:
    message: Message = [
        ("name", model.name),
        ("base_path", model.base_path),
        ("model_platform", "tensorflow"),
        ("model_version_policy", _policy_message(model.policy)),
    ]
    for label, version in model.labels:
        message.append(("version_labels", [("key", label), ("value", version)]))
    if model.request_logging is not None:
        logging = model.request_logging
        message.append(
            (
                "logging_config",
                [
                    ("sampling_config", [("sampling_rate", logging.sampling_rate)]),
                    ("log_collector_config", [("filename_prefix", logging.filename_prefix)]),
                ],
            )
        )
    return message


def render_models_config(spec: TFModelSpec) -> str:
    """ModelServerConfig text with one model_config_list entry per model, in spec order."""
    configs: Message = [("config", _model_message(m)) for m in spec.models]
    return render([("model_config_list", configs)])


def render_batching_config(batching: Batching) -> str:
    """BatchingParameters text; numeric fields are wrapper messages (`{ value: N }`)."""
    message: Message = []
    for field, value in (
        ("max_batch_size", batching.max_batch_size),
        ("batch_timeout_micros", batching.batch_timeout_micros),
        ("max_enqueued_batches", batching.max_enqueued_batches),
        ("num_batch_threads", batching.num_batch_threads),
    ):
        if value is not None:
            message.append((field, [("value", int(value))]))
    message.extend(("allowed_batch_sizes", int(size)) for size in batching.allowed_batch_sizes)
    if batching.pad_variable_length_inputs is not None:
        message.append(("pad_variable_length_inputs", bool(batching.pad_variable_length_inputs)))
    return render(message)


def render_traffic_split(spec: TFModelSpec) -> str:
    """--traffic_split_file JSON: the models with a canaryTrafficPercent (0 included), and
    their shadowTrafficPercent (shadow traffic) when set."""
    models: dict[str, dict[str, int]] = {}
    for m in spec.models:
        if m.canary_traffic_percent is None and m.shadow_traffic_percent is None:
            continue
        entry = models[m.name] = {"canaryPercent": m.canary_traffic_percent or 0}
        if m.shadow_traffic_percent is not None:
            entry["shadowPercent"] = m.shadow_traffic_percent
    return json.dumps({"models": models}, indent=2, sort_keys=True) + "\n"


def render_monitoring_config() -> str:
    """MonitoringConfig text: Prometheus on the REST port at names.METRICS_PATH."""
    return render([("prometheus_config", [("enable", True), ("path", names.METRICS_PATH)])])
