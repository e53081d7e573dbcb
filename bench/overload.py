"""A real tfmodel-server in a memory-limited cgroup under bursts of large requests (issue 21).

    .venv/bin/python -m bench.overload                       # both figures, ~2 min
    .venv/bin/python -m bench.overload --measure-footprint   # peak RSS per request byte
    .venv/bin/python -m bench.overload --baseline-tree /work/main --rounds 2   # A/B per round
    .venv/bin/python -m bench.overload --burst-only --server-flag=--grpc_channel_arguments=...

In one run, one server (a [-1, 784] float32 model, row sums), in a cgroup with a 1 GiB
memory limit, admission budget derived from it (the default):
- latency: 1-row REST predicts every 20 ms (one client, sequential) for a quiet
  phase, then while closed-loop clients send large REST (2000 rows, ~30 MB JSON) and
  gRPC (4000 rows, 12.5 MB) predicts; p50/p99 of both phases and their ratio
  (target: burst p99 within 2x of idle).
- goodput: closed-loop clients of mid-size requests (REST 500 rows, gRPC 1000 rows,
  half each) at 1x (as many as the budget admits at once) and at 4x that many;
  answered-200 per second at 4x over 1x (target >= 80 %). A refused client retries
  after 50 ms (sooner than Retry-After, to keep the pressure on).
--measure-footprint: no cgroup, no budget; one request at a time, the server's peak RSS
growth (VmHWM reset through clear_refs) over its size on the wire, per protocol.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.summary import pct, peak_bytes, ratio, reset_peak, rss_bytes

REPO = Path(__file__).resolve().parent.parent
FEATURES = 784
MODEL = "wide"
MONITORING = 'prometheus_config { enable: true path: "/metrics" }\n'


def rest_body(rows: int, seed: int = 0) -> bytes:
    """{"instances": [[784 floats], ...]}, full float64 precision (~15 KB a row)."""
    import orjson

    rng = np.random.default_rng(seed)
    return orjson.dumps({"instances": rng.random((rows, FEATURES)).tolist()})


def grpc_request(rows: int, seed: int = 0) -> bytes:
    """A serialized PredictRequest with `rows` x 784 float32 in tensor_content."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    rng = np.random.default_rng(seed)
    request.inputs["images"].CopyFrom(
        tf.make_tensor_proto(rng.random((rows, FEATURES), dtype=np.float32))
    )
    return request.SerializeToString()


@dataclass
class Server:
    proc: subprocess.Popen
    rest: str
    grpc_target: str
    log: Path

    def metrics(self) -> str:
        import requests

        return requests.get(f"{self.rest}/metrics", timeout=10).text


