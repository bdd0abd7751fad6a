"""`python -m loopback stdio`: the bridge for clients that launch only stdio servers.

Real servers on 127.0.0.1 (in process, or `python -m loopback serve` in a subprocess found
through its runtime file), the bridge always as a subprocess, and real clients on its
stdin/stdout: the official Python SDK's stdio client, the official TypeScript SDK's
(`interop/ts_client.mjs --stdio`), and raw JSON-RPC lines where a test needs to see bytes.
Every wait is bounded; every process started here is stopped by the end of its test.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

import loopback
from conftest import wait_for
from loopback import clients
from loopback.stdio import _events, header_value, parse_headers
from loopback.tools import ToolRegistry
from test_interop import INTEROP, _node_env, _run_process, node_clients  # noqa: F401  (node_clients: a fixture)

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0
PROTOCOL = "2025-11-25"
DEMO_TOOLS = {"echo", "add", "current_time", "word_count", "host_info"}


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the serves of a test announce themselves (never the user's own directory)."""
    directory = tmp_path / "runtime"
    monkeypatch.setenv("LOOPBACK_RUNTIME_DIR", str(directory))
    monkeypatch.delenv("LOOPBACK_PORT", raising=False)
    monkeypatch.delenv("LOOPBACK_TOKEN", raising=False)
    return directory


