"""Issue 13: what real agent CLIs and real hosts tripped on, each against real servers.

Configs where agents accept them (no group- or world-writable directory above them),
arguments only on the command lines that start a session, the agents' traps (codex exec's
standard input, Gemini's untrusted folder, Claude's pending project server), the CLI's
hardening (``config`` trusts only private runtime files naming a loopback URL; ``serve``
cleans up on SIGHUP), and the host side (a failed start, ``close()`` racing a run, one
``atexit`` hook, SIGTERM and stale-run sweeps, ``live``/``expires_at``, labels, early
validation, ``spawn`` with process groups and timeouts, a cap on live runs). Agents here
are small Python scripts on PATH named after the real ones; every process is bounded by
a timeout and killed in ``finally``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

import loopback
from conftest import make_registry, port_accepts, wait_for
from loopback import lifecycle
from loopback.host import prepare_agent_run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TIMEOUT = 60
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# An agent that reports what it was given: its arguments, the loopback variables of its
# environment, whether its standard input is /dev/null, and, for a Gemini settings file,
# whether Gemini CLI would read it (no group- or world-writable directory above it).
REPORT_AGENT = r'''
import json, os, stat, sys

def gemini_would_read(path):
    directory = os.path.dirname(os.path.realpath(path))
    while True:
        if os.stat(directory).st_mode & 0o022:
            return False
        parent = os.path.dirname(directory)
        if parent == directory:
            return True
        directory = parent

settings = os.environ.get("GEMINI_CLI_SYSTEM_SETTINGS_PATH")
print(json.dumps({
    "agent": os.path.basename(sys.argv[0]),
    "args": sys.argv[1:],
    "env": {k: v for k, v in os.environ.items() if k.startswith(("LOOPBACK_", "GEMINI_CLI_", "OPENCODE_"))},
    "stdin_devnull": os.path.samestat(os.fstat(0), os.stat(os.devnull)),
    "gemini_reads_settings": gemini_would_read(settings) if settings else None,
    "pgid_is_pid": os.getpgid(0) == os.getpid(),
}), flush=True)
sys.exit(int(os.environ.get("REPORT_AGENT_EXIT", "0")))
'''

# An agent that starts a grandchild (into its own process group), writes both pids, and sleeps.
SLEEPY_AGENT = r'''
import os, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
with open(sys.argv[1], "w") as file:
    file.write(f"{os.getpid()} {grandchild.pid}")
time.sleep(120)
'''


def _private_enough(path: Path, *, strict: bool) -> bool:
    """The test's own reading of the rule: each directory from the root down to ``path``
    owned by root or us, and (strict) none group- or world-writable."""
    for component in [path, *path.parents]:
        info = component.stat()
        if info.st_uid not in (0, os.getuid()):
            return False
        if info.st_mode & 0o022 and (strict or not info.st_mode & stat.S_ISVTX):
            return False
    return True


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


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A runtime directory for the test below the home directory (never below /tmp, which
    Gemini CLI refuses), removed afterwards."""
    base = Path.home() / ".cache"
    base.mkdir(parents=True, exist_ok=True)
    if not _private_enough(base, strict=True):
        pytest.skip(f"{base} is below a group- or world-writable directory")
    directory = base / f"loopback-test-{os.getpid()}-{time.monotonic_ns()}"
    monkeypatch.setenv("LOOPBACK_RUNTIME_DIR", str(directory))
    monkeypatch.delenv(lifecycle.PORT_ENV, raising=False)
    try:
        yield directory
    finally:
        subprocess.run(["rm", "-rf", str(directory)], check=False)


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """claude, codex, gemini and opencode on PATH, each the report agent."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in ("claude", "codex", "gemini", "opencode"):
        path = directory / name
        path.write_text(f"#!{sys.executable}\n{REPORT_AGENT}")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    return directory


def _loopback(*args: str, env: Optional[dict[str, str]] = None, cwd: Path = ROOT,
              stdin: Any = None) -> subprocess.CompletedProcess[str]:
    """``python -m loopback ARGS``; its standard input a pipe left open unless told."""
    proc = subprocess.Popen([sys.executable, "-m", "loopback", *args], cwd=cwd, text=True,
                            stdin=subprocess.PIPE if stdin is None else stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    try:
        # The pipe stays open while the agent runs: an agent that reads it would wait.
        stdout, stderr = proc.communicate(timeout=TIMEOUT) if stdin is not None else _drain(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _drain(proc: subprocess.Popen[str]) -> tuple[str, str]:
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
               for s, b in ((proc.stdout, out), (proc.stderr, err))]
    for reader in readers:
        reader.start()
    proc.wait(TIMEOUT)
    for reader in readers:
        reader.join(10)
    assert proc.stdin is not None
    proc.stdin.close()
    return "".join(out), "".join(err)


def _report(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])


def _process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie nobody reaped yet
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    return proc.pid


# --- configs where agents accept them ----------------------------------------------------


def test_a_runs_config_lives_in_the_private_runtime_directory_not_in_tmp(runtime_dir):
    with prepare_agent_run(registry=make_registry(), format="gemini") as run:
        assert run.enabled, run.warning
        path = Path(run.config_path)
        assert path.parent.parent == runtime_dir and path.parent.name.startswith(f"loopback-run-{os.getpid()}-")
        assert _private_enough(path.parent, strict=True)  # what Gemini CLI demands
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700 and stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700
    assert not path.parent.exists()


def test_a_directory_the_agent_would_skip_is_refused_before_anything_starts(tmp_path, binds):
    # tmp_path is below /tmp (world-writable, sticky): Gemini CLI skips a settings file there.
    with pytest.raises(ValueError, match="not private .*/tmp is world-writable.*Gemini CLI would skip"):
        prepare_agent_run(registry=make_registry(), format="gemini", directory=str(tmp_path))
    assert binds == [] and lifecycle._singleton is None
    # A directory others can write to (no sticky bit) is refused for every format.
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(ValueError, match="world-writable"):
        prepare_agent_run(registry=make_registry(), format="claude", directory=str(open_dir))
    # A private directory below the sticky /tmp is fine for agents that do not check.
    with prepare_agent_run(registry=make_registry(), format="claude", directory=str(tmp_path)) as run:
        assert run.enabled and Path(run.config_path).parent == tmp_path


def test_a_runtime_directory_below_tmp_fails_a_gemini_run_loudly(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LOOPBACK_RUNTIME_DIR", str(tmp_path / "runtime"))
    with caplog.at_level(logging.WARNING, "loopback"):
        run = prepare_agent_run(registry=make_registry(), format="gemini")
    assert not run.enabled and "/tmp is world-writable" in run.warning and "LOOPBACK_RUNTIME_DIR" in run.warning
    assert "goes on without MCP" in caplog.text
    with prepare_agent_run(registry=make_registry(), format="claude") as run:  # claude does not check
        assert run.enabled


def test_run_gemini_with_the_default_tmpdir_gets_a_config_gemini_reads(agents, runtime_dir):
    out = _loopback("run", "--", "gemini", "mcp", "list", env={"TMPDIR": "/tmp"})
    assert out.returncode == 0, out.stderr
    report = _report(out.stdout)
    assert report["gemini_reads_settings"] is True
    assert report["env"]["GEMINI_CLI_SYSTEM_SETTINGS_PATH"].startswith(str(runtime_dir))
    assert report["args"] == ["mcp", "list"]


def test_run_config_dir_writes_there_and_refuses_one_the_agent_would_skip(agents, runtime_dir, tmp_path):
    mine = runtime_dir.parent / f"{runtime_dir.name}-mine"
    mine.mkdir(mode=0o700)
    try:
        out = _loopback("run", "--config-dir", str(mine), "--", "gemini", "-p", "hi")
        assert out.returncode == 0, out.stderr
        assert _report(out.stdout)["env"]["GEMINI_CLI_SYSTEM_SETTINGS_PATH"] == str(mine / "settings.json")
        assert list(mine.iterdir()) == []  # removed after the run; the directory stays
    finally:
        mine.rmdir()
    out = _loopback("run", "--config-dir", str(tmp_path), "--", "gemini", "-p", "hi")
    assert out.returncode == 1 and out.stdout == "" and "Traceback" not in out.stderr
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("loopback:")]
    assert line.startswith("loopback: error: directory") and "Gemini CLI would skip" in line


# --- arguments only where they work -------------------------------------------------------


@pytest.mark.parametrize("format, argv, session, closed_stdin", [
    ("claude", ["claude", "mcp", "list"], False, False),
    ("claude", ["claude", "config", "get", "x"], False, False),
    ("claude", ["claude", "--version"], False, False),
    ("claude", ["claude", "-p", "hi"], True, False),
    ("claude", ["claude"], True, False),
    ("claude", ["claude", "mcp"], False, False),
    ("codex", ["codex", "exec", "hi"], True, True),
    ("codex", ["codex", "exec", "-"], True, False),  # the prompt comes from standard input
    ("codex", ["codex", "--model", "x", "exec", "hi"], False, False),  # "x" reads as a word: no guess
    ("codex", ["codex", "e", "hi"], True, True),
    ("codex", ["codex"], True, False),
    ("codex", ["codex", "mcp", "list"], False, False),
    ("codex", ["codex", "app-server"], False, False),
    ("gemini", ["gemini", "mcp", "list"], True, False),
    ("opencode", ["opencode", "run", "hi"], True, False),
    ("generic", ["python", "agent.py"], True, False),
])
def test_agent_call_knows_which_command_lines_start_a_session(format, argv, session, closed_stdin):
    call = loopback.clients.agent_call(format, argv)
    assert (call.session, call.closed_stdin) == (session, closed_stdin)


def test_run_claude_mcp_list_gets_the_environment_but_no_arguments(agents, runtime_dir):
    out = _loopback("run", "--", "claude", "mcp", "list")
    assert out.returncode == 0, out.stderr
    report = _report(out.stdout)
    assert report["args"] == ["mcp", "list"]
    assert len(report["env"]["LOOPBACK_TOKEN"]) == 43
    out = _loopback("run", "--", "claude", "-p", "hi")
    args = _report(out.stdout)["args"]
    assert args[0] == "--mcp-config" and args[-2:] == ["-p", "hi"]


def test_prepared_run_command_leaves_subcommands_alone(runtime_dir):
    with prepare_agent_run(registry=make_registry(), format="claude") as run:
        assert run.command(["claude", "mcp", "list"]) == ["claude", "mcp", "list"]
        assert run.command(["claude", "-p", "x"])[:2] == ["claude", "--mcp-config"]
        # An explicit placeholder is always honoured.
        assert run.command(["claude", "mcp", "{mcp_args}"])[2] == "--mcp-config"
    with prepare_agent_run(registry=make_registry(), format="codex") as run:
        assert run.command(["codex", "mcp", "list"]) == ["codex", "mcp", "list"]
        assert run.command(["codex", "exec", "x"])[1] == "-c"


# --- agents' traps ------------------------------------------------------------------------


def test_run_codex_exec_gets_its_standard_input_closed(agents, runtime_dir):
    out = _loopback("run", "--", "codex", "exec", "hi")  # loopback's own stdin: an open pipe
    assert out.returncode == 0, out.stderr
    assert _report(out.stdout)["stdin_devnull"] is True
    out = _loopback("run", "--", "codex", "mcp", "list")
    assert _report(out.stdout)["stdin_devnull"] is False


def test_run_hints_when_gemini_refuses_an_untrusted_folder(agents, runtime_dir):
    out = _loopback("run", "--", "gemini", "-p", "hi", env={"REPORT_AGENT_EXIT": "55"})
    assert out.returncode == 55
    hints = [line for line in out.stderr.splitlines() if line.startswith("loopback: hint:")]
    assert len(hints) == 1 and "Gemini CLI exits 55" in hints[0] and "GEMINI_CLI_TRUST_WORKSPACE=true" in hints[0]
    out = _loopback("run", "--", "gemini", "-p", "hi", env={"REPORT_AGENT_EXIT": "1"})
    assert out.returncode == 1 and "hint" not in out.stderr


def test_run_hints_when_claude_fails_beside_a_project_mcp_json(agents, runtime_dir, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    out = _loopback("run", "--", "claude", "-p", "hi", env={"REPORT_AGENT_EXIT": "1"}, cwd=project)
    assert out.returncode == 1 and "hint" not in out.stderr
    (project / ".mcp.json").write_text("{}")
    out = _loopback("run", "--", "claude", "-p", "hi", env={"REPORT_AGENT_EXIT": "1"}, cwd=project)
    assert out.returncode == 1
    assert "loopback: hint: Claude Code keeps the servers of a project .mcp.json" in out.stderr
    out = _loopback("run", "--", "claude", "-p", "hi", cwd=project)  # success: no hint
    assert out.returncode == 0 and "hint" not in out.stderr


# --- CLI hardening ------------------------------------------------------------------------


def _runtime_file(directory: Path, url: str = "http://127.0.0.1:9/mcp", mode: int = 0o600) -> Path:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"serve-{os.getpid()}.json"  # this test's pid: a live process
    path.write_text(json.dumps({"pid": os.getpid(), "url": url, "port": 9, "token": "t" * 43,
                                "started": "2999-01-01T00:00:00+00:00"}))
    path.chmod(mode)
    return path


@pytest.mark.parametrize("hostile", ["other owner", "mode 0644", "directory 0777", "remote url"])
def test_config_ignores_a_runtime_file_it_cannot_trust(hostile, tmp_path):
    directory = tmp_path / "runtime"
    path = _runtime_file(directory, url="https://evil.example/mcp" if hostile == "remote url" else
                         "http://127.0.0.1:9/mcp")
    if hostile == "other owner":
        if not IS_ROOT:
            pytest.skip("only root can give a file to another user")
        os.chown(path, 65534, 65534)
    elif hostile == "mode 0644":
        path.chmod(0o644)
    elif hostile == "directory 0777":
        directory.chmod(0o777)
    out = subprocess.run([sys.executable, "-m", "loopback", "config", "--format", "generic"], cwd=ROOT,
                         capture_output=True, text=True, timeout=TIMEOUT,
                         env={**os.environ, "LOOPBACK_RUNTIME_DIR": str(directory)})
    assert out.returncode == 1 and out.stdout == "", out.stdout
    assert "evil.example" not in out.stdout
    assert f"ignoring runtime file {path}" in out.stderr
    assert "no running `python -m loopback serve` found" in out.stderr
    assert path.exists()  # not ours to delete


def test_config_accepts_the_same_file_when_it_is_private_and_local(tmp_path):
    directory = tmp_path / "runtime"
    _runtime_file(directory, url="http://[::1]:9/mcp")
    out = subprocess.run([sys.executable, "-m", "loopback", "config", "--format", "generic"], cwd=ROOT,
                         capture_output=True, text=True, timeout=TIMEOUT,
                         env={**os.environ, "LOOPBACK_RUNTIME_DIR": str(directory)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["url"] == "http://[::1]:9/mcp"


def test_serve_cleans_up_on_sighup(tmp_path):
    directory = tmp_path / "runtime"
    proc = subprocess.Popen([sys.executable, "-m", "loopback", "serve"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "LOOPBACK_RUNTIME_DIR": str(directory)})
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        port = int(first.split("127.0.0.1:")[1].split("/")[0])
        assert wait_for(lambda: list(directory.glob("serve-*.json")) != [], 10)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(TIMEOUT) == 0
        assert list(directory.glob("serve-*.json")) == [] and not port_accepts(port)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


# --- host: starting and closing -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_start_that_fails_after_binding_closes_what_it_opened(monkeypatch):
    registry = make_registry()
    listeners = len(registry._tools.changed._listeners)
    port = _free_port()
    real_start = threading.Thread.start

    def refuse_server_thread(thread: threading.Thread) -> None:
        # The OS refusing a thread: only the server's accept thread (not connections').
        if thread.name.startswith("loopback-mcp:") and not thread.name.endswith(":conn"):
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", refuse_server_thread)
    settings = loopback.Settings(port_fallback=False)
    with pytest.raises(loopback.StartError, match="cannot start the server thread: can't start new thread"):
        lifecycle.ensure(port, registry=registry, settings=settings)
    assert not port_accepts(port)  # the listening socket is closed
    assert len(registry._tools.changed._listeners) == listeners  # and its subscription gone
    assert lifecycle._servers == set() and lifecycle.active_runtime() is None
    monkeypatch.setattr(threading.Thread, "start", real_start)
    server = lifecycle.ensure(port, registry=registry, settings=settings)  # a retry on the same port
    assert server.port == port and port_accepts(port)


def test_a_run_prepared_while_close_runs_never_gets_a_dead_server():
    registry = make_registry()
    stop = threading.Event()

    def closer() -> None:
        while not stop.is_set():
            lifecycle.close()
            time.sleep(0.0005)

    thread = threading.Thread(target=closer)
    thread.start()
    dead = enabled = tried = 0
    deadline = time.monotonic() + 15
    try:
        while tried < 400 and time.monotonic() < deadline:
            tried += 1
            run = prepare_agent_run(registry=registry)
            was_enabled = run.enabled
            lease = run._lease
            server = getattr(lease, "server", None) or getattr(lease, "_server", None)
            if was_enabled and server is not None and server.closed:
                dead += 1
            enabled += was_enabled
            run.close()
    finally:
        stop.set()
        thread.join(10)
    assert dead == 0, f"{dead} of {tried} runs were enabled on a closed server"
    assert enabled > 0  # most runs get a server, the new one when the old closed


def test_runs_share_one_atexit_hook():
    count = getattr(atexit, "_ncallbacks", None)
    if count is None:
        pytest.skip("atexit._ncallbacks is CPython's")
    registry = make_registry()
    first = prepare_agent_run(registry=registry)
    before = count()
    runs = [prepare_agent_run(registry=registry) for _ in range(50)]
    assert count() == before
    for run in [first, *runs]:
        run.close()
    assert count() == before


CHILD_HOST = r'''
import json, os, signal, sys, threading, time
sys.path.insert(0, sys.argv[1])
import loopback
from loopback.tools import ToolRegistry
mode, agent_script, pids = sys.argv[2:5]
if mode == "own-handler":
    signal.signal(signal.SIGTERM, lambda signum, frame: (print("own handler", flush=True), sys.exit(3)))
    assert not loopback.install_sigterm_cleanup()  # the host's handler stays
registry = ToolRegistry()
registry.tool(lambda: "pong", name="ping")
if mode == "worker-thread":  # a gateway: runs prepared off the main thread
    assert loopback.install_sigterm_cleanup()
    holder = []
    worker = threading.Thread(target=lambda: holder.append(loopback.prepare_agent_run(registry=registry)))
    worker.start()
    worker.join()
    run = holder[0]
else:
    run = loopback.prepare_agent_run(registry=registry)
handler = signal.getsignal(signal.SIGTERM)


def announce():
    while not os.path.exists(pids) or not open(pids).read():
        time.sleep(0.01)
    print(json.dumps({"dir": os.path.dirname(run.config_path), "pids": open(pids).read(),
                      "handler": getattr(handler, "__name__", str(handler))}), flush=True)


threading.Thread(target=announce, daemon=True).start()
if mode == "in-spawn":  # the main thread waits inside spawn() when SIGTERM comes
    run.spawn([sys.executable, agent_script, pids])
else:
    run.start([sys.executable, agent_script, pids])
    time.sleep(60)
'''


@pytest.mark.parametrize("host", ["default", "in-spawn", "worker-thread", "own-handler"])
def test_sigterm_to_the_host_removes_its_run_directories_and_ends_its_agents(host, runtime_dir, tmp_path):
    (tmp_path / "sleepy.py").write_text(SLEEPY_AGENT)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_HOST, str(ROOT), host, str(tmp_path / "sleepy.py"), str(tmp_path / "pids")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "LOOPBACK_RUNTIME_DIR": str(runtime_dir)})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        started = json.loads(line)
        agent, grandchild = map(int, started["pids"].split())
        assert Path(started["dir"]).is_dir()
        if host == "own-handler":
            assert started["handler"] == "<lambda>"  # the host's own handler is left alone
        else:
            assert started["handler"] == "_on_sigterm"  # installed: the host had left the default
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(TIMEOUT)
        assert code == (3 if host == "own-handler" else -signal.SIGTERM)
        assert time.monotonic() - began < 4  # the agent went at SIGTERM: no kill grace spent
        # The host's exit (atexit) or our SIGTERM handler removed the directory and ended
        # the agent's process group, grandchild included.
        assert not Path(started["dir"]).exists()
        assert wait_for(lambda: _process_gone(agent) and _process_gone(grandchild), 10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
        for pid in locals().get("agent", None), locals().get("grandchild", None):
            if pid and not _process_gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_next_start_sweeps_stale_run_directories_of_dead_processes(runtime_dir):
    runtime_dir.mkdir(mode=0o700)
    dead = _dead_pid()
    stale = runtime_dir / f"loopback-run-{dead}-abc"
    stale.mkdir()
    (stale / "loopback.json").write_text("{}")
    living = runtime_dir / "loopback-run-1-abc"  # pid 1 lives
    living.mkdir()
    other = runtime_dir / "not-a-run"
    other.mkdir()
    foreign = runtime_dir / f"loopback-run-{dead}-foreign"
    foreign.mkdir()
    if IS_ROOT:
        os.chown(foreign, 65534, 65534)
    with prepare_agent_run(registry=make_registry()) as run:
        assert run.enabled
        assert not stale.exists()
        assert living.exists() and other.exists()
        assert foreign.exists() == IS_ROOT  # another user's is left alone


# --- host: what a run tells ---------------------------------------------------------------


def test_live_and_runtime_follow_close_and_server_close(runtime_dir):
    registry = make_registry()
    run = prepare_agent_run(registry=registry)
    assert run.live and run.enabled and run.runtime is not None and run.expires_at is None
    run.close()
    assert not run.live and not run.enabled and run.runtime is None and run.http_config() is None
    other = prepare_agent_run(registry=registry, ttl=30)
    assert other.expires_at is not None and 29 < other.expires_at - time.monotonic() <= 30
    loopback.close()
    assert not other.live and other.runtime is None
    other.close()


def test_bad_inputs_raise_before_the_server_starts(binds, runtime_dir):
    for kwargs in ({"headers": {"X-Session-Key": "a\nb"}}, {"ttl": -1}, {"tools": "echo"},
                   {"max_concurrent": 0}, {"label": "a\nb"}, {"directory": "/nonexistent/dir"}):
        with pytest.raises(ValueError):
            prepare_agent_run(registry=make_registry(), **kwargs)
    assert binds == [] and lifecycle._singleton is None


def test_ignored_port_and_settings_are_warned_about(caplog, runtime_dir):
    first = prepare_agent_run(registry=make_registry())
    try:
        with caplog.at_level(logging.WARNING, "loopback"):
            same = prepare_agent_run()
            same.close()
            assert "ignored" not in caplog.text
            other_port = prepare_agent_run(port=_free_port(), settings=loopback.Settings(max_sessions=3))
            other_port.close()
        assert "already runs" in caplog.text and "port=" in caplog.text and "settings" in caplog.text
    finally:
        first.close()


def test_each_grant_is_labelled_with_its_run(runtime_dir):
    registry = make_registry()
    with prepare_agent_run(registry=registry, label="user:alice") as alice, \
            prepare_agent_run(registry=registry) as unnamed, \
            prepare_agent_run(registry=registry, name="tools") as named:
        assert alice.grant.label == "user:alice"
        assert unnamed.grant.label.startswith("loopback#") and named.grant.label.startswith("tools#")
        assert unnamed.grant.label != loopback.ensure().runtime().grants[0].label
        labels = {grant.label for grant in loopback.active_runtime().grants}
        assert {"user:alice", unnamed.grant.label, named.grant.label} <= labels


# --- host: spawn --------------------------------------------------------------------------


def test_spawn_runs_the_stand_in_agent_with_the_runs_config_and_returns_its_status(runtime_dir, tmp_path):
    registry = make_registry()
    out = tmp_path / "out"
    with prepare_agent_run(registry=registry, format="generic") as run, open(out, "w") as file:
        code = run.spawn([sys.executable, str(EXAMPLES / "urllib_agent.py"), "{mcp_config}", "add",
                          '{"a": 2, "b": 40}'], timeout=TIMEOUT, stdout=file)
    assert code == 0
    report = json.loads(out.read_text())
    assert report["result"] == {"result": 42} and "add" in report["tools"]
    with prepare_agent_run(registry=registry) as run, open(out, "w") as file:
        assert run.spawn([sys.executable, str(EXAMPLES / "urllib_agent.py"), "{mcp_config}", "fail"],
                         timeout=TIMEOUT, stdout=file) == 3


def test_spawn_gives_the_agent_a_group_of_its_own_and_the_runs_environment(agents, runtime_dir, tmp_path):
    out = tmp_path / "out"
    with prepare_agent_run(registry=make_registry(), format="codex") as run, open(out, "w") as file:
        assert run.spawn([str(agents / "codex"), "exec", "hi"], timeout=TIMEOUT, stdout=file) == 0
    report = json.loads(out.read_text())
    assert report["pgid_is_pid"] is True and report["stdin_devnull"] is True
    assert report["env"]["LOOPBACK_TOKEN"] == run.grant.token and report["args"][0] == "-c"


def test_spawn_ends_the_agents_group_on_timeout(runtime_dir, tmp_path):
    (tmp_path / "sleepy.py").write_text(SLEEPY_AGENT)
    pids = tmp_path / "pids"
    with prepare_agent_run(registry=make_registry()) as run:
        began = time.monotonic()
        code = run.spawn([sys.executable, str(tmp_path / "sleepy.py"), str(pids)], timeout=1.5)
        took = time.monotonic() - began
    assert code == -signal.SIGTERM and took < 1.5 + 5
    agent, grandchild = map(int, pids.read_text().split())
    assert wait_for(lambda: _process_gone(agent) and _process_gone(grandchild), 10)


def test_close_ends_an_agent_still_running(runtime_dir, tmp_path):
    (tmp_path / "sleepy.py").write_text(SLEEPY_AGENT)
    pids = tmp_path / "pids"
    run = prepare_agent_run(registry=make_registry())
    agent = run.start([sys.executable, str(tmp_path / "sleepy.py"), str(pids)])
    try:
        assert wait_for(lambda: pids.exists() and pids.read_text() != "", 10)
        _, grandchild = map(int, pids.read_text().split())
        assert os.getpgid(agent.pid) == agent.pid
        run.close()  # revoking the token alone would leave it running
        assert agent.popen.poll() is not None
        assert wait_for(lambda: _process_gone(grandchild), 10)
        with pytest.raises(loopback.LoopbackError, match="ended"):
            run.start([sys.executable, "-c", "pass"])
    finally:
        agent.end(grace=1)


def test_spawn_logs_the_gemini_hint(agents, runtime_dir, caplog, monkeypatch):
    monkeypatch.setenv("REPORT_AGENT_EXIT", "55")
    with prepare_agent_run(registry=make_registry(), format="gemini") as run, \
            caplog.at_level(logging.WARNING, "loopback"):
        assert run.spawn(["gemini", "-p", "hi"], timeout=TIMEOUT, stdout=subprocess.DEVNULL) == 55
    assert "Gemini CLI exits 55" in caplog.text


def test_max_concurrent_caps_open_runs_and_waits_for_a_slot(runtime_dir):
    registry = make_registry()
    first = prepare_agent_run(registry=registry, max_concurrent=2)
    second = prepare_agent_run(registry=registry, max_concurrent=2)
    try:
        assert loopback.open_runs() == 2
        with pytest.raises(loopback.RunLimitError, match="limit is 2"):
            prepare_agent_run(registry=registry, max_concurrent=2)
        assert loopback.open_runs() == 2
        timer = threading.Timer(0.3, first.close)
        timer.start()
        began = time.monotonic()
        third = prepare_agent_run(registry=registry, max_concurrent=2, wait=10)
        assert third.enabled and 0.2 < time.monotonic() - began < 10
        timer.join()
        third.close()
        assert prepare_agent_run(needs_mcp=False, max_concurrent=2) is not None  # no MCP: no slot
    finally:
        first.close()
        second.close()
    assert loopback.open_runs() == 0


# --- the example --------------------------------------------------------------------------


def test_the_concurrent_runs_example_serves_each_user_its_own_answer(runtime_dir):
    out = subprocess.run([sys.executable, str(EXAMPLES / "concurrent_runs.py"), "6", "3"], cwd=ROOT,
                         capture_output=True, text=True, timeout=TIMEOUT * 2,
                         env={**os.environ, "LOOPBACK_RUNTIME_DIR": str(runtime_dir)})
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    runs, summary = lines[:-1], lines[-1]
    assert summary == {"runs": 6, "ok": True, "peak_open_runs": summary["peak_open_runs"], "max_concurrent": 3}
    assert 1 <= summary["peak_open_runs"] <= 3
    assert sorted(run["answer"]["session"] for run in runs) == [f"s-{n}" for n in range(6)]
    assert all(run["label"] == f"user:{run['session']}" and run["exit"] == 0 for run in runs)
    assert [p.name for p in runtime_dir.iterdir()] == []  # every run's directory removed


STUBBORN_AGENT = r'''
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(120)
'''


def test_an_agent_that_ignores_sigterm_gets_sigkill_after_the_grace(runtime_dir):
    with prepare_agent_run(registry=make_registry()) as run:
        agent = run.start([sys.executable, "-c", STUBBORN_AGENT], stdout=subprocess.PIPE, text=True)
        try:
            assert agent.popen.stdout.readline() == "ready\n"
            began = time.monotonic()
            agent.end(grace=0.5)
            assert agent.popen.returncode == -signal.SIGKILL and 0.4 < time.monotonic() - began < 5
        finally:
            agent.popen.stdout.close()
            if agent.popen.poll() is None:
                agent.popen.kill()
                agent.popen.wait(10)


def test_an_agent_in_the_callers_group_is_ended_alone(runtime_dir):
    run = prepare_agent_run(registry=make_registry())
    agent = run.start([sys.executable, "-c", "import time; time.sleep(120)"], new_session=False)
    try:
        assert os.getpgid(agent.pid) == os.getpgrp() and not agent.own_group
        run.close()  # terminates the agent itself; our own group is left alone
        assert agent.popen.returncode == -signal.SIGTERM
    finally:
        if agent.popen.poll() is None:
            agent.popen.kill()
            agent.popen.wait(10)
