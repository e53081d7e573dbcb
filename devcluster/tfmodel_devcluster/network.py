"""The node's network namespace: the bridge with the pod network, the CNI configuration, the
route to ClusterIPs, and the forwarder that brings the API server to the host's 127.0.0.1.

Nothing is added to the host's interfaces or iptables: everything lives in the namespace."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

from tfmodel_devcluster.host import ClusterError, run
from tfmodel_devcluster.processes import Processes

POD_CIDR = "10.244.0.0/24"
BRIDGE = "tfm0"
NODE_IP = "10.244.0.1"
SERVICE_CIDR = "10.96.0.0/16"
FORWARDER = Path(__file__).resolve().parent / "forward.py"


class NodeNetwork:
    def __init__(self, netns: str, data_dir: Path) -> None:
        self.netns = netns
        self.data_dir = data_dir
        self.pod_netns: set[str] = set()  # pods' namespaces seen at teardown, removed last

    @property
    def path(self) -> str:
        return f"/run/netns/{self.netns}"

    def wrap(self, cmd: list[str]) -> list[str]:
        """`cmd` run inside the node's network namespace (same mount namespace as the host)."""
        return ["nsenter", f"--net={self.path}", "--", *cmd]

    @property
    def cni_conf_dir(self) -> Path:
        return self.data_dir / "cni" / "net.d"

    def create(self) -> None:
        run(["ip", "netns", "add", self.netns])
        ns = ["ip", "-n", self.netns]
        run([*ns, "link", "set", "lo", "up"])
        run([*ns, "link", "add", BRIDGE, "type", "bridge"])
        run([*ns, "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE])
        run([*ns, "link", "set", BRIDGE, "up"])
        # Connections from the node namespace to ClusterIPs need a route before kube-proxy's
        # DNAT rewrites them; pods route through the bridge address (their CNI gateway).
        run([*ns, "route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP])
        run(self.wrap(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]))
        self.cni_conf_dir.mkdir(parents=True)
        conflist = {
            "cniVersion": "0.4.0",
            "name": "tfmodel",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": False,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.data_dir / "cni" / "ipam"),
                        "ranges": [
                            [{"subnet": POD_CIDR, "rangeStart": "10.244.0.10", "gateway": NODE_IP}]
                        ],
                        "routes": [{"dst": "0.0.0.0/0", "gw": NODE_IP}],
                    },
                }
            ],
        }
        (self.cni_conf_dir / "10-tfmodel.conflist").write_text(json.dumps(conflist, indent=2))

    def forward(
        self, processes: Processes, host_port: int, to_port: int, name: str = "forward"
    ) -> int:
        """127.0.0.1:`host_port` on the host (0: any free port) -> 127.0.0.1:`to_port` in the
        namespace, as the process `name`; returns the host port. The listener is made here, in the host's namespace,
        and handed to forward.py, which runs in the node's and connects from there."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", host_port))
        except OSError as exc:
            listener.close()
            raise ClusterError(f"cannot listen on 127.0.0.1:{host_port}: {exc}") from exc
        listener.listen(128)
        port: int = listener.getsockname()[1]
        fd = listener.fileno()
        cmd = [sys.executable, str(FORWARDER), f"--fd={fd}", f"--to=127.0.0.1:{to_port}"]
        processes.start(name, self.wrap(cmd), pass_fds=(fd,))
        listener.close()
        return port

    def delete(self) -> None:
        for entry in self.pod_netns & set(os.listdir("/run/netns")):
            run(["ip", "netns", "del", entry], check=False)
        run(["ip", "netns", "del", self.netns], check=False)
