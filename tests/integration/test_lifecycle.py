"""The lifecycle contract of DESIGN.md, proven with real servers on 127.0.0.1 and real HTTP.

Nothing under test is mocked. Only the outside world is patched: ``socket.socket.bind``
is wrapped to count binds, or to hold the first bind until the other callers are seen
parked on the shared start (observed through ``sys._current_frames``, so no race window
is left to chance or to a sleep). Ports are taken with real sockets. Every loop is
bounded in count and time, and no assertion is about speed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

import loopback
from conftest import (JOIN, Client, in_call, join_all, make_registry, parked_on_future, port_accepts, run_threads,
                      tool_text, wait_for)
from loopback import lifecycle
from loopback.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


# -- helpers -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_port_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(lifecycle.PORT_ENV, raising=False)


def serving_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("loopback-mcp")]


def handler_threads() -> set[threading.Thread]:
    """Connection threads ("loopback-mcp:PORT:conn")."""
    return {t for t in threading.enumerate() if t.name.startswith("loopback-mcp") and t.name.endswith(":conn")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def on_free_port(start: Callable[[int], "loopback.LoopbackServer"]) -> tuple[int, "loopback.LoopbackServer"]:
    """``start(port)`` on a port free a moment ago. Another process on this machine may
    take it in between; that is the outside world, so try again (bounded)."""
    for _ in range(5):
        port = free_port()
        try:
            server = start(port)
        except loopback.PortInUseError:
            continue
        if server.port == port:
            return port, server
        server.close()
    pytest.fail("could not start on a free port five times in a row")


@contextlib.contextmanager
def occupied_port() -> Iterator[int]:
    """A port held by a real listening socket for the duration of the block."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]
    finally:
        sock.close()


def all_parked(threads: Callable[[], list[threading.Thread]], timeout: float = 10.0) -> bool:
    """Wait (bounded) until every thread but the calling one is parked on a Future."""
    me = threading.current_thread()
    return wait_for(lambda: bool(threads()) and all(parked_on_future(t) for t in threads() if t is not me), timeout)


