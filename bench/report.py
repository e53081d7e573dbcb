"""docs/benchmarks.md and its PNG plot from one bench.run result."""

from __future__ import annotations

import math
from pathlib import Path

from bench import results as names

ANALYSIS = Path(__file__).resolve().parent / "analysis.md"
ORDER = (names.INPROC, names.NAIVE, names.GRPC_OFF, names.GRPC_ON, names.REST_OFF, names.REST_ON)


def _lookup(data: dict, target: str, concurrency: int) -> dict | None:
    for r in data["results"]:
        if r["target"] == target and r["concurrency"] == concurrency:
            return r
    return None


def _loadavgs(m: dict) -> list[float]:
    return m.get("loadavg_at_end") or [m.get("loadavg_1m_at_end", float("nan"))]


def _loadavg(m: dict) -> str:
    return " / ".join(f"{x:.2f}" for x in _loadavgs(m))


def _busy(m: dict) -> str:
    """The server and its load generator alone keep about 2 runnable; more is other work."""
    la = _loadavgs(m)
    if not math.isnan(la[-1]) and la[-1] <= (m.get("cores") or 2) + 0.5:
        return "no other work on the machine"
    return "the machine was shared, so absolute numbers are noisy"


def _levels(data: dict) -> list[int]:
    return sorted({r["concurrency"] for r in data["results"]})


def _targets_in_order(data: dict) -> list[str]:
    seen = [r["target"] for r in data["results"] if "during swap" not in r["target"]]
    return [t for t in ORDER if t in seen] + [t for t in dict.fromkeys(seen) if t not in ORDER]


def _cores(r: dict, key: str) -> str:
    value = r.get(key)
    if value is None or math.isnan(value) or not r["duration_s"]:
        return "n/a"
    return f"{value / r['duration_s']:.2f}"


def _per_row_us(r: dict) -> str:
    value = r.get("server_cpu_s")
    if value is None or math.isnan(value) or not r["ok"]:
        return "n/a"
    return f"{value / r['ok'] * 1e6:.0f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def _fmt(x: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:{spec}}{suffix}"


def targets(data: dict) -> list[tuple[str, str, str, str]]:
    """(target, goal, measured, verdict) rows."""

    def rows(target: str, c: int = 64) -> float | None:
        r = _lookup(data, target, c)
        return r["rows_per_s"] if r else None

    def p99(target: str, c: int = 64) -> float | None:
        r = _lookup(data, target, c)
        return r["p99_ms"] if r else None

    inproc_best = max(
        (r["rows_per_s"] for r in data["results"] if r["target"] == names.INPROC), default=None
    )
    out = []

    def add(name: str, goal: str, value: float | None, ok: bool | None, unit: str = "x") -> None:
        verdict = "n/a" if value is None else ("met" if ok else "missed")
        out.append((name, goal, _fmt(value, ".2f", unit), verdict))

    v = _ratio(rows(names.GRPC_ON), inproc_best)
    add("gRPC batched (c=64) / best in-process per-request rate", ">= 1.5x", v, v and v >= 1.5)
    v = _ratio(rows(names.GRPC_ON), rows(names.NAIVE))
    add("gRPC batched (c=64) / naive HTTP (c=64)", ">= 3x", v, v and v >= 3)
    for rest, grpc_label in ((names.REST_OFF, names.GRPC_OFF), (names.REST_ON, names.GRPC_ON)):
        v = _ratio(rows(rest), rows(grpc_label))
        add(f"{rest} / {grpc_label} (c=64)", ">= 0.5x", v, v and v >= 0.5)
        v = p99(rest)
        add(f"{rest} p99 (c=64)", "<= 20 ms", v, v is not None and v <= 20, " ms")
    for label in _targets_in_order(data):
        base = label.split(", --workers")[0]
        if base == label:
            continue
        v = _ratio(rows(label), rows(base))
        verdict = "n/a" if v is None else ("pays" if v >= 1.1 else "does not pay")
        out.append(
            (f"{label} / 1 worker (c=64)", "> 1x (issue 3 item 3)", _fmt(v, ".2f", "x"), verdict)
        )
    swap = data.get("swap") or {}
    v = _ratio(swap.get("p99_during_ms"), swap.get("p99_steady_ms"))
    add("p99 during a version swap / steady-state p99 (c=64)", "<= 2x", v, v and v <= 2)
    return out


