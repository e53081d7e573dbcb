"""Reading the small text files that flags name (batching, monitoring configs)."""

from __future__ import annotations

import os


def read_flag_file(path: str | os.PathLike, what: str, error: type[Exception]) -> str:
    """The file's text; an unreadable file raises `error` naming it ("Cannot read <what> ...")."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise error(f"Cannot read {what} {path}: {e.strerror or e}") from None
