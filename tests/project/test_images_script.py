"""scripts/images.sh (`make images`, `make push`): which tool it picks, the references it builds
and pushes, and the messages when it cannot. The container tools are stand-ins that record
their arguments: what is under test is the script, not docker."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "images.sh"


def tool_dir(tmp_path: Path, *tools: str, docker_daemon: bool = True) -> Path:
    """A PATH with the basics plus recording stand-ins for `tools`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for basic in ("bash", "dirname", "git", "env"):
        found = shutil.which(basic)
        assert found, basic
        (bin_dir / basic).symlink_to(found)
    for tool in tools:
        info_code = 0 if (tool != "docker" or docker_daemon) else 1
        (bin_dir / tool).write_text(
            "#!/bin/bash\n"
            f'[[ "$1" == info ]] && exit {info_code}\n'
            f'echo "{tool} $*" >> "{tmp_path}/calls"\n'
        )
        (bin_dir / tool).chmod(0o755)
    return bin_dir


def run(tmp_path: Path, bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={"PATH": str(bin_dir), "TAG": "t1", "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_builds_both_images_with_the_registry_prefix(tmp_path: Path):
    bin_dir = tool_dir(tmp_path, "podman")
    done = run(tmp_path, bin_dir, "build", REGISTRY="registry.example.com/ml/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "registry.example.com/ml/tfmodel-server:t1",
        "registry.example.com/ml/tfmodel-operator:t1",
    ]
    assert calls(tmp_path) == [
        "podman build -f Dockerfile.server -t registry.example.com/ml/tfmodel-server:t1 .",
        "podman build -f Dockerfile.operator -t registry.example.com/ml/tfmodel-operator:t1 .",
    ]


def test_docker_without_a_daemon_falls_back_to_buildah(tmp_path: Path):
    bin_dir = tool_dir(tmp_path, "docker", "buildah", docker_daemon=False)
    done = run(tmp_path, bin_dir, "build", PYTHON_IMAGE="mirror.example.com/python:3.11")
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path)[0] == (
        "buildah bud --layers --build-arg PYTHON_IMAGE=mirror.example.com/python:3.11 "
        "-f Dockerfile.server -t tfmodel-server:t1 ."
    )


def test_push_needs_a_registry(tmp_path: Path):
    done = run(tmp_path, tool_dir(tmp_path, "docker"), "push")
    assert done.returncode == 2 and "set REGISTRY" in done.stderr
    assert calls(tmp_path) == []


def test_push_pushes_both(tmp_path: Path):
    done = run(tmp_path, tool_dir(tmp_path, "docker"), "push", REGISTRY="reg.example.com")
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path) == [
        "docker push reg.example.com/tfmodel-server:t1",
        "docker push reg.example.com/tfmodel-operator:t1",
    ]


def test_no_tool_says_what_to_install(tmp_path: Path):
    done = run(tmp_path, tool_dir(tmp_path), "build")
    assert done.returncode == 2
    assert "docker (with its daemon running), podman or buildah" in done.stderr