def _registry() -> ToolRegistry:
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
    def chatty(ctx: loopback.Context, steps: int = 3) -> str:
        """Logs and reports progress at each step."""
        for step in range(1, steps + 1):
            ctx.log("info", f"step {step}", logger="chatty")
            ctx.progress(step, steps, f"step {step} of {steps}")
        return "finished"

    @registry.tool
    def ask_name(ctx: loopback.Context) -> str:
        """Asks the user for a name."""
        answer = ctx.elicit("Who are you?", {
            "type": "object", "properties": {"name": {"type": "string", "default": "Ada"}}, "required": ["name"]})
        return f"{answer['action']}:{answer.get('content', {}).get('name')}"

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
    def ask_name_2026(ctx: loopback.Context) -> Any:
        """Asks for a name the 2026-07-28 way: an input-required result, then a retry."""
        answer = ctx.input_responses.get("name")
        if answer is None:
            return loopback.InputRequired({"name": {"method": "elicitation/create", "params": {
                "message": "Who are you?", "requestedSchema": {
                    "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}})
        return f"{answer['action']}:{answer.get('content', {}).get('name')}"

    @registry.tool
    def slow(seconds: float = 1.0) -> str:
        """Sleeps, then answers."""
        time.sleep(seconds)
        return "slept"

    @registry.tool
    def hang(ctx: loopback.Context, seconds: float = 20.0) -> str:
        """Waits until cancelled (its session ended) or the time is up."""
        deadline = time.monotonic() + seconds
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        return "cancelled" if ctx.cancelled else "timed out"

    @registry.tool
    def poll(ctx: loopback.Context) -> str:
        """Ends its response stream early (SSE polling): the client must resume it."""
        ctx.progress(1, 2, "before the break")
        ctx.close_stream()
        time.sleep(0.3)
        ctx.progress(2, 2, "after the break")
        return "resumed"

    return registry


@pytest.fixture
def server() -> Iterator[loopback.LoopbackServer]:
    srv = loopback.start(0, registry=_registry())
    try:
        yield srv
    finally:
        srv.close()


def _bridge_env(token: Optional[str], **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "LOOPBACK_TOKEN"}
    env["PYTHONPATH"] = str(ROOT)
    if token is not None:
        env["LOOPBACK_TOKEN"] = token
    env.update(extra)
    return env


def _sdk() -> Any:
    return pytest.importorskip("mcp", reason="the official MCP Python SDK (pip install mcp) is not installed")


def _params(url: str, token: str, errlog_path: Path) -> Any:
    from mcp import StdioServerParameters

    return StdioServerParameters(command=sys.executable, args=["-m", "loopback", "stdio", "--url", url],
                                 env={"LOOPBACK_TOKEN": token, "PYTHONPATH": str(ROOT)}, cwd=str(ROOT))


def _session(params: Any, errlog: Path, body: Any, **callbacks: Any) -> Any:
    """Start the bridge with the SDK's stdio client, initialize, run ``body(session, init)``."""
    from mcp import ClientSession
    from mcp.client.stdio import stdio_client

    async def main() -> Any:
        with open(errlog, "w") as err:
            async with stdio_client(params, errlog=err) as (read, write):
                async with ClientSession(read, write, read_timeout_seconds=TIMEOUT, **callbacks) as session:
                    init = await session.initialize()
                    return await body(session, init)

    return asyncio.run(asyncio.wait_for(main(), TIMEOUT * 2))


# -- the official Python SDK's stdio client -----------------------------------------------


def test_python_sdk_stdio_client_lists_and_calls_tools(server, tmp_path):
    mcp = _sdk()
    errlog = tmp_path / "bridge.stderr"

    async def body(session, init):
        listed = await session.list_tools()
        echo = await session.call_tool("echo", {"text": "héllo\nover stdio"})
        add = await session.call_tool("add", {"a": 40})
        invalid = await session.call_tool("add", {"a": "two"})
        try:
            await session.call_tool("no_such_tool", {})
            unknown = None
        except mcp.MCPError as exc:
            unknown = exc.error
        pong = await session.send_ping()
        return init, listed, echo, add, invalid, unknown, pong

    init, listed, echo, add, invalid, unknown, pong = _session(_params(server.url, server.token, errlog), errlog, body)
    assert init.protocol_version == PROTOCOL
    assert init.server_info.name == "loopback" and init.server_info.version == loopback.__version__
    assert {tool.name for tool in listed.tools} == {"echo", "add", "chatty", "ask_name", "ask_name_2026", "think", "where", "slow", "hang", "poll"}
    assert [(block.type, block.text) for block in echo.content] == [("text", "héllo\nover stdio")]
    assert add.is_error is False and add.content[0].text == "42"
    assert invalid.is_error is True and "arguments.a" in invalid.content[0].text
    assert unknown is not None and unknown.code == -32602 and "no_such_tool" in unknown.message
    assert pong.model_dump(exclude_none=True) == {}
    assert "Traceback" not in errlog.read_text()


def test_python_sdk_stdio_client_receives_progress_and_log_messages(server, tmp_path):
    _sdk()
    errlog = tmp_path / "bridge.stderr"
    logs: list[Any] = []
    progress: list[Any] = []

    async def on_log(params: Any) -> None:
        logs.append((params.level, params.data, params.logger))

    async def on_progress(done: float, total: Optional[float], message: Optional[str]) -> None:
        progress.append((done, total, message))

    async def body(session, init):
        await session.set_logging_level("info")
        return await session.call_tool("chatty", {"steps": 3}, progress_callback=on_progress)

    result = _session(_params(server.url, server.token, errlog), errlog, body, logging_callback=on_log)
    assert result.content[0].text == "finished"
    assert progress == [(n, 3, f"step {n} of 3") for n in (1, 2, 3)]
    assert logs == [("info", f"step {n}", "chatty") for n in (1, 2, 3)]


def test_python_sdk_stdio_client_answers_elicitation_sampling_and_roots(server, tmp_path):
    _sdk()
    from mcp import types

    errlog = tmp_path / "bridge.stderr"
    asked: list[Any] = []

    async def on_elicit(context: Any, params: Any) -> Any:
        asked.append(params)
        return types.ElicitResult(action="accept", content={"name": params.requested_schema["properties"]["name"]["default"]})

    async def on_sample(context: Any, params: Any) -> Any:
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="4"),
                                         model="test-model", stop_reason="endTurn")

    async def on_roots(context: Any) -> Any:
        return types.ListRootsResult(roots=[types.Root(uri="file:///repo", name="repo")])

    async def body(session, init):
        return [await session.call_tool(name, {}) for name in ("ask_name", "think", "where")]

    elicited, sampled, rooted = _session(_params(server.url, server.token, errlog), errlog, body,
                                         elicitation_callback=on_elicit, sampling_callback=on_sample,
                                         list_roots_callback=on_roots)
    assert elicited.content[0].text == "accept:Ada"
    assert asked[0].message == "Who are you?"
    assert sampled.content[0].text == "test-model:4"
    assert rooted.content[0].text == "file:///repo"


def test_python_sdk_stdio_client_calls_run_concurrently(server, tmp_path):
    """A slow call does not hold up the ones sent after it, nor does an elicitation in flight."""
    _sdk()
    from mcp import types

    errlog = tmp_path / "bridge.stderr"
    finished: list[str] = []

    async def on_elicit(context: Any, params: Any) -> Any:
        return types.ElicitResult(action="accept", content={"name": "Grace"})

    async def body(session, init):
        async def call(name: str, arguments: dict[str, Any]) -> Any:
            result = await session.call_tool(name, arguments)
            finished.append(name)
            return result

        started = time.monotonic()
        results = await asyncio.gather(call("slow", {"seconds": 1.5}), call("ask_name", {}), call("echo", {"text": "quick"}))
        return results, time.monotonic() - started

    (slow, asked, echo), elapsed = _session(_params(server.url, server.token, errlog), errlog, body,
                                            elicitation_callback=on_elicit)
    assert slow.content[0].text == "slept" and asked.content[0].text == "accept:Grace" and echo.content[0].text == "quick"
    assert finished[-1] == "slow", finished  # the others answered while it slept
    assert elapsed < 1.5 + 1.0


def test_list_changed_reaches_the_client_on_the_standalone_stream(tmp_path):
    """After initialize the bridge holds the standalone GET stream open: a tool registered
    later reaches the client as notifications/tools/list_changed."""
    _sdk()
    from mcp import types

    registry = _registry()
    srv = loopback.start(0, registry=registry)
    errlog = tmp_path / "bridge.stderr"
    changed: list[Any] = []
    received = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.append(message)
            received.set()

    async def body(session, init):
        # The stream opens after notifications/initialized: register until the news arrives.
        for attempt in range(50):
            registry.add(lambda: "new", name=f"late_{attempt}", description="Registered late.")
            try:
                await asyncio.wait_for(received.wait(), 0.2)
                break
            except asyncio.TimeoutError:
                continue
        return await session.list_tools()

    try:
        listed = _session(_params(srv.url, srv.token, errlog), errlog, body, message_handler=on_message)
    finally:
        srv.close()
    assert changed, errlog.read_text()
    assert any(tool.name.startswith("late_") for tool in listed.tools)


def test_python_sdk_default_client_speaks_2026_07_28_through_the_bridge(server, tmp_path):
    """``mcp.Client`` (mode "auto") probes ``server/discover``: the bridge mirrors the
    2026-07-28 routing headers from each body, so the SDK adopts that revision over stdio,
    and an elicitation comes back as an input-required result the SDK answers."""
    mcp = _sdk()
    from mcp import types

    errlog = tmp_path / "bridge.stderr"

    async def on_elicit(context: Any, params: Any) -> Any:
        return types.ElicitResult(action="accept", content={"name": "Lin"})

    async def main() -> Any:
        params = _params(server.url, server.token, errlog)
        with open(errlog, "w"):
            pass
        async with mcp.Client(params, read_timeout_seconds=TIMEOUT, elicitation_callback=on_elicit) as client:
            session = client.session
            listed = await client.list_tools()
            called = await client.call_tool("add", {"a": 1, "b": 2})
            asked = await client.call_tool("ask_name_2026", {})
            return session.protocol_version, session.initialize_result, listed, called, asked

    version, init, listed, called, asked = asyncio.run(asyncio.wait_for(main(), TIMEOUT * 2))
    assert version == "2026-07-28" and init is None
    assert "echo" in {tool.name for tool in listed.tools}
    assert called.content[0].text == "3"
    assert asked.content[0].text == "accept:Lin"
    assert len(server._httpd.sessions) == 0  # that revision has no sessions


# -- a host's running serve, found through its runtime file -------------------------------


class Served:
    def __init__(self, proc: "subprocess.Popen[str]", url: str, token: str) -> None:
        self.proc, self.url, self.token = proc, url, token


def _serve(tmp_path: Path, label: str = "serve") -> Served:
    """Start `python -m loopback serve` (the demo tools) in the test's runtime dir; wait for its banner."""
    stderr = open(tmp_path / f"{label}.stderr", "w")
    proc = subprocess.Popen([sys.executable, "-u", "-m", "loopback", "serve", "--port", "0"], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True)
    stderr.close()
    served = Served(proc, "", "")
    try:
        lines: "queue.Queue[Optional[str]]" = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        banner = ""
        deadline = time.monotonic() + TIMEOUT
        while not banner.endswith("Press Ctrl-C to stop.\n"):
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert line is not None, banner + (tmp_path / f"{label}.stderr").read_text()
            banner += line
        served.url = re.search(r"MCP server on (\S+)", banner).group(1)  # type: ignore[union-attr]
        served.token = re.search(r"^token: (\S+)$", banner, re.M).group(1)  # type: ignore[union-attr]
    except BaseException:
        _stop_serve(served)
        raise
    return served


def _stop_serve(served: Served) -> None:
    proc = served.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    if proc.stdout:
        proc.stdout.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """`python -m loopback serve` announcing itself in the test's runtime dir."""
    served = _serve(tmp_path)
    try:
        yield served
    finally:
        _stop_serve(served)


def _config_entry(format: str = "claude-desktop") -> dict[str, Any]:
    """The stdio entry `loopback config --format FORMAT` prints, as a user pastes it."""
    out = subprocess.run([sys.executable, "-m", "loopback", "config", "--format", format], cwd=ROOT,
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    config = json.loads(out.stdout)
    assert list(config) == ["mcpServers"] and list(config["mcpServers"]) == ["loopback"]
    return config["mcpServers"]["loopback"]


def test_config_prints_a_claude_desktop_entry_without_a_secret(served, runtime_dir):
    for format in clients.STDIO_FORMATS:
        entry = _config_entry(format)
        assert entry["command"] == sys.executable
        assert entry["args"] == ["-m", "loopback", "stdio"]
        assert entry["env"]["LOOPBACK_RUNTIME_DIR"] == str(runtime_dir.resolve())
        assert served.token not in json.dumps(entry)  # the bridge reads it from the runtime file
    # The README shows that entry (with example paths).
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Clients that only speak stdio.*?```json\n(.*?)```", readme, re.S)
    assert block, "README: no json block under 'Clients that only speak stdio'"
    shown = json.loads(block.group(1))["mcpServers"]["loopback"]
    assert shown["args"] == entry["args"] and set(shown) == set(entry)
    assert set(shown["env"]) == set(entry["env"]) - {"PYTHONPATH"}


def test_the_entry_names_a_pythonpath_only_where_loopback_is_not_installed(tmp_path):
    """From a checkout (these tests) the entry needs PYTHONPATH to import loopback from the
    client's working directory; from an installed copy it must not carry one."""
    script = ("import json, loopback.clients as c; "
              "print(json.dumps(json.loads(c.render('claude-desktop', 'http://127.0.0.1:1/mcp', 't').text)))")
    checkout = json.loads(subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                                         timeout=TIMEOUT, check=True).stdout)["mcpServers"]["loopback"]
    assert checkout["env"]["PYTHONPATH"] == str(ROOT) and checkout["command"] == sys.executable

    import shutil
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout.strip()
    shutil.copytree(ROOT / "loopback", Path(purelib) / "loopback", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COVERAGE_PROCESS_START")}
    installed = json.loads(subprocess.run([python, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                                          timeout=TIMEOUT, check=True, env=env).stdout)["mcpServers"]["loopback"]
    assert "PYTHONPATH" not in installed["env"] and installed["command"] == python
    assert sysconfig.get_path("purelib") != purelib  # it really was another installation


def test_stdio_help_documents_the_source_of_url_and_token_and_the_exit_codes():
    out = subprocess.run([sys.executable, "-m", "loopback", "stdio", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert out.returncode == 0
    assert "--url" in out.stdout and "LOOPBACK_TOKEN" in out.stdout and "runtime file" in out.stdout
    assert "stdio          0 when stdin ends" in out.stdout


def test_python_sdk_stdio_client_reaches_a_running_serve_through_the_printed_config(served, tmp_path):
    """Claude Desktop's way: start exactly what `config --format claude-desktop` says (from
    another directory, with none of this shell's environment) and call a tool of the serve."""
    _sdk()
    from mcp import StdioServerParameters

    entry = _config_entry()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=entry["env"], cwd=str(elsewhere))
    errlog = tmp_path / "bridge.stderr"

    async def body(session, init):
        return await session.list_tools(), await session.call_tool("word_count", {"text": "one two\nthree"})

    listed, counted = _session(params, errlog, body)
    assert DEMO_TOOLS <= {tool.name for tool in listed.tools}
    assert counted.structured_content == {"characters": 13, "words": 3, "lines": 2}


def test_typescript_sdk_stdio_client(node_clients, served, tmp_path):  # noqa: F811
    entry = _config_entry()
    result = _run_process([node_clients.node, str(INTEROP / "ts_client.mjs"), "--stdio"], cwd=tmp_path,
                          env=_node_env(tmp_path, MCP_STDIO=json.dumps(entry)), timeout=60, what="ts_client.mjs --stdio")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["serverInfo"] == {"name": "loopback", "version": loopback.__version__}
    assert DEMO_TOOLS <= {tool["name"] for tool in out["tools"]}
    assert out["echo"]["content"] == [{"type": "text", "text": "hello from ts"}] and out["echo"]["isError"] is False
    assert float(out["add"]["content"][0]["text"]) == 5.5
    assert out["words"]["structuredContent"] == {"characters": 13, "words": 3, "lines": 2}
    assert out["invalid"]["isError"] is True and "arguments.a" in out["invalid"]["content"][0]["text"]
    assert out["unknown"]["error"]["code"] == -32602 and "no_such_tool" in out["unknown"]["error"]["message"]
    assert out["ping"] == {}
    assert "Traceback" not in result.stderr


# -- raw lines: what the bridge writes, how it ends ---------------------------------------


class Bridge:
    """The bridge as a subprocess, driven line by line."""

    def __init__(self, *args: str, token: Optional[str] = None, env: Optional[dict[str, str]] = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "loopback", "stdio", *args], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env or _bridge_env(token))
        self.lines: "queue.Queue[Optional[bytes]]" = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        self.stderr = b""

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, message: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((message if isinstance(message, bytes) else json.dumps(message).encode()) + b"\n")
        self.proc.stdin.flush()

    def read(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        line = self.lines.get(timeout=timeout)
        assert line is not None, "the bridge closed its stdout"
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        return json.loads(line)

    def answer(self, request_id: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message that answers ``request_id`` (notifications before it are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.read(max(deadline - time.monotonic(), 0.01))
            if "method" not in message and message.get("id") == request_id:
                return message

    def initialize(self) -> dict[str, Any]:
        self.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {"elicitation": {}}, "clientInfo": {"name": "raw", "version": "1"}}})
        answer = self.answer(0)
        if "result" in answer:
            self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return answer

    def finish(self, timeout: float = TIMEOUT) -> int:
        """Close stdin (end of input), wait for the exit code."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.stderr = self.proc.stderr.read()
        for stream in (self.proc.stdout, self.proc.stderr, self.proc.stdin):
            if stream is not None and not stream.closed:
                stream.close()


@pytest.fixture
def bridges() -> Iterator[list[Bridge]]:
    started: list[Bridge] = []
    try:
        yield started
    finally:
        for bridge in started:
            bridge.kill()


def test_end_of_input_deletes_the_session_and_exits_0(server, bridges):
    bridge = Bridge("--url", server.url, token=server.token)
    bridges.append(bridge)
    assert bridge.initialize()["result"]["protocolVersion"] == PROTOCOL
    bridge.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}})
    assert bridge.answer(1)["result"]["content"] == [{"type": "text", "text": "x"}]
    assert len(server._httpd.sessions) == 1
    assert bridge.finish() == 0
    assert len(server._httpd.sessions) == 0
    assert bridge.stderr == b""  # nothing to say at the default log level


def test_a_request_in_flight_at_end_of_input_is_still_answered(server, bridges):
    bridge = Bridge("--url", server.url, token=server.token)
    bridges.append(bridge)
    bridge.initialize()
    bridge.send({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "slow", "arguments": {"seconds": 0.5}}})
    assert bridge.finish() == 0
    answers = []
    while (line := bridge.lines.get(timeout=5)) is not None:
        answers.append(json.loads(line))
    assert [a for a in answers if a.get("id") == 7][0]["result"]["content"][0]["text"] == "slept"
    assert len(server._httpd.sessions) == 0


@pytest.mark.parametrize("in_flight", [False, True])
def test_sigterm_ends_the_session_at_once_and_exits_0(server, bridges, in_flight):
    """What stdio clients do when the bridge is slow to exit (the SDKs: after 2 s)."""
    bridge = Bridge("--url", server.url, token=server.token)
    bridges.append(bridge)
    bridge.initialize()
    assert wait_for(lambda: len(server._httpd.sessions) == 1)
    if in_flight:  # a call that would outlast the drain time
        bridge.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "hang", "arguments": {"seconds": 20}}})
        assert bridge.proc.stdin is not None
        bridge.proc.stdin.close()  # end of input: the bridge now waits for the call...
        time.sleep(0.5)
    started = time.monotonic()
    bridge.proc.send_signal(signal.SIGTERM)  # ...until this
    assert bridge.proc.wait(TIMEOUT) == 0
    assert time.monotonic() - started < 3
    assert len(server._httpd.sessions) == 0


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_a_wrong_or_missing_token_is_a_json_rpc_error_not_a_crash(server, bridges, token):
    bridge = Bridge("--url", server.url, token=token)
    bridges.append(bridge)
    answer = bridge.initialize()
    assert answer["id"] == 0 and answer["error"]["code"] == -32000
    assert "refused the token" in answer["error"]["message"] and "LOOPBACK_TOKEN" in answer["error"]["message"]
    assert answer["error"]["data"] == {"httpStatus": 401}
    assert token is None or token not in json.dumps(answer)
    # Still there, still answering.
    bridge.send({"jsonrpc": "2.0", "id": "two", "method": "tools/list"})
    assert bridge.answer("two")["error"]["data"] == {"httpStatus": 401}
    assert bridge.proc.poll() is None
    assert bridge.finish() == 0
    assert b"Traceback" not in bridge.stderr


def test_an_unreachable_server_is_a_json_rpc_error(bridges):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens on it once closed
    bridge = Bridge("--url", f"http://127.0.0.1:{port}/mcp", token="t")
    bridges.append(bridge)
    answer = bridge.initialize()
    assert answer["error"]["code"] == -32000
    assert f"cannot reach the server at http://127.0.0.1:{port}/mcp" in answer["error"]["message"]
    assert bridge.finish() == 0


def test_a_line_that_is_not_json_gets_a_parse_error_and_the_bridge_goes_on(server, bridges):
    bridge = Bridge("--url", server.url, token=server.token)
    bridges.append(bridge)
    bridge.send(b"{not json")
    error = bridge.read()
    assert error["id"] is None and error["error"]["code"] == -32700
    assert bridge.initialize()["result"]["serverInfo"]["name"] == "loopback"
    assert bridge.finish() == 0


def test_server_errors_keep_their_json_rpc_code_and_the_request_id(server, bridges):
    bridge = Bridge("--url", server.url, token=server.token)
    bridges.append(bridge)
    bridge.initialize()
    bridge.send({"jsonrpc": "2.0", "id": 3, "method": "no/such/method"})
    assert bridge.answer(3)["error"]["code"] == -32601
    assert bridge.finish() == 0


def test_a_stream_the_server_ends_early_is_resumed_with_last_event_id(server, bridges):
    """SSE polling (2025-11-25): the tool ends its response stream; the bridge GETs the rest."""
    bridge = Bridge("--url", server.url, token=server.token)
    bridges.append(bridge)
    bridge.initialize()
    bridge.send({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                 "params": {"name": "poll", "arguments": {}, "_meta": {"progressToken": "p"}}})
    seen = []
    while True:
        message = bridge.read()
        seen.append(message)
        if message.get("id") == 5:
            break
    progress = [m["params"]["message"] for m in seen if m.get("method") == "notifications/progress"]
    assert progress == ["before the break", "after the break"]
    assert seen[-1]["result"]["content"][0]["text"] == "resumed"
    assert bridge.finish() == 0


def test_the_2026_07_28_routing_headers_are_mirrored_from_the_body(server, bridges):
    bridge = Bridge("--url", server.url, token=server.token)
    bridges.append(bridge)
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}, "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}}
    bridge.send({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}})
    assert "2026-07-28" in bridge.answer(1)["result"]["supportedVersions"]
    bridge.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                 "params": {"name": "echo", "arguments": {"text": "é"}, "_meta": meta}})
    assert bridge.answer(2)["result"]["content"] == [{"type": "text", "text": "é"}]
    bridge.send({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "nope", "arguments": {}, "_meta": meta}})
    error = bridge.answer(3)["error"]
    assert error["code"] == -32602 and "nope" in error["message"]  # the server's own error, as it gave it
    assert bridge.finish() == 0
    assert len(server._httpd.sessions) == 0


SQL_SCHEMA = {
    "type": "object",
    "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "limit": {"type": "integer", "x-mcp-header": "Limit"},
        "dry": {"type": "boolean", "x-mcp-header": "Dry"},
        "target": {"type": "object", "properties": {"db": {"type": "string", "x-mcp-header": "Db"}}},
        "query": {"type": "string"},
    },
    "required": ["query"],
}
SQL_CALLS = [
    {"query": "q"},
    {"query": "q", "region": "Hello, 世界", "limit": 42, "dry": False, "target": {"db": "main"}},
    {"query": "q", "region": " padded ", "limit": 42.0, "dry": True},
    {"query": "q", "region": "=?base64?not-a-sentinel?="},
]


def test_2026_07_28_param_headers_are_mirrored_for_annotated_arguments(bridges):
    """A tool whose input schema marks arguments ``x-mcp-header``: the bridge learns that from
    tools/list and sends the ``Mcp-Param-*`` headers the server checks."""
    registry = ToolRegistry()

    def execute_sql(**arguments: Any) -> str:
        return json.dumps(arguments, sort_keys=True)

    registry.add(execute_sql, name="execute_sql", description="Run SQL.", input_schema=SQL_SCHEMA)
    srv = loopback.start(0, registry=registry)
    try:
        bridge = Bridge("--url", srv.url, token=srv.token)
        bridges.append(bridge)
        meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
        bridge.send({"jsonrpc": "2.0", "id": "list", "method": "tools/list", "params": {"_meta": meta}})
        assert [tool["name"] for tool in bridge.answer("list")["result"]["tools"]] == ["execute_sql"]
        for number, arguments in enumerate(SQL_CALLS):
            bridge.send({"jsonrpc": "2.0", "id": number, "method": "tools/call",
                         "params": {"name": "execute_sql", "arguments": arguments, "_meta": meta}})
            answer = bridge.answer(number)
            assert "result" in answer, answer
            assert json.loads(answer["result"]["content"][0]["text"]) == arguments
        assert bridge.finish() == 0
    finally:
        srv.close()


@pytest.mark.parametrize("arguments", SQL_CALLS)
def test_param_headers_satisfy_the_servers_check(arguments):
    from loopback.eras import check_param_headers
    from loopback.stdio import param_headers

    headers = param_headers(SQL_SCHEMA, arguments)
    assert check_param_headers(SQL_SCHEMA, arguments, headers) is None
    assert len(headers) == sum(1 for key in ("region", "limit", "dry") if key in arguments) + ("target" in arguments)


def test_no_server_found_is_one_line_and_exit_1(runtime_dir):
    out = subprocess.run([sys.executable, "-m", "loopback", "stdio"], cwd=ROOT, capture_output=True, text=True,
                         timeout=TIMEOUT, stdin=subprocess.DEVNULL, env=_bridge_env(None))
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        f"loopback: error: no running `python -m loopback serve` found (looked in {runtime_dir}); "
        "start one, or give --url URL with the token in $LOOPBACK_TOKEN"]


def test_the_bridge_finds_the_serve_through_the_runtime_file(served, bridges):
    bridge = Bridge(env=_bridge_env(None))
    bridges.append(bridge)
    assert bridge.initialize()["result"]["serverInfo"]["name"] == "loopback"
    bridge.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 2, "b": 3}}})
    assert bridge.answer(1)["result"]["content"][0]["text"] in ("5", "5.0")
    assert bridge.finish() == 0


def test_a_restarted_serve_is_found_again_and_the_client_told_to_list_tools_again(tmp_path, bridges):
    """The long-lived case (Claude Desktop): the serve restarts with a new port and token;
    the next request finds it through the runtime file, opens a new session and succeeds."""
    first = _serve(tmp_path, "first")
    second: Optional[Served] = None
    try:
        bridge = Bridge(env=_bridge_env(None))
        bridges.append(bridge)
        bridge.initialize()
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "one"}}}
        bridge.send(call)
        assert bridge.answer(1)["result"]["content"][0]["text"] == "one"
        _stop_serve(first)
        second = _serve(tmp_path, "second")
        assert (second.url, second.token) != (first.url, first.token)
        bridge.send({**call, "id": 2, "params": {"name": "echo", "arguments": {"text": "two"}}})
        seen = []
        while not seen or seen[-1].get("id") != 2:
            seen.append(bridge.read())
        assert seen[-1]["result"]["content"][0]["text"] == "two", seen
        assert {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"} in seen[:-1]
        assert bridge.finish() == 0
    finally:
        _stop_serve(first)
        if second is not None:
            _stop_serve(second)


def test_a_session_the_server_ended_is_opened_again(server, bridges):
    bridge = Bridge("--url", server.url, token=server.token)
    bridges.append(bridge)
    bridge.initialize()
    (old,) = server._httpd.sessions.sessions()
    server._httpd.sessions.remove(old.id)  # as an idle timeout would end it
    bridge.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1}}})
    assert bridge.answer(1)["result"]["content"][0]["text"] == "3"
    (new,) = server._httpd.sessions.sessions()
    assert new.id != old.id
    assert bridge.finish() == 0
    assert len(server._httpd.sessions) == 0


STAND_IN_AGENT = """
import json, os, subprocess, sys
entry = json.load(open(sys.argv[1]))["mcpServers"]["loopback"]
env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPBACK_")}  # only the entry's env counts
env.update(entry.get("env", {}))
bridge = subprocess.Popen([entry["command"], *entry["args"]], env=env, cwd=sys.argv[2],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
def ask(message):
    bridge.stdin.write(json.dumps(message) + "\\n"); bridge.stdin.flush()
    return json.loads(bridge.stdout.readline()) if "id" in message else None
ask({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "stand-in", "version": "1"}}})
ask({"jsonrpc": "2.0", "method": "notifications/initialized"})
answer = ask({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "per run"}}})
bridge.stdin.close()
print(json.dumps({"answer": answer, "bridge_exit": bridge.wait(30), "args": entry["args"]}))
"""


@pytest.mark.parametrize("format", clients.STDIO_FORMATS)
def test_run_gives_a_stdio_agent_an_entry_with_its_own_token(tmp_path, format):
    """`run --format claude-desktop|stdio`: the entry names the URL and carries the run's token
    in its env block; an agent that starts it as a stdio server reaches the tools."""
    agent = tmp_path / "agent.py"
    agent.write_text(STAND_IN_AGENT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-m", "loopback", "run", "--format", format, "--",
                          sys.executable, str(agent), "{mcp_config}", str(elsewhere)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, env=_bridge_env(None))
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["answer"]["result"]["content"] == [{"type": "text", "text": "per run"}], seen
    assert seen["bridge_exit"] == 0 and "--url" in seen["args"]


def test_headers_reach_the_server(bridges):
    registry = ToolRegistry()

    @registry.tool
    def whoami(ctx: loopback.Context) -> str:
        """The caller's X-Session-Key."""
        return ctx.headers.get("x-session-key", "none")

    srv = loopback.start(0, registry=registry)
    try:
        env = _bridge_env(srv.token, LOOPBACK_HEADER_X_SESSION_KEY="from-env")
        bridge = Bridge("--url", srv.url, "--header", "X-Session-Key", env=env)
        bridges.append(bridge)
        bridge.initialize()
        bridge.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}})
        assert bridge.answer(1)["result"]["content"][0]["text"] == "from-env"
        assert bridge.finish() == 0
    finally:
        srv.close()


