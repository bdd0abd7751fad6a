"""host.prepare_agent_run: MCP only for runs that need it, started lazily, never fatal.

Real servers on 127.0.0.1 and real HTTP; only ``socket.socket.bind`` is wrapped (to
count binds) and a port is taken with a real listening socket.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

import loopback
from conftest import make_registry, port_accepts
from loopback import lifecycle
from loopback.host import PreparedRun, prepare_agent_run
from loopback.settings import Settings


@pytest.fixture(autouse=True)
def _no_port_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(lifecycle.PORT_ENV, raising=False)


@pytest.fixture
def binds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every address bound while the test runs."""
    seen: list[Any] = []
    real_bind = socket.socket.bind

    def bind(sock: socket.socket, address: Any) -> None:
        seen.append(address)
        return real_bind(sock, address)

    monkeypatch.setattr(socket.socket, "bind", bind)
    yield seen


def serving_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("loopback-mcp")]


def post(conn: http.client.HTTPConnection, path: str, headers: dict[str, str], message: dict[str, Any]) -> tuple[int, Any]:
    conn.request("POST", path, json.dumps(message), headers)
    response = conn.getresponse()
    body = response.read()
    return response.status, json.loads(body) if body else None


def test_prepare_without_mcp_starts_nothing(binds: list[Any]) -> None:
    threads_before = threading.active_count()
    run = prepare_agent_run(needs_mcp=False)
    assert run == PreparedRun()
    assert run.runtime is None and run.warning is None and not run.enabled
    assert run.http_config() is None
    assert loopback.active_runtime() is None
    assert lifecycle._singleton is None and lifecycle._starting is None
    assert binds == [] and not serving_threads()
    assert threading.active_count() == threads_before


def test_prepare_with_mcp_starts_the_singleton_lazily_and_its_config_works(binds: list[Any]) -> None:
    assert loopback.active_runtime() is None and binds == []
    run = prepare_agent_run(needs_mcp=True, registry=make_registry())
    assert run.enabled and run.warning is None and run.runtime is not None
    assert len(binds) == 1  # started now, on demand
    server = loopback.ensure()
    assert run.runtime == server.runtime() == loopback.active_runtime()

    config = run.http_config()
    assert config is not None and config["type"] == "http"
    url = urlsplit(config["url"])
    assert url.scheme == "http" and url.hostname == "127.0.0.1" and url.port == server.port
    # A real tools/call made with nothing but what the config says (plus MCP's own headers).
    headers = {**config["headers"], "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        status, answer = post(conn, url.path, headers, {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "agent", "version": "1"}},
        })
        assert status == 200, answer
        version = answer["result"]["protocolVersion"]
        headers["MCP-Protocol-Version"] = version
        assert post(conn, url.path, headers, {"jsonrpc": "2.0", "method": "notifications/initialized"})[0] == 202
        status, answer = post(conn, url.path, headers, {
            "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 40, "b": 2}},
        })
        assert status == 200, answer
        assert answer["result"]["isError"] is False
        assert answer["result"]["content"] == [{"type": "text", "text": "42"}]
        # Without the config's Authorization header the same call is refused.
        del headers["Authorization"]
        assert post(conn, url.path, headers, {"jsonrpc": "2.0", "id": 3, "method": "ping"})[0] == 401
    finally:
        conn.close()

    again = prepare_agent_run(needs_mcp=True)  # a later run reuses the same server
    assert again.runtime == run.runtime and len(binds) == 1


def test_prepare_with_failed_start_warns_and_the_run_goes_on_without_mcp(
    caplog: pytest.LogCaptureFixture, binds: list[Any],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="loopback"):
            run = prepare_agent_run(needs_mcp=True, port=port, settings=Settings(port_fallback=False))
    assert run.runtime is None and not run.enabled and run.http_config() is None
    assert run.warning is not None and "failed to start" in run.warning and str(port) in run.warning
    warnings = [r for r in caplog.records if r.name == "loopback" and r.levelno == logging.WARNING]
    assert any(str(port) in r.getMessage() and "without MCP" in r.getMessage() for r in warnings), caplog.text
    assert loopback.active_runtime() is None and not serving_threads()
    assert lifecycle._singleton is None and lifecycle._starting is None

    later = prepare_agent_run(needs_mcp=True)  # the failure is not remembered
    assert later.enabled and later.warning is None and port_accepts(later.runtime.port)


@pytest.mark.parametrize("port", [-1, 65536])
def test_prepare_never_raises_for_a_bad_port(port: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="loopback"):
        run = prepare_agent_run(needs_mcp=True, port=port)
    assert run.runtime is None and run.warning is not None
    assert any(r.name == "loopback" and r.levelno == logging.WARNING for r in caplog.records)
    assert loopback.active_runtime() is None and not serving_threads()
