"""Lifecycle races: ensure()/close() from many threads, close() during a start and from
inside a tool, a start that fails and later succeeds, interpreter exit, and os.fork().

Complements test_lifecycle.py (which proves each contract clause once) with repeated
and combined interleavings. Real servers on 127.0.0.1 and real HTTP; only the outside
world is patched (``socket.socket.bind`` is gated to hold a start at a known point).
Every loop is bounded in count and time. After every test: no extra live thread, no
listening socket, no leaked file descriptor (see ``no_leaked_threads_fds_or_listeners``).
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

import loopback
from conftest import (HAS_PROC, JOIN, Client, join_all, make_registry, open_fds, parked_on_future, port_accepts,
                      run_threads, socket_inodes, tcp_table, tool_text, wait_for)
from loopback import lifecycle
from loopback.host import prepare_agent_run
from loopback.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


# -- leak checks (conftest) ---------------------------------------------------------

pytestmark = pytest.mark.usefixtures("no_leaked_threads_fds_or_listeners")


def our_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("loopback-mcp", "loopback-tool:"))]


def server_threads() -> list[threading.Thread]:
    """The accept-loop thread of each server ("loopback-mcp:PORT"), not connection threads."""
    return [t for t in threading.enumerate() if t.name.startswith("loopback-mcp:") and t.name.count(":") == 1]


def connection_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("loopback-mcp:") and t.name.endswith(":conn")]


def add_via_http(server: loopback.LoopbackServer, a: int, b: int) -> int:
    client = Client(server.port, server.token)
    try:
        return client.call_tool("add", {"a": a, "b": b})["result"]["structuredContent"]["result"]
    finally:
        client.close()


class BindGate:
    """Holds ``socket.socket.bind`` in the threads named ``held`` until ``open()``.

    Only those threads wait: a forked child (which has no such thread) and every other
    thread bind at once.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, held: str) -> None:
        self.entered = threading.Event()
        self._open = threading.Event()
        self.binds = 0
        real_bind = socket.socket.bind

        def bind(sock: socket.socket, address: Any) -> None:
            self.binds += 1
            if threading.current_thread().name == held:
                self.entered.set()
                self._open.wait(JOIN)
            return real_bind(sock, address)

        monkeypatch.setattr(socket.socket, "bind", bind)

    def open(self) -> None:
        self._open.set()


# -- many threads ------------------------------------------------------------------


