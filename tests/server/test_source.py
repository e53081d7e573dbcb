"""FileSystemSource (version discovery, completeness check) and version policies."""

from __future__ import annotations

import logging
import os
import shutil

import pytest
from tensorflow_serving.config import file_system_storage_path_source_pb2
from tfmodel_server.core.policy import aspired_versions, describe
from tfmodel_server.sources.file_system import FileSystemSource, fingerprint_dir, parse_version

from tests.server import savedmodels

Policy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy


def _poll(source: FileSystemSource, name: str = "m"):
    return source.poll()[name]


def _source(base) -> FileSystemSource:
    source = FileSystemSource()
    source.set_models({"m": str(base)})
    return source


def test_parse_version():
    assert parse_version("1") == 1
    assert parse_version("00000123") == 123
    for bad in ["", "v1", "1.5", "-1", "١٢", " 1", "1a"]:
        assert parse_version(bad) is None


def test_versions_offered_after_two_identical_polls(tmp_path):
    savedmodels.export_linear(tmp_path, 1)
    path = savedmodels.export_linear(tmp_path / "tmp", 7)
    os.rename(path, tmp_path / "00000123")
    source = _source(tmp_path)
    first = _poll(source)
    assert first.complete == {} and first.pending == {1, 123}
    second = _poll(source)
    assert set(second.complete) == {1, 123}
    assert second.complete[123].path == str(tmp_path / "00000123")
    assert second.pending == set()
    assert second.error is None


def test_non_numeric_names_ignored_and_logged_once(tmp_path, caplog):
    savedmodels.export_linear(tmp_path, 3)
    (tmp_path / "tmp-copy").mkdir()
    (tmp_path / "README").write_text("hi")
    (tmp_path / "5").write_text("a file named like a version is not a version")
    source = _source(tmp_path)
    with caplog.at_level(logging.INFO, logger="tfmodel_server.sources.file_system"):
        for _ in range(3):
            state = _poll(source)
    assert set(state.complete) == {3}
    assert state.pending == set()
    ignored = [r.getMessage() for r in caplog.records if "Ignoring" in r.getMessage()]
    assert len(ignored) == 3
    assert any("tmp-copy" in m for m in ignored) and any("README" in m for m in ignored)


def test_half_written_version_not_offered_until_complete_and_stable(tmp_path):
    savedmodels.export_linear(tmp_path, 1)
    partial = savedmodels.write_partial_version(tmp_path, 2)
    source = _source(tmp_path)
    for _ in range(3):
        state = _poll(source)
    assert set(state.complete) == {1}
    assert state.pending == {2}

    # The copy goes on: saved_model.pb lands, but variables are still growing.
    template = savedmodels.export_linear(tmp_path / "staging", 2)
    shutil.copy(template / "saved_model.pb", partial / "saved_model.pb")
    state = _poll(source)
    assert set(state.complete) == {1}
    with open(partial / "variables" / "variables.data-00000-of-00001", "ab") as f:
        f.write(b"\x01" * 32)
    state = _poll(source)
    assert set(state.complete) == {1}, "changed since the previous poll: not complete yet"
    state = _poll(source)
    assert set(state.complete) == {1, 2}


def test_offered_version_stays_offered_while_rewritten(tmp_path):
    savedmodels.export_linear(tmp_path, 1)
    source = _source(tmp_path)
    _poll(source)
    stable = _poll(source).complete[1]
    (tmp_path / "1" / "assets.extra").mkdir()
    (tmp_path / "1" / "assets.extra" / "note").write_text("x")
    during = _poll(source).complete[1]
    assert during.fingerprint == stable.fingerprint  # last stable content kept
    after = _poll(source).complete[1]
    assert after.fingerprint != stable.fingerprint
    assert after.fingerprint == fingerprint_dir(str(tmp_path / "1"))


def test_removed_version_disappears(tmp_path):
    savedmodels.export_linear(tmp_path, 1)
    savedmodels.export_linear(tmp_path, 2)
    source = _source(tmp_path)
    _poll(source)
    assert set(_poll(source).complete) == {1, 2}
    shutil.rmtree(tmp_path / "1")
    assert set(_poll(source).complete) == {2}


