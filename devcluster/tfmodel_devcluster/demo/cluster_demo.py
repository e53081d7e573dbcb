"""`make demo`: TFModel, operator, pods and a canary rollout on the embedded cluster.

  sudo .venv/bin/tfmodel-demo cluster [--keep] [--api-port N]
  sudo .venv/bin/tfmodel-demo down      (a cluster kept with --keep)

One line per step on the terminal; everything else (TensorFlow's C++ and Python logs, the
cluster's own lines) goes to the log file named at the start, beside which the rollout's PNG
plot is written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tfmodel_devcluster import cluster as cluster_mod
from tfmodel_devcluster import host
from tfmodel_devcluster.cluster import REPO_ROOT, Cluster, ClusterError
from tfmodel_devcluster.demo import preflight, report, steps
from tfmodel_devcluster.demo.preflight import DemoEnvError

NUM_TESTS = 1000
REPLICAS = 2
DEFAULT_API_PORT = 16443
TOTAL_STEPS = 9
KEPT = "demo-cluster"  # <cache>/demo-cluster: the data dir of a cluster kept with --keep


class Out:
    """Step lines on stdout; one progress line rewritten in place (on a terminal)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.tty = sys.stdout.isatty()
        self._step = 0
        self._last_progress = 0.0
        self._progress_shown = False

    def log(self, line: str) -> None:
        with self.log_path.open("a") as out:
            out.write(line.rstrip() + "\n")

    def step(self, title: str) -> float:
        self._step += 1
        self._clear()
        print(f"[{self._step}/{TOTAL_STEPS}] {title}", flush=True)
        self.log(f"=== step {self._step}: {title}")
        return time.monotonic()

    def info(self, text: str) -> None:
        self._clear()
        for line in text.splitlines():
            print(f"      {line}", flush=True)
        self.log(text)

    def progress(self, text: str) -> None:
        """Rewritten in place on a terminal; elsewhere at most one line per 15 s."""
        if self.tty:
            print(f"\r\033[K      {text}"[:160], end="", flush=True)
            self._progress_shown = True
        elif time.monotonic() - self._last_progress > 15:
            print(f"      ... {text}", flush=True)
            self._last_progress = time.monotonic()

    def _clear(self) -> None:
        if self._progress_shown:
            print("\r\033[K", end="", flush=True)
            self._progress_shown = False


def _last_line(path: Path) -> str:
    """The last non-empty line of a (possibly large, growing) log file."""
    try:
        with path.open("rb") as log:
            log.seek(max(0, path.stat().st_size - 4096))
            lines = log.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


@contextlib.contextmanager
def ticker(out: Out, what: str, follow: Path | None = None) -> Iterator[None]:
    """A progress line with the elapsed time (and the latest line of the `follow` log)."""
    done = threading.Event()
    start = time.monotonic()

    def run() -> None:
        while not done.wait(1.0):
            last = _last_line(follow) if follow is not None else ""
            minutes, seconds = divmod(int(time.monotonic() - start), 60)
            out.progress(f"{what}: {minutes}:{seconds:02d} elapsed  {last[:90]}")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _took(start: float) -> str:
    return f"{time.monotonic() - start:.0f} s"


