"""bench/summary.py: the percentile and /proc helpers the issue-21 benches share."""

from __future__ import annotations

import math
import os

from bench import summary


def test_pct_counts_a_failed_call_as_the_slowest() -> None:
    values = [1.0] * 99 + [math.inf]
    assert summary.pct(values, 50) == 1.0
    assert summary.pct(values, 100) == math.inf
    assert math.isnan(summary.pct([], 99))


def test_ratio_is_nan_without_a_denominator() -> None:
    assert summary.ratio(3.0, 2.0) == 1.5
    assert math.isnan(summary.ratio(3.0, 0.0))
    assert math.isnan(summary.ratio(3.0, float("nan")))


def test_peak_follows_an_allocation_and_resets() -> None:
    pid = os.getpid()
    summary.reset_peak(pid)
    before = summary.rss_bytes(pid)
    block = bytearray(64 << 20)  # touched pages: zero-filled by bytearray
    block[::4096] = b"\1" * len(block[::4096])
    assert summary.peak_bytes(pid) - before >= 60 << 20
    del block
    summary.reset_peak(pid)
    assert summary.peak_bytes(pid) < before + (60 << 20)
