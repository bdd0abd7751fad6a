"""How a host launches each coding agent with its tools: one function per client format.

Each function prepares one run in the agent's format, runs the agent on a prompt without
interaction, and closes the run (its token is revoked, its config deleted). ``command()``
puts the format's arguments where the agent reads them, and ``env`` carries the token
(and the config path, for agents that find their config through the environment):

    claude    claude --mcp-config FILE --allowedTools mcp__loopback --strict-mcp-config -p PROMPT
    codex     codex -c mcp_servers.loopback.url=... -c ...bearer_token_env_var=... exec PROMPT
    gemini    GEMINI_CLI_SYSTEM_SETTINGS_PATH=FILE gemini -p PROMPT
    opencode  OPENCODE_CONFIG=FILE opencode run PROMPT
    cursor    PROJECT/.cursor/mcp.json, then in PROJECT: cursor-agent -p --approve-mcps PROMPT
    generic   python stand_in_agent.py FILE  (see host_spawns_agent.py)

The token itself is in the environment (``LOOPBACK_TOKEN``), never in the file or on the
command line. Editors (vscode, windsurf, zed) are long-lived and read their MCP settings
from the workspace or the user profile rather than from one run: point them at a
``python -m loopback serve`` with ``python -m loopback config --format vscode`` (it prints
the file's content, and the ``export`` lines for the editor's environment).

A host imports these next to its own ``@loopback.tool`` functions and calls, say,
``claude("Summarise order A-17")``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import loopback


def run_agent(format: str, argv: list[str], *, directory: Optional[str] = None, cwd: Optional[str] = None) -> int:
    """Run ``argv`` as one agent run in ``format``; the agent's exit code."""
    with loopback.prepare_agent_run(format=format, directory=directory) as run:
        if not run.enabled:
            print(f"running without MCP: {run.warning}", file=sys.stderr)
        return subprocess.run(run.command(argv), env={**os.environ, **run.env}, cwd=cwd).returncode


def claude(prompt: str) -> int:
    return run_agent("claude", ["claude", "-p", prompt])


def codex(prompt: str) -> int:
    return run_agent("codex", ["codex", "exec", prompt])


def gemini(prompt: str) -> int:
    return run_agent("gemini", ["gemini", "-p", prompt])


def opencode(prompt: str) -> int:
    return run_agent("opencode", ["opencode", "run", prompt])


def cursor(prompt: str, project: str = ".") -> int:
    # Cursor's agent reads .cursor/mcp.json in the project; an existing one is never
    # overwritten (the run then goes without MCP, with a warning).
    settings = Path(project, ".cursor")
    made = not settings.exists()
    settings.mkdir(exist_ok=True)
    try:
        return run_agent("cursor", ["cursor-agent", "-p", "--approve-mcps", prompt], directory=str(settings), cwd=project)
    finally:
        if made:
            settings.rmdir()
