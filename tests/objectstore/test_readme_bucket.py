"""README.md's "Models in a bucket" commands, run as written against the suite's SeaweedFS.

The shell blocks are read from the README itself (so the page and this test cannot drift):
only the placeholders a user fills in are replaced (the store's endpoint and keys, the
bucket, the export's path, the ports, the cache dir), then the `aws` CLI uploads, the
`tfmodel-server` command runs as a real process and the `curl` must show version 1
AVAILABLE. Every placeholder must be found, so an edited README fails here until this
test is brought along.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.objectstore.seaweed import ACCESS_KEY, REGION, SECRET_KEY, SeaweedS3
from tests.ports import free_port
from tests.server.savedmodels import export_linear

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "## Models in a bucket"
STARTUP_DEADLINE = 240.0  # a bound on a hang, not a speed target


def section_blocks() -> list[str]:
    """The ```sh blocks between the section's heading and the next `## ` heading."""
    text = README.read_text()
    start = text.index(f"\n{HEADING}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"^```sh\n(.*?)^```$", section, re.S | re.M)


def replace(text: str, old: str, new: str) -> str:
    assert old in text, f"README's bucket commands no longer contain {old!r}:\n{text}"
    return text.replace(old, new)


def classify(blocks: list[str]) -> dict[str, str]:
    """exports / upload / serve / query, each exactly one block, told apart by its commands."""
    kinds: dict[str, str] = {}
    for block in blocks:
        lines = [line for line in block.splitlines() if line.strip()]
        if all(line.startswith("export ") for line in lines):
            kind = "exports"
        elif all(line.startswith("aws ") for line in lines):
            kind = "upload"
        elif lines[0].startswith("tfmodel-server "):
            kind = "serve"
        elif lines[0].startswith("curl "):
            kind = "query"
        else:
            raise AssertionError(f"unexpected block in the README's bucket section:\n{block}")
        assert kind not in kinds, f"two {kind} blocks in the README's bucket section"
        kinds[kind] = block
    assert set(kinds) == {"exports", "upload", "serve", "query"}, sorted(kinds)
    return kinds


def fill_exports(block: str, values: dict[str, str]) -> str:
    """Each `export NAME=<placeholder>` gets this store's value; a variable not known fails."""
    names = re.findall(r"^export (\w+)=", block, re.M)
    assert sorted(names) == sorted(values), names
    return re.sub(
        r"^export (\w+)=\S+",
        lambda m: f"export {m[1]}={shlex.quote(values[m[1]])}",
        block,
        flags=re.M,
    )


def fill_bucket(block: str, bucket: str) -> str:
    assert re.search(r"s3://models(?=[/\s]|$)", block), block
    return re.sub(r"s3://models(?=[/\s]|$)", f"s3://{bucket}", block)


def bash(script: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def test_readme_bucket_commands_serve_version_1(seaweed: SeaweedS3, tmp_path: Path) -> None:
    blocks = classify(section_blocks())
    bucket = f"readme-{os.getpid()}"
    grpc_port, rest_port = free_port(), free_port()
    export = tmp_path / "export"
    export_linear(export, 1)  # y = 0.5 x + 2: half_plus_two

    exports = fill_exports(
        blocks["exports"],
        {
            "AWS_ENDPOINT_URL": seaweed.endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        },
    )
    upload = replace(fill_bucket(blocks["upload"], bucket), "/path/to/export", str(export))
    serve = fill_bucket(blocks["serve"], bucket)
    serve = replace(serve, "--port=8500", f"--port={grpc_port}")
    serve = replace(serve, "--rest_api_port=8501", f"--rest_api_port={rest_port}")
    serve = replace(serve, "/var/cache/tfmodel", str(tmp_path / "cache"))
    query = replace(blocks["query"], "localhost:8501", f"127.0.0.1:{rest_port}")

    # Only the README's exports name the store: the AWS variables seaweed.env() sets are
    # dropped (its isolation from the host's ~/.aws files is kept).
    readme_vars = {"AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    env = {k: v for k, v in seaweed.env().items() if k not in readme_vars}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    # As in the README, the installed package's commands (tfmodel-server, aws) are on PATH:
    # this venv's bin first (make test runs .venv/bin/pytest without activating it).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    uploaded = bash(exports + upload, env)
    assert uploaded.returncode == 0, uploaded.stdout
    keys = {o["Key"] for o in seaweed.client().list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert "tf_serving/half_plus_two/1/saved_model.pb" in keys, keys
    assert any(k.startswith("tf_serving/half_plus_two/1/variables/") for k in keys), keys

    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            ["bash", "-c", exports + "exec " + serve],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        status = wait_available(query, exports, env, server, log_path)
        versions = {s["version"]: s["state"] for s in status["model_version_status"]}
        assert versions == {"1": "AVAILABLE"}, status
        answer = requests.post(
            f"http://127.0.0.1:{rest_port}/v1/models/half_plus_two:predict",
            json={"instances": [1.0]},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [2.5]
    finally:
        _stop(server)


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is not None:  # exited (its failure is the test's message)
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)


def wait_available(
    query: str, exports: str, env: dict[str, str], server: subprocess.Popen, log_path: Path
) -> dict:
    """The README's curl, repeated until it shows a version AVAILABLE (or the server dies)."""
    deadline = time.monotonic() + STARTUP_DEADLINE
    last = ""
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(
                f"tfmodel-server exited {server.returncode}:\n{log_path.read_text()}"
            )
        out = bash(exports + query, env, timeout=30)
        last = out.stdout
        if out.returncode == 0 and '"AVAILABLE"' in out.stdout:
            return json.loads(out.stdout)
        time.sleep(1)
    raise AssertionError(
        f"no version AVAILABLE; last answer {last!r}\n{log_path.read_text()[-5000:]}"
    )
