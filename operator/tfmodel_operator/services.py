"""A Service (gRPC 8500 + REST 8501) and a headless Service for client-side gRPC balancing."""

from __future__ import annotations

from typing import Any

from . import names
from .spec import Security, TFModelSpec


def _ports(spec: TFModelSpec) -> list[dict[str, Any]]:
    return [
        {
            "name": "grpc",
            "port": spec.service.grpc_port,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "grpc",
        },
        {
            "name": "http",
            "port": spec.service.rest_port,
            "targetPort": "http",
            "protocol": "TCP",
            "appProtocol": "http",
        },
    ]


def build_service(tfmodel: str, namespace: str, spec: TFModelSpec) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": names.service_name(tfmodel),
        "namespace": namespace,
        "labels": {**names.common_labels(tfmodel), names.SERVICE_ROLE_LABEL: "main"},
    }
    if spec.service.annotations:
        metadata["annotations"] = dict(spec.service.annotations)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": spec.service.type,
            "selector": names.selector_labels(tfmodel),
            "ports": _ports(spec),
        },
    }


def build_headless_service(tfmodel: str, namespace: str, spec: TFModelSpec) -> dict[str, Any]:
    """One DNS A record per ready pod, for gRPC clients that balance per request themselves."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": names.headless_service_name(tfmodel),
            "namespace": namespace,
            "labels": names.common_labels(tfmodel),
        },
        "spec": {
            "clusterIP": "None",
            "selector": names.selector_labels(tfmodel),
            "ports": _ports(spec),
        },
    }


def _scrape_endpoint(tfmodel: str, namespace: str, security: Security) -> dict[str, Any]:
    """Prometheus' scrape: over HTTPS with the TLS Secret's ca.crt and, with mTLS, the
    operator's client certificate Secret; with tokens, the token Secret's key (one token)."""
    endpoint: dict[str, Any] = {"port": "http", "path": names.METRICS_PATH}
    tls, token = security.tls, security.token
    if tls is not None:
        tls_config: dict[str, Any] = {
            "ca": {"secret": {"name": tls.secret_name, "key": "ca.crt"}},
            # Pods are scraped by IP: the certificate is checked for the Service's name.
            "serverName": f"{names.service_name(tfmodel)}.{namespace}.svc",
        }
        if tls.probe_client_secret_name:
            client = tls.probe_client_secret_name
            tls_config["cert"] = {"secret": {"name": client, "key": "tls.crt"}}
            tls_config["keySecret"] = {"name": client, "key": "tls.key"}
        endpoint.update(scheme="https", tlsConfig=tls_config)
    if token is not None:
        endpoint["authorization"] = {
            "type": "Bearer",
            "credentials": {"name": token.name, "key": token.key},
        }
    return endpoint


def build_servicemonitor(
    tfmodel: str, namespace: str, security: Security | None = None
) -> dict[str, Any]:
    """A Prometheus Operator ServiceMonitor for the servers' metrics (when that CRD exists)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": names.servicemonitor_name(tfmodel),
            "namespace": namespace,
            "labels": names.common_labels(tfmodel),
        },
        "spec": {
            "selector": {
                "matchLabels": {
                    **names.selector_labels(tfmodel),
                    names.SERVICE_ROLE_LABEL: "main",
                }
            },
            "endpoints": [_scrape_endpoint(tfmodel, namespace, security or Security())],
        },
    }
