"""The manager's state machine on a fake loader and source (no TensorFlow, milliseconds).

Beside tests/server/test_manager.py, which runs the same manager on real
SavedModels: these pin the order of loads and unloads, retries, cancellation,
refcounted unload and the label rules exactly.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from tensorflow_serving.config import model_server_config_pb2
from tfmodel_server.core import states
from tfmodel_server.core.harness import LoaderHarness, VersionStatus
from tfmodel_server.core.interfaces import VersionDir
from tfmodel_server.core.manager import ManagerOptions, ServableManager
from tfmodel_server.core.policy import versions_to_unload
from tfmodel_server.errors import ServingError
from tfmodel_server.model_servers.server_core import ServerCore

from tests.core.fakes import FakeLoader, FakeSource


def config(*models: tuple[str, str, dict[str, int]], policy: str = ""):
    cfg = model_server_config_pb2.ModelServerConfig()
    for name, base, labels in models:
        mc = cfg.model_config_list.config.add(
            name=name, base_path=base, model_platform="tensorflow"
        )
        if policy == "all":
            mc.model_version_policy.all.SetInParent()
        for label, version in labels.items():
            mc.version_labels[label] = version
    return cfg


async def eventually(predicate, what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@pytest.fixture
async def rig():
    loader, source = FakeLoader(), FakeSource()
    made: list[ServableManager] = []

    def make(allow_unavailable_labels: bool = False, **options):
        options.setdefault("file_system_poll_wait_seconds", 0)  # tests poll explicitly
        options.setdefault("load_retry_interval_micros", 1_000)
        manager = ServableManager(loader, source, ManagerOptions(**options))
        made.append(manager)
        return manager, ServerCore(manager, allow_unavailable_labels)

    yield loader, source, make
    for manager in made:
        await asyncio.wait_for(manager.stop(), 5)


def state_of(manager: ServableManager, name: str) -> dict[int, str]:
    return {s.version: s.state.value for s in manager.model_status(name)}


# --- states.py -----------------------------------------------------------------


def test_every_state_has_its_legal_moves_written_down():
    assert set(states.LEGAL_TRANSITIONS) == set(states.VersionState)
    states.check_transition(states.START, states.LOADING)
    with pytest.raises(states.IllegalTransition, match="AVAILABLE -> LOADING"):
        states.check_transition(states.AVAILABLE, states.LOADING)
    with pytest.raises(states.IllegalTransition):
        states.check_transition(states.END, states.AVAILABLE)
    with pytest.raises(states.IllegalTransition):
        states.check_transition(states.END, states.LOADING)  # a new load passes START


def test_a_failed_attempt_with_a_retry_left_stays_loading_unpublished():
    disk = VersionDir(1, "/m/1", (("saved_model.pb", 0, 0),))
    harness: LoaderHarness[object] = LoaderHarness("m", 1, disk.path)
    harness.schedule_load(disk)
    harness.begin_loading()
    harness.attempt_failed(ServingError(grpc.StatusCode.DATA_LOSS, "bad pb"))
    harness.wait_for_retry(retry_at=1.0)
    assert harness.status() == VersionStatus(1, states.LOADING), "no error while retrying"
    harness.schedule_retry(disk)
    harness.begin_loading()  # LOADING stays LOADING: a retry is no transition
    harness.attempt_failed(ServingError(grpc.StatusCode.DATA_LOSS, "bad pb again"))
    harness.give_up()
    assert harness.status() == VersionStatus(
        1, states.END, grpc.StatusCode.DATA_LOSS, "bad pb again"
    ), "END carries the last attempt's error"
    # END is final for the content that failed: only new files start a new load.
    with pytest.raises(states.IllegalTransition, match="only new files"):
        harness.schedule_load(disk)
    harness.schedule_load(VersionDir(1, "/m/1", (("saved_model.pb", 1, 0),)))
    assert harness.status() == VersionStatus(1, states.START)


# --- policy.py -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("serving", "aspired", "copying", "unload"),
    [
        ([1], {2}, False, []),  # replacement not serving yet: keep 1
        ([1, 2], {2}, False, [1]),  # replacement serves: 1 may go
        ([1, 2], {3}, False, [1]),  # two un-aspired: the lower goes first
        ([1], set(), False, [1]),  # nothing aspired (model removed): unload
        ([1], set(), True, []),  # nothing aspired but a version is being copied in
        ([1, 2], {1, 2}, False, []),
    ],
)
def test_availability_preserving_unload_order(serving, aspired, copying, unload):
    assert versions_to_unload(serving, aspired, copying) == unload


# --- manager -------------------------------------------------------------------


async def test_new_version_is_available_before_the_old_one_unloads(rig):
    loader, source, make = rig
    manager, core = make()
    source.put("/m", 1)
    await core.apply_config(config(("m", "/m", {})))
    assert state_of(manager, "m") == {1: "AVAILABLE"}

    gate = loader.gate("m", 2)
    source.put("/m", 2)
    await manager.poll_now()
    await eventually(lambda: state_of(manager, "m").get(2) == "LOADING", "v2 loading")
    assert state_of(manager, "m")[1] == "AVAILABLE", "v1 must keep serving while v2 loads"
    with manager.get_handle("m") as handle:
        assert handle.version == 1

    gate.set()
    await eventually(lambda: state_of(manager, "m") == {2: "AVAILABLE", 1: "END"}, "swap")
    assert loader.events.index("loaded m:2") < loader.events.index("unload m:1")


async def test_first_readiness_waits_for_every_initial_version(rig):
    loader, source, make = rig
    manager, core = make()
    source.put("/m", 1, 2)
    gate = loader.gate("m", 1)  # v2 loads first, then v1 waits here
    applying = asyncio.create_task(
        core.apply_config(
            config(("m", "/m", {"stable": 1, "canary": 2}), policy="all"), defer_labels=True
        )
    )
    await eventually(
        lambda: "loaded m:2" in loader.events and "load m:1" in loader.events, "v1 loading"
    )
    # The loader's events come from its thread, before the loop records the states.
    await eventually(
        lambda: state_of(manager, "m") == {2: "AVAILABLE", 1: "LOADING"}, "v2 up, v1 loading"
    )
    assert not manager.ready(), "the stable label's version is still loading"
    gate.set()
    await applying
    await eventually(manager.ready, "ready once both loaded")
    # Later loads no longer hold readiness back: v1 and v2 keep serving.
    loader.gate("m", 3)
    source.put("/m", 1, 2, 3)
    await manager.poll_now()
    await eventually(lambda: state_of(manager, "m").get(3) == "LOADING", "v3 loading")
    assert manager.ready()
    loader.gate("m", 3).set()


async def test_failed_load_is_retried_then_gives_up(rig):
    loader, source, make = rig
    manager, core = make(max_num_load_retries=2)
    source.put("/ok", 1)
    source.put("/bad", 1)
    loader.failures[("ok", 1)] = 2  # succeeds on the third attempt
    loader.failures[("bad", 1)] = 99
    await core.apply_config(config(("ok", "/ok", {}), ("bad", "/bad", {})))
    await eventually(lambda: state_of(manager, "ok") == {1: "AVAILABLE"}, "ok loaded")
    await eventually(lambda: loader.attempts[("bad", 1)] == 3, "bad retried")
    await asyncio.sleep(0.05)
    assert loader.attempts == {("ok", 1): 3, ("bad", 1): 3}, "1 attempt + 2 retries, no more"
    [status] = manager.model_status("bad")
    assert (status.state, status.error_code) == ("END", grpc.StatusCode.DATA_LOSS)
    assert "fake load failure of bad:1" in status.error_message


def status_sampler(manager: ServableManager, name: str, version: int):
    """Samples one version's status on the loop every millisecond; returns the
    list of distinct (state, error code) seen in order, and a stop function."""
    seen: list[tuple[str, str]] = []
    stopped = asyncio.Event()

    async def sample() -> None:
        while not stopped.is_set():
            [status] = manager.model_status(name, version)
            entry = (status.state.value, status.error_code.name)
            if not seen or seen[-1] != entry:
                seen.append(entry)
            await asyncio.sleep(0.001)

    task = asyncio.create_task(sample())

    async def stop() -> None:
        stopped.set()
        await task

    return seen, stop


@pytest.mark.parametrize(
    ("fails", "final"),
    [(2, ("AVAILABLE", "OK")), (99, ("END", "DATA_LOSS"))],
    ids=["fails-twice-then-loads", "always-fails"],
)
async def test_a_version_stays_loading_through_its_retries(rig, fails, final):
    loader, source, make = rig
    manager, core = make(max_num_load_retries=3, load_retry_interval_micros=20_000)
    source.put("/m", 1)
    loader.failures[("m", 1)] = fails
    at_attempt: list[VersionStatus] = []  # the status as each attempt begins
    loader.on_attempt = lambda name, v: at_attempt.extend(manager.model_status(name, v))
    after_change: list[VersionStatus] = []  # the status after every state change
    manager.add_listener(lambda: after_change.extend(manager.model_status("m", 1)))

    await core.apply_config(config(("m", "/m", {})))  # returns after the first attempt
    seen, stop_sampling = status_sampler(manager, "m", 1)
    await eventually(lambda: state_of(manager, "m")[1] != "LOADING", "the load to finish")
    await asyncio.sleep(0.1)  # five retry intervals: nothing more may happen
    await stop_sampling()

    attempts = 3 if fails == 2 else 4  # 1 attempt + max_num_load_retries
    assert loader.attempts[("m", 1)] == attempts
    assert at_attempt == [VersionStatus(1, states.LOADING)] * attempts
    assert seen == [("LOADING", "OK"), final], "LOADING, no error, until the final state"
    assert [(s.state.value, s.error_code.name) for s in after_change][-1] == final
    assert all(s.state == states.LOADING and not s.error_message for s in after_change[:-1])
    [status] = manager.model_status("m", 1)
    if fails == 99:
        assert status.error_message == "fake load failure of m:1"


async def test_a_version_unaspired_between_retries_ends_with_its_last_error(rig):
    loader, source, make = rig
    manager, core = make(max_num_load_retries=3, load_retry_interval_micros=60_000_000)
    source.put("/m", 1)
    loader.failures[("m", 1)] = 99
    await core.apply_config(config(("m", "/m", {})))
    [status] = manager.model_status("m", 1)
    assert (status.state, status.error_code) == ("LOADING", grpc.StatusCode.OK)
    source.put("/m", 2)  # latest 1 now wants version 2 only
    await manager.poll_now()
    await eventually(lambda: state_of(manager, "m") == {2: "AVAILABLE", 1: "END"}, "v2 up")
    [status] = manager.model_status("m", 1)
    assert (status.error_code, status.error_message) == (
        grpc.StatusCode.DATA_LOSS,
        "fake load failure of m:1",
    ), "cancelled retries: END with the last attempt's error, as LoaderHarness::Load"
    assert loader.attempts[("m", 1)] == 1, "no attempt after the cancel"


async def test_a_failed_version_aspired_again_is_a_fresh_load(rig):
    loader, source, make = rig
    manager, core = make(max_num_load_retries=0)
    source.put("/m", 1)
    loader.failures[("m", 1)] = 1
    await core.apply_config(config(("m", "/m", {})))
    assert state_of(manager, "m") == {1: "END"}
    await manager.poll_now()
    assert loader.attempts[("m", 1)] == 1, "failed and still aspired: no retry is left"
    source.put("/m", 2)  # latest 1: version 1 is no longer aspired ...
    await manager.poll_now()
    await eventually(lambda: state_of(manager, "m") == {2: "AVAILABLE", 1: "END"}, "v2 up")
    source.disk["/m"].discard(2)  # ... and aspired again, on the same files
    await manager.poll_now()
    await eventually(lambda: state_of(manager, "m") == {1: "AVAILABLE", 2: "END"}, "v1 again")
    assert loader.attempts[("m", 1)] == 2


async def test_new_files_between_retries_are_tried_at_once(rig):
    loader, source, make = rig
    manager, core = make(max_num_load_retries=1, load_retry_interval_micros=60_000_000)
    source.put("/m", 1)
    loader.failures[("m", 1)] = 1
    await core.apply_config(config(("m", "/m", {})))
    assert state_of(manager, "m") == {1: "LOADING"}, "waiting a minute for its retry"
    source.content[("/m", 1)] = 1  # the version dir was rewritten
    await manager.poll_now()
    await eventually(lambda: state_of(manager, "m") == {1: "AVAILABLE"}, "new files loaded")
    assert loader.attempts[("m", 1)] == 2


async def test_stop_ends_a_version_waiting_for_its_retry(rig):
    loader, source, make = rig
    manager, core = make(max_num_load_retries=3, load_retry_interval_micros=60_000_000)
    source.put("/m", 1)
    loader.failures[("m", 1)] = 99
    await core.apply_config(config(("m", "/m", {})))
    await asyncio.wait_for(manager.stop(), 5)  # not held by the minute-long interval
    [status] = manager.model_status("m", 1)
    assert (status.state, status.error_code) == ("END", grpc.StatusCode.DATA_LOSS)


async def test_start_up_waits_through_retries(rig):
    loader, source, make = rig
    manager, core = make(max_num_load_retries=2, load_retry_interval_micros=20_000)
    source.put("/m", 1, 2)
    loader.failures[("m", 2)] = 99
    # As ServerCore::Create: until every initial version is AVAILABLE or END.
    await core.apply_config(config(("m", "/m", {}), policy="all"), through_retries=True)
    assert loader.attempts[("m", 2)] == 3
    [status] = manager.model_status("m", 2)
    assert (status.state, status.error_code) == ("END", grpc.StatusCode.DATA_LOSS)
    assert manager.ready()


async def test_a_reload_returns_after_the_first_attempt_and_first_readiness_waits(rig):
    loader, source, make = rig
    manager, core = make(max_num_load_retries=3, load_retry_interval_micros=60_000_000)
    source.put("/m", 1, 2)
    loader.failures[("m", 2)] = 99
    await core.apply_config(config(("m", "/m", {}), policy="all"))
    # Version 2 waits a minute for its retry: the reload did not (it would hold
    # the config reload lock), but the first readiness does.
    assert state_of(manager, "m") == {2: "LOADING", 1: "AVAILABLE"}
    assert loader.attempts[("m", 2)] == 1
    assert not manager.ready(), "an initial version is still loading (retrying)"


async def test_new_files_for_a_failed_version_reset_its_retries(rig):
    loader, source, make = rig
    manager, core = make(max_num_load_retries=0)
    source.put("/m", 1)
    loader.failures[("m", 1)] = 1
    await core.apply_config(config(("m", "/m", {})))
    assert state_of(manager, "m") == {1: "END"}
    source.content[("/m", 1)] = 1  # the version dir was rewritten
    await manager.poll_now()
    await eventually(lambda: state_of(manager, "m") == {1: "AVAILABLE"}, "reloaded")


async def test_version_unaspired_while_queued_is_never_loaded(rig):
    loader, source, make = rig
    manager, core = make(load_threads=1)
    gate = loader.gate("m", 1)
    source.put("/m", 1)
    apply = asyncio.create_task(core.apply_config(config(("m", "/m", {}))))
    await eventually(lambda: "load m:1" in loader.events, "v1 load started")
    # v2 and v3 arrive while the only load thread is busy; latest-1 then wants v3 only.
    source.put("/m", 2)
    await manager.poll_now()
    source.put("/m", 3)
    await manager.poll_now()
    gate.set()
    await apply
    await eventually(lambda: state_of(manager, "m").get(3) == "AVAILABLE", "v3 loaded")
    await eventually(lambda: state_of(manager, "m").get(1) == "END", "v1 unloaded")
    assert "load m:2" not in loader.events, "v2 was cancelled before its load began"
    assert state_of(manager, "m")[2] == "END"


async def test_unload_waits_for_the_last_handle(rig):
    loader, source, make = rig
    manager, core = make()
    source.put("/m", 1)
    await core.apply_config(config(("m", "/m", {})))
    first = manager.get_handle("m", 1)
    second = manager.get_handle("m", 1)
    source.put("/m", 2)
    await manager.refresh({"m"})
    await eventually(lambda: state_of(manager, "m")[1] == "UNLOADING", "v1 unloading")
    first.release()
    first.release()  # a second release of one handle must not count twice
    await asyncio.sleep(0.05)
    assert not first.servable.unloaded, "one handle is still held"
    second.release()
    await eventually(lambda: first.servable.unloaded, "unloaded after the last release")
    # END is recorded just after the loader's unload returns.
    await eventually(lambda: state_of(manager, "m")[1] == "END", "v1 END")
    assert state_of(manager, "m") == {2: "AVAILABLE", 1: "END"}


async def test_missing_base_path_keeps_what_serves(rig):
    _, source, make = rig
    manager, core = make()
    source.put("/m", 1)
    await core.apply_config(config(("m", "/m", {})))
    source.missing.add("/m")
    await manager.poll_now()
    assert state_of(manager, "m") == {1: "AVAILABLE"}
    assert "Could not find base path /m" in manager.list_models()[0].error
    # Re-pointing at a path that does not exist keeps serving too.
    source.missing.add("/nowhere")
    await core.apply_config(config(("m", "/nowhere", {})))
    await manager.poll_now()
    assert state_of(manager, "m") == {1: "AVAILABLE"}
    with manager.get_handle("m") as handle:
        assert handle.version == 1
    # An existing but empty base path is an empty version list: that unloads.
    source.missing.clear()
    await core.apply_config(config(("m", "/empty", {})))
    await eventually(lambda: state_of(manager, "m") == {1: "END"}, "unloaded")


async def test_removed_model_unloads_and_stop_unloads_everything(rig):
    loader, source, make = rig
    manager, core = make()
    source.put("/a", 1)
    source.put("/b", 1)
    await core.apply_config(config(("a", "/a", {}), ("b", "/b", {})))
    await core.apply_config(config(("b", "/b", {})))
    await eventually(lambda: state_of(manager, "a") == {1: "END"}, "a unloaded")
    assert [m.name for m in manager.list_models()] == ["b"]
    await manager.stop()
    assert "unload b:1" in loader.events
    assert not manager.ready()


# --- ServerCore labels ---------------------------------------------------------


async def test_strict_labels_refuse_an_unavailable_version_and_change_nothing(rig):
    _, source, make = rig
    manager, core = make()
    source.put("/m", 1, 2)
    with pytest.raises(ServingError, match="version 1 of model m"):
        # TF Serving's rule: even at start-up a label needs its version loaded.
        await core.apply_config(config(("m", "/m", {"stable": 1}), policy="all"))
    await core.apply_config(config(("m", "/m", {}), policy="all"))
    await core.apply_config(config(("m", "/m", {"stable": 1}), policy="all"))
    with pytest.raises(ServingError) as info:
        await core.apply_config(config(("m", "/m", {"stable": 1, "canary": 3}), policy="all"))
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "version 3 of model m" in info.value.message
    assert manager.labels("m") == {"stable": 1}


async def test_deferred_label_moves_once_its_version_is_available(rig):
    loader, source, make = rig
    manager, core = make()
    source.put("/m", 1)
    await core.apply_config(config(("m", "/m", {"stable": 1})), defer_labels=True)
    assert manager.labels("m") == {"stable": 1}

    gate = loader.gate("m", 2)
    source.put("/m", 2)
    apply = asyncio.create_task(
        core.apply_config(config(("m", "/m", {"stable": 2}), policy="all"), defer_labels=True)
    )
    await eventually(lambda: "load m:2" in loader.events, "v2 loading")
    assert manager.labels("m") == {"stable": 1}, "stable stays on the serving version"
    assert core.pending_labels() == {"m": {"stable": 2}}
    with manager.get_handle("m", label="stable") as handle:
        assert handle.version == 1
    gate.set()
    await apply
    assert manager.labels("m") == {"stable": 2}
    assert core.pending_labels() == {}


async def test_rollback_to_a_config_naming_an_unloaded_version_is_one_step(rig):
    _, source, make = rig
    manager, core = make()
    source.put("/m", 7, 8)
    # specific {8} with stable=8, then a "bad" config moving to 7 only ...
    cfg8 = config(("m", "/m", {"stable": 8}))
    cfg8.model_config_list.config[0].model_version_policy.specific.versions.append(8)
    cfg7 = config(("m", "/m", {"stable": 7}))
    cfg7.model_config_list.config[0].model_version_policy.specific.versions.append(7)
    await core.apply_config(cfg8, defer_labels=True)
    await core.apply_config(cfg7, defer_labels=True)
    await eventually(lambda: state_of(manager, "m") == {8: "END", 7: "AVAILABLE"}, "on 7")
    assert manager.labels("m") == {"stable": 7}
    # ... and back: version 8 is not loaded, yet the whole config applies in one step.
    await core.apply_config(cfg8, defer_labels=True)
    assert state_of(manager, "m")[8] == "AVAILABLE"
    assert manager.labels("m") == {"stable": 8}


async def test_flag_allows_a_new_label_on_an_unavailable_version(rig):
    _, source, make = rig
    manager, core = make(allow_unavailable_labels=True)
    source.put("/m", 1)
    await core.apply_config(config(("m", "/m", {"canary": 5})))
    assert manager.labels("m") == {"canary": 5}
    with pytest.raises(ServingError) as info:
        manager.get_handle("m", label="canary")
    assert info.value.code == grpc.StatusCode.NOT_FOUND


# --- canary traffic split (tfmodel) ---------------------------------------------------------


def _served(manager: ServableManager, n: int, **request) -> list[int]:
    versions = []
    for _ in range(n):
        handle = manager.get_handle("m", **request)
        versions.append(handle.version)
        handle.release()
    return versions


async def test_traffic_split_sends_the_canary_share_of_stable_and_unversioned_requests(rig):
    loader, source, make = rig
    manager, core = make()
    source.put("/m", 1, 2)
    cfg = config(("m", "/m", {"stable": 1, "canary": 2}), policy="all")
    await core.apply_config(cfg, timeout=5, defer_labels=True)
    await eventually(lambda: state_of(manager, "m") == {1: "AVAILABLE", 2: "AVAILABLE"}, "loads")
    await eventually(lambda: manager.labels("m") == {"stable": 1, "canary": 2}, "labels")
    # No split: TF Serving's rules (unversioned -> highest, labels exact).
    assert set(_served(manager, 50)) == {2}
    assert set(_served(manager, 50, label="stable")) == {1}

    manager.set_traffic_split({"m": 0.3})
    for request in ({}, {"label": "stable"}):
        served = _served(manager, 2000, **request)
        assert set(served) == {1, 2}
        assert 0.25 < served.count(2) / len(served) < 0.35, (request, served.count(2))
    # Asked for explicitly: exactly what was asked for.
    assert set(_served(manager, 200, label="canary")) == {2}
    assert set(_served(manager, 200, version=1)) == {1}
    assert set(_served(manager, 200, version=2)) == {2}

    manager.set_traffic_split({"m": 1.0})
    assert set(_served(manager, 100, label="stable")) == {2}
    manager.set_traffic_split({"m": 0.0})  # listed at 0: unversioned requests stay on stable
    assert set(_served(manager, 100)) == {1}
    assert set(_served(manager, 100, label="stable")) == {1}
    manager.set_traffic_split({})
    assert set(_served(manager, 100, label="stable")) == {1}
    assert set(_served(manager, 100)) == {2}  # not listed: back to the highest version


async def test_traffic_split_never_routes_to_a_canary_that_is_not_available(rig):
    loader, source, make = rig
    manager, core = make(allow_unavailable_labels=True)
    source.put("/m", 1)
    await core.apply_config(
        config(("m", "/m", {"stable": 1, "canary": 2}), policy="all"), timeout=5
    )
    await eventually(lambda: state_of(manager, "m").get(1) == "AVAILABLE", "v1")
    manager.set_traffic_split({"m": 0.5})
    assert set(_served(manager, 200)) == {1}
    assert set(_served(manager, 200, label="stable")) == {1}
