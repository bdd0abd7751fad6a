"""A stand-in for a coding agent: reads a loopback config, lists the tools, calls one, exits.

It speaks MCP through the official Python SDK (``pip install mcp``), as a real agent's
client would, and reads the ``generic`` config format: ``{"url": ..., "headers": {...}}``.

    python examples/stand_in_agent.py CONFIG [--call TOOL] [--arguments JSON] [--exit-code N]

Prints ``config:``, ``url:``, ``tools:`` and ``result:`` lines (the result as JSON: the
structured content when the tool declares one, else the text). Exits with ``--exit-code``
(default 0) after a successful call, 3 when the tool reports an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

TIMEOUT = 30.0  # seconds for the whole session: a stand-in must never hang its host


async def call_tool(url: str, headers: dict[str, str], tool: str, arguments: dict[str, Any]) -> tuple[list[str], Any]:
    # trust_env=False: no proxy from the environment; the server is on 127.0.0.1.
    async with httpx2.AsyncClient(headers=headers, timeout=TIMEOUT, trust_env=False) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=TIMEOUT) as session:
                await session.initialize()
                listed = await session.list_tools()
                result = await session.call_tool(tool, arguments)
                return [t.name for t in listed.tools], result


def main() -> int:
    parser = argparse.ArgumentParser(description="A stand-in coding agent that calls one MCP tool.")
    parser.add_argument("config", help="path of a loopback config in the generic format")
    parser.add_argument("--call", default="echo", metavar="TOOL", help="the tool to call (default echo)")
    parser.add_argument("--arguments", type=json.loads, default={"text": "hello from the stand-in agent"},
                        metavar="JSON", help="the tool's arguments as a JSON object")
    parser.add_argument("--exit-code", type=int, default=0, help="exit code after a successful call")
    args = parser.parse_args()

    with open(args.config, encoding="utf-8") as file:
        config = json.load(file)
    print(f"config: {args.config}")
    print(f"url: {config['url']}")
    names, result = asyncio.run(asyncio.wait_for(
        call_tool(config["url"], config["headers"], args.call, args.arguments), TIMEOUT))
    print(f"tools: {', '.join(names)}")
    if result.is_error:
        print(f"tool error: {result.content[0].text}", file=sys.stderr)
        return 3
    value = result.structured_content if result.structured_content is not None else result.content[0].text
    print(f"result: {json.dumps(value)}", flush=True)
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())
