"""`python -m loopback serve` and `config` as a user runs them: real subprocesses, real HTTP,
real signals. Every serve here announces itself in a temporary LOOPBACK_RUNTIME_DIR."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

try:
    import tomllib
except ImportError:  # Python 3.9 and 3.10: the same parser from PyPI (tox deps)
    import tomli as tomllib  # type: ignore[no-redef]

from conftest import Client, port_accepts
from loopback.clients import FORMATS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the serves of a test announce themselves (never the user's own directory)."""
    directory = tmp_path / "runtime"
    monkeypatch.setenv("LOOPBACK_RUNTIME_DIR", str(directory))
    monkeypatch.delenv("LOOPBACK_PORT", raising=False)
    return directory


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "loopback", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loopback", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _config_block(text: str) -> str:
    """The client config serve printed: the lines after its header, up to the blank line."""
    after = text.split(" (save it as FILE", 1)[1].split("\n", 1)[1]
    return after.split("\n\n", 1)[0] + "\n"


def _exports(text: str) -> dict[str, str]:
    """The variables the printed `export` lines set, as a shell would."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            env[name] = shlex.split(value)[0]
    return env


def _expand(value: str, env: dict[str, str]) -> str:
    """What a client makes of its variable references: ${NAME}, ${env:NAME}, {env:NAME}."""
    return re.sub(r"\$\{env:(\w+)\}|\$\{(\w+)\}|\{env:(\w+)\}",
                  lambda m: env[next(g for g in m.groups() if g)], value)


def _works(url: str, headers: dict[str, str]) -> None:
    """A real tools/call made with nothing but a printed config."""
    port = int(re.fullmatch(r"http://127\.0\.0\.1:(\d+)/mcp", url).group(1))
    client = Client(port, None)
    try:
        # As a client does: initialize (which opens the session), then the call.
        client.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
            headers=client.headers(**headers))
        assert client.session_id
        client.conn.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "echo", "arguments": {"text": "hi"}}}), client.headers(**headers))
        response = client.conn.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200 and answer["result"]["content"] == [{"type": "text", "text": "hi"}], answer
    finally:
        client.close()


def _read_banner(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Port, token and everything printed up to the 'Press Ctrl-C' line."""
    lines = []
    deadline = time.monotonic() + 20
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Press Ctrl-C"):
            break
    text = "".join(lines)
    url = re.search(r"MCP server on (http://127\.0\.0\.1:(\d+)/mcp)", text)
    token = re.search(r"^token: (\S+)$", text, re.M)
    assert url and token, text + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
    return int(url.group(2)), token.group(1), text


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], int, str, str]]:
    proc = _spawn("serve")
    try:
        port, token, text = _read_banner(proc)
        yield proc, port, token, text
    finally:
        _stop(proc)


def test_serve_prints_url_token_and_a_config_that_works(served):
    proc, port, token, text = served
    config = json.loads(_config_block(text))
    entry = config["mcpServers"]["loopback"]
    assert entry["type"] == "http" and entry["url"] == f"http://127.0.0.1:{port}/mcp"
    # The token travels in the environment: the config names it, an export line sets it.
    assert entry["headers"]["Authorization"] == "Bearer ${LOOPBACK_TOKEN}"
    assert _exports(text) == {"LOOPBACK_TOKEN": token}
    assert "# agent arguments: --mcp-config FILE --allowedTools mcp__loopback --strict-mcp-config" in text
    _works(entry["url"], {k: _expand(v, _exports(text)) for k, v in entry["headers"].items()})
    client = Client(port, token)
    try:
        client.initialize()
        names = {t["name"] for t in client.rpc("tools/list")["result"]["tools"]}
        assert {"echo", "add", "current_time", "word_count", "host_info"} <= names
        result = client.call_tool("add", {"a": 2, "b": 0.5})["result"]
        assert result == {"content": [{"type": "text", "text": "2.5"}], "isError": False,
                          "structuredContent": {"result": 2.5}}
        counted = client.call_tool("word_count", {"text": "one two\nthree"})["result"]
        assert counted["structuredContent"] == {"characters": 13, "words": 3, "lines": 2}
    finally:
        client.close()


def _paste(text: str) -> dict[str, Any]:
    """Run the banner's export and curl lines in a shell, as a user pasting them would."""
    lines = [line for line in text.splitlines() if line.startswith(("export ", "curl "))]
    assert lines[-1].startswith("curl "), text
    env = {k: v for k, v in os.environ.items() if k != "LOOPBACK_TOKEN"}
    done = subprocess.run(["bash", "-c", "\n".join(lines)], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None, reason="needs curl and bash")
