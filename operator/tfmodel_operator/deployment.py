"""The tfmodel-server Deployment.

Only pod-level settings (image, resources, GPUs, scheduling, flags, batching) reach the pod
template; the model list lives in the ConfigMap, mounted as a directory (a subPath mount
never updates), so editing models or labels never restarts a pod.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import names
from .model_config import render_batching_config
from .spec import TFModelSpec

SERVER_UID = 1000

# SIGTERM: the server keeps serving with /readyz 503 for SHUTDOWN_READINESS_DELAY
# (endpoint removal reaches kube-proxy, ingresses and headless-Service DNS in a
# few seconds), then drains for at most DRAIN_TIMEOUT and exits within 2 s of it
# (the server's exit deadline). The grace period covers all three plus slack, so
# the kubelet never SIGKILLs a draining pod. The delay is the server's own flag, so the
# server knows it is going away: /readyz says 503 and REST replies close their connections.
SHUTDOWN_READINESS_DELAY_SECONDS = 10
DRAIN_TIMEOUT_SECONDS = 30
TERMINATION_GRACE_PERIOD_SECONDS = SHUTDOWN_READINESS_DELAY_SECONDS + DRAIN_TIMEOUT_SECONDS + 5
# gRPC clients keep one connection for ever. A graceful GOAWAY every few seconds makes
# them reconnect to a pod that is still in the endpoints during the readiness delay,
# so no call reaches a pod at its stop instant (grpc.aio answers a call racing stop()
# with CANCELLED, grpc/grpc#41785), and new replicas get connections after a scale-up.
# The grace lets calls on the old connection finish.
GRPC_MAX_CONNECTION_AGE_MS = 3000
GRPC_MAX_CONNECTION_AGE_GRACE_MS = 30000


def server_args(spec: TFModelSpec) -> list[str]:
    """tensorflow_model_server-compatible flags for the server container."""
    args = [
        f"--port={names.GRPC_CONTAINER_PORT}",
        f"--rest_api_port={names.REST_CONTAINER_PORT}",
        f"--model_config_file={names.CONFIG_DIR}/{names.MODELS_CONFIG_FILE}",
        f"--model_config_file_poll_wait_seconds={spec.poll_interval_seconds}",
        f"--file_system_poll_wait_seconds={spec.file_system_poll_wait_seconds}",
        f"--traffic_split_file={names.CONFIG_DIR}/{names.TRAFFIC_SPLIT_FILE}",
        f"--monitoring_config_file={names.CONFIG_DIR}/{names.MONITORING_CONFIG_FILE}",
        # Probes must answer while models load (the server's default, as TF
        # Serving, opens its ports only after the initial load).
        "--listen_before_models_load",
        f"--shutdown_readiness_delay_seconds={SHUTDOWN_READINESS_DELAY_SECONDS}",
        f"--drain_timeout_seconds={DRAIN_TIMEOUT_SECONDS}",
        "--grpc_channel_arguments="
        f"grpc.max_connection_age_ms={GRPC_MAX_CONNECTION_AGE_MS},"
        f"grpc.max_connection_age_grace_ms={GRPC_MAX_CONNECTION_AGE_GRACE_MS}",
    ]
    if spec.batching is not None:
        args += [
            "--enable_batching",
            f"--batching_parameters_file={names.CONFIG_DIR}/{names.BATCHING_CONFIG_FILE}",
        ]
    if spec.allow_unavailable_labels:
        args.append("--allow_version_labels_for_unavailable_models")
    if spec.object_store is not None:
        args += [
            f"--model_cache_dir={names.MODEL_CACHE_DIR}",
            f"--s3_addressing_style={spec.object_store.addressing_style}",
        ]
    args += security_args(spec)
    args += request_log_args(spec)
    # Last: flags the spec does not model, checked against the server's (spec.py).
    args += list(spec.pod.extra_args)
    return args


def security_args(spec: TFModelSpec) -> list[str]:
    """TLS from the mounted kubernetes.io/tls Secret, tokens, CORS."""
    security, args = spec.security, []
    if security.tls is not None:
        args += [
            f"--ssl_server_cert_file={names.TLS_DIR}/tls.crt",
            f"--ssl_server_key_file={names.TLS_DIR}/tls.key",
        ]
        if security.tls.client_verify:
            args += [f"--ssl_custom_ca_file={names.TLS_DIR}/ca.crt", "--ssl_client_verify"]
    if security.token is not None:
        args.append(f"--auth_token_file={names.AUTH_DIR}/{names.TOKEN_FILE}")
    if security.cors:
        args.append("--rest_api_enable_cors_support")
    return args


def request_log_args(spec: TFModelSpec) -> list[str]:
    """The pods share spec.requestLogging's volume, so each writes under its own name:
    the kubelet expands $(POD_NAME) from the container's env (request_log_env)."""
    if spec.request_log is None:
        return []
    args = [f"--request_log_dir={names.REQUEST_LOG_DIR}/$(POD_NAME)"]
    if spec.request_log.max_file_bytes is not None:
        args.append(f"--request_log_max_file_bytes={spec.request_log.max_file_bytes}")
    return args


