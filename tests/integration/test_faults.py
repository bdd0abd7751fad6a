"""Faults: a port already taken, tools that raise, hang or return what JSON cannot hold,
and clients that leave mid-head, mid-body or mid-response, stop reading, or say nothing.

The server must answer what it can, end the thread of a connection that is gone, and go
on serving everyone else. Real servers on 127.0.0.1 and real sockets; every wait is
bounded. After every test: no extra live thread, no listening socket, no leaked file
descriptor (see ``no_leaked_threads_fds_or_listeners``).

Clients leaving mid-SSE-stream are covered for both kinds of stream: the standalone
``GET /mcp`` stream of a session, and a ``tools/call`` response that switched to SSE.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

import pytest

import loopback
from conftest import JOIN, Client, make_registry, port_accepts, session_of, wait_for
from loopback import lifecycle
from loopback.settings import Settings
from loopback.tools import ToolRegistry

BIG_TEXT = "x" * (5 * 1024 * 1024)  # a 5 MB tool result


# -- leak checks (conftest) ---------------------------------------------------------

pytestmark = pytest.mark.usefixtures("no_leaked_threads_fds_or_listeners")


def connection_threads(port: int) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"loopback-mcp:{port}:conn"]


def tool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("loopback-tool:")]


def run_thread(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def join(thread: threading.Thread, timeout: float = JOIN) -> None:
    thread.join(timeout)
    assert not thread.is_alive(), f"{thread.name} did not finish"


def result_of(answer: dict[str, Any]) -> dict[str, Any]:
    assert "result" in answer, answer
    return answer["result"]


def text_of(result: dict[str, Any]) -> str:
    return "".join(block["text"] for block in result["content"] if block["type"] == "text")


def served(server: loopback.LoopbackServer) -> bool:
    """A fresh connection gets a correct answer right now."""
    client = Client(server.port, server.token)
    try:
        return result_of(client.call_tool("add", {"a": 20, "b": 22}))["structuredContent"] == {"result": 42}
    finally:
        client.close()


def request_bytes(server: loopback.LoopbackServer, message: dict[str, Any], *, length: Optional[int] = None) -> bytes:
    """One POST /mcp; ``length`` overrides the Content-Length (to announce more than is sent)."""
    body = json.dumps(message).encode()
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {server.token}\r\n"
        f"Content-Type: application/json\r\nAccept: application/json\r\nMcp-Session-Id: {session_of(server)}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


def call_message(name: str, arguments: Optional[dict[str, Any]] = None, request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": arguments or {}}}


def abort(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0) instead of an orderly FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Released:
    """An Event every stuck tool waits on (bounded); set at the end so no tool thread leaks."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.entered = threading.Semaphore(0)

    def wait(self) -> None:
        self.entered.release()
        self.event.wait(JOIN)

    def set(self) -> None:
        self.event.set()


# -- a port already taken --------------------------------------------------------------

HOLD_PORT_SCRIPT = """
import socket, sys
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(1)
print(sock.getsockname()[1], flush=True)
sys.stdin.read()  # holds the port until the test closes stdin
"""


def test_port_held_by_another_process_gives_an_error_naming_it_and_the_next_ensure_gets_it() -> None:
    strict = Settings(port_fallback=False)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_PORT_SCRIPT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(holder.stdout.readline())
        for attempt in (lambda: loopback.ensure(port, settings=strict),
                        lambda: loopback.start(port, settings=strict),
                        lambda: loopback.LoopbackServer(port, settings=strict)):
            with pytest.raises(loopback.PortInUseError) as caught:
                attempt()
            assert caught.value.port == port and caught.value.host == "127.0.0.1"
            assert f"127.0.0.1:{port}" in str(caught.value) and "in use" in str(caught.value)
        assert loopback.active_runtime() is None and (lifecycle._starting is None and not lifecycle._start_in_flight)
    finally:
        holder.stdin.close()
        holder.wait(JOIN)
        holder.stdout.close()
    # The failure is not remembered: the next ensure() gets the port it asked for.
    server = loopback.ensure(port, registry=make_registry(), settings=strict)
    assert server.port == port and served(server)


