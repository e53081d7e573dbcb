"""A TFModel with TLS + mTLS + a token on the real cluster (spec.security).

In file order, on one TFModel ("secure", model lin, 1 replica) whose certificates and
tokens are Kubernetes Secrets the test makes (cryptography):
  1. Ready, and the operator's own probes read every pod's /v1/models over mTLS with a token
     (status.models); kubelet probes use HTTPS; the pod fields reach the pod.
  2. A gRPC client in the node's network (official stubs) with a client certificate and the
     token is answered; without the token, without a client certificate, or in plain text it
     is refused; the same over REST.
  3. A canary rollout 1 -> 2 with a secure client on `stable`: promoted, judged on the
     metrics the operator scraped over mTLS + token (canary requests >= minRequests).
  4. Rotation without a restart: a new token in the Secret is accepted and the old one
     refused; a new server certificate in the Secret is served on new connections; the pod
     keeps its UID and restart count, and the operator's probes keep reading it.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tfmodel_devcluster.cluster import Cluster
from tfmodel_devcluster.demo.steps import wait_until

from tests.cluster import tfmodels
from tests.server.savedmodels import export_linear

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

pytestmark = pytest.mark.cluster

NAME = "secure"
LIN = {1: (0.5, 2.0), 2: (1.0, 0.0)}  # y = a*x + b
MIN_REQUESTS = 20


# --- certificates ---------------------------------------------------------------------------
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(cn: str, key, issuer, issuer_key, ca: bool = False, dns: tuple[str, ...] = ()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class PKI:
    """A CA; the server's certificate for its Service names; clients' certificates."""

    def __init__(self, namespace: str) -> None:
        self.ca_key = _key()
        self.ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secure test CA")])
        self.ca = _pem(_cert("secure test CA", self.ca_key, self.ca_name, self.ca_key, ca=True))
        self.host = f"{NAME}.{namespace}.svc"
        self.server_key, self.server = self.server_pair()
        self.client_key = _key()
        self.client = _pem(_cert("client", self.client_key, self.ca_name, self.ca_key))
        self.operator_key = _key()
        self.operator = _pem(
            _cert("tfmodel-operator", self.operator_key, self.ca_name, self.ca_key)
        )

    def server_pair(self) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        key = _key()
        dns = (NAME, self.host, f"{self.host}.cluster.local")
        return key, _pem(_cert(self.host, key, self.ca_name, self.ca_key, dns=dns))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def secret(namespace: str, name: str, data: dict[str, bytes], kind: str = "Opaque") -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": kind,
            "metadata": {"name": name, "namespace": namespace},
            "data": {k: _b64(v) for k, v in data.items()},
        }
    )


# --- the client, in the node's network namespace ---------------------------------------------
# argv: config JSON path. "matrix": each way of calling once; "loop": stable predicts with
# certificate and token until the stop file exists.
CLIENT = r"""
import json, os, socket, ssl, sys, time, urllib.error, urllib.request
import grpc
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

cfg = json.load(open(sys.argv[1]))
ip, host = cfg["ip"], cfg["host"]
read = lambda p: open(p, "rb").read()
ca, cert, key = read(cfg["ca"]), read(cfg["cert"]), read(cfg["key"])

def request(label=None):
    r = predict_pb2.PredictRequest()
    r.model_spec.name = "lin"
    if label:
        r.model_spec.version_label = label
    t = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0, 2.0])
    t.tensor_shape.dim.add(size=2)
    r.inputs["x"].CopyFrom(t)
    return r

def grpc_call(with_cert=True, token=cfg["token"], plain=False, label=None):
    if plain:
        channel = grpc.insecure_channel(f"{ip}:8500")
    else:
        creds = grpc.ssl_channel_credentials(ca, key if with_cert else None, cert if with_cert else None)
        channel = grpc.secure_channel(f"{ip}:8500", creds, options=[("grpc.ssl_target_name_override", host)])
    metadata = [("authorization", f"Bearer {token}")] if token else None
    try:
        with channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            reply = stub.Predict(request(label), timeout=20, metadata=metadata)
        return [round(v, 4) for v in reply.outputs["y"].float_val]
    except grpc.RpcError as e:
        return e.code().name

