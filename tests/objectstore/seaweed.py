"""A real S3 server for the tests: SeaweedFS (`weed server -s3`) built from source.

One process on 127.0.0.1 (master, volume, filer and the S3 gateway), an S3 identity
with a fixed access key, and its Prometheus metrics, from which the tests read how
many GetObject requests and bytes the store itself served per bucket.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families
from tfmodel_devcluster.objectstore import identity_config, server_args

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
ACCESS_KEY = "tfmodel-test-access"
SECRET_KEY = "tfmodel-test-secret-0123456789"
REGION = "us-east-1"
STARTUP_TIMEOUT = 120.0


def build() -> str:
    """The cached `weed` binary (devcluster/build/go-build.sh builds it once per machine)."""
    out = subprocess.run(
        ["bash", str(REPO / "devcluster" / "build" / "go-build.sh"), "seaweedfs"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


class SeaweedS3:
    """`weed server -s3` on free loopback ports; data, config and log in a temp dir."""

    def __init__(self, weed: str, ip: str = "127.0.0.1") -> None:
        self.weed = weed
        self.ip = ip
        self.dir = Path(tempfile.mkdtemp(prefix="tfmodel-seaweed-"))
        self.s3_port = free_port()
        self.metrics_port = free_port()
        self.log_path = self.dir / "weed.log"
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.ip}:{self.s3_port}"

    def env(self, **overrides: str) -> dict[str, str]:
        """The AWS SDK variables a client of this store needs (and nothing from the host)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_REGION=REGION,
            AWS_ENDPOINT_URL=self.endpoint,
            # No shared files from the host's home: only what is set here.
            AWS_CONFIG_FILE=str(self.dir / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.dir / "no-aws-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
        )
        env.update(overrides)
        return env

    def start(self) -> SeaweedS3:
        (self.dir / "s3.json").write_text(json.dumps(identity_config(ACCESS_KEY, SECRET_KEY)))
        (self.dir / "data").mkdir()
        args = server_args(
            self.weed,
            ip=self.ip,
            bind=self.ip,
            data=self.dir / "data",
            config=self.dir / "s3.json",
            s3_port=self.s3_port,
            metrics_port=self.metrics_port,
            ports={name: free_port() for name in ("master", "volume", "filer")},
            grpc_ports={name: free_port() for name in ("master", "volume", "filer", "s3")},
        )
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_ready()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs: str):
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=kwargs.get("access_key", ACCESS_KEY),
            aws_secret_access_key=kwargs.get("secret_key", SECRET_KEY),
            config=Config(
                s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}
            ),
        )

    def _wait_ready(self) -> None:
        """Until a bucket can be created and an object written and read back."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"weed exited with {self.proc.returncode}:\n{self.log()}")
            try:
                cli = self.client()
                cli.create_bucket(Bucket="tfmodel-ready")
                cli.put_object(Bucket="tfmodel-ready", Key="probe", Body=b"ok")
                if cli.get_object(Bucket="tfmodel-ready", Key="probe")["Body"].read() == b"ok":
                    return
            except Exception as e:  # not up yet: connection refused, 500 while volumes grow
                last = e
            time.sleep(0.5)
        raise AssertionError(f"SeaweedFS not ready ({last!r}):\n{self.log()[-5000:]}")

    # --- what the store itself counted ----------------------------------------
    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = requests.get(f"http://{self.ip}:{self.metrics_port}/metrics", timeout=5).text
        values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return values

    def get_object_count(self, bucket: str) -> int:
        """GetObject requests (type GET) the S3 gateway answered 200/206 for bucket."""
        total = 0.0
        for (name, labels), value in self.metrics().items():
            d = dict(labels)
            if (
                name == "SeaweedFS_s3_request_total"
                and d.get("type") == "GET"
                and d.get("bucket") == bucket
                and d.get("code") in ("200", "206")
            ):
                total += value
        return int(total)

    def sent_bytes(self, bucket: str) -> int:
        """Object bytes the S3 gateway sent for bucket (GET bodies; listings count 0)."""
        for (name, labels), value in self.metrics().items():
            if (
                name == "SeaweedFS_s3_bucket_traffic_sent_bytes_total"
                and dict(labels).get("bucket") == bucket
            ):
                return int(value)
        return 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def upload_dir(cli, local: Path, bucket: str, prefix: str) -> list[str]:
    """Every file under local to bucket/prefix/<relative path>; returns the keys."""
    keys = []
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        key = f"{prefix.rstrip('/')}/{path.relative_to(local).as_posix()}"
        cli.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys


def delete_prefix(cli, bucket: str, prefix: str) -> None:
    paginator = cli.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
        for obj in page.get("Contents", []):
            cli.delete_object(Bucket=bucket, Key=obj["Key"])
