"""How probe.py reaches a server with spec.security on: HTTPS and a token, per pod.

A pod's `serving.tfmodel.io/probe` annotation (deployment.py) names the Secrets: the
server's kubernetes.io/tls Secret (whose ca.crt and tls.crt the operator trusts), the
operator's client certificate Secret (mTLS), and the token Secret. The operator reads
them through the API (RBAC: get secrets) and keeps each transport SECRET_TTL_S seconds,
so a rotated Secret is followed within that. The server's certificate is verified against
ca.crt and the certificate itself (partial chain: a self-signed or pinned leaf works), not
against a host name: pods are asked by IP. Across a rotation the previous Secret's
certificates stay trusted too (the kubelet updates the pods' copy up to a minute later),
and every token in the Secret is tried in turn on a 401.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import urllib3

from . import names

SECRET_TTL_S = 30.0
# Secrets that could not be used are not read again for this long (every pod, every round).
FAILED_TTL_S = 10.0

# (namespace, Secret name) -> its data (base64-decoded), None when it cannot be read.
SecretReader = Callable[[str, str], dict[str, bytes] | None]


class TransportError(ValueError):
    """The Secrets a pod's probe needs are missing or unusable."""


@dataclass(frozen=True)
class ProbeHow:
    """What a pod's probe annotation says (all empty: plain HTTP, no token)."""

    scheme: str = "http"
    tls_secret: str = ""
    client_secret: str = ""
    token_secret: str = ""
    token_key: str = "tokens"

    @classmethod
    def of(cls, pod: dict[str, Any]) -> ProbeHow | None:
        """None: the pod has no annotation (the shared plain client asks it)."""
        text = ((pod.get("metadata") or {}).get("annotations") or {}).get(names.PROBE_ANNOTATION)
        if not text:
            return None
        try:
            raw = json.loads(text)
        except ValueError:
            return cls(scheme="invalid")
        return cls(
            scheme=str(raw.get("scheme") or "http"),
            tls_secret=str(raw.get("tlsSecret") or ""),
            client_secret=str(raw.get("clientSecret") or ""),
            token_secret=str(raw.get("tokenSecret") or ""),
            token_key=str(raw.get("tokenKey") or "tokens"),
        )


@dataclass
class Transport:
    scheme: str
    http: urllib3.PoolManager | None  # None: the caller's plain pool
    tokens: tuple[str, ...] = ()
    good: int = 0  # the token that last worked is tried first
    made: float = field(default_factory=time.monotonic)
    trust: tuple[bytes, ...] = ()  # the TLS Secret's PEM certificates (trusted one more round)
    source: tuple[Any, ...] = ()  # everything read from the Secrets (unchanged: same pool)


def tokens_of(data: bytes) -> tuple[str, ...]:
    """The server's token file format: one a line, blank lines and # comments ignored."""
    lines = data.decode("utf-8", "replace").splitlines()
    return tuple(t.strip() for t in lines if t.strip() and not t.startswith("#"))


def ssl_context(trust: tuple[bytes, ...], client: tuple[bytes, bytes] | None) -> ssl.SSLContext:
    """Verify the server against `trust` (CA or pinned certificates), no host name check."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # pods are asked by IP
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    try:
        context.load_verify_locations(cadata=b"\n".join(trust).decode("ascii", "replace"))
    except ssl.SSLError as err:
        raise TransportError(f"the TLS Secret's certificates are not usable PEM: {err}") from None
    if client is not None:
        cert, key = client
        # load_cert_chain reads only files: a private temporary one, removed at once.
        fd, path = tempfile.mkstemp(prefix="tfmodel-probe-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(cert.rstrip(b"\n") + b"\n" + key)
            context.load_cert_chain(path)
        except ssl.SSLError as err:
            raise TransportError(f"the probe client certificate is not usable: {err}") from None
        finally:
            os.unlink(path)
    return context


def _need(data: dict[str, bytes] | None, secret: str, key: str) -> bytes:
    if data is None:
        raise TransportError(f"Secret {secret} cannot be read")
    if not data.get(key):
        raise TransportError(f"Secret {secret} has no {key}")
    return data[key]


class Transports:
    """One transport per (namespace, probe annotation), re-made every SECRET_TTL_S."""

    def __init__(self, make_pool: Callable[[ssl.SSLContext], urllib3.PoolManager]) -> None:
        self._make_pool = make_pool
        self._lock = threading.Lock()
        self._made: dict[tuple[str, ProbeHow], Transport] = {}
        self._failed: dict[tuple[str, ProbeHow], tuple[float, TransportError]] = {}

    def get(self, namespace: str, how: ProbeHow, read: SecretReader | None) -> Transport:
        key = (namespace, how)
        with self._lock:
            old = self._made.get(key)
        if old is not None and time.monotonic() - old.made < SECRET_TTL_S:
            return old
        if read is None:
            raise TransportError("no Secret reader to reach a pod with spec.security")
        with self._lock:
            failed = self._failed.get(key)
        if old is None and failed is not None and time.monotonic() - failed[0] < FAILED_TTL_S:
            raise failed[1]
        try:
            made = self._make(namespace, how, read, old)
        except TransportError as err:
            if old is None:
                with self._lock:
                    self._failed[key] = (time.monotonic(), err)
                raise
            old.made = time.monotonic()  # keep what worked; try the Secrets again later
            return old
        with self._lock:
            self._made[key] = made
            self._failed.pop(key, None)
        if old is not None and old.http is not None and old.http is not made.http:
            old.http.clear()
        return made

    def _make(
        self, namespace: str, how: ProbeHow, read: SecretReader, old: Transport | None
    ) -> Transport:
        tokens: tuple[str, ...] = ()
        if how.token_secret:
            tokens = tokens_of(
                _need(read(namespace, how.token_secret), how.token_secret, how.token_key)
            )
            if not tokens:
                raise TransportError(f"Secret {how.token_secret} {how.token_key} holds no token")
        if how.scheme == "http":
            return Transport("http", None, tokens)
        if how.scheme != "https" or not how.tls_secret:
            raise TransportError(f"pod annotation {names.PROBE_ANNOTATION} is not understood")
        server = read(namespace, how.tls_secret)
        now = tuple(
            pem
            for pem in (_need(server, how.tls_secret, "tls.crt"), (server or {}).get("ca.crt"))
            if pem
        )
        trust = now + tuple(p for p in (old.trust if old else ()) if p not in now)
        client = None
        if how.client_secret:
            data = read(namespace, how.client_secret)
            client = (
                _need(data, how.client_secret, "tls.crt"),
                _need(data, how.client_secret, "tls.key"),
            )
        source = (now, client, tokens)
        if old is not None and old.http is not None and old.source == source:
            old.made = time.monotonic()  # nothing changed: keep the pool and its connections
            return old
        pool = self._make_pool(ssl_context(trust[:4], client))
        return Transport("https", pool, tokens, trust=now, source=source)