def rest_call(with_cert=True, token=cfg["token"]):
    context = ssl.create_default_context(cadata=ca.decode())
    context.check_hostname = False  # asked by ClusterIP; the CA is still checked
    if with_cert:
        open(cfg["pair"], "wb").write(cert + key)
        context.load_cert_chain(cfg["pair"])
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps({"instances": [1.0, 2.0]}).encode()
    req = urllib.request.Request(f"https://{ip}:8501/v1/models/lin:predict", body, headers)
    try:
        with urllib.request.urlopen(req, timeout=20, context=context) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:
        return type(e).__name__

def served_certificate():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.load_cert_chain(cfg["pair"]) if os.path.exists(cfg["pair"]) else None
    with socket.create_connection((ip, 8501), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            return ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True))

if cfg["mode"] == "matrix":
    print(json.dumps({
        "grpc_ok": grpc_call(label="stable"),
        "grpc_no_token": grpc_call(token=None, label="stable"),
        "grpc_wrong_token": grpc_call(token="wrong", label="stable"),
        "grpc_no_cert": grpc_call(with_cert=False, label="stable"),
        "grpc_plain": grpc_call(plain=True, label="stable"),
        "rest_ok": rest_call(),
        "rest_no_token": rest_call(token=None),
        "rest_no_cert": rest_call(with_cert=False),
        "served": served_certificate(),
    }))
else:
    ok = failed = 0
    outputs, errors = {}, []
    start = time.monotonic()
    while not os.path.exists(cfg["stop"]) and time.monotonic() - start < 600:
        y = grpc_call(label="stable")
        if isinstance(y, list):
            ok += 1
            outputs[str(y)] = outputs.get(str(y), 0) + 1
            if ok == 1:
                open(cfg["stop"] + ".ready", "w").close()
        else:
            failed += 1
            errors.append(y) if len(errors) < 20 else None
        time.sleep(0.02)
    print(json.dumps({"ok": ok, "failed": failed, "errors": errors, "outputs": outputs}))
