"""Runtime: a snapshot of a running server — where it listens and the tokens it accepts.

Owns: the ``Runtime`` value ``LoopbackServer.runtime()`` and ``loopback.active_runtime()``
return, with its tokens kept out of ``repr``.
Must not know: how a server runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .auth import Grant


@dataclass(frozen=True)
class Runtime:
    """A snapshot of a running server: where it listens and the tokens it accepts.

    ``token`` is the default (owner) token, ``tokens`` every live token and ``grants``
    what each one allows (scope, bound headers, tool allow-list). The tokens are
    secrets: they are left out of ``repr`` so that logging a runtime does not leak them.
    """

    host: str
    port: int
    url: str
    token: str = field(repr=False)
    tokens: tuple[str, ...] = field(repr=False, default=())
    grants: tuple[Grant, ...] = field(repr=False, default=())

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value a client sends."""
        return f"Bearer {self.token}"
