"""The official MCP Python SDK serving the same tool: ``python serve_sdk.py PORT``.

Needs an interpreter with ``mcp`` (2.x, where FastMCP is ``mcp.server.mcpserver.MCPServer``)
and ``uvicorn`` (a dependency of ``mcp``). Streamable HTTP, **stateless, JSON
responses** (``streamable_http_app(stateless_http=True, json_response=True)``): each
POST is answered on its own with ``application/json``, no session and no SSE stream,
the mode closest to what loopback does. uvicorn with its defaults except the access log
(off, as loopback logs nothing per request) and log level "warning", bound by uvicorn
itself to 127.0.0.1 and the port given, as ``MCPServer.run("streamable-http")`` does.
Serves until stdin closes.

``python serve_sdk.py --info`` prints the versions in use as JSON and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading

from mcp.server.mcpserver import MCPServer


def info() -> dict[str, object]:
    import importlib.metadata as metadata
    import importlib.util

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "mcp": version("mcp"),
        "uvicorn": version("uvicorn"),
        "starlette": version("starlette"),
        "pydantic": version("pydantic"),
        # uvicorn's "auto" picks these when installed; a plain `pip install mcp` has neither.
        "httptools": importlib.util.find_spec("httptools") is not None,
        "uvloop": importlib.util.find_spec("uvloop") is not None,
        "python": sys.version.split()[0],
    }


def main(port: int) -> None:
    import uvicorn

    app = MCPServer("bench", log_level="WARNING")

    @app.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    starlette_app = app.streamable_http_app(stateless_http=True, json_response=True, host="127.0.0.1")
    # uvicorn binds the port itself, as MCPServer.run("streamable-http") has it do. (A socket
    # made here with socket.socket() and passed in would have proto 0, and asyncio sets
    # TCP_NODELAY only on IPPROTO_TCP sockets: every response would then wait ~40 ms
    # for a delayed ACK.)
    server = uvicorn.Server(uvicorn.Config(starlette_app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))

    def stop_when_stdin_closes() -> None:
        sys.stdin.read()
        server.should_exit = True

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    asyncio.run(server.serve())


if __name__ == "__main__":
    if sys.argv[1:] == ["--info"]:
        print(json.dumps(info()))
    else:
        main(int(sys.argv[1]))