def test_64_threads_repeatedly_interleaving_ensure_and_close_leave_one_consistent_server_at_most() -> None:
    n, rounds = 64, 24
    registry = make_registry()
    # Each round the 64 workers and this thread meet at the barrier twice: start, then
    # end; between rounds everything is quiescent and the invariants are checked.
    barrier = threading.Barrier(n + 1, timeout=JOIN)
    plans = ["ensure", "mixed", "ensure", "close", "mixed", "ensure-close-ensure"]
    plan: list[str] = [""]
    returned: list[list[Any]] = [[] for _ in range(n)]
    errors: list[str] = []

    def op(i: int, kind: str) -> None:
        if kind == "ensure" or (kind == "mixed" and i % 8):
            returned[i].append(loopback.ensure(0, registry=registry))
        elif kind in ("close", "mixed"):
            loopback.close()
        else:  # ensure-close-ensure: every thread churns the singleton
            returned[i].append(loopback.ensure(0, registry=registry))
            loopback.close()
            returned[i].append(loopback.ensure(0, registry=registry))

    def worker(i: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(rounds):
                barrier.wait()
                try:
                    op(i, plan[0])
                except BaseException:  # reported by the main thread
                    errors.append(traceback.format_exc())
                barrier.wait()
        return run

    workers = run_threads([worker(i) for i in range(n)], "churn")
    seen: dict[int, loopback.LoopbackServer] = {}
    try:
        for r in range(rounds):
            plan[0] = plans[r % len(plans)]
            for got in returned:
                got.clear()
            running_before = lifecycle._singleton
            barrier.wait()  # go
            barrier.wait()  # all 64 returned
            assert not errors, errors[0]
            results = [s for got in returned for s in got]
            assert all(isinstance(s, loopback.LoopbackServer) for s in results)
            seen.update((id(s), s) for s in results)
            serving = [s for s in seen.values() if s.serving]
            assert len(serving) <= 1, (plan[0], serving)
            assert len(server_threads()) == len(serving), (plan[0], server_threads())
            assert (lifecycle._starting is None and not lifecycle._start_in_flight)
            if plan[0] == "ensure":
                # Nobody closed: one server, shared by all (single flight if it was new).
                assert len({id(s) for s in results}) == 1
                assert running_before is None or results[0] is running_before
            if plan[0] == "close":
                assert serving == [] and loopback.active_runtime() is None
            if serving:
                [alive] = serving
                assert lifecycle._singleton is alive and loopback.ensure() is alive
                assert loopback.active_runtime().port == alive.port
                if r % 4 == 0:  # it really serves, not only looks alive
                    assert add_via_http(alive, r, 1) == r + 1
            else:
                assert loopback.active_runtime() is None
    except BaseException:
        barrier.abort()  # frees the workers when an assertion above failed mid-round
        raise
    finally:
        join_all(workers)
    loopback.close()
    assert all(s.closed for s in seen.values())
    assert len(seen) > rounds // 2  # the churn really started many servers
    assert wait_for(lambda: not server_threads(), 5), server_threads()


def test_close_during_a_start_with_32_waiters_hands_them_all_the_one_server_it_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = BindGate(monkeypatch, held="starter")
    results: dict[str, Any] = {}

    def call(name: str) -> Callable[[], None]:
        def run() -> None:
            try:
                results[name] = loopback.ensure(0)
            except BaseException as exc:
                results[name] = exc
        return run

    starter = [threading.Thread(target=call("starter"), name="starter", daemon=True)]
    starter[0].start()
    assert gate.entered.wait(JOIN)
    waiters = run_threads([call(f"waiter-{i}") for i in range(32)], "waiter")
    assert wait_for(lambda: all(parked_on_future(t) for t in waiters), JOIN)
    closer = run_threads([loopback.close], "closer")
    assert wait_for(lambda: parked_on_future(closer[0]), JOIN), "close() did not wait on the start in flight"
    gate.open()
    join_all(starter + waiters + closer)

    server = results["starter"]
    assert isinstance(server, loopback.LoopbackServer), server
    assert all(results[f"waiter-{i}"] is server for i in range(32)), set(map(repr, results.values()))
    assert gate.binds == 1  # one start, whatever the number of callers
    assert server.closed and not port_accepts(server.port)
    assert loopback.active_runtime() is None and lifecycle._singleton is None and (lifecycle._starting is None and not lifecycle._start_in_flight)
    assert wait_for(lambda: not server_threads(), 5)
    fresh = loopback.ensure(0, registry=make_registry())
    assert fresh is not server and add_via_http(fresh, 1, 2) == 3


def test_agent_runs_go_without_mcp_while_the_pinned_port_is_busy_and_get_it_once_freed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strict = Settings(port_fallback=False)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    registry = make_registry()
    n, oks_wanted = 16, 5
    outcomes: list[list[tuple[str, Any]]] = [[] for _ in range(n)]
    freed = threading.Event()

    def runs(i: int) -> Callable[[], None]:
        def run() -> None:
            deadline = time.monotonic() + JOIN
            while time.monotonic() < deadline:  # bounded in time and in successes
                prepared = prepare_agent_run(True, port=port, registry=registry, settings=strict)
                if prepared.enabled:
                    # runtime.token is the server's owner token: the same for every run.
                    outcomes[i].append(("mcp", (prepared.runtime.port, prepared.runtime.token)))
                    release = getattr(prepared, "close", None)  # a run may hold a lease to give back
                    if release is not None:
                        release()
                    if sum(kind == "mcp" for kind, _ in outcomes[i]) >= oks_wanted:
                        return
                else:
                    outcomes[i].append(("without", prepared.warning))
                    time.sleep(0.002)  # a host would not retry in a hot loop either
        return run

    with caplog.at_level(logging.WARNING, logger="loopback"):
        workers = run_threads([runs(i) for i in range(n)], "run")
        try:
            # Free the port only once every thread has had a run go without MCP.
            assert wait_for(lambda: all(outcomes[i] for i in range(n)), JOIN)
        finally:
            blocker.close()
            freed.set()
        join_all(workers)

    for i, seq in enumerate(outcomes):
        kinds = [kind for kind, _ in seq]
        assert kinds[0] == "without", (i, kinds[:5])
        first_ok = kinds.index("mcp")
        # Failures, then MCP for good: never a failure once the server runs.
        assert set(kinds[:first_ok]) == {"without"} and set(kinds[first_ok:]) == {"mcp"}, (i, kinds)
        for _, warning in seq[:first_ok]:
            assert f":{port}" in warning and "in use" in warning, warning
    endpoints = {value for seq in outcomes for kind, value in seq if kind == "mcp"}
    assert len(endpoints) == 1, endpoints  # one server, one token, on the pinned port
    [(served_port, token)] = endpoints
    server = loopback.ensure()
    assert served_port == port == server.port and token == server.token
    assert len(server_threads()) == 1
    assert add_via_http(server, 40, 2) == 42
    assert any("without MCP" in r.getMessage() for r in caplog.records)


# -- close() from inside a tool ---------------------------------------------------------


def test_close_from_inside_a_tool_answers_it_and_the_calls_in_flight_on_other_connections() -> None:
    registry = make_registry()
    slow_entered = threading.Event()
    holder: list[loopback.LoopbackServer] = []

    @registry.tool
    def slow() -> str:
        """Runs until the server is closing, then a little longer."""
        slow_entered.set()
        assert wait_for(lambda: not holder[0].serving, JOIN)
        time.sleep(0.05)  # still running while close() waits for the connections
        return "slow done"

    @registry.tool
    def shut_down() -> str:
        """Close the process-wide server from inside a call."""
        loopback.close()
        return "closed from inside"

    server = loopback.ensure(0, registry=registry, settings=Settings(close_timeout=JOIN))
    holder.append(server)
    slow_client, idle_client, closer = (Client(server.port, server.token) for _ in range(3))
    answers: dict[str, Any] = {}
    try:
        assert tool_text(idle_client.call_tool("add", {"a": 1})) == "3"  # now idle, kept alive

        def call_slow() -> None:
            status, headers, body = slow_client.post(
                {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "slow", "arguments": {}}})
            answers["slow"] = (status, headers.get("connection"), json.loads(body))

        caller = run_threads([call_slow], "slow-caller")
        assert slow_entered.wait(JOIN)
        started = time.monotonic()
        assert tool_text(closer.call_tool("shut_down")) == "closed from inside"
        elapsed = time.monotonic() - started
        join_all(caller)
    finally:
        for c in (slow_client, idle_client, closer):
            c.close()
    status, connection, answer = answers["slow"]
    assert status == 200 and answer["id"] == 7 and tool_text(answer) == "slow done"
    assert connection == "close"  # answered during close: the server says it is going
    assert elapsed < JOIN / 2  # close() did not run into its close_timeout
    assert server.closed and loopback.active_runtime() is None
    assert not port_accepts(server.port)
    assert wait_for(lambda: not connection_threads() and not server_threads(), 5)


