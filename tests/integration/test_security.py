"""Defects found by attacking the server as another token or an unauthenticated peer would
(issue 11), each shown over real sockets. Every piece of client state belongs to one token."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

import loopback
from conftest import Client, make_registry, wait_for
from sse_client import next_message, open_get, read_event, start_post

ROOT = Path(__file__).resolve().parents[2]
MODERN = "2026-07-28"


def call(name: str, arguments: Optional[dict[str, Any]] = None, id: int = 50, **meta: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments or {}}
    if meta:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}


def post(port: int, token: str, message: Any, **headers: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                "Authorization": f"Bearer {token}", "MCP-Protocol-Version": "2025-11-25"}
        base.update(headers)
        conn.request("POST", "/mcp", json.dumps(message).encode(), base)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def asking() -> Iterator[loopback.LoopbackServer]:
    registry = make_registry()

    @registry.tool
    def whose_roots(ctx: loopback.Context) -> str:
        """Asks the client for its roots and says whose they were."""
        return str(ctx.request("roots/list", {}, timeout=5)["roots"][0]["name"])

    server = loopback.start(0, registry=registry)
    try:
        yield server
    finally:
        server.close()


# 1. One token answered requests sent to another token's client.
def test_a_guest_cannot_answer_the_owners_server_to_client_request(asking: loopback.LoopbackServer) -> None:
    guest = asking.issue_token("guest").token
    # No Mcp-Session-Id: requests outside a session. The owner's call asks on its own SSE stream.
    conn, response = start_post(asking.port, asking.token, None, call("whose_roots"))
    try:
        _, request = next_message(response)
        assert request["method"] == "roots/list"
        forged = {"jsonrpc": "2.0", "id": request["id"], "result": {"roots": [{"uri": "file:///", "name": "guest"}]}}
        assert post(asking.port, guest, forged)[0] == 202  # accepted, and dropped: not the guest's request
        real = {"jsonrpc": "2.0", "id": request["id"], "result": {"roots": [{"uri": "file:///", "name": "owner"}]}}
        assert post(asking.port, asking.token, real)[0] == 202
        _, answer = next_message(response)
        assert answer["result"]["content"][0]["text"] == "owner"
    finally:
        conn.close()


def test_stateless_initialize_of_a_guest_does_not_rewrite_the_owners_capabilities() -> None:
    registry = make_registry()

    @registry.tool
    def ask(ctx: loopback.Context) -> str:
        """Elicits a word."""
        return str(ctx.elicit("Word?", {"type": "object", "properties": {"w": {"type": "string"}}}, timeout=5)
                   .get("content", {}).get("w"))

    server = loopback.start(0, registry=registry, settings=loopback.Settings(stateless=True))
    try:
        guest = server.issue_token("guest").token
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "clientInfo": {"name": "t", "version": "1"},
                           "capabilities": {"elicitation": {}}}}
        assert post(server.port, server.token, init)[0] == 200
        guest_init = {**init, "params": {**init["params"], "capabilities": {}}}
        assert post(server.port, guest, guest_init)[0] == 200  # the guest declares nothing
        conn, response = start_post(server.port, server.token, None, call("ask"))
        try:
            _, request = next_message(response)
            assert request["method"] == "elicitation/create"  # the owner's own declaration still holds
            forged = {"jsonrpc": "2.0", "id": request["id"], "result": {"action": "accept", "content": {"w": "forged"}}}
            assert post(server.port, guest, forged)[0] == 202
            real = {"jsonrpc": "2.0", "id": request["id"], "result": {"action": "accept", "content": {"w": "real"}}}
            assert post(server.port, server.token, real)[0] == 202
            _, answer = next_message(response)
            assert answer["result"]["content"][0]["text"] == "real"
        finally:
            conn.close()
    finally:
        server.close()


# 2. A guest ended the owner's session by flooding initialize.
def test_a_guest_flooding_sessions_never_ends_the_owners_busy_session() -> None:
    registry = make_registry()
    release = threading.Event()

    @registry.tool
    def hold(ctx: loopback.Context) -> str:
        """Waits until released; says whether it was cancelled."""
        release.wait(10)
        return "cancelled" if ctx.cancelled else "finished"

    server = loopback.start(0, registry=registry, settings=loopback.Settings(max_sessions=8))
    owner = Client(server.port, server.token)
    try:
        owner.open_session()
        results: list[Any] = []
        caller = threading.Thread(target=lambda: results.append(owner.call_tool("hold")))
        caller.start()
        assert wait_for(lambda: any(s.state.in_flight for s in server._httpd.sessions.sessions()), 5)
        guest = server.issue_token("guest").token
        statuses = []
        for _ in range(20):
            flood = Client(server.port, guest)
            try:
                statuses.append(flood.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "g", "version": "1"}}})[0])
            finally:
                flood.close()
        assert set(statuses) == {200}  # the guest makes room among its own sessions
        guests = [s for s in server._httpd.sessions.sessions() if s.principal is not None and s.principal.scope == "guest"]
        assert len(guests) == 7  # the table is full: the owner's one, and the guest's newest
        release.set()
        caller.join(10)
        assert results and results[0]["result"]["content"][0]["text"] == "finished"
        probe = Client(server.port, server.token)
        probe.session_id = owner.session_id
        assert probe.rpc("ping")["result"] == {}  # the owner's session is still there
        probe.close()
    finally:
        release.set()
        owner.close()
        server.close()


def test_a_grant_without_an_idle_session_to_end_is_refused_503() -> None:
    server = loopback.start(0, registry=make_registry(), settings=loopback.Settings(max_sessions=2))
    owner = Client(server.port, server.token)
    guest_token = server.issue_token("guest").token
    guests: list[tuple[http.client.HTTPConnection, Any]] = []
    try:
        owner.open_session()
        g = Client(server.port, guest_token)
        g.open_session()
        guests.append(open_get(server.port, guest_token, g.session_id))  # busy: a stream is open
        status, _, body = Client(server.port, guest_token, auto_session=False).post(
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "g", "version": "1"}}})
        assert status == 503 and b"too many sessions" in body
        assert owner.rpc("ping")["result"] == {}
    finally:
        for conn, _ in guests:
            conn.close()
        owner.close()
        server.close()


# 3. Unauthenticated memory: a head is bounded while it arrives, before any token check.
@pytest.mark.parametrize(("lines", "status"), [
    ([b"X-Filler-%d: %s" % (i, b"a" * 4000) for i in range(20)], 431),  # 80 KB of head, never finished
    ([b"X-Long: " + b"a" * 9000], 431),  # one line over 8 KiB
    ([], 414),
])
def test_a_head_over_its_limit_is_refused_before_it_ends(server: loopback.LoopbackServer, lines: list[bytes],
                                                         status: int) -> None:
    target = b"/mcp?" + b"a" * 9000 if status == 414 else b"/mcp"
    head = b"POST " + target + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.port + b"".join(l + b"\r\n" for l in lines)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(head)  # no blank line: the head never ends
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:80]
        assert time.monotonic() - started < 2
        assert wait_for(lambda: sock.recv(65536) == b"", 3)  # and the connection is closed


# 4. No cap on connections; the accept loop spun when descriptors ran out.
def test_past_the_connection_cap_an_idle_connection_makes_room() -> None:
    server = loopback.start(0, registry=make_registry(), settings=loopback.Settings(max_connections=8))
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(8)]
    try:
        assert wait_for(lambda: len(server._httpd._connections) == 8, 5)
        client = Client(server.port, server.token)
        started = time.monotonic()
        assert client.call_tool("add", {"a": 1})["result"]["structuredContent"] == {"result": 3}
        assert time.monotonic() - started < 2
        client.close()
        closed = sum(1 for s in silent if _closed_by_server(s))
        assert closed >= 1
    finally:
        for s in silent:
            s.close()
        server.close()


def test_past_the_connection_cap_with_none_idle_a_new_connection_gets_503() -> None:
    server = loopback.start(0, registry=make_registry(), settings=loopback.Settings(max_connections=4))
    busy = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
    try:
        for s in busy:
            s.sendall(b"POST /mcp HTTP/1.1\r\n")  # mid-head: not idle
        assert wait_for(lambda: len(server._httpd._connections) == 4, 5)
        time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
            answer = extra.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"too many connections" in answer
    finally:
        for s in busy:
            s.close()
        server.close()


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.5)
    try:
        return sock.recv(1) == b""
    except (socket.timeout, OSError):
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_NOFILE and /proc are Linux here")
def test_out_of_descriptors_the_server_neither_spins_nor_starves_a_token_holder(tmp_path: Path) -> None:
    child = textwrap.dedent("""
        import resource, sys, time
        resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))
        import loopback

        @loopback.tool
        def add(a: int, b: int = 2) -> int:
            return a + b

        server = loopback.start(0)
        print(server.port, server.token, flush=True)
        sys.stdin.readline()
        server.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    silent: list[socket.socket] = []
    try:
        port_text, token = proc.stdout.readline().split()  # type: ignore[union-attr]
        port = int(port_text)
        for _ in range(140):
            silent.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.3)
        cpu_before = _cpu_seconds(proc.pid)
        time.sleep(1.0)
        spent = _cpu_seconds(proc.pid) - cpu_before
        assert spent < 0.5, f"the server burned {spent:.2f} s of CPU in 1 s while idle"
        client = Client(port, token)
        try:
            assert client.call_tool("add", {"a": 2})["result"]["structuredContent"] == {"result": 4}
        finally:
            client.close()
    finally:
        for s in silent:
            s.close()
        proc.stdin.write("\n")  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# 5. select.select() failed for descriptors >= 1024.
