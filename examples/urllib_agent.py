"""A stand-in for a coding agent in the standard library alone: reads a run's ``generic``
config (``{"url": ..., "headers": {...}}``), opens an MCP session over plain HTTP with
``urllib``, lists the tools, calls one, prints one JSON line and exits.

    python examples/urllib_agent.py CONFIG TOOL [ARGUMENTS_JSON]

Exit status: 0 after a successful call, 3 when the tool reports an error, 4 when the server
refuses the token (a closed or expired run).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

PROTOCOL = "2025-11-25"
TIMEOUT = 30.0  # seconds per request: a stand-in must never hang its host


def main(argv: list[str]) -> int:
    config_path, tool = argv[0], argv[1]
    arguments = json.loads(argv[2]) if len(argv) > 2 else {}
    with open(config_path, encoding="utf-8") as file:
        config = json.load(file)
    headers = dict(config["headers"])
    headers.update({"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                    "MCP-Protocol-Version": PROTOCOL})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1: no proxy
    ids = iter(range(1, 1000))

    def rpc(method: str, params: dict[str, Any], notify: bool = False) -> Any:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if not notify:
            message["id"] = next(ids)
        request = urllib.request.Request(config["url"], json.dumps(message).encode(), headers)
        with opener.open(request, timeout=TIMEOUT) as response:
            session = response.headers.get("Mcp-Session-Id")
            if session:
                headers["Mcp-Session-Id"] = session
            body = response.read()
        return json.loads(body)["result"] if body and not notify else None

    try:
        rpc("initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                           "clientInfo": {"name": "urllib-agent", "version": "1"}})
        rpc("notifications/initialized", {}, notify=True)
        tools = [each["name"] for each in rpc("tools/list", {})["tools"]]
        result = rpc("tools/call", {"name": tool, "arguments": arguments})
    except urllib.error.HTTPError as exc:
        print(json.dumps({"error": exc.code}), flush=True)
        return 4 if exc.code in (401, 403) else 1
    content = result.get("structuredContent", [c.get("text") for c in result.get("content", [])])
    print(json.dumps({"tools": tools, "result": content, "isError": bool(result.get("isError"))}), flush=True)
    return 3 if result.get("isError") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
