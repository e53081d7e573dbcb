"""The canary analysis' per-pod parse cost: prometheus_client.parser (promtext.model_figures,
filtered to the two request families of one model) against the regex scan it replaced, on one
server page (ServingMetrics' render with 2 versions x 2 entrypoints x 3 statuses x 4 latencies).

    python -m bench.promtext_parse

Prints the min of 7 interleaved runs of each (ms per pod scrape) and their ratio. The regex
scan is the operator's promtext.py before the parser (kept here only as the yardstick).
"""

from __future__ import annotations

import math
import re
import time

import grpc
from tfmodel_operator.promtext import model_figures
from tfmodel_server.monitoring.metrics import ServingMetrics

_SAMPLE = re.compile(r"^(?P<name>[^\s{]+)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def regex_scan(text: str, model: str, version: int) -> tuple[float, float, dict[float, float]]:
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None or match["name"] not in (
            ":tfmodel:request_count_total",
            ":tfmodel:request_latency_bucket",
        ):
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        if labels.get("model_name") != model or labels.get("version") != str(version):
            continue
        value = float(match["value"])
        if match["name"] == ":tfmodel:request_count_total":
            requests += value
            errors += value if labels.get("status", "OK") != "OK" else 0.0
        else:
            bound = math.inf if labels.get("le") == "+Inf" else float(labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + value
    return requests, errors, buckets


def page() -> str:
    metrics = ServingMetrics()
    codes = (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL)
    for version in (1, 2):
        for entrypoint in ("GRPC", "REST"):
            for code in codes:
                for latency_us in (500, 2000, 9000, 40_000):
                    metrics.record_request(
                        "lin", "predict", entrypoint, code, latency_us, version, "serving_default"
                    )
    return metrics.render().decode()


def main(rounds: int = 7, n: int = 50) -> None:
    text = page()
    assert model_figures(text, "lin")[2].requests == regex_scan(text, "lin", 2)[0]
    old, new = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            regex_scan(text, "lin", 1)
            regex_scan(text, "lin", 2)
        old.append((time.perf_counter() - start) / n)
        start = time.perf_counter()
        for _ in range(n):
            model_figures(text, "lin")
        new.append((time.perf_counter() - start) / n)
    lines = len(text.splitlines())
    print(
        f"{lines}-line page: regex scan {min(old) * 1e3:.2f} ms, parser {min(new) * 1e3:.2f} ms "
        f"per pod (min of {rounds}); parser/regex {min(new) / min(old):.2f}"
    )


if __name__ == "__main__":
    main()