# -- tools that raise ---------------------------------------------------------------------


def raising_registry() -> ToolRegistry:
    registry = make_registry()

    @registry.tool
    def value_error() -> str:
        raise ValueError("bad value")

    @registry.tool
    def recursion() -> str:
        def down(n: int) -> int:
            return down(n + 1)
        return str(down(0))

    @registry.tool
    def memory_error() -> str:
        raise MemoryError("out of memory")

    @registry.tool
    def huge_message() -> str:
        raise RuntimeError("m" * 1_000_000)

    return registry


@pytest.mark.parametrize("tool_timeout", [None, 10.0], ids=["inline", "own-thread"])
def test_tools_that_raise_give_error_results_and_the_connection_keeps_serving(
    tool_timeout: Optional[float], caplog: pytest.LogCaptureFixture,
) -> None:
    expected = {
        "value_error": "Tool 'value_error' failed: ValueError: bad value",
        "recursion": "Tool 'recursion' failed: RecursionError: maximum recursion depth exceeded",
        "memory_error": "Tool 'memory_error' failed: MemoryError: out of memory",
        "huge_message": "Tool 'huge_message' failed: RuntimeError: " + "m" * 1_000_000,
    }
    with loopback.start(0, registry=raising_registry(), settings=Settings(tool_timeout=tool_timeout)) as server:
        client = Client(server.port, server.token)
        try:
            with caplog.at_level(logging.DEBUG, logger="loopback"):
                for name, text in expected.items():
                    result = result_of(client.call_tool(name))
                    assert result["isError"] is True and text_of(result) == text, name
                    assert "Traceback" not in text_of(result)
                    # The same keep-alive connection goes on.
                    assert result_of(client.call_tool("add", {"a": 1}))["structuredContent"] == {"result": 3}
        finally:
            client.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize("tool_timeout", [None, 10.0], ids=["inline", "own-thread"])
@pytest.mark.parametrize("exception", [SystemExit, KeyboardInterrupt])
def test_a_tool_raising_system_exit_or_keyboard_interrupt_gets_an_error_result(
    exception: type[BaseException], tool_timeout: Optional[float],
) -> None:
    registry = make_registry()

    @registry.tool
    def bail_out() -> str:
        raise exception("leaving")

    thread_errors: list[str] = []
    hook = threading.excepthook
    # Kept here, not via monkeypatch: pytest's own thread-exception hook is swapped per phase.
    threading.excepthook = lambda args: thread_errors.append(f"{args.thread.name}: {args.exc_type.__name__}")
    try:
        with loopback.start(0, registry=registry, settings=Settings(tool_timeout=tool_timeout)) as server:
            client = Client(server.port, server.token)
            try:
                outcome: Any = client.call_tool("bail_out")
            except OSError as exc:  # http.client's RemoteDisconnected is one
                outcome = exc
            finally:
                client.close()
            assert served(server)  # whatever happened, the server goes on
            assert wait_for(lambda: not connection_threads(server.port), 5)
    finally:
        threading.excepthook = hook
    assert not thread_errors, thread_errors
    assert isinstance(outcome, dict), f"no answer: {outcome!r}"
    result = result_of(outcome)
    assert result["isError"] is True and text_of(result).startswith(f"Tool 'bail_out' failed: {exception.__name__}")


def test_a_tool_exception_whose_str_fails_still_gets_an_error_result(caplog: pytest.LogCaptureFixture) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise ValueError("no text for this one")

    registry = make_registry()

    @registry.tool
    def unprintable() -> str:
        raise Unprintable()

    with loopback.start(0, registry=registry) as server, caplog.at_level(logging.ERROR, logger="loopback"):
        client = Client(server.port, server.token)
        try:
            answer = client.call_tool("unprintable")
        finally:
            client.close()
        assert served(server)
    assert "error" not in answer, answer["error"]
    result = result_of(answer)
    assert result["isError"] is True and text_of(result).startswith("Tool 'unprintable' failed: Unprintable")


