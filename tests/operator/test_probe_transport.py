"""probe_transport.Transports: when the Secrets are read again, what stays trusted."""

from __future__ import annotations

import ssl

import pytest
from tfmodel_operator import probe_transport
from tfmodel_operator.probe_transport import ProbeHow, TransportError, Transports, tokens_of

from tests.server.test_security import _cert, _key, _pem_cert


def _self_signed(cn: str) -> bytes:
    key = _key()
    cert = _cert(cn, key, _name(cn), key, ca=True)
    return _pem_cert(cert).encode()


def _name(cn: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


HOW = ProbeHow(scheme="https", tls_secret="tls", token_secret="tok")


class Made:
    def __init__(self) -> None:
        self.contexts: list[ssl.SSLContext] = []

    def __call__(self, context: ssl.SSLContext):
        self.contexts.append(context)
        import urllib3

        return urllib3.PoolManager(ssl_context=context)


def _subjects(context: ssl.SSLContext) -> set[str]:
    return {dict(x[0] for x in c["subject"])["commonName"] for c in context.get_ca_certs()}


def test_rotation_keeps_the_previous_certificate_trusted_one_round(monkeypatch):
    made = Made()
    transports = Transports(made)
    secrets = {"tls": {"tls.crt": _self_signed("old")}, "tok": {"tokens": b"a\n# c\n\nb\n"}}
    first = transports.get("ns", HOW, lambda ns, name: secrets.get(name))
    assert first.scheme == "https" and first.tokens == ("a", "b")
    assert _subjects(made.contexts[-1]) == {"old"}
    # Within the TTL: the same transport, the Secrets are not read.
    assert transports.get("ns", HOW, lambda ns, name: pytest.fail("read")) is first
    monkeypatch.setattr(probe_transport, "SECRET_TTL_S", 0.0)
    # Nothing changed: the same pool is kept (its connections too).
    assert transports.get("ns", HOW, lambda ns, name: secrets.get(name)).http is first.http
    secrets["tls"] = {"tls.crt": _self_signed("new")}
    second = transports.get("ns", HOW, lambda ns, name: secrets.get(name))
    assert second.http is not first.http
    assert _subjects(made.contexts[-1]) == {"new", "old"}  # the pods may still serve "old"
    secrets["tls"] = {"tls.crt": _self_signed("newer")}
    transports.get("ns", HOW, lambda ns, name: secrets.get(name))
    assert _subjects(made.contexts[-1]) == {"newer", "new"}


def test_secrets_that_cannot_be_used(monkeypatch):
    transports = Transports(Made())
    reads: list[str] = []

    def missing(ns: str, name: str):
        reads.append(name)
        return None

    with pytest.raises(TransportError, match="Secret tok cannot be read"):
        transports.get("ns", HOW, missing)
    # Not read again at once (every pod is asked every round).
    with pytest.raises(TransportError, match="Secret tok cannot be read"):
        transports.get("ns", HOW, missing)
    assert reads == ["tok"]
    no_cert = {"tls": {"tls.key": b"k"}, "tok": {"tokens": b"t"}}
    with pytest.raises(TransportError, match="Secret tls has no tls.crt"):
        Transports(Made()).get("ns", HOW, lambda ns, name: no_cert.get(name))
    empty = {"tls": {"tls.crt": _self_signed("x")}, "tok": {"tokens": b"# none\n"}}
    with pytest.raises(TransportError, match="holds no token"):
        Transports(Made()).get("ns", HOW, lambda ns, name: empty.get(name))
    # Once it worked, a failing re-read keeps the working transport.
    good = {"tls": {"tls.crt": _self_signed("x")}, "tok": {"tokens": b"t"}}
    transports = Transports(Made())
    first = transports.get("ns", HOW, lambda ns, name: good.get(name))
    monkeypatch.setattr(probe_transport, "SECRET_TTL_S", 0.0)
    assert transports.get("ns", HOW, missing) is first


def test_token_file_format():
    assert tokens_of(b"# header\n  one  \n\ntwo\r\n") == ("one", "two")
