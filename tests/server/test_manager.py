"""ServingStack on real SavedModels and a real file system (short poll intervals)."""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import threading
import time
import weakref

import grpc
import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2
from tfmodel_server.errors import ServingError

from tests.server import savedmodels
from tests.server.stack import ServingStack

POLL = 0.05


def make_config(*models: tuple[str, object, str]) -> model_server_config_pb2.ModelServerConfig:
    """models: (name, base_path, extra text-proto fields for that ModelConfig)."""
    body = "".join(
        f'config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" {extra} }}'
        for name, base, extra in models
    )
    return text_format.Parse(
        f"model_config_list {{ {body} }}", model_server_config_pb2.ModelServerConfig()
    )


def predict(manager: ServingStack, name: str, x: float, **spec) -> tuple[int, float]:
    with manager.get_handle(name, **spec) as handle:
        out = handle.servable.signature("").run({"x": np.array([x], np.float32)})
        return handle.version, float(out["y"][0])


def states(manager: ServingStack, name: str) -> dict[int, str]:
    return {s.version: s.state for s in manager.model_status(name)}


async def wait_until(predicate, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except ServingError:
            pass
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def make_manager():
    managers: list[ServingStack] = []

    async def factory(**options) -> ServingStack:
        options.setdefault("file_system_poll_wait_seconds", POLL)
        options.setdefault("load_retry_interval_micros", 50_000)
        manager = ServingStack(**options)
        await manager.start()
        managers.append(manager)
        return manager

    yield factory
    for manager in managers:
        await asyncio.wait_for(manager.stop(), 30)


async def test_serves_latest_version_by_default(make_manager, tmp_path):
    savedmodels.export_linear(tmp_path, 1, a=1.0, b=0.0)
    savedmodels.export_linear(tmp_path, 2, a=2.0, b=0.0)
    manager = await make_manager()
    assert not manager.ready()
    await manager.apply_config(make_config(("m", tmp_path, "")))
    # apply_config returns once the aspired version has loaded.
    assert states(manager, "m") == {2: "AVAILABLE"}
    assert manager.ready()
    assert predict(manager, "m", 3.0) == (2, 6.0)
    assert predict(manager, "m", 3.0, version=2) == (2, 6.0)
    (status,) = manager.model_status("m", 2)
    assert status.error_code == grpc.StatusCode.OK and status.error_message == ""
    (info,) = manager.list_models()
    assert (info.name, info.base_path, info.policy, info.labels) == (
        "m",
        str(tmp_path),
        "latest 1",
        {},
    )


async def test_get_handle_errors(make_manager, tmp_path):
    savedmodels.export_linear(tmp_path, 1)
    manager = await make_manager()
    await manager.apply_config(make_config(("m", tmp_path, "")))
    cases = [
        (dict(name=""), grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
        (
            dict(name="nope"),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
        ),
        (
            dict(name="m", version=9),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(m, 9)",
        ),
        (
            dict(name="m", label="stable"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: stable",
        ),
    ]
    for kwargs, code, message in cases:
        with pytest.raises(ServingError) as info:
            manager.get_handle(**kwargs)
        assert (info.value.code, info.value.message) == (code, message)
    with pytest.raises(ServingError) as info:
        manager.model_status("nope")
    assert info.value.message == "Could not find any versions of model nope"
    with pytest.raises(ServingError) as info:
        manager.model_status("m", 5)
    assert info.value.message == "Could not find version 5 of model m"


async def test_policies_latest_n_all_specific(make_manager, tmp_path):
    for v in (1, 2, 3):
        savedmodels.export_linear(tmp_path, v)
    manager = await make_manager()
    await manager.apply_config(
        make_config(
            ("latest2", tmp_path, "model_version_policy { latest { num_versions: 2 } }"),
            ("all", tmp_path, "model_version_policy { all { } }"),
            ("specific", tmp_path, "model_version_policy { specific { versions: 1 versions: 7 } }"),
        )
    )
    assert states(manager, "latest2") == {3: "AVAILABLE", 2: "AVAILABLE"}
    assert states(manager, "all") == {3: "AVAILABLE", 2: "AVAILABLE", 1: "AVAILABLE"}
    assert states(manager, "specific") == {1: "AVAILABLE"}
    assert [s.version for s in manager.model_status("all")] == [3, 2, 1]

    # Changing the policy in a new config applies it.
    await manager.apply_config(
        make_config(("all", tmp_path, "model_version_policy { specific { versions: 2 } }"))
    )
    await wait_until(lambda: states(manager, "all") == {3: "END", 2: "AVAILABLE", 1: "END"})
    assert [m.name for m in manager.list_models()] == ["all"]


async def test_versions_added_and_removed_on_disk_while_running(make_manager, tmp_path):
    savedmodels.export_linear(tmp_path, 1, a=1.0, b=0.0)
    manager = await make_manager()
    await manager.apply_config(make_config(("m", tmp_path, "model_version_policy { all { } }")))
    assert states(manager, "m") == {1: "AVAILABLE"}

    savedmodels.export_linear(tmp_path, 2, a=2.0, b=0.0)
    await wait_until(lambda: states(manager, "m").get(2) == "AVAILABLE", what="v2 loaded")
    assert predict(manager, "m", 1.0) == (2, 2.0)
    assert predict(manager, "m", 1.0, version=1) == (1, 1.0)

    shutil.rmtree(tmp_path / "1")
    await wait_until(lambda: states(manager, "m")[1] == "END", what="v1 unloaded")
    assert states(manager, "m")[2] == "AVAILABLE"
    with pytest.raises(ServingError) as info:
        manager.get_handle("m", version=1)
    assert info.value.code == grpc.StatusCode.NOT_FOUND

    # A version that comes back is loaded again.
    savedmodels.export_linear(tmp_path, 1, a=1.0, b=0.0)
    await wait_until(lambda: states(manager, "m")[1] == "AVAILABLE", what="v1 reloaded")


async def test_swap_preserves_availability(make_manager, tmp_path, caplog):
    savedmodels.export_linear(tmp_path, 1, a=1.0, b=0.0)
    manager = await make_manager()
    await manager.apply_config(make_config(("m", tmp_path, "")))
    served: list[int] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async def client() -> None:
        # Ask for the latest version continuously through the swap: never a miss.
        while not stop.is_set():
            try:
                with manager.get_handle("m") as handle:
                    served.append(handle.version)
            except ServingError as e:
                failures.append(e.message)
            await asyncio.sleep(0)

    with caplog.at_level(logging.INFO, logger="tfmodel_server.core.manager"):
        task = asyncio.create_task(client())
        savedmodels.export_linear(tmp_path, 2, a=2.0, b=0.0)
        await wait_until(lambda: states(manager, "m") == {2: "AVAILABLE", 1: "END"}, what="swap")
        stop.set()
        await task
    assert failures == []
    assert served[0] == 1 and served[-1] == 2
    log = [r.getMessage() for r in caplog.records]
    loaded_2 = log.index("Successfully loaded servable version {name: m version: 2}")
    unloading_1 = log.index("Unloading servable version {name: m version: 1}")
    assert loaded_2 < unloading_1, "old version must stay AVAILABLE until the new one is"
    assert predict(manager, "m", 2.0) == (2, 4.0)


async def test_post_load_hook_runs_before_available(make_manager, tmp_path):
    savedmodels.export_linear(tmp_path, 1)
    seen: list[tuple[int, str, float]] = []
    manager_ref: list[ServingStack] = []

    def hook(servable) -> None:
        # Runs in the load thread; the version is not yet AVAILABLE.
        state = manager_ref[0].model_status("m", servable.version)[0].state
        y = servable.signature("").run({"x": np.array([2.0], np.float32)})["y"][0]
        seen.append((servable.version, state, float(y)))
        assert threading.current_thread() is not threading.main_thread()

    manager = await make_manager(post_load_hook=hook)
    manager_ref.append(manager)
    await manager.apply_config(make_config(("m", tmp_path, "")))
    assert seen == [(1, "LOADING", 3.0)]
    assert states(manager, "m") == {1: "AVAILABLE"}


async def test_unload_waits_for_outstanding_handle(make_manager, tmp_path):
    savedmodels.export_linear(tmp_path, 1, a=1.0, b=0.0)
    manager = await make_manager()
    await manager.apply_config(make_config(("m", tmp_path, "")))
    handle = manager.get_handle("m")
    old_servable = handle.servable
    graph_ref = weakref.ref(old_servable._graph)
    savedmodels.export_linear(tmp_path, 2, a=2.0, b=0.0)
    await wait_until(lambda: states(manager, "m") == {2: "AVAILABLE", 1: "UNLOADING"})
    await asyncio.sleep(0.3)
    assert states(manager, "m")[1] == "UNLOADING"
    # The request holding v1 can still run on it; new requests get v2.
    out = old_servable.signature("").run({"x": np.array([5.0], np.float32)})
    assert float(out["y"][0]) == 5.0
    assert predict(manager, "m", 5.0) == (2, 10.0)
    # Release from another thread, as a request finishing in a worker would.
    await asyncio.to_thread(handle.release)
    await wait_until(lambda: states(manager, "m")[1] == "END", what="v1 END after release")
    assert not old_servable.loaded
    gc.collect()
    assert graph_ref() is None, "the unloaded version's graph must be freed (TF Serving #1664)"
    handle.release()  # idempotent


async def test_half_written_version_not_loaded_until_complete(make_manager, tmp_path):
    savedmodels.export_linear(tmp_path, 1, a=1.0, b=0.0)
    manager = await make_manager()
    await manager.apply_config(make_config(("m", tmp_path, "")))
    partial = savedmodels.write_partial_version(tmp_path, 2)
    await asyncio.sleep(POLL * 6)
    assert states(manager, "m") == {1: "AVAILABLE"}
    assert predict(manager, "m", 1.0) == (1, 1.0)
    # Finish the copy: the real model lands in the same directory.
    template = savedmodels.export_linear(tmp_path / "staging", 2, a=2.0, b=0.0)
    for item in template.iterdir():
        target = partial / item.name
        if target.exists():
            shutil.rmtree(target)
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)
    await wait_until(lambda: states(manager, "m") == {2: "AVAILABLE", 1: "END"}, what="v2")
    assert predict(manager, "m", 1.0) == (2, 2.0)


async def test_corrupt_version_fails_old_keeps_serving(make_manager, tmp_path):
    savedmodels.export_linear(tmp_path, 1, a=1.0, b=0.0)
    manager = await make_manager(max_num_load_retries=0)
    await manager.apply_config(make_config(("m", tmp_path, "")))
    savedmodels.write_corrupt_version(tmp_path, 2)
    await wait_until(lambda: states(manager, "m").get(2) == "END", what="v2 failed")
    status = {s.version: s for s in manager.model_status("m")}
    assert status[1].state == "AVAILABLE"
    assert status[2].error_code == grpc.StatusCode.DATA_LOSS
    assert "saved_model.pb" in status[2].error_message
    assert predict(manager, "m", 4.0) == (1, 4.0)
    assert manager.ready()

    # Fixing the files on disk (new content) loads the version after all.
    shutil.rmtree(tmp_path / "2")
    savedmodels.export_linear(tmp_path, 2, a=2.0, b=0.0)
    await wait_until(lambda: states(manager, "m") == {2: "AVAILABLE", 1: "END"}, what="fixed")
    (status,) = manager.model_status("m", 2)
    assert status.error_code == grpc.StatusCode.OK


async def test_load_retries_respected(make_manager, tmp_path):
    savedmodels.export_linear(tmp_path, 1)
    savedmodels.export_linear(tmp_path, 2)
    calls: list[int] = []

    def failing_warmup(servable) -> None:
        calls.append(servable.version)
        if servable.version == 2:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "warmup request failed")

    manager = await make_manager(
        post_load_hook=failing_warmup,
        max_num_load_retries=2,
        load_retry_interval_micros=30_000,
        file_system_poll_wait_seconds=0,  # no polling: only retries reload
    )
    await manager.apply_config(make_config(("m", tmp_path, "model_version_policy { all { } }")))
    await wait_until(lambda: calls.count(2) == 3, what="three attempts")
    await asyncio.sleep(0.3)
    assert calls.count(2) == 3, "1 attempt + max_num_load_retries retries, then give up"
    assert calls.count(1) == 1
    status = {s.version: s for s in manager.model_status("m")}
    assert status[2].state == "END"
    assert (status[2].error_code, status[2].error_message) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "warmup request failed",
    )
    assert status[1].state == "AVAILABLE"


