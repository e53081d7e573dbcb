"""spec.security and the pod fields: parse_spec's checks and what the builders make of them."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from tfmodel_operator import names
from tfmodel_operator.cache import trim_pod
from tfmodel_operator.deployment import build_deployment
from tfmodel_operator.probe_transport import ProbeHow
from tfmodel_operator.services import build_servicemonitor
from tfmodel_operator.spec import SpecError, parse_spec
from tfmodel_server.flags import parse_args


def base() -> dict[str, Any]:
    return {
        "models": [{"name": "lin", "basePath": "/models/lin"}],
        "storage": {"persistentVolumeClaim": {"claimName": "models"}},
    }


SECURE = {
    **base(),
    "security": {
        "tls": {"secretName": "srv-tls", "clientVerify": True, "probeClientSecretName": "op"},
        "tokenSecret": {"name": "tokens", "key": "list"},
        "cors": True,
    },
    "serviceAccountName": "inference",
    "priorityClassName": "serving-high",
    "podLabels": {"team": "ml"},
    "podAnnotations": {"sidecar.istio.io/inject": "false"},
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ml"]}]}
                ]
            }
        }
    },
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
        },
        {
            "maxSkew": 2,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"team": "ml"}},
        },
    ],
    "env": [
        {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"},
        {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ],
    "extraArgs": ["--rest_api_timeout_in_ms=5000", "--enable_grpc_healthcheck_service"],
}


def pod_template(spec: dict[str, Any]) -> dict[str, Any]:
    return build_deployment("secure", "ns", parse_spec(copy.deepcopy(spec)))["spec"]["template"]


def test_tls_mtls_token_cors_become_flags_the_server_takes():
    (container,) = pod_template(SECURE)["spec"]["containers"]
    args = container["args"]
    tls_dir, auth_dir = names.TLS_DIR, names.AUTH_DIR
    assert args[-8:] == [
        f"--ssl_server_cert_file={tls_dir}/tls.crt",
        f"--ssl_server_key_file={tls_dir}/tls.key",
        f"--ssl_custom_ca_file={tls_dir}/ca.crt",
        "--ssl_client_verify",
        f"--auth_token_file={auth_dir}/tokens",
        "--rest_api_enable_cors_support",
        # extraArgs last, as given
        "--rest_api_timeout_in_ms=5000",
        "--enable_grpc_healthcheck_service",
    ]
    options = parse_args(args)  # the server's own parser takes the whole command line
    assert options.ssl_server_cert_file == f"{tls_dir}/tls.crt"
    assert options.ssl_client_verify is True and options.ssl_custom_ca_file == f"{tls_dir}/ca.crt"
    assert options.auth_token_file == f"{auth_dir}/tokens"
    assert options.rest_api_enable_cors_support is True
    assert options.rest_api_timeout_in_ms == 5000 and options.enable_grpc_healthcheck_service


def test_secrets_are_mounted_read_only_as_directories():
    template = pod_template(SECURE)
    pod = template["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"] == {"secretName": "srv-tls", "defaultMode": 0o440}
    assert volumes["auth-tokens"]["secret"] == {
        "secretName": "tokens",
        "items": [{"key": "list", "path": "tokens"}],
        "defaultMode": 0o440,
    }
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    for name, path in (("tls", names.TLS_DIR), ("auth-tokens", names.AUTH_DIR)):
        # No subPath: a subPath mount never sees the Secret's updates.
        assert mounts[name] == {"name": name, "mountPath": path, "readOnly": True}
    # The server runs as fsGroup's group: 0440 files are readable by it, nobody else.
    assert pod["securityContext"]["fsGroup"] == 1000


def test_kubelet_probes_use_https_and_the_pod_says_how_the_operator_probes():
    template = pod_template(SECURE)
    (container,) = template["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scheme"] == "https"
    how = json.loads(annotations[names.PROBE_ANNOTATION])
    assert how == {
        "scheme": "https",
        "tlsSecret": "srv-tls",
        "clientSecret": "op",
        "tokenSecret": "tokens",
        "tokenKey": "list",
    }
    # The pod cache keeps that annotation (and no other) for probe.py.
    pod = {"metadata": {"name": "p", "namespace": "ns", **template["metadata"]}, "spec": {}}
    trimmed = trim_pod(pod)
    assert trimmed["metadata"]["annotations"] == {
        names.PROBE_ANNOTATION: json.dumps(how, sort_keys=True)
    }
    assert ProbeHow.of(trimmed) == ProbeHow("https", "srv-tls", "op", "tokens", "list")


def test_without_security_nothing_changes():
    template = pod_template(base())
    (container,) = template["spec"]["containers"]
    assert "scheme" not in container["readinessProbe"]["httpGet"]
    assert names.PROBE_ANNOTATION not in template["metadata"]["annotations"]
    assert not any(
        a.startswith(("--ssl", "--auth", "--rest_api_enable_cors")) for a in container["args"]
    )
    assert {v["name"] for v in template["spec"]["volumes"]} == {"config", "models", "tmp"}
    assert ProbeHow.of({"metadata": template["metadata"]}) is None


def test_token_only_probes_over_http_with_the_token():
    spec = {**base(), "security": {"tokenSecret": {"name": "t"}}}
    template = pod_template(spec)
    (container,) = template["spec"]["containers"]
    assert container["args"][-1] == f"--auth_token_file={names.AUTH_DIR}/tokens"
    how = json.loads(template["metadata"]["annotations"][names.PROBE_ANNOTATION])
    assert how == {"tokenSecret": "t", "tokenKey": "tokens"}
    assert "scheme" not in container["readinessProbe"]["httpGet"]


def test_pod_fields_reach_the_pod_template():
    template = pod_template(SECURE)
    pod, meta = template["spec"], template["metadata"]
    assert pod["serviceAccountName"] == "inference"
    assert pod["priorityClassName"] == "serving-high"
    assert pod["affinity"] == SECURE["affinity"]
    zone, host = pod["topologySpreadConstraints"]
    # Without a labelSelector a constraint spreads this TFModel's own pods.
    assert zone["labelSelector"] == {"matchLabels": names.selector_labels("secure")}
    assert host["labelSelector"] == {"matchLabels": {"team": "ml"}}
    assert meta["labels"]["team"] == "ml"
    assert meta["labels"]["app.kubernetes.io/instance"] == "secure"
    assert meta["annotations"]["sidecar.istio.io/inject"] == "false"
    (container,) = pod["containers"]
    assert container["env"] == SECURE["env"]


@pytest.mark.parametrize(
    "change,message",
    [
        (
            {"security": {"tls": {"secretName": "t", "clientVerify": True}}},
            "clientVerify needs probeClientSecretName",
        ),
        (
            {"podLabels": {"app.kubernetes.io/instance": "x"}},
            "podLabels app.kubernetes.io/instance",
        ),
        ({"podLabels": {"serving.tfmodel.io/tfmodel": "x"}}, "set by the operator"),
        ({"podAnnotations": {"prometheus.io/port": "1"}}, "podAnnotations prometheus.io/port"),
        ({"podAnnotations": {"prometheus.io/other": "1"}}, "set by the operator (prometheus.io/*"),
        ({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}, "once"),
        ({"env": [{"name": "AWS_REGION", "value": "x"}]}, "env AWS_REGION: set by the operator"),
        ({"extraArgs": ["--no_such_flag=1"]}, "--no_such_flag is not a tfmodel-server flag"),
        ({"extraArgs": ["--model_config_file=/x"]}, "--model_config_file is set by spec.models"),
    ],
)
def test_bad_security_and_pod_fields_are_named(change, message):
    with pytest.raises(SpecError, match=None) as err:
        parse_spec({**base(), **change})
    assert message in str(err.value), err.value


def test_the_servicemonitor_scrapes_with_the_same_secrets():
    (endpoint,) = build_servicemonitor("secure", "ns", parse_spec(copy.deepcopy(SECURE)).security)[
        "spec"
    ]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {
        "ca": {"secret": {"name": "srv-tls", "key": "ca.crt"}},
        "serverName": "secure.ns.svc",
        "cert": {"secret": {"name": "op", "key": "tls.crt"}},
        "keySecret": {"name": "op", "key": "tls.key"},
    }
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "tokens", "key": "list"},
    }
    (plain,) = build_servicemonitor("m", "ns")["spec"]["endpoints"]
    assert plain == {"port": "http", "path": names.METRICS_PATH}


def test_the_example_builds():
    import yaml

    from tests.operator.test_builders import EXAMPLES

    doc = yaml.safe_load((EXAMPLES / "secure-model.yaml").read_text())
    template = build_deployment("resnet", "ns", parse_spec(doc["spec"]))["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert parse_args(container["args"]).ssl_client_verify is True
    assert template["spec"]["serviceAccountName"] == "inference"
