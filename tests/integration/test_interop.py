"""Interoperability: real MCP clients that nobody on this team wrote, against a real server.

* The official Python SDK (PyPI ``mcp``, test-only; skipped where it is not installed),
  in-process against ``loopback.start`` on 127.0.0.1 port 0.
* The official TypeScript SDK (``@modelcontextprotocol/sdk``) running ``interop/ts_client.mjs``,
  and the MCP Inspector's non-interactive CLI (``@modelcontextprotocol/inspector --cli``),
  both against ``python -m loopback serve --port 0`` run as a user runs it.

The Node packages are pinned by ``interop/package-lock.json`` and installed once into
``interop/node_modules`` (``npm ci``; reused while the lock file is unchanged). Without
``node`` and ``npm`` the Node tests skip, saying so; an install that fails while npm is
there fails them: CI must not go green without these clients.

Every wait is bounded and every process this module starts is stopped by its end.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, Optional

import pytest

import loopback
import node_packages  # tests/node_packages.py: the npm install shared with conformance/ and agents/
from loopback import clients
from loopback.tools import ToolRegistry

ROOT = Path(__file__).resolve().parents[2]
INTEROP = Path(__file__).resolve().parents[1] / "interop"
NODE_MODULES = INTEROP / "node_modules"

PROTOCOL = "2025-11-25"
TIMEOUT = 30.0  # seconds: any one client session or client process
INSTALL_TIMEOUT = 600.0  # seconds: npm ci with a cold cache
INSPECTOR_NODE = (22, 19)  # the Inspector's declared engine: node >= 22.19.0
DEMO_TOOLS = {"echo", "add", "current_time", "word_count", "host_info"}


def _generic_config(server: Any) -> tuple[str, dict[str, str]]:
    """URL and request headers of the generated generic config for ``server``.

    ``server`` is anything with ``.url`` and ``.token``: a ``LoopbackServer`` or a served CLI.
    The clients are configured from what ``clients.render("generic")`` writes, as a user would.
    """
    config = json.loads(clients.render("generic", server.url, server.token).text)
    return config["url"], config["headers"]


# -- the official Python SDK, in process ---------------------------------------------


@pytest.fixture
def registry() -> ToolRegistry:
    """Tools with each result shape a client must read (overrides conftest's)."""
    registry = ToolRegistry()

    @registry.tool
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    @registry.tool
    def add(a: int, b: int = 2) -> int:
        """Add two integers."""
        return a + b

    @registry.tool
    def stats(text: str) -> dict[str, Any]:
        """Count the words and characters of a text."""
        return {"words": len(text.split()), "characters": len(text)}

    @registry.tool
    def fail(message: str = "boom") -> None:
        """Always raises."""
        raise RuntimeError(message)

    return registry


def _sdk() -> Any:
    mcp = pytest.importorskip("mcp", reason="the official MCP Python SDK (pip install mcp) is not installed")
    pytest.importorskip("httpx2", reason="httpx2, the MCP Python SDK's HTTP client, is not installed")
    return mcp


def _run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def _session(url: str, headers: dict[str, str], body: Callable[[Any, Any], Awaitable[Any]]) -> Any:
    """Connect with the SDK's ClientSession (the initialize handshake), run ``body(session, init)``."""
    _sdk()
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def main() -> Any:
        # trust_env=False: no proxy from the environment; the only target is 127.0.0.1.
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(TIMEOUT), trust_env=False) as http:
            async with streamable_http_client(url, http_client=http) as (read, write):
                async with ClientSession(read, write, read_timeout_seconds=TIMEOUT) as session:
                    init = await session.initialize()
                    return await body(session, init)

    return _run(main())


