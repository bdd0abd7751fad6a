"""Shared fixtures: real servers on 127.0.0.1 port 0, a small raw-HTTP client, leak checks."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import sys
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

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
    """A keep-alive HTTP/1.1 client for one server, speaking JSON-RPC over POST /mcp.

    It keeps the ``Mcp-Session-Id`` the server issues at ``initialize`` and sends it
    with every later request; with ``auto_session`` (the default) a request sent
    before any ``initialize`` first opens a session, as every real client does.
    """

    def __init__(self, port: int, token: Optional[str], protocol: Optional[str] = PROTOCOL,
                 auto_session: bool = True) -> None:
        self.port = port
        self.token = token
        self.protocol = protocol
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self._next_id = 0
        self.session_id: Optional[str] = None
        self.auto_session = auto_session

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.protocol:
            headers["MCP-Protocol-Version"] = self.protocol
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        headers.update(extra)
        return headers

    def open_session(self) -> str:
        """Send initialize (and initialized) unless a session is open; its id."""
        if self.session_id is None:
            self.initialize()
        assert self.session_id is not None
        return self.session_id

    def post(self, body: Any, headers: Optional[dict[str, str]] = None, path: str = "/mcp") -> tuple[int, dict[str, str], bytes]:
        is_initialize = isinstance(body, dict) and body.get("method") == "initialize"
        if self.auto_session and self.session_id is None and not is_initialize:
            try:
                self.open_session()
            except AssertionError:  # e.g. a refused token: the request below shows the refusal
                pass
            if self.session_id and headers is not None and "Mcp-Session-Id" not in headers:
                headers = {**headers, "Mcp-Session-Id": self.session_id}
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.conn.request("POST", path, data, headers if headers is not None else self.headers())
        response = self.conn.getresponse()
        payload = response.read()
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
        if is_initialize and "mcp-session-id" in answer_headers:
            self.session_id = answer_headers["mcp-session-id"]
        return response.status, answer_headers, payload

    def rpc(self, method: str, params: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        self._next_id += 1
        request_id = self._next_id  # post() may send an initialize (another id) first
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        status, _, payload = self.post(message)
        assert status == 200, (status, payload)
        answer = json.loads(payload)
        assert answer["id"] == request_id
        return answer

    def initialize(self, version: str = PROTOCOL, capabilities: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        answer = self.rpc("initialize", {"protocolVersion": version, "capabilities": capabilities or {},
                                         "clientInfo": {"name": "t", "version": "1"}})
        status, _, _ = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert status == 202
        return answer["result"]

    def call_tool(self, name: str, arguments: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        return self.rpc("tools/call", {"name": name, "arguments": arguments or {}})

    def close(self) -> None:
        self.conn.close()


def session_of(server: "loopback.LoopbackServer") -> str:
    """The id of a session opened on ``server`` for raw requests (one per server, on first use)."""
    session_id = getattr(server, "_test_session_id", None)
    if session_id is None:
        client = Client(server.port, server.token or None)
        try:
            session_id = client.open_session()
        finally:
            client.close()
        server._test_session_id = session_id  # type: ignore[attr-defined]
    return session_id


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, return everything the server sends until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server has answered (a refusal) and closed already: read what it sent
            pass
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


def run_python(code: str, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    """``code`` in a fresh interpreter that imports this checkout's loopback (nothing of it
    loaded yet: what a host's first import, registration or start does is seen whole)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def unit_module(name: str) -> Any:
    """A module of tests/unit, loaded on its own, so that its integration twin in
    tests/integration uses the very same helpers (registries, message builders)."""
    path = Path(__file__).resolve().parent / "unit" / f"{name}.py"
    module_name = f"_unit_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


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
    return [t for t in threading.enumerate() if t.name.startswith(("loopback-tool:", "loopback-task:"))]


@pytest.fixture
def leak_exempt() -> set[int]:
    """Ports of servers a module shares across its tests (and checks itself at teardown)."""
    return set()


HAS_PROC = os.path.isdir("/proc/self/fd")
JOIN = 30.0  # generous bound for joining a helper thread on a noisy machine


