"""The README's Python examples run as written."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_writing_tools_example_runs() -> None:
    (block,) = [b for b in _python_blocks() if "def forecast(" in b]
    module = types.ModuleType("readme_example")  # dataclasses look their module up
    sys.modules[module.__name__] = module
    try:
        # dont_inherit: the example must run without this file's __future__ imports
        exec(compile(block, "README.md", "exec", dont_inherit=True), module.__dict__)  # asserts inside check it
    finally:
        del sys.modules[module.__name__]
    registry = module.registry
    hook = registry.before_call_hook  # type: ignore[attr-defined]
    from loopback import CallBlocked, Context

    with pytest.raises(CallBlocked):
        hook("forget", {"city": "Oslo"}, Context())


def test_the_host_program_example_runs_an_agent_with_its_own_token_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The 'In a host program' block, with a stand-in ``claude`` on PATH that records what it got."""
    import json
    import os

    import loopback

    (block,) = [b for b in _python_blocks() if "prepare_agent_run(" in b and "run.spawn(" in b]
    record = tmp_path / "record.json"
    agent = tmp_path / "claude"
    agent.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "argv = sys.argv[1:]\n"
        "config = open(argv[argv.index('--mcp-config') + 1]).read()\n"
        f"json.dump({{'argv': argv, 'config': config, 'token': os.environ.get('LOOPBACK_TOKEN')}}, open({str(record)!r}, 'w'))\n"
    )
    agent.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    module = types.ModuleType("readme_host_example")
    sys.modules[module.__name__] = module
    try:
        exec(compile(block, "README.md", "exec", dont_inherit=True), module.__dict__)
    finally:
        del sys.modules[module.__name__]
        loopback.default_registry().remove("lookup_order")  # the example registers on the default registry
    seen = json.loads(record.read_text())
    assert seen["argv"][:1] == ["--mcp-config"] and seen["argv"][-2:] == ["-p", "Summarise order A-17"]
    assert "--strict-mcp-config" in seen["argv"]
    config_path = seen["argv"][1]
    assert not os.path.exists(config_path)  # deleted when the run ended
    assert seen["token"] and seen["token"] not in seen["config"]  # the token came in env, not the file
    assert "${LOOPBACK_TOKEN}" in seen["config"]
    assert loopback.active_runtime() is None  # the example closes the server at the end


def test_the_long_running_tools_example_runs() -> None:
    """The 'Long-running tools' block: a task over real HTTP, polled and read back (asserts inside)."""
    import threading

    (block,) = [b for b in _python_blocks() if "def run_tests(" in b]
    module = types.ModuleType("readme_tasks_example")
    sys.modules[module.__name__] = module
    try:
        exec(compile(block, "README.md", "exec", dont_inherit=True), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    assert module.task["status"] == "working"  # type: ignore[attr-defined]
    assert module.result["content"][0]["text"] == "unit: 42 passed"  # type: ignore[attr-defined]
    assert not [t for t in threading.enumerate() if t.name.startswith("loopback-task")]
