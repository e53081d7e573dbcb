"""The stability rule the directory and the object-store sources share (stability.py)."""

from __future__ import annotations

import logging

from tfmodel_server.core.interfaces import ModelSourceState, VersionDir
from tfmodel_server.sources.stability import StabilityRound

FP_A = (("saved_model.pb", 10, 1),)
FP_B = (("saved_model.pb", 12, 2),)


def poll(last_seen, offered, version, reason, fp):
    state = ModelSourceState(name="m", base_path="/b")
    round_ = StabilityRound(state, last_seen, offered)
    got = round_.observe(version, f"/b/{version}", reason, lambda: fp)
    round_.finish()
    return state, round_, got


def test_offered_only_when_the_fingerprint_repeats():
    state, first, got = poll({}, {}, 1, None, FP_A)
    assert got is None and state.pending == {1} and state.complete == {}
    state, second, got = poll(first.seen, first.offered, 1, None, FP_A)
    assert got == VersionDir(1, "/b/1", FP_A) and state.complete == {1: got}
    assert state.pending == set()


def test_a_rewritten_version_keeps_its_last_stable_content():
    stable = VersionDir(1, "/b/1", FP_A)
    state, round_, got = poll({1: FP_A}, {1: stable}, 1, None, FP_B)
    assert got is None and state.complete == {1: stable} and round_.seen == {1: FP_B}


def test_incomplete_is_pending_and_withdraws_an_offered_version(caplog):
    stable = VersionDir(1, "/b/1", FP_A)

    def never() -> tuple:
        raise AssertionError("an incomplete version is not fingerprinted")

    state = ModelSourceState(name="m", base_path="/b")
    round_ = StabilityRound(state, {1: FP_A}, {1: stable})
    with caplog.at_level(logging.WARNING):
        assert round_.observe(1, "/b/1", "no saved_model.pb", never) is None
    round_.finish()
    assert state.pending == {1} and state.complete == {} and round_.seen == {1: ()}
    assert "version 1 is no longer complete: no saved_model.pb" in caplog.text


def test_keep_and_duplicates():
    stable = VersionDir(1, "/b/1", FP_A)
    state = ModelSourceState(name="m", base_path="/b")
    round_ = StabilityRound(state, {}, {1: stable})
    assert 1 not in round_
    assert round_.keep(1) is stable
    assert 1 in round_ and round_.seen == {1: FP_A}
