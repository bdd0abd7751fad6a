"""The README runs as written: every ``sh`` and ``python`` block, in order, from outside the checkout.

``test_every_block_runs_in_order_from_outside_the_checkout`` follows the README as a new
user would, in a fresh temporary directory that holds a copy of the clone (``loopback/``),
with its own ``HOME``: one shell session carried from block to block (its exported
variables and its directory), each ``python`` block run as a script by the session's
``python``. Agent CLIs (``claude``, ``codex``, ``gemini``, ``opencode``, ``cursor-agent``)
are stand-ins on ``PATH`` that find the URL they were given and list the tools with the
token from their environment, so a block that runs an agent checks that it got a working
config. A block that cannot run here says why, in an HTML comment just above it:
``<!-- readme-test: skip: REASON -->``; ``<!-- readme-test: python>=3.10 -->`` runs it only
on those Pythons. Every fenced block names its language: ``sh`` and ``python`` run, ``text``
(and ``json``, ``toml``) do not.

The other tests check two Python blocks more closely, in this process.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path
from typing import NamedTuple, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


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
# -- every block, in order, from outside the checkout ---------------------------------------------

RUN = {"sh": "sh", "bash": "sh", "shell": "sh", "python": "python"}
NOT_RUN = {"text", "json", "toml"}
FENCE = re.compile(r"^(?:<!-- readme-test: (?P<marker>.+?) -->\n)?```(?P<lang>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$",
                   re.M | re.S)
BLOCK_TIMEOUT = 300.0  # seconds; `pip install` of the official SDK is the slowest block
AGENTS = ("claude", "codex", "gemini", "opencode", "cursor-agent")
# Copied as "the clone": everything a user's clone has, not what tests and tools leave behind.
_NOT_CLONED = shutil.ignore_patterns(".git", ".tox", ".venv", "node_modules", "__pycache__", "build", "dist",
                                     "*.egg-info", ".coverage*", ".pytest_cache", ".hypothesis", ".mypy_cache")


class Block(NamedTuple):
    line: int
    lang: str
    marker: Optional[str]
    body: str


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    return [Block(text.count("\n", 0, m.start("body")), m["lang"].strip(), m["marker"], m["body"])
            for m in FENCE.finditer(text)]


def test_every_block_names_a_language_and_every_skip_a_reason() -> None:
    blocks = readme_blocks()
    assert blocks and sum(b.lang in RUN for b in blocks) >= 10
    for block in blocks:
        assert block.lang in RUN or block.lang in NOT_RUN, f"README.md:{block.line}: fence language {block.lang!r}"
        if block.marker is not None:
            assert block.marker == "python>=3.10" or re.fullmatch(r"skip: \S.{9,}", block.marker), (
                f"README.md:{block.line}: unknown marker {block.marker!r} (skip: REASON, or python>=3.10)")


STAND_IN_AGENT = """#!{python}
# A stand-in for the {name} CLI: find the loopback URL it was given (arguments, the files they
# name, the config files its environment names, .cursor/mcp.json) and list the tools with the
# token from its environment, as the real agent's MCP client would.
import json, os, re, sys, urllib.request
texts = list(sys.argv[1:])
paths = [*sys.argv[1:], os.environ.get("GEMINI_CLI_SYSTEM_SETTINGS_PATH", ""), os.environ.get("OPENCODE_CONFIG", ""),
         ".cursor/mcp.json"]
