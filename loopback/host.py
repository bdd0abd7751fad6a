"""Host integration: what a program that spawns coding agents calls before each agent run.

Owns: the "MCP if needed, never fatal" policy of the TypeScript original's lazy start —
start the process-wide server only for a run that needs MCP; if it cannot start,
warn and let the run go on without MCP.
Must not know: HTTP or MCP details.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

from . import lifecycle
from .server import Runtime
from .settings import Settings
from .tools import ToolRegistry

_log = logging.getLogger("loopback")


@dataclass(frozen=True)
class PreparedRun:
    """The MCP side of one agent run. ``runtime`` is None when the run goes without MCP."""

    runtime: Optional[Runtime] = None
    warning: Optional[str] = None

    @property
    def enabled(self) -> bool:
        return self.runtime is not None

    def http_config(self) -> Optional[dict[str, Any]]:
        """A generic Streamable HTTP client entry: ``{"type", "url", "headers"}``, or None."""
        if self.runtime is None:
            return None
        return {"type": "http", "url": self.runtime.url, "headers": {"Authorization": self.runtime.authorization}}


def prepare_agent_run(
    needs_mcp: bool = True,
    *,
    port: Optional[int] = None,
    registry: Optional[ToolRegistry] = None,
    settings: Optional[Settings] = None,
) -> PreparedRun:
    """Make MCP ready for one agent run, starting the shared server only if the run needs it.

    Never raises for a failed start: the failure is logged as a warning and returned
    in ``warning``, and the run goes on without MCP.
    """
    if not needs_mcp:
        return PreparedRun()
    try:
        server = lifecycle.ensure(port, registry=registry, settings=settings)
        return PreparedRun(runtime=server.runtime())
    except Exception as exc:
        message = f"MCP loopback server failed to start: {exc}"
        _log.warning("%s; the agent run goes on without MCP", message)
        return PreparedRun(warning=message)
