"""Shared fixtures: real servers on 127.0.0.1 port 0, a small raw-HTTP client, leak checks."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from typing import Any, Iterator, Optional

import pytest

import loopback
from loopback import lifecycle
from loopback.tools import ToolRegistry

PROTOCOL = "2025-11-25"


def make_registry() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool
    def add(a: int, b: int = 2) -> int:
        """Add two integers."""
        return a + b

    @registry.tool
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    @registry.tool
    def fail(message: str = "boom") -> None:
        """Always raises."""
        raise RuntimeError(message)

    return registry


class Client:
    """A keep-alive HTTP/1.1 client for one server, speaking JSON-RPC over POST /mcp."""

    def __init__(self, port: int, token: Optional[str], protocol: Optional[str] = PROTOCOL) -> None:
        self.port = port
        self.token = token
        self.protocol = protocol
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self._next_id = 0

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.protocol:
            headers["MCP-Protocol-Version"] = self.protocol
        headers.update(extra)
        return headers

    def post(self, body: Any, headers: Optional[dict[str, str]] = None, path: str = "/mcp") -> tuple[int, dict[str, str], bytes]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.conn.request("POST", path, data, headers if headers is not None else self.headers())
        response = self.conn.getresponse()
        payload = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, payload

    def rpc(self, method: str, params: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        status, _, payload = self.post(message)
        assert status == 200, (status, payload)
        answer = json.loads(payload)
        assert answer["id"] == self._next_id
        return answer

    def initialize(self, version: str = PROTOCOL) -> dict[str, Any]:
        answer = self.rpc("initialize", {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
        status, _, _ = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert status == 202
        return answer["result"]

    def call_tool(self, name: str, arguments: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        return self.rpc("tools/call", {"name": name, "arguments": arguments or {}})

    def close(self) -> None:
        self.conn.close()


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, return everything the server sends until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def port_accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def registry() -> ToolRegistry:
    return make_registry()


@pytest.fixture
def server(registry: ToolRegistry) -> Iterator[loopback.LoopbackServer]:
    srv = loopback.start(0, registry=registry)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def client(server: loopback.LoopbackServer) -> Iterator[Client]:
    c = Client(server.port, server.token)
    try:
        yield c
    finally:
        c.close()


def _loopback_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("loopback-mcp")]


def _tool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("loopback-tool:")]


@pytest.fixture
def leak_exempt() -> set[int]:
    """Ports of servers a module shares across its tests (and checks itself at teardown)."""
    return set()


@pytest.fixture(autouse=True)
def no_leaks(leak_exempt: set[int]) -> Iterator[None]:
    """Every test ends with no process-wide server and no thread of ours but the exempt servers'."""
    yield
    lifecycle.close()
    active = lifecycle.active_runtime()
    assert active is None or lifecycle._active is None or lifecycle._active.closed

    def leaked() -> list[threading.Thread]:
        return [t for t in _loopback_threads() if int(t.name.split(":")[1]) not in leak_exempt]

    assert wait_for(lambda: not leaked(), 5), leaked()
    # A tool thread (per-call timeout) outliving its test is a tool the test never released.
    assert wait_for(lambda: not _tool_threads(), 5), _tool_threads()
