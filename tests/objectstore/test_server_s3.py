"""tfmodel-server on s3:// base paths, against a real SeaweedFS (no mock of the store).

What the store served is read from its own Prometheus counters (GetObject requests
per bucket), so "0 bytes downloaded" is the store's word, not the server's.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import requests

from tests.objectstore.seaweed import SeaweedS3, delete_prefix, upload_dir
from tests.server.savedmodels import export_linear
from tests.server.serverproc import ServerProcess

POLL = "0.5"


def predict(server: ServerProcess, x: float = 1.0, model: str = "linear") -> float:
    response = requests.post(
        f"{server.rest}/v1/models/{model}:predict", json={"instances": [x]}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def s3_server(seaweed: SeaweedS3, base: str, cache: Path, *extra: str, **env: str):
    return ServerProcess(
        "--model_name=linear",
        f"--model_base_path={base}",
        f"--file_system_poll_wait_seconds={POLL}",
        f"--model_cache_dir={cache}",
        "--s3_addressing_style=path",
        *extra,
        env=seaweed.env(**env),
    )


class Client:
    """Predicts in a loop until stopped; counts answers and failures (and which values)."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.ok = 0
        self.failures: list[str] = []
        self.values: set[float] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                r = session.post(
                    f"{self.server.rest}/v1/models/linear:predict",
                    json={"instances": [1.0]},
                    timeout=10,
                )
                if r.status_code == 200:
                    self.ok += 1
                    self.values.add(r.json()["predictions"][0])
                else:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
            except requests.RequestException as e:
                self.failures.append(repr(e))
            time.sleep(0.01)

    def __enter__(self) -> Client:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def cache_versions(cache: Path, bucket: str) -> set[int]:
    base = cache / "s3" / bucket / "models" / "linear"
    if not base.is_dir():
        return set()
    return {int(p.name) for p in base.iterdir() if p.name.isdigit()}


def test_versions_from_a_bucket_upload_in_parts_delete(seaweed, bucket, tmp_path):
    """Served from the bucket; a version uploaded part by part with a pause loads only
    once complete, with a client looping and 0 failed requests; a deleted version is
    unloaded and evicted from the cache."""
    cli = seaweed.client()
    v1 = export_linear(tmp_path / "local", 1, a=0.5, b=2.0)  # y(1) = 2.5
    v2 = export_linear(tmp_path / "local", 2, a=3.0, b=2.0)  # y(1) = 5.0
    upload_dir(cli, v1, bucket, "models/linear/1")
    cache = tmp_path / "cache"
    with s3_server(seaweed, f"s3://{bucket}/models/linear", cache) as server:
        server.wait_ready()
        assert predict(server) == 2.5
        assert cache_versions(cache, bucket) == {1}
        gets_v1 = seaweed.get_object_count(bucket)
        assert gets_v1 == sum(1 for p in v1.rglob("*") if p.is_file())

        with Client(server) as client:
            # Part by part: the variables first, then a pause of many polls, then the graph.
            for part in sorted((v2 / "variables").iterdir()):
                cli.upload_file(str(part), bucket, f"models/linear/2/variables/{part.name}")
                time.sleep(1.0)
            time.sleep(3.0)  # six polls with a half-uploaded version in the bucket
            assert 2 not in server.version_states("linear")
            assert cache_versions(cache, bucket) == {1}
            assert seaweed.get_object_count(bucket) == gets_v1  # not even downloaded
            cli.upload_file(str(v2 / "saved_model.pb"), bucket, "models/linear/2/saved_model.pb")
            server.wait_versions("linear", {2: "AVAILABLE", 1: "END"}, timeout=60)
            server.wait_for(lambda: client.values >= {2.5, 5.0}, what="both versions answered")
        assert client.failures == []
        assert client.ok > 0
        assert predict(server) == 5.0
        server.wait_for(lambda: cache_versions(cache, bucket) == {2}, what="v1 evicted")
        status = requests.get(f"{server.rest}/v1/cache", timeout=5).json()
        entry = status["models"]["linear"]["2"]
        assert entry["state"] == "cached"
        assert entry["bytes_fetched"] == entry["bytes_total"] > 0

        # Deleted from the bucket: version 1 (still there) is aspired again and
        # loaded, then version 2 unloads and leaves the cache.
        with Client(server) as client:
            delete_prefix(cli, bucket, "models/linear/2")
            server.wait_versions("linear", {1: "AVAILABLE", 2: "END"}, timeout=60)
        assert client.failures == []
        assert predict(server) == 2.5
        server.wait_for(lambda: cache_versions(cache, bucket) == {1}, what="v2 evicted")


