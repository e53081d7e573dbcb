"""Version policy: which of the versions on disk a model should serve."""

from __future__ import annotations

from collections.abc import Iterable

from tensorflow_serving.config import file_system_storage_path_source_pb2

ServableVersionPolicy = (
    file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy
)


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