def _check_structured(output_schema: Optional[dict[str, Any]], structured: Any) -> None:
    """MCP: a tool that declares an ``outputSchema`` MUST return ``structuredContent`` conforming to it."""
    if output_schema is None:
        return
    assert isinstance(structured, dict), f"outputSchema {output_schema} declared, structuredContent is {structured!r}"
    try:
        import jsonschema
    except ImportError:  # the clients validate it themselves too
        return
    jsonschema.validate(structured, output_schema)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups; anyio task groups wrap the SDK's errors."""
    if isinstance(getattr(exc, "exceptions", None), tuple):  # BaseExceptionGroup, or its backport on 3.10
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def test_python_sdk_initializes_and_lists_tools(server):
    url, headers = _generic_config(server)

    async def body(session, init):
        return init, await session.list_tools()

    init, listed = _session(url, headers, body)
    assert init.protocol_version == PROTOCOL
    assert init.server_info.name == "loopback"
    assert init.server_info.version == loopback.__version__
    assert init.capabilities.tools is not None
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == {"echo", "add", "stats", "fail"}
    assert listed.next_cursor is None
    assert tools["echo"].input_schema["properties"]["text"]["type"] == "string"
    assert tools["echo"].input_schema["required"] == ["text"]
    assert tools["add"].input_schema["properties"]["a"]["type"] == "integer"
    assert "a" in tools["add"].input_schema["required"] and "b" not in tools["add"].input_schema["required"]
    assert tools["echo"].description == "Echo the text back."


def test_python_sdk_calls_tools(server):
    url, headers = _generic_config(server)

    async def body(session, init):
        listed = await session.list_tools()  # also lets the SDK check results against outputSchema
        return (
            {tool.name: tool.output_schema for tool in listed.tools},
            await session.call_tool("echo", {"text": "héllo"}),
            await session.call_tool("add", {"a": 2}),
            await session.call_tool("stats", {"text": "one two three"}),
        )

    schemas, echo, add, stats = _session(url, headers, body)
    assert echo.is_error is False
    assert [(block.type, block.text) for block in echo.content] == [("text", "héllo")]
    _check_structured(schemas["echo"], echo.structured_content)
    assert add.is_error is False and add.content[0].text == "4"
    _check_structured(schemas["add"], add.structured_content)
    assert stats.is_error is False
    _check_structured(schemas["stats"], stats.structured_content)
    assert stats.structured_content == {"words": 3, "characters": 13}
    assert json.loads(stats.content[0].text) == {"words": 3, "characters": 13}


def test_python_sdk_sees_tool_errors_as_results(server):
    url, headers = _generic_config(server)

    async def body(session, init):
        return (
            await session.call_tool("add", {"a": "two"}),
            await session.call_tool("echo", {}),
            await session.call_tool("fail", {"message": "kaput"}),
        )

    wrong_type, missing, raised = _session(url, headers, body)
    assert wrong_type.is_error is True
    assert "arguments.a" in wrong_type.content[0].text and "integer" in wrong_type.content[0].text
    assert missing.is_error is True and "text" in missing.content[0].text
    assert raised.is_error is True
    assert "kaput" in raised.content[0].text and "RuntimeError" in raised.content[0].text


def test_python_sdk_unknown_tool_is_a_protocol_error(server):
    mcp = _sdk()
    url, headers = _generic_config(server)

    async def body(session, init):
        try:
            result = await session.call_tool("no_such_tool", {})
        except mcp.MCPError as exc:
            error = exc.error
            # The session stays usable after a protocol error.
            return error, await session.call_tool("echo", {"text": "still here"})
        pytest.fail(f"expected an MCPError, got {result!r}")

    error, after = _session(url, headers, body)
    assert error.code == -32602  # INVALID_PARAMS, as MCP 2025-11-25 specifies for an unknown tool
    assert "no_such_tool" in error.message
    assert after.content[0].text == "still here"


def test_python_sdk_ping(server):
    url, headers = _generic_config(server)

    async def body(session, init):
        return await session.send_ping()

    result = _session(url, headers, body)
    assert result.model_dump(exclude_none=True) == {}