class BindSpy:
    """Wraps ``socket.socket.bind``: records every bind; may hold the first one behind a gate."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gate: Optional[Callable[[], bool]] = None,
                 delay: float = 0.0) -> None:
        self.addresses: list[Any] = []
        self.entered = threading.Event()
        self.gate_result: Optional[bool] = None
        lock = threading.Lock()
        real_bind = socket.socket.bind

        def bind(sock: socket.socket, address: Any) -> None:
            with lock:
                self.addresses.append(address)
                first = len(self.addresses) == 1
            self.entered.set()
            if first and gate is not None:
                self.gate_result = gate()
            if delay:
                time.sleep(delay)  # widens the window further; correctness rests on the gate
            return real_bind(sock, address)

        monkeypatch.setattr(socket.socket, "bind", bind)

    @property
    def count(self) -> int:
        return len(self.addresses)


def python(script: str, timeout: float = 20.0, cwd: Optional[Path] = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPBACK_")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=cwd or ROOT, env=env,
        capture_output=True, text=True, timeout=timeout,
    )


# -- import --------------------------------------------------------------------


def test_import_creates_no_thread_socket_or_file_and_imports_no_server_machinery(tmp_path: Path) -> None:
    done = python(
        """
        import json, os, sys, threading
        fds_before = sorted(os.listdir("/proc/self/fd"))
        modules_before = set(sys.modules)
        import loopback
        fds_after = sorted(os.listdir("/proc/self/fd"))
        print(json.dumps({
            "threads": threading.active_count(),
            "fds_before": fds_before,
            "fds_after": fds_after,
            "new_modules": sorted(set(sys.modules) - modules_before),
            "http_server": "http.server" in sys.modules,
        }))
        """,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["threads"] == 1
    assert report["fds_after"] == report["fds_before"]  # no socket, no open file
    assert not report["http_server"]
    heavy = {"socket", "socketserver", "http", "http.server", "http.client", "threading", "selectors",
             "concurrent.futures", "ssl", "secrets", "loopback.server", "loopback.lifecycle", "loopback.transport"}
    assert not heavy & set(report["new_modules"]), report["new_modules"]
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran


# -- ensure(): single flight -----------------------------------------------------


def test_concurrent_first_ensure_calls_share_one_server_and_one_bind(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 64
    barrier = threading.Barrier(n, timeout=JOIN)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []
    workers: list[threading.Thread] = []
    # The one bind is held until all 63 other callers are parked on the shared start.
    spy = BindSpy(monkeypatch, gate=lambda: all_parked(lambda: workers), delay=0.02)

    def call(i: int) -> Callable[[], None]:
        def run() -> None:
            try:
                barrier.wait()
                results[i] = loopback.ensure(0)
            except BaseException as exc:  # reported below
                errors.append(exc)
        return run

    workers.extend(run_threads([call(i) for i in range(n)], "ensure"))
    join_all(workers)

    assert not errors, errors
    assert spy.gate_result is True, "the other callers were not all waiting on the start in flight"
    first = results[0]
    assert first is not None and all(r is first for r in results)
    assert spy.count == 1, spy.addresses
    assert first.serving and port_accepts(first.port)
    assert loopback.ensure() is first
    assert loopback.active_runtime().port == first.port


def test_failed_start_reaches_every_waiter_and_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 32
    strict = Settings(port_fallback=False)
    outcomes: list[Any] = [None] * n
    workers: list[threading.Thread] = []
    with occupied_port() as port:
        barrier = threading.Barrier(n, timeout=JOIN)
        spy = BindSpy(monkeypatch, gate=lambda: all_parked(lambda: workers), delay=0.02)

        def call(i: int) -> Callable[[], None]:
            def run() -> None:
                try:
                    barrier.wait()
                    outcomes[i] = loopback.ensure(port, settings=strict)
                except BaseException as exc:
                    outcomes[i] = exc
            return run

        workers.extend(run_threads([call(i) for i in range(n)], "ensure"))
        join_all(workers)

        assert spy.gate_result is True
        assert spy.count == 1, spy.addresses  # one start attempt, shared by all
        for outcome in outcomes:
            assert isinstance(outcome, loopback.PortInUseError), outcome
            assert f":{port}" in str(outcome) and outcome.port == port
        assert loopback.active_runtime() is None
        assert not serving_threads()
        assert (lifecycle._starting is None and not lifecycle._start_in_flight) and lifecycle._singleton is None

        server = loopback.ensure(0)  # the failure is not remembered
    assert spy.count == 2
    assert server.serving and server.port != port and port_accepts(server.port)
    assert loopback.active_runtime().port == server.port


# -- pinned port -----------------------------------------------------------------


def test_ensure_pinned_free_port_listens_on_that_port() -> None:
    port, server = on_free_port(loopback.ensure)
    assert server.port == port
    assert port_accepts(port)
    assert loopback.active_runtime().port == port


def test_ensure_pinned_taken_port_falls_back_to_ephemeral_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    with occupied_port() as port, caplog.at_level(logging.WARNING, logger="loopback"):
        server = loopback.ensure(port)
        assert server.port not in (0, port)
        assert server.serving and port_accepts(server.port)
    warnings = [r for r in caplog.records if r.name == "loopback" and r.levelno == logging.WARNING]
    assert any(str(port) in r.getMessage() and "in use" in r.getMessage() for r in warnings), caplog.text
    client = Client(server.port, server.token)
    try:
        client.initialize()
    finally:
        client.close()


def test_loopback_port_env_pins_the_port(monkeypatch: pytest.MonkeyPatch) -> None:
    def ensure_via_env(port: int) -> loopback.LoopbackServer:
        monkeypatch.setenv(lifecycle.PORT_ENV, str(port))
        return loopback.ensure()

    port, server = on_free_port(ensure_via_env)
    assert server.port == port and port_accepts(port)


def test_explicit_port_beats_loopback_port_env(monkeypatch: pytest.MonkeyPatch) -> None:
    with occupied_port() as env_port:  # a start on env_port would fail
        monkeypatch.setenv(lifecycle.PORT_ENV, str(env_port))
        explicit, server = on_free_port(lambda port: loopback.ensure(port, settings=Settings(port_fallback=False)))
    assert server.port == explicit != env_port


@pytest.mark.parametrize("value", ["http", "-1", "70000", "80 80", "1e3", "\u0661\u0662\u0663"])
def test_invalid_loopback_port_env_is_ignored_with_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str,
) -> None:
    monkeypatch.setenv(lifecycle.PORT_ENV, value)
    with caplog.at_level(logging.WARNING, logger="loopback"):
        server = loopback.ensure()
    assert server.serving and server.port != 0 and port_accepts(server.port)
    assert any(r.name == "loopback" and r.levelno == logging.WARNING and lifecycle.PORT_ENV in r.getMessage()
               for r in caplog.records), caplog.text


# -- close() ------------------------------------------------------------------------


def test_close_during_start_closes_what_the_start_produces(monkeypatch: pytest.MonkeyPatch) -> None:
    closers: list[threading.Thread] = []
    # The bind is held until close() is seen waiting for this very start.
    spy = BindSpy(monkeypatch, gate=lambda: all_parked(lambda: closers), delay=0.02)
    started: list[Any] = []

    def start() -> None:
        try:
            started.append(loopback.ensure(0))
        except BaseException as exc:
            started.append(exc)

    starter = run_threads([start], "ensure")
    assert spy.entered.wait(JOIN)
    assert loopback.active_runtime() is None  # still starting
    closers.extend(run_threads([loopback.close], "close"))
    join_all(starter + closers)

    assert spy.gate_result is True, "close() did not wait on the start in flight"
    assert spy.count == 1
    [server] = started
    assert isinstance(server, loopback.LoopbackServer), server
    assert server.closed and not server.serving
    assert loopback.active_runtime() is None
    assert lifecycle._singleton is None and (lifecycle._starting is None and not lifecycle._start_in_flight)
    assert wait_for(lambda: not serving_threads(), 5), serving_threads()
    assert not port_accepts(server.port)
    fresh = loopback.ensure(0)
    assert fresh is not server and fresh.serving


def test_close_waits_for_a_start_in_flight_even_while_the_old_singleton_is_closing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The old singleton is mid-close (its owner called server.close() directly and a
    # tool call is still running), ensure() has begun a new start, and then
    # loopback.close() is called: it must also close what that start produces.
    registry = make_registry()
    tool_entered, tool_release = threading.Event(), threading.Event()

    @registry.tool
    def block() -> str:
        """Wait until the test lets go."""
        tool_entered.set()
        tool_release.wait(JOIN)
        return "done"

    old = loopback.ensure(0, registry=registry, settings=Settings(close_timeout=JOIN))
    answers: list[Any] = []

    def call_block() -> None:
        c = Client(old.port, old.token)
        try:
            c.initialize()
            answers.append(tool_text(c.call_tool("block")))
        finally:
            c.close()

    caller = run_threads([call_block], "caller")
    assert tool_entered.wait(JOIN)
    direct_close = run_threads([old.close], "direct-close")
    assert wait_for(lambda: not old.serving, JOIN) and not old.closed  # closing, not closed yet

    closers: list[threading.Thread] = []
    spy = BindSpy(monkeypatch, gate=lambda: wait_for(
        lambda: bool(closers) and (parked_on_future(closers[0]) or not closers[0].is_alive()), JOIN))
    started: list[Any] = []
    starter = run_threads([lambda: started.append(loopback.ensure(0))], "ensure")
    assert spy.entered.wait(JOIN)
    closers.extend(run_threads([loopback.close], "close"))
    # Let the old server finish closing only once close() has committed to a course:
    # waiting on the start in flight, or waiting on the old server alone.
    assert wait_for(lambda: parked_on_future(closers[0])
                    or in_call(closers[0], os.path.join("loopback", "server.py"), "close"), JOIN)
    tool_release.set()
    join_all(caller + direct_close + starter + closers)

    assert answers == ["done"]
    assert spy.gate_result is True and spy.count == 1
    [new] = started
    assert new is not old and old.closed
    assert new.closed, "close() returned while a start was in flight and left its server running"
    assert loopback.active_runtime() is None
    assert lifecycle._singleton is None and (lifecycle._starting is None and not lifecycle._start_in_flight)
    assert wait_for(lambda: not serving_threads(), 5), serving_threads()


def test_ensure_after_close_starts_a_new_server_with_a_new_token() -> None:
    first = loopback.ensure(0)
    token = first.token
    loopback.close()
    assert first.closed and loopback.active_runtime() is None
    second = loopback.ensure(0)
    assert second is not first
    assert second.token != token  # the port may coincide by chance; the token never does
    assert second.serving and loopback.active_runtime().token == second.token
    stale = Client(second.port, token)
    try:
        status, headers, _ = stale.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    finally:
        stale.close()
    assert status == 401 and "bearer" in headers.get("www-authenticate", "").lower()


class ForbiddenLock:
    """Stands in for lifecycle._lock: any use fails the test."""

    def __init__(self) -> None:
        self.uses = 0

    def _fail(self, *args: Any, **kwargs: Any) -> bool:
        self.uses += 1
        raise AssertionError("the lifecycle lock was taken")

    acquire = __enter__ = _fail

    def release(self) -> None:
        self._fail()

    def __exit__(self, *exc_info: object) -> None:
        self._fail()


def test_warm_ensure_returns_running_server_without_taking_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    server = loopback.ensure(0)
    forbidden = ForbiddenLock()
    monkeypatch.setattr(lifecycle, "_lock", forbidden)
    for _ in range(100):
        assert loopback.ensure() is server
    assert loopback.ensure(free_port(), settings=Settings(port_fallback=False)) is server
    assert loopback.active_runtime().port == server.port  # also lock-free
    assert forbidden.uses == 0
    # Also from other threads while the real lock is held by someone else.
    monkeypatch.setattr(lifecycle, "_lock", threading.Lock())
    got: list[Any] = []
    with lifecycle._lock:
        join_all(run_threads([lambda: got.append(loopback.ensure())] * 4, "warm"))
    assert got == [server] * 4


def test_ensure_with_another_port_returns_the_one_running_server() -> None:
    # Documented: ensure() is the one process-wide server; its port only matters at start.
    server = loopback.ensure(0)
    other = free_port()  # never the running server's port: that one is bound
    assert loopback.ensure(other) is server
    assert loopback.ensure(other, settings=Settings(port_fallback=False), registry=make_registry()) is server
    assert server.port != other and not port_accepts(other)


def test_closing_a_started_server_does_not_clear_another_active_runtime() -> None:
    a = loopback.start(0)
    b = loopback.start(0)
    try:
        assert loopback.active_runtime().port == b.port
        a.close()
        runtime = loopback.active_runtime()
        assert runtime is not None and runtime.port == b.port and runtime.token == b.token
        b.close()
        assert loopback.active_runtime() is None
    finally:
        a.close()
        b.close()


def test_start_after_ensure_is_active_and_survives_closing_the_singleton() -> None:
    singleton = loopback.ensure(0)
    other = loopback.start(0)
    try:
        assert loopback.active_runtime().port == other.port
        loopback.close()
        assert singleton.closed and other.serving
        runtime = loopback.active_runtime()
        assert runtime is not None and runtime.port == other.port and runtime.token == other.token
        other.close()
        assert loopback.active_runtime() is None
    finally:
        other.close()


def test_close_ends_thread_port_and_keepalive_connections_and_is_idempotent() -> None:
    before = handler_threads()
    server = loopback.ensure(0, registry=make_registry())
    clients = [Client(server.port, server.token) for _ in range(3)]
    try:
        for i, c in enumerate(clients):
            c.initialize()
            assert tool_text(c.call_tool("add", {"a": i, "b": 1})) == str(i + 1)
        handlers = handler_threads() - before
        assert len(handlers) == len(clients)  # one per keep-alive connection, all idle now
        loopback.close()

        assert server.closed and loopback.active_runtime() is None
        assert wait_for(lambda: not serving_threads(), 5), serving_threads()
        assert not port_accepts(server.port)
        assert wait_for(lambda: not any(t.is_alive() for t in handlers), 5)
        for c in clients:  # the server ended each keep-alive connection
            assert c.conn.sock is not None
            c.conn.sock.settimeout(5)
            assert c.conn.sock.recv(1) == b""
        loopback.close()  # idempotent
        server.close()
        assert loopback.active_runtime() is None and not serving_threads()
    finally:
        for c in clients:
            c.close()


def test_close_from_inside_a_tool_answers_that_call_then_leaves_nothing_running() -> None:
    before = handler_threads()
    registry = make_registry()
    seen: list[bool] = []

    @registry.tool
    def shut_down() -> str:
        """Close the process-wide server from inside a call."""
        loopback.close()
        seen.append(loopback.active_runtime() is None)
        return "closed from inside"

    server = loopback.ensure(0, registry=registry)
    client = Client(server.port, server.token)
    try:
        client.initialize()
        assert tool_text(client.call_tool("shut_down")) == "closed from inside"
    finally:
        client.close()
    assert seen == [True]
    assert server.closed and loopback.active_runtime() is None
    assert wait_for(lambda: not serving_threads(), 5), serving_threads()
    assert wait_for(lambda: not (handler_threads() - before), 5), handler_threads() - before
    assert not port_accepts(server.port)


# -- fork and interpreter exit ---------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_has_no_server_and_starts_its_own_while_parent_keeps_serving() -> None:
    registry = make_registry()
    parent = loopback.ensure(0, registry=registry)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 1
        try:
            os.close(rfd)
            report: dict[str, Any] = {
                "active_none": loopback.active_runtime() is None,
                "inherited_serving": parent.serving,
            }
            child = loopback.ensure(0, registry=registry)
            report.update(
                same_object=child is parent,
                child_port=child.port,
                new_token=child.token != parent.token,
                active_port=loopback.active_runtime().port,
            )
            c = Client(child.port, child.token)
            try:
                c.initialize()
                report["tool"] = tool_text(c.call_tool("add", {"a": 2, "b": 3}))
            finally:
                c.close()
            loopback.close()
            report["closed"] = child.closed and loopback.active_runtime() is None
            code = 0
        except BaseException as exc:
            report = {"error": repr(exc)}
        finally:
            try:
                os.write(wfd, json.dumps(report).encode())
            finally:
                os._exit(code)

    os.close(wfd)
    data = b""
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([rfd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(rfd)
    status = None
    for _ in range(2000):  # bounded: up to ~20 s
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child did not exit")

    report = json.loads(data or b"{}")
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report == {
        "active_none": True,
        "inherited_serving": False,
        "same_object": False,
        "child_port": report.get("child_port"),
        "new_token": True,
        "active_port": report.get("child_port"),
        "tool": "5",
        "closed": True,
    }
    assert report["child_port"] != parent.port
    # The parent's server is untouched.
    assert loopback.ensure() is parent and parent.serving
    c = Client(parent.port, parent.token)
    try:
        c.initialize()
        assert tool_text(c.call_tool("add", {"a": 20, "b": 22})) == "42"
    finally:
        c.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_lets_go_of_every_started_server_not_only_the_active_one() -> None:
    # a is started first, then b becomes the active runtime, then the process forks.
    # The child must not believe either serves, and must not keep their listening
    # sockets open: else a port the parent closes still completes TCP handshakes.
    a = loopback.start(0)
    b = loopback.start(0)
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(report_r)
            os.close(go_w)
            os.write(report_w, json.dumps([a.serving, b.serving]).encode())
            os.close(report_w)
            select.select([go_r], [], [], 20)  # stay alive (bounded) while the parent checks
            code = 0
        finally:
            os._exit(code)
    os.close(report_w)
    os.close(go_r)
    try:
        ready, _, _ = select.select([report_r], [], [], 20)
        assert ready, "the forked child did not report"
        assert json.loads(os.read(report_r, 4096)) == [False, False]
        a.close()
        b.close()
        assert not port_accepts(a.port), "the child still holds the closed server's listening socket"
        assert not port_accepts(b.port)
    finally:
        a.close()
        b.close()
        os.close(go_w)  # lets the child exit
        os.close(report_r)
        for _ in range(2000):  # bounded: up to ~20 s
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
            time.sleep(0.01)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_interpreter_exits_promptly_and_cleanly_with_a_running_server() -> None:
    done = python(
        """
        import http.client, json
        import loopback
        server = loopback.ensure()
        # A keep-alive connection left open at exit must not hold the exit up.
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"})
        conn.request("POST", "/mcp", body, {"Authorization": "Bearer " + server.token,
                     "Content-Type": "application/json", "Accept": "application/json"})
        print(conn.getresponse().status)
        """,
        timeout=20,  # generous: "promptly" means no hang, not a speed claim
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["200"]
    assert done.stderr == ""


def test_interpreter_exit_closes_the_server_via_atexit() -> None:
    done = python(
        """
        import atexit
        import loopback
        holder = []
        # atexit runs last-registered first: register before loopback registers its hook,
        # so this runs after it and sees the result.
        atexit.register(lambda: print("closed" if holder[0].closed else "open",
                                      loopback.active_runtime()))
        holder.append(loopback.ensure())
        """,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["closed", "None"]
    assert done.stderr == ""


AT_EXIT = """
    import atexit, logging, sys
    import loopback

    def report(what):
        print(what, flush=True)

    def at_exit():
        try:
            server = {call}
        except loopback.StartError as exc:
            report("StartError: " + str(exc))
        except BaseException as exc:
            report("unexpected " + type(exc).__name__ + ": " + str(exc))
        else:
            report("started")
            server.close()

    atexit.register(at_exit)
    {before}