async def test_labels_need_available_versions(make_manager, tmp_path):
    for v in (1, 2, 3):
        savedmodels.export_linear(tmp_path, v, a=float(v), b=0.0)
    manager = await make_manager()
    both = "model_version_policy { specific { versions: 1 versions: 2 } }"
    labels = 'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 }'

    # Labels at first load: versions not AVAILABLE yet -> refused, nothing applied.
    with pytest.raises(ServingError) as info:
        await manager.apply_config(make_config(("m", tmp_path, both + labels)))
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    # Labels are checked in name order: "canary" (-> 2) first.
    assert info.value.message == (
        "Request to assign label to version 2 of model m, which is not currently "
        "available for inference"
    )
    assert manager.list_models() == []

    # Documented procedure: load first, then label.
    await manager.apply_config(make_config(("m", tmp_path, both)))
    await manager.apply_config(make_config(("m", tmp_path, both + labels)))
    assert predict(manager, "m", 1.0, label="stable") == (1, 1.0)
    assert predict(manager, "m", 1.0, label="canary") == (2, 2.0)
    assert manager.list_models()[0].labels == {"stable": 1, "canary": 2}

    # Moving a label to a version not loaded is refused; previous labels stay.
    moved = 'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 3 }'
    three = "model_version_policy { specific { versions: 1 versions: 2 versions: 3 } }"
    with pytest.raises(ServingError) as info:
        await manager.apply_config(make_config(("m", tmp_path, three + moved)))
    assert info.value.message == (
        "Request to assign label to version 3 of model m, which is not currently "
        "available for inference"
    )
    assert predict(manager, "m", 1.0, label="canary") == (2, 2.0)
    assert 3 not in states(manager, "m"), "a refused config changes nothing"


