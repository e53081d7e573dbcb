"""One command, one machine: the same model and request stream through every way of serving it.

    .venv/bin/python -m bench.run            # ~10 min on 2 shared cores (587 s at load average ~10)

Targets, each at concurrency 1, 8 and 64 with a fixed request count (batch-1 requests, one
held-out digit, the demo's 64->10 softmax model):
  in-process          the model called once per request in threads, no network (unbatched floor)
  naive HTTP          bench/naive_server.py: one predict per HTTP request (what tfmodel replaces)
  tfmodel gRPC / REST batching off, then on (--enable_batching --batching_parameters_file)
Load generators: ghz (gRPC) and h2load (HTTP/1.1 keep-alive), both on this machine, on 127.0.0.1.
Then a version swap under load: p99 while a new version directory is copied in vs steady state.

Issue 11 additions, in the same run:
  peers               MLServer (custom MLModel runtime; no batching, adaptive batching) and KServe's
                      Python server (kserve.Model), each in its own venv (bench/peers), same model,
                      same ghz/h2load settings; they speak the v2 (Open Inference) protocol, KServe
                      also v1 REST
  limits              a bare grpc.aio echo server (the Python gRPC ceiling) at 64 in flight
  compute-bound       a small CNN (bench/compute_model.py, 1-3 ms per batch-1 call here): its limit is
                      the best in-process batched rows/s; tfmodel and the peers at 64 in flight

    .venv/bin/python -m bench.run --quick    # a few minutes (400 s at load average ~11): fewer requests,
                                             # 1 and 64 in flight, no --workers run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench import compute_model, grpc_ceiling, loadgen, report
from bench.peers import launch, venvs
from bench.peers.launch import V2_INFER_METHOD, PeerConfig
from bench.protoset import build_protoset
from bench.results import (
    CONCURRENCY,
    GRPC_OFF,
    GRPC_ON,
    INPROC,
    INPROC_BATCHED,
    MLP,
    NAIVE,
    PEER_GRPC,
    PEER_REST,
    PEER_REST_V1,
    REST_OFF,
    REST_ON,
    RunResult,
    measured,
    percentiles_ms,
)
from bench.tools import ensure_ghz, ensure_h2load

REPO = Path(__file__).resolve().parent.parent
MODEL_NAME = "mnist"
SIGNATURE = "predict_images"
REQUESTS = {1: 1500, 8: 4000, 64: 8000}
MLP_REQUESTS = 1600  # at 64 in flight; the compute-bound model serves hundreds of rows/s
MLP_BATCH_SIZES = "1,8,16,32,64"
PEERS = (
    PeerConfig("mlserver", "MLServer, no batching"),
    PeerConfig(
        "mlserver", "MLServer, adaptive batching", max_batch_size=64, max_batch_time_s=0.001
    ),
    PeerConfig("kserve", "KServe", rest_v1=True),
)
WARMUP_REQUESTS = 300
SWAP_REQUESTS = 30000
SWAP_AFTER_SECONDS = 2.0
BATCHING_PARAMETERS = """max_batch_size { value: 64 }
batch_timeout_micros { value: %d }
max_enqueued_batches { value: 1000 }
num_batch_threads { value: 2 }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http_200(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f}s")


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


class Case:
    """One model and the batch-1 request every server receives for it, in each protocol."""

    def __init__(self, work: Path, name: str, signature: str, input_name: str, row, prefix: str):
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        self.name, self.signature, self.input_name, self.prefix = (
            name,
            signature,
            input_name,
            prefix,
        )
        self.row = np.asarray(row, np.float32).reshape(1, -1)
        self.base_path = work / "models" / name
        self.model_dir = self.base_path / "1"
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        request.model_spec.signature_name = signature
        request.inputs[input_name].CopyFrom(tf.make_tensor_proto(self.row))  # tensor_content
        self.request_bin = work / f"predict_request-{name}.bin"
        self.request_bin.write_bytes(request.SerializeToString())
        self.body_json = work / f"predict_body-{name}.json"
        self.body_json.write_text(
            json.dumps({"signature_name": signature, "instances": self.row.tolist()})
        )
        self.v2_body = work / f"v2_body-{name}.json"
        self.v2_body.write_text(launch.v2_body(input_name, self.row[0]))
        self.v1_body = work / f"v1_body-{name}.json"
        self.v1_body.write_text(json.dumps({"instances": self.row.tolist()}))