def test_the_banner_curl_line_calls_a_tool_when_pasted(served):
    _, _, token, text = served
    (curl,) = [line for line in text.splitlines() if line.startswith("curl ")]
    assert token not in curl  # the token comes from $LOOPBACK_TOKEN, never the command line
    assert _paste(text)["result"]["content"] == [{"type": "text", "text": "5"}]


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None, reason="needs curl and bash")
def test_the_banner_curl_line_lists_the_tools_of_a_tool_file_in_any_format(tmp_path):
    tools = tmp_path / "my_tools.py"
    tools.write_text("import loopback\n\n@loopback.tool\ndef shout(text: str) -> str:\n    return text.upper()\n")
    proc = _spawn("serve", "--tools", str(tools), "--format", "cursor")
    try:
        _, _, text = _read_banner(proc)
        assert [tool["name"] for tool in _paste(text)["result"]["tools"]] == ["shout"]
    finally:
        _stop(proc)


def test_usage_names_the_console_script_or_python_m(tmp_path):
    """``loopback --help`` says ``usage: loopback``; ``python -m loopback --help`` says that."""
    as_module = subprocess.run([sys.executable, "-m", "loopback", "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=30)
    assert as_module.stdout.startswith("usage: python -m loopback "), as_module.stdout
    script = tmp_path / "loopback"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                      "from loopback.cli import main\nraise SystemExit(main())\n")
    script.chmod(0o755)
    as_script = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert as_script.stdout.startswith("usage: loopback "), as_script.stdout


def test_serve_stops_cleanly_on_sigterm(served):
    proc, port, _, _ = served
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_serve_stops_cleanly_on_ctrl_c(served):
    proc, _, _, _ = served
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0
    assert "Traceback" not in proc.stderr.read()


def test_serve_with_a_tool_file(tmp_path):
    tools = tmp_path / "my_tools.py"
    tools.write_text(
        "import loopback\n\n"
        "@loopback.tool\n"
        "def shout(text: str) -> str:\n"
        "    'Upper-case the text.'\n"
        "    return text.upper()\n"
    )
    proc = _spawn("serve", "--tools", str(tools))
    try:
        port, token, text = _read_banner(proc)
        assert "tools: shout" in text
        client = Client(port, token)
        try:
            assert client.call_tool("shout", {"text": "hi"})["result"]["content"][0]["text"] == "HI"
        finally:
            client.close()
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
        proc.stdout.close()
        proc.stderr.close()


def test_serve_on_a_pinned_port_from_the_environment():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = _spawn("serve", env={"LOOPBACK_PORT": str(port)})
    try:
        served_port, _, _ = _read_banner(proc)
        assert served_port == port
    finally:
        proc.terminate()
        proc.wait(20)
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["serve", "--tools", "no_such_module_xyz"], 1, "cannot import tools from 'no_such_module_xyz'"),
        (["serve", "--tools", "missing_file.py"], 1, "tool file not found: missing_file.py"),
        (["serve", "--tools", "json"], 1, "no tools were registered by json"),
        (["serve", "--port", "70000"], 2, "port out of range"),
        (["serve", "--host", "0.0.0.0"], 1, "refusing to bind non-loopback host"),
        (["serve", "--format", "emacs"], 2, "invalid choice: 'emacs'"),
        (["config"], 2, "the following arguments are required: --format"),
        (["config", "--format", "emacs"], 2, "invalid choice: 'emacs'"),
        (["config", "--format", "claude"], 1, "no running `python -m loopback serve` found"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_errors_are_one_clear_line_and_an_exit_code(args, code, message):
    proc = _cli(*args)
    assert proc.returncode == code
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_on_an_explicit_port_that_is_taken_fails_rather_than_moving():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = _cli("serve", "--port", str(port))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"loopback: error: cannot listen on 127.0.0.1:{port}: the port is already in use"


@pytest.mark.parametrize("verb", ["serve", "config", "run"])
def test_help_of_each_verb_documents_formats_and_exit_codes(verb):
    out = _cli(verb, "--help")
    assert out.returncode == 0
    assert "--format" in out.stdout and "exit codes:" in out.stdout
    assert all(format in out.stdout for format in FORMATS)


def test_help_and_version():
    out = _cli("serve", "--help")
    assert out.returncode == 0 and "--tools" in out.stdout and "--port" in out.stdout
    assert "exit codes:" in _cli("--help").stdout
    version = _cli("--version")
    import loopback

    assert version.stdout.strip() == f"loopback {loopback.__version__}"


# --- every format -------------------------------------------------------------------------


@pytest.mark.parametrize("format", FORMATS)
def test_serve_prints_a_parseable_config_in_every_format(format):
    proc = _spawn("serve", "--format", format)
    try:
        port, token, text = _read_banner(proc)
    finally:
        _stop(proc)
    block = _config_block(text)
    parsed = tomllib.loads(block) if format == "codex" else json.loads(block)
    assert f"127.0.0.1:{port}" in json.dumps(parsed)
    env = _exports(text.split("# try it with curl")[0])  # the curl lines export the token for themselves
    if format in ("zed", "generic", "claude-desktop", "stdio"):  # no variables expanded: the token is in the file
        assert token in block and env == {}
        assert _exports(text) == {"LOOPBACK_TOKEN": token}
    else:
        assert token not in block and env == {"LOOPBACK_TOKEN": token}


# --- the runtime file and `config` ---------------------------------------------------------


def _runtime_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("serve-*.json")) if directory.exists() else []


