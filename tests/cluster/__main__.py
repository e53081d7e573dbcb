"""Start the test cluster by hand:  sudo .venv/bin/python -m tests.cluster up

Prints the kubeconfig and how to reach the node's network namespace, then waits; Ctrl-C (or
SIGTERM) tears everything down. `python -m tests.cluster down DATA_DIR` cleans up after a
cluster whose `up` was killed with SIGKILL.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from tests.cluster.cluster import Cluster, start


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


def down(data_dir: Path) -> None:
    """Tear down a cluster left behind by a killed `up` (processes found by their data dir)."""
    import os

    needle = str(data_dir).encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    netns = (data_dir / "netns").read_text().strip()
    cluster = Cluster(
        data_dir=data_dir,
        netns=netns,
        kubeconfig=data_dir / "kubeconfig",
        node_kubeconfig=data_dir / "api" / "admin.kubeconfig",
        kubectl_bin=Path("kubectl"),
        helm_bin=Path("helm"),
        node_bin=Path("/nonexistent"),
        images={},
        containerd_sock=data_dir / "containerd" / "containerd.sock",
    )
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