def open_fds() -> dict[int, str]:
    """This process's file descriptors and what each points to (empty without /proc)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return {}
    fds = {}
    for name in names:
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the directory listing's own fd, closed by now
            pass
    return fds


def tcp_table() -> list[dict[str, Any]]:
    """Rows of /proc/net/tcp and tcp6: local port, remote port, state, inode."""
    rows = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as table:
                lines = table.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            rows.append({
                "local_port": int(fields[1].rsplit(":", 1)[1], 16),
                "remote_port": int(fields[2].rsplit(":", 1)[1], 16),
                "listening": fields[3] == "0A",
                "inode": fields[9],
            })
    return rows


def socket_inodes(fds: dict[int, str]) -> set[str]:
    return {link[len("socket:["):-1] for link in fds.values() if link.startswith("socket:[")}


def own_listening_ports() -> list[int]:
    """Ports this process listens on."""
    mine = socket_inodes(open_fds())
    return [row["local_port"] for row in tcp_table() if row["listening"] and row["inode"] in mine]


def run_threads(targets: list[Callable[[], None]], name: str) -> list[threading.Thread]:
    threads = [threading.Thread(target=t, name=f"{name}-{i}", daemon=True) for i, t in enumerate(targets)]
    for t in threads:
        t.start()
    return threads


def join_all(threads: list[threading.Thread], timeout: float = JOIN) -> None:
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not [t.name for t in threads if t.is_alive()], "helper threads did not finish"


def tool_text(answer: dict[str, Any]) -> str:
    """The text of a successful tools/call answer."""
    result = answer["result"]
    assert result["isError"] is False, result
    return "".join(block["text"] for block in result["content"] if block["type"] == "text")


def in_call(thread: threading.Thread, path_suffix: str, name: str) -> bool:
    """True while ``thread`` is inside function ``name`` of a file ending in ``path_suffix``."""
    frame = sys._current_frames().get(thread.ident) if thread.ident is not None else None
    for _ in range(200):  # bounded walk up the stack
        if frame is None:
            return False
        if frame.f_code.co_name == name and frame.f_code.co_filename.endswith(path_suffix):
            return True
        frame = frame.f_back
    return False


def parked_on_future(thread: threading.Thread) -> bool:
    """True while ``thread`` waits in ``concurrent.futures.Future.result`` (on a start in flight)."""
    return in_call(thread, os.path.join("concurrent", "futures", "_base.py"), "result")


@pytest.fixture
def no_leaked_threads_fds_or_listeners(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test leaves no thread it started, no listening socket and no extra fd behind
    (stricter than ``no_leaks``: any thread, any listener; for the race and fault tests)."""
    monkeypatch.delenv(lifecycle.PORT_ENV, raising=False)
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    yield
    lifecycle.close()  # before no_leaks does: what the singleton holds is not a leak here

    def extra_threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t not in threads_before and t.is_alive()]

    assert wait_for(lambda: not extra_threads(), 5), extra_threads()
    if not HAS_PROC:
        return
    assert wait_for(lambda: not own_listening_ports(), 5), own_listening_ports()
    settled = wait_for(lambda: len(open_fds()) <= len(fds_before), 5)  # threads just ended close fds
    after = open_fds()
    assert settled, {fd: link for fd, link in after.items() if fds_before.get(fd) != link}


@pytest.fixture(autouse=True)
def no_leaks(leak_exempt: set[int]) -> Iterator[None]:
    """Every test ends with no process-wide server, no thread of ours but the exempt
    servers', and no more open file descriptors than it started with."""
    fds_before = open_fds() if HAS_PROC else None
    yield
    lifecycle.close()
    active = lifecycle.active_runtime()
    assert active is None or lifecycle._active is None or lifecycle._active.closed

    def leaked() -> list[threading.Thread]:
        return [t for t in _loopback_threads() if int(t.name.split(":")[1]) not in leak_exempt]

    assert wait_for(lambda: not leaked(), 5), leaked()
    # A tool thread (per-call timeout) outliving its test is a tool the test never released.
    assert wait_for(lambda: not _tool_threads(), 5), _tool_threads()
    if fds_before is not None:
        # Connection threads that have just ended close their sockets: allow a short settle.
        settled = wait_for(lambda: len(open_fds()) <= len(fds_before), 5)
        after = open_fds()
        assert settled, {fd: link for fd, link in after.items() if fds_before.get(fd) != link}