def export_model(root: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from tests.server.savedmodels import export_image

    export_image(root / MODEL, 1)
    return root / MODEL


def start_server(
    root: Path,
    *flags: str,
    preexec_fn=None,
    timeout: float = 180.0,
    env: dict[str, str] | None = None,
) -> Server:
    """tfmodel-server on free loopback ports serving `wide` with metrics on /metrics."""
    import requests

    from tests.ports import free_port

    grpc_port, rest_port = free_port(), free_port()
    monitoring = root / "monitoring.config"
    monitoring.write_text(MONITORING)
    log = root / f"server-{grpc_port}.log"
    cmd = [
        sys.executable,
        "-m",
        "tfmodel_server",
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        "--bind_address=127.0.0.1",
        f"--model_name={MODEL}",
        f"--model_base_path={root / MODEL}",
        f"--monitoring_config_file={monitoring}",
        *flags,
    ]
    env = dict(env or os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec_fn
        )
    server = Server(proc, f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{server.rest}/readyz", timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(10)


# ---- clients ------------------------------------------------------------------------------


@dataclass
class Tally:
    ok: int = 0
    refused: int = 0
    other: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str) -> None:
        with self.lock:
            if outcome == "ok":
                self.ok += 1
            elif outcome == "refused":
                self.refused += 1
            else:
                self.other[outcome] = self.other.get(outcome, 0) + 1


def rest_call(session, url: str, body: bytes, timeout: float = 120.0) -> str:
    import requests

    try:
        r = session.post(url, data=body, timeout=timeout)
    except requests.RequestException as e:
        return f"rest {type(e).__name__}"
    if r.status_code == 200:
        return "ok"
    if r.status_code == 429 and r.headers.get("Retry-After"):
        return "refused"
    return f"rest {r.status_code}"


def grpc_call(channel, raw: bytes, timeout: float = 120.0) -> str:
    import grpc

    method = channel.unary_unary(
        "/tensorflow.serving.PredictionService/Predict",
        request_serializer=None,
        response_deserializer=None,
    )
    try:
        method(raw, timeout=timeout)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return "refused"
        return f"grpc {e.code().name} {e.details()}"
    return "ok"


def closed_loop(
    server: Server,
    n_rest: int,
    n_grpc: int,
    rest_payload: bytes,
    grpc_payload: bytes,
    stop: threading.Event,
    tally: Tally,
    retry_pause: float = 0.05,
) -> list[threading.Thread]:
    """n_rest + n_grpc threads each sending its request again as soon as answered."""
    import grpc
    import requests

    url = f"{server.rest}/v1/models/{MODEL}:predict"
    channel = grpc.insecure_channel(server.grpc_target)

    def rest_loop() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                outcome = rest_call(session, url, rest_payload)
                tally.add(outcome)
                if outcome == "refused":
                    stop.wait(retry_pause)

    def grpc_loop() -> None:
        while not stop.is_set():
            outcome = grpc_call(channel, grpc_payload)
            tally.add(outcome)
            if outcome == "refused":
                stop.wait(retry_pause)

    threads = [threading.Thread(target=rest_loop, daemon=True) for _ in range(n_rest)]
    threads += [threading.Thread(target=grpc_loop, daemon=True) for _ in range(n_grpc)]
    for t in threads:
        t.start()
    return threads


def probe_latencies(rest: str, seconds: float, interval: float = 0.02) -> list[float]:
    """1-row REST predicts, one at a time, every `interval`; latencies in ms (failures: inf)."""
    import requests

    url = f"{rest}/v1/models/{MODEL}:predict"
    body = rest_body(1, seed=7)
    out: list[float] = []
    end = time.monotonic() + seconds
    with requests.Session() as session:
        while time.monotonic() < end:
            start = time.perf_counter()
            try:
                ok = session.post(url, data=body, timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = (time.perf_counter() - start) * 1000
            out.append(elapsed if ok else float("inf"))
            time.sleep(max(0.0, interval - elapsed / 1000))
    return out


def probe_in_child(server: Server, seconds: float) -> list[float]:
    """probe_latencies in a process of its own: the burst's client threads share this
    process's GIL, and the figure is the server's latency, not theirs."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.overload", "--probe", server.rest, "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    return [float(x) for x in out.split()]


# ---- footprint ----------------------------------------------------------------------------


def measure_footprint(work: Path, rest_rows: int, grpc_rows: int, concurrent: int = 4) -> None:
    """Each protocol on a fresh server (memory one freed is reused by the next)."""
    import grpc
    import requests

    export_model(work)
    body, raw = rest_body(rest_rows), grpc_request(grpc_rows)
    for name in ("REST", "gRPC"):
        server = start_server(work, "--max_inflight_request_bytes=0")
        pid = server.proc.pid
        channel = grpc.insecure_channel(server.grpc_target)
        url = f"{server.rest}/v1/models/{MODEL}:predict"
        small_body, small_raw = rest_body(1), grpc_request(1)
        try:
            # Warm the path (first TF call, codec threads) with small requests only.
            requests.post(url, data=small_body, timeout=120).raise_for_status()
            assert grpc_call(channel, small_raw) == "ok"
            if name == "REST":
                size = len(body)

                def send(url: str = url) -> None:
                    requests.post(url, data=body, timeout=120).raise_for_status()
            else:
                size = len(raw)

                def send(channel=channel) -> None:
                    assert grpc_call(channel, raw) == "ok"

            reset_peak(pid)
            before = rss_bytes(pid)
            threads = [threading.Thread(target=send) for _ in range(concurrent)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            g = peak_bytes(pid) - before
            print(
                f"{name}: {concurrent} x {size / 1e6:.1f} MB on the wire at once, peak RSS "
                f"growth {g / 1e6:.1f} MB = {g / (concurrent * size):.2f}x their size"
            )
        finally:
            channel.close()
            stop_server(server)


# ---- the two figures ------------------------------------------------------------------------


def run_overload(
    work: Path,
    limit_mb: int,
    seconds: float,
    tree: str | None = None,
    burst_only: bool = False,
    extra_flags: tuple[str, ...] = (),
) -> None:
    """Both figures on one server; `tree`: another checkout's server code (its server/)."""
    import requests

    from tests.server.memcgroup import MemoryCgroup

    if not (work / MODEL).exists():
        export_model(work)
    big_rest, big_grpc = rest_body(2000), grpc_request(4000)
    mid_rest, mid_grpc = rest_body(500, seed=1), grpc_request(1000, seed=1)
    print(
        f"payloads: large REST {len(big_rest) / 1e6:.1f} MB, large gRPC "
        f"{len(big_grpc) / 1e6:.1f} MB, mid REST {len(mid_rest) / 1e6:.1f} MB, "
        f"mid gRPC {len(mid_grpc) / 1e6:.1f} MB; memory limit {limit_mb} MiB"
    )
    with MemoryCgroup(limit_mb << 20) as cg:
        env = None
        if tree:
            env = dict(os.environ, PYTHONPATH=f"{tree}/server:{os.environ.get('PYTHONPATH', '')}")
        print(f"== server code: {tree or 'this checkout'}")
        server = start_server(work, *extra_flags, preexec_fn=cg.enter, env=env)
        try:
            for line in server.log.read_text().splitlines():
                if "admission control" in line:
                    print("server:", line.split("] ", 1)[-1])
            budget = _budget_bytes(server.log.read_text())
            # -- latency: idle, then during a burst of large requests --
            idle = probe_in_child(server, seconds)
            stop, tally = threading.Event(), Tally()
            threads = closed_loop(server, 8, 8, big_rest, big_grpc, stop, tally)
            time.sleep(1.0)
            burst = probe_in_child(server, seconds)
            stop.set()
            for t in threads:
                t.join(150)
            print(
                f"small-request latency (1-row REST predict every 20 ms): idle p50 "
                f"{pct(idle, 50):.1f} ms p99 {pct(idle, 99):.1f} ms (n={len(idle)}); during the "
                f"burst (8 REST x 2000 rows + 8 gRPC x 4000 rows, closed loop) p50 "
                f"{pct(burst, 50):.1f} ms p99 {pct(burst, 99):.1f} ms (n={len(burst)}); "
                f"p99 ratio {ratio(pct(burst, 99), pct(idle, 99)):.2f}x (target <= 2x)"
                f"; server alive after the burst: {server.proc.poll() is None}, OOM kills "
                f"{cg.oom_kills()}"
            )
            print(
                f"  burst requests: {tally.ok} ok, {tally.refused} refused (429/"
                f"RESOURCE_EXHAUSTED), other {tally.other}"
            )
            if burst_only:
                return
            # -- goodput: 1x (what the budget admits at once) vs 4x --
            per_pair = len(mid_rest) + len(mid_grpc)
            pairs = max(1, budget // per_pair) if budget else 2
            results = {}
            for factor in (1, 4):
                stop, tally = threading.Event(), Tally()
                threads = closed_loop(
                    server, pairs * factor, pairs * factor, mid_rest, mid_grpc, stop, tally
                )
                time.sleep(1.0)
                with tally.lock:
                    ok0 = tally.ok
                t0 = time.monotonic()
                time.sleep(seconds)
                with tally.lock:
                    ok1, refused, other = tally.ok, tally.refused, dict(tally.other)
                elapsed = time.monotonic() - t0
                stop.set()
                for t in threads:
                    t.join(150)
                results[factor] = (ok1 - ok0) / elapsed
                print(
                    f"goodput at {factor}x ({pairs * factor} REST + {pairs * factor} gRPC "
                    f"clients): {results[factor]:.1f} answered-200/s; refused {refused}, "
                    f"other {other}"
                )
            print(f"goodput 4x / 1x = {ratio(results[4], results[1]):.2f} (target >= 0.80)")
            alive = server.proc.poll() is None
            ok = requests.post(
                f"{server.rest}/v1/models/{MODEL}:predict", data=rest_body(1), timeout=30
            ).status_code
            print(
                f"server alive: {alive}; OOM kills in the cgroup: {cg.oom_kills()}; cgroup peak "
                f"{(cg.peak_bytes() or 0) / 2**20:.0f} MiB of {limit_mb}; a valid request "
                f"after: HTTP {ok}"
            )
            refused = [
                line
                for line in server.metrics().splitlines()
                if line.startswith(":tfmodel:requests_refused")
            ]
            print("metrics:", "; ".join(refused) or "(none refused)")
        finally:
            stop_server(server)


def _budget_bytes(log: str) -> int:
    for line in log.splitlines():
        if "admission control: in-flight prediction requests up to " in line:
            word = line.split("up to ", 1)[1].split()[0]
            return int(word) if word.isdigit() else 0
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measure-footprint", action="store_true")
    parser.add_argument("--rest-rows", type=int, default=2000)
    parser.add_argument("--grpc-rows", type=int, default=4000)
    parser.add_argument("--limit-mb", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--burst-only", action="store_true", help="skip the goodput figure")
    parser.add_argument("--server-flag", action="append", default=[], help="passed to the server")
    parser.add_argument(
        "--baseline-tree",
        metavar="DIR",
        help="each round, first run the figures on the server code of this checkout",
    )
    parser.add_argument("--probe", metavar="REST_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(" ".join(f"{x:.3f}" for x in probe_latencies(args.probe, args.seconds)))
        return
    with tempfile.TemporaryDirectory(prefix="tfmodel-overload-") as tmp:
        work = Path(tmp)
        if args.measure_footprint:
            measure_footprint(work, args.rest_rows, args.grpc_rows)
        else:
            for _ in range(args.rounds):
                for tree in ([args.baseline_tree] if args.baseline_tree else []) + [None]:
                    run_overload(
                        work,
                        args.limit_mb,
                        args.seconds,
                        tree,
                        args.burst_only,
                        tuple(args.server_flag),
                    )


if __name__ == "__main__":
    main()