@pytest.fixture
def high_descriptors() -> Iterator[None]:
    """Hold ~1100 descriptors so that sockets made next are numbered past 1024."""
    held = []
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
        held.append(fd)
        while held[-1] < 1100:
            held.append(os.dup(fd))
        yield
    finally:
        for fd in held:
            os.close(fd)


def test_a_get_stream_on_a_high_descriptor_lives_past_its_keep_alives(high_descriptors: None) -> None:
    server = loopback.start(0, registry=make_registry(), settings=loopback.Settings(sse_keepalive=0.2))
    client = Client(server.port, server.token)
    try:
        client.open_session()
        conn, response = open_get(server.port, server.token, client.session_id)
        assert conn.sock is not None and conn.sock.fileno() >= 1024
        comments = 0
        deadline = time.monotonic() + 5
        while comments < 3 and time.monotonic() < deadline:
            event = read_event(response, 2)
            assert event is not None, "the stream ended"
            comments += "keep-alive" in event["comments"]
        assert comments >= 3
        conn.close()
    finally:
        client.close()
        server.close()


def test_closing_a_2026_request_on_a_high_descriptor_cancels_its_tool(high_descriptors: None) -> None:
    registry = make_registry()
    seen = threading.Event()
    cancelled = threading.Event()

    @registry.tool
    def wait_for_cancel(ctx: loopback.Context) -> str:
        """Waits until cancelled."""
        seen.set()
        deadline = time.monotonic() + 10
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        if ctx.cancelled:
            cancelled.set()
        return "done"

    server = loopback.start(0, registry=registry)
    try:
        meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {}}
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        assert sock.fileno() >= 1024
        body = json.dumps(call("wait_for_cancel", **meta)).encode()
        sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
                     b"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
                     b"MCP-Protocol-Version: %s\r\nMcp-Method: tools/call\r\nMcp-Name: wait_for_cancel\r\n"
                     b"Content-Length: %d\r\n\r\n" % (server.port, server.token.encode(), MODERN.encode(), len(body))
                     + body)
        assert seen.wait(5)
        sock.close()
        assert cancelled.wait(5)
    finally:
        server.close()