# -- tools that never return ---------------------------------------------------------------


def test_tools_that_never_return_time_out_while_everyone_else_is_served_and_are_released_at_the_end() -> None:
    registry = make_registry()
    stuck = Released()

    @registry.tool
    def never_returns() -> str:
        stuck.wait()
        return "too late"

    server = loopback.start(0, registry=registry, settings=Settings(tool_timeout=0.3))
    clients = [Client(server.port, server.token) for _ in range(4)]
    try:
        answers: list[Any] = [None] * len(clients)

        def call(i: int) -> Callable[[], None]:
            def run() -> None:
                answers[i] = result_of(clients[i].call_tool("never_returns"))
            return run

        callers = [run_thread(call(i), f"stuck-caller-{i}") for i in range(len(clients))]
        for _ in clients:
            assert stuck.entered.acquire(timeout=JOIN)
        assert len(tool_threads()) == len(clients)
        for i in range(10):  # served meanwhile, on fresh connections
            assert served(server)
        for thread in callers:
            join(thread)
        for answer in answers:
            assert answer == {"content": [{"type": "text", "text": "Tool 'never_returns' timed out after 0.3 seconds"}],
                              "isError": True}
        for i, client in enumerate(clients):  # each timed-out connection still serves
            assert result_of(client.call_tool("add", {"a": i}))["structuredContent"] == {"result": i + 2}
        assert len(tool_threads()) == len(clients)  # documented: a stuck tool keeps its thread ...
    finally:
        stuck.set()  # ... until it returns
        for client in clients:
            client.close()
        server.close()
    assert wait_for(lambda: not tool_threads(), 5), tool_threads()


def test_close_with_a_tool_that_never_returns_is_bounded_by_close_timeout_and_the_call_is_answered_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = make_registry()
    stuck = Released()

    @registry.tool
    def never_returns() -> str:
        stuck.wait()
        return "finally"

    close_timeout = 0.5
    server = loopback.start(0, registry=registry, settings=Settings(close_timeout=close_timeout))
    client = Client(server.port, server.token)
    answers: list[Any] = []
    try:
        caller = run_thread(lambda: answers.append(client.post(call_message("never_returns"))), "stuck-caller")
        assert stuck.entered.acquire(timeout=JOIN)
        with caplog.at_level(logging.WARNING, logger="loopback"):
            started = time.monotonic()
            server.close()
            elapsed = time.monotonic() - started
        assert server.closed and not port_accepts(server.port)
        assert close_timeout <= elapsed < close_timeout + 5, elapsed  # bounded, not a speed claim
        assert "1 request(s) still running after close()" in caplog.text
        assert len(connection_threads(server.port)) == 1  # the stuck call's, until the tool returns
    finally:
        stuck.set()
        caller.join(JOIN)
        client.close()
    # Once the tool returns, its call still gets the answer, then the connection ends.
    [(status, headers, body)] = answers
    assert status == 200 and headers.get("connection") == "close"
    assert text_of(result_of(json.loads(body))) == "finally"
    assert wait_for(lambda: not connection_threads(server.port), 5)


# -- results JSON cannot hold ----------------------------------------------------------------

_cycle: list[Any] = []
_cycle.append(_cycle)
# What each message must name (the exact words are the json module's or the converter's,
# and json's change between Python versions).
UNSERIALISABLE = {
    "object": (object(), "object"),
    "nan": (math.nan, "float"),
    "nested_inf": ({"x": [1, math.inf]}, "float"),
    "cycle": (_cycle, "Circular"),
    "tuple_key": ({(1, 2): 3}, "tuple"),
    "generator": ((i for i in range(3)), "generator"),
}


