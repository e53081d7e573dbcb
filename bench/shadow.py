"""Throughput with request logging at 10 % and shadow traffic at 10 %, side by side (issue 23).

Four tfmodel-server processes serve the same small model (x f32[1,784] -> 10 scores, a
3 KB request) as versions 1 (`stable`) and 2 (`canary`, identical); the clients call the
`stable` label. One server does neither; one logs 10 % of the requests (logging_config);
one shadows 10 % of them on the canary (shadowPercent 10 in --traffic_split_file); one
does both. The same closed-loop gRPC load (CLIENTS threads, batch-1 Predict) runs on each
in rotating rounds, so drift on this shared machine hits all of them; the report is each
median throughput's ratio to the plain server's, the server CPU time per answered
request (read from /proc around each round: less sensitive to the neighbours' load than
throughput), and the shadow runs the server counted.

    python -m bench.shadow [--rounds 4] [--seconds 8] [--clients 4] [--percent 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.request_logging import export_model, load, start_server

METRICS = "/monitoring/prometheus/metrics"
CONFIG = """model_config_list {{ config {{
  name: "m" base_path: "{base}" model_platform: "tensorflow"
  model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
  version_labels {{ key: "stable" value: 1 }}
  version_labels {{ key: "canary" value: 2 }}
  {logging}
}} }}
"""


def start(work: Path, name: str, logging: str, shadow: float) -> tuple[subprocess.Popen, int, int]:
    config = work / f"{name}.config"
    config.write_text(CONFIG.format(base=work / "model", logging=logging))
    split = work / f"{name}.split.json"
    split.write_text(json.dumps({"models": {"m": {"canaryPercent": 0, "shadowPercent": shadow}}}))
    (work / "monitoring.config").write_text(
        f'prometheus_config {{ enable: true path: "{METRICS}" }}\n'
    )
    flags = [
        f"--model_config_file={config}",
        f"--traffic_split_file={split}",
        f"--monitoring_config_file={work / 'monitoring.config'}",
        f"--request_log_dir={work / 'logs' / name}",
    ]
    return start_server(work, name, flags)


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time so far (/proc/PID/stat utime, stime)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def shadow_counts(rest_port: int) -> tuple[float, float, float]:
    """(shadow runs, of which OK, shed) from the server's metrics page."""
    text = requests.get(f"http://127.0.0.1:{rest_port}{METRICS}", timeout=10).text
    ran = ok = shed = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == ":tfmodel:shadow_request_count_total":
                ran += s.value
                ok += s.value if s.labels.get("status") == "OK" else 0.0
            elif s.name == ":tfmodel:shadow_shed_total":
                shed += s.value
    return ran, ok, shed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--percent", type=float, default=10.0)
    args = parser.parse_args()
    rate = args.percent / 100.0
    logging = (
        f"logging_config {{ sampling_config {{ sampling_rate: {rate} }} "
        'log_collector_config { filename_prefix: "m" } }'
    )
    kinds = {
        "off": ("", 0.0),
        "log": (logging, 0.0),
        "shadow": ("", args.percent),
        "both": (logging, args.percent),
    }
    with tempfile.TemporaryDirectory(prefix="bench-shadow-") as tmp:
        work = Path(tmp)
        export_model(work / "model")
        shutil.copytree(work / "model" / "1", work / "model" / "2")
        servers = {name: start(work, name, *kind) for name, kind in kinds.items()}
        rates: dict[str, list[float]] = {name: [] for name in kinds}
        cpu = dict.fromkeys(kinds, 0.0)  # server CPU seconds under load
        served = dict.fromkeys(kinds, 0.0)  # requests answered under load
        names = list(kinds)
        try:
            for r in range(args.rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    proc, grpc_port, _rest = servers[name]
                    before = cpu_seconds(proc.pid)
                    rates[name].append(load(grpc_port, args.seconds, args.clients, "stable"))
                    cpu[name] += cpu_seconds(proc.pid) - before
                    served[name] += rates[name][-1] * args.seconds
                    print(f"round {r + 1} {name:>6}: {rates[name][-1]:8.1f} req/s", flush=True)
            counts = {name: shadow_counts(servers[name][2]) for name in ("shadow", "both")}
        finally:
            for proc, _g, _r in servers.values():
                proc.terminate()
                proc.wait(30)
    off = statistics.median(rates["off"])
    off_cpu = cpu["off"] / served["off"]
    print(
        f"median req/s (ratio to off) and server CPU per request (ratio to off), "
        f"{args.clients} clients, {args.percent:g} %:"
    )
    for name in kinds:
        median = statistics.median(rates[name])
        per = cpu[name] / served[name]
        print(
            f"  {name:>6}: {median:8.1f}  ({median / off:.3f})   "
            f"{per * 1e6:7.1f} us CPU/request  ({per / off_cpu:.3f})"
        )
    for name, (ran, ok, shed) in counts.items():
        print(f"  {name:>6}: {ran:.0f} shadow runs ({ok:.0f} OK), {shed:.0f} shed")


if __name__ == "__main__":
    main()