"""


class Secure:
    """What the tests share: namespace, Service IP, certificates, the client's files."""

    def __init__(self, cluster: Cluster, namespace: str, pki: PKI, ip: str) -> None:
        self.cluster, self.namespace, self.pki, self.ip = cluster, namespace, pki, ip
        self.dir = cluster.data_dir / f"secure-{secrets.token_hex(3)}"
        self.dir.mkdir()
        self.token = "first-token"
        self.files = {"ca": pki.ca, "cert": pki.client, "key": _pem_key(pki.client_key)}
        for name, data in self.files.items():
            (self.dir / name).write_bytes(data)
        (self.dir / "client.py").write_text(CLIENT)

    def config(self, mode: str, **extra: Any) -> Path:
        path = self.dir / f"{mode}-{secrets.token_hex(3)}.json"
        cfg = {
            "mode": mode, "ip": self.ip, "host": self.pki.host, "token": self.token,
            "pair": str(self.dir / "pair.pem"),
            **{k: str(self.dir / k) for k in self.files}, **extra,
        }  # fmt: skip
        path.write_text(json.dumps(cfg))
        return path

    def matrix(self) -> dict[str, Any]:
        done = self.cluster.netns_python(str(self.dir / "client.py"), str(self.config("matrix")))
        if done.returncode != 0:  # ValueError: wait_until tries again, a direct call fails
            raise ValueError(f"the client failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    def tfmodel(self) -> dict[str, Any]:
        return self.cluster.get("tfm", NAME, "-n", self.namespace)

    def pod(self) -> dict[str, Any]:
        (pod,) = self.cluster.get("pods", "-n", self.namespace, "-l",
                                  f"app.kubernetes.io/instance={NAME}")["items"]  # fmt: skip
        return dict(pod)


@pytest.fixture(scope="module")
def secure(cluster: Cluster, operator: None) -> Iterator[Secure]:
    root = cluster.data_dir / "secure-models"
    for version, (a, b) in LIN.items():
        export_linear(root / "lin", version, a=a, b=b)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    namespace = f"secure-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("create", "serviceaccount", "inference", "-n", namespace)
    pki = PKI(namespace)
    tls = {"tls.crt": pki.server, "tls.key": _pem_key(pki.server_key), "ca.crt": pki.ca}
    cluster.kubectl("apply", "-f", "-",
                    input=secret(namespace, "server-tls", tls, "kubernetes.io/tls"))  # fmt: skip
    operator_pair = {"tls.crt": pki.operator, "tls.key": _pem_key(pki.operator_key)}
    cluster.kubectl("apply", "-f", "-",
                    input=secret(namespace, "operator-client", operator_pair,
                                 "kubernetes.io/tls"))  # fmt: skip
    cluster.kubectl("apply", "-f", "-",
                    input=secret(namespace, "tokens", {"tokens": b"first-token\n"}))  # fmt: skip
    manifest = tfmodels.manifest(
        cluster,
        NAME,
        namespace,
        1,
        [
            {
                "name": "lin",
                "basePath": "/models/lin",
                "versionPolicy": {"specific": {"versions": [1, 2]}},
                "versionLabels": {"stable": 1},
                "rollout": {
                    "steps": [{"trafficPercent": 50, "pauseSeconds": 5}],
                    "analysis": {"minRequests": MIN_REQUESTS},
                },
            }
        ],
        storage={"hostPath": {"path": str(root), "type": "Directory"}},
        security={
            "tls": {
                "secretName": "server-tls",
                "clientVerify": True,
                "probeClientSecretName": "operator-client",
            },
            "tokenSecret": {"name": "tokens"},
        },
        serviceAccountName="inference",
        podLabels={"team": "ml"},
        podAnnotations={"example.com/owner": "ml-platform"},
        env=[{"name": "TFMODEL_TEST_ENV", "value": "on"}],
        topologySpreadConstraints=[
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
            }
        ],
        extraArgs=["--enable_grpc_healthcheck_service", "--rest_api_timeout_in_ms=20000"],
    )
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    tfmodels.wait_ready(cluster, NAME, namespace)
    ip = cluster.get("service", NAME, "-n", namespace)["spec"]["clusterIP"]
    yield Secure(cluster, namespace, pki, ip)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _reachable(state: dict[str, Any]) -> int:
    (model,) = (state.get("status") or {}).get("models") or [{}]
    return int(model.get("reachablePods") or 0)