class Bench:
    def __init__(
        self,
        work: Path,
        scale: float,
        batch_timeout_micros: int,
        concurrency: tuple[int, ...] = CONCURRENCY,
    ) -> None:
        self.work = work
        self.scale = scale
        self.concurrency = concurrency
        self.batch_timeout_micros = batch_timeout_micros
        self.peer_versions: dict[str, str] = {}
        self.mlp_limit: dict = {}
        self.ghz = ensure_ghz()
        self.h2load = ensure_h2load()
        self.results: list[RunResult] = []
        self.unavailable: dict[str, str] = {}
        self.swap: dict = {}
        self.grpc_connections = 1
        self._prepare()

    def _count(self, concurrency: int) -> int:
        return max(concurrency * 10, int(REQUESTS[concurrency] * self.scale))

    def _prepare(self) -> None:
        """Model, protoset and the one request every target receives."""
        from tfmodel_devcluster.demo.data import load_digits_split
        from tfmodel_devcluster.demo.export import export_model

        self.protoset = self.work / "serving.protoset"
        build_protoset(str(self.protoset))
        image = load_digits_split().test_images[:1]
        self.demo = Case(self.work, MODEL_NAME, SIGNATURE, "images", image, "")
        export_model(str(self.demo.base_path), 200, 1, verbose=False)
        self.base_path, self.model_dir = self.demo.base_path, self.demo.model_dir
        self.request_bin, self.body_json = self.demo.request_bin, self.demo.body_json
        self.mlp = Case(
            self.work, compute_model.NAME, compute_model.SIGNATURE, compute_model.INPUT,
            compute_model.example_row(), MLP,
        )  # fmt: skip
        compute_model.export(str(self.mlp.base_path))

    # -- runners ---------------------------------------------------------------------------

    def _record(self, result: RunResult) -> None:
        self.results.append(result)
        print(
            f"  {result.target:32s} c={result.concurrency:<3d} {result.rows_per_s:9.0f} rows/s"
            f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
            f"  cpu server {result.server_cpu_s / result.duration_s:4.2f}"
            f" loadgen {result.client_cpu_s / result.duration_s:4.2f} cores  {result.note}",
            flush=True,
        )

    def _server_help(self) -> str:
        from tfmodel_devcluster.demo.walkthrough import server_command

        return subprocess.run(
            [*server_command(), "--help"], capture_output=True, text=True, timeout=120
        ).stdout

    def _ghz(
        self,
        port: int,
        concurrency: int,
        requests: int,
        label: str,
        request_bin: Path | None = None,
        protoset: Path | None = None,
        call: str = loadgen.PREDICT_METHOD,
    ):
        return loadgen.run_ghz(
            self.ghz,
            str(protoset or self.protoset),
            str(request_bin or self.request_bin),
            f"127.0.0.1:{port}",
            concurrency,
            requests,
            label,
            str(self.work / "ghz.json"),
            connections=min(self.grpc_connections, concurrency),
            call=call,
        )

    def _h2load(
        self, url: str, concurrency: int, requests: int, label: str, body: Path | None = None
    ) -> RunResult:
        return loadgen.run_h2load(
            self.h2load, url, str(body or self.body_json), concurrency, requests, label,
            str(self.work / "h2load.log"),
        )  # fmt: skip

    def run_inprocess(self) -> None:
        print(f"== {INPROC}", flush=True)
        for c in self.concurrency:
            out = subprocess.run(
                [sys.executable, "-m", "bench.inprocess", f"--model_dir={self.model_dir}",
                 f"--concurrency={c}", f"--requests={self._count(c)}"],
                check=True, capture_output=True, text=True, timeout=300, cwd=REPO,
            )  # fmt: skip
            d = json.loads(out.stdout.strip().splitlines()[-1])
            d.pop("rows_per_s")
            self._record(RunResult(**d))

    def run_naive(self) -> None:
        print(f"== {NAIVE}", flush=True)
        port = _free_port()
        log = open(self.work / "naive.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.naive_server", f"--port={port}",
             f"--model_dir={self.model_dir}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
        try:
            _wait_http_200(f"http://127.0.0.1:{port}/ready", proc)
            url = f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict"
            self._h2load(url, 8, WARMUP_REQUESTS, NAIVE)
            for c in self.concurrency:
                n = self._count(c)
                self._record(measured(proc.pid, self._h2load, url, c, n, NAIVE))
        finally:
            _stop(proc)
            log.close()

    def run_tfmodel(
        self, batching: bool, measure_swap: bool, workers: int = 1, case: Case | None = None
    ) -> None:
        case = case or self.demo
        grpc_label, rest_label = (GRPC_ON, REST_ON) if batching else (GRPC_OFF, REST_OFF)
        grpc_label, rest_label = case.prefix + grpc_label, case.prefix + rest_label
        if workers > 1:
            grpc_label += f", --workers={workers}"
            rest_label += f", --workers={workers}"
            if "--workers" not in self._server_help():
                for label in (grpc_label, rest_label):
                    self.unavailable[label] = "tfmodel-server has no --workers flag"
                return
        print(f"== {grpc_label} / REST", flush=True)
        from tfmodel_devcluster.demo.walkthrough import ServerProcess

        extra: tuple[str, ...] = ()
        if batching:
            params = self.work / "batching_parameters.txt"
            params.write_text(BATCHING_PARAMETERS % self.batch_timeout_micros)
            extra = ("--enable_batching=true", f"--batching_parameters_file={params}")
        if workers > 1:
            extra += (f"--workers={workers}",)
        # SO_REUSEPORT spreads connections, not requests: give ghz one connection per worker.
        self.grpc_connections = workers
        log = self.work / f"server-{case.name}-{int(batching)}-{workers}.log"
        server = ServerProcess(case.name, str(case.base_path), str(log), extra)
        points = self._points(case)
        try:
            try:
                server.wait_ready(timeout=120)
            except Exception as exc:
                reason = str(exc).strip().splitlines()[-1][:200]
                for label in (grpc_label, rest_label):
                    self.unavailable[label] = reason
                print(f"  n/a: {reason}", flush=True)
                return
            pid, port = server.proc.pid, server.grpc_port
            self._ghz(port, 8, WARMUP_REQUESTS, grpc_label, case.request_bin)
            for c, n in points:
                self._record(measured(pid, self._ghz, port, c, n, grpc_label, case.request_bin))
            url = f"http://127.0.0.1:{server.rest_port}/v1/models/{case.name}:predict"
            self._h2load(url, 8, WARMUP_REQUESTS, rest_label, case.body_json)
            for c, n in points:
                self._record(measured(pid, self._h2load, url, c, n, rest_label, case.body_json))
            if measure_swap:
                self._measure_swap(server, grpc_label)
        finally:
            self.grpc_connections = 1
            code = server.stop()
            if code != 0:
                print(f"  warning: tfmodel-server exited {code} after SIGTERM", flush=True)

    def _points(self, case: Case) -> list[tuple[int, int]]:
        """(concurrency, requests) for a case: the demo at every level, the CNN at 64."""
        if case is self.demo:
            return [(c, self._count(c)) for c in self.concurrency]
        return [(64, max(320, int(MLP_REQUESTS * self.scale)))]

    def run_peer(self, config: PeerConfig, case: Case | None = None) -> None:
        """One peer configuration: v2 gRPC, v2 REST (and v1 REST) at the case's points."""
        case = case or self.demo
        labels = [case.prefix + config.label(p) for p in (PEER_GRPC, PEER_REST)]
        if config.rest_v1:
            labels.append(case.prefix + config.label(PEER_REST_V1))
        print(f"== {case.prefix}{config.name}", flush=True)
        try:
            python = venvs.ensure_venv(config.peer)
            self.peer_versions[config.peer] = venvs.version_of(python, config.peer)
            protoset, request_bin = launch.v2_request(
                python, config.peer, self.work, case.name, case.input_name, case.row[0]
            )
        except Exception as exc:  # no venv: report it, keep the rest of the run
            for label in labels:
                self.unavailable[label] = f"peer venv failed: {str(exc)[:160]}"
            print(f"  n/a: {exc}", flush=True)
            return
        log = self.work / f"{config.peer}-{config.max_batch_size}-{case.name}.log"
        peer = launch.start(
            config, python, case.name, case.model_dir, case.signature, self.work, log
        )
        try:
            self._run_peer_loads(config, case, peer, labels, protoset, request_bin, log)
        except Exception as exc:  # a peer failing mid-run is a result, not the end of the run
            for label in labels:
                if not any(r.target == label for r in self.results):
                    self.unavailable[label] = f"failed: {str(exc)[:160]}"
            print(f"  failed: {exc}", flush=True)
        finally:
            peer.stop()

    def _run_peer_loads(self, config, case, peer, labels, protoset, request_bin, log) -> None:
        base = f"http://127.0.0.1:{peer.http_port}"
        try:
            _wait_http_200(f"{base}/v2/models/{case.name}/ready", peer.proc, timeout=180)
        except Exception as exc:
            tail = log.read_text(errors="replace")[-600:]
            for label in labels:
                self.unavailable[label] = f"did not start: {str(exc)[:120]}"
            print(f"  n/a: {exc}\n{tail}", flush=True)
            return
        pid, port = peer.proc.pid, peer.grpc_port
        grpc_args = dict(request_bin=request_bin, protoset=protoset, call=V2_INFER_METHOD)
        self._ghz(port, 8, WARMUP_REQUESTS, labels[0], **grpc_args)
        for c, n in self._points(case):
            self._record(measured(pid, self._ghz, port, c, n, labels[0], **grpc_args))
        rest = [(labels[1], f"{base}/v2/models/{case.name}/infer", case.v2_body)]
        if config.rest_v1:
            rest.append((labels[2], f"{base}/v1/models/{case.name}:predict", case.v1_body))
        for label, url, body in rest:
            self._h2load(url, 8, WARMUP_REQUESTS, label, body)
            for c, n in self._points(case):
                self._record(measured(pid, self._h2load, url, c, n, label, body))

    def run_ceiling(self) -> None:
        print("== grpc.aio ceiling (c=64)", flush=True)
        for result in grpc_ceiling.measure(
            self.ghz, str(self.protoset), str(self.work), 64, self._count(64)
        ):
            self._record(result)

    def run_mlp_limit(self, seconds: float) -> None:
        print(f"== {MLP}{INPROC_BATCHED} (the compute-bound limit)", flush=True)
        out = subprocess.run(
            [sys.executable, "-m", "bench.inprocess_batched", f"--model_dir={self.mlp.model_dir}",
             f"--signature={self.mlp.signature}", f"--batch_sizes={MLP_BATCH_SIZES}",
             "--threads=1,2", f"--seconds={seconds}"],
            check=True, capture_output=True, text=True, timeout=600, cwd=REPO,
        )  # fmt: skip
        points = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        for p in points:
            print(
                f"  batch {p['batch']:3d} threads {p['threads']}: {p['rows_per_s']:8.0f} rows/s"
                f"  {p['ms_per_call']:7.2f} ms/call",
                flush=True,
            )
        best = max(points, key=lambda p: p["rows_per_s"])
        self.mlp_limit = {"points": points, "best": best}

    def _measure_swap(self, server, label: str) -> None:
        """ghz at 64 in flight; copy version N+1 in after SWAP_AFTER_SECONDS; compare p99s."""
        import grpc
        from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

        print("== version swap under load (c=64)", flush=True)
        old = max(int(p.name) for p in self.base_path.iterdir() if p.name.isdigit())
        new = old + 1
        events: dict[str, float] = {}

        def swap() -> None:
            time.sleep(SWAP_AFTER_SECONDS)
            events["copy_start"] = time.time()
            # A plain recursive copy, as an operator would do; the server must not load it
            # half-written, and must keep serving the old version until the new one is ready.
            shutil.copytree(self.base_path / str(old), self.base_path / str(new))
            events["copy_end"] = time.time()
            req = get_model_status_pb2.GetModelStatusRequest()
            req.model_spec.name = MODEL_NAME
            available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            deadline = time.monotonic() + 60
            with grpc.insecure_channel(server.grpc_target) as channel:
                stub = model_service_pb2_grpc.ModelServiceStub(channel)
                while time.monotonic() < deadline:
                    states = {
                        s.version: s.state
                        for s in stub.GetModelStatus(req, timeout=5).model_version_status
                    }
                    if "new_available" not in events and states.get(new) == available:
                        events["new_available"] = time.time()
                    if "new_available" in events and states.get(old) != available:
                        events["old_unloaded"] = time.time()
                        return
                    time.sleep(0.05)

        swapper = threading.Thread(target=swap)
        swapper.start()
        requests = max(6400, int(SWAP_REQUESTS * self.scale))
        result, details = self._ghz(server.grpc_port, 64, requests, label + ", during swap")
        swapper.join(timeout=90)
        if "old_unloaded" not in events:
            self.swap = {"error": f"swap did not complete during the run: {events}", "run": result}
            print(f"  {self.swap['error']}", flush=True)
            return
        ok = [d for d in details if d.ok]
        start, end = events["copy_start"], events["old_unloaded"]
        before = [d.latency_s for d in ok if d.start_s + d.latency_s < start]
        during = [d.latency_s for d in ok if d.start_s <= end and d.start_s + d.latency_s >= start]
        after = [d.latency_s for d in ok if d.start_s > end]
        steady = next(
            r for r in self.results if r.target == label and r.concurrency == 64
        )  # the steady-state run of the same server at the same load
        self.swap = {
            "label": label,
            "requests": requests,
            "failed": len(details) - len(ok),
            "note": result.note,
            "copy_s": events["copy_end"] - start,
            "to_available_s": events["new_available"] - start,
            "to_old_unloaded_s": end - start,
            "n_before": len(before),
            "n_during": len(during),
            "n_after": len(after),
            "p99_before_ms": percentiles_ms(before)[1],
            "p99_during_ms": percentiles_ms(during)[1],
            "p99_after_ms": percentiles_ms(after)[1],
            "p50_during_ms": percentiles_ms(during)[0],
            "p99_steady_ms": steady.p99_ms,
            "whole_run": result.to_dict(),
        }
        print(
            f"  swap window {end - start:.2f}s, {len(during)} requests: p99 "
            f"{self.swap['p99_during_ms']:.2f} ms vs steady {steady.p99_ms:.2f} ms "
            f"(same run before the swap: {self.swap['p99_before_ms']:.2f} ms), "
            f"{self.swap['failed']} failed",
            flush=True,
        )


def _machine() -> dict:
    import tensorflow as tf

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        # Other work on the machine skews every number; record how busy it was.
        "loadavg_1m_at_end": os.getloadavg()[0],
        "loadavg_at_end": list(os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every request count")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few minutes: --scale=0.25, 1 and 64 in flight, no --workers run, short limits",
    )
    parser.add_argument("--no_peers", action="store_true", help="skip MLServer and KServe")
    parser.add_argument(
        "--parts",
        default="demo,peers,mlp",
        help="comma list of demo (in-process, naive, ceiling, tfmodel), peers, mlp",
    )
    parser.add_argument("--batch_timeout_micros", type=int, default=1000)
    parser.add_argument(
        "--workers", type=int, default=2, help="also run batching on with --workers=N (1 = skip)"
    )
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "latest.json"))
    parser.add_argument("--workdir", default=None, help="keep models, requests and logs here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    command = "python -m bench.run" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tfmodel-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.scale, args.workers = min(args.scale, 0.25), 1
    concurrency = (1, 64) if args.quick else CONCURRENCY
    t0 = time.monotonic()
    try:
        parts = set(args.parts.split(","))
        if args.no_peers:
            parts.discard("peers")
        bench = Bench(work, args.scale, args.batch_timeout_micros, concurrency)
        if "demo" in parts:
            bench.run_inprocess()
            bench.run_naive()
            bench.run_ceiling()
            bench.run_tfmodel(batching=False, measure_swap=True)
            bench.run_tfmodel(batching=True, measure_swap=False)
            if args.workers > 1:
                bench.run_tfmodel(batching=True, measure_swap=False, workers=args.workers)
        if "peers" in parts:
            for config in PEERS:
                bench.run_peer(config)
        if "mlp" in parts:  # the compute-bound regime
            bench.run_mlp_limit(seconds=1.0 if args.quick else 2.0)
            bench.run_tfmodel(batching=False, measure_swap=False, case=bench.mlp)
            bench.run_tfmodel(batching=True, measure_swap=False, case=bench.mlp)
            if "peers" in parts:
                for config in PEERS:
                    bench.run_peer(config, case=bench.mlp)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    data = {
        "command": command,
        "machine": _machine(),
        "elapsed_s": time.monotonic() - t0,
        "batching_parameters": BATCHING_PARAMETERS % args.batch_timeout_micros,
        "results": [r.to_dict() for r in bench.results],
        "unavailable": bench.unavailable,
        "concurrency": list(concurrency),
        "peer_versions": bench.peer_versions,
        "mlp_limit": bench.mlp_limit,
        "mlp_model": compute_model.DESCRIPTION,
        "swap": {
            k: (v.to_dict() if isinstance(v, RunResult) else v) for k, v in bench.swap.items()
        },
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(data, indent=2))
    report.write(data, Path(args.out))
    print(f"wrote {args.out} and {args.json} in {data['elapsed_s']:.0f}s")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
