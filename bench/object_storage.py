"""Models in a bucket: seconds from an upload's last byte to every server serving the
version, and bytes each server fetched per version (target: each version once).

Runs SeaweedFS (devcluster/build/go-build.sh seaweedfs: built from source, cached) on 127.0.0.1
and N tfmodel-server processes on s3://, each with its own --model_cache_dir (N pods).
Every version carries a padding asset so a download takes measurable time. Then one
server restarts on its cache: bytes fetched must be 0 (the store's GetObject counter).

    python -m bench.object_storage --servers 2 --versions 4 --poll 1 --padding_mb 32
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.objectstore.seaweed import SeaweedS3, build  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.server.savedmodels import export_linear  # noqa: E402

BUCKET = "models"
PREFIX = "bench/linear"


def start_server(
    store: SeaweedS3, cache: Path, poll: float, log: Path
) -> tuple[subprocess.Popen, int]:
    rest = free_port()
    env = store.env(TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "tfmodel_server",
            f"--port={free_port()}", f"--rest_api_port={rest}", "--bind_address=127.0.0.1",
            "--model_name=linear", f"--model_base_path=s3://{BUCKET}/{PREFIX}",
            f"--file_system_poll_wait_seconds={poll}", f"--model_cache_dir={cache}",
            "--s3_addressing_style=path",
        ],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    return proc, rest


def answer(rest: int) -> float | None:
    try:
        r = requests.post(
            f"http://127.0.0.1:{rest}/v1/models/linear:predict",
            json={"instances": [1.0]},
            timeout=5,
        )
    except requests.RequestException:
        return None
    return r.json()["predictions"][0] if r.status_code == 200 else None


def cache_status(rest: int) -> dict:
    return (
        requests.get(f"http://127.0.0.1:{rest}/v1/cache", timeout=5)
        .json()["models"]
        .get("linear", {})
    )


def export_version(root: Path, version: int, padding_mb: int) -> Path:
    """y = version * x + 2 (so the answer names the version), plus a padding asset."""
    path = export_linear(root, version, a=float(version), b=2.0)
    extra = path / "assets.extra"
    extra.mkdir(exist_ok=True)
    (extra / "padding.bin").write_bytes(os.urandom(padding_mb << 20))
    return path


def upload_complete_last(cli, local: Path, key_prefix: str) -> float:
    """Upload the variables and assets, then saved_model.pb; returns time of the last byte."""
    files = sorted(p for p in local.rglob("*") if p.is_file() and p.name != "saved_model.pb")
    for path in [*files, local / "saved_model.pb"]:
        cli.upload_file(str(path), BUCKET, f"{key_prefix}/{path.relative_to(local).as_posix()}")
    return time.monotonic()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", type=int, default=2)
    ap.add_argument("--versions", type=int, default=4, help="new versions uploaded after v1")
    ap.add_argument("--poll", type=float, default=1.0, help="--file_system_poll_wait_seconds")
    ap.add_argument("--padding_mb", type=int, default=32)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "object_storage.json"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tfmodel-bench-s3-"))
    weed = build()
    with SeaweedS3(weed) as store:
        cli = store.client()
        cli.create_bucket(Bucket=BUCKET)
        upload_complete_last(cli, export_version(work / "local", 1, args.padding_mb), f"{PREFIX}/1")
        servers = []
        for i in range(args.servers):
            proc, rest = start_server(
                store, work / f"cache-{i}", args.poll, work / f"server-{i}.log"
            )
            servers.append((proc, rest))
        deadline = time.monotonic() + 300
        while any(answer(rest) != 3.0 for _, rest in servers):
            if time.monotonic() > deadline:
                raise SystemExit(f"servers did not serve version 1; logs in {work}")
            time.sleep(0.2)

        rows = []
        for version in range(2, args.versions + 2):
            local = export_version(work / "local", version, args.padding_mb)
            gets_before = store.get_object_count(BUCKET)
            sent_before = store.sent_bytes(BUCKET)
            last_byte = upload_complete_last(cli, local, f"{PREFIX}/{version}")
            served_after: list[float | None] = [None] * len(servers)
            expected = float(version) + 2.0
            while None in served_after:
                now = time.monotonic()
                if now - last_byte > 120:
                    raise SystemExit(f"version {version} not served in 120 s; logs in {work}")
                for i, (_, rest) in enumerate(servers):
                    if served_after[i] is None and answer(rest) == expected:
                        served_after[i] = now - last_byte
                time.sleep(0.05)
            per_server = [cache_status(rest).get(str(version), {}) for _, rest in servers]
            rows.append(
                {
                    "version": version,
                    "version_bytes": per_server[0].get("bytes_total"),
                    "seconds_to_served": served_after,
                    "bytes_fetched_per_server": [s.get("bytes_fetched") for s in per_server],
                    "download_seconds_per_server": [s.get("download_seconds") for s in per_server],
                    "store_get_objects": store.get_object_count(BUCKET) - gets_before,
                    "store_sent_bytes": store.sent_bytes(BUCKET) - sent_before,
                }
            )
            print(json.dumps(rows[-1]), flush=True)

        # A restart on the same cache (a container restart in its pod): nothing fetched.
        proc, rest = servers[0]
        proc.terminate()
        proc.wait(60)
        gets_before = store.get_object_count(BUCKET)
        started = time.monotonic()
        proc, rest = start_server(store, work / "cache-0", args.poll, work / "server-0b.log")
        servers[0] = (proc, rest)
        while answer(rest) != float(args.versions + 1) + 2.0:
            if time.monotonic() - started > 300:
                raise SystemExit(f"restarted server did not serve; logs in {work}")
            time.sleep(0.2)
        restart = {
            "seconds_to_served": time.monotonic() - started,
            "store_get_objects": store.get_object_count(BUCKET) - gets_before,
            "bytes_fetched": cache_status(rest)[str(args.versions + 1)]["bytes_fetched"],
        }
        for proc, _ in servers:
            proc.terminate()
            proc.wait(60)

    delays = [d for row in rows for d in row["seconds_to_served"]]
    result = {
        "command": "python -m bench.object_storage " + " ".join(sys.argv[1:]),
        "servers": args.servers,
        "poll_seconds": args.poll,
        "padding_mb": args.padding_mb,
        "versions": rows,
        "upload_to_served_p50_seconds": statistics.median(delays),
        "upload_to_served_max_seconds": max(delays),
        # The target: within two polls plus the download, for every server and version.
        "within_two_polls_plus_download": all(
            d <= 2 * args.poll + dl
            for row in rows
            for d, dl in zip(
                row["seconds_to_served"], row["download_seconds_per_server"], strict=True
            )
        ),
        "download_seconds_p50": statistics.median(
            dl for row in rows for dl in row["download_seconds_per_server"]
        ),
        "each_version_fetched_once_per_server": all(
            b == row["version_bytes"] for row in rows for b in row["bytes_fetched_per_server"]
        ),
        "restart": restart,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)  # kept only when a step failed, for its logs
    print(json.dumps({k: v for k, v in result.items() if k != "versions"}, indent=2))


if __name__ == "__main__":
    main()