def test_ready_and_the_operator_probes_over_mtls_with_a_token(secure: Secure):
    state = secure.tfmodel()
    # The operator read GET /v1/models from the pod (HTTPS, its client certificate, the token).
    assert _reachable(state) == 1, state.get("status")
    (model,) = state["status"]["models"]
    assert {v["version"]: v["state"] for v in model["versions"]}[1] == "AVAILABLE", model
    pod = secure.pod()
    spec, meta = pod["spec"], pod["metadata"]
    (container,) = spec["containers"]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert spec["serviceAccountName"] == "inference"
    assert meta["labels"]["team"] == "ml"
    assert meta["annotations"]["example.com/owner"] == "ml-platform"
    assert {"name": "TFMODEL_TEST_ENV", "value": "on"} in container["env"]
    assert (
        spec["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"][
            "app.kubernetes.io/instance"
        ]
        == NAME
    )
    assert "--enable_grpc_healthcheck_service" in container["args"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/tfmodel-tls"]["readOnly"] and mounts["/etc/tfmodel-auth"]["readOnly"]


def test_clients_need_a_certificate_and_the_token(secure: Secure):
    got = secure.matrix()
    assert got["grpc_ok"] == [2.5, 3.0], got  # version 1: 0.5 x + 2
    assert got["grpc_no_token"] == "UNAUTHENTICATED", got
    assert got["grpc_wrong_token"] == "UNAUTHENTICATED", got
    assert got["grpc_no_cert"] == "UNAVAILABLE", got  # the TLS handshake fails
    assert got["grpc_plain"] == "UNAVAILABLE", got
    assert got["rest_ok"] == 200, got
    assert got["rest_no_token"] == 401, got
    assert got["rest_no_cert"] == 403, got


def test_a_rollout_is_judged_on_metrics_scraped_over_mtls(secure: Secure):
    cluster, ns = secure.cluster, secure.namespace
    stop = secure.dir / "loop-stop"
    out = (secure.dir / "loop.json").open("w+")
    loop = cluster.netns_popen(str(secure.dir / "client.py"),
                               str(secure.config("loop", stop=str(stop))), stdout=out)  # fmt: skip
    try:
        wait_until("the secure client's first answer",
                   lambda: Path(f"{stop}.ready").exists() or loop.poll() is not None, 120, 0.5)  # fmt: skip
        assert Path(f"{stop}.ready").exists(), "the secure client got no answer"
        cluster.kubectl("patch", "tfm", NAME, "-n", ns, "--type=json", "-p", json.dumps(
            [{"op": "replace", "path": "/spec/models/0/versionLabels/stable", "value": 2}]))  # fmt: skip

        def finished() -> dict[str, Any] | None:
            rollouts = (secure.tfmodel().get("status") or {}).get("rollouts") or [{}]
            state = rollouts[0]
            done = state.get("target") == 2 and state.get("phase") in ("Promoted", "RolledBack")
            return state if done else None

        state = dict(wait_until("the rollout to 2", finished, 300, 1))
    finally:
        stop.touch()
        try:
            loop.wait(timeout=60)
        except subprocess.TimeoutExpired:
            loop.kill()
        out.seek(0)
        text = out.read()
        out.close()
    assert state["phase"] == "Promoted", state
    # Judged from the pod's metrics, which the operator scraped over mTLS with the token.
    assert state["analysis"]["canary"]["requests"] >= MIN_REQUESTS, state
    result = json.loads(text.strip().splitlines()[-1])
    assert result["failed"] == 0 and result["ok"] > MIN_REQUESTS, result


def test_rotated_token_and_certificate_are_picked_up_without_a_restart(secure: Secure):
    cluster, ns = secure.cluster, secure.namespace
    before = secure.pod()
    restarts = before["status"]["containerStatuses"][0]["restartCount"]
    # The token: replaced in the Secret; the kubelet updates the mounted file and the server
    # re-reads it.
    cluster.kubectl("apply", "-f", "-",
                    input=secret(ns, "tokens", {"tokens": b"second-token\n"}))  # fmt: skip
    old_token, secure.token = secure.token, "second-token"
    wait_until("the new token accepted",
               lambda: secure.matrix()["grpc_ok"] == [1.0, 2.0], 240, 3)  # fmt: skip
    secure.token = old_token
    assert secure.matrix()["grpc_ok"] == "UNAUTHENTICATED"
    secure.token = "second-token"
    # The certificate: a new key pair from the same CA; new connections get it.
    key, cert = secure.pki.server_pair()
    tls = {"tls.crt": cert, "tls.key": _pem_key(key), "ca.crt": secure.pki.ca}
    cluster.kubectl("apply", "-f", "-",
                    input=secret(ns, "server-tls", tls, "kubernetes.io/tls"))  # fmt: skip
    new_pem = x509.load_pem_x509_certificate(cert)

    def serves_new() -> bool:
        served = x509.load_pem_x509_certificate(secure.matrix()["served"].encode())
        return served == new_pem

    wait_until("the new server certificate served", serves_new, 240, 3)
    got = secure.matrix()
    assert got["grpc_ok"] == [1.0, 2.0] and got["rest_ok"] == 200, got
    after = secure.pod()
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["status"]["containerStatuses"][0]["restartCount"] == restarts
    # The operator follows: still reads the pod (its trust includes the new certificate).
    wait_until("the operator still probing", lambda: _reachable(secure.tfmodel()) == 1, 120, 2)
