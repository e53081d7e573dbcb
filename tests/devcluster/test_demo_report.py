"""The demo's rollout report: the per-10-second timeline, the table and the PNG."""

from __future__ import annotations

from pathlib import Path

from tfmodel_devcluster.demo import report

# 20 s of version 1, 20 s of a 30% canary, then version 2 only (REST answers carry no version).
LOOP = {
    "per_second": {
        str(s): {"1": 10, "rest": 10}
        if s < 20
        else ({"1": 7, "2": 3, "rest": 10} if s < 40 else {"2": 10})
        for s in range(50)
    }
}


def test_timeline_shares_per_10_seconds():
    lines = report.timeline(LOOP)
    assert len(lines) == 5
    assert "v1 100%" in lines[0] and "v2" not in lines[0]
    assert "v1  70%" in lines[2] and "v2  30%" in lines[2] and "|######" in lines[2]
    assert "v2 100%" in lines[4] and "|" + "#" * 20 + "|" in lines[4]


def test_timeline_shows_failures():
    lines = report.timeline({"per_second": {"0": {"1": 5, "failed": 2}}})
    assert lines[0].endswith("failed 2")


def test_table_aligns_columns():
    text = report.table([("failed requests", "0"), ("pod restarts", "0")])
    rows = text.splitlines()
    assert rows[1] == " failed requests | 0" and rows[2] == " pod restarts    | 0"


def test_plot_writes_a_png(tmp_path: Path):
    png = report.plot(LOOP, tmp_path / "rollout.png", {"stable: 2": 20.0})
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
