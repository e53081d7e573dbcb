"""Model config parsing, validation and the kubelet-style ConfigFileWatcher."""

from __future__ import annotations

import os

import pytest
from tensorflow_serving.config import model_server_config_pb2
from tfmodel_server.model_servers.config_file import (
    ConfigError,
    ConfigFileWatcher,
    load_config_file,
    parse_model_server_config,
    single_model_config,
    validate_model_server_config,
)

GOOD = """
model_config_list {
  config {
    name: "linear"
    base_path: "/models/linear"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config {
    name: "other"
    base_path: "/models/other"
    model_version_policy { latest { num_versions: 2 } }
  }
}
"""


def _config(body: str) -> model_server_config_pb2.ModelServerConfig:
    return parse_model_server_config(body, "test.config")


def _validation_error(body: str) -> str:
    with pytest.raises(ConfigError) as info:
        validate_model_server_config(_config(body), "models.config")
    return str(info.value)


def test_parse_full_config():
    config = _config(GOOD)
    models = config.model_config_list.config
    assert [m.name for m in models] == ["linear", "other"]
    assert list(models[0].model_version_policy.specific.versions) == [1, 2]
    assert dict(models[0].version_labels) == {"stable": 1, "canary": 2}
    assert models[1].model_version_policy.latest.num_versions == 2
    validate_model_server_config(config, "test.config")


def test_parse_error_names_file_line_and_problem():
    text = 'model_config_list {\n  config {\n    name: "a"\n    bse_path: "/m"\n  }\n}\n'
    with pytest.raises(ConfigError) as info:
        parse_model_server_config(text, "/etc/models/models.config")
    message = str(info.value)
    # TF Serving's wording (util.cc ParseProtoTextFile), with the line:column.
    assert message.startswith("Invalid protobuf file: '/etc/models/models.config'")
    assert " 4:5: " in message
    assert "bse_path" in message
    assert isinstance(info.value, ValueError)


def test_parse_error_unterminated():
    with pytest.raises(ConfigError) as info:
        parse_model_server_config('model_config_list {\n config { name: "a"\n', "x.config")
    assert str(info.value).startswith("Invalid protobuf file: 'x.config'")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            'model_config_list { config { name: "a" base_path: "/a" } '
            'config { name: "a" base_path: "/b" } }',
            "Illegal to list model a multiple times in config list",
        ),
        ('model_config_list { config { base_path: "/a" } }', "empty name"),
        ('model_config_list { config { name: "a" } }', "model a: base_path is empty"),
        (
            'model_config_list { config { name: "a" base_path: "models/a" } }',
            "Expected model a to have an absolute path",
        ),
        (
            'model_config_list { config { name: "a" base_path: "gs://b/a" } }',
            "only local file system paths",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/a" model_platform: "onnx" } }',
            "model a: Model a requests unsupported platform onnx",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/a" '
            "model_version_policy { specific { } } } }",
            "model a: model_version_policy specific {} lists no versions",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/a" '
            "model_version_policy { specific { versions: -3 } } } }",
            "negative version -3",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/a" '
            'version_labels { key: "x" value: -1 } } }',
            "version label x points at negative version -1",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/a" '
            'version_labels { key: "a/b" value: 1 } } }',
            "invalid version label 'a/b'",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/a" '
            'model_platform: "tensorflow" model_type: TENSORFLOW } }',
            "Illegal setting both",
        ),
        ("custom_model_config { }", "only model_config_list is supported"),
    ],
)
def test_validation_errors(body, expected):
    message = _validation_error(body)
    assert message.startswith("models.config:")
    assert expected in message


def test_validation_accepts_tf_serving_forms():
    # Empty platform means tensorflow; deprecated model_type TENSORFLOW too;
    # latest { num_versions: 0 } means 1 as in TF Serving; empty config is a no-op.
    for body in [
        'model_config_list { config { name: "a" base_path: "/a" } }',
        'model_config_list { config { name: "a" base_path: "/a" model_type: TENSORFLOW } }',
        'model_config_list { config { name: "a" base_path: "/a" '
        "model_version_policy { latest { } } } }",
        'model_config_list { config { name: "a" base_path: "/a" '
        "model_version_policy { all { } } } }",
        "",
        "model_config_list { }",
    ]:
        validate_model_server_config(_config(body), "ok.config")


