"""`python -m loopback run -- AGENT ...` and the examples: real agents' stand-ins, real HTTP.

Three kinds of agent run here. ``examples/stand_in_agent.py`` speaks MCP through the
official Python SDK (those tests skip where ``mcp`` is not installed). A fake agent written
below with ``urllib`` finds its config the way the real agent it is named after does
(``claude --mcp-config FILE``, codex ``-c`` overrides, ``GEMINI_CLI_SYSTEM_SETTINGS_PATH``,
``OPENCODE_CONFIG``, ``.cursor/mcp.json``; the generic file otherwise), expands the variable
references as that agent would, and calls the server. A signal agent counts the signals
it gets. Every process is bounded by a timeout and killed in ``finally``.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

import loopback
from conftest import port_accepts
from loopback import cli, lifecycle

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TIMEOUT = 60

FAKE_AGENT = r'''
import json, os, re, sys, urllib.request
try:
    import tomllib
except ImportError:  # Python 3.9 and 3.10
    import tomli as tomllib

name = os.path.basename(sys.argv[0])
args = sys.argv[1:]


def load(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


path = None
if name == "claude":
    path = args[args.index("--mcp-config") + 1]
    server = load(path)["mcpServers"]["loopback"]
    url, headers = server["url"], server["headers"]
elif name == "codex":
    server = tomllib.loads("\n".join(args[i + 1] for i, arg in enumerate(args) if arg == "-c"))["mcp_servers"]["loopback"]
    url = server["url"]
    headers = {"Authorization": "Bearer ${" + server["bearer_token_env_var"] + "}"}
    headers.update({header: "${" + var + "}" for header, var in server.get("env_http_headers", {}).items()})
elif name == "gemini":
    path = os.environ["GEMINI_CLI_SYSTEM_SETTINGS_PATH"]
    server = load(path)["mcpServers"]["loopback"]
    url, headers = server["httpUrl"], server["headers"]
elif name == "opencode":
    path = os.environ["OPENCODE_CONFIG"]
    server = load(path)["mcp"]["loopback"]
    url, headers = server["url"], server["headers"]
elif name == "cursor-agent":
    path = os.path.abspath(os.path.join(".cursor", "mcp.json"))
    server = load(path)["mcpServers"]["loopback"]
    url, headers = server["url"], server["headers"]
else:  # the generic format, its path the first argument
    path = args[0]
    config = load(path)
    url, headers = config["url"], config["headers"]


def expand(value):  # ${NAME} (claude, gemini), ${env:NAME} (cursor, vscode), {env:NAME} (opencode)
    return re.sub(r"\$\{env:(\w+)\}|\$\{(\w+)\}|\{env:(\w+)\}",
                  lambda m: os.environ[next(g for g in m.groups() if g)], value)


opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
sent = {key: expand(value) for key, value in headers.items()}
sent.update({"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
             "MCP-Protocol-Version": "2025-11-25"})


def rpc(method, params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    with opener.open(urllib.request.Request(url, body, sent), timeout=10) as response:
        return json.load(response)["result"]


rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": name, "version": "1"}})
tools = sorted(tool["name"] for tool in rpc("tools/list", {})["tools"])
call = os.environ.get("FAKE_AGENT_CALL")
result = rpc("tools/call", {"name": call, "arguments": {}})["structuredContent"] if call else None
print(json.dumps({"agent": name, "args": args, "config": path, "url": url, "tools": tools, "result": result}))
sys.exit(int(os.environ.get("FAKE_AGENT_EXIT", "0")))
'''

SIGNAL_AGENT = r'''
import signal, sys, time

received = []
signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
print("ready", flush=True)
deadline = time.monotonic() + 20
while not received and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.5)  # a second, forwarded copy of the signal would arrive by now
sys.exit(100 + len(received))
'''

SESSION_TOOLS = '''
import loopback


@loopback.tool
def whoami(ctx: loopback.Context) -> dict:
    """The session key and scope of the call."""
    return {"session": ctx.headers.get("x-session-key"), "scope": ctx.scope}


@loopback.tool
def echo(text: str) -> str:
    """Echo the text back."""
    return text


@loopback.tool(owner_only=True)
def forget(key: str) -> str:
    """An owner-only tool."""
    return key
'''


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory, first on PATH, of fake agents named claude, codex, gemini, opencode and
    cursor-agent, plus fake_agent.py (generic) and signal_agent.py."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in ("claude", "codex", "gemini", "opencode", "cursor-agent"):
        path = directory / name
        path.write_text(f"#!{sys.executable}\n{FAKE_AGENT}")
        path.chmod(0o755)
    (directory / "fake_agent.py").write_text(FAKE_AGENT)
    (directory / "signal_agent.py").write_text(SIGNAL_AGENT)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv(lifecycle.PORT_ENV, raising=False)
    return directory


def _loopback(*args: str, env: Optional[dict[str, str]] = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loopback", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def _report(stdout: str) -> dict[str, Any]:
    """The fake agent's JSON line."""
    return json.loads(stdout.strip().splitlines()[-1])