async def test_labels_for_unavailable_models_flag(make_manager, tmp_path):
    for v in (1, 2, 3):
        savedmodels.export_linear(tmp_path, v, a=float(v), b=0.0)
    manager = await make_manager(allow_version_labels_for_unavailable_models=True)
    both = "model_version_policy { specific { versions: 1 versions: 2 } }"
    labels = 'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 }'
    await manager.apply_config(make_config(("m", tmp_path, both + labels)))
    assert predict(manager, "m", 1.0, label="stable") == (1, 1.0)
    assert predict(manager, "m", 1.0, label="canary") == (2, 2.0)

    # A new label may point at a version that is not loaded (yet)...
    new_label = labels + ' version_labels { key: "next" value: 3 }'
    await manager.apply_config(make_config(("m", tmp_path, both + new_label)))
    with pytest.raises(ServingError) as info:
        manager.get_handle("m", label="next")
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert info.value.message == "Servable not found for request: Specific(m, 3)"

    # ...but moving an existing label still needs its target AVAILABLE.
    moved = 'version_labels { key: "stable" value: 3 } version_labels { key: "canary" value: 2 }'
    with pytest.raises(ServingError) as info:
        await manager.apply_config(make_config(("m", tmp_path, both + moved)))
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert predict(manager, "m", 1.0, label="stable") == (1, 1.0)


