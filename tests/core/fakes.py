"""TF Serving's core/test_util fakes: a loader and a source the tests steer.

The manager's state machine runs on these in milliseconds, no TensorFlow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import grpc
from tfmodel_server.core.interfaces import ModelSourceState, VersionDir
from tfmodel_server.errors import ServingError


@dataclass
class FakeServable:
    name: str
    version: int
    events: list[str]
    unloaded: bool = False

    def unload(self) -> None:
        self.unloaded = True
        self.events.append(f"unload {self.name}:{self.version}")


@dataclass
class FakeLoader:
    """Loads instantly unless gated; fails the first `failures[(name, v)]` attempts."""

    events: list[str] = field(default_factory=list)
    failures: dict[tuple[str, int], int] = field(default_factory=dict)
    gates: dict[tuple[str, int], threading.Event] = field(default_factory=dict)
    attempts: dict[tuple[str, int], int] = field(default_factory=dict)
    # Called in the load thread as each attempt begins (name, version).
    on_attempt: Callable[[str, int], None] | None = None

    def gate(self, name: str, version: int) -> threading.Event:
        """Loads of (name, version) block until the returned event is set."""
        return self.gates.setdefault((name, version), threading.Event())

    def load(self, name: str, version: int, path: str) -> FakeServable:
        key = (name, version)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self.events.append(f"load {name}:{version}")
        if self.on_attempt is not None:
            self.on_attempt(name, version)
        gate = self.gates.get(key)
        if gate is not None and not gate.wait(10):
            raise ServingError(grpc.StatusCode.INTERNAL, "fake gate never opened")
        if self.failures.get(key, 0) > 0:
            self.failures[key] -= 1
            self.events.append(f"failed {name}:{version}")
            raise ServingError(grpc.StatusCode.DATA_LOSS, f"fake load failure of {name}:{version}")
        self.events.append(f"loaded {name}:{version}")
        return FakeServable(name, version, self.events)


class FakeSource:
    """Versions on 'disk' per base path, set by the test; `missing` base paths error."""

    def __init__(self) -> None:
        self.disk: dict[str, set[int]] = {}
        self.missing: set[str] = set()
        self.models: dict[str, str] = {}
        self.content: dict[tuple[str, int], int] = {}  # bump to simulate new files

    def put(self, base_path: str, *versions: int) -> None:
        self.disk.setdefault(base_path, set()).update(versions)

    def set_models(self, models: Mapping[str, str]) -> None:
        self.models = dict(models)

    def poll(self) -> dict[str, ModelSourceState]:
        states = {}
        for name, base in self.models.items():
            state = ModelSourceState(name=name, base_path=base)
            if base in self.missing:
                state.error = f"Could not find base path {base} for servable {name}"
            else:
                for v in self.disk.get(base, set()):
                    fp = (("saved_model.pb", self.content.get((base, v), 0), 0),)
                    state.complete[v] = VersionDir(v, f"{base}/{v}", fp)
            states[name] = state
        return states
