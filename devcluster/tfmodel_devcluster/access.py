"""kubectl and helm against the cluster, from the host (through the API forwarder)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfmodel_devcluster.host import SYS_PATH


@dataclass
class KubeAccess:
    kubeconfig: Path
    kubectl_bin: Path
    helm_bin: Path
    helm_home: Path  # helm's cache, config and data: per cluster, never the user's

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.kubectl_bin.parent}:{env.get('PATH', '')}:{SYS_PATH}"
        env["HELM_CACHE_HOME"] = str(self.helm_home / "cache")
        env["HELM_CONFIG_HOME"] = str(self.helm_home / "config")
        env["HELM_DATA_HOME"] = str(self.helm_home / "data")
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return self._tool([str(self.kubectl_bin), *args], input, check, timeout)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self._tool([str(self.helm_bin), *args], None, check, timeout)

    def get(self, *args: str) -> dict[str, Any]:
        """`kubectl get ARGS -o json`, parsed."""
        answer: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return answer

    def _tool(
        self, cmd: list[str], input: str | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            check=False,
        )
        if check and done.returncode != 0:
            raise subprocess.CalledProcessError(
                done.returncode, cmd, output=done.stdout, stderr=done.stderr
            )
        return done