async def test_model_removal_ends_versions(make_manager, tmp_path):
    savedmodels.export_linear(tmp_path / "a", 1)
    savedmodels.export_linear(tmp_path / "b", 1)
    savedmodels.export_linear(tmp_path / "b", 2)
    manager = await make_manager()
    all_versions = "model_version_policy { all { } }"
    await manager.apply_config(
        make_config(("a", tmp_path / "a", ""), ("b", tmp_path / "b", all_versions))
    )
    assert states(manager, "b") == {2: "AVAILABLE", 1: "AVAILABLE"}
    b_servable = manager.get_handle("b")
    b_servable.release()
    await manager.apply_config(make_config(("a", tmp_path / "a", "")))
    await wait_until(lambda: states(manager, "b") == {2: "END", 1: "END"}, what="b END")
    assert not b_servable.servable.loaded
    assert [m.name for m in manager.list_models()] == ["a"]
    with pytest.raises(ServingError) as info:
        manager.get_handle("b")
    assert info.value.message == "Servable not found for request: Latest(b)"
    assert manager.ready()

    # Adding it back loads it again.
    await manager.apply_config(make_config(("a", tmp_path / "a", ""), ("b", tmp_path / "b", "")))
    assert states(manager, "b") == {2: "AVAILABLE", 1: "END"}


