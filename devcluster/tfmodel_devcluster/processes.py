"""The cluster's long-running processes: each in a session of its own (so its children stop
with it), its output in <data_dir>/logs/<name>.log, stopped by name."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tfmodel_devcluster.host import SYS_PATH, ClusterError


class Processes:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, cmd: list[str], pass_fds: tuple[int, ...] = ()
    ) -> subprocess.Popen[bytes]:
        log_path = self.data_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PATH": f"{SYS_PATH}:{os.environ.get('PATH', '')}"}
        env.pop("KUBECONFIG", None)  # each component is given its own
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.data_dir,
                start_new_session=True,
                pass_fds=pass_fds,
            )
        self.procs[name] = proc
        return proc

    def running(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def log_tail(self, name: str, chars: int = 3000) -> str:
        try:
            return (self.data_dir / "logs" / f"{name}.log").read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise ClusterError(
                    f"{name} exited with {proc.returncode}; log:\n{self.log_tail(name)}"
                )

    def wait(
        self, what: str, probe: Callable[[], Any], timeout: float = 180, interval: float = 0.5
    ) -> Any:
        """Until probe() returns something true; fails early when a process has exited."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                value = probe()
            except Exception as exc:  # noqa: BLE001 - probes fail until ready
                value, last = None, exc
            if value:
                return value
            time.sleep(interval)
        raise ClusterError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")

    def stop(self, name: str, grace: float = 15) -> None:
        """SIGTERM to the process group, SIGKILL after `grace` seconds."""
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)