# -- the pure pieces ----------------------------------------------------------------------


def test_the_bridge_and_its_http_client_load_only_for_the_stdio_verb():
    script = ("import sys, loopback, loopback.cli; "
              "print(sorted(m for m in ('loopback.stdio', 'http.client') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_sse_parser_follows_the_event_stream_rules():
    stream = io.BytesIO(
        b": keep-alive\n"
        b"id: s1:0\nretry: 500\ndata:\n\n"  # priming: an id and an empty data
        b"event: message\r\nid: s1:1\r\ndata: {\"a\":\r\ndata:  1}\r\n\r\n"
        b"data: no id of its own\n\n"
        b"data: cut off"  # no blank line: not dispatched
    )
    events = [(event.id, event.data, event.retry) for event in _events(stream)]  # type: ignore[arg-type]
    assert events == [("s1:0", "", 500), ("s1:1", '{"a":\n 1}', 500), ("s1:1", "no id of its own", 500)]


@pytest.mark.parametrize("text, expected", [
    ("echo", "echo"),
    ("file:///a b", "file:///a b"),
    ("héllo", "=?base64?aMOpbGxv?="),
    (" lead", "=?base64?IGxlYWQ=?="),
    ("", "=?base64??="),
    ("=?base64?abc?=", "=?base64?PT9iYXNlNjQ/YWJjPz0=?="),
])
def test_mirrored_header_values(text, expected):
    from loopback.eras import decode_header_value

    assert header_value(text) == expected
    assert decode_header_value(expected.strip()) == text  # what the server reads back


def test_parse_headers():
    env = {"LOOPBACK_HEADER_X_KEY": "v1"}
    assert parse_headers(["X-Key", "X-Other: v2"], env, clients.header_env_name) == {"X-Key": "v1", "X-Other": "v2"}
    with pytest.raises(ValueError, match="LOOPBACK_HEADER_X_MISSING is not set"):
        parse_headers(["X-Missing"], env, clients.header_env_name)