def test_restart_from_inside_a_tool_answers_the_call_and_the_new_server_serves() -> None:
    registry = make_registry()

    @registry.tool
    def restart() -> int:
        """Close the process-wide server and start another; returns the new port."""
        loopback.close()
        return loopback.ensure(0, registry=registry).port

    old = loopback.ensure(0, registry=registry)
    client = Client(old.port, old.token)
    try:
        answer = client.call_tool("restart")
    finally:
        client.close()
    new_port = answer["result"]["structuredContent"]["result"]
    new = loopback.ensure()
    assert new is not old and new.port == new_port and new.token != old.token
    assert old.closed and not port_accepts(old.port)
    assert loopback.active_runtime().port == new.port
    assert add_via_http(new, 2, 2) == 4
    assert len(server_threads()) == 1


def test_close_from_inside_a_tool_with_a_per_call_timeout_is_prompt(caplog: pytest.LogCaptureFixture) -> None:
    registry = make_registry()

    @registry.tool
    def shut_down() -> str:
        """Close the process-wide server from inside a call."""
        loopback.close()
        return "closed from inside"

    server = loopback.ensure(0, registry=registry, settings=Settings(tool_timeout=30, close_timeout=2.5))
    client = Client(server.port, server.token)
    try:
        with caplog.at_level(logging.WARNING, logger="loopback"):
            started = time.monotonic()
            text = tool_text(client.call_tool("shut_down"))
            elapsed = time.monotonic() - started
    finally:
        client.close()
    assert text == "closed from inside" and server.closed
    assert not [r.getMessage() for r in caplog.records if "still running" in r.getMessage()]
    assert elapsed < 1.5, f"close() from inside the tool took {elapsed:.2f} s (close_timeout is 2.5 s)"


# -- interpreter exit ----------------------------------------------------------------

