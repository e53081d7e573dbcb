"""S3-compatible object stores through botocore: URLs, listings, streamed reads.

Endpoint, region and credentials come from the standard places the AWS SDKs read
(AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, AWS_REGION / AWS_DEFAULT_REGION,
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the shared credentials and config
files, AWS_PROFILE); only path-style addressing is a flag of ours, since most
non-AWS stores need it and it has no SDK environment variable. boto3 is imported
on first use, so a server with local base paths only never loads it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import threading
from dataclasses import dataclass
from typing import Any

SCHEME = "s3://"


class ObjectStoreError(Exception):
    """A listing or read failed; the message says why in words a user can act on."""


def is_s3_url(path: str) -> bool:
    return path.startswith(SCHEME)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ends without "/"

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def child(self, name: str) -> S3Location:
        return S3Location(self.bucket, self.key(name))


def parse_s3_url(url: str) -> S3Location:
    """'s3://bucket/a/b/' -> S3Location('bucket', 'a/b'); ValueError names what is wrong."""
    if not is_s3_url(url):
        raise ValueError(f"{url} is not an s3:// URL")
    rest = url[len(SCHEME) :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"{url}: no bucket name after s3://")
    prefix = prefix.strip("/")
    parts = prefix.split("/") if prefix else []
    if any(p in ("", ".", "..") for p in parts):
        # The cache mirrors prefixes as directories: no empty, . or .. components.
        raise ValueError(f"{url}: the prefix has an empty, '.' or '..' component")
    return S3Location(bucket, prefix)


@dataclass(frozen=True)
class S3Settings:
    addressing_style: str = "auto"  # auto | path | virtual
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 3


@dataclass(frozen=True)
class ObjectInfo:
    relpath: str  # relative to the version prefix
    size: int
    etag: str  # without quotes


_client_lock = threading.Lock()
_clients: dict[S3Settings, Any] = {}


def client(settings: S3Settings) -> Any:
    """One botocore S3 client per settings (clients are thread-safe; sessions are not)."""
    with _client_lock:
        existing = _clients.get(settings)
        if existing is not None:
            return existing
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            retries={"max_attempts": settings.max_attempts, "mode": "standard"},
            s3={"addressing_style": settings.addressing_style},
        )
        # boto3 reads AWS_DEFAULT_REGION; the other SDKs (and the users) set AWS_REGION.
        region = os.environ.get("AWS_REGION") or None
        made = boto3.session.Session().client("s3", region_name=region, config=config)
        _clients[settings] = made
        return made


def describe_error(e: BaseException) -> str:
    """One line naming the problem: bad credentials, no such bucket, endpoint down..."""
    from botocore import exceptions as bex

    if isinstance(e, bex.NoCredentialsError):
        return (
            "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a shared "
            "credentials file)"
        )
    if isinstance(e, bex.EndpointConnectionError | bex.ConnectTimeoutError):
        return f"cannot reach the object store endpoint: {e}"
    if isinstance(e, bex.ClientError):
        err = e.response.get("Error", {})
        code = err.get("Code", "?")
        message = err.get("Message") or ""
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        hint = {
            "InvalidAccessKeyId": "wrong access key id",
            "SignatureDoesNotMatch": "wrong secret access key",
            "AccessDenied": "access denied to these credentials",
            "NoSuchBucket": "no such bucket",
        }.get(code)
        text = f"{code} (HTTP {status})" + (f": {message}" if message else "")
        return f"{hint}: {text}" if hint else text
    if isinstance(e, bex.BotoCoreError):
        return f"{type(e).__name__}: {e}"
    return f"{type(e).__name__}: {e}"


def _botocore_errors() -> tuple[type[BaseException], ...]:
    from botocore import exceptions as bex

    return (bex.BotoCoreError, bex.ClientError)


def list_objects(cli: Any, loc: S3Location) -> list[ObjectInfo]:
    """Every object under loc/ (recursively), relative paths sorted; directory markers skipped."""
    prefix = loc.key() + "/" if loc.prefix else ""
    found: list[ObjectInfo] = []
    try:
        paginator = cli.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=loc.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix) :]
                if not rel or rel.endswith("/"):
                    continue
                found.append(ObjectInfo(rel, int(obj["Size"]), obj.get("ETag", "").strip('"')))
    except _botocore_errors() as e:
        raise ObjectStoreError(describe_error(e)) from None
    found.sort(key=lambda o: o.relpath)
    return found


def safe_relpath(relpath: str) -> bool:
    """A key suffix that stays inside the directory it is written under."""
    if not relpath or relpath.startswith("/"):
        return False
    parts = relpath.split("/")
    return all(p not in ("", ".", "..") for p in parts) and posixpath.normpath(relpath) == relpath


def _md5_etag(etag: str) -> bool:
    # A single-part upload's ETag is the MD5 of the bytes; multipart ETags end in "-N".
    return len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower())


def download(cli: Any, loc: S3Location, obj: ObjectInfo, dest: str, chunk: int = 1 << 20) -> int:
    """Stream one object to dest (never whole in memory); verify size and MD5 ETag.

    If-Match makes the store refuse an object replaced since it was listed.
    Returns the bytes read.
    """
    key = loc.key(obj.relpath)
    try:
        response = cli.get_object(Bucket=loc.bucket, Key=key, IfMatch=f'"{obj.etag}"')
        body = response["Body"]
        md5 = hashlib.md5(usedforsecurity=False) if _md5_etag(obj.etag) else None
        written = 0
        with open(dest, "wb") as f:
            for data in body.iter_chunks(chunk):
                f.write(data)
                written += len(data)
                if md5 is not None:
                    md5.update(data)
    except _botocore_errors() as e:
        raise ObjectStoreError(f"s3://{loc.bucket}/{key}: {describe_error(e)}") from None
    if written != obj.size:
        raise ObjectStoreError(
            f"s3://{loc.bucket}/{key}: read {written} bytes, the listing said {obj.size}"
        )
    if md5 is not None and md5.hexdigest() != obj.etag.lower():
        raise ObjectStoreError(f"s3://{loc.bucket}/{key}: MD5 differs from its ETag {obj.etag}")
    return written


def read_object(cli: Any, url: str, limit: int = 64 << 20) -> bytes:
    """A small object (a model config) whole; ObjectStoreError says why not."""
    loc = parse_s3_url(url)
    if not loc.prefix:
        raise ObjectStoreError(f"{url}: no object key after the bucket")
    try:
        response = cli.get_object(Bucket=loc.bucket, Key=loc.prefix)
        if int(response.get("ContentLength", 0)) > limit:
            raise ObjectStoreError(f"{url}: larger than {limit} bytes")
        data: bytes = response["Body"].read()
    except _botocore_errors() as e:
        raise ObjectStoreError(f"{url}: {describe_error(e)}") from None
    return data


def group_by_version(objects: list[ObjectInfo]) -> dict[str, list[ObjectInfo]]:
    """One recursive listing of a base path -> {numeric first component: its objects,
    relative to it}. A single paginated LIST per poll, however many versions there are
    (a LIST per version prefix would cost a request per version per poll)."""
    groups: dict[str, list[ObjectInfo]] = {}
    for obj in objects:
        head, sep, rest = obj.relpath.partition("/")
        if sep and rest and head.isascii() and head.isdigit():
            groups.setdefault(head, []).append(ObjectInfo(rest, obj.size, obj.etag))
    return groups
