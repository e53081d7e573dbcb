"""Names, labels and fixed paths shared by the builders and the handlers."""

from __future__ import annotations

import re

GROUP = "serving.tfmodel.io"
VERSION = "v1alpha1"
PLURAL = "tfmodels"
KIND = "TFModel"
FIELD_MANAGER = "tfmodel-operator"
# kopf's diff base (the last handled spec) lives in this status field, not in an annotation:
# annotations are limited to 256 KiB in total, so a large valid spec could not be handled.
STATUS_DIFFBASE = "lastHandledConfiguration"

CONFIG_DIR = "/etc/tfmodel"
MODELS_CONFIG_FILE = "models.config"
BATCHING_CONFIG_FILE = "batching.config"
# tfmodel's canary split (--traffic_split_file), beside TF Serving's standard models.config.
TRAFFIC_SPLIT_FILE = "traffic-split.json"
# Prometheus on the REST port (TF Serving's MonitoringConfig): rollouts read per-version
# figures from it, and the pods carry the usual prometheus.io/* scrape annotations.
MONITORING_CONFIG_FILE = "monitoring.config"
METRICS_PATH = "/monitoring/prometheus/metrics"
MODELS_MOUNT = "/models"
# s3:// models are downloaded here (an emptyDir: it outlives a container restart).
MODEL_CACHE_DIR = "/var/cache/tfmodel"
REQUEST_LOG_DIR = "/var/log/tfmodel"  # spec.requestLogging's volume; a directory per pod
# spec.security: the Secrets mounted read-only (whole directories, not subPath: a Secret
# update reaches a directory mount, and the server re-reads the files).
TLS_DIR = "/etc/tfmodel-tls"
AUTH_DIR = "/etc/tfmodel-auth"
TOKEN_FILE = "tokens"
# Pod annotation (JSON) telling probe.py how to reach that pod's server: scheme, and the
# Secrets holding what it trusts and presents. Per pod, so a rolling change of
# spec.security probes old and new pods each their own way.
PROBE_ANNOTATION = "serving.tfmodel.io/probe"
GRPC_CONTAINER_PORT = 8500
REST_CONTAINER_PORT = 8501
SERVER_CONTAINER = "server"

# Pod-template annotation carrying a hash of batching.config: the server reads batching
# parameters only at start-up, so a change to them must roll the pods. models.config is
# hot-reloaded and deliberately has no such annotation.
BATCHING_HASH_ANNOTATION = f"{GROUP}/batching-config-hash"


# Child names. They stay what they were (clients address `<name>` and `<name>-headless` by
# DNS, so renaming would break them and need a migration). Names only clash within one kind,
# and only Services mix two schemes (`<name>` and `<name>-headless`): TFModels `foo` and
# `foo-headless` both wanted Service `foo-headless`. The CRD rejects new TFModel names ending
# in HEADLESS_SUFFIX, which makes the two schemes disjoint, so no two TFModels in a namespace
# want the same child; the ownership check (ownership.py) covers TFModels created before.
CONFIGMAP_SUFFIX = "-config"
HEADLESS_SUFFIX = "-headless"
# Service names are DNS-1035 labels (63 characters at most): the longest child name,
# `<name>-headless`, bounds the TFModel name. Labels carrying the name (63) fit too.
MAX_LABEL_LENGTH = 63
MAX_TFMODEL_NAME_LENGTH = MAX_LABEL_LENGTH - len(HEADLESS_SUFFIX)
DNS1035_LABEL = "^[a-z]([-a-z0-9]*[a-z0-9])?$"


def configmap_name(tfmodel: str) -> str:
    return f"{tfmodel}{CONFIGMAP_SUFFIX}"


def deployment_name(tfmodel: str) -> str:
    return tfmodel


def service_name(tfmodel: str) -> str:
    return tfmodel


def headless_service_name(tfmodel: str) -> str:
    return f"{tfmodel}{HEADLESS_SUFFIX}"


def servicemonitor_name(tfmodel: str) -> str:
    return tfmodel


# On the main Service only, so a ServiceMonitor scrapes each pod once (the headless Service
# selects the same pods).
SERVICE_ROLE_LABEL = f"{GROUP}/service"


def hpa_name(tfmodel: str) -> str:
    return tfmodel


def pdb_name(tfmodel: str) -> str:
    return tfmodel


def name_problems(tfmodel: str) -> list[str]:
    """Why a TFModel name cannot name its children.

    The CRD checks the same on create; this catches TFModels created under an older CRD.
    The `-headless` suffix rule is the CRD's alone: such a TFModel still works unless its
    name is taken by another TFModel's headless Service, which the ownership check reports.
    """
    problems = []
    if not re.match(DNS1035_LABEL, tfmodel):
        problems.append(
            f"TFModel name {tfmodel} must be a DNS-1035 label (lowercase letters, digits and '-', "
            "starting with a letter and ending with a letter or digit)"
        )
    if len(tfmodel) > MAX_TFMODEL_NAME_LENGTH:
        problems.append(
            f"TFModel name {tfmodel} is {len(tfmodel)} characters; at most "
            f"{MAX_TFMODEL_NAME_LENGTH} fit in its headless Service's name"
        )
    return problems


def selector_labels(tfmodel: str) -> dict[str, str]:
    """Labels that select a TFModel's server pods (immutable once a Deployment exists)."""
    return {"app.kubernetes.io/name": "tfmodel-server", "app.kubernetes.io/instance": tfmodel}


def common_labels(tfmodel: str) -> dict[str, str]:
    return {
        **selector_labels(tfmodel),
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
        f"{GROUP}/tfmodel": tfmodel,
    }


def selector_string(tfmodel: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(tfmodel).items()))
