"""RSS, /v1/models and /metrics size over version churn, per memory allocator.

For each allocator available in this image (glibc malloc as is, glibc with
MALLOC_ARENA_MAX=2, jemalloc and tcmalloc when their Debian libraries are
installed), starts a real tfmodel-server, publishes VERSIONS versions one after
another (policy latest 1, old dirs deleted as a pipeline would) and reports
RSS after WARMUP versions and at the end.

    python -m bench.churn_memory [--versions 100] [--warmup 20] [--only glibc,jemalloc]
                                 [--megabytes 64]

tensorflow/serving#1664: TF Serving's RSS grows on each reload with glibc
malloc; its users preload jemalloc or tcmalloc. This measures the same here.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
import time
from pathlib import Path

from bench import big_model
from bench.neighbour_load import TEMPLATES
from tests.server import churn

ALLOCATOR_LIBS = {
    "jemalloc": "/usr/lib/*/libjemalloc.so.2",
    "tcmalloc": "/usr/lib/*/libtcmalloc_minimal.so.4",
}


def allocators() -> dict[str, dict[str, str]]:
    """name -> environment for the server process."""
    found: dict[str, dict[str, str]] = {"glibc": {}, "glibc-arena2": {"MALLOC_ARENA_MAX": "2"}}
    for name, pattern in ALLOCATOR_LIBS.items():
        libs = sorted(glob.glob(pattern))
        if libs:
            found[name] = {"LD_PRELOAD": libs[0]}
    return found


def measure(name: str, env: dict[str, str], versions: int, warmup: int, megabytes: int) -> dict:
    template = None
    if megabytes > 0:
        template = big_model.template(TEMPLATES, megabytes)
    with tempfile.TemporaryDirectory(prefix=f"churn-{name}-") as tmp:
        start = time.monotonic()
        server, base, staging = churn.start_server(
            Path(tmp),
            keep_latest=1,
            extra_args=("--max_retained_unloaded_versions=2",),
            env=env,
            template=template,
        )
        try:
            run = churn.churn(server, base, staging, versions, template=template)
        finally:
            server.stop()
        first, last = run.at(warmup), run.samples[-1]
        return {
            "allocator": name,
            "model_mb": megabytes or "tiny",
            "env": env,
            "versions": versions,
            "rss_after_warmup_mb": round(first.rss / 2**20, 1),
            "rss_end_mb": round(last.rss / 2**20, 1),
            "rss_growth_pct": round(100 * run.rss_growth(warmup), 2),
            "v1_models_bytes": [first.models_bytes, last.models_bytes],
            "metrics_bytes": [first.metrics_bytes, last.metrics_bytes],
            "versions_listed_end": last.versions_listed,
            "seconds": round(time.monotonic() - start, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--only", default="", help="comma-separated allocator names")
    parser.add_argument(
        "--megabytes", type=int, default=0, help="variables per version (0: a tiny model)"
    )
    args = parser.parse_args()
    chosen = set(filter(None, args.only.split(",")))
    for name, env in allocators().items():
        if chosen and name not in chosen:
            continue
        print(
            json.dumps(measure(name, env, args.versions, args.warmup, args.megabytes)), flush=True
        )


if __name__ == "__main__":
    sys.exit(main())
