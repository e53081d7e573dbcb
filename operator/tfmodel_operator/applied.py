"""What this operator process last applied to each child, so a round can skip no-op applies.

Server-side apply of an unchanged object writes nothing, but it is still a full request the
API server decodes, merges and compares; every status round made one per child. A child
needs applying again only when

- the manifest the operator would apply changed (its hash), or
- the object is not the one last applied (deleted and recreated: another UID), or
- another field manager took a field the operator set: ownership moves to whoever changes
  a field, so the operator's own managedFields entry is no longer what it was after the
  apply (a `kubectl edit`, `kubectl scale`, a controller overwriting a value).

A child the operator does not watch (a ServiceMonitor) is read again at most every
RECHECK_S seconds while its manifest is unchanged; watched children come from the watch.

Kept in memory only: after a restart every child is applied once (a no-op write) and
remembered again. Pure: no API calls here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from . import names


def manifest_hash(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def own_fields_hash(obj: dict[str, Any], manager: str = names.FIELD_MANAGER) -> str | None:
    """Hash of `manager`'s Apply entry (the fields it owns), None when it owns nothing."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if (
            entry.get("manager") == manager
            and entry.get("operation") == "Apply"
            and not entry.get("subresource")
        ):
            return manifest_hash(entry.get("fieldsV1") or {})
    return None


@dataclass(frozen=True)
class Record:
    uid: str
    desired: str  # manifest_hash of what was applied
    fields: str | None  # own_fields_hash right after the apply


Key = tuple[str, str, str]  # (kind, namespace, name)
RECHECK_S = 300.0


@dataclass
class AppliedChildren:
    """Per operator process: the last apply of each child and which optional ones are gone."""

    records: dict[Key, Record] = field(default_factory=dict)
    known_absent: set[Key] = field(default_factory=set)
    discovery: dict[str, tuple[float, bool]] = field(default_factory=dict)  # API -> (when, served)
    last_checked: dict[Key, float] = field(default_factory=dict)  # unwatched: when last read

    def checked(self, key: Key, now: float) -> None:
        self.last_checked[key] = now

    def recently_checked(self, key: Key, manifest: dict[str, Any], now: float) -> bool:
        """An unwatched child read and found as applied less than RECHECK_S ago."""
        record = self.records.get(key)
        when = self.last_checked.get(key)
        return (
            record is not None
            and when is not None
            and now - when < RECHECK_S
            and record.desired == manifest_hash(manifest)
        )

    def up_to_date(self, key: Key, manifest: dict[str, Any], live: dict[str, Any]) -> bool:
        record = self.records.get(key)
        return (
            record is not None
            and record.uid == (live.get("metadata") or {}).get("uid")
            and record.desired == manifest_hash(manifest)
            and record.fields == own_fields_hash(live)
        )

    def remember(self, key: Key, manifest: dict[str, Any], result: dict[str, Any]) -> None:
        uid = (result.get("metadata") or {}).get("uid")
        if uid:
            self.records[key] = Record(uid, manifest_hash(manifest), own_fields_hash(result))
        self.known_absent.discard(key)

    def forget(self, key: Key) -> None:
        self.records.pop(key, None)
        self.last_checked.pop(key, None)

    def mark_absent(self, key: Key) -> None:
        """An optional child seen missing or not ours; no need to look again until applied."""
        self.records.pop(key, None)
        self.known_absent.add(key)