def test_restart_reuses_the_cache(seaweed, bucket, tmp_path):
    """A second server process on the same cache dir downloads nothing (the store's
    own GetObject counter does not move) and serves at once."""
    cli = seaweed.client()
    v1 = export_linear(tmp_path / "local", 1, a=0.5, b=2.0)
    upload_dir(cli, v1, bucket, "models/linear/1")
    cache = tmp_path / "cache"
    base = f"s3://{bucket}/models/linear"
    with s3_server(seaweed, base, cache) as server:
        server.wait_ready()
        assert predict(server) == 2.5
    gets, sent = seaweed.get_object_count(bucket), seaweed.sent_bytes(bucket)
    files = sum(1 for p in v1.rglob("*") if p.is_file())
    assert gets == files
    assert sent == sum(p.stat().st_size for p in v1.rglob("*") if p.is_file())

    with s3_server(seaweed, base, cache) as server:
        server.wait_ready()
        assert predict(server) == 2.5
        entry = requests.get(f"{server.rest}/v1/cache", timeout=5).json()["models"]["linear"]["1"]
        assert entry["state"] == "cached" and entry["bytes_fetched"] == 0
        assert "reusing" in server.log()
    # The store's own counters: 0 GetObject requests, 0 bytes sent.
    assert seaweed.get_object_count(bucket) == gets
    assert seaweed.sent_bytes(bucket) == sent

    # Changed content under the same version number: the cache no longer matches.
    v1b = export_linear(tmp_path / "other", 1, a=4.0, b=2.0)
    upload_dir(cli, v1b, bucket, "models/linear/1")
    with s3_server(seaweed, base, cache) as server:
        server.wait_ready()
        assert predict(server) == 6.0
    assert seaweed.get_object_count(bucket) == gets + files


def test_wrong_credentials_clear_error(seaweed, bucket, tmp_path):
    """Wrong secret: the model's status and the log say so; the other model serves."""
    cli = seaweed.client()
    upload_dir(cli, export_linear(tmp_path / "s3", 1), bucket, "models/linear/1")
    local = tmp_path / "local"
    export_linear(local, 1, a=1.0, b=0.0)
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "local" base_path: "{local}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "linear" base_path: "s3://{bucket}/models/linear" '
        'model_platform: "tensorflow" }\n'
        "}\n"
    )
    with ServerProcess(
        f"--model_config_file={config}",
        f"--file_system_poll_wait_seconds={POLL}",
        f"--model_cache_dir={tmp_path / 'cache'}",
        "--s3_addressing_style=path",
        env=seaweed.env(AWS_SECRET_ACCESS_KEY="not-the-secret"),
    ) as server:
        server.wait_healthy()
        server.wait_for(
            lambda: "wrong secret access key" in server.log(), what="the credentials error"
        )
        models = requests.get(f"{server.rest}/v1/models", timeout=5).json()["models"]
        linear = next(m for m in models if m["name"] == "linear")
        assert "wrong secret access key" in linear["source_error"]
        assert "SignatureDoesNotMatch" in linear["source_error"]
        assert predict(server, 3.0, model="local") == 3.0


def test_unreachable_endpoint_keeps_serving(weed_binary, tmp_path):
    """The store goes away: the error is logged and in the status; what is loaded
    keeps answering, with 0 failed requests."""
    with SeaweedS3(weed_binary) as store:
        cli = store.client()
        cli.create_bucket(Bucket="models")
        upload_dir(cli, export_linear(tmp_path / "local", 1), "models", "models/linear/1")
        server = s3_server(store, "s3://models/models/linear", tmp_path / "cache")
        with server:
            server.wait_ready()
            with Client(server) as client:
                store.stop()
                server.wait_for(
                    lambda: "cannot reach the object store endpoint" in server.log(),
                    timeout=60,
                    what="the endpoint error",
                )
                models = requests.get(f"{server.rest}/v1/models", timeout=5).json()["models"]
                assert "cannot reach" in models[0]["source_error"]
                time.sleep(2.0)  # several failed polls while the client loops
            assert client.failures == []
            assert client.ok > 0
            assert server.version_states("linear") == {1: "AVAILABLE"}


def test_model_config_file_in_the_bucket_is_polled(seaweed, bucket, tmp_path):
    """--model_config_file=s3://... (the PAI-EAS layout): read at start, re-read every
    --model_config_file_poll_wait_seconds; a second model added to it is served."""
    cli = seaweed.client()
    upload_dir(cli, export_linear(tmp_path / "a", 1, a=0.5), bucket, "tf_serving/linear/1")
    upload_dir(cli, export_linear(tmp_path / "b", 1, a=2.0), bucket, "tf_serving/other/1")

    def config(*names: str) -> bytes:
        entries = "".join(
            f'  config {{ name: "{n}" base_path: "s3://{bucket}/tf_serving/{n}" '
            'model_platform: "tensorflow" }\n'
            for n in names
        )
        return f"model_config_list {{\n{entries}}}\n".encode()

    cli.put_object(Bucket=bucket, Key="tf_serving/model_config.pbtxt", Body=config("linear"))
    with ServerProcess(
        f"--model_config_file=s3://{bucket}/tf_serving/model_config.pbtxt",
        "--model_config_file_poll_wait_seconds=1",
        f"--file_system_poll_wait_seconds={POLL}",
        f"--model_cache_dir={tmp_path / 'cache'}",
        "--s3_addressing_style=path",
        env=seaweed.env(),
    ) as server:
        server.wait_ready()
        assert predict(server) == 2.5
        cli.put_object(
            Bucket=bucket, Key="tf_serving/model_config.pbtxt", Body=config("linear", "other")
        )
        server.wait_versions("other", {1: "AVAILABLE"}, timeout=60)
        assert predict(server, model="other") == 4.0
        assert predict(server) == 2.5


