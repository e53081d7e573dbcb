"""--ssl_config_file: TF Serving's SSLConfig for gRPC, and the same files for REST.

server.cc BuildServerCredentialsFromSSLConfigFile: server_key/server_cert are
PEM text, custom_ca the PEM roots clients are checked against, client_verify
requires and verifies a client certificate (mTLS). REST over TLS with the same
config is a tfmodel addition (TF Serving's REST is plain HTTP only).
"""

from __future__ import annotations

import os
import ssl
import tempfile

import grpc
from google.protobuf import text_format

from tfmodel_server.declared_protos import SSLConfigProto


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
    if not config.server_key or not config.server_cert:
        raise SSLConfigError(f"{path}: server_key and server_cert must both be set")
    if config.client_verify and not config.custom_ca:
        raise SSLConfigError(f"{path}: client_verify needs custom_ca to verify clients against")
    return config


def grpc_server_credentials(config) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(config.server_key.encode(), config.server_cert.encode())],
        root_certificates=config.custom_ca.encode() if config.custom_ca else None,
        require_client_auth=bool(config.client_verify),
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
        context.load_verify_locations(cadata=config.custom_ca)
    context.verify_mode = ssl.CERT_REQUIRED if config.client_verify else ssl.CERT_NONE
    return context