"""


@pytest.mark.parametrize("before", ["", "loopback.close()", "loopback.ensure(); loopback.close()"],
                         ids=["never-started", "closed", "started-then-closed"])
def test_ensure_in_an_atexit_handler_raises_start_error(before: str) -> None:
    """Every version: Python 3.12+ cannot start a thread there (a bare RuntimeError before
    the fix); 3.9-3.11 could, and nothing would have closed that server."""
    done = python(AT_EXIT.format(call="loopback.ensure()", before=before), timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["StartError: the interpreter is shutting down"], done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_start_in_an_atexit_handler_raises_start_error() -> None:
    done = python(AT_EXIT.format(call="loopback.start()", before=""), timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["StartError: the interpreter is shutting down"], done.stdout + done.stderr


def test_a_server_whose_thread_cannot_start_raises_start_error_and_frees_its_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LoopbackServer.start() itself, below the lifecycle's check. Python 3.12 refuses every
    new thread once the interpreter exits (3.13 allows them in atexit handlers again): a
    StartError, not a bare RuntimeError, and close() then frees the port. The interpreter's
    refusal is stood in for here; the server is real."""
    from loopback.server import LoopbackServer, StartError

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    server = LoopbackServer(0)
    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(StartError, match="cannot start the server thread: can't create new thread"):
        server.start()
    monkeypatch.undo()
    assert not server.serving
    server.close()  # the caller's part (lifecycle.start closes a server that did not start)
    assert server.closed
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0  # the listening socket is closed


