"""An S3-compatible object store for the cluster: SeaweedFS (`weed server -s3`, built from
source by `go-build.sh seaweedfs`) as a process in the node's network namespace.

Pods reach it at the bridge address, their default gateway (http://10.244.0.1:8333), with no
Service, DNS or image needed; the host reaches it through a forwarder on 127.0.0.1 (as the API
server), so tests and users upload models from the host with any S3 client. One identity with
a key pair made per cluster; data, config and log under <data dir>/objectstore. It stops with
the cluster (Processes.stop_all) and `tfmodel-cluster down` finds it by its data dir.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfmodel_devcluster.artifacts import GO_BUILD, run_script
from tfmodel_devcluster.host import ClusterError, log
from tfmodel_devcluster.network import NODE_IP, NodeNetwork
from tfmodel_devcluster.processes import Processes

S3_PORT = 8333
METRICS_PORT = 9327
REGION = "us-east-1"
# weed's other listeners, inside the node namespace (nothing else there uses them).
PORTS = {"master": 9333, "volume": 8080, "filer": 8888}
GRPC_PORTS = {"master": 19333, "volume": 18080, "filer": 18888, "s3": 18333}
STARTUP_TIMEOUT = 120.0


def weed_binary() -> Path:
    """The cached `weed` (built once per machine, like the Kubernetes binaries)."""
    return Path(run_script(GO_BUILD, "seaweedfs")[-1])


def identity_config(access_key: str, secret_key: str) -> dict[str, Any]:
    """weed's -s3.config: one identity allowed everything."""
    return {
        "identities": [
            {
                "name": "tfmodel",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }


def server_args(
    weed: Path | str,
    *,
    ip: str,
    bind: str,
    data: Path,
    config: Path,
    s3_port: int,
    metrics_port: int,
    ports: dict[str, int],
    grpc_ports: dict[str, int],
) -> list[str]:
    """`weed server` with master, volume, filer and the S3 gateway in one process."""
    return [
        str(weed),
        "server",
        f"-ip={ip}",
        f"-ip.bind={bind}",
        f"-dir={data}",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={grpc_ports['master']}",
        "-master.telemetry=false",
        # Every bucket is a collection that grows volumes of its own: small volumes, no
        # fixed count (0 = as many as the disk holds; nothing is preallocated).
        "-master.volumeSizeLimitMB=32",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={grpc_ports['volume']}",
        "-volume.max=0",
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={grpc_ports['filer']}",
        "-s3",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={grpc_ports['s3']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        f"-metricsPort={metrics_port}",
    ]


@dataclass
class ObjectStore:
    """The running store: where pods and the host reach it, and its one key pair."""

    pod_endpoint: str  # from the pods (and the node namespace)
    host_endpoint: str  # from the host: the forwarder on 127.0.0.1
    access_key: str
    secret_key: str
    region: str = REGION

    def client(self) -> Any:
        """A boto3 S3 client for the host (path-style, as SeaweedFS needs)."""
        import boto3  # the package's own dependency; imported only when a store is used
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.host_endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}
            ),
        )

    def secret_data(self) -> dict[str, str]:
        """The keys of a Secret a TFModel's storage.s3.secretRef names."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}


def start_object_store(
    network: NodeNetwork, processes: Processes, data_dir: Path, host_port: int = 0
) -> ObjectStore:
    """Start weed in the node namespace, forward its S3 port to the host, wait until an
    object can be written and read back (volumes grow on the first write)."""
    weed = weed_binary()
    root = data_dir / "objectstore"
    (root / "data").mkdir(parents=True, exist_ok=True)
    access_key = f"tfmodel-{secrets.token_hex(4)}"
    secret_key = secrets.token_hex(16)
    config = root / "s3.json"
    config.write_text(json.dumps(identity_config(access_key, secret_key)))
    config.chmod(0o600)
    args = server_args(
        weed,
        ip=NODE_IP,
        bind="0.0.0.0",  # the bridge address for pods, 127.0.0.1 for the forwarder
        data=root / "data",
        config=config,
        s3_port=S3_PORT,
        metrics_port=METRICS_PORT,
        ports=PORTS,
        grpc_ports=GRPC_PORTS,
    )
    processes.start("seaweedfs", network.wrap(args))
    port = network.forward(processes, host_port, S3_PORT, name="forward-s3")
    store = ObjectStore(
        pod_endpoint=f"http://{NODE_IP}:{S3_PORT}",
        host_endpoint=f"http://127.0.0.1:{port}",
        access_key=access_key,
        secret_key=secret_key,
    )
    t0 = time.monotonic()
    processes.wait("the object store", lambda: _write_read(store), timeout=STARTUP_TIMEOUT)
    log(f"object store up in {time.monotonic() - t0:.0f} s: {store.pod_endpoint} for pods")
    return store


def _write_read(store: ObjectStore) -> bool:
    cli = store.client()
    try:
        cli.create_bucket(Bucket="tfmodel-ready")
    except cli.exceptions.BucketAlreadyOwnedByYou:
        pass
    cli.put_object(Bucket="tfmodel-ready", Key="probe", Body=b"ok")
    body = cli.get_object(Bucket="tfmodel-ready", Key="probe")["Body"].read()
    if body != b"ok":
        raise ClusterError(f"the object store read back {body!r}")
    return True