texts += [open(path).read() for path in paths if path and os.path.isfile(path)]
urls = re.findall(r"http://127\\.0\\.0\\.1:\\d+/mcp", "\\n".join(texts))
assert urls, "{name} stand-in: no loopback URL in " + repr(sys.argv[1:])
request = urllib.request.Request(urls[0], data=b'{{"jsonrpc":"2.0","id":1,"method":"tools/list"}}', headers={{
    "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
    "Authorization": "Bearer " + os.environ["LOOPBACK_TOKEN"]}})
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
tools = json.loads(opener.open(request, timeout=20).read())["result"]["tools"]
print("{name} (stand-in) sees tools:", ", ".join(tool["name"] for tool in tools))
"""

SESSION_WRAPPER = """set -eo pipefail
if [ -f "$README_STATE" ]; then . "$README_STATE"; fi
cd "$README_PWD"
{body}
{{ export -p; printf 'export README_PWD=%q\\n' "$PWD"; }} > "$README_STATE.new"
mv "$README_STATE.new" "$README_STATE"
"""


def _user_environment(work: Path, home: Path) -> dict[str, str]:
    """A new user's shell: nothing from this test run, stand-in agents and `python` first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "COV_CORE", "COVERAGE", "LOOPBACK_", "PIP_", "TOX_"))}
    real_pip_cache = Path(os.path.expanduser("~/.cache/pip"))
    bin_dir, runtime = work / "bin", home / "run"
    for folder in (bin_dir, runtime):
        folder.mkdir(mode=0o700)
    for name in ("python", "python3"):  # the interpreter under test, as the user's python3
        (bin_dir / name).symlink_to(sys.executable)
    for name in AGENTS:
        agent = bin_dir / name
        agent.write_text(STAND_IN_AGENT.format(python=sys.executable, name=name))
        agent.chmod(0o755)
    env.update({
        "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime), "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_CACHE_DIR": str(real_pip_cache),  # a warm cache, if any
        "README_STATE": str(work / "session.sh"), "README_PWD": str(work / "user"),
    })
    return env


def _run_block(block: Block, env: dict[str, str], user: Path, log: Path) -> tuple[int, str]:
    if block.lang == "python":
        script = user / f"readme_block_line_{block.line}.py"
        script.write_text(block.body)
        body = f"python {script.name}"
    else:
        body = block.body
    with log.open("w") as out:
        proc = subprocess.Popen(["bash", "-c", SESSION_WRAPPER.format(body=body)], cwd=user, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = -1
        finally:
            try:  # whatever the block left running in the background
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.wait(10)
    return code, log.read_text(errors="replace")


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("curl") is None, reason="needs bash and curl")
def test_every_block_runs_in_order_from_outside_the_checkout(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    shutil.copytree(ROOT, user / "loopback", ignore=_NOT_CLONED)  # the clone
    # A home of its own, below the real one: a home below /tmp (world-writable) makes loopback
    # refuse its runtime directory, and Gemini CLI its settings, as they would for a user.
    home = Path(os.path.expanduser("~")) / ".cache" / f"loopback-readme-test-{os.getpid()}-{time.monotonic_ns()}"
    home.mkdir(mode=0o700, parents=True)
    try:
        _run_every_block(user, _user_environment(tmp_path, home))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run_every_block(user: Path, env: dict[str, str]) -> None:
    tmp_path = user.parent
    ran, skipped = [], []
    for block in readme_blocks():
        if block.lang not in RUN:
            continue
        if block.marker is not None and block.marker.startswith("skip: "):
            skipped.append(f"README.md:{block.line}: {block.marker[6:]}")
            continue
        if block.marker == "python>=3.10" and sys.version_info < (3, 10):
            skipped.append(f"README.md:{block.line}: needs Python 3.10+ (the official mcp SDK)")
            continue
        started = time.monotonic()
        code, output = _run_block(block, env, user, tmp_path / f"block_{block.line}.log")
        assert code == 0, (f"README.md:{block.line} ({block.lang} block) exited {code} after "
                           f"{time.monotonic() - started:.1f}s:\n{textwrap.indent(block.body, '    ')}\n--- output:\n{output[-6000:]}")
        ran.append(block.line)
    print(f"ran {len(ran)} README blocks; skipped: {skipped}")
    assert len(ran) >= 9 and len(ran) + len(skipped) >= 12  # the fences were found