@pytest.mark.parametrize("declared", ["undeclared", "declared-any"])
def test_results_json_cannot_hold_become_error_results_and_the_connection_keeps_serving(declared: str) -> None:
    registry = make_registry()
    for name, (value, _) in UNSERIALISABLE.items():
        def make(value: Any) -> Callable[[], Any]:
            if declared == "undeclared":
                def undeclared():  # type: ignore[no-untyped-def]
                    return value
                return undeclared

            def declared_any() -> Any:
                return value
            return declared_any
        registry.add(make(value), name=name)

    with loopback.start(0, registry=registry) as server:
        client = Client(server.port, server.token)
        try:
            for name, (_, message) in UNSERIALISABLE.items():
                result = result_of(client.call_tool(name))
                assert result["isError"] is True and len(result["content"]) == 1, name
                text = result["content"][0]["text"]
                assert text.startswith("the tool returned a value that cannot be sent as JSON: "), (name, text)
                assert message in text, (name, text)
                assert result_of(client.call_tool("add", {"a": 1}))["structuredContent"] == {"result": 3}
        finally:
            client.close()


# -- clients that leave early ----------------------------------------------------------------


LEAVINGS = {
    "mid-head": lambda server: b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Ty" % server.port,
    "mid-body": lambda server: request_bytes(server, call_message("add", {"a": 1}), length=1000)[:-5],
    "mid-chunked-body": lambda server: (
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nAccept: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"100\r\n{\"jsonrpc\"" % (server.port, server.token.encode())),
}


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("where", list(LEAVINGS))
def test_a_client_leaving_mid_request_ends_its_thread_and_others_are_served(where: str, how: str) -> None:
    # body_timeout and idle_timeout are long: the thread must end because the client
    # left, not because a timer ran out.
    settings = Settings(body_timeout=60, idle_timeout=60)
    with loopback.start(0, registry=make_registry(), settings=settings) as server:
        for _ in range(3):  # repeated: each one must end, none may pile up
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(LEAVINGS[where](server))
            assert wait_for(lambda: len(connection_threads(server.port)) == 1, 5)
            if how == "reset":
                abort(sock)
            else:
                sock.close()
            assert wait_for(lambda: not connection_threads(server.port), 5), "the thread outlived its client"
            assert served(server)


@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_client_leaving_after_a_few_bytes_of_a_5_mb_response_ends_its_thread_and_others_are_served(how: str) -> None:
    registry = make_registry()

    @registry.tool
    def big() -> str:
        return BIG_TEXT

    with loopback.start(0, registry=registry, settings=Settings(idle_timeout=60)) as server:
        for _ in range(3):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the response cannot all be buffered
            sock.settimeout(10)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(request_bytes(server, call_message("big")))
            assert sock.recv(16).startswith(b"HTTP/1.1 200")
            if how == "reset":
                abort(sock)
            else:
                sock.close()
            assert wait_for(lambda: not connection_threads(server.port), 5), "the thread outlived its client"
            assert served(server)
        # And the whole 5 MB still arrives for a client that reads it.
        client = Client(server.port, server.token)
        try:
            assert text_of(result_of(client.call_tool("big"))) == BIG_TEXT
        finally:
            client.close()


def test_close_leaves_no_thread_writing_to_a_client_that_stopped_reading() -> None:
    registry = make_registry()
    big_text = "x" * (32 * 1024 * 1024)  # far more than the socket buffers on both ends hold

    @registry.tool
    def big() -> str:
        return big_text

    server = loopback.start(0, registry=registry, settings=Settings(close_timeout=0.5))
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(request_bytes(server, call_message("big")))
        assert sock.recv(16).startswith(b"HTTP/1.1 200")  # then reads no more, and stays
        time.sleep(0.3)  # the server is now blocked writing
        server.close()
        assert wait_for(lambda: not connection_threads(server.port), 5), "a thread outlived close()"
    finally:
        sock.close()  # lets the stuck thread go in any case


# -- clients that leave mid-SSE-stream -----------------------------------------------------------


def read_until(sock: socket.socket, marker: bytes, data: bytes = b"", limit: int = 1 << 20) -> bytes:
    """``data`` and what ``sock`` sends next, until ``marker`` is in it (bounded by size
    and the socket timeout); callers pass back what they got, so nothing read is lost."""
    while marker not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed before {marker!r}: {data[:300]!r}"
        data += chunk
        assert len(data) < limit, data[:300]
    return data


