"""The control plane in the node's network namespace: kube-apiserver with its embedded etcd
(devcluster/build/apiserver), kube-controller-manager and kube-scheduler; the API server is
forwarded to the host's 127.0.0.1 and a kubeconfig for the host is written."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path

from tfmodel_devcluster.network import NODE_IP, SERVICE_CIDR, NodeNetwork
from tfmodel_devcluster.processes import Processes

API_PORT = 6443  # inside the node's namespace


def start_control_plane(
    network: NodeNetwork,
    processes: Processes,
    apiserver: Path,
    node_bin: Path,
    kubeconfig: Path,
    api_host_port: int,
) -> int:
    """Start it, write `kubeconfig` (for the host); returns the API's port on 127.0.0.1."""
    data_dir = network.data_dir
    api_dir = data_dir / "api"
    processes.start(
        "kube-apiserver",
        network.wrap(
            [
                str(apiserver),
                f"--data-dir={api_dir}",
                f"--secure-port={API_PORT}",
                "--service-account-admission",
                "--",
                # Reachable from pods (the `kubernetes` Service's endpoint is the bridge
                # address); the namespace is the cluster's own, so all addresses are ours.
                "--bind-address=0.0.0.0",
                f"--advertise-address={NODE_IP}",
                "--endpoint-reconciler-type=lease",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ]
        ),
    )
    node_kubeconfig = api_dir / "admin.kubeconfig"
    processes.wait("API server credentials", node_kubeconfig.exists, timeout=60)
    host_port = network.forward(processes, api_host_port, API_PORT)
    (data_dir / "api-port").write_text(str(host_port))
    pki = api_dir / "pki"
    token = (pki / "tokens.csv").read_text().split(",", 1)[0]
    config = json.loads(node_kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{host_port}"
    kubeconfig.write_text(json.dumps(config, indent=2))
    kubeconfig.chmod(0o600)
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))

    def ready() -> bool:
        request = urllib.request.Request(
            f"https://127.0.0.1:{host_port}/readyz",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:
            return bool(answer.status == 200)

    processes.wait("kube-apiserver /readyz", ready, timeout=180)
    processes.start(
        "kube-controller-manager",
        network.wrap(
            [
                str(node_bin / "kube-controller-manager"),
                f"--kubeconfig={node_kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--use-service-account-credentials=false",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--horizontal-pod-autoscaler-sync-period=5s",
            ]
        ),
    )
    processes.start(
        "kube-scheduler",
        network.wrap(
            [
                str(node_bin / "kube-scheduler"),
                f"--kubeconfig={node_kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
            ]
        ),
    )
    return host_port
