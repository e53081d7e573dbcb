"""TLS / mTLS (--ssl_config_file), token auth (--auth_token_file), CORS, against
a real server process, with certificates the test makes (cryptography)."""

from __future__ import annotations

import datetime
from pathlib import Path

import grpc
import pytest
import requests
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from tests.server.savedmodels import export_linear
from tests.server.serverproc import ServerProcess
from tests.server.test_server_process import predict_request

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _pem_cert(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _cert(subject: str, key, issuer_name, issuer_key, ca: bool, san: list[str] | None = None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


class PKI:
    """A CA, a server certificate for localhost, and client certificates."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca_key = _key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tfmodel test CA")])
        self.ca_cert = _cert("tfmodel test CA", self.ca_key, ca_name, self.ca_key, ca=True)
        self.ca_pem = _pem_cert(self.ca_cert)
        self.server_key = _key()
        self.server_cert = _cert(
            "localhost", self.server_key, ca_name, self.ca_key, ca=False, san=["localhost"]
        )
        self.client_key = _key()
        self.client_cert = _cert("client", self.client_key, ca_name, self.ca_key, ca=False)
        # Signed by a CA the server does not trust.
        rogue_key = _key()
        rogue_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue CA")])
        self.rogue_client_key = _key()
        self.rogue_client_cert = _cert(
            "rogue", self.rogue_client_key, rogue_name, rogue_key, ca=False
        )
        self.ca_file = root / "ca.pem"
        self.ca_file.write_text(self.ca_pem)
        self.client_files = self._pair("client", self.client_key, self.client_cert)
        self.rogue_files = self._pair("rogue", self.rogue_client_key, self.rogue_client_cert)

    def _pair(self, name: str, key, cert) -> tuple[str, str]:
        cert_path, key_path = self.root / f"{name}.crt", self.root / f"{name}.key"
        cert_path.write_text(_pem_cert(cert))
        key_path.write_text(_pem_key(key))
        return str(cert_path), str(key_path)

    def ssl_config(self, client_verify: bool) -> Path:
        def quoted(pem: str) -> str:
            return '"' + pem.replace("\n", "\\n") + '"'

        path = self.root / f"ssl_{client_verify}.config"
        path.write_text(
            f"server_key: {quoted(_pem_key(self.server_key))}\n"
            f"server_cert: {quoted(_pem_cert(self.server_cert))}\n"
            f"custom_ca: {quoted(self.ca_pem)}\n"
            f"client_verify: {'true' if client_verify else 'false'}\n"
        )
        return path

    def grpc_credentials(self, with_client: tuple[str, str] | None) -> grpc.ChannelCredentials:
        if with_client is None:
            return grpc.ssl_channel_credentials(root_certificates=self.ca_pem.encode())
        cert, key = with_client
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem.encode(),
            private_key=Path(key).read_bytes(),
            certificate_chain=Path(cert).read_bytes(),
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("models") / "m"
    export_linear(base, 1, 2.0, 1.0)
    return base


def _tls_server(model_base: Path, config: Path, *extra: str) -> ServerProcess:
    return ServerProcess(
        "--model_name=m", f"--model_base_path={model_base}", f"--ssl_config_file={config}", *extra
    )


def _wait_tls_ready(server: ServerProcess, pki: PKI, client=None) -> None:
    def ready() -> bool:
        r = requests.get(
            f"https://localhost:{server.rest_port}/readyz",
            verify=str(pki.ca_file),
            cert=client,
            timeout=5,
        )
        return r.status_code == 200

    server.wait_for(ready, timeout=240, what="TLS server ready")


def _secure_predict(server: ServerProcess, credentials) -> float:
    with grpc.secure_channel(f"localhost:{server.grpc_port}", credentials) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(predict_request("m", [3.0]), timeout=20)
    return response.outputs["y"].float_val[0] if response.outputs["y"].float_val else None


def test_tls_grpc_and_rest(pki, model_base):
    with _tls_server(model_base, pki.ssl_config(client_verify=False)) as server:
        _wait_tls_ready(server, pki)
        with grpc.secure_channel(
            f"localhost:{server.grpc_port}", pki.grpc_credentials(None)
        ) as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                predict_request("m", [3.0]), timeout=20
            )
        assert response.model_spec.version.value == 1
        r = requests.post(
            f"https://localhost:{server.rest_port}/v1/models/m:predict",
            json={"instances": [3.0]},
            verify=str(pki.ca_file),
            timeout=20,
        )
        assert r.status_code == 200 and r.json() == {"predictions": [7.0]}
        # Plain text on the TLS port does not get an answer.
        with grpc.insecure_channel(f"localhost:{server.grpc_port}") as channel:
            with pytest.raises(grpc.RpcError) as err:
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                    predict_request("m", [3.0]), timeout=5
                )
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://localhost:{server.rest_port}/v1/models/m", timeout=5)


def test_mtls_requires_a_client_certificate_from_the_ca(pki, model_base):
    with _tls_server(model_base, pki.ssl_config(client_verify=True)) as server:
        _wait_tls_ready(server, pki, client=pki.client_files)
        with grpc.secure_channel(
            f"localhost:{server.grpc_port}", pki.grpc_credentials(pki.client_files)
        ) as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                predict_request("m", [3.0]), timeout=20
            )
        assert response.model_spec.version.value == 1
        for client in (None, pki.rogue_files):
            with grpc.secure_channel(
                f"localhost:{server.grpc_port}", pki.grpc_credentials(client)
            ) as channel:
                with pytest.raises(grpc.RpcError) as err:
                    prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                        predict_request("m", [3.0]), timeout=10
                    )
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # A rogue certificate fails the handshake; none at all is refused on every path
        # but the probes (kubelet probes cannot present one).
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            requests.get(
                f"https://localhost:{server.rest_port}/v1/models/m",
                verify=str(pki.ca_file),
                cert=pki.rogue_files,
                timeout=10,
            )
        bare = requests.get(
            f"https://localhost:{server.rest_port}/v1/models/m", verify=str(pki.ca_file), timeout=10
        )
        assert bare.status_code == 403 and "client certificate" in bare.json()["error"]
        for probe in ("/healthz", "/readyz"):
            r = requests.get(
                f"https://localhost:{server.rest_port}{probe}", verify=str(pki.ca_file), timeout=10
            )
            assert r.status_code == 200, probe
        ok = requests.get(
            f"https://localhost:{server.rest_port}/v1/models/m",
            verify=str(pki.ca_file),
            cert=pki.client_files,
            timeout=10,
        )
        assert ok.status_code == 200


def _served_certificate(port: int) -> bytes:
    """The DER certificate a TLS handshake on `port` presents (no verification)."""
    import socket
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("localhost", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def _der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def test_pem_files_with_mtls_are_reread_when_they_change(pki, model_base, tmp_path):
    """--ssl_server_cert_file & co. (a mounted kubernetes.io/tls Secret): a new certificate
    is served on new connections of both ports, without a restart; a broken one is not."""
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    (tls_dir / "tls.crt").write_text(_pem_cert(pki.server_cert))
    (tls_dir / "tls.key").write_text(_pem_key(pki.server_key))
    (tls_dir / "ca.crt").write_text(pki.ca_pem)
    server = ServerProcess(
        "--model_name=m",
        f"--model_base_path={model_base}",
        f"--ssl_server_cert_file={tls_dir / 'tls.crt'}",
        f"--ssl_server_key_file={tls_dir / 'tls.key'}",
        f"--ssl_custom_ca_file={tls_dir / 'ca.crt'}",
        "--ssl_client_verify",
    )
    with server:
        _wait_tls_ready(server, pki)  # /readyz needs no client certificate
        assert _secure_predict(server, pki.grpc_credentials(pki.client_files)) == 7.0
        with pytest.raises(grpc.RpcError):
            _secure_predict(server, pki.grpc_credentials(None))
        old = _der(_pem_cert(pki.server_cert))
        assert _served_certificate(server.grpc_port) == old
        assert _served_certificate(server.rest_port) == old

        # Rotate: a new key and certificate from the same CA, written as a Secret update
        # does (new files, then one rename).
        new_key = _key()
        ca_name = pki.ca_cert.subject
        new_cert = _cert("localhost", new_key, ca_name, pki.ca_key, ca=False, san=["localhost"])
        staged = tmp_path / "staged"
        staged.mkdir()
        (staged / "tls.crt").write_text(_pem_cert(new_cert))
        (staged / "tls.key").write_text(_pem_key(new_key))
        for name in ("tls.crt", "tls.key"):
            (staged / name).replace(tls_dir / name)
        new = _der(_pem_cert(new_cert))
        for port in (server.grpc_port, server.rest_port):
            server.wait_for(
                lambda port=port: _served_certificate(port) == new,
                timeout=30,
                what=f"the new certificate on port {port}",
            )
        assert _secure_predict(server, pki.grpc_credentials(pki.client_files)) == 7.0
        ok = requests.get(
            f"https://localhost:{server.rest_port}/v1/models/m",
            verify=str(pki.ca_file),
            cert=pki.client_files,
            timeout=10,
        )
        assert ok.status_code == 200

        # A key that does not match the certificate: logged, the working pair stays.
        broken = "do not load, keeping the previous ones"
        before = server.log().count(broken)  # the rotation's two renames may have raced
        (tls_dir / "tls.key").write_text(_pem_key(_key()))

        def reported() -> bool:
            _served_certificate(server.rest_port)  # the files are checked on a new connection
            return server.log().count(broken) > before

        server.wait_for(
            reported,
            timeout=30,
            what="the broken rotation logged",
        )
        assert _served_certificate(server.rest_port) == new
        assert _secure_predict(server, pki.grpc_credentials(pki.client_files)) == 7.0


def test_tls_file_flags_are_checked(model_base, tmp_path):
    server = ServerProcess(
        "--model_name=m",
        f"--model_base_path={model_base}",
        f"--ssl_server_cert_file={tmp_path / 'tls.crt'}",
    ).start()
    try:
        assert server.proc.wait(120) == 255
    finally:
        server.stop()
    assert "--ssl_server_cert_file and --ssl_server_key_file go together" in server.log()


def test_bad_ssl_config_fails_start_up(tmp_path, model_base):
    config = tmp_path / "ssl.config"
    config.write_text('server_key: "not a key"\nserver_cert: "not a cert"\n')
    server = _tls_server(model_base, config).start()
    try:
        assert server.proc.wait(120) == 255
    finally:
        server.stop()
    assert "Failed to start server. Error: INVALID_ARGUMENT" in server.log()


# --- token auth ----------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory, model_base: Path):
    tokens = tmp_path_factory.mktemp("auth") / "tokens"
    tokens.write_text("# tokens, one a line\nalpha-token\n\nbeta-token\n")
    server = ServerProcess(
        "--model_name=m",
        f"--model_base_path={model_base}",
        f"--auth_token_file={tokens}",
        "--enable_grpc_healthcheck_service",
        "--rest_api_enable_cors_support",
    )
    server.tokens = tokens  # type: ignore[attr-defined]
    with server:
        server.wait_ready()
        yield server


def test_rest_token_required_probes_open(token_server):
    url = f"{token_server.rest}/v1/models/m:predict"
    body = {"instances": [1.0]}
    assert requests.post(url, json=body, timeout=10).status_code == 401
    wrong = requests.post(url, json=body, headers={"Authorization": "nope"}, timeout=10)
    assert wrong.status_code == 401 and "token" in wrong.json()["error"]
    for header in ("alpha-token", "Bearer beta-token"):
        ok = requests.post(url, json=body, headers={"Authorization": header}, timeout=10)
        assert ok.status_code == 200 and ok.json() == {"predictions": [3.0]}
    assert requests.get(f"{token_server.rest}/healthz", timeout=5).status_code == 200
    assert requests.get(f"{token_server.rest}/readyz", timeout=5).status_code == 200


def test_grpc_token_required_health_open(token_server):
    stub = token_server.prediction_stub()
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(predict_request("m", [1.0]), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(predict_request("m", [1.0]), timeout=10, metadata=[("authorization", "x")])
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    response = stub.Predict(
        predict_request("m", [1.0]), timeout=10, metadata=[("authorization", "Bearer alpha-token")]
    )
    assert response.model_spec.version.value == 1
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(token_server.channel()).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=10
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_reload_config_rpc_needs_the_token(token_server, model_base):
    request = model_management_pb2.ReloadConfigRequest()
    model = request.config.model_config_list.config.add()
    model.name, model.base_path, model.model_platform = "m", str(model_base), "tensorflow"
    stub = model_service_pb2_grpc.ModelServiceStub(token_server.channel())
    with pytest.raises(grpc.RpcError) as err:
        stub.HandleReloadConfigRequest(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    response = stub.HandleReloadConfigRequest(
        request, timeout=60, metadata=[("authorization", "alpha-token")]
    )
    assert response.status.error_code == 0


def test_token_file_is_reread(token_server):
    url = f"{token_server.rest}/v1/models/m"
    token_server.tokens.write_text("gamma-token\n")
    token_server.wait_for(
        lambda: (
            requests.get(url, headers={"Authorization": "gamma-token"}, timeout=5).status_code
            == 200
        ),
        timeout=30,
        what="new token accepted",
    )
    assert requests.get(url, headers={"Authorization": "alpha-token"}, timeout=5).status_code == 401
    token_server.tokens.write_text("alpha-token\nbeta-token\n")
    token_server.wait_for(
        lambda: (
            requests.get(url, headers={"Authorization": "alpha-token"}, timeout=5).status_code
            == 200
        ),
        timeout=30,
        what="old token back",
    )


def test_cors_headers_and_preflight(token_server):
    pre = requests.options(f"{token_server.rest}/v1/models/m:predict", timeout=5)
    assert pre.status_code == 200
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    r = requests.get(
        f"{token_server.rest}/v1/models/m", headers={"Authorization": "alpha-token"}, timeout=5
    )
    assert r.headers["Access-Control-Allow-Origin"] == "*"


def test_no_cors_headers_by_default(model_base):
    with ServerProcess("--model_name=m", f"--model_base_path={model_base}") as server:
        server.wait_ready()
        r = requests.get(f"{server.rest}/v1/models/m", timeout=5)
        assert r.status_code == 200
        assert "Access-Control-Allow-Origin" not in r.headers


def test_reload_config_rpc_can_be_disabled(model_base, tmp_path):
    with ServerProcess(
        "--model_name=m", f"--model_base_path={model_base}", "--enable_reload_config_rpc=false"
    ) as server:
        server.wait_ready()
        request = model_management_pb2.ReloadConfigRequest()
        model = request.config.model_config_list.config.add()
        model.name, model.base_path = "other", str(tmp_path)
        with pytest.raises(grpc.RpcError) as err:
            server.model_stub().HandleReloadConfigRequest(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "--enable_reload_config_rpc" in err.value.details()
