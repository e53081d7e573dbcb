"""Which live objects a TFModel may write: only those it controls (pure).

An object is this TFModel's when its controller ownerReference carries the TFModel's UID.
Anything else with a child's name (hand-made, another TFModel's, a deleted TFModel's not yet
collected) is left alone and reported as a conflict.
"""

from __future__ import annotations

import enum
from typing import Any


class Ownership(enum.Enum):
    ABSENT = "absent"  # no such object: create it
    OURS = "ours"  # controlled by this TFModel: apply
    FOREIGN = "foreign"  # someone else's: never touch


def controller_ref(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The ownerReference with `controller: true` (the API server allows at most one)."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), None)


def classify(live: dict[str, Any] | None, owner_uid: str) -> Ownership:
    if live is None:
        return Ownership.ABSENT
    ref = controller_ref(live)
    if ref is not None and ref.get("uid") == owner_uid:
        return Ownership.OURS
    return Ownership.FOREIGN


def conflict_message(kind: str, name: str, live: dict[str, Any], owner_name: str) -> str:
    """Names the object and who controls it, and what the user can do."""
    ref = controller_ref(live)
    if ref is None:
        who = "has no controller (made by hand or by another tool)"
    elif ref.get("kind") == "TFModel" and ref.get("name") == owner_name:
        who = (
            f"is controlled by an earlier TFModel {owner_name} (uid {ref.get('uid')}); "
            "the garbage collector removes it, then it is recreated"
        )
    else:
        who = f"is controlled by {ref.get('kind')} {ref.get('name')}"
    return (
        f"{kind} {name} already exists and {who}; it was not modified. "
        f"Delete or rename that {kind}, or rename this TFModel"
    )
