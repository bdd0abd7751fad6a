"""Real coding-agent CLIs against loopback: each agent's own MCP health check, as a user runs it.

The agents are the pinned npm releases of tests/agents/package.json (Claude Code, Gemini CLI,
Codex CLI, opencode, the MCP Inspector), installed by tests/agents/install.py into
``~/.cache/loopback-agents``. For each, ``python -m loopback serve`` runs as a user runs it,
the agent's config comes from ``python -m loopback config --format X`` (or from
``python -m loopback run``) exactly as a user gets it, and the agent's own health check must
report loopback connected with the right token and not connected with a wrong one:

  Claude Code  ``claude mcp list``         (the config as the project's ``.mcp.json``)
  Gemini CLI   ``gemini mcp list``         (``GEMINI_CLI_SYSTEM_SETTINGS_PATH``)
  Codex CLI    ``codex app-server``        (``~/.codex/config.toml``; ``mcpServerStatus/list``
                                            over its JSON-RPC on stdio: no model needed)
  opencode     ``opencode mcp list``       (``OPENCODE_CONFIG``)
  Inspector    ``mcp-inspector --cli``     (``--header`` from the generic config)

Further tests pin down the traps the README lists for each agent, so a new release that
changes them shows up here. No model API is reachable and the health checks need none; the
``claude -p`` and ``codex exec`` tests play the model API with a script on 127.0.0.1
(``_FakeAnthropic``, ``_FakeResponses``: the outside world, not loopback) that asks for one
loopback tool, and read what the agent sent back. The ``test_run_*`` tests go through
``python -m loopback run -- AGENT ...`` with the default TMPDIR, as a user runs it.

Every agent runs with ``HOME`` in a fresh directory (nothing of the machine's own agent setup
leaks in), with auto-update and telemetry off, and below a directory no other user can write
(Gemini skips settings below a group- or world-writable directory such as /tmp). Decisions
that belong to the user (trusting the folder for Gemini, approving the project's server for
Claude Code) are made explicitly by each test.

Without ``CI`` set, the tests skip when the agents are not installed (run
``python tests/agents/install.py``); under ``CI=true`` they install them, and a missing agent
fails. Every wait is bounded; every process started here is ended by the end of its test.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENTS_DIR = Path(__file__).resolve().parents[1] / "agents"
sys.path.insert(0, str(AGENTS_DIR))
import install as agents_install  # noqa: E402  (tests/agents/install.py)
import node_packages  # noqa: E402  (tests/node_packages.py)

CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
TIMEOUT = 60.0  # seconds: any one agent command
SERVE_TIMEOUT = 30.0
WRONG_TOKEN = "not-the-token-0123456789abcdefghijklmnopqrstuv"  # well-formed, never granted
DEMO_TOOLS = {"echo", "add", "current_time", "word_count", "host_info"}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# Quiet, non-interactive agents: no auto-update, telemetry or model-list downloads.
QUIET_ENV = {
    "NO_COLOR": "1",
    "TERM": "dumb",
    "LANG": "C.UTF-8",
    # Claude Code
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    # opencode
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    # the Inspector: no OS keychain in a test (it says so on every run otherwise)
    "MCP_INSPECTOR_SECRET_STORE": "memory",
}
# Gemini CLI reads these from the user's settings (~/.gemini/settings.json).
GEMINI_USER_SETTINGS = {
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
    "privacy": {"usageStatisticsEnabled": False},
}


def _missing(reason: str) -> None:
    """A missing agent fails the run under CI, and skips it elsewhere."""
    if CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


# -- the installation ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def agents() -> agents_install.Installation:
    if shutil.which("npm") is None:
        _missing("AGENT CLI TESTS: npm is not on PATH (install Node.js with npm)")
    root = agents_install.install_dir()
    if not CI and not node_packages.installed(root, node_packages.lock_digest(agents_install.HERE)):
        pytest.skip(f"AGENT CLI TESTS SKIPPED: the agent CLIs are not installed in {root}; "
                    "run `python tests/agents/install.py` (CI installs them)")
    try:
        return agents_install.install(say=lambda line: None)
    except node_packages.InstallError as exc:
        _missing(f"the agent CLIs could not be installed: {exc}")
        raise AssertionError("unreachable")


_checked: dict[str, Optional[str]] = {}


def _agent(installation: agents_install.Installation, name: str) -> str:
    """The path of agent ``name``, once it answered ``--version`` with its pinned version."""
    if name not in _checked:
        _checked[name] = agents_install.check(installation, name)
    if _checked[name] is not None:
        _missing(f"{name} ({agents_install.AGENTS[name].package}@{agents_install.AGENTS[name].version}) "
                 f"is not usable: {_checked[name]}")
    return str(installation.executable(name))


def _insecure_ancestor(path: Path) -> Optional[Path]:
    """The first directory from ``path`` up that a group or others may write, as Gemini checks."""
    for directory in (path, *path.parents):
        if directory.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return directory
    return None


@dataclass
class Work:
    """One test's directories: ``home`` (the agents' HOME), ``project`` (their cwd), and files."""

    root: Path
    home: Path
    project: Path


@pytest.fixture
def work(agents: agents_install.Installation) -> Iterator[Work]:
    base = agents.root.parent / "work"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    insecure = _insecure_ancestor(base)
    if insecure is not None:
        _missing(f"{insecure} is group- or world-writable: Gemini CLI skips settings below it; "
                 "set LOOPBACK_AGENTS_CACHE to a private directory")
    root = Path(tempfile.mkdtemp(dir=base, prefix="t-"))
    home, project = root / "home", root / "project"
    home.mkdir()
    project.mkdir()
    try:
        yield Work(root, home, project)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- processes -------------------------------------------------------------------------------


def _run_process(command: list[str], *, cwd: Path, env: dict[str, str], timeout: float = TIMEOUT,
                 stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    """Run (stdin empty unless given); on time-out end its whole process group and fail.

    SIGTERM first, so that a ``loopback run`` removes its config and token, then SIGKILL.
    """
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=10)
        pytest.fail(f"{' '.join(command)} did not finish in {timeout:.0f} s:\n{out[-2000:]}\n{err[-2000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return subprocess.CompletedProcess(command, proc.returncode, ANSI.sub("", out), ANSI.sub("", err))


def _python_env(work: Work) -> dict[str, str]:
    """The environment for ``python -m loopback``: the test's HOME, Python's and coverage's own
    variables (subprocess coverage), and nothing else of the machine's (no TMPDIR: the default)."""
    env = {name: value for name, value in os.environ.items()
           if name.startswith(("PYTHON", "COVERAGE", "COV_CORE"))
           or name in ("PATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "SYSTEMROOT")}
    env["HOME"] = str(work.home)
    # loopback from this checkout, wherever the command runs (as a vendored copy would be found).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def _agent_env(work: Work, installation: agents_install.Installation, token: Optional[str], **extra: str) -> dict[str, str]:
    """A small environment built from nothing: the agents, HOME, the token, quiet flags, ``extra``."""
    env = {"PATH": installation.path_env(), "HOME": str(work.home), **QUIET_ENV}
    if token is not None:
        env["LOOPBACK_TOKEN"] = token
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    """``python -m loopback serve`` in a child process, with the URL and token it printed."""

    work: Work
    proc: subprocess.Popen[str]
    url: str = ""
    token: str = ""
    banner: list[str] = field(default_factory=list)

    def config(self, format: str, *args: str) -> str:
        """``python -m loopback config --format FORMAT``'s stdout: the file a user saves."""
        done = _run_process([sys.executable, "-m", "loopback", "config", "--format", format, *args],
                            cwd=ROOT, env=_python_env(self.work))
        assert done.returncode == 0, done.stderr
        # The token travels in the environment (stderr's export line) or, for generic, in the file.
        assert self.token in done.stderr + done.stdout
        return done.stdout


@contextmanager
def _serve(work: Work, port: int = 0) -> Iterator[Served]:
    proc = subprocess.Popen([sys.executable, "-u", "-m", "loopback", "serve", "--port", str(port)],
                            cwd=ROOT, env=_python_env(work), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    served = Served(work, proc)
    lines: "queue.Queue[Optional[str]]" = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, name="agents-serve-stdout", daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT
        while not (served.banner and served.banner[-1].startswith("Press Ctrl-C")):
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                pytest.fail(f"serve printed no banner in {SERVE_TIMEOUT:.0f} s:\n{''.join(served.banner)}")
            if line is None:
                pytest.fail(f"serve exited ({proc.wait(10)}) before its banner:\n{''.join(served.banner)}")
            served.banner.append(line)
        text = "".join(served.banner)
        url = re.search(r"MCP server on (http://127\.0\.0\.1:\d+/mcp)$", text, re.M)
        token = re.search(r"^token: (\S+)$", text, re.M)
        assert url and token, text
        served.url, served.token = url.group(1), token.group(1)
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        reader.join(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def served(work: Work) -> Iterator[Served]:
    with _serve(work) as server:
        yield server


def _token(served: Served, right: bool) -> str:
    return served.token if right else WRONG_TOKEN


TOKENS = pytest.mark.parametrize("right", [True, False], ids=["right-token", "wrong-token"])


def _output(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


# -- Claude Code: claude mcp list ------------------------------------------------------------


def _claude_project(work: Work, mcp_json: str, approve: bool = True) -> None:
    """The config as the project's ``.mcp.json``; ``approve``: the user approves project servers."""
    (work.project / ".mcp.json").write_text(mcp_json)
    if approve:
        (work.home / ".claude").mkdir(exist_ok=True)
        (work.home / ".claude" / "settings.json").write_text(json.dumps({"enableAllProjectMcpServers": True}))


@TOKENS
def test_claude_mcp_list(agents, work, served, right):
    claude = _agent(agents, "claude")
    _claude_project(work, served.config("claude"))
    done = _run_process([claude, "mcp", "list"], cwd=work.project, env=_agent_env(work, agents, _token(served, right)))
    out = _output(done)
    line = re.search(rf"^loopback: {re.escape(served.url)} \(HTTP\) - (.*)$", out, re.M)
    assert line, out
    if right:
        assert "Connected" in line.group(1) and "Failed" not in line.group(1), out
    else:
        assert "Failed to connect" in line.group(1) and "401" in line.group(1), out


def test_claude_leaves_an_unapproved_project_server_pending(agents, work, served):
    """README trap: a project ``.mcp.json`` server stays "Pending approval" until the user approves it."""
    claude = _agent(agents, "claude")
    _claude_project(work, served.config("claude"), approve=False)
    done = _run_process([claude, "mcp", "list"], cwd=work.project, env=_agent_env(work, agents, served.token))
    assert re.search(r"^loopback: .* - .*Pending approval", _output(done), re.M), _output(done)


# -- Gemini CLI: gemini mcp list -------------------------------------------------------------


def _gemini_env(work: Work, agents: agents_install.Installation, token: Optional[str], settings: Optional[Path],
                trust: bool = True) -> dict[str, str]:
    gemini_home = work.home / ".gemini"
    gemini_home.mkdir(exist_ok=True)
    (gemini_home / "settings.json").write_text(json.dumps(GEMINI_USER_SETTINGS))
    extra = {"GEMINI_CLI_SYSTEM_SETTINGS_PATH": str(settings)} if settings is not None else {}
    if trust:  # the user's decision, made here explicitly
        extra["GEMINI_CLI_TRUST_WORKSPACE"] = "true"
    return _agent_env(work, agents, token, **extra)


def _gemini_line(out: str, url: str) -> str:
    line = re.search(rf"^(.*)\bloopback: {re.escape(url)} \(http\) - (.*)$", out, re.M)
    assert line, out
    return line.group(1) + "|" + line.group(2)


@TOKENS
def test_gemini_mcp_list(agents, work, served, right):
    gemini = _agent(agents, "gemini")
    settings = work.root / "settings.json"
    settings.write_text(served.config("gemini"))
    done = _run_process([gemini, "mcp", "list"], cwd=work.project,
                        env=_gemini_env(work, agents, _token(served, right), settings))
    state = _gemini_line(_output(done), served.url)
    assert state == ("✓ |Connected" if right else "✗ |Disconnected"), _output(done)


def test_gemini_disables_the_server_in_an_untrusted_folder(agents, work, served):
    """README trap: without folder trust the server is listed "Disabled"."""
    gemini = _agent(agents, "gemini")
    settings = work.root / "settings.json"
    settings.write_text(served.config("gemini"))
    done = _run_process([gemini, "mcp", "list"], cwd=work.project,
                        env=_gemini_env(work, agents, served.token, settings, trust=False))
    assert _gemini_line(_output(done), served.url).endswith("|Disabled"), _output(done)
    assert "untrusted" in _output(done)


def test_gemini_skips_settings_below_a_world_writable_directory(agents, work, served):
    """README trap: a settings file below /tmp (group- or world-writable) is skipped, with a warning."""
    gemini = _agent(agents, "gemini")
    shared = Path(tempfile.gettempdir())
    if _insecure_ancestor(shared) is None:
        pytest.skip(f"{shared} and its parents are writable by the owner only here")
    with tempfile.TemporaryDirectory(dir=shared, prefix="loopback-agents-") as directory:
        settings = Path(directory) / "settings.json"
        settings.write_text(served.config("gemini"))
        done = _run_process([gemini, "mcp", "list"], cwd=work.project,
                            env=_gemini_env(work, agents, served.token, settings))
    out = _output(done)
    assert "Skipping system settings file" in out and "No MCP servers configured" in out, out


# -- Codex CLI: codex app-server, mcpServerStatus/list ---------------------------------------


def _codex_status(codex: str, work: Work, env: dict[str, str]) -> dict[str, Any]:
    """``initialize``, ``initialized``, ``mcpServerStatus/list`` over ``codex app-server``'s stdio.

    The protocol is Codex's own JSON-RPC, one JSON object a line, without a ``jsonrpc``
    member (``codex app-server generate-json-schema`` writes its schema). The status list
    connects to each configured MCP server; no model is involved.
    """
    proc = subprocess.Popen([codex, "app-server"], cwd=work.project, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: "queue.Queue[Optional[str]]" = queue.Queue()
    errors: list[str] = []

    def pump(stream: Any, sink: Any) -> None:
        for line in stream:
            sink(line)
        if sink is lines.put:
            lines.put(None)

    readers = [threading.Thread(target=pump, args=(proc.stdout, lines.put), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, errors.append), daemon=True)]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + TIMEOUT

    def send(message: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()

    def answer(request_id: int) -> dict[str, Any]:
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                pytest.fail(f"codex app-server did not answer request {request_id} in {TIMEOUT:.0f} s:\n"
                            + ANSI.sub("", "".join(errors))[-3000:])
            if line is None:
                pytest.fail(f"codex app-server exited ({proc.wait(10)}):\n" + ANSI.sub("", "".join(errors))[-3000:])
            message = json.loads(line)
            if message.get("id") == request_id and "method" not in message:
                assert "error" not in message, message
                return dict(message["result"])

    try:
        send({"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "loopback-tests", "version": "0"}}})
        answer(1)
        send({"method": "initialized"})
        send({"id": 2, "method": "mcpServerStatus/list", "params": {}})
        return answer(2)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # end of input: the app-server exits
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for reader in readers:
            reader.join(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@TOKENS
def test_codex_app_server_mcp_status(agents, work, served, right):
    codex = _agent(agents, "codex")
    (work.home / ".codex").mkdir()
    (work.home / ".codex" / "config.toml").write_text(served.config("codex"))
    status = _codex_status(codex, work, _agent_env(work, agents, _token(served, right)))
    servers = {server["name"]: server for server in status["data"]}
    assert set(servers) == {"loopback"}, status
    server = servers["loopback"]
    assert server["httpOrigin"] == served.url.rsplit("/", 1)[0]
    assert server["authStatus"] == "bearerToken"
    if right:
        assert server.get("toolsError") is None, server.get("toolsError")
        assert server["serverInfo"]["name"] == "loopback"
        assert DEMO_TOOLS <= set(server["tools"])
    else:
        assert server["serverInfo"] is None and server["tools"] == {}
        assert "Auth required" in server["toolsError"], server["toolsError"]


# -- opencode: opencode mcp list -------------------------------------------------------------


def _opencode_entries(out: str) -> dict[str, str]:
    """``{name: "connected" | "failed" | ...}`` from ``opencode mcp list``."""
    return {match.group(2): match.group(1) + " " + match.group(3)
            for match in re.finditer(r"^\W*([✓✗○]) (\S+) (\w+)", out, re.M)}


@TOKENS
def test_opencode_mcp_list(agents, work, served, right):
    opencode = _agent(agents, "opencode")
    config = work.home / "opencode.json"  # not in a parent of the project: see the next test
    config.write_text(served.config("opencode"))
    done = _run_process([opencode, "mcp", "list"], cwd=work.project,
                        env=_agent_env(work, agents, _token(served, right), OPENCODE_CONFIG=str(config)))
    out = _output(done)
    assert _opencode_entries(out) == {"loopback": "✓ connected" if right else "✗ failed"}, out
    assert served.url in out
    if not right:
        assert "401" in out, out


def test_opencode_prefers_a_parent_directory_config_of_the_same_name(agents, work, served):
    """README trap: an ``opencode.json`` in a parent directory overrides ``OPENCODE_CONFIG`` for the
    same server name; ``config --name`` gives loopback its own."""
    opencode = _agent(agents, "opencode")
    stale = json.loads(served.config("opencode"))
    stale["mcp"]["loopback"]["url"] = f"http://127.0.0.1:{_free_port()}/mcp"  # nobody listens there
    (work.root / "opencode.json").write_text(json.dumps(stale))  # the project's parent
    project = work.project
    for name, expected in (("loopback", {"loopback": "✗ failed"}),
                           ("loopback-run", {"loopback": "✗ failed", "loopback-run": "✓ connected"})):
        config = work.home / f"{name}.json"
        config.write_text(served.config("opencode", "--name", name))
        done = _run_process([opencode, "mcp", "list"], cwd=project,
                            env=_agent_env(work, agents, served.token, OPENCODE_CONFIG=str(config)))
        assert _opencode_entries(_output(done)) == expected, _output(done)


# -- the MCP Inspector: mcp-inspector --cli --------------------------------------------------


@TOKENS
def test_inspector_cli_tools_list(agents, work, served, right):
    inspector = _agent(agents, "inspector")
    generic = json.loads(served.config("generic"))
    headers = dict(generic["headers"])
    if not right:
        headers["Authorization"] = f"Bearer {WRONG_TOKEN}"
    header_args = [arg for name, value in headers.items() for arg in ("--header", f"{name}: {value}")]
    # --stored-auth-only: on a 401 the Inspector would otherwise start an interactive OAuth flow.
    done = _run_process([inspector, "--cli", generic["url"], "--transport", "http", *header_args,
                         "--method", "tools/list", "--stored-auth-only"],
                        cwd=work.project, env=_agent_env(work, agents, None))
    if right:
        assert done.returncode == 0, _output(done)
        assert DEMO_TOOLS == {tool["name"] for tool in json.loads(done.stdout)["tools"]}
    else:
        assert done.returncode != 0, _output(done)
        assert "Unauthorized" in _output(done), _output(done)


def test_inspector_config_file_does_not_expand_the_token(agents, work, served):
    """README trap: ``--config`` sends ``${LOOPBACK_TOKEN}`` as it is, even with the variable set."""
    inspector = _agent(agents, "inspector")
    text = served.config("claude")  # mcpServers, "type": "http", "Bearer ${LOOPBACK_TOKEN}"
    assert "${LOOPBACK_TOKEN}" in text
    outcomes = []
    for name, content in (("reference", text), ("literal", text.replace("${LOOPBACK_TOKEN}", served.token))):
        config = work.root / f"{name}.json"
        config.write_text(content)
        done = _run_process([inspector, "--cli", "--config", str(config), "--server", "loopback",
                             "--method", "tools/list", "--stored-auth-only"],
                            cwd=work.project, env=_agent_env(work, agents, served.token))
        outcomes.append((done.returncode == 0, "Unauthorized" in _output(done)))
    assert outcomes == [(False, True), (True, False)], outcomes


# -- python -m loopback run -- AGENT mcp list ------------------------------------------------


def test_run_gemini_mcp_list(agents, work):
    """``loopback run -- gemini mcp list`` with the default TMPDIR: Gemini must find loopback.

    ``run`` names its settings file in ``GEMINI_CLI_SYSTEM_SETTINGS_PATH``; a file below /tmp
    is skipped by Gemini, so ``run`` has to write it somewhere private.
    """
    gemini = _agent(agents, "gemini")
    env = {**_python_env(work), **_gemini_env(work, agents, None, None)}  # run sets the token and the settings path
    done = _run_process([sys.executable, "-m", "loopback", "run", "--", gemini, "mcp", "list"], cwd=work.project, env=env)
    out = _output(done)
    assert done.returncode == 0, out
    assert re.search(r"^✓ loopback: http://127\.0\.0\.1:\d+/mcp \(http\) - Connected$", out, re.M), out


def test_run_opencode_mcp_list(agents, work):
    """``loopback run -- opencode mcp list``: the config reaches opencode through ``OPENCODE_CONFIG``."""
    opencode = _agent(agents, "opencode")
    env = {**_python_env(work), **_agent_env(work, agents, None)}
    done = _run_process([sys.executable, "-m", "loopback", "run", "--", opencode, "mcp", "list"], cwd=work.project, env=env)
    out = _output(done)
    assert done.returncode == 0, out
    assert _opencode_entries(out) == {"loopback": "✓ connected"}, out


def test_run_claude_mcp_list(agents, work):
    """``loopback run --port P -- claude mcp list`` in a project whose ``.mcp.json`` names port P.

    The project file is what ``config --format claude`` printed for a ``serve`` on that port;
    ``run`` gives the agent its token in ``LOOPBACK_TOKEN``. ``mcp list`` takes no
    ``--mcp-config``: arguments injected there break it.
    """
    claude = _agent(agents, "claude")
    port = _free_port()
    with _serve(work, port) as server:
        _claude_project(work, server.config("claude"))
    env = {**_python_env(work), **_agent_env(work, agents, None)}
    done = _run_process([sys.executable, "-m", "loopback", "run", "--port", str(port), "--", claude, "mcp", "list"],
                        cwd=work.project, env=env)
    out = _output(done)
    assert done.returncode == 0, out
    line = re.search(rf"^loopback: http://127\.0\.0\.1:{port}/mcp \(HTTP\) - (.*)$", out, re.M)
    assert line and "Connected" in line.group(1) and "Failed" not in line.group(1), out


# -- claude -p through loopback run, against a stand-in for the model API ----------------------


class _FakeModelAPI:
    """A model API on 127.0.0.1, played by a script: the outside world, not loopback.

    While the conversation holds no tool result, the "model" answers with one call of
    ``tool`` with ``arguments`` (when the agent offers that tool); after that, with a line of
    text. ``requests`` keeps every request body, so a test reads what the agent sent back.
    Subclasses speak one vendor's wire format.
    """

    def __init__(self, tool: str, arguments: dict[str, Any]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.tool, self.arguments = tool, arguments
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, content_type: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(404, "application/json", b"{}")

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                answer = fake.answer(self.path, body)
                if answer is None:
                    self._send(404, "application/json", b"{}")
                    return
                fake.requests.append(body)
                self._send(200, *answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-model-api", daemon=True)

    def answer(self, path: str, body: dict[str, Any]) -> Optional[tuple[str, bytes]]:
        raise NotImplementedError

    @staticmethod
    def _sse(events: list[tuple[str, dict[str, Any]]]) -> tuple[str, bytes]:
        return "text/event-stream", "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()

    def __enter__(self) -> "_FakeModelAPI":
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class _FakeAnthropic(_FakeModelAPI):
    """The Anthropic Messages API (``POST /v1/messages``, streamed or not), as Claude Code calls it."""

    def answer(self, path: str, body: dict[str, Any]) -> Optional[tuple[str, bytes]]:
        if not path.startswith("/v1/messages"):
            return None
        if "count_tokens" in path:
            return "application/json", b'{"input_tokens": 10}'
        offered = {tool.get("name") for tool in body.get("tools", [])}
        if self.tool in offered and not self.tool_results(body):
            block: dict[str, Any] = {"type": "tool_use", "id": "toolu_loopback_1", "name": self.tool, "input": self.arguments}
            stop = "tool_use"
        else:
            block, stop = {"type": "text", "text": "done"}, "end_turn"
        message = {"id": "msg_loopback", "type": "message", "role": "assistant", "model": body.get("model", "fake"),
                   "content": [block], "stop_reason": stop, "stop_sequence": None,
                   "usage": {"input_tokens": 10, "output_tokens": 5}}
        if not body.get("stream"):
            return "application/json", json.dumps(message).encode()
        if block["type"] == "tool_use":
            start, delta = dict(block, input={}), {"type": "input_json_delta", "partial_json": json.dumps(self.arguments)}
        else:
            start, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": block["text"]}
        return self._sse([
            ("message_start", {"type": "message_start", "message": dict(message, content=[], stop_reason=None)}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": start}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                               "usage": {"output_tokens": 5}}),
            ("message_stop", {"type": "message_stop"}),
        ])

    def tool_results(self, body: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
        bodies = [body] if body is not None else self.requests
        return [part for each in bodies for message in each.get("messages", [])
                if isinstance(message.get("content"), list)
                for part in message["content"] if part.get("type") == "tool_result"]


class _FakeResponses(_FakeModelAPI):
    """The OpenAI Responses API (``POST /v1/responses``, streamed), as Codex CLI calls it.

    Codex offers an MCP server's tools as a ``namespace`` tool named ``mcp__SERVER`` whose
    ``tools`` are the server's; a call names the tool and its namespace.
    """

    def __init__(self, namespace: str, tool: str, arguments: dict[str, Any]) -> None:
        super().__init__(tool, arguments)
        self.namespace = namespace

    def answer(self, path: str, body: dict[str, Any]) -> Optional[tuple[str, bytes]]:
        if not path.startswith("/v1/responses"):
            return None
        offered = {(tool.get("name"), inner.get("name")) for tool in body.get("tools", [])
                   if tool.get("type") == "namespace" for inner in tool.get("tools", [])}
        item: dict[str, Any]
        if (self.namespace, self.tool) in offered and not self.tool_results(body):
            item = {"type": "function_call", "id": "fc_loopback_1", "call_id": "call_loopback_1",
                    "namespace": self.namespace, "name": self.tool, "arguments": json.dumps(self.arguments)}
        else:
            item = {"type": "message", "id": "msg_loopback", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": "done", "annotations": []}]}
        usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
                 "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
        response = {"id": "resp_loopback", "object": "response", "status": "completed", "output": [item], "usage": usage}
        return self._sse([
            ("response.created", {"type": "response.created", "response": dict(response, status="in_progress", output=[])}),
            ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
            ("response.completed", {"type": "response.completed", "response": response}),
        ])

    def tool_results(self, body: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
        bodies = [body] if body is not None else self.requests
        return [item for each in bodies for item in each.get("input", [])
                if isinstance(item, dict) and item.get("type") == "function_call_output"]


def _claude_prompt(agents: agents_install.Installation, work: Work, model: _FakeAnthropic, *agent_args: str) -> str:
    """``loopback run -- claude AGENT_ARGS`` with the model API played by ``model``; the run's output."""
    claude = _agent(agents, "claude")
    env = {**_python_env(work), **_agent_env(work, agents, None),
           "ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "sk-ant-not-a-key",
           # All tools in the first request: no ToolSearch round trip for the script to play.
           "ENABLE_TOOL_SEARCH": "false"}
    done = _run_process([sys.executable, "-m", "loopback", "run", "--", claude, *agent_args],
                        cwd=work.project, env=env)
    assert done.returncode == 0, _output(done)
    return _output(done)


def test_run_claude_prompt_calls_a_loopback_tool(agents, work):
    """``loopback run -- claude -p``: the model asks for ``mcp__loopback__echo``, Claude Code calls it."""
    with _FakeAnthropic("mcp__loopback__echo", {"text": "hello through claude"}) as model:
        _claude_prompt(agents, work, model, "-p", "say hello through echo")
    offered = {tool["name"] for tool in model.requests[0]["tools"]}
    assert {f"mcp__loopback__{name}" for name in DEMO_TOOLS} <= offered
    (result,) = model.tool_results()
    assert not result.get("is_error"), result
    assert json.loads(result["content"]) == {"result": "hello through claude"}


def test_claude_strict_config_without_allowed_tools_refuses_the_tools(agents, work):
    """README trap: ``--strict-mcp-config`` without ``--allowedTools mcp__loopback``: ``-p`` refuses the call."""
    with _FakeAnthropic("mcp__loopback__echo", {"text": "hello"}) as model:
        _claude_prompt(agents, work, model, "--mcp-config", "{mcp_config}", "--strict-mcp-config", "-p", "say hello")
    (result,) = model.tool_results()
    assert result.get("is_error") and "haven't granted it yet" in str(result["content"]), result


# -- codex exec through loopback run, against a stand-in for the model API ---------------------

BUMP_TOOLS = '''\
import loopback


@loopback.tool
def bump(n: int) -> int:
    """Add one (not marked read-only: Codex asks before calling it unless told not to)."""
    return n + 1
'''


def _codex_exec(agents: agents_install.Installation, work: Work, model: _FakeResponses, *run_args: str,
                stdin: Any = subprocess.DEVNULL, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``loopback run --tools bump.py RUN_ARGS -- codex exec ...`` with Codex's model provider played by ``model``."""
    codex = _agent(agents, "codex")
    tools = work.root / "bump.py"
    tools.write_text(BUMP_TOOLS)
    (work.home / ".codex").mkdir(exist_ok=True)
    (work.home / ".codex" / "config.toml").write_text(
        'model = "gpt-5.1"\nmodel_provider = "stand-in"\n\n[model_providers.stand-in]\nname = "stand-in"\n'
        f'base_url = "{model.url}/v1"\nwire_api = "responses"\nenv_key = "STAND_IN_API_KEY"\n')
    env = {**_python_env(work), **_agent_env(work, agents, None), "STAND_IN_API_KEY": "not-a-key"}
    return _run_process([sys.executable, "-m", "loopback", "run", "--tools", str(tools), *run_args, "--",
                         codex, "exec", "--skip-git-repo-check", "bump 1"],
                        cwd=work.project, env=env, stdin=stdin, timeout=timeout)


def test_run_codex_exec_calls_a_loopback_tool(agents, work):
    """``loopback run -- codex exec``: the model asks for ``bump``, Codex calls it unattended
    (``default_tools_approval_mode = "approve"``; bump is not marked read-only)."""
    with _FakeResponses("mcp__loopback", "bump", {"n": 1}) as model:
        done = _codex_exec(agents, work, model)
    assert done.returncode == 0, _output(done)
    (result,) = model.tool_results()
    assert result["output"].endswith('{"result":2}'), result


def test_run_codex_exec_with_stdin_left_open(agents, work):
    """``loopback run -- codex exec`` from a host that leaves standard input open (a pipe no one
    writes to): Codex would wait for its end ("Reading additional input from stdin..."), so
    ``run`` must give it none."""
    read_end, write_end = os.pipe()
    try:
        with _FakeResponses("mcp__loopback", "bump", {"n": 1}) as model:
            done = _codex_exec(agents, work, model, stdin=read_end, timeout=20)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert done.returncode == 0, _output(done)
    (result,) = model.tool_results()
    assert result["output"].endswith('{"result":2}'), result


def test_codex_without_tool_approval_refuses_the_call(agents, work):
    """README trap: without ``default_tools_approval_mode = "approve"`` (overridden here after
    the run's own arguments) ``codex exec`` refuses a tool not marked read-only."""
    codex = _agent(agents, "codex")
    with _FakeResponses("mcp__loopback", "bump", {"n": 1}) as model:
        _codex_exec(agents, work, model)  # writes the files; the call below is the one that counts
        model.requests.clear()
        env = {**_python_env(work), **_agent_env(work, agents, None), "STAND_IN_API_KEY": "not-a-key"}
        done = _run_process([sys.executable, "-m", "loopback", "run", "--tools", str(work.root / "bump.py"), "--",
                             codex, "{mcp_args}", "-c", 'mcp_servers.loopback.default_tools_approval_mode="prompt"',
                             "exec", "--skip-git-repo-check", "bump 1"], cwd=work.project, env=env)
    assert done.returncode == 0, _output(done)
    (result,) = model.tool_results()
    assert "requires approval, but approval policy is never" in json.dumps(result), result
