"""Canary traffic split (tfmodel addition): `--traffic_split_file`, re-read like models.config.

The file is JSON, kept beside models.config so TF Serving's own config stays standard:

    {"models": {"resnet": {"canaryPercent": 10, "shadowPercent": 5}}}

For a model listed with canaryPercent > 0 whose `stable` and `canary` labels both exist,
requests for the `stable` label and requests naming neither version nor label go to the
`canary` version with that probability (only while it is AVAILABLE), otherwise to `stable`.
Requests naming a version or the `canary` label get exactly what they ask for. A model
listed at canaryPercent 0 serves unversioned requests from `stable` (not from the highest
version, which is the canary during a rollout); an unlisted model follows TF Serving's rules.

shadowPercent (optional, 0-100): the share of the requests stable answers that are also run
on the canary after the reply (inference/shadow.py); a listed model without it takes
--shadow_traffic_percent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from tfmodel_server.core.manager import CANARY_LABEL, STABLE_LABEL

from .config_file import ChangedFile, ConfigError

__all__ = [
    "CANARY_LABEL",
    "STABLE_LABEL",
    "TrafficSplit",
    "TrafficSplitWatcher",
    "parse_split_file",
    "parse_traffic_split",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrafficSplit:
    canary: dict[str, float] = field(default_factory=dict)  # model -> canary fraction
    shadow: dict[str, float] = field(default_factory=dict)  # model -> shadow fraction


def parse_traffic_split(data: bytes, where: str) -> dict[str, float]:
    """model name -> canary fraction in [0, 1]; ConfigError naming the problem."""
    return parse_split_file(data, where).canary


def _percent(where: str, name: object, entry: dict, key: str) -> float | None:
    percent = entry.get(key)
    if percent is None:
        return None
    if isinstance(percent, bool) or not isinstance(percent, (int, float)):
        raise ConfigError(f"{where}: model {name}: {key} must be a number")
    if not 0 <= percent <= 100:
        raise ConfigError(f"{where}: model {name}: {key} {percent} is not in [0, 100]")
    return float(percent) / 100.0


def parse_split_file(data: bytes, where: str) -> TrafficSplit:
    """The canary and shadow fractions in [0, 1] by model; ConfigError naming the problem."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{where}: traffic split is not JSON: {e}") from None
    models = doc.get("models", {}) if isinstance(doc, dict) else None
    if not isinstance(models, dict):
        raise ConfigError(f'{where}: traffic split must be {{"models": {{NAME: {{...}}}}}}')
    split = TrafficSplit()
    for name, entry in models.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: model {name}: canaryPercent must be a number")
        split.canary[str(name)] = _percent(where, name, entry, "canaryPercent") or 0.0
        shadow = _percent(where, name, entry, "shadowPercent")
        if shadow is not None:
            split.shadow[str(name)] = shadow
    return split


class TrafficSplitWatcher:
    """Re-reads the split file by path (config_file.ChangedFile, as models.config); a missing
    file means no split. Reports a new split only when the content changed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = ChangedFile(path)

    def read_if_changed(self) -> TrafficSplit | None:
        try:
            data = self._file.poll()
        except OSError:
            log.info("traffic split file %s absent: no canary split", self.path)
            return TrafficSplit()
        if data is None:
            return None
        split = parse_split_file(data, self.path)
        log.info(
            "traffic split %s: canary %s, shadow %s",
            self.path,
            split.canary or "none",
            split.shadow or "none",
        )
        return split