def test_serve_announces_itself_in_a_private_runtime_file_removed_on_sigterm(served, runtime_dir):
    proc, port, token, _ = served
    (path,) = _runtime_files(runtime_dir)
    assert path.name == f"serve-{proc.pid}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700
    record = json.loads(path.read_text())
    assert record["pid"] == proc.pid and record["port"] == port and record["token"] == token
    assert record["url"] == f"http://127.0.0.1:{port}/mcp" and "T" in record["started"]
    assert list(runtime_dir.iterdir()) == [path]  # no temporary file left beside it
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert _runtime_files(runtime_dir) == [] and not port_accepts(port)


def test_config_finds_the_running_serve_and_prints_a_config_that_works(served):
    _, port, token, _ = served
    out = _cli("config", "--format", "generic")
    assert out.returncode == 0, out.stderr
    config = json.loads(out.stdout)  # stdout is the config alone
    assert config == {"url": f"http://127.0.0.1:{port}/mcp", "headers": {"Authorization": f"Bearer {token}"}}
    _works(config["url"], config["headers"])

    out = _cli("config", "--format", "claude", "--name", "host-tools")
    assert out.returncode == 0, out.stderr
    entry = json.loads(out.stdout)["mcpServers"]["host-tools"]
    env = _exports(out.stderr)  # the export lines a user copies, on stderr
    assert env == {"LOOPBACK_TOKEN": token}
    assert all(line.startswith(("#", "export ")) for line in out.stderr.splitlines())  # eval-able
    _works(entry["url"], {k: _expand(v, env) for k, v in entry["headers"].items()})


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, timeout=30)
    return int(proc.stdout)


def _stale_file(directory: Path, **record: Any) -> Path:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"serve-{record['pid']}.json"
    path.write_text(json.dumps({"url": "http://127.0.0.1:9/mcp", "port": 9, "token": "t" * 43, **record}))
    path.chmod(0o600)  # as serve writes it: config trusts no other mode
    return path


def test_config_ignores_and_removes_the_file_of_a_dead_serve(runtime_dir):
    stale = _stale_file(runtime_dir, pid=_dead_pid(), started="2999-01-01T00:00:00+00:00")
    out = _cli("config", "--format", "claude")
    assert out.returncode == 1 and "no running `python -m loopback serve` found" in out.stderr
    assert not stale.exists()


def test_config_prefers_the_live_serve_over_a_newer_stale_file(served, runtime_dir):
    _, port, _, _ = served
    stale = _stale_file(runtime_dir, pid=_dead_pid(), started="2999-01-01T00:00:00+00:00")
    garbage = runtime_dir / "serve-1.json"
    garbage.write_text("not json")
    garbage.chmod(0o600)
    out = _cli("config", "--format", "generic")
    assert out.returncode == 0 and json.loads(out.stdout)["url"] == f"http://127.0.0.1:{port}/mcp"
    assert not stale.exists() and garbage.exists()  # what it cannot read, it leaves alone


def test_an_unforeseen_error_is_one_line_not_a_traceback(monkeypatch, capsys):
    """Whatever goes wrong inside a verb (here: a failure no handler foresaw), the CLI prints
    one ``loopback: error:`` line and exits 1; ``-vv`` logs the traceback."""
    from loopback import cli

    def broken(args):
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(cli, "_config", broken)
    assert cli.main(["config", "--format", "claude"]) == 1
    err = capsys.readouterr().err
    assert err == "loopback: error: RuntimeError: can't create new thread at interpreter shutdown\n"
