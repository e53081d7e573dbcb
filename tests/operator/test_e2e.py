"""End to end: operator -> ConfigMap -> (test as kubelet) -> real tfmodel-server -> gRPC client.

The test plays the kubelet: it materialises the operator's ConfigMap with the kubelet's
`..data` symlink swap, starts `tfmodel-server` with the Deployment's container args (the
volume mounts /etc/tfmodel and /models mapped to temporary directories, ports moved to free
loopback ports), and registers a Running Pod so the operator can read GET /v1/models.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tfmodel_operator import names

from tests.operator.kube import KubeCluster
from tests.operator.operator_proc import Objects, OperatorProcess, wait_for
from tests.server.savedmodels import export_linear
from tests.server.serverproc import ServerProcess

POLL_SECONDS = 2
NAME = "lin-fleet"


class KubeletConfigMapVolume:
    """Mirrors a ConfigMap into a directory the way the kubelet does (atomic `..data` swap)."""

    def __init__(self, objs: Objects, configmap: str, mount: Path, models_root: Path):
        self.objs, self.configmap, self.mount, self.models_root = (
            objs,
            configmap,
            mount,
            models_root,
        )
        self.generation = 0
        self.published: dict[str, str] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        mount.mkdir(parents=True)

    def sync(self) -> None:
        data = (self.objs.get("configmap", self.configmap) or {}).get("data") or {}
        # The storage volume is mounted at /models in a pod; here it lives under models_root.
        data = {k: v.replace('"/models/', f'"{self.models_root}/') for k, v in data.items()}
        if data and data != self.published:
            self._publish(data)
            self.published = data

    def _publish(self, files: dict[str, str]) -> None:
        self.generation += 1
        stamp = f"..2026_01_01_00_00_00.{self.generation:09d}"
        payload = self.mount / stamp
        payload.mkdir()
        for name, content in files.items():
            (payload / name).write_text(content)
        data_link = self.mount / "..data"
        old = os.readlink(data_link) if data_link.is_symlink() else None
        os.symlink(stamp, self.mount / "..data_tmp")
        os.rename(self.mount / "..data_tmp", data_link)
        for name in files:
            if not (self.mount / name).is_symlink():
                os.symlink(f"..data/{name}", self.mount / name)
        if old:
            for child in (self.mount / old).iterdir():
                child.unlink()
            (self.mount / old).rmdir()

    def _loop(self) -> None:
        deadline = time.monotonic() + 300
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - a failed sync is retried, as the kubelet does
                pass
            self._stop.wait(0.5)

    def __enter__(self) -> KubeletConfigMapVolume:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def container_args_for_local_run(deployment: dict, config_dir: Path) -> list[str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    mapped = []
    for arg in container["args"]:
        if arg.startswith(("--port=", "--rest_api_port=")):
            continue  # ServerProcess picks free loopback ports
        mapped.append(arg.replace(f"{names.CONFIG_DIR}/", f"{config_dir}/"))
    return mapped


def predict_version(stub, label: str) -> int:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "lin"
    request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    return stub.Predict(request, timeout=10).model_spec.version.value


def test_label_flip_reaches_a_real_server_without_failures(
    kube: KubeCluster, namespace: str, operator: OperatorProcess, tmp_path: Path
):
    models_root = tmp_path / "models"
    export_linear(models_root / "lin", 1, a=1.0, b=0.0)
    export_linear(models_root / "lin", 2, a=2.0, b=0.0)
    objs = Objects(kube, namespace)
    objs.apply(
        {
            "apiVersion": "serving.tfmodel.io/v1alpha1",
            "kind": "TFModel",
            "metadata": {"name": NAME},
            "spec": {
                "models": [
                    {
                        "name": "lin",
                        "basePath": "/models/lin",
                        "versionPolicy": {"specific": {"versions": [1, 2]}},
                        "versionLabels": {"stable": 1, "canary": 2},
                    }
                ],
                "storage": {"hostPath": {"path": "/srv/models"}},
                "pollIntervalSeconds": POLL_SECONDS,
            },
        }
    )
    deployment = wait_for(lambda: objs.get("deployment", NAME), 30, "Deployment", operator.log)
    generation = deployment["metadata"]["generation"]
    config_dir = tmp_path / "etc-tfmodel"
    with KubeletConfigMapVolume(
        objs, names.configmap_name(NAME), config_dir, models_root
    ) as volume:
        wait_for(lambda: volume.published, 30, "ConfigMap materialised")
        server = ServerProcess(*container_args_for_local_run(deployment, config_dir)).start()
        try:
            server.wait_ready()
            stub = server.prediction_stub()
            assert predict_version(stub, "stable") == 1
            assert predict_version(stub, "canary") == 2

            # The kubelet's part for status: a Running pod whose "http" port is the server's.
            register_pod(objs, server.rest_port)
            wait_for(
                lambda: (
                    lin_status(objs).get("versionLabels") == {"stable": 1, "canary": 2}
                    and [v["state"] for v in lin_status(objs)["versions"]]
                    == ["AVAILABLE", "AVAILABLE"]
                ),
                30,
                "per-model status from GET /v1/models",
                operator.log,
            )

            seen, failures = [], []
            stop = threading.Event()

            def request_loop() -> None:
                deadline = time.monotonic() + 120
                while not stop.is_set() and time.monotonic() < deadline:
                    try:
                        seen.append(predict_version(stub, "stable"))
                    except grpc.RpcError as err:
                        failures.append(f"{err.code()}: {err.details()}")

            loop = threading.Thread(target=request_loop, daemon=True)
            loop.start()
            try:
                wait_for(lambda: len(seen) >= 20, 30, "request loop running")
                objs.patch(
                    "tfm",
                    NAME,
                    [{"op": "replace", "path": "/spec/models/0/versionLabels/stable", "value": 2}],
                    "json",
                )
                # Within the poll interval plus a few seconds (operator + kubelet sync + server poll).
                wait_for(
                    lambda: predict_version(stub, "stable") == 2,
                    POLL_SECONDS + 15,  # generous: CI runs this on 2 busy cores
                    "stable -> version 2",
                    lambda: operator.log()[-2000:] + "\nserver log:\n" + server.log(),
                )
                count = len(seen)
                wait_for(lambda: len(seen) >= count + 20, 30, "more requests after the flip")
            finally:
                stop.set()
                loop.join(30)
            assert failures == [], server.log()[-3000:]
            first_new = seen.index(2)
            assert set(seen[:first_new]) == {1} and set(seen[first_new:]) == {2}, "label went back"

            wait_for(
                lambda: lin_status(objs).get("versionLabels") == {"stable": 2, "canary": 2},
                30,
                "status shows the moved label",
                operator.log,
            )
        finally:
            server.stop()
    # The flip touched only the ConfigMap: same Deployment generation, so no pod restarted.
    assert objs.get("deployment", NAME)["metadata"]["generation"] == generation
    kube.kubectl("delete", "tfm", NAME, "-n", namespace, "--wait=false")


def lin_status(objs: Objects) -> dict:
    models = (objs.get("tfm", NAME) or {}).get("status", {}).get("models") or [{}]
    return models[0]


def register_pod(objs: Objects, rest_port: int) -> None:
    # The Deployment's pod template labels, as its ReplicaSet would set them (the operator
    # watches pods by their managed-by label).
    labels = names.common_labels(NAME)
    objs.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{NAME}-0", "labels": labels},
            "spec": {
                "containers": [
                    {
                        "name": names.SERVER_CONTAINER,
                        "image": "tfmodel/tfmodel-server:0.1.0",
                        "ports": [{"name": "http", "containerPort": rest_port}],
                    }
                ]
            },
        }
    )
    objs.patch(
        "pod",
        f"{NAME}-0",
        {"status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}},
        subresource="status",
    )
    pod = objs.get("pod", f"{NAME}-0")
    assert pod["status"]["podIP"] == "127.0.0.1", json.dumps(pod["status"])


def test_canary_traffic_percent_splits_a_real_servers_traffic(
    kube: KubeCluster, namespace: str, operator: OperatorProcess, tmp_path: Path
):
    """canaryTrafficPercent reaches the server through the ConfigMap, with no pod restart."""
    name = "lin-split"
    models_root = tmp_path / "models"
    export_linear(models_root / "lin", 1, a=1.0, b=0.0)
    export_linear(models_root / "lin", 2, a=2.0, b=0.0)
    objs = Objects(kube, namespace)
    objs.apply(
        {
            "apiVersion": "serving.tfmodel.io/v1alpha1",
            "kind": "TFModel",
            "metadata": {"name": name},
            "spec": {
                "models": [
                    {
                        "name": "lin",
                        "basePath": "/models/lin",
                        "versionPolicy": {"specific": {"versions": [1, 2]}},
                        "versionLabels": {"stable": 1, "canary": 2},
                        "canaryTrafficPercent": 0,
                    }
                ],
                "storage": {"hostPath": {"path": "/srv/models"}},
                "pollIntervalSeconds": POLL_SECONDS,
            },
        }
    )
    deployment = wait_for(lambda: objs.get("deployment", name), 30, "Deployment", operator.log)
    generation = deployment["metadata"]["generation"]
    config_dir = tmp_path / "etc-tfmodel"

    def unversioned(stub, n: int) -> list[int]:
        out = []
        for _ in range(n):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "lin"
            request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
            out.append(stub.Predict(request, timeout=10).model_spec.version.value)
        return out

    with KubeletConfigMapVolume(objs, names.configmap_name(name), config_dir, models_root) as vol:
        wait_for(lambda: vol.published, 30, "ConfigMap materialised")
        server = ServerProcess(*container_args_for_local_run(deployment, config_dir)).start()
        try:
            server.wait_ready()
            server.wait_versions("lin", {1: "AVAILABLE", 2: "AVAILABLE"})
            stub = server.prediction_stub()
            # Held at 0%: unversioned requests stay on stable although 2 is the highest.
            wait_for(lambda: set(unversioned(stub, 30)) == {1}, 20, "all on stable")
            objs.patch("tfm", name, [
                {"op": "add", "path": "/spec/models/0/canaryTrafficPercent", "value": 50}
            ], "json")  # fmt: skip
            wait_for(
                lambda: set(unversioned(stub, 30)) == {1, 2},
                POLL_SECONDS + 20,
                "split in force",
                lambda: operator.log()[-2000:] + "\nserver log:\n" + server.log()[-2000:],
            )
            served = unversioned(stub, 400)
            assert 0.4 < served.count(2) / len(served) < 0.6
            assert predict_version(stub, "canary") == 2
            assert "lin:2@50%" in objs.get("tfm", name)["status"]["canaryVersions"]
        finally:
            server.stop()
    assert objs.get("deployment", name)["metadata"]["generation"] == generation
    kube.kubectl("delete", "tfm", name, "-n", namespace, "--wait=false")


def register_server_pod(objs: Objects, tfmodel: str, rest_port: int) -> None:
    """As the kubelet would: a Running pod of `tfmodel` whose "http" port is the server's."""
    pod_name = f"{tfmodel}-0"
    objs.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod_name, "labels": names.common_labels(tfmodel)},
            "spec": {
                "containers": [
                    {
                        "name": names.SERVER_CONTAINER,
                        "image": "tfmodel/tfmodel-server:0.1.0",
                        "ports": [{"name": "http", "containerPort": rest_port}],
                    }
                ]
            },
        }
    )
    objs.patch(
        "pod",
        pod_name,
        {"status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}},
        subresource="status",
    )


def rollout_state(objs: Objects, tfmodel: str) -> dict:
    rollouts = (objs.get("tfm", tfmodel) or {}).get("status", {}).get("rollouts") or [{}]
    return rollouts[0]


def events_of(kube: KubeCluster, namespace: str, tfmodel: str) -> list[dict]:
    items = json.loads(kube.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    return [e for e in items if e["involvedObject"]["name"] == tfmodel]


def test_rollout_promotes_a_good_version_and_rolls_back_a_failing_one(
    kube: KubeCluster, namespace: str, operator: OperatorProcess, tmp_path: Path
):
    """Edit versionLabels.stable, the operator does the rest, on a real server with traffic.

    A second client sends malformed requests to `stable` (about 3 % of the traffic, each
    answered INVALID_ARGUMENT): client errors, which must not fail the healthy version 2
    even under a 1 % absolute threshold. Version 3 fails every request server-side
    (DEADLINE_EXCEEDED): the real fault that must roll it back.
    """
    from tests.server.savedmodels import export_faulty

    name = "lin-roll"
    models_root = tmp_path / "models"
    export_linear(models_root / "lin", 1, a=1.0, b=0.0)
    export_linear(models_root / "lin", 2, a=2.0, b=0.0)
    export_faulty(models_root / "lin", 3)
    objs = Objects(kube, namespace)
    objs.apply(
        {
            "apiVersion": "serving.tfmodel.io/v1alpha1",
            "kind": "TFModel",
            "metadata": {"name": name},
            "spec": {
                "models": [
                    {
                        "name": "lin",
                        "basePath": "/models/lin",
                        "versionPolicy": {"specific": {"versions": [1, 2, 3]}},
                        "versionLabels": {"stable": 1},
                        "rollout": {
                            "steps": [
                                {"trafficPercent": 20, "pauseSeconds": 2},
                                {"trafficPercent": 50, "pauseSeconds": 2},
                            ],
                            "analysis": {"maxErrorRatio": 0.01, "minRequests": 20},
                        },
                    }
                ],
                "storage": {"hostPath": {"path": "/srv/models"}},
                "pollIntervalSeconds": POLL_SECONDS,
            },
        }
    )
    deployment = wait_for(lambda: objs.get("deployment", name), 30, "Deployment", operator.log)
    config_dir = tmp_path / "etc-tfmodel"
    with KubeletConfigMapVolume(objs, names.configmap_name(name), config_dir, models_root) as vol:
        wait_for(lambda: vol.published, 30, "ConfigMap materialised")
        server = ServerProcess(*container_args_for_local_run(deployment, config_dir)).start()
        try:
            server.wait_ready()
            server.wait_versions("lin", {1: "AVAILABLE", 2: "AVAILABLE", 3: "AVAILABLE"})
            register_server_pod(objs, name, server.rest_port)
            wait_for(lambda: rollout_state(objs, name).get("phase") == "Stable", 30, "state")
            stub = server.prediction_stub()
            served: list[int] = []
            failures: list[str] = []
            stop = threading.Event()

            malformed: list[str] = []

            def loop() -> None:
                deadline = time.monotonic() + 240
                sent = 0
                while not stop.is_set() and time.monotonic() < deadline:
                    sent += 1
                    if sent % 32 == 0:  # ~3 %: an input the signature does not have
                        request = predict_pb2.PredictRequest()
                        request.model_spec.name = "lin"
                        request.model_spec.version_label = "stable"
                        request.inputs["no_such_input"].CopyFrom(
                            tf.make_tensor_proto(np.array([1.0], np.float32))
                        )
                        try:
                            stub.Predict(request, timeout=10)
                        except grpc.RpcError as err:
                            malformed.append(err.code().name)
                        continue
                    try:
                        served.append(predict_version(stub, "stable"))
                    except grpc.RpcError as err:
                        failures.append(err.code().name)

            client = threading.Thread(target=loop, daemon=True)
            client.start()
            try:
                log = lambda: operator.log()[-3000:] + "\nserver:\n" + server.log()[-2000:]  # noqa: E731
                # 1 -> 2: promoted.
                objs.patch("tfm", name, [
                    {"op": "replace", "path": "/spec/models/0/versionLabels/stable", "value": 2}
                ], "json")  # fmt: skip
                wait_for(
                    lambda: rollout_state(objs, name).get("phase") == "Promoted",
                    90,
                    "promotion of 2",
                    log,
                )
                state = rollout_state(objs, name)
                assert state["stable"] == 2, state
                canary = state["analysis"]["canary"]
                assert canary["requests"] >= 20 and canary["serverFaults"] == 0, state
                assert malformed and set(malformed) == {"INVALID_ARGUMENT"}
                wait_for(
                    lambda: {predict_version(stub, "stable") for _ in range(30)} == {2},
                    30,
                    "stable label on 2, split gone",
                )
                assert failures == [], failures[:5]
                assert 1 in served and 2 in served
                reasons = [e["reason"] for e in events_of(kube, namespace, name)]
                assert {"RolloutStarted", "RolloutProgressing", "RolloutPromoted"} <= set(reasons)

                # 2 -> 3: version 3 fails every request it gets; rolled back.
                count = len(served)
                objs.patch("tfm", name, [
                    {"op": "replace", "path": "/spec/models/0/versionLabels/stable", "value": 3}
                ], "json")  # fmt: skip
                wait_for(
                    lambda: rollout_state(objs, name).get("phase") == "RolledBack",
                    90,
                    "rollback of 3",
                    log,
                )
                state = rollout_state(objs, name)
                assert state["stable"] == 2 and state["target"] == 3, state
                assert "failed the analysis: server-fault ratio" in state["message"], state
                assert state["analysis"]["canary"]["serverFaults"] >= 20, state
                assert state["analysis"]["stable"]["serverFaults"] == 0, state
                assert failures and set(failures) == {"DEADLINE_EXCEEDED"}
                warning = next(
                    e
                    for e in events_of(kube, namespace, name)
                    if e["reason"] == "RolloutRolledBack"
                )
                assert warning["type"] == "Warning" and "server-fault ratio" in warning["message"]
                assert "canary: " in warning["message"] and "; stable: " in warning["message"]
                # Back on 2 only: the split and the canary label are gone.
                seen_failures = len(failures)
                time.sleep(POLL_SECONDS + 3)
                settled = len(failures)
                time.sleep(2)
                assert len(failures) == settled, "errors after the rollback settled"
                assert set(served[count:]) <= {2, 3} and seen_failures <= settled
                table = kube.kubectl("get", "tfm", name, "-n", namespace).stdout
                assert "lin:RolledBack" in table
            finally:
                stop.set()
                client.join(30)
        finally:
            server.stop()
    kube.kubectl("delete", "tfm", name, "-n", namespace, "--wait=false")