def _port(url: str) -> int:
    return int(re.fullmatch(r"http://127\.0\.0\.1:(\d+)/mcp", url).group(1))


def _gone(config: str, url: str) -> None:
    """After a run: no config file, no directory made for it, no server on its port."""
    assert not os.path.exists(config) and not os.path.exists(os.path.dirname(config))
    assert not port_accepts(_port(url))


# --- with the official MCP client ---------------------------------------------------------


@pytest.mark.parametrize("code", [0, 7])
def test_run_the_stand_in_agent_returns_its_exit_code_and_leaves_nothing_behind(code):
    pytest.importorskip("mcp")
    out = _loopback("run", "--", sys.executable, str(EXAMPLES / "stand_in_agent.py"), "{mcp_config}",
                    "--exit-code", str(code))
    assert out.returncode == code, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    assert lines["tools"] == "echo, add, current_time, word_count, host_info"  # the demo tools
    assert json.loads(lines["result"]) == {"result": "hello from the stand-in agent"}
    assert lines["config"].endswith("loopback.json")
    _gone(lines["config"], lines["url"])
    assert "Traceback" not in out.stderr


def test_run_the_stand_in_agent_with_bound_headers_and_an_allow_list(tmp_path):
    pytest.importorskip("mcp")
    tools = tmp_path / "session_tools.py"
    tools.write_text(SESSION_TOOLS)
    out = _loopback("run", "--tools", str(tools), "--header", "X-Session-Key: s-9", "--allow", "whoami",
                    "--", sys.executable, str(EXAMPLES / "stand_in_agent.py"), "{mcp_config}",
                    "--call", "whoami", "--arguments", "{}")
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    assert lines["tools"] == "whoami"
    assert json.loads(lines["result"]) == {"session": "s-9", "scope": "owner"}


def test_the_host_example_spawns_the_stand_in_agent():
    pytest.importorskip("mcp")
    out = subprocess.run([sys.executable, str(EXAMPLES / "host_spawns_agent.py")], cwd=ROOT,
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert "tools: lookup_order" in out.stdout
    result = json.loads(out.stdout.split("result: ", 1)[1])
    assert result == {"id": "A-17", "status": "shipped", "items": 3, "session": "session-42"}


# --- with fake agents ---------------------------------------------------------------------


def test_run_in_process_leaves_no_server_thread_file_or_handler(agents, capfd):
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    code = cli.main(["run", "--", sys.executable, str(agents / "fake_agent.py"), "{mcp_config}"])
    report = _report(capfd.readouterr().out)
    assert code == 0 and report["agent"] == "fake_agent.py"
    assert report["tools"] == ["add", "current_time", "echo", "host_info", "word_count"]
    assert lifecycle._singleton is None and loopback.active_runtime() is None
    _gone(report["config"], report["url"])
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    # conftest's no_leaks checks that no loopback thread is left.


@pytest.mark.parametrize("agent, argv, expected_args", [
    ("claude", ["-p", "hi"], ["--mcp-config", "{config}", "--allowedTools", "mcp__loopback",
                              "--strict-mcp-config", "-p", "hi"]),
    ("codex", ["exec", "hi"], None),
    ("gemini", ["-p", "hi"], ["-p", "hi"]),
    ("opencode", ["run", "hi"], ["run", "hi"]),
])
def test_run_reads_the_format_from_the_agent_name_and_places_its_arguments(agents, agent, argv, expected_args):
    out = _loopback("run", "--header", "X-Session-Key: s-1", "--", agent, *argv,
                    env={"FAKE_AGENT_CALL": "host_info", "FAKE_AGENT_EXIT": "3"})
    assert out.returncode == 3, out.stderr
    report = _report(out.stdout)
    assert report["agent"] == agent and report["tools"]
    if agent == "codex":  # -c overrides first, then the subcommand and the prompt
        assert report["args"][-2:] == argv and report["args"][0] == "-c" and report["config"] is None
        assert not port_accepts(_port(report["url"]))
    else:
        assert report["args"] == [arg.replace("{config}", report["config"]) for arg in expected_args]
        _gone(report["config"], report["url"])


def test_run_with_no_owner_hides_owner_only_tools(agents, tmp_path):
    tools = tmp_path / "session_tools.py"
    tools.write_text(SESSION_TOOLS)
    out = _loopback("run", "--tools", str(tools), "--no-owner", "--header", "X-Session-Key: s-2", "--",
                    sys.executable, str(agents / "fake_agent.py"), "{mcp_config}", env={"FAKE_AGENT_CALL": "whoami"})
    assert out.returncode == 0, out.stderr
    report = _report(out.stdout)
    assert report["tools"] == ["echo", "whoami"]
    assert report["result"] == {"session": "s-2", "scope": "guest"}


# --- signals ------------------------------------------------------------------------------


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
    assert ready and proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 101)])