def test_missing_base_path_is_an_error_for_that_model_only(tmp_path):
    savedmodels.export_linear(tmp_path / "good", 1)
    source = FileSystemSource()
    source.set_models({"good": str(tmp_path / "good"), "bad": str(tmp_path / "nowhere")})
    source.poll()
    states = source.poll()
    assert set(states["good"].complete) == {1}
    assert states["bad"].error == (
        f"Could not find base path {tmp_path / 'nowhere'} for servable bad"
    )
    assert states["bad"].complete == {}


def test_base_path_vanishing_keeps_offered_versions(tmp_path):
    savedmodels.export_linear(tmp_path / "m", 4)
    source = _source(tmp_path / "m")
    _poll(source)
    assert set(_poll(source).complete) == {4}
    shutil.rmtree(tmp_path / "m")
    state = _poll(source)
    assert state.error is not None and set(state.complete) == {4}


def test_empty_base_path_logs_once(tmp_path, caplog):
    source = _source(tmp_path)
    with caplog.at_level(logging.WARNING, logger="tfmodel_server.sources.file_system"):
        for _ in range(3):
            assert _poll(source).complete == {}
    assert sum("No versions of servable m" in r.getMessage() for r in caplog.records) == 1


def _policy(text: str) -> Policy:
    from google.protobuf import text_format

    return text_format.Parse(text, Policy())


@pytest.mark.parametrize(
    ("policy", "on_disk", "expected"),
    [
        ("", {1, 2, 3}, {3}),
        ("latest { }", {1, 2, 3}, {3}),
        ("latest { num_versions: 2 }", {1, 5, 3}, {5, 3}),
        ("latest { num_versions: 9 }", {1, 2}, {1, 2}),
        ("all { }", {1, 2, 3}, {1, 2, 3}),
        ("specific { versions: 1 versions: 3 versions: 8 }", {1, 2, 3}, {1, 3}),
        ("specific { versions: 8 }", {1, 2}, set()),
        ("", set(), set()),
    ],
)
def test_aspired_versions(policy, on_disk, expected):
    assert aspired_versions(_policy(policy), on_disk) == expected


def test_describe_policy():
    assert describe(_policy("")) == "latest 1"
    assert describe(_policy("latest { num_versions: 3 }")) == "latest 3"
    assert describe(_policy("all {}")) == "all"
    assert describe(_policy("specific { versions: 2 versions: 1 }")) == "specific 1,2"


def test_offered_version_is_not_walked_again(tmp_path, monkeypatch):
    """After a version is offered, polls compare its stamp (top-level listing and
    variables.index), not a walk of every file."""
    from tfmodel_server.sources import file_system

    savedmodels.export_linear(tmp_path, 1)
    walked: list[str] = []

    def counting(path: str):
        walked.append(path)
        return fingerprint_dir(path)

    monkeypatch.setattr(file_system, "fingerprint_dir", counting)
    source = _source(tmp_path)
    _poll(source)
    offered = _poll(source).complete[1]
    walked.clear()
    for _ in range(5):
        assert _poll(source).complete[1] == offered
    assert walked == []
    # A new file at the top level changes the stamp: walked again, then re-offered.
    (tmp_path / "1" / "fingerprint.pb").write_bytes(b"x")
    assert _poll(source).complete[1] == offered  # changed since the last poll: not yet
    assert _poll(source).complete[1].fingerprint == fingerprint_dir(str(tmp_path / "1"))
    assert walked


def test_set_models_does_not_wait_for_a_poll_in_progress(tmp_path):
    """The event loop calls set_models; a slow poll (NFS) must not hold it up."""
    import threading

    from tfmodel_server.sources import file_system

    savedmodels.export_linear(tmp_path / "m", 1)
    source = _source(tmp_path / "m")
    entered, release = threading.Event(), threading.Event()
    real = file_system.incomplete_reason

    def slow(path: str, *rest: bool):
        entered.set()
        release.wait(30)
        return real(path, *rest)

    file_system.incomplete_reason = slow
    try:
        poller = threading.Thread(target=source.poll)
        poller.start()
        assert entered.wait(30)
        done = threading.Event()
        setter = threading.Thread(
            target=lambda: (source.set_models({"m": str(tmp_path / "m")}), done.set())
        )
        setter.start()
        # set_models returns while the poll is still blocked in the file system.
        assert done.wait(30), "set_models waited for the poll"
        release.set()
        poller.join(30)
        setter.join(30)
    finally:
        release.set()
        file_system.incomplete_reason = real