def open_session(server: loopback.LoopbackServer) -> Client:
    client = Client(server.port, server.token)
    client.open_session()
    assert client.session_id, "initialize returned no Mcp-Session-Id"
    return client


def sse_get_bytes(server: loopback.LoopbackServer, session_id: str) -> bytes:
    return (f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {server.token}\r\n"
            f"Accept: text/event-stream\r\nMcp-Session-Id: {session_id}\r\n"
            f"MCP-Protocol-Version: 2025-11-25\r\n\r\n").encode()


@pytest.mark.parametrize("events", ["idle", "events-after-leaving"])
@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_client_leaving_a_get_sse_stream_ends_its_thread_and_others_are_served(how: str, events: str) -> None:
    # idle_timeout is long: the stream thread must end because the client left (noticed
    # at the next keep-alive or event), not because a timer for silence ran out.
    settings = Settings(sse_keepalive=0.2, idle_timeout=60)
    registry = make_registry()
    with loopback.start(0, registry=registry, settings=settings) as server:
        client = open_session(server)
        try:
            for round_ in range(3):  # repeated: each stream thread must end, none may pile up
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                try:
                    sock.sendall(sse_get_bytes(server, client.session_id))
                    got = read_until(sock, b"\r\n\r\n")
                    head, _, rest = got.partition(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 200"), head
                    assert b"content-type: text/event-stream" in head.lower(), head
                    got = read_until(sock, b"\n\n", rest)  # the priming event: the stream is live
                    # The keep-alive connection of `client` and this stream.
                    assert wait_for(lambda: len(connection_threads(server.port)) == 2, 5)
                    if events == "events-after-leaving":
                        # An event on the stream gets through before the client leaves.
                        registry.add(lambda: "x", name=f"before_{round_}")
                        assert b"notifications/tools/list_changed" in read_until(sock, b"list_changed", got)
                finally:
                    if how == "reset":
                        abort(sock)
                    else:
                        sock.close()
                if events == "events-after-leaving":
                    for i in range(5):  # the server now writes to a client that is gone
                        registry.add(lambda: "x", name=f"after_{round_}_{i}")
                        time.sleep(0.02)
                assert wait_for(lambda: len(connection_threads(server.port)) == 1, 5), "the stream outlived its client"
                assert served(server)
                # The session survives its stream: the same client goes on, on its connection.
                assert result_of(client.call_tool("add", {"a": round_}))["structuredContent"] == {"result": round_ + 2}
        finally:
            client.close()


@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_client_leaving_a_tools_call_sse_response_ends_its_thread_once_the_tool_returns(how: str) -> None:
    registry = make_registry()
    first_sent, go_on, returned = threading.Event(), threading.Event(), threading.Event()

    @registry.tool
    def steps(ctx: loopback.Context) -> str:
        """Reports progress, waits for the test, reports more to a client that is gone, returns."""
        ctx.progress(1, 3, "one")
        first_sent.set()
        go_on.wait(JOIN)
        for step in (2, 3):
            ctx.progress(step, 3, "more")
        returned.set()
        return "done"

    with loopback.start(0, registry=registry, settings=Settings(idle_timeout=60)) as server:
        client = open_session(server)
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        try:
            body = json.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                               "params": {"name": "steps", "arguments": {}, "_meta": {"progressToken": "p"}}}).encode()
            sock.sendall((f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {server.token}\r\n"
                          f"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
                          f"Mcp-Session-Id: {client.session_id}\r\nMCP-Protocol-Version: 2025-11-25\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
            assert first_sent.wait(JOIN)
            got = read_until(sock, b"\r\n\r\n")
            assert got.startswith(b"HTTP/1.1 200") and b"text/event-stream" in got.lower(), got
            read_until(sock, b"notifications/progress", got)
        finally:
            if how == "reset":
                abort(sock)
            else:
                sock.close()
        try:
            assert served(server)  # while the tool still runs for a client that left
            go_on.set()
            assert returned.wait(JOIN)
            assert wait_for(lambda: len(connection_threads(server.port)) == 1, 5), "the call's thread outlived its client"
            assert result_of(client.call_tool("add", {"a": 4}))["structuredContent"] == {"result": 6}
        finally:
            go_on.set()
            client.close()


# -- clients that say nothing ------------------------------------------------------------------


def test_silent_connections_are_dropped_after_idle_timeout_while_others_are_served() -> None:
    idle_timeout = 0.5
    with loopback.start(0, registry=make_registry(), settings=Settings(idle_timeout=idle_timeout)) as server:
        opened = time.monotonic()  # before any of them: none is accepted earlier
        silent = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(20)]
        try:
            assert wait_for(lambda: len(connection_threads(server.port)) == 20, 5)
            assert served(server)  # not held up by 20 silent connections
            for sock in silent:  # each is closed by the server (b"": end of stream)...
                assert sock.recv(1) == b""
            waited = time.monotonic() - opened
            assert idle_timeout * 0.9 <= waited < idle_timeout + 5, waited  # ...at about idle_timeout
            assert wait_for(lambda: not connection_threads(server.port), 5), "a silent client pinned a thread"
            assert served(server)
        finally:
            for sock in silent:
                sock.close()


def test_a_request_head_trickling_in_cannot_pin_a_thread_for_long() -> None:
    idle_timeout = 0.3
    settings = Settings(idle_timeout=idle_timeout, body_timeout=0.5)
    with loopback.start(0, registry=make_registry(), settings=settings) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        try:
            head = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 1000
            started = time.monotonic()
            deadline = started + 3.0  # far past idle_timeout + body_timeout
            dropped_after = None
            for byte in head:  # keeps trickling (each byte within idle_timeout) until dropped
                if time.monotonic() > deadline:
                    break
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    dropped_after = time.monotonic() - started
                    break
                if not connection_threads(server.port):
                    dropped_after = time.monotonic() - started
                    break
                time.sleep(idle_timeout / 2)
            assert dropped_after is not None, "a trickling request head kept its thread for 3 s"
            assert dropped_after < settings.body_timeout + 1.5, dropped_after
        finally:
            sock.close()


def test_200_idle_keep_alive_connections_are_all_served_afterwards_and_close_ends_every_thread() -> None:
    n = 200
    server = loopback.start(0, registry=make_registry())
    threads_before = threading.active_count()
    clients = [Client(server.port, server.token) for _ in range(n)]
    try:
        for i, client in enumerate(clients):  # each opens its connection, then idles
            assert result_of(client.call_tool("add", {"a": i, "b": 0}))["structuredContent"] == {"result": i}
        assert wait_for(lambda: len(connection_threads(server.port)) == n, 5)
        socks = [client.conn.sock for client in clients]
        assert served(server)  # a 201st connection is not held up by 200 idle ones
        # All 200 at once, each on its own kept-alive connection.
        answers: list[Any] = [None] * n
        go = threading.Barrier(n, timeout=JOIN)

        def call(i: int) -> Callable[[], None]:
            def run() -> None:
                go.wait()
                answers[i] = result_of(clients[i].call_tool("add", {"a": i, "b": 1}))["structuredContent"]
            return run

        callers = [run_thread(call(i), f"caller-{i}") for i in range(n)]
        for thread in callers:
            join(thread)
        assert answers == [{"result": i + 1} for i in range(n)]
        assert [client.conn.sock for client in clients] == socks  # no reconnects: kept alive
        assert len(connection_threads(server.port)) == n
        server.close()
        assert wait_for(lambda: not connection_threads(server.port), 5)
        assert wait_for(lambda: threading.active_count() <= threads_before, 5), threading.active_count()
        for sock in socks:  # the server ended every connection
            sock.settimeout(5)
            assert sock.recv(1) == b""
    finally:
        for client in clients:
            client.close()
        server.close()
