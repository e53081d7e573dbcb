"""The demo's steps on a running cluster: helm install, export, apply, query, canary rollout.

Nothing here prints; each step returns what the demo shows (and what its test asserts).
TensorFlow runs only in subprocesses (`tfmodel-demo export`, service_client.py), whose output
goes to the log file the caller names, so the terminal stays readable.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tfmodel_devcluster.cluster import REPO_ROOT, Cluster

CHART = REPO_ROOT / "helm" / "tfmodel-operator"
OPERATOR_NS = "tfmodel-system"
RELEASE = "tfmodel-operator"
NAMESPACE = "demo"
NAME = "mnist"  # the TFModel and its model
MODEL_ROOT = "models"  # under the cluster's data dir: the node's hostPath model volume
ITERATIONS = {1: 100, 2: 2000}  # as the server walk-through: v2 is the visibly better model
SERVER_SELECTOR = f"app.kubernetes.io/instance={NAME},app.kubernetes.io/name=tfmodel-server"
# Short steps so the demo's rollout takes about a minute; the analysis still gates each step.
ROLLOUT = {
    "steps": [
        {"trafficPercent": 25, "pauseSeconds": 10},
        {"trafficPercent": 50, "pauseSeconds": 10},
    ],
    "analysis": {"maxErrorRatio": 0.01, "minRequests": 10},
}

Progress = Callable[[str], None]


class StepError(RuntimeError):
    """A demo step did not reach its goal (the message says what was seen)."""


def _quiet_env() -> dict[str, str]:
    # TensorFlow's C++ start-up lines and oneDNN notes: into the log file anyway, but fewer.
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def wait_until(what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (subprocess.CalledProcessError, KeyError, IndexError, ValueError) as exc:
            value, last = None, getattr(exc, "stderr", None) or exc
        if value:
            return value
        time.sleep(interval)
    raise StepError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last})")


# --- operator --------------------------------------------------------------------------------
def install_operator(cluster: Cluster) -> str:
    """`helm install` the chart with the locally built operator image; returns the chart line."""
    repo, tag = cluster.images["operator"].rsplit(":", 1)
    cluster.helm(
        "install", RELEASE, str(CHART),
        "--namespace", OPERATOR_NS, "--create-namespace",
        "--set", f"image.repository={repo}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never", "--set", "statusIntervalSeconds=2",
        "--wait", "--timeout", "4m",
    )  # fmt: skip
    listed = json.loads(cluster.helm("list", "-n", OPERATOR_NS, "-o", "json").stdout)
    (entry,) = [r for r in listed if r["name"] == RELEASE]
    return f"{entry['name']} ({entry['chart']}) in namespace {OPERATOR_NS}"


def uninstall(cluster: Cluster) -> None:
    """Undo every step (the suite's cluster lives on after the demo's test)."""
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s", check=False)
    cluster.helm("uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait", check=False)


# --- models ----------------------------------------------------------------------------------
def models_root(cluster: Cluster) -> Path:
    return cluster.data_dir / MODEL_ROOT


def export_models(cluster: Cluster, log_file: Path) -> Path:
    """Train and export versions 1 and 2 of the tutorial model onto the node's model volume."""
    base = models_root(cluster) / NAME
    tool = [sys.executable, "-m", "tfmodel_devcluster.demo"]  # = tfmodel-demo
    with log_file.open("a") as out:
        for version, iterations in ITERATIONS.items():
            if (base / str(version)).exists():
                continue
            cmd = [*tool, "export", f"--training_iteration={iterations}",
                   f"--model_version={version}", str(base)]  # fmt: skip
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            done = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=_quiet_env(), timeout=600
            )
            if done.returncode != 0:
                raise StepError(f"exporting version {version} failed (see {log_file})")
    world_readable(models_root(cluster))
    return base


def world_readable(root: Path) -> None:
    """The server runs as uid 1000 and a hostPath keeps the host's modes."""
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)


# --- the TFModel -----------------------------------------------------------------------------
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}


def tfmodel_manifest(
    cluster: Cluster,
    name: str,
    namespace: str,
    replicas: int,
    models: list[dict[str, Any]],
    **spec: Any,
) -> dict[str, Any]:
    """A TFModel of the cluster's server image (never pulled), polled every 2 s, `spec` added."""
    return {
        "apiVersion": "serving.tfmodel.io/v1alpha1",
        "kind": "TFModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": cluster.images["server"],
            "imagePullPolicy": "Never",
            "replicas": replicas,
            "pollIntervalSeconds": 2,
            "models": models,
            "resources": copy.deepcopy(RESOURCES),  # a caller may change its copy
            **spec,
        },
    }