@pytest.mark.parametrize("authorization", [None, "Bearer not-the-token", "Basic dXNlcjpwYXNz"])
def test_python_sdk_without_the_token_is_refused(server, authorization):
    mcp = _sdk()
    url, _ = _generic_config(server)
    headers = {"Authorization": authorization} if authorization else {}

    async def body(session, init):
        pytest.fail(f"initialize succeeded without the token: {init!r}")

    with pytest.raises(Exception) as caught:
        _session(url, headers, body)
    errors = [leaf for leaf in _leaves(caught.value) if isinstance(leaf, mcp.MCPError)]
    assert errors, caught.value
    assert all("Unauthorized" in error.error.message for error in errors), errors


def test_python_sdk_default_client_discovers_and_speaks_2026_07_28(server):
    """``mcp.Client`` (mode "auto") first tries 2026-07-28's ``server/discover``; loopback serves
    that revision too, so the SDK adopts it: no initialize, and tools work per request."""
    mcp = _sdk()
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    url, headers = _generic_config(server)

    async def main():
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(TIMEOUT), trust_env=False) as http:
            async with mcp.Client(streamable_http_client(url, http_client=http), read_timeout_seconds=TIMEOUT) as client:
                listed = await client.list_tools()
                called = await client.call_tool("stats", {"text": "a b"})
                failed = await client.call_tool("fail", {})
                session = client.session
                return session.initialize_result, session.discover_result, session.protocol_version, listed, called, failed

    init, discovered, version, listed, called, failed = _run(main())
    assert init is None and discovered is not None
    assert version == "2026-07-28"
    assert {tool.name for tool in listed.tools} == {"echo", "add", "stats", "fail"}
    assert called.structured_content == {"words": 2, "characters": 3}
    assert failed.is_error


# -- Node clients: install once per session ------------------------------------------


@dataclass(frozen=True)
class NodeClients:
    node: str  # the machine's node: runs the TypeScript SDK script
    inspector_node: str  # a node new enough for the Inspector


def _version(node: str) -> tuple[int, ...]:
    return node_packages.node_version(node)


def _npm_ci(npm: str) -> None:
    """``npm ci`` into interop/node_modules unless the same lock file is already installed there."""
    try:
        node_packages.npm_install(INTEROP, timeout=INSTALL_TIMEOUT, ignore_scripts=True, say=lambda line: None)
    except node_packages.InstallError as exc:
        pytest.fail(f"the interop clients could not be installed: {exc}")


@pytest.fixture(scope="session")
def node_clients() -> NodeClients:
    node, npm = shutil.which("node"), shutil.which("npm")
    missing = [name for name, path in (("node", node), ("npm", npm)) if path is None]
    if missing:
        pytest.skip(
            f"NODE INTEROP TESTS SKIPPED: {' and '.join(missing)} not on PATH; install Node.js 20+ with npm "
            "to run the TypeScript SDK and MCP Inspector clients"
        )
    assert node and npm
    if _version(node) < (18,):
        pytest.fail(f"{node} is Node {_version(node)}; the TypeScript MCP SDK needs Node 18 or newer")
    _npm_ci(npm)
    # package.json pins node 22 as an optional per-platform package for the Inspector.
    candidates = [str(NODE_MODULES / ".bin" / "node"), node]
    for candidate in candidates:
        if os.access(candidate, os.X_OK) and _version(candidate) >= INSPECTOR_NODE:
            return NodeClients(node=node, inspector_node=candidate)
    pytest.fail(
        f"no node >= {'.'.join(map(str, INSPECTOR_NODE))} for the MCP Inspector: {NODE_MODULES}/.bin/node is "
        f"missing (no node-<os>-<arch> package for this platform?) and {node} is {_version(node)}"
    )


