"""Canary traffic split (tfmodel addition): `--traffic_split_file`, re-read like models.config.

The file is JSON, kept beside models.config so TF Serving's own config stays standard:

    {"models": {"resnet": {"canaryPercent": 10}}}

For a model listed with canaryPercent > 0 whose `stable` and `canary` labels both exist,
requests for the `stable` label and requests naming neither version nor label go to the
`canary` version with that probability (only while it is AVAILABLE), otherwise to `stable`.
Requests naming a version or the `canary` label get exactly what they ask for. A model
listed at canaryPercent 0 serves unversioned requests from `stable` (not from the highest
version, which is the canary during a rollout); an unlisted model follows TF Serving's rules.
"""

from __future__ import annotations

import json
import logging

from tfmodel_server.core.manager import CANARY_LABEL, STABLE_LABEL

from .config_file import ChangedFile, ConfigError

__all__ = ["CANARY_LABEL", "STABLE_LABEL", "TrafficSplitWatcher", "parse_traffic_split"]

log = logging.getLogger(__name__)


def parse_traffic_split(data: bytes, where: str) -> dict[str, float]:
    """model name -> canary fraction in [0, 1]; ConfigError naming the problem."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{where}: traffic split is not JSON: {e}") from None
    models = doc.get("models", {}) if isinstance(doc, dict) else None
    if not isinstance(models, dict):
        raise ConfigError(f'{where}: traffic split must be {{"models": {{NAME: {{...}}}}}}')
    fractions = {}
    for name, entry in models.items():
        percent = entry.get("canaryPercent", 0) if isinstance(entry, dict) else None
        if isinstance(percent, bool) or not isinstance(percent, (int, float)):
            raise ConfigError(f"{where}: model {name}: canaryPercent must be a number")
        if not 0 <= percent <= 100:
            raise ConfigError(f"{where}: model {name}: canaryPercent {percent} is not in [0, 100]")
        fractions[str(name)] = float(percent) / 100.0
    return fractions


class TrafficSplitWatcher:
    """Re-reads the split file by path (config_file.ChangedFile, as models.config); a missing
    file means no split. Reports a new split only when the content changed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = ChangedFile(path)

    def read_if_changed(self) -> dict[str, float] | None:
        try:
            data = self._file.poll()
        except OSError:
            log.info("traffic split file %s absent: no canary split", self.path)
            return {}
        if data is None:
            return None
        fractions = parse_traffic_split(data, self.path)
        log.info("traffic split %s: %s", self.path, fractions or "none")
        return fractions
