"""A host program that lends its Python functions to a coding agent it spawns.

The host registers tools, prepares one agent run (the shared server starts now, lazily,
and mints a token for this run alone, bound to the run's session key), spawns the agent
with the run's environment and arguments, and closes the run: the token is revoked and
the config deleted, while the server stays up for the host's next run.

    python examples/host_spawns_agent.py

The agent here is ``stand_in_agent.py`` (it needs ``pip install mcp``); a real host would
spawn ``claude``, ``codex`` ... the same way (see ``agents.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
sys.path.insert(0, str(EXAMPLES.parent))  # run from a checkout: find the loopback package

import loopback  # noqa: E402

ORDERS = {"A-17": {"status": "shipped", "items": 3}}


@loopback.tool
def lookup_order(order_id: str, ctx: loopback.Context) -> dict:
    """Fetch an order from the host's database."""
    order = ORDERS.get(order_id)
    if order is None:
        raise KeyError(f"no order {order_id}")
    # The session key comes from the run's token, whatever the agent's request claims.
    return {"id": order_id, **order, "session": ctx.headers.get("x-session-key")}


def main() -> int:
    with loopback.prepare_agent_run(headers={"X-Session-Key": "session-42"}) as run:
        if not run.enabled:
            print(f"no MCP for this run: {run.warning}", file=sys.stderr)
            return 1
        command = run.command([
            sys.executable, str(EXAMPLES / "stand_in_agent.py"), "{mcp_config}",
            "--call", "lookup_order", "--arguments", '{"order_id": "A-17"}',
        ])
        agent = subprocess.run(command, env={**os.environ, **run.env}, capture_output=True, text=True, timeout=60)
    print(agent.stdout, end="")
    print(agent.stderr, end="", file=sys.stderr)
    loopback.close()  # at host shutdown (an atexit hook would do it too)
    return agent.returncode


if __name__ == "__main__":
    sys.exit(main())