def _run_process(command: list[str], *, cwd: Path, env: dict[str, str], timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    """Run to completion within ``timeout``; on time-out kill its whole process group and fail."""
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # not yet reaped: the group id is still ours
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"{what} did not finish in {timeout:.0f} s:\n{out[-2000:]}\n{err[-2000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _node_env(home: Path, **extra: str) -> dict[str, str]:
    """A small environment: no proxies, no browser opening, a throw-away HOME for client state."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "NO_COLOR": "1", "CI": "true"}
    for name in ("LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(extra)
    return env


# -- python -m loopback serve, as a user runs it ---------------------------------------


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str = ""
    token: str = ""
    banner: list[str] = field(default_factory=list)
    lines: "queue.Queue[Optional[str]]" = field(default_factory=queue.Queue)
    reader: Optional[threading.Thread] = None
    stderr_path: Optional[Path] = None

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path else ""

    def stop(self) -> int:
        """SIGTERM, as a supervisor stops it; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not stop within 10 s of SIGTERM:\n{self.stderr()}")


def _pump(stream: Any, lines: "queue.Queue[Optional[str]]") -> None:
    try:
        for line in stream:
            lines.put(line)
    finally:
        lines.put(None)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    stderr_path = tmp_path / "serve.stderr"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "loopback", "serve", "--port", "0"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    served = Served(proc, stderr_path=stderr_path)
    served.reader = threading.Thread(target=_pump, args=(proc.stdout, served.lines), name="interop-serve-stdout", daemon=True)
    served.reader.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = served.lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                pytest.fail(f"serve printed no 'Press Ctrl-C' line in {TIMEOUT:.0f} s:\n{''.join(served.banner)}")
            if line is None:
                proc.wait(10)
                pytest.fail(f"serve exited ({proc.returncode}) before its banner:\n{''.join(served.banner)}{served.stderr()}")
            served.banner.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(served.banner)
        url = re.search(r"MCP server on (http://127\.0\.0\.1:\d+/mcp)$", text, re.M)
        token = re.search(r"^token: (\S+)$", text, re.M)
        assert url and token, text
        served.url, served.token = url.group(1), token.group(1)
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        served.reader.join(10)
        if proc.stdout:
            proc.stdout.close()


def _stop_cleanly(served: Served) -> None:
    assert served.stop() == 0, served.stderr()
    assert "stopped" in served.stderr()


# -- the official TypeScript SDK --------------------------------------------------------


def test_typescript_sdk_client(node_clients, served, tmp_path):
    url, headers = _generic_config(served)
    result = _run_process(
        [node_clients.node, str(INTEROP / "ts_client.mjs"), url],
        cwd=INTEROP, env=_node_env(tmp_path, MCP_HEADERS=json.dumps(headers)), timeout=60, what="ts_client.mjs",
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])

    assert out["protocolVersion"] == PROTOCOL
    assert out["serverInfo"] == {"name": "loopback", "version": loopback.__version__}
    assert "tools" in out["capabilities"]
    tools = {tool["name"]: tool for tool in out["tools"]}
    assert DEMO_TOOLS <= set(tools)
    assert tools["echo"]["inputSchema"]["properties"]["text"]["type"] == "string"
    assert tools["echo"]["inputSchema"]["required"] == ["text"]
    assert out["echo"]["isError"] is False
    assert out["echo"]["content"] == [{"type": "text", "text": "hello from ts"}]
    assert out["add"]["isError"] is False and float(out["add"]["content"][0]["text"]) == 5.5
    assert out["words"]["structuredContent"] == {"characters": 13, "words": 3, "lines": 2}
    for name in ("echo", "add", "words"):
        tool = "word_count" if name == "words" else name
        _check_structured(tools[tool].get("outputSchema"), out[name].get("structuredContent"))
    assert out["invalid"]["isError"] is True and "arguments.a" in out["invalid"]["content"][0]["text"]
    assert out["unknown"]["error"]["code"] == -32602 and "no_such_tool" in out["unknown"]["error"]["message"]
    assert out["ping"] == {}
    _stop_cleanly(served)