async def test_missing_base_path_reported_not_fatal(make_manager, tmp_path):
    savedmodels.export_linear(tmp_path / "good", 1)
    missing = tmp_path / "later"
    manager = await make_manager()
    started = time.monotonic()
    await manager.apply_config(make_config(("good", tmp_path / "good", ""), ("late", missing, "")))
    assert time.monotonic() - started < 10, "apply_config must not wait for versions not on disk"
    assert states(manager, "good") == {1: "AVAILABLE"}
    with pytest.raises(ServingError) as info:
        manager.model_status("late")
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert info.value.message.startswith("Could not find any versions of model late")
    assert f"Could not find base path {missing} for servable late" in info.value.message
    late = [m for m in manager.list_models() if m.name == "late"][0]
    assert "Could not find base path" in late.error
    assert not manager.ready()

    savedmodels.export_linear(missing, 5)
    await wait_until(lambda: states(manager, "late") == {5: "AVAILABLE"}, what="late model")
    assert manager.ready()


async def test_poll_once_mode_and_config_errors(make_manager, tmp_path):
    savedmodels.export_linear(tmp_path, 1)
    manager = await make_manager(file_system_poll_wait_seconds=0)
    await manager.apply_config(make_config(("m", tmp_path, "")))
    assert states(manager, "m") == {1: "AVAILABLE"}
    savedmodels.export_linear(tmp_path, 2)
    await asyncio.sleep(0.3)
    assert states(manager, "m") == {1: "AVAILABLE"}, "0 = poll once, not periodically"

    bad = model_server_config_pb2.ModelServerConfig()
    bad.model_config_list.config.add(name="x", base_path="relative/path")
    with pytest.raises(ServingError) as info:
        await manager.apply_config(bad)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "absolute path" in info.value.message
    custom = model_server_config_pb2.ModelServerConfig()
    custom.custom_model_config.Clear()
    custom.custom_model_config.type_url = "x"
    with pytest.raises(ServingError) as info:
        await manager.apply_config(custom)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert states(manager, "m") == {1: "AVAILABLE"}


async def test_stop_unloads_everything(tmp_path):
    savedmodels.export_linear(tmp_path, 1)
    manager = ServingStack(file_system_poll_wait_seconds=POLL)
    await manager.start()
    await manager.apply_config(make_config(("m", tmp_path, "")))
    handle = manager.get_handle("m")
    servable = handle.servable
    handle.release()
    await asyncio.wait_for(manager.stop(), 30)
    assert not servable.loaded
    assert states(manager, "m") == {1: "END"}
    assert not manager.ready()


async def test_negative_poll_period_never_polls(make_manager, tmp_path):
    savedmodels.export_linear(tmp_path, 1)
    manager = await make_manager(file_system_poll_wait_seconds=-1)
    await manager.apply_config(make_config(("m", tmp_path, "")))
    await asyncio.sleep(0.2)
    with pytest.raises(ServingError) as info:
        manager.model_status("m")
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    # Explicit polls (two, for the completeness check) still work.
    await manager.poll_now()
    await manager.poll_now()
    await wait_until(lambda: states(manager, "m") == {1: "AVAILABLE"}, what="manual poll load")


async def test_empty_config_is_a_no_op(make_manager, tmp_path):
    savedmodels.export_linear(tmp_path, 1)
    manager = await make_manager()
    await manager.apply_config(model_server_config_pb2.ModelServerConfig())
    assert manager.ready() and manager.list_models() == []
    await manager.apply_config(make_config(("m", tmp_path, "")))
    await manager.apply_config(model_server_config_pb2.ModelServerConfig())
    assert states(manager, "m") == {1: "AVAILABLE"}, "an empty config takes no action"
