"""What the manager needs from the layers around it (TF Serving's Source/Loader).

The manager imports only these protocols, never TensorFlow or the file system
source: server.py plugs in SavedModelLoader and FileSystemSource, the manager's
state-machine tests plug in fakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

# (relative path, size, mtime_ns) of every file: what "the same content" means.
Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class VersionDir:
    """A complete version dir; fingerprint is its last stable content."""

    version: int
    path: str
    fingerprint: Fingerprint


@dataclass
class ModelSourceState:
    """What one poll found for one model."""

    name: str
    base_path: str
    complete: dict[int, VersionDir] = field(default_factory=dict)
    pending: set[int] = field(default_factory=set)  # present but not (yet) complete
    error: str | None = None  # base path missing or unreadable: versions unknown


class Servable(Protocol):
    """A loaded version; the manager only ever unloads it."""

    def unload(self) -> None: ...


S = TypeVar("S", bound=Servable)
S_co = TypeVar("S_co", bound=Servable, covariant=True)


class Loader(Protocol[S_co]):
    """Blocking load of one version dir (runs in a worker thread)."""

    def load(self, name: str, version: int, path: str) -> S_co: ...


class Source(Protocol):
    """Discovers the version dirs of each model's base path (poll() blocks)."""

    def set_models(self, models: Mapping[str, str]) -> None: ...

    def poll(self) -> dict[str, ModelSourceState]: ...
