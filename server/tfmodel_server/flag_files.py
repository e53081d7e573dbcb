"""Reading the small text files that flags name (batching, monitoring configs)."""

from __future__ import annotations

import os
import re
from typing import Any

from google.protobuf import text_format


def read_flag_file(path: str | os.PathLike, what: str, error: type[Exception]) -> str:
    """The file's text; an unreadable file raises `error` naming it ("Cannot read <what> ...")."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise error(f"Cannot read {what} {path}: {e.strerror or e}") from None


def parse_status_file(path: str, what: str, message: Any, error: type[Exception]) -> None:
    """Parse the text-format file a flag names into `message`, with TF Serving's status
    wording: NOT_FOUND when unreadable, INVALID_ARGUMENT naming the proto and the position."""
    try:
        text = read_flag_file(path, what, error)
    except error as e:
        raise error(f"NOT_FOUND: {e}") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        problem = re.sub(r"^\d+:\d+\s*:\s*", "", str(e))
        where = f"{e.GetLine()}:{e.GetColumn()}: " if e.GetLine() is not None else ""
        raise error(
            f"INVALID_ARGUMENT: Invalid protobuf file: '{path}': Error parsing text-format "
            f"{message.DESCRIPTOR.full_name}: {where}{problem}"
        ) from None