def request_log_env(spec: TFModelSpec) -> list[dict[str, Any]]:
    if spec.request_log is None:
        return []
    return [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]


def probe_annotation(spec: TFModelSpec) -> str | None:
    """How probe.py reaches this pod's server (None: plain HTTP, no token)."""
    security = spec.security
    how: dict[str, str] = {}
    if security.tls is not None:
        how["scheme"] = "https"
        how["tlsSecret"] = security.tls.secret_name
        if security.tls.probe_client_secret_name:
            how["clientSecret"] = security.tls.probe_client_secret_name
    if security.token is not None:
        how["tokenSecret"], how["tokenKey"] = security.token.name, security.token.key
    return json.dumps(how, sort_keys=True) if how else None


# Secret files readable by the server's group (fsGroup) only.
SECRET_FILE_MODE = 0o440


def _security_volumes(spec: TFModelSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) of the TLS and token Secrets, read-only."""
    volumes, mounts = [], []
    tls, token = spec.security.tls, spec.security.token
    if tls is not None:
        volumes.append(
            {
                "name": "tls",
                "secret": {"secretName": tls.secret_name, "defaultMode": SECRET_FILE_MODE},
            }
        )
        mounts.append({"name": "tls", "mountPath": names.TLS_DIR, "readOnly": True})
    if token is not None:
        volumes.append(
            {
                "name": "auth-tokens",
                "secret": {
                    "secretName": token.name,
                    "items": [{"key": token.key, "path": names.TOKEN_FILE}],
                    "defaultMode": SECRET_FILE_MODE,
                },
            }
        )
        mounts.append({"name": "auth-tokens", "mountPath": names.AUTH_DIR, "readOnly": True})
    return volumes, mounts


def _spread(tfmodel: str, constraint: dict[str, Any]) -> dict[str, Any]:
    """A topology spread constraint; without a labelSelector it spreads this TFModel's pods."""
    out = dict(constraint)
    out.setdefault("labelSelector", {"matchLabels": names.selector_labels(tfmodel)})
    return out


def object_store_env(spec: TFModelSpec) -> list[dict[str, Any]]:
    """The AWS SDK variables the server reads; credentials only by reference to a Secret."""
    store = spec.object_store
    if store is None:
        return []
    env: list[dict[str, Any]] = []
    if store.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": store.endpoint})
    if store.region:
        env.append({"name": "AWS_REGION", "value": store.region})
    if store.secret_ref is not None:
        ref = store.secret_ref
        for var, key in (
            ("AWS_ACCESS_KEY_ID", ref.access_key_id_key),
            ("AWS_SECRET_ACCESS_KEY", ref.secret_access_key_key),
        ):
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": key}}})
    return env


def _resources(spec: TFModelSpec) -> dict[str, Any]:
    resources = {k: dict(v) for k, v in spec.resources.items() if v}
    if spec.gpus > 0:
        # Extended resources are set as limits; the scheduler uses the limit as the request.
        resources.setdefault("limits", {})[spec.gpu_resource_name] = spec.gpus
    return resources


def _storage_volume(spec: TFModelSpec) -> dict[str, Any]:
    ((kind, source),) = spec.storage.items()  # spec.py: exactly one when set
    source = dict(source)
    if kind in ("persistentVolumeClaim", "nfs", "csi"):
        source["readOnly"] = True
    return {"name": "models", kind: source}


def _cache_volume(spec: TFModelSpec) -> dict[str, Any]:
    """The s3:// version cache: an emptyDir, so a restarted container reuses it."""
    empty_dir: dict[str, Any] = {}
    if spec.model_cache_size_limit:
        empty_dir["sizeLimit"] = spec.model_cache_size_limit
    return {"name": "model-cache", "emptyDir": empty_dir}


