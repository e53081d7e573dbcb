"""--ssl_config_file: TF Serving's SSLConfig for gRPC, and the same files for REST.

server.cc BuildServerCredentialsFromSSLConfigFile: server_key/server_cert are
PEM text, custom_ca the PEM roots clients are checked against, client_verify
requires and verifies a client certificate (mTLS). REST over TLS with the same
config is a tfmodel addition (TF Serving's REST is plain HTTP only).

tfmodel additions: the same four fields from PEM files (--ssl_server_cert_file,
--ssl_server_key_file, --ssl_custom_ca_file, --ssl_client_verify), so a mounted
kubernetes.io/tls Secret is used as it is; and the files (either form) are re-read
when they change, checked at most once a second when a connection is opened, so a
rotated certificate is served without a restart. A changed file that does not load
is logged and the certificates in use are kept. client_verify is fixed at start-up.
With client_verify, REST's /healthz and /readyz answer without a client certificate
(kubelet probes cannot present one); every other path needs one (403).
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from aiohttp import web
from google.protobuf import text_format

from tfmodel_server.declared_protos import SSLConfigProto

log = logging.getLogger(__name__)

RECHECK_SECONDS = 1.0
# Kubelet probes and load balancer health checks present no client certificate.
OPEN_REST_PATHS = frozenset({"/healthz", "/readyz"})
CLIENT_CERT_REQUIRED_MESSAGE = "a client certificate signed by the server's custom_ca is required"


class SSLConfigError(ValueError):
    """An SSLConfig file that cannot be used."""


def load_ssl_config(path: str):
    """Parse the SSLConfig text proto; SSLConfigError names the file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise SSLConfigError(f"cannot read --ssl_config_file {path!r}: {e}") from None
    config = SSLConfigProto()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise SSLConfigError(
            f"Invalid protobuf file: '{path}': Error parsing text-format "
            f"tensorflow.serving.SSLConfig: {e}"
        ) from None
    return _checked(config, path)


def _checked(config, where: str):
    if not config.server_key or not config.server_cert:
        raise SSLConfigError(f"{where}: server_key and server_cert must both be set")
    if config.client_verify and not config.custom_ca:
        raise SSLConfigError(f"{where}: client_verify needs custom_ca to verify clients against")
    return config


@dataclass(frozen=True)
class SSLSource:
    """Where the certificates come from: an SSLConfig file, or PEM files."""

    config_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""
    client_verify: bool = False

    @property
    def paths(self) -> tuple[str, ...]:
        if self.config_file:
            return (self.config_file,)
        return tuple(p for p in (self.cert_file, self.key_file, self.ca_file) if p)

    def load(self):
        if self.config_file:
            return load_ssl_config(self.config_file)
        config = SSLConfigProto()
        for field, flag, path in (
            ("server_cert", "--ssl_server_cert_file", self.cert_file),
            ("server_key", "--ssl_server_key_file", self.key_file),
            ("custom_ca", "--ssl_custom_ca_file", self.ca_file),
        ):
            if not path:
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    setattr(config, field, f.read())
            except OSError as e:
                raise SSLConfigError(f"cannot read {flag} {path!r}: {e}") from None
        config.client_verify = self.client_verify
        return _checked(config, "--ssl_server_cert_file/--ssl_server_key_file")


def _grpc_certificate_configuration(config) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(config.server_key.encode(), config.server_cert.encode())],
        root_certificates=config.custom_ca.encode() if config.custom_ca else None,
    )


def rest_ssl_context(config) -> ssl.SSLContext:
    """An SSLContext for the REST listener from the same PEM strings."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # load_cert_chain only reads files: a private temporary one, removed at once.
    fd, pem_path = tempfile.mkstemp(prefix="tfmodel-tls-", suffix=".pem")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(config.server_cert.rstrip("\n") + "\n" + config.server_key)
        try:
            context.load_cert_chain(pem_path)
        except ssl.SSLError as e:
            raise SSLConfigError(f"server_key/server_cert are not a usable pair: {e}") from None
    finally:
        os.unlink(pem_path)
    if config.custom_ca:
        try:
            context.load_verify_locations(cadata=config.custom_ca)
        except ssl.SSLError as e:
            raise SSLConfigError(f"custom_ca is not usable PEM: {e}") from None
    # OPTIONAL, not REQUIRED: a certificate presented must verify, and the middleware
    # below refuses requests without one except the probes.
    context.verify_mode = ssl.CERT_OPTIONAL if config.client_verify else ssl.CERT_NONE
    return context


def _stamp(paths: tuple[str, ...]) -> tuple[tuple[int, int, int], ...] | None:
    # stat follows symlinks: a Secret volume's update swaps its ..data link.
    try:
        return tuple((st.st_ino, st.st_mtime_ns, st.st_size) for st in (os.stat(p) for p in paths))
    except OSError:
        return None


class CertificateReloader:
    """The certificates in use by gRPC and REST, re-read when their files change."""

    def __init__(self, source: SSLSource) -> None:
        self.source = source
        self.config = source.load()
        self.client_verify = bool(self.config.client_verify)
        self._rest = rest_ssl_context(self.config)
        self._lock = threading.Lock()
        self._stamp = _stamp(source.paths)
        self._checked = time.monotonic()
        self.generation = 0  # bumped on every reload
        self._grpc_generation = 0

    def refresh(self) -> None:
        """Re-read the files if they changed (at most once every RECHECK_SECONDS)."""
        now = time.monotonic()
        if now - self._checked < RECHECK_SECONDS:
            return
        with self._lock:
            if now - self._checked < RECHECK_SECONDS:
                return
            self._checked = now
            stamp = _stamp(self.source.paths)
            if stamp is None or stamp == self._stamp:
                return
            self._stamp = stamp  # a bad new file is reported once, not per connection
            try:
                config = self.source.load()
                if bool(config.client_verify) != self.client_verify:
                    raise SSLConfigError("client_verify cannot change without a restart")
                context = rest_ssl_context(config)
            except SSLConfigError as e:
                log.error("TLS files changed but do not load, keeping the previous ones: %s", e)
                return
            self.config, self._rest = config, context
            self.generation += 1
            log.info("TLS certificates re-read from %s", ", ".join(self.source.paths))

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials whose certificates follow the files (asked per new connection)."""

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            self.refresh()
            if self._grpc_generation == self.generation:
                return None  # keep the current ones
            self._grpc_generation = self.generation
            return _grpc_certificate_configuration(self.config)

        return grpc.dynamic_ssl_server_credentials(
            _grpc_certificate_configuration(self.config),
            fetch,
            require_client_authentication=self.client_verify,
        )

    def rest_context(self) -> ssl.SSLContext:
        """The REST listener's context: every handshake switches to the latest one."""
        first = self._rest

        def on_hello(sslobj: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
            self.refresh()
            if self._rest is not first:
                sslobj.context = self._rest

        first.sni_callback = on_hello  # called for every ClientHello, with or without SNI
        return first


def rest_client_cert_middleware() -> Callable:
    """With client_verify: a verified client certificate on every path but the probes."""

    @web.middleware
    async def check(request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path in OPEN_REST_PATHS:
            return await handler(request)
        transport = request.transport
        if transport is None or not transport.get_extra_info("peercert"):
            return web.json_response({"error": CLIENT_CERT_REQUIRED_MESSAGE}, status=403)
        return await handler(request)

    return check