def test_a_thread_still_running_after_the_main_thread_ended_gets_start_error() -> None:
    """Once the main thread has ended the interpreter is exiting: 3.12+ can start no thread
    then, so no version starts a server (and a server already running keeps serving)."""
    done = python(
        """
        import threading, time
        import loopback

        running = loopback.ensure()

        def worker():
            time.sleep(0.2)  # the main thread has finished its script by now
            print("still serving" if loopback.ensure() is running and running.serving else "lost", flush=True)
            loopback.close()
            try:
                loopback.ensure()
            except loopback.StartError as exc:
                print("StartError:", exc, flush=True)

        threading.Thread(target=worker).start()
        """,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["still serving", "StartError: the interpreter is shutting down"]


def test_prepare_agent_run_in_an_atexit_handler_degrades_to_a_warning() -> None:
    done = python(
        """
        import atexit, logging
        import loopback
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

        def at_exit():
            run = loopback.prepare_agent_run()
            print(run.runtime, run.warning, flush=True)

        atexit.register(at_exit)
        """,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["None MCP loopback server failed to start: the interpreter is shutting down"]
    assert "WARNING MCP loopback server failed to start" in done.stderr and "Traceback" not in done.stderr


def test_interpreter_exits_cleanly_while_a_daemon_thread_keeps_calling_ensure() -> None:
    done = python(
        """
        import threading
        import loopback
        StartError = loopback.StartError
        ready = threading.Event()

        def hammer():
            for _ in range(10_000_000):
                try:
                    loopback.ensure()
                except StartError:  # documented: no new server once the interpreter is exiting
                    pass
                ready.set()

        threading.Thread(target=hammer, daemon=True).start()
        assert ready.wait(10)
        """,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr, done.stderr


def test_interpreter_exits_cleanly_while_a_daemon_thread_starts_and_closes_servers() -> None:
    done = python(
        """
        import threading
        import loopback
        StartError = loopback.StartError
        ready = threading.Event()

        def churn():
            for i in range(10_000_000):
                try:
                    loopback.ensure()
                except StartError:
                    pass
                if i % 2:
                    loopback.close()
                ready.set()

        threading.Thread(target=churn, daemon=True).start()
        assert ready.wait(10)
        """,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr, done.stderr


# -- snapshot and host policy ------------------------------------------------------------


def test_active_runtime_is_a_frozen_snapshot_whose_repr_hides_the_token() -> None:
    assert loopback.active_runtime() is None
    server = loopback.ensure(0)
    runtime = loopback.active_runtime()
    assert isinstance(runtime, loopback.Runtime)
    assert (runtime.host, runtime.port, runtime.url, runtime.token) == (server.host, server.port, server.url, server.token)
    assert isinstance(runtime.tokens, tuple) and server.token in runtime.tokens
    assert hash(runtime) == hash(server.runtime())  # frozen and hashable: a value
    with pytest.raises(dataclasses.FrozenInstanceError):
        runtime.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        runtime.token = "x"  # type: ignore[misc]
    for text in (repr(runtime), str(runtime), repr(server)):
        assert server.token not in text
    assert str(server.port) in repr(runtime)
    loopback.close()
    assert runtime.port == server.port and runtime.token == server.token  # a snapshot: unchanged
    assert loopback.active_runtime() is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com", ""])
def test_non_loopback_host_is_refused_without_opt_in(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    spy = BindSpy(monkeypatch)
    with pytest.raises(ValueError, match="non-loopback"):
        loopback.LoopbackServer(0, host=host)
    with pytest.raises(ValueError, match="non-loopback"):
        loopback.LoopbackServer(0, host=host, settings=Settings(port_fallback=False))
    with pytest.raises(ValueError, match="non-loopback"):
        loopback.start(0, host=host)
    with pytest.raises(ValueError, match="non-loopback"):
        loopback.ensure(0, host=host)
    assert spy.count == 0  # refused before any socket was bound
    assert loopback.active_runtime() is None and not serving_threads()
    assert loopback.ensure(0).serving  # the refusal is not remembered