def test_a_model_removed_from_the_config_leaves_the_cache(seaweed, bucket, tmp_path):
    """Every cached version of a model removed from the config is evicted once it has
    unloaded; after a restart with a config that no longer names a model, its leftover
    versions go at start while the configured ones are reused (0 bytes fetched)."""
    cli = seaweed.client()
    upload_dir(cli, export_linear(tmp_path / "a", 1, a=0.5), bucket, "models/linear/1")
    upload_dir(cli, export_linear(tmp_path / "b", 1, a=2.0), bucket, "models/other/1")
    cache = tmp_path / "cache"
    config = tmp_path / "models.config"

    def write_config(*names: str) -> None:
        entries = "".join(
            f'  config {{ name: "{n}" base_path: "s3://{bucket}/models/{n}" '
            'model_platform: "tensorflow" }\n'
            for n in names
        )
        tmp = tmp_path / "models.config.tmp"
        tmp.write_text(f"model_config_list {{\n{entries}}}\n")
        tmp.rename(config)  # the reader never sees half a file

    def cached(name: str) -> set[int]:
        base = cache / "s3" / bucket / "models" / name
        return {int(p.name) for p in base.iterdir() if p.name.isdigit()} if base.is_dir() else set()

    def server() -> ServerProcess:
        return ServerProcess(
            f"--model_config_file={config}",
            "--model_config_file_poll_wait_seconds=1",
            f"--file_system_poll_wait_seconds={POLL}",
            f"--model_cache_dir={cache}",
            "--s3_addressing_style=path",
            env=seaweed.env(),
        )

    write_config("linear", "other")
    with server() as proc:
        proc.wait_ready()
        assert predict(proc) == 2.5 and predict(proc, model="other") == 4.0
        assert cached("linear") == cached("other") == {1}
        write_config("other")
        proc.wait_for(lambda: not cached("linear"), timeout=60, what="linear evicted")
        assert "linear" not in requests.get(f"{proc.rest}/v1/cache", timeout=5).json()["models"]
        assert cached("other") == {1} and predict(proc, model="other") == 4.0
        write_config("linear", "other")
        proc.wait_versions("linear", {1: "AVAILABLE"}, timeout=60)
        assert cached("linear") == {1}

    gets = seaweed.get_object_count(bucket)
    write_config("other")  # linear removed while no server ran
    with server() as proc:
        proc.wait_ready()
        proc.wait_for(lambda: not cached("linear"), timeout=60, what="the leftover evicted")
        assert predict(proc, model="other") == 4.0
        status = requests.get(f"{proc.rest}/v1/cache", timeout=5).json()["models"]
        assert status["other"]["1"]["bytes_fetched"] == 0 and "linear" not in status
    assert seaweed.get_object_count(bucket) == gets  # nothing downloaded again


def test_a_tflite_only_version_with_prefer_tflite_model(seaweed, bucket, tmp_path):
    """--prefer_tflite_model: a version prefix holding only model.tflite is complete (as
    a directory is); without the flag it stays pending (no SavedModel)."""
    from tests.server.tfs_testdata import VENDORED

    tflite = VENDORED / "saved_model_half_plus_two_tflite_with_sigdef" / "00000123"
    upload_dir(seaweed.client(), tflite, bucket, "models/half/123")
    base = f"s3://{bucket}/models/half"
    with ServerProcess(
        "--model_name=half",
        f"--model_base_path={base}",
        f"--file_system_poll_wait_seconds={POLL}",
        f"--model_cache_dir={tmp_path / 'cache'}",
        "--s3_addressing_style=path",
        "--prefer_tflite_model=true",
        env=seaweed.env(),
    ) as server:
        server.wait_ready()
        response = requests.post(
            f"{server.rest}/v1/models/half:predict", json={"instances": [[2.0], [4.0]]}, timeout=10
        )
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == [[3.0], [4.0]]
        assert server.version_states("half") == {123: "AVAILABLE"}
        assert (tmp_path / "cache" / "s3" / bucket / "models" / "half" / "123").is_dir()

    with s3_server(seaweed, base, tmp_path / "cache2", "--model_name=half") as server:
        server.wait_healthy()
        time.sleep(3.0)  # six polls
        assert server.version_states("half") == {}
        assert not (tmp_path / "cache2" / "s3").exists()
