"""The operator's probes and scrapes (probe.py) against a real server with TLS, mTLS and
tokens on, reading the Secrets the pod's annotation names (here: a dict standing in for
the API; the cluster test reads real Secrets)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tfmodel_operator import names
from tfmodel_operator.deployment import probe_annotation
from tfmodel_operator.model_config import render_monitoring_config
from tfmodel_operator.probe import PodClient
from tfmodel_operator.spec import parse_spec

from tests.server.savedmodels import export_linear
from tests.server.serverproc import ServerProcess
from tests.server.test_security import PKI, _cert, _key, _pem_cert, _pem_key

SPEC = {
    "models": [{"name": "m", "basePath": "/models/m"}],
    "storage": {"persistentVolumeClaim": {"claimName": "models"}},
    "security": {
        "tls": {"secretName": "srv-tls", "clientVerify": True, "probeClientSecretName": "op"},
        "tokenSecret": {"name": "tokens"},
    },
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("secure")
    export_linear(root / "m", 1, 2.0, 1.0)
    tls = root / "tls"
    tls.mkdir()
    (tls / "tls.crt").write_text(_pem_cert(pki.server_cert))
    (tls / "tls.key").write_text(_pem_key(pki.server_key))
    (tls / "ca.crt").write_text(pki.ca_pem)
    (root / "tokens").write_text("server-token\n")
    (root / "monitoring.config").write_text(render_monitoring_config())
    proc = ServerProcess(
        "--model_name=m",
        f"--model_base_path={root / 'm'}",
        f"--monitoring_config_file={root / 'monitoring.config'}",
        f"--ssl_server_cert_file={tls / 'tls.crt'}",
        f"--ssl_server_key_file={tls / 'tls.key'}",
        f"--ssl_custom_ca_file={tls / 'ca.crt'}",
        "--ssl_client_verify",
        f"--auth_token_file={root / 'tokens'}",
    )
    with proc:
        client = PodClient(timeout=10, deadline=30)
        secrets = Secrets(pki)
        proc.wait_for(
            lambda: client.ask([pod(proc)], False, secrets)[0].models is not None,
            timeout=240,
            what="the probe's first answer",
        )
        client.close()
        yield proc


def pod(server: ServerProcess) -> dict[str, Any]:
    """A running server pod as the operator sees it, with the builder's probe annotation."""
    how = probe_annotation(parse_spec(json.loads(json.dumps(SPEC))))
    assert how is not None
    return {
        "metadata": {
            "name": "secure-0",
            "namespace": "ns",
            "uid": "u1",
            "annotations": {names.PROBE_ANNOTATION: how},
        },
        "spec": {
            "containers": [
                {
                    "name": names.SERVER_CONTAINER,
                    "ports": [{"name": "http", "containerPort": server.rest_port}],
                }
            ]
        },
        "status": {"phase": "Running", "podIP": "127.0.0.1"},
    }


class Secrets:
    """(namespace, name) -> data, as kubeapi.read_secret returns it."""

    def __init__(self, pki: PKI) -> None:
        self.data: dict[str, dict[str, bytes]] = {
            "srv-tls": {
                "tls.crt": _pem_cert(pki.server_cert).encode(),
                "tls.key": _pem_key(pki.server_key).encode(),
                "ca.crt": pki.ca_pem.encode(),
            },
            "op": {
                "tls.crt": Path(pki.client_files[0]).read_bytes(),
                "tls.key": Path(pki.client_files[1]).read_bytes(),
            },
            "tokens": {"tokens": b"server-token\n"},
        }
        self.reads: list[str] = []

    def __call__(self, namespace: str, name: str) -> dict[str, bytes] | None:
        assert namespace == "ns"
        self.reads.append(name)
        return self.data.get(name)


def ask(server: ServerProcess, secrets: Secrets, metrics: bool = True):
    client = PodClient(timeout=10, deadline=30)
    try:
        (answer,) = client.ask([pod(server)], metrics, secrets)
    finally:
        client.close()
    return answer


def test_probe_and_scrape_over_mtls_with_a_token(server, pki):
    secrets = Secrets(pki)
    answer = ask(server, secrets)
    assert answer.models is not None, "the probe got no answer"
    (model,) = answer.models["models"]
    assert model["name"] == "m" and model["model_version_status"][0]["state"] == "AVAILABLE"
    assert answer.metrics is not None and ":tensorflow:serving:" in answer.metrics
    assert set(secrets.reads) == {"srv-tls", "op", "tokens"}


def test_without_the_token_or_client_certificate_the_server_refuses(server, pki):
    no_token = Secrets(pki)
    no_token.data["tokens"] = {"tokens": b"wrong-token\n"}
    assert ask(server, no_token).models is None  # 401
    no_client = Secrets(pki)
    del no_client.data["op"]
    assert ask(server, no_client).models is None  # the Secret is missing: not asked


def test_an_untrusted_server_certificate_is_not_talked_to(server, pki):
    """The operator verifies the server against the TLS Secret: a server presenting another
    certificate (here: the Secret holds a different one) gets no token."""
    other = Secrets(pki)
    stranger_key = _key()
    stranger = _cert("stranger", stranger_key, pki.rogue_client_cert.issuer, _key(), ca=False)
    other.data["srv-tls"] = {
        "tls.crt": _pem_cert(stranger).encode(),
        "tls.key": _pem_key(stranger_key).encode(),
    }
    assert ask(server, other).models is None


def test_tokens_are_tried_in_turn_during_a_rotation(server, pki):
    """The Secret already has the new token first; the pod's file still has the old one."""
    rotating = Secrets(pki)
    rotating.data["tokens"] = {"tokens": b"# rotated\nnext-token\nserver-token\n"}
    answer = ask(server, rotating)
    assert answer.models is not None and answer.metrics is not None