EXIT_RACE_SCRIPT = """
import http.client, json, socket, sys, threading, time
import loopback

daemon, bind_delay, with_requests = sys.argv[1] == "daemon", float(sys.argv[2]), sys.argv[3] == "requests"
if bind_delay:  # the exit then lands in the middle of the start
    real_bind = socket.socket.bind
    def slow_bind(sock, address):
        time.sleep(bind_delay)
        return real_bind(sock, address)
    socket.socket.bind = slow_bind

N = 16
barrier = threading.Barrier(N + 1)

def run():
    barrier.wait()
    try:
        server = loopback.ensure()
    except loopback.StartError:  # documented once the interpreter is exiting
        return
    if with_requests:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
                         {"Authorization": "Bearer " + server.token, "Content-Type": "application/json",
                          "Accept": "application/json"})
            conn.getresponse().read()
        except OSError:  # the server may close under it at exit: that is fine
            pass

for _ in range(N):
    threading.Thread(target=run, daemon=daemon).start()
barrier.wait()  # the threads are released and the main thread returns at once
print("main done")
"""


@pytest.mark.parametrize("daemon", ["daemon", "non-daemon"])
@pytest.mark.parametrize("bind_delay", [0.0, 0.02])
@pytest.mark.parametrize("requests", ["requests", "no-requests"])
def test_ensure_from_16_threads_racing_interpreter_exit_exits_promptly_and_cleanly(
    daemon: str, bind_delay: float, requests: str,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPBACK_")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for _ in range(2):  # each run lands the exit somewhere else in the starts
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", EXIT_RACE_SCRIPT, daemon, str(bind_delay), requests],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
        )
        elapsed = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "main done"
        assert done.stderr == "", done.stderr  # no traceback, no "Exception in thread"
        assert elapsed < 15, elapsed  # promptly: no hang, not a speed claim


# -- fork -----------------------------------------------------------------------------


class ForkedChild:
    """A forked child that runs ``body()`` and sends back its JSON report through a pipe.

    With ``hold`` the child stays alive (bounded) after reporting, until ``release()``.
    The child always leaves with ``os._exit``: it never returns into pytest.
    """

    def __init__(self, body: Callable[[], dict[str, Any]], hold: bool = False) -> None:
        report_r, report_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(report_r)
                os.close(go_w)
                try:
                    report = body()
                    code = 0
                except BaseException:
                    report = {"error": traceback.format_exc()}
                os.write(report_w, json.dumps(report).encode())
                os.close(report_w)
                if hold:
                    select.select([go_r], [], [], JOIN)
            finally:
                os._exit(code)
        os.close(report_w)
        os.close(go_r)
        self.pid, self._report_r, self._go_w = pid, report_r, go_w
        self.exit_code: Optional[int] = None

    def report(self, timeout: float = JOIN) -> dict[str, Any]:
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._report_r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(self._report_r, 65536)
            if not chunk:
                break
            data += chunk
        return json.loads(data or b'{"error": "no report"}')

    def release(self) -> None:
        if self._go_w >= 0:
            os.close(self._go_w)
            self._go_w = -1

    def finish(self) -> int:
        """Let the child go and reap it (bounded); returns its exit code."""
        self.release()
        if self._report_r >= 0:
            os.close(self._report_r)
            self._report_r = -1
        if self.exit_code is None:
            for _ in range(int(JOIN * 100)):
                finished, status = os.waitpid(self.pid, os.WNOHANG)
                if finished:
                    self.exit_code = os.waitstatus_to_exitcode(status)
                    break
                time.sleep(0.01)
            else:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                pytest.fail("the forked child did not exit")
        return self.exit_code


def child_serves_its_own(registry: loopback.ToolRegistry, parent_port: int) -> dict[str, Any]:
    """In a forked child: no server inherited; its own starts, serves a call and closes."""
    report: dict[str, Any] = {"active_none": loopback.active_runtime() is None,
                              "starting_none": (lifecycle._starting is None and not lifecycle._start_in_flight)}
    child = loopback.ensure(0, registry=registry)
    report["other_port"] = child.port != parent_port
    report["sum"] = add_via_http(child, 2, 3)
    loopback.close()
    report["closed"] = child.closed and loopback.active_runtime() is None
    return report


