"""How often a Deployment rollout costs a client a request, on the embedded cluster.

grpc.aio answers a call that reaches a server at the instant its drain starts with CANCELLED
(grpc/grpc#41785). The operator's pods cycle gRPC connections every 3 s
(grpc.max_connection_age_ms) and stay in service 10 s after SIGTERM, which should leave no
call on the way to a draining pod. This counts, over N rollouts of the demo's TFModel (two
replicas, a resources change replacing both pods each time) with the demo's looping client
(gRPC and REST alternately, one long-lived channel), the rollouts with any failed request and
the failed requests by protocol and status. tests/cluster/test_cluster.py quotes the result.

  sudo .venv/bin/python -m bench.rollout_race --rollouts 8
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tfmodel_devcluster import cluster as cluster_mod
from tfmodel_devcluster.demo import steps


def _replaced(cluster: cluster_mod.Cluster, old: set[str], cpu: str) -> bool:
    pods = steps.server_pods(cluster)
    ready = [p for p in pods if steps.pod_ready(p)]
    return (
        len(pods) == 2
        and len(ready) == 2
        and not ({p["metadata"]["uid"] for p in pods} & old)
        and all(p["spec"]["containers"][0]["resources"]["requests"]["cpu"] == cpu for p in pods)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rollouts", type=int, default=8)
    args = parser.parse_args()
    log_file = Path(tempfile.mkdtemp(prefix="tfmodel-rollout-race-")) / "run.log"
    started = time.monotonic()
    cluster = cluster_mod.start()
    rounds = []
    try:
        steps.install_operator(cluster)
        steps.export_models(cluster, log_file)
        steps.apply_tfmodel(cluster, 2)
        steps.wait_ready(cluster, 2, lambda _line: None)
        for i in range(args.rollouts):
            cpu = "150m" if i % 2 == 0 else "100m"
            old = {p["metadata"]["uid"] for p in steps.server_pods(cluster)}
            loop = steps.Loop(cluster, log_file)
            try:
                time.sleep(3)
                cluster.kubectl(
                    "patch", "tfm", steps.NAME, "-n", steps.NAMESPACE, "--type=merge",
                    "-p", json.dumps({"spec": {"resources": {
                        "requests": {"cpu": cpu, "memory": "256Mi"}, "limits": {"memory": "2Gi"},
                    }}}),
                )  # fmt: skip
                steps.wait_until(
                    "both pods replaced", lambda c=cpu, o=old: _replaced(cluster, o, c), 420, 2
                )
                time.sleep(3)
            finally:
                result = loop.finish(check=False)
            cancelled = sum("CANCELLED" in e for e in result.get("errors", []))
            row = {
                "rollout": i + 1,
                "ok": result.get("ok", 0),
                "failed_by_kind": result.get("failed_by_kind", {}),
                "cancelled_errors": cancelled,
                "first_errors": result.get("errors", [])[:3],
            }
            rounds.append(row)
            print(json.dumps(row), flush=True)
    finally:
        cluster.stop()
    failed_rollouts = sum(1 for r in rounds if r["failed_by_kind"])
    print(
        json.dumps(
            {
                "rollouts": len(rounds),
                "rollouts_with_a_failed_request": failed_rollouts,
                "failed_grpc": sum(r["failed_by_kind"].get("grpc", 0) for r in rounds),
                "failed_rest": sum(r["failed_by_kind"].get("rest", 0) for r in rounds),
                "cancelled": sum(r["cancelled_errors"] for r in rounds),
                "requests_ok": sum(r["ok"] for r in rounds),
                "seconds": round(time.monotonic() - started),
            }
        )
    )


if __name__ == "__main__":
    main()