# 6 and 13. A revoked or expired token kept its GET stream; a revoked grant's sessions stayed.
@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_a_grant_that_ends_ends_its_streams_and_sessions(how: str) -> None:
    server = loopback.start(0, registry=make_registry(), settings=loopback.Settings(sse_keepalive=30))
    grant = server.issue_token("guest", ttl=1.0 if how == "expired" else None)
    client = Client(server.port, grant.token)
    try:
        client.open_session()
        owner = Client(server.port, server.token)
        owner.open_session()
        conn, response = open_get(server.port, grant.token, client.session_id, timeout=10)
        assert response.status == 200
        assert len(server._httpd.sessions) == 2
        started = time.monotonic()
        if how == "revoked":
            assert server.revoke_token(grant.token)
        while read_event(response, 5) is not None:  # only the priming event, then the end
            pass
        assert time.monotonic() - started < 3
        assert wait_for(lambda: len(server._httpd.sessions) == 1, 2)  # the owner's alone
        assert owner.rpc("ping")["result"] == {}
        owner.close()
        conn.close()
    finally:
        client.close()
        server.close()


# 10. 1e400 reached a float parameter as infinity.
def test_a_non_finite_number_is_refused_at_argument_checking(client: Client) -> None:
    status, _, payload = client.post(
        b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"add","arguments":{"a":1e400}}}')
    answer = json.loads(payload)
    assert status == 200 and answer["result"]["isError"] is True
    assert "finite" in answer["result"]["content"][0]["text"]


# 11. The CORS preflight did not allow the 2026-07-28 request headers.
def test_the_preflight_allows_the_2026_routing_and_param_headers(server: loopback.LoopbackServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("OPTIONS", "/mcp", headers={
            "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "mcp-method, mcp-name, mcp-param-region, content-type"})
        response = conn.getresponse()
        response.read()
        allowed = {h.strip().lower() for h in response.getheader("Access-Control-Allow-Headers", "").split(",")}
        assert response.status == 204
        assert {"mcp-method", "mcp-name", "mcp-param-region", "content-type"} <= allowed
    finally:
        conn.close()


# 12. close() threw away the results of streaming calls.
def test_close_from_a_streaming_tool_still_delivers_its_result() -> None:
    registry = make_registry()
    holder: list[loopback.LoopbackServer] = []

    @registry.tool
    def shut_down(ctx: loopback.Context) -> str:
        """Reports progress, closes the server, answers."""
        ctx.progress(1, 1)
        holder[0].close()
        return "bye"

    server = loopback.start(0, registry=registry)
    holder.append(server)
    client = Client(server.port, server.token)
    try:
        client.open_session()
        conn, response = start_post(server.port, server.token, client.session_id,
                                    call("shut_down", _={}) | {"params": {"name": "shut_down", "arguments": {},
                                                                          "_meta": {"progressToken": "p"}}})
        assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
        _, progress = next_message(response)
        assert progress["method"] == "notifications/progress"
        _, answer = next_message(response)
        assert answer["result"]["content"][0]["text"] == "bye"
        conn.close()
    finally:
        client.close()
        server.close()
