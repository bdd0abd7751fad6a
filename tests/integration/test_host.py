"""host.prepare_agent_run: MCP only for runs that need it, started lazily, never fatal; each
run with a token of its own, bound to its context, and a config file, both gone at close().

Real servers on 127.0.0.1 and real HTTP; only ``socket.socket.bind`` is wrapped (to
count binds) and a port is taken with a real listening socket.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

import pytest

try:
    import tomllib
except ImportError:  # Python 3.9 and 3.10: the same parser from PyPI (tox deps)
    import tomli as tomllib  # type: ignore[no-redef]

import loopback
from conftest import Client, make_registry, port_accepts, wait_for
from loopback import lifecycle
from loopback.clients import FORMATS
from loopback.host import PreparedRun, prepare_agent_run
from loopback.settings import Settings
from loopback.tools import ToolRegistry


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
    assert lifecycle._singleton is None and (lifecycle._starting is None and not lifecycle._start_in_flight)
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
    assert again.runtime is not None and again.runtime.url == run.runtime.url and len(binds) == 1
    assert again.grant is not None and again.grant.token != run.grant.token  # but not the same token
    run.close()
    again.close()


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
    assert lifecycle._singleton is None and (lifecycle._starting is None and not lifecycle._start_in_flight)

    with prepare_agent_run(needs_mcp=True) as later:  # the failure is not remembered
        assert later.enabled and later.warning is None and port_accepts(later.runtime.port)


@pytest.mark.parametrize("port", [-1, 65536])
def test_prepare_never_raises_for_a_bad_port(port: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="loopback"):
        run = prepare_agent_run(needs_mcp=True, port=port)
    assert run.runtime is None and run.warning is not None
    assert any(r.name == "loopback" and r.levelno == logging.WARNING for r in caplog.records)
    assert loopback.active_runtime() is None and not serving_threads()


# --- per-run grants and leases ------------------------------------------------------------


def session_registry() -> ToolRegistry:
    registry = make_registry()

    @registry.tool
    def whoami(ctx: loopback.Context) -> dict[str, Any]:
        """The session key and scope this call was made with."""
        return {"session": ctx.headers.get("x-session-key"), "scope": ctx.scope}

    @registry.tool(owner_only=True)
    def forget(key: str) -> str:
        """An owner-only tool."""
        return f"forgot {key}"

    return registry


def status_with(port: int, token: str) -> int:
    """The HTTP status of a ping made with ``token``."""
    client = Client(port, token)
    try:
        return client.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})[0]
    finally:
        client.close()


def call_as(run: PreparedRun, tool: str, arguments: Optional[dict[str, Any]] = None,
            **claimed: str) -> dict[str, Any]:
    """tools/call made with the run's own config file, its headers replaced by ``claimed``."""
    with open(run.config_path, encoding="utf-8") as file:  # the generic format: {"url", "headers"}
        config = json.load(file)
    url = urlsplit(config["url"])
    client = Client(url.port, None)
    try:
        headers = client.headers(**{**config["headers"], **claimed})
        status, _, payload = client.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                          "params": {"name": tool, "arguments": arguments or {}}}, headers)
        assert status == 200, (status, payload)
        return json.loads(payload)
    finally:
        client.close()


def listed_tools(port: int, token: str) -> set[str]:
    client = Client(port, token)
    try:
        return {t["name"] for t in client.rpc("tools/list")["result"]["tools"]}
    finally:
        client.close()


def test_concurrent_runs_each_see_their_own_bound_session_and_closing_one_leaves_the_other(binds):
    registry = session_registry()
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(
            lambda key: prepare_agent_run(registry=registry, headers={"X-Session-Key": key}), ["s-1", "s-2"])
    assert first.enabled and second.enabled and len(binds) == 1  # one shared server
    assert first.grant.token != second.grant.token
    port = first.runtime.port

    # Each run's token carries its own session, whatever the request claims.
    for run, key, other in [(first, "s-1", "s-2"), (second, "s-2", "s-1")]:
        answer = call_as(run, "whoami", **{"X-Session-Key": other})
        assert answer["result"]["structuredContent"] == {"session": key, "scope": "owner"}

    first.close()
    assert status_with(port, first.grant.token) == 401  # revoked
    assert call_as(second, "whoami")["result"]["structuredContent"]["session"] == "s-2"  # still served
    assert loopback.ensure().port == port and port_accepts(port) and len(binds) == 1
    assert status_with(port, loopback.ensure().token) == 200  # the server was not closed
    second.close()
    assert status_with(port, second.grant.token) == 401


def test_a_run_with_a_ttl_expires():
    run = prepare_agent_run(registry=session_registry(), ttl=0.3)
    try:
        port = run.runtime.port
        assert run.live and run.expires_at is not None and run.expires_at > time.monotonic()
        assert status_with(port, run.grant.token) == 200
        assert wait_for(lambda: status_with(port, run.grant.token) == 401, 5)
        # The run says so too: no longer live, no runtime (issue 13).
        assert not run.live and not run.enabled and run.runtime is None and run.http_config() is None
        assert status_with(port, loopback.ensure().token) == 200
    finally:
        run.close()


