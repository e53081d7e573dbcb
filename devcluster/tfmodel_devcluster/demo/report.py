"""What the rollout looked like: version runs over time, the summary table, a PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def per_second(loop_result: dict[str, Any]) -> list[tuple[int, dict[str, int]]]:
    """(second, {"1": answers, "2": answers, "rest": n, "failed": n}) in time order."""
    raw = loop_result.get("per_second") or {}
    return sorted((int(s), dict(c)) for s, c in raw.items())


def version_share(counts: dict[str, int], version: str) -> float:
    grpc_total = sum(n for k, n in counts.items() if k.isdigit())
    return counts.get(version, 0) / grpc_total if grpc_total else 0.0


def timeline(loop_result: dict[str, Any], target: str = "2", bucket_s: int = 10) -> list[str]:
    """One line per `bucket_s` seconds: which versions answered the gRPC requests."""
    rows = per_second(loop_result)
    lines = []
    for start in range(0, (rows[-1][0] + 1) if rows else 0, bucket_s):
        merged: dict[str, int] = {}
        for second, counts in rows:
            if start <= second < start + bucket_s:
                for key, n in counts.items():
                    merged[key] = merged.get(key, 0) + n
        versions = sorted(k for k in merged if k.isdigit())
        total = sum(merged[v] for v in versions)
        if not total:
            continue
        share = "  ".join(f"v{v} {100 * merged[v] / total:3.0f}%" for v in versions)
        bar = "#" * round(20 * merged.get(target, 0) / total)
        failed = f"  failed {merged['failed']}" if merged.get("failed") else ""
        lines.append(f"{start:4d}-{start + bucket_s:<4d}s  {share:<18} |{bar:<20}|{failed}")
    return lines


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    rule = "-" * (width + 2) + "+" + "-" * (max(len(v) for _, v in rows) + 2)
    body = [f" {k:<{width}} | {v}" for k, v in rows]
    return "\n".join([rule, *body, rule])


def plot(loop_result: dict[str, Any], path: Path, marks: dict[str, float]) -> Path:
    """A small PNG: per second, how many gRPC answers came from each version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = per_second(loop_result)
    seconds = [s for s, _ in rows]
    versions = sorted({k for _, c in rows for k in c if k.isdigit()}, key=int)
    fig, ax = plt.subplots(figsize=(8, 2.8), dpi=100)
    bottom = [0] * len(rows)
    colors = {"1": "#9e9e9e", "2": "#1f77b4"}
    for version in versions:
        heights = [c.get(version, 0) for _, c in rows]
        ax.bar(seconds, heights, bottom=bottom, width=1.0, label=f"version {version}",
               color=colors.get(version), align="edge")  # fmt: skip
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    failed = [c.get("failed", 0) for _, c in rows]
    if any(failed):
        ax.bar(seconds, failed, bottom=bottom, width=1.0, color="red", label="failed", align="edge")
    top = ax.get_ylim()[1]
    for i, (label, at) in enumerate(marks.items()):
        ax.axvline(at, color="black", linestyle=":", linewidth=1)
        # Staggered: marks a few seconds apart must not print over each other.
        ax.text(at, top * (0.97 - 0.1 * (i % 3)), f" {label}", fontsize=7, va="top")
    ax.set_xlabel("seconds since the client started")
    ax.set_ylabel("gRPC answers / s")
    ax.set_title("Which version answered `stable` during the canary rollout", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # off the bars
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
