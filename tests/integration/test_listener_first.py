"""Listener first: ``ensure()`` binds, listens and returns with only light modules loaded;
the request machinery is built when first needed (the first connection, which waits in the
backlog meanwhile, or a part of it asked for). Fresh interpreters where the cold path
matters; real sockets throughout."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from pathlib import Path

import pytest
from conftest import run_python as _run

from loopback.errors import StartError
from loopback.server import LoopbackServer
from loopback.tools import ToolRegistry

# Records which modules the main thread imports during ensure(): those it waits for.
_RECORD_IMPORTS = """
import sys, threading
main = threading.main_thread()
imported_by_main = []
class Recorder:
    def find_spec(self, name, path=None, target=None):
        if threading.current_thread() is main and name not in sys.modules:
            imported_by_main.append(name)
        return None
"""


def test_ensure_waits_for_no_module_of_the_request_machinery() -> None:
    proc = _run(
        _RECORD_IMPORTS +
        "import loopback\n"
        "@loopback.tool\n"
        "def add(a: int, b: int) -> int:\n"
        "    return a + b\n"
        "sys.meta_path.insert(0, Recorder())\n"
        "server = loopback.ensure()\n"
        "sys.meta_path.pop(0)\n"
        "print(' '.join(imported_by_main))\n"
        "loopback.close()\n")
    assert proc.returncode == 0, proc.stderr
    imported = set(proc.stdout.split())
    assert {"loopback.lifecycle", "loopback.server"} <= imported, imported
    heavy = {"loopback.settings", "loopback.auth", "loopback.tools", "loopback.schema", "loopback.acceptor",
             "loopback.connection", "loopback.protocol", "logging", "concurrent.futures", "dataclasses",
             "typing", "inspect", "json", "hashlib", "secrets", "socketserver"}
    assert not imported & heavy, sorted(imported & heavy)


# A fresh interpreter's POST to the server it started (urllib: no loopback module involved).
_POST = (
    "import json, urllib.request, loopback\n"
    "def post(server, message):\n"
    "    request = urllib.request.Request(server.url, json.dumps(message).encode(), {\n"
    "        'Authorization': 'Bearer ' + server.token, 'Content-Type': 'application/json',\n"
    "        'Accept': 'application/json, text/event-stream', 'MCP-Protocol-Version': '2025-11-25'})\n"
    "    with urllib.request.urlopen(request, timeout=30) as response:\n"
    "        return json.loads(response.read())['result']\n"
)


def test_a_request_sent_at_once_waits_in_the_backlog_and_is_answered() -> None:
    proc = _run(
        _POST +
        "@loopback.tool\n"
        "def add(a: int, b: int) -> int:\n"
        "    return a + b\n"
        "server = loopback.ensure()\n"
        "print(post(server, {'jsonrpc': '2.0', 'id': 1, 'method': 'tools/call',\n"
        "                    'params': {'name': 'add', 'arguments': {'a': 2, 'b': 3}}})['structuredContent']['result'])\n"
        "loopback.close()\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "5"


def test_a_tool_that_cannot_be_served_is_logged_and_the_rest_are_served() -> None:
    proc = _run(
        _POST +
        "@loopback.tool\n"
        "def bad(x: object) -> int:\n"
        "    return 1\n"
        "@loopback.tool\n"
        "def good() -> int:\n"
        "    return 1\n"
        "server = loopback.ensure()\n"
        "print([t['name'] for t in post(server, {'jsonrpc': '2.0', 'id': 1, 'method': 'tools/list'})['tools']])\n"
        "try:\n"
        "    loopback.default_registry()\n"
        "except loopback.SchemaError as exc:\n"
        "    print('raised', 'bad' in str(exc))\n"
        "loopback.close()\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["['good']", "raised True"], proc.stdout
    assert "tool 'bad' is not served" in proc.stderr, proc.stderr


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_build_that_fails_closes_the_server_and_frees_its_port(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> ToolRegistry:
        raise RuntimeError("no registry today")

    closed = threading.Event()
    server = LoopbackServer(0, _default_registry=broken)
    server.on_close(lambda _: closed.set())
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as first:  # the build is now needed
            assert closed.wait(10)
            first.settimeout(5)
            try:
                data = first.recv(1)
            except ConnectionResetError:
                data = b""
            assert data == b""  # dropped with the listening socket: no answer, no hang
    finally:
        server.close()
    assert server.closed and not server.serving
    assert _refused(server.port)
    assert "could not start serving" in caplog.text and "no registry today" in caplog.text
    with pytest.raises(StartError):
        server.registry  # noqa: B018 (never built, and closed now)


def test_close_before_the_build_leaves_nothing_listening() -> None:
    for _ in range(20):
        server = LoopbackServer(0).start()
        server.close()  # often while the serving thread builds: it waits for that build
        assert server.closed and not server.serving
        assert _refused(server.port)


def test_parts_of_the_machinery_wait_for_the_build_or_do_it() -> None:
    registry = ToolRegistry()
    server = LoopbackServer(0, registry=registry)  # not started: the first that needs a part builds
    try:
        assert server.registry is registry
        grant = server.issue_token("guest", label="reader")
        assert grant.token in server.runtime().tokens and server.token in server.runtime().tokens
        server.start()
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
        request = urllib.request.Request(server.url, body, {
            "Authorization": f"Bearer {grant.token}", "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read()) == {"jsonrpc": "2.0", "id": 1, "result": {}}
    finally:
        server.close()


def test_a_bad_token_or_audit_file_fails_the_start_itself(tmp_path: Path) -> None:
    from loopback.settings import Settings

    with pytest.raises(ValueError):
        LoopbackServer(0, token="short")
    with pytest.raises(StartError, match="audit file"):
        LoopbackServer(0, settings=Settings(audit_path=str(tmp_path / "missing" / "audit.jsonl")))