def test_owner_and_tool_allow_list():
    registry = session_registry()
    owner = prepare_agent_run(registry=registry)
    guest = prepare_agent_run(registry=registry, owner=False)
    narrow = prepare_agent_run(registry=registry, tools=["whoami", "echo"])
    try:
        port = owner.runtime.port
        assert "forget" in listed_tools(port, owner.grant.token)
        assert "forget" not in listed_tools(port, guest.grant.token)
        assert call_as(guest, "whoami")["result"]["structuredContent"]["scope"] == "guest"
        assert listed_tools(port, narrow.grant.token) == {"whoami", "echo"}
        assert call_as(narrow, "add", {"a": 1})["error"]["code"] == -32602  # not this run's tool
    finally:
        for run in (owner, guest, narrow):
            run.close()


def test_the_config_file_is_private_and_close_removes_it_and_its_directory_idempotently():
    run = prepare_agent_run(registry=make_registry(), format="claude", headers={"X-Session-Key": "k"})
    path = Path(run.config_path)
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700 and path.name == "mcp.json"
    assert run.config is not None and path.read_text(encoding="utf-8") == run.config.text
    assert run.grant.token not in run.config.text  # claude expands ${LOOPBACK_TOKEN}
    assert run.env == {"LOOPBACK_TOKEN": run.grant.token, "LOOPBACK_HEADER_X_SESSION_KEY": "k"}
    assert run.args == ("--mcp-config", str(path), "--allowedTools", "mcp__loopback", "--strict-mcp-config")
    assert run.grant.token not in repr(run)
    server = loopback.ensure()
    with run:
        pass
    assert not path.parent.exists()
    assert run.grant not in server.runtime().grants
    run.close()  # again: nothing left to do, and no error
    assert server.serving


def test_a_given_directory_keeps_its_other_files_and_an_existing_config_is_never_overwritten(tmp_path, caplog):
    (tmp_path / "notes.txt").write_text("mine")
    run = prepare_agent_run(registry=make_registry(), directory=str(tmp_path))
    assert run.config_path == str(tmp_path / "loopback.json")
    run.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

    (tmp_path / "loopback.json").write_text("the user's own")
    with caplog.at_level(logging.WARNING, logger="loopback"):
        refused = prepare_agent_run(directory=str(tmp_path))
    assert not refused.enabled and "cannot write the MCP config" in refused.warning
    assert (tmp_path / "loopback.json").read_text() == "the user's own"
    server = loopback.ensure()
    assert [grant.token for grant in server.runtime().grants] == [server.token]  # the refused run's is revoked
    refused.close()
    assert (tmp_path / "loopback.json").exists()


@pytest.mark.parametrize("format", FORMATS)
def test_every_format_gives_a_parseable_file_its_env_and_args(format):
    with prepare_agent_run(registry=make_registry(), format=format, headers={"X-Session-Key": "k"}) as run:
        config = run.config
        assert config is not None and config.format == format
        text = Path(run.config_path).read_text(encoding="utf-8")
        parsed = tomllib.loads(text) if format == "codex" else json.loads(text)
        assert parsed
        assert run.env == config.env_for(run.config_path)
        assert run.args == config.args_for(run.config_path)
        assert (run.grant.token in text) == config.holds_secret
    assert not os.path.exists(run.config_path)


def test_arguments_no_run_could_use_raise_and_leave_nothing_behind(binds, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown client format"):
        prepare_agent_run(format="emacs")
    assert binds == [] and loopback.active_runtime() is None  # refused before any start
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ValueError):
        prepare_agent_run(headers={"X-Session-Key": "a\nb"})
    with pytest.raises(ValueError, match="ttl"):
        prepare_agent_run(ttl=0)
    server = loopback.ensure()
    assert [grant.token for grant in server.runtime().grants] == [server.token]  # no grant left over
    assert list(tmp_path.iterdir()) == []


def test_http_config_carries_the_run_token_and_its_headers():
    with prepare_agent_run(registry=make_registry(), headers={"X-Session-Key": "k"}) as run:
        config = run.http_config()
        assert config == {"type": "http", "url": run.runtime.url,
                          "headers": {"Authorization": f"Bearer {run.grant.token}", "x-session-key": "k"}}


def test_command_places_the_format_arguments_and_the_config_path():
    with prepare_agent_run(registry=make_registry(), format="claude") as run:
        path = run.config_path
        assert run.command(["claude", "-p", "hi"]) == ["claude", *run.args, "-p", "hi"]
        assert run.command(["npx", "claude", "{mcp_args}", "-p", "hi"]) == ["npx", "claude", *run.args, "-p", "hi"]
        assert run.command(["claude", "--mcp-config", "{mcp_config}"]) == ["claude", "--mcp-config", path]
        with pytest.raises(ValueError):
            run.command([])
    without = prepare_agent_run(needs_mcp=False)
    assert without.command(["agent", "{mcp_args}", "{mcp_config}", "x"]) == ["agent", "x"]
    assert without.env == {} and without.args == () and without.config is None
    without.close()  # nothing to release


def test_closing_the_server_first_then_the_run_is_harmless():
    run = prepare_agent_run(registry=make_registry())
    loopback.close()
    run.close()
    assert not os.path.exists(run.config_path)


def test_a_run_the_host_never_closes_has_its_config_deleted_at_interpreter_exit(tmp_path: Path) -> None:
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import loopback\n"
        "run = loopback.prepare_agent_run(format='generic')\n"  # holds the token
        "print(run.config_path, flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(Path(__file__).resolve().parents[2])],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    path = done.stdout.strip()
    assert path.endswith(".json") and not os.path.exists(path) and not os.path.exists(os.path.dirname(path))
