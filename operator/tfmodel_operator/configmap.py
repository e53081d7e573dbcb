"""The ConfigMap holding models.config (hot-reloaded by the pods) and batching.config."""

from __future__ import annotations

from typing import Any

from . import names
from .model_config import (
    render_batching_config,
    render_models_config,
    render_monitoring_config,
    render_traffic_split,
)
from .spec import TFModelSpec


def build_configmap(tfmodel: str, namespace: str, spec: TFModelSpec) -> dict[str, Any]:
    data = {
        names.MODELS_CONFIG_FILE: render_models_config(spec),
        # Always present (and the flag always set), so turning a split on or off only
        # rewrites the ConfigMap and never rolls the pods.
        names.TRAFFIC_SPLIT_FILE: render_traffic_split(spec),
        names.MONITORING_CONFIG_FILE: render_monitoring_config(),
    }
    if spec.batching is not None:
        data[names.BATCHING_CONFIG_FILE] = render_batching_config(spec.batching)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": names.configmap_name(tfmodel),
            "namespace": namespace,
            "labels": names.common_labels(tfmodel),
        },
        "data": data,
    }
