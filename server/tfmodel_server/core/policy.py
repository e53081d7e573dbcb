"""Version policy: which of the versions on disk a model should serve."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeAlias

# FileSystemStoragePathSourceConfig.ServableVersionPolicy; the generated protos
# ship no type stubs, so to the type checker it is Any.
ServableVersionPolicy: TypeAlias = Any


def aspired_versions(policy: ServableVersionPolicy, available_on_disk: Iterable[int]) -> set[int]:
    """latest{n} (default latest 1), all{}, or specific{versions} present on disk."""
    on_disk = set(available_on_disk)
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return on_disk
    if choice == "specific":
        return on_disk & set(policy.specific.versions)
    # latest, or unset; num_versions 0 means 1 (file_system_storage_path_source.cc).
    count = max(policy.latest.num_versions, 1) if choice == "latest" else 1
    return set(sorted(on_disk, reverse=True)[:count])


def describe(policy: ServableVersionPolicy) -> str:
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return "all"
    if choice == "specific":
        return "specific " + ",".join(str(v) for v in sorted(policy.specific.versions))
    count = max(policy.latest.num_versions, 1) if choice == "latest" else 1
    return f"latest {count}"


def versions_to_unload(serving: Iterable[int], aspired: set[int], copying_in: bool) -> list[int]:
    """AvailabilityPreservingPolicy: which un-aspired serving versions may unload now.

    One may unload only when an aspired version serves, nothing is aspired at all
    (and no version is still being copied in), or another un-aspired one still
    serves; the lowest go first, so a model never drops to zero versions while a
    replacement is on its way.
    """
    serving = set(serving)
    unaspired = sorted(v for v in serving if v not in aspired)
    has_aspired_serving = bool(serving & aspired)
    nothing_aspired = not aspired and not copying_in
    unload: list[int] = []
    while unaspired and (nothing_aspired or has_aspired_serving or len(unaspired) > 1):
        unload.append(unaspired.pop(0))
    return unload