def _probe(path: str, period: int, failures: int, https: bool = False) -> dict[str, Any]:
    get: dict[str, Any] = {"path": path, "port": "http"}
    if https:
        # The kubelet does not verify the certificate; the server answers the probe paths
        # without a client certificate even with clientVerify.
        get["scheme"] = "HTTPS"
    return {
        "httpGet": get,
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def build_pod_template(tfmodel: str, spec: TFModelSpec) -> dict[str, Any]:
    https = spec.security.tls is not None
    secret_volumes, secret_mounts = _security_volumes(spec)
    container: dict[str, Any] = {
        "name": names.SERVER_CONTAINER,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "args": server_args(spec),
        "ports": [
            {"name": "grpc", "containerPort": names.GRPC_CONTAINER_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": names.REST_CONTAINER_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": _probe("/readyz", 5, 3, https),
        # Keep serving while the endpoint removal reaches every kube-proxy / load balancer:
        # SIGTERM (and the drain that closes the listeners) comes only after this sleep.
        "livenessProbe": _probe("/healthz", 10, 6, https),
        "volumeMounts": [
            {"name": "config", "mountPath": names.CONFIG_DIR, "readOnly": True},
            *(
                [{"name": "models", "mountPath": names.MODELS_MOUNT, "readOnly": True}]
                if spec.storage
                else []
            ),
            {"name": "tmp", "mountPath": "/tmp"},
            *(
                [{"name": "model-cache", "mountPath": names.MODEL_CACHE_DIR}]
                if spec.object_store is not None
                else []
            ),
            *secret_mounts,
            *(
                [{"name": "request-logs", "mountPath": names.REQUEST_LOG_DIR}]
                if spec.request_log is not None
                else []
            ),
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    env = object_store_env(spec) + request_log_env(spec) + [dict(e) for e in spec.pod.env]
    if env:
        container["env"] = env
    resources = _resources(spec)
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SERVER_UID,
            "runAsGroup": SERVER_UID,
            "fsGroup": SERVER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": TERMINATION_GRACE_PERIOD_SECONDS,
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": names.configmap_name(tfmodel)}},
            *([_storage_volume(spec)] if spec.storage else []),
            {"name": "tmp", "emptyDir": {}},
            *([_cache_volume(spec)] if spec.object_store is not None else []),
            *secret_volumes,
            *(
                [{"name": "request-logs", **spec.request_log.volume}]
                if spec.request_log is not None
                else []
            ),
        ],
    }
    pod = spec.pod
    if pod.service_account_name:
        pod_spec["serviceAccountName"] = pod.service_account_name
    if pod.priority_class_name:
        pod_spec["priorityClassName"] = pod.priority_class_name
    if pod.affinity:
        pod_spec["affinity"] = dict(pod.affinity)
    if pod.topology_spread_constraints:
        pod_spec["topologySpreadConstraints"] = [
            _spread(tfmodel, c) for c in pod.topology_spread_constraints
        ]
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    metadata: dict[str, Any] = {
        # spec.py keeps the user's keys off the operator's.
        "labels": {**pod.labels, **names.common_labels(tfmodel)},
        "annotations": {
            **pod.annotations,
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(names.REST_CONTAINER_PORT),
            "prometheus.io/path": names.METRICS_PATH,
        },
    }
    if https:
        metadata["annotations"]["prometheus.io/scheme"] = "https"
    probe_how = probe_annotation(spec)
    if probe_how is not None:
        metadata["annotations"][names.PROBE_ANNOTATION] = probe_how
    if spec.batching is not None:
        digest = hashlib.sha256(render_batching_config(spec.batching).encode()).hexdigest()[:16]
        metadata["annotations"][names.BATCHING_HASH_ANNOTATION] = digest
    return {"metadata": metadata, "spec": pod_spec}


def build_deployment(tfmodel: str, namespace: str, spec: TFModelSpec) -> dict[str, Any]:
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": names.selector_labels(tfmodel)},
        # Surge first: a new pod must be ready before an old one goes.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": build_pod_template(tfmodel, spec),
    }
    if spec.autoscaling is None:
        # With an HPA the field is left out so the operator and the HPA do not fight.
        deployment_spec["replicas"] = spec.replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": names.deployment_name(tfmodel),
            "namespace": namespace,
            "labels": names.common_labels(tfmodel),
        },
        "spec": deployment_spec,
    }
