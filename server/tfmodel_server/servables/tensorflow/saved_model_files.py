"""Which files make a SavedModel directory complete (no TensorFlow import).

The source offers a version only when this holds and the directory's content
is unchanged across two polls; the loader checks the same before loading.
"""

from __future__ import annotations

import os
import re

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
TFLITE_MODEL_FILE = "model.tflite"  # loaded instead with --prefer_tflite_model

_SHARD = re.compile(r"^variables\.data-(\d{5})-of-(\d{5})$")


def has_saved_model(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in SAVED_MODEL_FILES)


def has_tflite_model(path: str) -> bool:
    return os.path.isfile(os.path.join(path, TFLITE_MODEL_FILE))


def incomplete_reason(path: str, prefer_tflite_model: bool = False) -> str | None:
    """Why `path` is not (yet) a loadable SavedModel, or None.

    A half-copied export is caught when saved_model.pb is missing, or when
    variables/ holds data shards without variables.index or without every
    shard `variables.data-K-of-N`. A copy that stalls with both files of a
    one-shard model present but truncated is only caught by the two-poll
    fingerprint check (README, "Limits and failure behaviour"). With
    `prefer_tflite_model`, a `model.tflite` alone makes the dir complete (TF
    Serving loads it instead of the SavedModel).
    """
    if prefer_tflite_model and has_tflite_model(path):
        return None
    if not has_saved_model(path):
        return "no saved_model.pb or saved_model.pbtxt"
    variables = os.path.join(path, "variables")
    try:
        names = set(os.listdir(variables))
    except FileNotFoundError:
        return None  # a model without variables
    except OSError as e:
        return f"cannot list variables/: {e.strerror or e}"
    return _variables_reason(names)


def listing_incomplete_reason(relpaths: set[str], prefer_tflite_model: bool = False) -> str | None:
    """incomplete_reason for a listing of relative paths (an object-store version prefix)."""
    if prefer_tflite_model and TFLITE_MODEL_FILE in relpaths:
        return None
    if not any(f in relpaths for f in SAVED_MODEL_FILES):
        return "no saved_model.pb or saved_model.pbtxt"
    names = {p[len("variables/") :] for p in relpaths if p.startswith("variables/")}
    return _variables_reason(names)


def _variables_reason(names: set[str]) -> str | None:
    """Why the file names in variables/ are not a complete checkpoint (None: complete or none)."""
    shards = [m for m in map(_SHARD.match, names) if m]
    if not shards and "variables.index" not in names:
        return None
    if "variables.index" not in names:
        return "variables/ has data shards but no variables.index"
    if not shards:
        return "variables/ has variables.index but no data shard"
    total = int(shards[0].group(2))
    expected = {f"variables.data-{k:05d}-of-{total:05d}" for k in range(total)}
    missing = sorted(expected - names)
    if missing:
        return f"variables/ is missing {', '.join(missing[:3])}"
    return None