# -- the MCP Inspector's CLI ------------------------------------------------------------


def _inspector(node_clients: NodeClients, home: Path, url: str, headers: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [node_clients.inspector_node, str(NODE_MODULES / ".bin" / "mcp-inspector"), "--cli", url, "--transport", "http"]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    return _run_process([*command, *args], cwd=INTEROP, env=_node_env(home), timeout=60, what="mcp-inspector --cli")


def test_inspector_cli_lists_and_calls_tools(node_clients, served, tmp_path):
    url, headers = _generic_config(served)

    listed = _inspector(node_clients, tmp_path, url, headers, "--method", "tools/list")
    assert listed.returncode == 0, listed.stderr
    tools = {tool["name"]: tool for tool in json.loads(listed.stdout)["tools"]}
    assert DEMO_TOOLS <= set(tools)
    assert tools["echo"]["inputSchema"]["required"] == ["text"]

    echo = _inspector(node_clients, tmp_path, url, headers, "--method", "tools/call", "--tool-name", "echo", "--tool-arg", "text=hi")
    assert echo.returncode == 0, echo.stderr
    answer = json.loads(echo.stdout)
    assert answer["content"] == [{"type": "text", "text": "hi"}] and answer["isError"] is False
    _check_structured(tools["echo"].get("outputSchema"), answer.get("structuredContent"))

    add = _inspector(node_clients, tmp_path, url, headers, "--method", "tools/call", "--tool-name", "add", "--tool-arg", "a=2", "b=3")
    assert add.returncode == 0, add.stderr
    answer = json.loads(add.stdout)
    assert answer["isError"] is False and float(answer["content"][0]["text"]) == 5
    _check_structured(tools["add"].get("outputSchema"), answer.get("structuredContent"))

    counted = _inspector(node_clients, tmp_path, url, headers, "--method", "tools/call", "--tool-name", "word_count", "--tool-arg", "text=one two")
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout)["structuredContent"] == {"characters": 7, "words": 2, "lines": 1}
    _stop_cleanly(served)


def test_inspector_cli_reports_a_wrong_token(node_clients, served, tmp_path):
    url, _ = _generic_config(served)
    # --stored-auth-only: on a 401 the Inspector would otherwise start an interactive OAuth flow.
    refused = _inspector(node_clients, tmp_path, url, {"Authorization": "Bearer not-the-token"},
                         "--method", "tools/list", "--stored-auth-only")
    assert refused.returncode != 0
    assert "Unauthorized" in refused.stdout + refused.stderr, (refused.stdout, refused.stderr)
    _stop_cleanly(served)


# -- the official Python SDK: streams, notifications, requests to the client ----------


def _streaming_server() -> Any:
    """A server whose tools log, report progress and ask the client (sampling, elicitation, roots)."""
    registry = ToolRegistry()

    @registry.tool
    def chatty(ctx: loopback.Context, steps: int = 3) -> str:
        """Logs and reports progress at each step."""
        for step in range(1, steps + 1):
            ctx.log("info", f"step {step}", logger="chatty")
            ctx.progress(step, steps, f"step {step} of {steps}")
        return "finished"

    @registry.tool
    def ask_name(ctx: loopback.Context) -> str:
        """Asks the user for a name, with a default (SEP-1034) and an enum (SEP-1330)."""
        answer = ctx.elicit("Who are you?", {
            "type": "object",
            "properties": {"name": {"type": "string", "default": "Ada"},
                           "role": {"type": "string", "enum": ["dev", "ops"]}},
            "required": ["name"]})
        return f"{answer['action']}:{answer.get('content', {}).get('name')}:{answer.get('content', {}).get('role')}"

    @registry.tool
    def think(ctx: loopback.Context) -> str:
        """Asks the client's model."""
        result = ctx.sample("2+2?", max_tokens=5)
        return f"{result['model']}:{result['content']['text']}"

    @registry.tool
    def where(ctx: loopback.Context) -> str:
        """Lists the client's roots."""
        return ",".join(root["uri"] for root in ctx.list_roots())

    @registry.tool
    def ask_without_capability(ctx: loopback.Context) -> str:
        """Reports the error a missing capability gives."""
        try:
            ctx.list_roots()
        except loopback.ClientRequestError as exc:
            return f"refused: {exc}"
        return "no error"

    return loopback.start(0, registry=registry)