CHILD_OK = {"active_none": True, "starting_none": True, "other_port": True, "sum": 5, "closed": True}

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@needs_fork
def test_fork_during_a_call_in_flight_the_child_serves_its_own_and_the_parent_answers_on_its_connections() -> None:
    registry = make_registry()
    entered, release = threading.Event(), threading.Event()

    @registry.tool
    def slow() -> str:
        """Wait until the test lets go."""
        entered.set()
        release.wait(JOIN)
        return "slow done"

    parent = loopback.ensure(0, registry=registry)
    busy, idle = Client(parent.port, parent.token), Client(parent.port, parent.token)
    answers: list[str] = []
    try:
        assert tool_text(idle.call_tool("add", {"a": 1, "b": 1})) == "2"  # idle keep-alive now
        caller = run_threads([lambda: answers.append(tool_text(busy.call_tool("slow")))], "slow-caller")
        assert entered.wait(JOIN)
        child = ForkedChild(lambda: {**child_serves_its_own(registry, parent.port),
                                     "inherited_serving": parent.serving})
        try:
            report = child.report()
        finally:
            code = child.finish()  # the child has exited before the parent goes on
        assert code == 0, report
        assert report == {**CHILD_OK, "inherited_serving": False}, report
        release.set()
        join_all(caller)
        assert answers == ["slow done"]
        # The child's exit closed nothing of the parent's: both keep-alive connections work.
        assert tool_text(busy.call_tool("add", {"a": 3, "b": 4})) == "7"
        assert tool_text(idle.call_tool("add", {"a": 5, "b": 6})) == "11"
        assert loopback.ensure() is parent and parent.serving
    finally:
        release.set()
        busy.close()
        idle.close()


@needs_fork
@pytest.mark.skipif(not HAS_PROC, reason="reads /proc")
def test_forked_child_keeps_no_copy_of_the_parents_connection_sockets() -> None:
    parent = loopback.ensure(0, registry=make_registry())
    client = Client(parent.port, parent.token)
    try:
        assert tool_text(client.call_tool("add", {"a": 1})) == "3"  # a served keep-alive connection
        server_side = {row["inode"] for row in tcp_table()
                       if row["local_port"] == parent.port and row["inode"] != "0"}  # 0: TIME_WAIT
        assert len(server_side) == 2  # the listening socket and the connection

        def body() -> dict[str, Any]:
            return {"held": sorted(socket_inodes(open_fds()) & server_side)}

        child = ForkedChild(body)
        try:
            report = child.report()
        finally:
            assert child.finish() == 0
        assert tool_text(client.call_tool("add", {"a": 2})) == "4"
    finally:
        client.close()
    assert report == {"held": []}, "the child holds sockets of the parent's server"


@needs_fork
@pytest.mark.skipif(not HAS_PROC, reason="reads /proc")
def test_forked_child_keeps_no_copy_of_the_parents_accept_loop_selector() -> None:
    def epoll_fds() -> set[int]:
        return {fd for fd, link in open_fds().items() if "eventpoll" in link}

    before = epoll_fds()
    parent = loopback.ensure(0, registry=make_registry())
    assert wait_for(lambda: bool(epoll_fds() - before), 5)
    parents = sorted(epoll_fds() - before)
    child = ForkedChild(lambda: {"held": sorted(fd for fd in parents if fd in epoll_fds())})
    try:
        report = child.report()
    finally:
        assert child.finish() == 0
    assert parent.serving
    assert report == {"held": []}, "the child holds the parent's accept-loop selector"


@needs_fork
def test_fork_while_another_thread_is_starting_the_server_the_child_starts_its_own_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The parent's start is held in bind() (the lock is free, the Future is pending).
    # The child has no thread to finish that start: it must not wait on it.
    gate = BindGate(monkeypatch, held="starter")
    registry = make_registry()
    started: list[Any] = []
    starter = threading.Thread(target=lambda: started.append(loopback.ensure(0, registry=registry)),
                               name="starter", daemon=True)
    starter.start()
    try:
        assert gate.entered.wait(JOIN)
        assert lifecycle._start_in_flight  # the start is in flight in the parent
        child = ForkedChild(lambda: child_serves_its_own(registry, 0))
        try:
            report = child.report()
        finally:
            code = child.finish()
        assert code == 0, report
        assert report == CHILD_OK, report
    finally:
        gate.open()
        join_all([starter])
    [parent] = started
    assert parent.serving and loopback.ensure() is parent
    assert add_via_http(parent, 20, 22) == 42


@needs_fork
def test_fork_while_another_thread_is_starting_leaves_the_child_no_copy_of_that_listening_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = BindGate(monkeypatch, held="starter")
    started: list[Any] = []
    starter = threading.Thread(target=lambda: started.append(loopback.ensure(0)), name="starter", daemon=True)
    starter.start()
    child: Optional[ForkedChild] = None
    try:
        assert gate.entered.wait(JOIN)
        child = ForkedChild(lambda: {"active_none": loopback.active_runtime() is None}, hold=True)
        assert child.report() == {"active_none": True}  # the child is alive from here on
        gate.open()
        join_all([starter])
        [parent] = started
        assert parent.serving
        loopback.close()
        assert parent.closed
        assert not port_accepts(parent.port), "the live child still holds the closed server's listening socket"
    finally:
        gate.open()
        if child is not None:
            assert child.finish() == 0