def test_single_model_config():
    config = single_model_config("default", "/models/default")
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == (
        "default",
        "/models/default",
        "tensorflow",
    )
    validate_model_server_config(config, "flags")


def test_load_config_file(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(GOOD)
    assert len(load_config_file(str(path)).model_config_list.config) == 2
    with pytest.raises(ConfigError) as info:
        load_config_file(str(tmp_path / "missing.config"))
    assert "missing.config" in str(info.value)


def _config_text(name: str, base: str = "/models/m") -> str:
    return f'model_config_list {{ config {{ name: "{name}" base_path: "{base}" }} }}\n'


class KubeletConfigMap:
    """The layout kubelet uses for a ConfigMap volume, swapped atomically."""

    def __init__(self, mount: str) -> None:
        self.mount = mount
        self.generation = 0
        os.makedirs(mount, exist_ok=True)

    def publish(self, files: dict[str, str]) -> None:
        self.generation += 1
        stamp = f"..2026_11_21_22_00_{self.generation:02d}.{self.generation:06d}"
        payload = os.path.join(self.mount, stamp)
        os.mkdir(payload)
        for name, content in files.items():
            with open(os.path.join(payload, name), "w") as f:
                f.write(content)
        old_target = (
            os.readlink(os.path.join(self.mount, "..data"))
            if os.path.islink(os.path.join(self.mount, "..data"))
            else None
        )
        tmp_link = os.path.join(self.mount, "..data_tmp")
        os.symlink(stamp, tmp_link)
        os.rename(tmp_link, os.path.join(self.mount, "..data"))  # the atomic swap
        for name in files:
            user_link = os.path.join(self.mount, name)
            if not os.path.islink(user_link):
                os.symlink(os.path.join("..data", name), user_link)
        if old_target is not None:
            for name in os.listdir(os.path.join(self.mount, old_target)):
                os.unlink(os.path.join(self.mount, old_target, name))
            os.rmdir(os.path.join(self.mount, old_target))


def test_watcher_follows_kubelet_data_symlink_swap(tmp_path):
    cm = KubeletConfigMap(str(tmp_path / "config"))
    cm.publish({"models.config": _config_text("first")})
    path = os.path.join(cm.mount, "models.config")
    assert os.path.islink(path)
    assert os.readlink(path) == "..data/models.config"

    watcher = ConfigFileWatcher(path)
    config = watcher.read_if_changed()
    assert config is not None and config.model_config_list.config[0].name == "first"
    assert watcher.read_if_changed() is None  # unchanged content

    # Same content in a new ..data generation: no change reported.
    cm.publish({"models.config": _config_text("first")})
    assert watcher.read_if_changed() is None

    cm.publish({"models.config": _config_text("second")})
    config = watcher.read_if_changed()
    assert config is not None and config.model_config_list.config[0].name == "second"
    assert watcher.last_good is config
    assert watcher.read_if_changed() is None


def test_watcher_reports_bad_content_once_then_picks_up_good(tmp_path):
    cm = KubeletConfigMap(str(tmp_path / "config"))
    cm.publish({"models.config": _config_text("good")})
    watcher = ConfigFileWatcher(os.path.join(cm.mount, "models.config"))
    assert watcher.read_if_changed() is not None

    cm.publish({"models.config": "model_config_list {\n  config { nam: 'x' }\n}\n"})
    with pytest.raises(ConfigError) as info:
        watcher.read_if_changed()
    assert "models.config': " in str(info.value) and " 2:12: " in str(info.value)
    assert watcher.read_if_changed() is None  # same bad content: reported once
    assert watcher.last_good.model_config_list.config[0].name == "good"

    dup = 'config { name: "dup" base_path: "/m" }'
    cm.publish({"models.config": f"model_config_list {{ {dup} {dup} }}"})
    with pytest.raises(ConfigError) as info:
        watcher.read_if_changed()
    assert "multiple times" in str(info.value)

    cm.publish({"models.config": _config_text("fixed")})
    config = watcher.read_if_changed()
    assert config is not None and config.model_config_list.config[0].name == "fixed"


def test_watcher_missing_file_reported_once(tmp_path):
    path = tmp_path / "models.config"
    watcher = ConfigFileWatcher(str(path))
    with pytest.raises(ConfigError):
        watcher.read_if_changed()
    assert watcher.read_if_changed() is None
    path.write_text(_config_text("late"))
    assert watcher.read_if_changed().model_config_list.config[0].name == "late"
