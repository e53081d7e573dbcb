"""model_config_list text protos: parse, validate, and watch a config file.

Parsing uses the official ModelServerConfig proto with text_format, as TF
Serving's --model_config_file does. The watcher re-opens the path on every
read so a kubelet ConfigMap mount (models.config -> ..data/models.config,
..data swapped atomically) is followed, and detects change by content.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tfmodel_server.sources import s3

log = logging.getLogger(__name__)

TENSORFLOW_PLATFORM = "tensorflow"
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class ConfigError(ValueError):
    """A model config that cannot be used; the message names file, line or model."""


def parse_model_server_config(text: str, source: str) -> model_server_config_pb2.ModelServerConfig:
    """Parse ModelServerConfig text format; ConfigError names source:line:column."""
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        line, column = e.GetLine(), e.GetColumn()
        problem = re.sub(r"^\d+:\d+\s*:\s*", "", str(e))
        # TF Serving's words: protobuf's text-format error, then main.cc's status.
        where = f"{line}:{column}: " if line is not None else ""
        raise ConfigError(
            f"Invalid protobuf file: '{source}': Error parsing text-format "
            f"tensorflow.serving.ModelServerConfig: {where}{problem}"
        ) from None
    return config


def _model_platform(model: model_server_config_pb2.ModelConfig, where: str) -> str:
    # ModelType is deprecated in favour of model_platform (server_core.cc GetPlatform).
    if model.model_type != model_server_config_pb2.MODEL_TYPE_UNSPECIFIED:
        if model.model_platform:
            raise ConfigError(
                f"{where}: Illegal setting both ModelServerConfig::model_type (deprecated) "
                "and ModelServerConfig::model_platform."
            )
        if model.model_type != model_server_config_pb2.TENSORFLOW:
            raise ConfigError(
                f"{where}: ModelServerConfig::model_type choice {model.model_type} not supported."
            )
        return TENSORFLOW_PLATFORM
    return model.model_platform or TENSORFLOW_PLATFORM


def validate_model_server_config(
    config: model_server_config_pb2.ModelServerConfig, source: str
) -> None:
    """Reject configs TF Serving's ServerCore would reject (and a few it would choke on)."""
    which = config.WhichOneof("config")
    if which is None:
        return  # empty config: TF Serving takes no action
    if which != "model_config_list":
        raise ConfigError(
            f"{source}: only model_config_list is supported (got {which}); "
            "Cannot transition to requested config. It is only legal to transition "
            "from one ModelConfigList to another."
        )
    names: set[str] = set()
    for index, model in enumerate(config.model_config_list.config):
        if not model.name:
            raise ConfigError(f"{source}: model config #{index + 1} has an empty name")
        where = f"{source}: model {model.name}"
        if model.name in names:
            raise ConfigError(
                f"{source}: Illegal to list model {model.name} multiple times in config list"
            )
        names.add(model.name)
        if not model.base_path:
            raise ConfigError(f"{where}: base_path is empty")
        if s3.is_s3_url(model.base_path):
            try:
                s3.parse_s3_url(model.base_path)
            except ValueError as e:
                raise ConfigError(f"{where}: base_path {e}") from None
        elif _URI_SCHEME.match(model.base_path):
            raise ConfigError(
                f"{where}: base_path {model.base_path} is a URI; only local file system "
                "paths and s3:// URLs are supported"
            )
        elif not os.path.isabs(model.base_path):
            raise ConfigError(
                f"{where}: Expected model {model.name} to have an absolute path or URI; "
                f"got base_path()={model.base_path}"
            )
        platform = _model_platform(model, where)
        if platform != TENSORFLOW_PLATFORM:
            raise ConfigError(
                f"{where}: Model {model.name} requests unsupported platform {platform}"
            )
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "specific":
            versions = list(policy.specific.versions)
            if not versions:
                raise ConfigError(f"{where}: model_version_policy specific {{}} lists no versions")
            negative = [v for v in versions if v < 0]
            if negative:
                raise ConfigError(
                    f"{where}: model_version_policy specific has negative version {negative[0]}"
                )
        for label, version in sorted(model.version_labels.items()):
            if not label or "/" in label or ":" in label:
                raise ConfigError(
                    f"{where}: invalid version label {label!r} (must be non-empty, "
                    "without '/' or ':')"
                )
            if version < 0:
                raise ConfigError(
                    f"{where}: version label {label} points at negative version {version}"
                )


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """The config --model_name/--model_base_path stand for."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = base_path
    model.model_platform = TENSORFLOW_PLATFORM
    return config


def read_config_bytes(path: str, settings: s3.S3Settings | None = None) -> bytes:
    """A local file (re-opened by path), or an s3:// object; ConfigError says why not."""
    if s3.is_s3_url(path):
        try:
            return s3.read_object(s3.client(settings or s3.S3Settings()), path)
        except (s3.ObjectStoreError, ValueError) as e:
            raise ConfigError(f"{path}: cannot read model config: {e}") from None
    try:
        # open() by path each time: follows a freshly swapped ..data symlink.
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read model config: {e.strerror or e}") from None


def load_config_file(
    path: str, settings: s3.S3Settings | None = None
) -> model_server_config_pb2.ModelServerConfig:
    """Read, parse and validate a config file (or s3:// object) once."""
    return _parse_bytes(read_config_bytes(path, settings), path)


def _parse_bytes(data: bytes, path: str) -> model_server_config_pb2.ModelServerConfig:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: model config is not UTF-8 text: {e}") from None
    config = parse_model_server_config(text, path)
    validate_model_server_config(config, path)
    return config


class ConfigFileWatcher:
    """Re-reads a config file (or s3:// object) by path; reports a config only when its
    content changes."""

    _MISSING = "<missing>"

    def __init__(self, path: str, settings: s3.S3Settings | None = None) -> None:
        self.path = path
        self.settings = settings
        self._last_hash: str | None = None
        self.last_good: model_server_config_pb2.ModelServerConfig | None = None

    def read_if_changed(self) -> model_server_config_pb2.ModelServerConfig | None:
        """New parsed+validated config, None if unchanged; ConfigError once per bad content."""
        try:
            data = read_config_bytes(self.path, self.settings)
        except ConfigError:
            if self._last_hash == self._MISSING:
                return None
            self._last_hash = self._MISSING
            raise
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._last_hash:
            return None
        # Remember bad content too, so it is reported once rather than every poll.
        self._last_hash = digest
        config = _parse_bytes(data, self.path)
        self.last_good = config
        log.info("Model config %s changed (sha256 %s)", self.path, digest[:12])
        return config
