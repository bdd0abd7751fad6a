"""Bearer tokens: minting, revoking and checking them in constant time.

Owns: the set of valid tokens of one server and what each one grants (its scope).
Must not know: HTTP parsing, sockets or MCP.

A token is 256 bits from ``secrets``. Lookup goes through the SHA-256 of the
presented token, so the time taken does not depend on how many leading characters
of a real token were guessed, and the final comparison is ``hmac.compare_digest``.
Tokens are never logged; their ``repr`` is masked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass, field
from typing import Optional

OWNER = "owner"


@dataclass(frozen=True)
class Grant:
    """What one bearer token is allowed: for now, a named scope."""

    token: str = field(repr=False)
    scope: str = OWNER


def new_token() -> str:
    """A fresh 256-bit bearer token (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class TokenStore:
    """The tokens one server accepts. Thread-safe; checks take no lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: dict[bytes, Grant] = {}

    def issue(self, scope: str = OWNER, token: Optional[str] = None) -> Grant:
        """Mint (or adopt) a token bound to ``scope`` and return its grant."""
        if token is None:
            token = new_token()
        elif not isinstance(token, str) or len(token) < 32 or not token.isascii() or not token.isprintable() or " " in token:
            raise ValueError("a bearer token must be at least 32 printable ASCII characters without spaces")
        grant = Grant(token=token, scope=scope)
        with self._lock:
            grants = dict(self._grants)
            grants[_digest(token.encode("ascii"))] = grant
            self._grants = grants
        return grant

    def revoke(self, token: str) -> bool:
        """Stop accepting ``token``; True if it was valid."""
        key = _digest(token.encode("utf-8", "surrogateescape"))
        with self._lock:
            if key not in self._grants:
                return False
            grants = dict(self._grants)
            del grants[key]
            self._grants = grants
            return True

    def check(self, presented: bytes) -> Optional[Grant]:
        """The grant of a presented token, or None."""
        grant = self._grants.get(_digest(presented))
        if grant is not None and hmac.compare_digest(presented, grant.token.encode("ascii")):
            return grant
        return None

    def tokens(self) -> tuple[str, ...]:
        return tuple(grant.token for grant in self._grants.values())