def test_python_sdk_receives_logs_and_progress_on_the_call_stream():
    _sdk()
    from mcp import types

    logs: list[Any] = []
    progress: list[tuple[float, Optional[float], Optional[str]]] = []

    async def on_log(params: Any) -> None:
        logs.append((params.level, params.data, params.logger))

    async def on_progress(done: float, total: Optional[float], message: Optional[str]) -> None:
        progress.append((done, total, message))

    server = _streaming_server()
    try:
        url, headers = _generic_config(server)
        import httpx2
        from mcp import ClientSession
        from mcp.client.streamable_http import streamable_http_client

        async def main() -> Any:
            async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(TIMEOUT), trust_env=False) as http:
                async with streamable_http_client(url, http_client=http) as (read, write):
                    async with ClientSession(read, write, read_timeout_seconds=TIMEOUT, logging_callback=on_log) as session:
                        await session.initialize()
                        await session.set_logging_level("info")
                        return await session.call_tool("chatty", {"steps": 3}, progress_callback=on_progress)

        result = _run(main())
    finally:
        server.close()
    assert isinstance(result, types.CallToolResult) and result.content[0].text == "finished"
    assert logs == [("info", f"step {n}", "chatty") for n in (1, 2, 3)]
    assert progress == [(n, 3, f"step {n} of 3") for n in (1, 2, 3)]


def test_python_sdk_answers_elicitation_sampling_and_roots():
    _sdk()
    from mcp import types

    asked: list[Any] = []

    async def on_elicit(context: Any, params: Any) -> Any:
        asked.append(params)
        schema = params.requested_schema
        return types.ElicitResult(action="accept", content={"name": schema["properties"]["name"]["default"], "role": "ops"})

    async def on_sample(context: Any, params: Any) -> Any:
        assert params.max_tokens == 5 and params.messages[0].content.text == "2+2?"
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="4"),
                                         model="test-model", stop_reason="endTurn")

    async def on_roots(context: Any) -> Any:
        return types.ListRootsResult(roots=[types.Root(uri="file:///repo", name="repo")])

    server = _streaming_server()
    try:
        url, headers = _generic_config(server)
        import httpx2
        from mcp import ClientSession
        from mcp.client.streamable_http import streamable_http_client

        async def main() -> Any:
            async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(TIMEOUT), trust_env=False) as http:
                async with streamable_http_client(url, http_client=http) as (read, write):
                    async with ClientSession(read, write, read_timeout_seconds=TIMEOUT, elicitation_callback=on_elicit,
                                             sampling_callback=on_sample, list_roots_callback=on_roots) as session:
                        await session.initialize()
                        return [await session.call_tool(name, {}) for name in ("ask_name", "think", "where")]

        elicited, sampled, rooted = _run(main())
    finally:
        server.close()
    assert elicited.content[0].text == "accept:Ada:ops"
    assert asked[0].message == "Who are you?"
    assert asked[0].requested_schema["properties"]["role"]["enum"] == ["dev", "ops"]
    assert sampled.content[0].text == "test-model:4"
    assert rooted.content[0].text == "file:///repo"


def test_python_sdk_without_a_capability_gets_a_clear_tool_error():
    _sdk()
    server = _streaming_server()
    try:
        url, headers = _generic_config(server)

        async def body(session, init):
            return await session.call_tool("ask_without_capability", {})

        result = _session(url, headers, body)
    finally:
        server.close()
    assert result.content[0].text == "refused: the client did not declare the 'roots' capability: cannot send roots/list"