# -- issue 11: peers, limits, the compute-bound regime ---------------------------------------
def best_rate(data: dict, labels, concurrency: int = 64) -> tuple[str | None, float | None]:
    """(label, rows/s) of the fastest of `labels` at `concurrency` (only runs without errors
    count as a peer's best: a fast run that failed requests is not a result)."""
    best: tuple[str | None, float | None] = (None, None)
    for label in labels:
        r = _lookup(data, label, concurrency)
        if r is None or r["ok"] < r["requests"]:
            continue
        if best[1] is None or r["rows_per_s"] > best[1]:
            best = (label, r["rows_per_s"])
    return best


def _labels(data: dict, prefix: str, peer: bool, protocol: str) -> list[str]:
    """Labels of one model case (prefix), peers or tfmodel, for gRPC or REST."""
    out = []
    for label in dict.fromkeys(r["target"] for r in data["results"]):
        rest = label[len(prefix) :] if label.startswith(prefix) else None
        if rest is None or (prefix == "" and rest.startswith(names.MLP)):
            continue
        is_peer = rest.startswith(("MLServer", "KServe"))
        # One server process each: tfmodel's --workers runs are compared separately.
        if is_peer != peer or "during swap" in rest or "--workers" in rest:
            continue
        if (protocol in rest) if peer else rest.startswith(f"tfmodel {protocol}"):
            out.append(label)
    return out


def peer_ratios(
    data: dict, prefix: str = ""
) -> list[tuple[str, str, float | None, str, float | None, float | None]]:
    """Per protocol: (protocol, best tfmodel label, its rows/s, best peer label, its rows/s, ratio)."""
    out = []
    for protocol, peer_protocol in (("gRPC", "gRPC"), ("REST", "REST")):
        ours = best_rate(data, _labels(data, prefix, False, protocol))
        theirs = best_rate(data, _labels(data, prefix, True, peer_protocol))
        out.append((protocol, ours[0], ours[1], theirs[0], theirs[1], _ratio(ours[1], theirs[1])))
    return out


def mlp_limit(data: dict) -> float | None:
    best = (data.get("mlp_limit") or {}).get("best")
    return best["rows_per_s"] if best else None


def cpu_bound(data: dict, label: str) -> float | None:
    """rows/s the machine's cores allow for a CNN target: cores / (model + protocol CPU per row).

    Model CPU per row comes from the in-process limit's best point; protocol CPU per row from
    the same tfmodel target on the demo model (whose compute is negligible) in this run. A
    server spends both on the same cores, so it cannot pass this, whatever it batches.
    """
    best = (data.get("mlp_limit") or {}).get("best")
    demo = _lookup(data, label, 64)
    cores = (data.get("machine") or {}).get("cores")
    if not best or not demo or not cores or not demo["ok"] or not best.get("cpu_cores"):
        return None
    model_s = best["cpu_cores"] / best["rows_per_s"]
    protocol_s = demo["server_cpu_s"] / demo["ok"]
    if math.isnan(protocol_s):
        return None
    return cores / (model_s + protocol_s)