def manifest(cluster: Cluster, replicas: int = 2) -> dict[str, Any]:
    model = {
        "name": NAME,
        "basePath": f"/models/{NAME}",
        "versionPolicy": {"specific": {"versions": [1, 2]}},
        "versionLabels": {"stable": 1, "canary": 2},
    }
    storage = {"hostPath": {"path": str(models_root(cluster)), "type": "Directory"}}
    return tfmodel_manifest(cluster, NAME, NAMESPACE, replicas, [model], storage=storage)


def apply_tfmodel(cluster: Cluster, replicas: int = 2) -> dict[str, Any]:
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    body = manifest(cluster, replicas)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    return body


def server_pods(cluster: Cluster) -> list[dict[str, Any]]:
    items = cluster.get("pods", "-n", NAMESPACE, "-l", SERVER_SELECTOR)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def tfmodel(cluster: Cluster) -> dict[str, Any]:
    return cluster.get("tfm", NAME, "-n", NAMESPACE)


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == "Ready":
            return dict(cond)
    return {"status": "Unknown", "message": "no status yet"}


def wait_ready(cluster: Cluster, replicas: int, progress: Progress, timeout: float = 420) -> float:
    """Until every server pod is Ready and the TFModel says Ready; returns the seconds taken."""
    start = time.monotonic()

    def probe() -> bool:
        pods = server_pods(cluster)
        ready = sum(1 for p in pods if pod_ready(p))
        cond = ready_condition(tfmodel(cluster))
        phases = sorted({p.get("status", {}).get("phase", "?") for p in pods}) or ["none yet"]
        progress(
            f"{time.monotonic() - start:3.0f} s  pods {ready}/{replicas} Ready "
            f"({', '.join(phases)}), TFModel Ready={cond['status']}"
        )
        return ready == replicas and len(pods) == replicas and cond["status"] == "True"

    wait_until("the TFModel's pods to become Ready", probe, timeout, interval=2)
    return time.monotonic() - start


def get_tfm(cluster: Cluster) -> str:
    return cluster.kubectl("get", "tfm", "-n", NAMESPACE).stdout.rstrip()


def restart_counts(cluster: Cluster) -> dict[str, int]:
    """Pod name -> container restarts, for every server pod."""
    return {
        p["metadata"]["name"]: sum(
            s.get("restartCount", 0) for s in p.get("status", {}).get("containerStatuses") or []
        )
        for p in server_pods(cluster)
    }


def service_ip(cluster: Cluster) -> str:
    return str(cluster.get("service", NAME, "-n", NAMESPACE)["spec"]["clusterIP"])


# --- clients (inside the node's network namespace) ------------------------------------------
def _client(cluster: Cluster, *args: str) -> list[str]:
    return cluster.in_netns([sys.executable, "-m", "tfmodel_devcluster.demo.service_client", *args])


def query(cluster: Cluster, label: str, num_tests: int, log_file: Path) -> dict[str, Any]:
    """The tutorial's error rate through the Service, over gRPC and over REST, for `label`."""
    args = ["query", service_ip(cluster), NAME, label, str(num_tests)]
    return _run_client(cluster, args, log_file, f"the {label} query")


def predict_once(
    cluster: Cluster,
    host: str,
    model: str,
    label: str = "-",
    call: dict[str, Any] | None = None,
    log_file: Path | None = None,
) -> dict[str, Any]:
    """One gRPC and one REST predict against `host` (a ClusterIP or a pod IP): the gRPC
    answer's version and both outputs. `call`: service_client's INPUT (default: a digit)."""
    args = ["once", host, model, label, *([json.dumps(call)] if call else [])]
    log = log_file or cluster.data_dir / "logs" / "service-client.log"
    return _run_client(cluster, args, log, f"one predict on {model}")