def test_run_forwards_a_signal_to_the_agent_once(agents, signum, code):
    proc = subprocess.Popen([sys.executable, "-m", "loopback", "run", "--", sys.executable,
                             str(agents / "signal_agent.py")], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_ready(proc)
        proc.send_signal(signum)
        # SIGTERM kills the agent (128+15); SIGINT is counted by it once (100+1).
        assert proc.wait(TIMEOUT) == code
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_ctrl_c_in_a_terminal_reaches_the_agent_once(agents):
    """The terminal sends Ctrl-C to the whole foreground job; run must not send it again."""
    master, slave = pty.openpty()

    def controlling_terminal() -> None:  # in the child, after setsid(): the pty becomes its terminal
        import fcntl

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-m", "loopback", "run", "--", sys.executable,
                             str(agents / "signal_agent.py")], cwd=ROOT, stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True, preexec_fn=controlling_terminal)
    os.close(slave)
    try:
        seen = b""
        deadline = time.monotonic() + TIMEOUT
        while b"ready" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 4096)
        assert b"ready" in seen, seen
        os.write(master, termios.tcgetattr(master)[6][termios.VINTR])  # the Ctrl-C key
        assert proc.wait(TIMEOUT) == 101  # one SIGINT, from the terminal
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        os.close(master)


# --- errors -------------------------------------------------------------------------------


def test_errors_are_one_clear_line_and_an_exit_code(agents, tmp_path):
    not_executable = tmp_path / "agent.sh"
    not_executable.write_text("#!/bin/sh\n")
    cases = [
        (["run", "--", "no-such-agent-xyz"], 127, "loopback: error: agent not found: no-such-agent-xyz"),
        (["run", "--", str(not_executable)], 126, f"loopback: error: the agent is not executable: {not_executable}"),
        (["run", "--tools", "no_such_module_xyz", "--", "claude"], 1,
         "loopback: error: cannot import tools from 'no_such_module_xyz'"),
        (["run", "--allow", "nope", "--", "claude"], 1, "loopback: error: --allow names no tool: nope"),
        (["run", "--header", "Content-Type: text/plain", "--", "claude"], 1,
         "loopback: error: header 'Content-Type' is set by the client or by loopback itself"),
        (["run", "--format", "emacs", "--", "claude"], 2, "invalid choice: 'emacs'"),
        (["run", "--header", "no colon", "--", "claude"], 2, "expected 'Name: value'"),
        (["run"], 2, "the following arguments are required: AGENT [ARGS...]"),
    ]
    for args, code, message in cases:
        out = _loopback(*args)
        assert (out.returncode, out.stdout) == (code, ""), (args, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
        if code != 2:
            assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_run_on_a_taken_port_fails_rather_than_moving(agents):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = _loopback("run", "--port", str(port), "--", "claude")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip() == f"loopback: error: cannot listen on 127.0.0.1:{port}: the port is already in use"


# --- examples/agents.py -------------------------------------------------------------------


@pytest.fixture
def launchers(agents: Path) -> Iterator[Any]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("loopback_example_agents", EXAMPLES / "agents.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    registry = lifecycle.default_registry()

    @registry.tool
    def example_tool() -> str:
        """A host tool the agents see."""
        return "ok"

    try:
        yield module
    finally:
        registry.remove("example_tool")


@pytest.mark.parametrize("agent", ["claude", "codex", "gemini", "opencode", "cursor"])
def test_the_agents_example_launches_each_agent_with_a_config_it_can_use(launchers, agent, tmp_path, capfd,
                                                                        monkeypatch):
    monkeypatch.setenv("FAKE_AGENT_CALL", "example_tool")
    launch = getattr(launchers, agent)
    code = launch("hi", project=str(tmp_path)) if agent == "cursor" else launch("hi")
    report = _report(capfd.readouterr().out)
    assert code == 0 and "example_tool" in report["tools"]
    assert report["result"] == {"result": "ok"} and report["args"][-1] == "hi"
    if report["config"] is not None:
        assert not os.path.exists(report["config"])
    assert not (tmp_path / ".cursor").exists()
