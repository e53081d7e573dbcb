"""Start the test cluster by hand:  sudo .venv/bin/python -m tests.cluster up

Prints the kubeconfig and how to reach the node's network namespace, then waits; Ctrl-C (or
SIGTERM) tears everything down. `python -m tests.cluster down DATA_DIR` cleans up after a
cluster whose `up` was killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

from tests.cluster.cluster import Cluster, cache_dir, start


def up() -> None:
    cluster = start()
    print(
        f"""
test cluster up (data in {cluster.data_dir}, logs in {cluster.data_dir}/logs)
  export KUBECONFIG={cluster.kubeconfig}
  {cluster.kubectl_bin} get nodes,pods -A
  {cluster.helm_bin} list -A
  # pod and ClusterIP addresses route only inside the node's network namespace:
  nsenter --net=/run/netns/{cluster.netns} curl http://<cluster-ip>:8501/v1/models/<model>
images: {" ".join(cluster.images.values())}
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


def _pids(match) -> list[int]:
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


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "up":
        up()
    elif len(sys.argv) == 3 and sys.argv[1] == "down":
        down(Path(sys.argv[2]).resolve())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
