"""The operator at scale: N TFModels against the test kube-apiserver, with an audit log.

    python -m bench.operator --counts 50,200 [--pods 4] [--interval 15] [--window 60]
                             [--before /work/main/operator]

Per count, a fresh API server (devcluster/build/apiserver, audit policy: the operator's requests only)
and the chart's RBAC identity; the operator runs as `tfmodel-operator` from this checkout
(or, with --before DIR, with DIR first on PYTHONPATH: another checkout's operator, side by
side). No kubelet: each TFModel gets --pods Pod objects whose status the benchmark writes
(Running, podIP 127.0.0.1) and one stand-in HTTP server answers every pod's /v1/models and
metrics (tests/operator/fakefleet.py); the benchmark also writes each Deployment's status as
its controller would. Measured:

- create-to-children: TFModel created -> its ConfigMap, Deployment and both Services seen
  (a watch in this process), p50/p99;
- steady API requests per TFModel per minute by verb (audit log, over --window seconds
  once every TFModel is Ready), watches counted apart;
- spec-edit-to-ConfigMap: 3 waves of up to 20 simultaneous edits of a model's basePath ->
  the ConfigMap carrying it (watch), p50/p99;
- rollout decision latency: stable 1 -> 2 on up to 5 TFModels -> Waiting / Progressing /
  Promoted in status (one step at 50 %, no pause: bounded by the status interval);
- the operator's RSS (VmRSS, VmHWM) and CPU seconds per minute (over the window);
- TFModels Degraded at the end.

Writes bench/results/operator-<label>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes

from tests.operator.fakefleet import mark_deployment_ready, start_pods
from tests.operator.kube import KubeCluster, start_cluster
from tests.operator.operator_proc import (
    OPERATOR_NAMESPACE,
    RELEASE,
    OperatorProcess,
    install_chart,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
NAMESPACE = "bench"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}"
MANAGED = "app.kubernetes.io/managed-by=tfmodel-operator"
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}
GROUP_PATH = ("serving.tfmodel.io", "v1alpha1", NAMESPACE, "tfmodels")


def tfmodel(name: str, pods: int) -> dict[str, Any]:
    return {
        "apiVersion": "serving.tfmodel.io/v1alpha1",
        "kind": "TFModel",
        "metadata": {"name": name},
        "spec": {
            "replicas": pods,
            "models": [
                {
                    "name": "lin",
                    "basePath": "/models/lin",
                    "versionPolicy": {"specific": {"versions": [1]}},
                    "versionLabels": {"stable": 1},
                    "rollout": {
                        "steps": [{"trafficPercent": 50, "pauseSeconds": 0}],
                        "analysis": {"minRequests": 1, "maxErrorRatio": 0.5},
                    },
                }
            ],
            "storage": {"hostPath": {"path": "/srv/models"}},
        },
    }


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Watcher:
    """First-seen times of the children, and every ConfigMap version's models.config."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self.api = api
        self.first_seen: dict[tuple[str, str], float] = {}
        self.configs: dict[str, list[tuple[float, str]]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def _watch(self, kind: str, list_fn: Any) -> None:
        resource_version = ""
        while not self.stopping.is_set():
            watch = kubernetes.watch.Watch()
            try:
                for event in watch.stream(
                    list_fn,
                    NAMESPACE,
                    label_selector=MANAGED,
                    resource_version=resource_version or None,
                    timeout_seconds=30,
                ):
                    now = time.monotonic()
                    obj = event["object"]
                    name = obj.metadata.name
                    resource_version = obj.metadata.resource_version
                    with self.lock:
                        self.first_seen.setdefault((kind, name), now)
                        if kind == "ConfigMap":
                            text = (obj.data or {}).get("models.config", "")
                            self.configs.setdefault(name, []).append((now, text))
                    if self.stopping.is_set():
                        break
            except Exception:  # noqa: BLE001 (a dropped watch is reopened)
                resource_version = ""
                time.sleep(0.5)
            finally:
                watch.stop()

    def start(self) -> Watcher:
        core = kubernetes.client.CoreV1Api(self.api)
        apps = kubernetes.client.AppsV1Api(self.api)
        for kind, fn in (
            ("ConfigMap", core.list_namespaced_config_map),
            ("Service", core.list_namespaced_service),
            ("Deployment", apps.list_namespaced_deployment),
        ):
            thread = threading.Thread(target=self._watch, args=(kind, fn), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def stop(self) -> None:
        self.stopping.set()

    def children_at(self, name: str) -> float | None:
        keys = [
            ("ConfigMap", f"{name}-config"),
            ("Deployment", name),
            ("Service", name),
            ("Service", f"{name}-headless"),
        ]
        with self.lock:
            seen = [self.first_seen.get(k) for k in keys]
        return None if None in seen else max(s for s in seen if s is not None)

    def config_with(self, name: str, marker: str, after: float) -> float | None:
        with self.lock:
            for when, text in self.configs.get(f"{name}-config", []):
                if when >= after and marker in text:
                    return when
        return None


def proc_stats(pid: int) -> dict[str, float]:
    """RSS now and at its peak (MiB), and CPU seconds used so far, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = {
        line.split(":")[0]: line.split(":")[1].strip()
        for line in status.splitlines()
        if ":" in line
    }
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
        "hwm_mib": int(fields["VmHWM"].split()[0]) / 1024,
        "cpu_s": (int(stat[11]) + int(stat[12])) / ticks,
    }


def audit_counts(log: Path, start: float, end: float) -> tuple[Counter[str], Counter[str]]:
    """(requests by verb/resource, watches opened by resource) of the operator in [start, end]
    (epoch seconds)."""
    import datetime

    requests: Counter[str] = Counter()
    watches: Counter[str] = Counter()
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("user", {}).get("username") != OPERATOR_USER:
            continue
        stamp = datetime.datetime.fromisoformat(entry["stageTimestamp"].replace("Z", "+00:00"))
        if not start <= stamp.timestamp() <= end:
            continue
        ref = entry.get("objectRef") or {}
        resource = ref.get("resource", "-") + (
            "/" + ref["subresource"] if ref.get("subresource") else ""
        )
        verb = entry.get("verb")
        if verb == "watch":
            if entry.get("stage") == "ResponseStarted":
                watches[resource] += 1
        elif entry.get("stage") == "ResponseComplete":
            requests[f"{verb} {resource}"] += 1
    return requests, watches


def wait_until(predicate: Any, timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def list_tfmodels(custom: kubernetes.client.CustomObjectsApi) -> list[dict[str, Any]]:
    group, version, namespace, plural = GROUP_PATH
    return custom.list_namespaced_custom_object(group, version, namespace, plural)["items"]


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == ctype), {})


def run_one(count: int, args: argparse.Namespace, label: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"tfmodel-bench-operator-{count}-"))
    policy, audit_log = work / "audit-policy.json", work / "audit.log"
    policy.write_text(json.dumps(AUDIT_POLICY))
    kube: KubeCluster | None = None
    operator: OperatorProcess | None = None
    # The stand-in in a process of its own: its answers do not compete with this one's threads.
    stand_in = subprocess.Popen(
        [sys.executable, "-m", "tests.operator.fakefleet"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert stand_in.stdout is not None
    stand_in_port = int(stand_in.stdout.readline())
    watcher: Watcher | None = None
    result: dict[str, Any] = {"label": label, "tfmodels": count, "pods_each": args.pods}
    started = time.monotonic()
    try:
        kube = start_cluster(
            work / "kube",
            apiserver_args=(
                f"--audit-policy-file={policy}",
                f"--audit-log-path={audit_log}",
                "--audit-log-format=json",
                "--audit-log-maxsize=0",
            ),
        )
        kubeconfig = install_chart(kube)
        kube.create_namespace(NAMESPACE)
        admin = kube.admin
        admin.configuration.connection_pool_maxsize = 16
        custom = kubernetes.client.CustomObjectsApi(admin)
        extra_env = {}
        if args.before:
            extra_env["PYTHONPATH"] = f"{args.before}:{os.environ.get('PYTHONPATH', '')}"
        saved = dict(os.environ)
        os.environ.update(extra_env)
        try:
            operator = OperatorProcess(kubeconfig, status_interval=args.interval).start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        assert operator.proc is not None
        watcher = Watcher(admin).start()
        time.sleep(2)  # the watches are open

        # 1. Create: TFModel -> children.
        names = [f"tfm-{i:04d}" for i in range(count)]
        created: dict[str, float] = {}
        group, version, namespace, plural = GROUP_PATH

        def create(name: str) -> None:
            custom.create_namespaced_custom_object(
                group, version, namespace, plural, tfmodel(name, args.pods)
            )
            created[name] = time.monotonic()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, names))
        assert watcher is not None
        wait_until(
            lambda: all(watcher.children_at(n) for n in names), 120 + count * 0.5, "children"
        )
        to_children = [watcher.children_at(n) - created[n] for n in names]  # type: ignore[operator]
        result["create_to_children_s"] = {
            "p50": pct(to_children, 0.5),
            "p99": pct(to_children, 0.99),
        }
        print(f"[{label} {count}] children: p50 {pct(to_children, 0.5):.2f} s", flush=True)

        # 2. The fleet: pods Running, Deployments ready; wait until every TFModel is Ready.
        start_pods(admin, NAMESPACE, names, args.pods, stand_in_port)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: mark_deployment_ready(admin, NAMESPACE, n, args.pods), names))

        def all_ready() -> bool:
            items = list_tfmodels(custom)
            return len(items) == count and all(
                condition(t, "Ready").get("status") == "True" for t in items
            )

        wait_until(all_ready, 120 + 4 * args.interval, "every TFModel Ready", every=3.0)
        print(f"[{label} {count}] fleet ready after {time.monotonic() - started:.0f} s", flush=True)

        # 3. Steady state: the operator's own requests, CPU and RSS over the window.
        time.sleep(args.interval)
        before, t0 = proc_stats(operator.proc.pid), time.time()
        time.sleep(args.window)
        after, t1 = proc_stats(operator.proc.pid), time.time()
        requests, watches = audit_counts(audit_log, t0, t1)
        minutes = (t1 - t0) / 60
        per_tfm_min = {k: v / count / minutes for k, v in sorted(requests.items())}
        result["steady"] = {
            "window_s": round(t1 - t0, 1),
            "requests_per_tfmodel_per_min": round(sum(requests.values()) / count / minutes, 3),
            "by_verb_per_tfmodel_per_min": {k: round(v, 3) for k, v in per_tfm_min.items()},
            "watches_opened": dict(watches),
            "cpu_s_per_min": round((after["cpu_s"] - before["cpu_s"]) / minutes, 2),
            "rss_mib": round(after["rss_mib"], 1),
            "rss_peak_mib": round(after["hwm_mib"], 1),
        }
        print(f"[{label} {count}] steady: {json.dumps(result['steady'])}", flush=True)

        # 4. Spec edit -> ConfigMap, in waves of simultaneous edits.
        latencies: list[float] = []
        wave_size = min(20, count)
        for wave in range(3):
            targets = names[wave * wave_size % count :][:wave_size] or names[:wave_size]
            marker = f"/models/lin-wave{wave}"
            edited: dict[str, float] = {}

            def edit(name: str, marker: str = marker, edited: dict[str, float] = edited) -> None:
                at = time.monotonic()
                custom.patch_namespaced_custom_object(
                    group,
                    version,
                    namespace,
                    plural,
                    name,
                    [{"op": "replace", "path": "/spec/models/0/basePath", "value": marker}],
                    _content_type="application/json-patch+json",
                )
                edited[name] = at

            with ThreadPoolExecutor(wave_size) as pool:
                list(pool.map(edit, targets))
            wait_until(
                lambda m=marker, e=edited: all(watcher.config_with(n, f'"{m}"', e[n]) for n in e),
                60,
                "edited ConfigMaps",
            )
            latencies += [
                watcher.config_with(n, f'"{marker}"', at) - at for n, at in edited.items()
            ]  # type: ignore[operator]
            time.sleep(2)
        result["edit_to_configmap_s"] = {
            "p50": pct(latencies, 0.5),
            "p99": pct(latencies, 0.99),
            "samples": len(latencies),
        }
        print(f"[{label} {count}] edits: {result['edit_to_configmap_s']}", flush=True)

        # 5. Rollout decisions: stable 1 -> 2.
        rolled = names[-min(5, count) :]
        began: dict[str, float] = {}
        for name in rolled:
            began[name] = time.monotonic()
            custom.patch_namespaced_custom_object(
                group,
                version,
                namespace,
                plural,
                name,
                [
                    {"op": "replace", "path": "/spec/models/0/versionLabels/stable", "value": 2},
                    {
                        "op": "replace",
                        "path": "/spec/models/0/versionPolicy/specific/versions",
                        "value": [2],
                    },
                ],
                _content_type="application/json-patch+json",
            )
        reached: dict[str, dict[str, float]] = {n: {} for n in rolled}

        def phases_done() -> bool:
            for name in rolled:
                item = custom.get_namespaced_custom_object(group, version, namespace, plural, name)
                for rollout in item.get("status", {}).get("rollouts") or []:
                    reached[name].setdefault(rollout["phase"], time.monotonic() - began[name])
            return all("Promoted" in r or "RolledBack" in r for r in reached.values())

        wait_until(phases_done, 10 * args.interval + 60, "rollouts decided")
        result["rollout_s"] = {
            phase: {
                "p50": pct([r[phase] for r in reached.values() if phase in r], 0.5),
                "max": max((r[phase] for r in reached.values() if phase in r), default=None),
            }
            for phase in ("Waiting", "Progressing", "Promoted", "RolledBack")
        }
        print(f"[{label} {count}] rollouts: {result['rollout_s']}", flush=True)

        # 6. Degraded at the end.
        items = list_tfmodels(custom)
        result["degraded"] = sum(condition(t, "Degraded").get("status") == "True" for t in items)
        result["operator_log_lines_per_min"] = round(
            len(operator.log().splitlines()) / ((time.monotonic() - started) / 60), 1
        )
        result["wall_s"] = round(time.monotonic() - started, 1)
        return result
    finally:
        if watcher is not None:
            watcher.stop()
        if operator is not None:
            operator.stop()
            shutil.copy(operator.log_path, work / "operator.log")
            result["operator_log"] = str(work / "operator.log")
        stand_in.communicate(timeout=10)  # closes its stdin: it stops
        if kube is not None:
            kube.stop()
            shutil.rmtree(work / "kube", ignore_errors=True)


def markdown(results: list[dict[str, Any]]) -> str:
    def f(value: Any, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    rows = [
        "| operator | TFModels | create->children p50/p99 s | steady req/TFModel/min | "
        "edit->ConfigMap p50/p99 s | RSS MiB (peak) | CPU s/min | rollout edit->Promoted p50/max s "
        "| Degraded |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        steady = r.get("steady", {})
        promoted = r.get("rollout_s", {}).get("Promoted", {})
        rows.append(
            f"| {r['label']} | {r['tfmodels']} | {f(r['create_to_children_s']['p50'])} / "
            f"{f(r['create_to_children_s']['p99'])} | {f(steady.get('requests_per_tfmodel_per_min'))} | "
            f"{f(r['edit_to_configmap_s']['p50'])} / {f(r['edit_to_configmap_s']['p99'])} | "
            f"{f(steady.get('rss_mib'), 0)} ({f(steady.get('rss_peak_mib'), 0)}) | "
            f"{f(steady.get('cpu_s_per_min'), 1)} | {f(promoted.get('p50'), 1)} / "
            f"{f(promoted.get('max'), 1)} | {r['degraded']} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.operator", description=__doc__)
    parser.add_argument("--counts", default="50,200,1000", help="TFModel counts, comma-separated")
    parser.add_argument("--pods", type=int, default=4, help="simulated pods per TFModel")
    parser.add_argument("--interval", type=float, default=15.0, help="--status-interval")
    parser.add_argument("--window", type=float, default=60.0, help="steady-state window, s")
    parser.add_argument(
        "--before", default="", help="a checkout's operator/ dir to measure instead (PYTHONPATH)"
    )
    parser.add_argument("--label", default="", help="name of this operator in the report")
    args = parser.parse_args(argv)
    label = args.label or ("before" if args.before else "this")
    results = []
    for count in [int(c) for c in args.counts.split(",") if c]:
        results.append(run_one(count, args, label))
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"operator-{label}.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
