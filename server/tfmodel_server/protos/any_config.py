"""ClassRegistry::CreateFromAny's checks (TF Serving util/class_registration.h): an Any
config names a message type that must be known and have a factory registered."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pool


class AnyConfigError(ValueError):
    """The Any cannot be used; the message is TF Serving's status ("CODE: text")."""


def unpack_registered(any_config: Any, registered: type, what: str) -> Any:
    """The Any's message if its type is `registered` (the one factory this server has
    for `what`), else TF Serving's error for an unparsable, unknown or unregistered type."""
    parts = any_config.type_url.split("/")
    if len(parts) < 2 or not parts[-1]:
        raise AnyConfigError(
            "INVALID_ARGUMENT: Supplied config's type_url could not be parsed: "
            f"{any_config.type_url}"
        )
    type_name = parts[-1]
    expected = registered.DESCRIPTOR.full_name  # type: ignore[attr-defined]
    if type_name != expected:
        try:
            descriptor_pool.Default().FindMessageTypeByName(type_name)
        except KeyError:
            raise AnyConfigError(
                f"INTERNAL: Unable to find compiled-in proto descriptor of type {type_name}"
            ) from None
        raise AnyConfigError(
            f"INVALID_ARGUMENT: Couldn't find factory for config proto message type "
            f"{type_name} (the {what} registered here takes {expected})"
        )
    message = registered()
    try:
        unpacked = any_config.Unpack(message)
    except Exception:  # DecodeError: bytes that are not that message
        unpacked = False
    if not unpacked:
        # Not text format: printing it would decode (and fail on) the value again.
        raise AnyConfigError(
            f"INVALID_ARGUMENT: Malformed content of Any: type_url: {any_config.type_url!r} "
            f"value: {any_config.value!r}"
        )
    return message
