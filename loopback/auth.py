"""Bearer tokens: minting, revoking and checking them in constant time.

Owns: the set of valid tokens of one server and what each one grants (scope, bound
headers, tool allow-list, expiry, label), ending grants (revoked, or swept once their
TTL has run out) and telling listeners of each one that ends (the server then ends its
sessions, streams and state).
Must not know: HTTP parsing, sockets or MCP.

A token is 256 bits from ``os.urandom`` (``listening.new_token``). Lookup goes through
the SHA-256 of the presented token, so the time taken does not depend on how many
leading characters of a real token were guessed, and the final comparison is
``hmac.compare_digest``.
Tokens are never logged; their ``repr`` is masked.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Iterable, Mapping, Optional

from .http11 import is_token
from .listening import new_token

OWNER = "owner"
_SCOPE_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


@dataclass(frozen=True, eq=False)  # compared by identity: a grant is one issuance
class Grant:
    """What one bearer token is allowed.

    Attributes:
        token: the secret itself (masked in ``repr``).
        scope: ``"owner"`` sees every tool; any other scope does not see tools
            registered with ``owner_only=True``.
        headers: request headers bound to the token (names lower-cased): a tool's
            ``Context.headers`` shows these values whatever the request claims.
        tools: when set, the only tool names this token can list and call.
        expires_at: ``time.monotonic()`` deadline after which the token is refused.
        label: who the token was issued to, for people and logs (an agent run's name, say);
            not a secret, never checked.
    """

    token: str = field(repr=False)
    scope: str = OWNER
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    tools: Optional[frozenset[str]] = None
    expires_at: Optional[float] = None
    label: Optional[str] = None

    @property
    def is_owner(self) -> bool:
        return self.scope == OWNER

    def allows(self, tool_name: str, owner_only: bool) -> bool:
        """Whether this token may see and call a tool."""
        if owner_only and self.scope != OWNER:
            return False
        return self.tools is None or tool_name in self.tools

    def expired(self, now: Optional[float] = None) -> bool:
        return self.expires_at is not None and (time.monotonic() if now is None else now) >= self.expires_at


def check_grant(
    scope: str = OWNER,
    *,
    headers: Optional[Mapping[str, str]] = None,
    tools: Optional[Iterable[str]] = None,
    ttl: Optional[float] = None,
    label: Optional[str] = None,
) -> dict[str, str]:
    """Validate what a grant would be issued with (``TokenStore.issue`` does it too, so a
    caller can check before it starts anything); the bound headers, names lower-cased.
    Bad values raise ``ValueError``."""
    if not isinstance(scope, str) or not _SCOPE_RE.match(scope):
        raise ValueError(f"invalid scope {scope!r}: use 1-64 characters from A-Z a-z 0-9 _ . : -")
    bound = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not is_token(name) or name.lower() == "authorization":
            raise ValueError(f"invalid bound header name {name!r}")
        if not isinstance(value, str) or not value.isprintable():
            raise ValueError(f"bound header {name!r} needs a printable string value")
        bound[name.lower()] = value
    if isinstance(tools, str):
        raise ValueError("tools must be a collection of tool names, not one string")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0):
        raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
    if label is not None and (not isinstance(label, str) or not label.isprintable() or len(label) > 200):
        raise ValueError("label must be a printable string of at most 200 characters")
    return bound


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class TokenStore:
    """The tokens one server accepts. Thread-safe; checks take no lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: dict[bytes, Grant] = {}
        self._live: frozenset[int] = frozenset()  # ids of the grants in _grants, for still_live
        # Told of each grant that ends (revoked, or found expired), after it is gone:
        # the server ends its sessions, streams and state.
        self._on_end: list[Callable[[Grant], None]] = []

    def on_end(self, listener: Callable[[Grant], None]) -> None:
        """Call ``listener(grant)`` for every grant that ends from now on (revoked or expired)."""
        self._on_end.append(listener)

    def issue(
        self,
        scope: str = OWNER,
        token: Optional[str] = None,
        *,
        headers: Optional[Mapping[str, str]] = None,
        tools: Optional[Iterable[str]] = None,
        ttl: Optional[float] = None,
        label: Optional[str] = None,
    ) -> Grant:
        """Mint (or adopt) a token and return its grant; see ``Grant`` for the fields.

        ``ttl`` is in seconds from now. Bad values raise ``ValueError``.
        """
        if token is None:
            token = new_token()
        elif not isinstance(token, str) or len(token) < 32 or not token.isascii() or not token.isprintable() or " " in token:
            raise ValueError("a bearer token must be at least 32 printable ASCII characters without spaces")
        bound = check_grant(scope, headers=headers, tools=tools, ttl=ttl, label=label)
        grant = Grant(
            token=token,
            scope=scope,
            headers=MappingProxyType(bound),
            tools=None if tools is None else frozenset(tools),
            expires_at=None if ttl is None else time.monotonic() + ttl,
            label=label,
        )
        with self._lock:
            grants = dict(self._grants)
            grants[_digest(token.encode("ascii"))] = grant
            self._grants = grants
            self._live = frozenset(map(id, grants.values()))
        return grant

    def revoke(self, token: str) -> bool:
        """Stop accepting ``token``; True if it was valid."""
        key = _digest(token.encode("utf-8", "surrogateescape"))
        with self._lock:
            grant = self._grants.get(key)
            if grant is None:
                return False
            grants = dict(self._grants)
            del grants[key]
            self._live = frozenset(map(id, grants.values()))
            self._grants = grants
        for listener in self._on_end:
            listener(grant)
        return True

    def sweep(self, now: Optional[float] = None) -> int:
        """Revoke every grant whose TTL has run out; how many there were."""
        now = time.monotonic() if now is None else now
        expired = [grant for grant in self._grants.values() if grant.expired(now)]
        return sum(self.revoke(grant.token) for grant in expired)

    def next_expiry(self) -> Optional[float]:
        """The earliest ``expires_at`` of a live grant, or None when none expires."""
        deadlines = [grant.expires_at for grant in self._grants.values() if grant.expires_at is not None]
        return min(deadlines) if deadlines else None

    def check(self, presented: bytes) -> Optional[Grant]:
        """The grant of a presented token, or None."""
        grant = self._grants.get(_digest(presented))
        if grant is None or not hmac.compare_digest(presented, grant.token.encode("ascii")):
            return None
        if grant.expires_at is not None and grant.expired():
            self.revoke(grant.token)
            return None
        return grant

    def still_live(self, grant: Grant) -> bool:
        """Whether ``grant``, which ``check`` gave for a token, is still live (neither
        revoked nor expired): for a connection presenting the very same token bytes
        again, without hashing them again. False sends the caller back to ``check``."""
        return id(grant) in self._live and (grant.expires_at is None or not grant.expired())

    def grants(self) -> tuple[Grant, ...]:
        """The live grants, oldest first."""
        now = time.monotonic()
        return tuple(grant for grant in self._grants.values() if not grant.expired(now))

    def tokens(self) -> tuple[str, ...]:
        return tuple(grant.token for grant in self.grants())
