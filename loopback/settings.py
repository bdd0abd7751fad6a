"""Settings: every tunable of a server (limits, timeouts, allowed origins) in one object.

Owns: the documented defaults and their validation, done once at construction.
Must not know: sockets, threads or MCP messages.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Limits and policy of one server. Immutable; build a new one with ``dataclasses.replace``.

    Attributes:
        max_body_bytes: largest request body accepted; a larger one gets 413 and is
            never read (1 MiB).
        body_timeout: seconds a whole request head, and then its body, may take to
            arrive once its first byte has come; a body that trickles in slower gets 408,
            a head is dropped, and the connection is closed (30 s).
        idle_timeout: seconds a keep-alive connection may sit between requests before
            the server closes it, so silent clients cannot pin threads forever (120 s).
        close_timeout: seconds ``close()`` waits for requests still running (5 s).
        page_size: items per ``tools/list`` page; a longer list gets a ``nextCursor`` (200).
        allowed_origins: browser origins accepted besides loopback ones, exactly as the
            browser sends them (``"https://app.example"``). Empty by default.
        allow_non_loopback: permit binding a host that is not a loopback address.
            Off by default; turning it on logs a warning at every start.
        port_fallback: when a pinned port is taken, start on an ephemeral port with a
            warning instead of failing (True). With False the start raises
            ``PortInUseError``.
        tool_timeout: seconds a tool call may run before the client gets an error result
            and the tool's ``Context.cancelled`` is set (None: no limit, the default).
            With a limit, each call runs on a thread of its own, which a tool that
            never returns keeps (threads cannot be killed).
        server_name: ``serverInfo.name`` sent at ``initialize`` ("loopback").
        instructions: optional ``instructions`` sent at ``initialize``.
    """

    max_body_bytes: int = MIB
    body_timeout: float = 30.0
    idle_timeout: float = 120.0
    close_timeout: float = 5.0
    page_size: int = 200
    allowed_origins: tuple[str, ...] = ()
    allow_non_loopback: bool = False
    port_fallback: bool = True
    tool_timeout: Optional[float] = None
    server_name: str = "loopback"
    instructions: Optional[str] = None

    def __post_init__(self) -> None:
        if isinstance(self.max_body_bytes, bool) or not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be a positive integer, not {self.max_body_bytes!r}")
        for name in ("body_timeout", "idle_timeout", "close_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        timeout = self.tool_timeout
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (0 < timeout < math.inf)):
            raise ValueError(f"tool_timeout must be a positive number of seconds or None, not {timeout!r}")
        if isinstance(self.page_size, bool) or not isinstance(self.page_size, int) or self.page_size < 1:
            raise ValueError(f"page_size must be a positive integer, not {self.page_size!r}")
        if isinstance(self.allowed_origins, str):
            raise ValueError("allowed_origins must be a sequence of origins, not a single string")
        origins = tuple(self.allowed_origins)
        for origin in origins:
            if not isinstance(origin, str) or "://" not in origin or origin.endswith("/"):
                raise ValueError(f"allowed origin must look like 'scheme://host[:port]', not {origin!r}")
        object.__setattr__(self, "allowed_origins", tuple(o.lower() for o in origins))
        if not isinstance(self.server_name, str) or not self.server_name:
            raise ValueError("server_name must be a non-empty string")
        if self.instructions is not None and not isinstance(self.instructions, str):
            raise ValueError("instructions must be a string or None")

    def replace(self, **changes: object) -> "Settings":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
