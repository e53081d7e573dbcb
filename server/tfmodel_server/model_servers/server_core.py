"""ServerCore: applies a ModelServerConfig to the manager (TF Serving's server_core.cc).

Config transitions, validation and the version-label rules live here; the
manager only learns the resulting model list and label map. Two ways to apply
labels:

- strict (HandleReloadConfigRequest, as TF Serving): a label may only point at
  a version that is AVAILABLE now, else the whole config is refused and nothing
  changes (UpdateModelVersionLabelMap).
- deferred (start-up and model_config_file reloads): the models are applied
  first, each label moves once its version is AVAILABLE; until then it keeps
  pointing where it did. So a rollback in a ConfigMap is one step and a label
  never points at a version that cannot answer (TF Serving issues #1230, #1608).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from tensorflow_serving.config.model_server_config_pb2 import ModelConfig, ModelServerConfig

from tfmodel_server.core.manager import ServableManager
from tfmodel_server.core.states import AVAILABLE
from tfmodel_server.errors import failed_precondition, invalid_argument
from tfmodel_server.model_servers.config_file import ConfigError, validate_model_server_config

log = logging.getLogger(__name__)


class ServerCore:
    def __init__(
        self,
        manager: ServableManager[Any],
        allow_version_labels_for_unavailable_models: bool = False,
        flush_filesystem_caches: Callable[[], object] | None = None,
    ) -> None:
        self.manager = manager
        # --flush_filesystem_caches: run (in a thread) once each config's loads are done.
        self.flush_filesystem_caches = flush_filesystem_caches
        self.allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._lock = asyncio.Lock()
        self._desired_labels: dict[str, dict[str, int]] = {}  # deferred mode only
        manager.add_listener(self._apply_deferred_labels)

    async def apply_config(
        self,
        config: ModelServerConfig,
        timeout: float | None = None,
        defer_labels: bool = False,
        through_retries: bool = False,
    ) -> None:
        """Whole-config replace (ServerCore::ReloadConfig).

        Returns when the aspired versions found on disk have had their first load
        attempt (AVAILABLE, failed, or LOADING with retries to come), with
        `through_retries` (start-up) when their loads have ended, or after
        `timeout` seconds.
        """
        async with self._lock:
            which = config.WhichOneof("config")
            if which is not None and which != "model_config_list":
                raise failed_precondition(
                    "Cannot transition to requested config. It is only legal to transition "
                    "from one ModelConfigList to another."
                )
            try:
                validate_model_server_config(config, "model server config")
            except ConfigError as e:
                raise invalid_argument(str(e)) from None
            if which is None:
                log.info("Taking no action for empty config.")
                self.manager.note_config_applied()
                return
            model_configs = list(config.model_config_list.config)
            names = {mc.name for mc in model_configs}
            if defer_labels:
                self._desired_labels = {mc.name: dict(mc.version_labels) for mc in model_configs}
                self.manager.set_models(model_configs)
                self._apply_deferred_labels()
            else:
                labels = self._check_labels(model_configs)
                self._desired_labels = {}
                self.manager.set_models(model_configs)
                for name in names:
                    self.manager.set_labels(name, labels.get(name, {}))
            await self.manager.refresh(names, timeout, through_retries)
            self._apply_deferred_labels()
            if self.flush_filesystem_caches is not None:
                # ReloadConfig ends with Env::FlushFileSystemCaches().
                await asyncio.to_thread(self.flush_filesystem_caches)

    def pending_labels(self) -> dict[str, dict[str, int]]:
        """Labels of the last deferred config still waiting for their version."""
        pending: dict[str, dict[str, int]] = {}
        for name, desired in self._desired_labels.items():
            current = self.manager.labels(name)
            for label, version in desired.items():
                if current.get(label) != version:
                    pending.setdefault(name, {})[label] = version
        return pending

    def _label_allowed(self, name: str, label: str, version: int, current: dict[str, int]) -> bool:
        # The flag allows new labels, or labels not moving; moving one still
        # needs its target AVAILABLE (server_core.cc).
        if self.allow_unavailable_labels and current.get(label, version) == version:
            return True
        return self.manager.version_state(name, version) == AVAILABLE

    def _check_labels(self, model_configs: Sequence[ModelConfig]) -> dict[str, dict[str, int]]:
        """server_core.cc UpdateModelVersionLabelMap: labels need AVAILABLE versions."""
        result: dict[str, dict[str, int]] = {}
        for mc in model_configs:
            current = self.manager.labels(mc.name)
            for label, version in sorted(mc.version_labels.items()):
                if not self._label_allowed(mc.name, label, version, current):
                    raise failed_precondition(
                        f"Request to assign label to version {version} of model "
                        f"{mc.name}, which is not currently available for inference"
                    )
                result.setdefault(mc.name, {})[label] = version
        return result

    def _apply_deferred_labels(self) -> None:
        """Move every desired label whose version is AVAILABLE; keep the rest where they are."""
        for name, desired in self._desired_labels.items():
            current = self.manager.labels(name)
            labels: dict[str, int] = {}
            for label, version in sorted(desired.items()):
                if self._label_allowed(name, label, version, current):
                    labels[label] = version
                    if current.get(label) != version:
                        log.info("label %s of model %s -> version %d", label, name, version)
                elif label in current:
                    labels[label] = current[label]  # pending: still the old, serving version
            if labels != current:
                self.manager.set_labels(name, labels)