def _run_client(cluster: Cluster, args: list[str], log_file: Path, what: str) -> dict[str, Any]:
    with log_file.open("a") as err:
        done = subprocess.run(
            _client(cluster, *args),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=REPO_ROOT,
            env=_quiet_env(),
            timeout=600,
        )
    if done.returncode != 0:
        raise StepError(f"{what} failed (exit {done.returncode}, see {log_file})")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class Loop:
    """service_client.py's loop (gRPC and REST alternately, one long-lived channel) while
    something changes: by default on the demo's Service and its `stable` label."""

    def __init__(
        self,
        cluster: Cluster,
        log_file: Path,
        max_s: float = 900,
        *,
        host: str | None = None,
        model: str = NAME,
        label: str = "stable",
        call: dict[str, Any] | None = None,
    ) -> None:
        token = secrets.token_hex(4)
        self.stop_file = cluster.data_dir / f"demo-stop-{token}"
        self.out_path = cluster.data_dir / f"demo-loop-{token}.json"
        self._out = self.out_path.open("w")
        self._err = log_file.open("a")
        args = ["loop", host or service_ip(cluster), model, label, str(self.stop_file), str(max_s)]
        self.proc = subprocess.Popen(
            _client(cluster, *args, *([json.dumps(call)] if call else [])),
            stdout=self._out, stderr=self._err, cwd=REPO_ROOT, env=_quiet_env(),
            start_new_session=True,
        )  # fmt: skip
        ready = Path(f"{self.stop_file}.ready")
        deadline = time.monotonic() + 180  # importing TensorFlow on a loaded machine is slow
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.finish(check=False)
                raise StepError(f"the looping client never got an answer (see {log_file})")
            time.sleep(0.2)

    def finish(self, check: bool = True) -> dict[str, Any]:
        self.stop_file.touch()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._out.close()
        self._err.close()
        text = self.out_path.read_text()
        if check and (self.proc.returncode != 0 or not text.strip()):
            raise StepError(f"the looping client exited {self.proc.returncode}: {text[-2000:]}")
        return json.loads(text.strip().splitlines()[-1]) if text.strip() else {}


# --- the rollout -----------------------------------------------------------------------------
def rollout_state(cluster: Cluster) -> dict[str, Any]:
    for state in (tfmodel(cluster).get("status") or {}).get("rollouts") or []:
        if state.get("model") == NAME:
            return dict(state)
    return {}


def enable_rollout(cluster: Cluster, progress: Progress, timeout: float = 120) -> None:
    """Hand the labels to the operator's automated rollout (it sets `canary` itself then)."""
    cluster.kubectl(
        "patch", "tfm", NAME, "-n", NAMESPACE, "--type=json",
        "-p", json.dumps([
            {"op": "remove", "path": "/spec/models/0/versionLabels/canary"},
            {"op": "add", "path": "/spec/models/0/rollout", "value": ROLLOUT},
        ]),
    )  # fmt: skip

    def stable_at_1() -> bool:
        state = rollout_state(cluster)
        progress(f"rollout state: {state.get('phase', 'none yet')}")
        return state.get("phase") == "Stable" and state.get("stable") == 1

    # The operator must record "stable is 1" before stable changes, or it would just flip it.
    wait_until("the operator to take over the rollout", stable_at_1, timeout, interval=1)


def roll_out(cluster: Cluster, version: int, progress: Progress, timeout: float = 600) -> float:
    """versionLabels.stable -> `version`; waits for Promoted; returns the seconds taken."""
    start = time.monotonic()
    cluster.kubectl(
        "patch", "tfm", NAME, "-n", NAMESPACE, "--type=json",
        "-p", json.dumps([
            {"op": "replace", "path": "/spec/models/0/versionLabels/stable", "value": version}
        ]),
    )  # fmt: skip

    def promoted() -> bool:
        state = rollout_state(cluster)
        phase = state.get("phase", "?")
        if phase == "RolledBack":
            raise StepError(f"the rollout rolled back: {state.get('message')}")
        progress(f"{time.monotonic() - start:3.0f} s  {phase}: {state.get('message', '')}")
        return phase == "Promoted" and state.get("stable") == version

    wait_until(f"the rollout to version {version}", promoted, timeout, interval=1)
    return time.monotonic() - start


_LABELS = """
import json, sys, urllib.request
out = {}
for ip in sys.argv[1:]:
    with urllib.request.urlopen(f"http://{ip}:8501/v1/models", timeout=5) as answer:
        models = json.loads(answer.read())["models"]
    out[ip] = next(m["version_labels"] for m in models if m["name"] == "%s")
print(json.dumps(out))
"""


def pod_labels(cluster: Cluster) -> dict[str, dict[str, str]]:
    """Pod IP -> the version labels that server applies now (GET /v1/models)."""
    ips = [p["status"]["podIP"] for p in server_pods(cluster) if pod_ready(p)]
    done = cluster.netns_python("-c", _LABELS % NAME, *ips, timeout=60)
    if done.returncode != 0:
        raise ValueError(done.stderr[-500:])
    return dict(json.loads(done.stdout))


def wait_served(cluster: Cluster, version: int, progress: Progress, timeout: float = 120) -> None:
    """Until every pod applies `stable` = `version` and no canary: the status is the operator's
    word, the pods see the ConfigMap after the kubelet's next sync (10 s here)."""
    want = {"stable": str(version)}

    def settled() -> bool:
        labels = pod_labels(cluster)
        progress(f"pods' labels: {sorted(labels.values(), key=str)}")
        return bool(labels) and all(v == want for v in labels.values())

    wait_until(f"every pod to serve stable={version}", settled, timeout, interval=1)
