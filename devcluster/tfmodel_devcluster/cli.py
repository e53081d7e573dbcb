"""`tfmodel-cluster up | down [DATA_DIR] | status`: the embedded cluster by hand (root).

up       builds what is missing, starts the cluster, prints the kubeconfig and how to reach
         the node's network namespace, then waits; Ctrl-C (or SIGTERM) tears it all down.
         --object-store also starts an S3 store (SeaweedFS) the pods reach (objectstore.py).
down     tears down a cluster whose `up` is gone (killed with SIGKILL, or a demo kept with
         KEEP=1): DATA_DIR, or the only cluster `status` lists.
status   lists the clusters on this machine: data dir, API port, live processes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tfmodel_devcluster.cluster import DATA_DIR_PARENT, DATA_DIR_PREFIX, Cluster, cache_dir, start


def up(object_store: bool = False) -> None:
    cluster = start()
    store = ""
    if object_store:
        s3 = cluster.object_store()
        store = f"""
object store (SeaweedFS, S3 API; path-style addressing, region {s3.region}):
  from pods:     {s3.pod_endpoint}   (storage.s3.endpoint of a TFModel)
  from the host: {s3.host_endpoint}
  AWS_ACCESS_KEY_ID={s3.access_key} AWS_SECRET_ACCESS_KEY={s3.secret_key}"""
    print(
        f"""
cluster up (data in {cluster.data_dir}, logs in {cluster.data_dir}/logs)
  export KUBECONFIG={cluster.kubeconfig}
  {cluster.kubectl_bin} get nodes,pods -A
  {cluster.helm_bin} list -A
  # pod and ClusterIP addresses route only inside the node's network namespace:
  nsenter --net=/run/netns/{cluster.netns} curl http://<cluster-ip>:8501/v1/models/<model>
images: {" ".join(cluster.images.values())}{store}
Ctrl-C tears it all down.""",
        flush=True,
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: done.set())
    try:
        done.wait()
    finally:
        cluster.stop()


def _pids(match: Callable[[str], bool]) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(pid) != os.getpid() and match(pid):
                out.append(int(pid))
        except OSError:
            continue
    return out


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def down(data_dir: Path) -> None:
    """Tear down a cluster whose starter is gone (a killed `up`, `make demo KEEP=1`): its
    processes are found by their data dir and by the node's network namespace."""
    netns = (data_dir / "netns").read_text().strip()
    needle = str(data_dir).encode()
    node_bins = sorted(cache_dir().glob("k8s-node-*/crictl"))
    cluster = Cluster(
        data_dir=data_dir,
        netns=netns,
        kubeconfig=data_dir / "kubeconfig",
        node_kubeconfig=data_dir / "api" / "admin.kubeconfig",
        kubectl_bin=Path("kubectl"),
        helm_bin=Path("helm"),
        node_bin=node_bins[-1].parent if node_bins else Path("/nonexistent"),
        images={},
        containerd_sock=data_dir / "containerd" / "containerd.sock",
    )

    def cmdline(pid: str) -> bytes:
        return Path(f"/proc/{pid}/cmdline").read_bytes()

    # The kubelet first (it would restart pods), then the pods through containerd (CNI DEL).
    _kill(_pids(lambda pid: needle in cmdline(pid) and b"kubelet" in cmdline(pid)))
    if cluster.containerd_sock.exists():
        cluster.remove_pods()
    _kill(_pids(lambda pid: needle in cmdline(pid)))
    # What runs in the node's namespace without naming the data dir (the API forwarder).
    ns_path = Path(f"/run/netns/{netns}")
    if ns_path.exists():
        inode = ns_path.stat().st_ino
        _kill(_pids(lambda pid: os.stat(f"/proc/{pid}/ns/net").st_ino == inode))
    time.sleep(1)  # SIGKILLed processes release their mounts
    cluster.stop()


def data_dirs() -> list[Path]:
    """The data dirs of the clusters started on this machine (removed again by stop())."""
    parent = Path(DATA_DIR_PARENT)
    return sorted(p for p in parent.glob(f"{DATA_DIR_PREFIX}*") if (p / "netns").is_file())


def _processes(data_dir: Path) -> int:
    needle = str(data_dir).encode()

    def mentions(pid: str) -> bool:
        return needle in Path(f"/proc/{pid}/cmdline").read_bytes()

    return len(_pids(mentions))


def status() -> int:
    found = data_dirs()
    if not found:
        print(f"no cluster on this machine (no {DATA_DIR_PARENT}/{DATA_DIR_PREFIX}*)")
        return 0
    for data_dir in found:
        netns = (data_dir / "netns").read_text().strip()
        port_file = data_dir / "api-port"
        port = port_file.read_text().strip() if port_file.exists() else "-"
        alive = Path(f"/run/netns/{netns}").exists()
        print(
            f"{data_dir}  netns {netns} ({'present' if alive else 'gone'})  "
            f"API 127.0.0.1:{port}  {_processes(data_dir)} processes\n"
            f"  export KUBECONFIG={data_dir / 'kubeconfig'}"
        )
    return 0


def _pick(data_dir: Path | None) -> Path:
    if data_dir is not None:
        return data_dir.resolve()
    found = data_dirs()
    if len(found) != 1:
        listed = "".join(f"\n  {p}" for p in found) or " none found"
        sys.exit(f"tfmodel-cluster down: name the cluster's data dir:{listed}")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tfmodel-cluster", description=(__doc__ or "").split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up_cmd = sub.add_parser("up", help="start a cluster and wait; Ctrl-C tears it down")
    up_cmd.add_argument(
        "--object-store",
        action="store_true",
        help="also start SeaweedFS's S3 gateway, reachable from the pods (s3:// models)",
    )
    down_cmd = sub.add_parser("down", help="tear down a cluster whose `up` is gone")
    down_cmd.add_argument("data_dir", nargs="?", type=Path)
    sub.add_parser("status", help="list the clusters on this machine")
    args = parser.parse_args(argv)
    if args.command == "status":
        return status()
    if os.geteuid() != 0:
        sys.exit(f"tfmodel-cluster {args.command}: needs root (network namespaces, mounts)")
    if args.command == "up":
        up(object_store=args.object_store)
    else:
        down(_pick(args.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
