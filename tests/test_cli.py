"""`python -m loopback serve` as a user runs it: a real subprocess, real HTTP, real signals."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Client

ROOT = Path(__file__).resolve().parent.parent


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "loopback", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )


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
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_serve_prints_url_token_and_a_config_that_works(served):
    proc, port, token, text = served
    config = json.loads(text[text.index("{"): text.rindex("}") + 1])
    entry = config["mcpServers"]["loopback"]
    assert entry["type"] == "http" and entry["url"] == f"http://127.0.0.1:{port}/mcp"
    assert entry["headers"]["Authorization"] == f"Bearer {token}"
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
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_errors_are_one_clear_line_and_an_exit_code(args, code, message):
    proc = subprocess.run([sys.executable, "-m", "loopback", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == code
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_and_version():
    out = subprocess.run([sys.executable, "-m", "loopback", "serve", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "--tools" in out.stdout and "--port" in out.stdout
    version = subprocess.run([sys.executable, "-m", "loopback", "--version"], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
    import loopback

    assert version.stdout.strip() == f"loopback {loopback.__version__}"