def _issue11_sections(data: dict) -> list[str]:
    lines: list[str] = []
    versions = data.get("peer_versions") or {}
    lines += [
        "",
        "## tfmodel and the Python peers (issue 11)",
        "",
        "Same model, same batch-1 request, same ghz/h2load settings, 64 in flight. Peers: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + " (each in its own venv under `~/.cache/tfmodel/bench-venvs`, same TensorFlow; runtime code in"
        " `bench/peers/`). Protocols differ: tfmodel speaks TF Serving's `PredictionService` (gRPC) and"
        " v1 REST (`instances`); MLServer and KServe speak the v2 / Open Inference Protocol"
        " (`inference.GRPCInferenceService/ModelInfer`, `POST /v2/models/M/infer`), KServe also v1 REST."
        " The v2 gRPC request carries the row in `contents.fp32_contents`; tfmodel's in `tensor_content`."
        " MLServer runs with `parallel_workers: 0` (model in the server process, like tfmodel's one"
        " worker); adaptive batching: `max_batch_size 64`, `max_batch_time 1 ms`.",
        "",
    ]
    for title, prefix in (("demo model (64 -> 10 softmax)", ""), ("compute-bound CNN", names.MLP)):
        lines += [
            f"**{title}**",
            "",
            "| protocol | best tfmodel | rows/s | best peer | rows/s | tfmodel / best peer |",
            "|---|---|---:|---|---:|---:|",
        ]
        for protocol, ol, orate, pl, prate, ratio in peer_ratios(data, prefix):
            lines.append(
                f"| {protocol} | {ol or 'n/a'} | {_fmt(orate, '.0f')} | {pl or 'n/a'} | "
                f"{_fmt(prate, '.0f')} | {_fmt(ratio, '.2f', 'x')} |"
            )
        if prefix == "":
            for label in _targets_in_order(data):
                if "--workers" not in label:
                    continue
                protocol = "gRPC" if "gRPC" in label else "REST"
                peer = next(row for row in peer_ratios(data) if row[0] == protocol)
                r = _lookup(data, label, 64)
                if r:
                    ratio = _ratio(r["rows_per_s"], peer[4])
                    lines.append(
                        f"| {protocol}, more processes | {label} | {r['rows_per_s']:.0f} | {peer[3] or 'n/a'}"
                        f" (one process) | {_fmt(peer[4], '.0f')} | {_fmt(ratio, '.2f', 'x')} |"
                    )
        lines.append("")
    ceiling = _lookup(data, "bare grpc.aio echo", 64)
    hop = _lookup(data, "bare grpc.aio echo + one executor hop", 64)
    lines += [
        "## The limits (same run)",
        "",
        "| tfmodel target (c=64) | rows/s | / grpc.aio echo ceiling | / echo + one executor hop |",
        "|---|---:|---:|---:|",
    ]
    for label in (names.GRPC_OFF, names.GRPC_ON):
        r = _lookup(data, label, 64)
        rate = r["rows_per_s"] if r else None
        lines.append(
            f"| {label} | {_fmt(rate, '.0f')} | "
            f"{_fmt(_ratio(rate, ceiling and ceiling['rows_per_s']), '.2f', 'x')} | "
            f"{_fmt(_ratio(rate, hop and hop['rows_per_s']), '.2f', 'x')} |"
        )
    lines += [
        "",
        "The echo servers are `bench/grpc_ceiling.py` (a bare grpc.aio PredictionService returning an"
        " empty PredictResponse, then the same with one `run_in_executor` hop per request), driven by the"
        " same ghz at 64 in flight in this run.",
        "",
    ]
    limit = mlp_limit(data)
    lim = data.get("mlp_limit") or {}
    lines += [
        "## Compute-bound regime",
        "",
        f"Model: `bench/compute_model.py`, {data.get('mlp_model', 'CNN')}, fixed random weights, signature"
        " `predict` (input `x`, output `y`). Its limit is the best in-process batched throughput over"
        " batch sizes and 1-2 calling threads, measured in this run (`bench/inprocess_batched.py`):",
        "",
        "| batch | threads | rows/s | ms per call |",
        "|---:|---:|---:|---:|",
    ]
    for p in lim.get("points", []):
        lines.append(
            f"| {p['batch']} | {p['threads']} | {p['rows_per_s']:.0f} | {p['ms_per_call']:.2f} |"
        )
    best = lim.get("best")
    if best:
        lines += [
            "",
            f"Limit: **{best['rows_per_s']:.0f} rows/s** (batch {best['batch']}, {best['threads']} threads).",
        ]
    lines += [
        "",
        "| target (c=64) | rows/s | p99 ms | errors | / limit | CPU bound rows/s (/ limit) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label in dict.fromkeys(r["target"] for r in data["results"]):
        if not label.startswith(names.MLP):
            continue
        r = _lookup(data, label, 64)
        if r:
            short = label[len(names.MLP) :]
            bound = cpu_bound(data, short) if short.startswith("tfmodel") else None
            bound_cell = (
                "" if bound is None else f"{bound:.0f} ({_fmt(_ratio(bound, limit), '.2f', 'x')})"
            )
            lines.append(
                f"| {short} | {r['rows_per_s']:.0f} | {r['p99_ms']:.2f} | "
                f"{r['requests'] - r['ok']} | {_fmt(_ratio(r['rows_per_s'], limit), '.2f', 'x')} |"
                f" {bound_cell} |"
            )
    lines += [
        "",
        "CPU bound: the machine's cores divided by the CPU one row costs a tfmodel server — the"
        " model's share (in-process best point: its CPU cores over its rows/s) plus the protocol's"
        " (the same tfmodel target's server CPU per row on the demo model, whose compute is"
        " negligible). A server shares its cores between the two, so its rows/s stay below this"
        " (further below while the load generator also runs here); where the bound is under 0.9x"
        " the limit, the 0.9x target is out of reach on this machine for that protocol.",
    ]
    return lines


def issue11_targets(data: dict) -> list[tuple[str, str, str, str]]:
    out = []

    def add(name: str, goal: str, value: float | None, ok: bool | None) -> None:
        verdict = "n/a" if value is None else ("met" if ok else "missed")
        out.append((name, goal, _fmt(value, ".2f", "x"), verdict))

    for protocol, _, _, _, _, ratio in peer_ratios(data):
        add(
            f"tfmodel {protocol} / best peer {protocol} (c=64)",
            ">= 4x",
            ratio,
            ratio and ratio >= 4,
        )
    ceiling = _lookup(data, "bare grpc.aio echo", 64)
    on = _lookup(data, names.GRPC_ON, 64)
    v = _ratio(on and on["rows_per_s"], ceiling and ceiling["rows_per_s"])
    add("tfmodel gRPC batched / grpc.aio echo ceiling (c=64)", ">= 0.95x", v, v and v >= 0.95)
    limit = mlp_limit(data)
    for label in (names.GRPC_ON, names.REST_ON):
        r = _lookup(data, names.MLP + label, 64)
        v = _ratio(r and r["rows_per_s"], limit)
        add(f"{names.MLP}{label} / in-process batched limit (c=64)", ">= 0.9x", v, v and v >= 0.9)
    for rest, grpc_label in ((names.REST_OFF, names.GRPC_OFF), (names.REST_ON, names.GRPC_ON)):
        a, b = _lookup(data, rest, 64), _lookup(data, grpc_label, 64)
        v = _ratio(a and a["p99_ms"], b and b["p99_ms"])
        add(f"{rest} p99 / {grpc_label} p99 (c=64)", "<= 2x", v, v is not None and v <= 2)
    return out


def plot(data: dict, path: Path) -> None:
    """Left: the demo model at 64 in flight, every target; right: the CNN against its limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def bars(ax, labels, limit=None, limit_name=""):
        rates = []
        for label in labels:
            r = _lookup(data, label, 64)
            rates.append(r["rows_per_s"] if r else 0.0)
        colors = [
            "tab:orange" if ("MLServer" in x or "KServe" in x) else
            "tab:gray" if ("echo" in x or "in-process" in x or "naive" in x) else "tab:blue"
            for x in labels
        ]  # fmt: skip
        ax.barh(range(len(labels)), rates, color=colors)
        ax.set_yticks(range(len(labels)), [x.removeprefix(names.MLP) for x in labels], fontsize=7)
        ax.invert_yaxis()
        if limit:
            ax.axvline(limit, color="tab:red", linestyle="--", label=limit_name)
            ax.legend(fontsize=7)
        ax.grid(axis="x", alpha=0.3)

    demo = [t for t in _targets_in_order(data) if not t.startswith(names.MLP)]
    mlp = [t for t in _targets_in_order(data) if t.startswith(names.MLP)]
    fig, (ax_demo, ax_mlp) = plt.subplots(1, 2, figsize=(14, 0.9 + 0.28 * max(len(demo), len(mlp))))
    bars(ax_demo, demo)
    ax_demo.set_title(
        "demo model, 64 in flight: rows/s (blue tfmodel, orange peers, grey limits)", fontsize=9
    )
    limit = mlp_limit(data)
    bars(ax_mlp, mlp, limit, f"in-process batched limit {limit:.0f} rows/s" if limit else "")
    ax_mlp.set_title("compute-bound CNN, 64 in flight: rows/s", fontsize=9)
    m = data["machine"]
    fig.suptitle(
        f"{m['cores']} cores shared with the load generator (1-min load average at end"
        f" {m.get('loadavg_1m_at_end', float('nan')):.1f})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(data: dict, out: Path) -> None:
    png = out.with_suffix(".png")
    plot(data, png)
    m = data["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py`; every number below was measured by this command on the",
        "machine described, in one run. Do not edit the tables by hand: re-run the command.",
        "",
        "```",
        f".venv/bin/{data['command']}",
        "```",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, no GPU; Python {m['python']}, TensorFlow {m['tensorflow']};"
        f" tfmodel commit `{m['commit']}`; {m['date']}; whole run {data['elapsed_s']:.0f} s;"
        f" load average at the end {_loadavg(m)} (1/5/15 min; {_busy(m)}); the ratios compare"
        " targets measured side by side in this one run.",
        "- Model: the demo's softmax classifier (`tfmodel-demo export`, 64 -> 10), signature `predict_images`.",
        "- Request stream: the same batch-1 request (one held-out digit) for every target; gRPC `PredictRequest`",
        '  with `tensor_content`, REST/naive `{"signature_name": "predict_images", "instances": [[64 floats]]}`.',
        "- Load: fixed request counts at "
        + ", ".join(map(str, _levels(data)))
        + " in flight; ghz (gRPC, one HTTP/2 connection) and h2load",
        "  (HTTP/1.1 keep-alive, one connection per client) run on the same 2 cores as the server, on 127.0.0.1.",
        "  Latencies are per request as the load generator saw them; rows/s = successful requests / wall time.",
        "- In-process: threads calling the loaded signature once per request (no network, no serialisation).",
        "- Naive HTTP: `bench/naive_server.py` (stdlib `ThreadingHTTPServer`, `json`, one `predict` per request),",
        "  given TCP_NODELAY and a 256 listen backlog so it is not penalised by Nagle's 40 ms or SYN drops.",
        "- Batching on: `--enable_batching --batching_parameters_file` with:",
        "",
        "```",
        data["batching_parameters"].rstrip(),
        "```",
        "",
        f"![throughput and p99]({png.name})",
        "",
        "## Results",
        "",
        "| target | in flight | requests | ok | rows/s | p50 ms | p99 ms | server CPU (cores) | server CPU µs/row | load-gen CPU (cores) | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for target in _targets_in_order(data) + list(data.get("unavailable", {})):
        if target in data.get("unavailable", {}):
            lines.append(
                f"| {target} | - | - | - | n/a | n/a | n/a | {data['unavailable'][target]} |"
            )
            continue
        for c in _levels(data):
            r = _lookup(data, target, c)
            if r:
                lines.append(
                    f"| {target} | {c} | {r['requests']} | {r['ok']} | {r['rows_per_s']:.0f} | "
                    f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {_cores(r, 'server_cpu_s')} | {_per_row_us(r)} | "
                    f"{_cores(r, 'client_cpu_s')} | {r['note']} |"
                )
    lines += _issue11_sections(data)
    lines += [
        "",
        "## Targets (issue 11)",
        "",
        "| target | goal | measured | verdict |",
        "|---|---|---:|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in issue11_targets(data)]
    lines += [
        "",
        "## Targets (issue 3)",
        "",
        "| target | goal | measured | verdict |",
        "|---|---|---:|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets(data)]
    swap = data.get("swap") or {}
    lines += ["", "## Version swap under load", ""]
    if "error" in swap or not swap:
        lines.append(f"Not measured: {swap.get('error', 'tfmodel gRPC was not available')}.")
    else:
        lines += [
            f"{swap['label']}, 64 in flight, {swap['requests']} requests. {SWAP_TEXT}",
            "",
            "| | requests | p99 ms |",
            "|---|---:|---:|",
            f"| steady state (the c=64 run above) | - | {swap['p99_steady_ms']:.2f} |",
            f"| same run, finished before the copy started | {swap['n_before']} | {_fmt(swap['p99_before_ms'])} |",
            f"| in flight during the swap window | {swap['n_during']} | {_fmt(swap['p99_during_ms'])} |",
            f"| same run, started after the old version unloaded | {swap['n_after']} | {_fmt(swap['p99_after_ms'])} |",
            "",
            f"Copy took {swap['copy_s']:.2f} s; the new version was AVAILABLE {swap['to_available_s']:.2f} s and the",
            f"old one unloaded {swap['to_old_unloaded_s']:.2f} s after the copy started;"
            f" {swap['failed']} requests failed during the whole run.",
        ]
    if ANALYSIS.exists():
        lines += ["", ANALYSIS.read_text().rstrip()]
    out.write_text("\n".join(lines) + "\n")


SWAP_TEXT = (
    "Two seconds into the run the version directory is copied to `<N+1>` with a plain recursive copy; "
    "the swap window runs from the start of the copy until GetModelStatus no longer shows the old "
    "version AVAILABLE."
)
