"""--auth_token_file: a shared-secret check on REST and gRPC (tfmodel addition).

Clients send `authorization: <token>` or `authorization: Bearer <token>` (HTTP
header or gRPC metadata), as PAI-EAS clients do. The file holds one token a
line (blank lines and # comments ignored) and is re-read when it changes, so a
mounted Secret can rotate tokens without a restart. Probes stay open.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time

log = logging.getLogger(__name__)

RECHECK_SECONDS = 1.0


class TokenFileError(ValueError):
    """An unreadable or empty token file at start-up."""


class TokenStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._tokens: tuple[bytes, ...] = ()
        self._checked = 0.0
        self._reload(initial=True)

    def _reload(self, initial: bool = False) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return
            with open(self.path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            if initial:
                raise TokenFileError(f"cannot read --auth_token_file {self.path!r}: {e}") from None
            log.error("auth token file unreadable, keeping the previous tokens: %s", e)
            return
        tokens = tuple(
            line.strip().encode() for line in lines if line.strip() and not line.startswith("#")
        )
        if not tokens:
            if initial:
                raise TokenFileError(f"--auth_token_file {self.path!r} holds no token")
            log.error("auth token file %s is empty, keeping the previous tokens", self.path)
            return
        self._tokens, self._stamp = tokens, stamp
        if not initial:
            log.info("auth token file %s re-read: %d token(s)", self.path, len(tokens))

    def allows(self, header: str | None) -> bool:
        """True if the authorization value carries one of the tokens."""
        now = time.monotonic()
        if now - self._checked >= RECHECK_SECONDS:
            with self._lock:
                if now - self._checked >= RECHECK_SECONDS:
                    self._checked = now
                    self._reload()
        if not header:
            return False
        value = header.strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        given = value.encode()
        # compare_digest against every token: no early exit that leaks which matched.
        return any([hmac.compare_digest(given, token) for token in self._tokens])