def run(keep: bool, api_port: int, workdir: Path) -> int:
    t_all = time.monotonic()
    preflight.check_root()  # first: a non-root user cannot even write the root's log dir
    workdir.mkdir(parents=True, exist_ok=True)
    log_path, png_path = workdir / "demo.log", workdir / "rollout.png"
    png_path.unlink(missing_ok=True)  # "plot:" below names only this run's
    log_path.write_text(f"tfmodel demo {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    out = Out(log_path)
    host.LOG_HOOK = out.log  # the cluster's own lines: log file only
    print("tfmodel demo: a TFModel on a real single-node Kubernetes cluster, then a canary rollout")
    print(f"      log (TensorFlow and cluster output): {log_path}")
    summary: list[tuple[str, str]] = []

    t = out.step("check the machine")
    cgroups = preflight.check_cgroups()
    cold = preflight.is_cold()
    if cold:
        preflight.check_tools()
    free = preflight.check_disk(cold)
    preflight.check_port(api_port)
    _install_packages(out)
    out.info(f"root, cgroup {cgroups}, {free:.0f} GiB free, 127.0.0.1:{api_port} free")

    t = out.step("build the cluster's binaries and images (cached per machine)")
    if cold:
        out.info(
            "first run on this machine: building the Kubernetes binaries from Go modules and\n"
            "the server/operator images with buildah (about 25 min on 2 idle cores, up to an\n"
            f"hour on a loaded machine; once). Build log: {cluster_mod.build_log()}"
        )
    with ticker(out, "building" if cold else "checking the caches", cluster_mod.build_log()):
        built = cluster_mod.build_all()
    # Warm but slow: a change under server/, operator/ or the lock rebuilt the images.
    how = "built" if cold else ("rebuilt what changed" if time.monotonic() - t > 60 else "cached")
    out.info(f"ready in {_took(t)} ({how})")
    summary.append(("build", f"{_took(t)} ({'cold' if cold else 'warm'})"))

    t = out.step("start the cluster (etcd+apiserver, controller-manager, scheduler, kubelet)")
    with ticker(out, "starting"):
        cluster = cluster_mod.start(api_host_port=api_port, built=built)
    stopped = False
    try:
        out.info(f"node Ready in {_took(t)} (data {cluster.data_dir})")
        summary.append(("cluster up", _took(t)))
        code = _product(out, cluster, summary, log_path, png_path)
        if keep:
            _keep(out, cluster)
            stopped = True  # on purpose: it stays up
        return code
    finally:
        if not stopped:
            t = out.step("tear down everything the demo started")
            cluster.stop()
            out.info(f"cluster stopped, its data dir removed ({_took(t)})")
            summary.append(("tear down", _took(t)))
        summary.append(("total", _took(t_all)))
        print("\nSummary")
        print(report.table(summary))
        if png_path.exists():
            print(f"plot: {png_path}    log: {log_path}")


def _product(
    out: Out, cluster: Cluster, summary: list[tuple[str, str]], log_path: Path, png_path: Path
) -> int:
    t = out.step("helm install the operator chart")
    release = steps.install_operator(cluster)
    out.info(f"{release} ({_took(t)})")

    t = out.step("export two versions of the tutorial model onto the node's model volume")
    base = steps.export_models(cluster, log_path)
    out.info(
        f"{base}/1 ({steps.ITERATIONS[1]} training iterations), "
        f"{base}/2 ({steps.ITERATIONS[2]}) in {_took(t)}"
    )

    t = out.step(f"kubectl apply TFModel {steps.NAME}: stable=1, canary=2, {REPLICAS} replicas")
    steps.apply_tfmodel(cluster, REPLICAS)
    took = steps.wait_ready(cluster, REPLICAS, out.progress)
    out.info(f"Ready in {took:.0f} s")
    summary.append(("TFModel Ready", f"{took:.0f} s ({REPLICAS} pods)"))

    t = out.step(f"query the Service: {NUM_TESTS} test digits per label, gRPC and REST")
    for label in ("stable", "canary"):
        got = steps.query(cluster, label, NUM_TESTS, log_path)
        versions = ",".join(str(v) for v in sorted(got["grpc"]["versions"]))
        grpc_rate, rest_rate = got["grpc"]["error_rate"] * 100, got["rest"]["error_rate"] * 100
        out.info(
            f"{label:<6} (version {versions}): Inference error rate: {grpc_rate:g}% over gRPC, "
            f"{rest_rate:g}% over REST"
        )
        summary.append((f"error rate {label} (v{versions})", f"{grpc_rate:g}%"))
        failed = got["grpc"]["failed"] + got["rest"]["failed"]
        if failed:
            raise steps.StepError(f"{failed} requests for {label} failed")

    t = out.step("canary rollout: stable 1 -> 2, a client looping on `stable` throughout")
    before_tfm = steps.get_tfm(cluster)
    restarts_before = steps.restart_counts(cluster)
    out.info("before:\n" + before_tfm)
    loop = steps.Loop(cluster, log_path)
    marks: dict[str, float] = {}
    t_loop = time.monotonic()
    try:
        time.sleep(3)
        steps.enable_rollout(cluster, out.progress)
        marks["rollout on"] = time.monotonic() - t_loop
        time.sleep(3)
        marks["stable: 2"] = time.monotonic() - t_loop
        took = steps.roll_out(cluster, 2, out.progress)
        marks["Promoted"] = time.monotonic() - t_loop
        steps.wait_served(cluster, 2, out.progress)
        time.sleep(3)  # the client keeps going a little after every pod serves 2
    finally:
        result = loop.finish(check=False)
    restarts_after = steps.restart_counts(cluster)
    after_tfm = steps.get_tfm(cluster)
    restarts = sum(restarts_after.values()) - sum(restarts_before.values())
    same_pods = set(restarts_after) == set(restarts_before)
    out.info(f"promoted in {took:.0f} s; which version answered `stable` (gRPC), per 10 s:")
    for line in report.timeline(result):
        out.info("  " + line)
    out.info("after:\n" + after_tfm)
    report.plot(result, png_path, marks)
    out.info(f"plot: {png_path}")
    summary += [
        ("rollout 1 -> 2", f"Promoted in {took:.0f} s"),
        ("requests during rollout", f"{result.get('ok', 0)} ok"),
        ("failed requests", str(result.get("failed", "?"))),
        ("pod restarts", f"{restarts}" + ("" if same_pods else " (pods replaced!)")),
    ]
    if result.get("failed") or restarts or not same_pods:
        out.info("errors: " + "; ".join(result.get("errors", [])[:5]))
        return 1
    return 0


def _install_packages(out: Out) -> None:
    """Debian packages of the cluster (containerd, runc, CNI plugins, buildah...), once."""
    script = REPO_ROOT / "scripts" / "install-cluster-deps.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    out.log(done.stdout + done.stderr)
    if done.returncode != 0:
        raise DemoEnvError(
            f"installing the cluster's Debian packages failed:\n{done.stderr[-1500:]}\n"
            f"  Install them by hand: apt-get install -y {' '.join(cluster_mod.APT_PACKAGES)}"
        )
    if done.stderr.strip():
        out.info(done.stderr.strip().splitlines()[-1])


def _keep(out: Out, cluster: Cluster) -> None:
    (cluster_mod.cache_dir() / KEPT).write_text(str(cluster.data_dir))
    k = cluster.kubectl_bin
    out.info(
        "KEEP=1: the cluster stays up. Try:\n"
        f"  export KUBECONFIG={cluster.kubeconfig}\n"
        f"  {k} get tfm,pods -n {steps.NAMESPACE} -o wide\n"
        f"  {k} describe tfm {steps.NAME} -n {steps.NAMESPACE}\n"
        f"  {k} patch tfm {steps.NAME} -n {steps.NAMESPACE} --type=merge -p "
        '\'{"spec":{"replicas":3}}\'\n'
        "Tear it down with: make demo-down"
    )


def down() -> int:
    pointer = cluster_mod.cache_dir() / KEPT
    if not pointer.exists():
        print("no demo cluster kept (nothing to do)")
        return 0
    data_dir = Path(pointer.read_text().strip())
    from tfmodel_devcluster.cli import down as cluster_down

    host.LOG_HOOK = lambda line: None
    if data_dir.exists():
        cluster_down(data_dir)
    pointer.unlink()
    print(f"demo cluster in {data_dir} stopped and removed")
    return 0


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def default_workdir() -> Path:
    return Path(os.environ.get("TFMODEL_DEMO_DIR", "/var/tmp/tfmodel-demo"))


def main(
    command: str = "run",
    keep: bool = False,
    api_port: int = DEFAULT_API_PORT,
    workdir: Path | None = None,
) -> int:
    """`run` (the demo) or `down` (a cluster kept with keep); returns the exit code."""
    # SIGTERM / SIGHUP (a closed terminal) tear the cluster down like Ctrl-C does.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        if command == "down":
            preflight.check_root()
            return down()
        return run(keep, api_port, workdir or default_workdir())
    except DemoEnvError as exc:
        print(f"\ncannot run the demo: {exc}", file=sys.stderr)
        return 2
    except (ClusterError, steps.StepError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        print(f"\ndemo FAILED: {str(detail)[-3000:]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
