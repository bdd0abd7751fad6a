"""SSE framing and streams: the standalone GET stream (priming event, retry, keep-alive
comments, Last-Event-ID replay, list_changed broadcasts, one per session), the lazy
switch of a POST to SSE, polling (a call closing its stream and the client resuming),
close() and client disconnects. Real servers, real HTTP."""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Iterator

import pytest

import loopback
from conftest import Client, _loopback_threads, make_registry, wait_for
from sse_client import headers, next_message, open_get, read_event, start_post


def stream_threads(port: int) -> int:
    return sum(1 for t in _loopback_threads() if t.name == f"loopback-mcp:{port}:conn")


@pytest.fixture
def srv() -> Iterator[loopback.LoopbackServer]:
    registry = make_registry()

    @registry.tool
    def slow_steps(ctx: loopback.Context, steps: int = 3) -> str:
        """Reports progress and logs at each step."""
        for step in range(1, steps + 1):
            ctx.progress(step, steps, f"step {step}")
            ctx.log("info", {"step": step}, logger="steps")
        return "done"

    @registry.tool
    def polled(ctx: loopback.Context) -> str:
        """Closes its stream, then finishes: the client must resume to get the result."""
        ctx.log("info", "before")
        ctx.close_stream()
        time.sleep(0.2)
        ctx.log("info", "after")
        return "resumed"

    server = loopback.start(0, registry=registry, settings=loopback.Settings(sse_keepalive=0.2, sse_retry=1500))
    try:
        yield server
    finally:
        server.close()


def session(server: loopback.LoopbackServer) -> Client:
    client = Client(server.port, server.token)
    client.open_session()
    return client


def test_get_stream_starts_with_a_priming_event_and_retry(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    conn, response = open_get(srv.port, srv.token, client.session_id)
    try:
        assert response.status == 200
        assert response.getheader("Content-Type") == "text/event-stream"
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert response.getheader("Cache-Control") == "no-cache"
        first = read_event(response)
        assert first is not None and first["id"] and first["retry"] == "1500" and first["data"] == ""
        # Then, while idle, a ':' keep-alive comment every sse_keepalive seconds.
        started = time.monotonic()
        comment = read_event(response)
        assert comment == {"comments": ["keep-alive"]}
        assert time.monotonic() - started < 2
    finally:
        conn.close()
        client.close()


def test_tool_list_changes_reach_the_get_stream_with_event_ids(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    conn, response = open_get(srv.port, srv.token, client.session_id)
    try:
        read_event(response)  # priming

        @srv.registry.tool
        def added() -> str:
            """A tool registered while a client listens."""
            return "x"

        event, message = next_message(response)
        assert message == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
        assert event["event"] == "message" and event["id"]
    finally:
        conn.close()
        client.close()


def test_broadcast_of_resource_updates_reaches_only_subscribers(srv: loopback.LoopbackServer) -> None:
    subscribed, other = session(srv), session(srv)
    srv._httpd.sessions.get(subscribed.session_id).state.subscriptions.add("file:///a")
    c1, r1 = open_get(srv.port, srv.token, subscribed.session_id)
    c2, r2 = open_get(srv.port, srv.token, other.session_id, timeout=1)
    try:
        read_event(r1)
        read_event(r2)
        assert srv._httpd.broadcast("notifications/resources/updated", {"uri": "file:///a"}, uri="file:///a") == 1
        assert next_message(r1)[1]["params"] == {"uri": "file:///a"}
        assert read_event(r2, 1) == {"comments": ["keep-alive"]}  # nothing but keep-alives
    finally:
        for c in (c1, c2, subscribed, other):
            c.close()


def test_last_event_id_replays_what_was_missed(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    conn, response = open_get(srv.port, srv.token, client.session_id)
    httpd = srv._httpd
    httpd.broadcast("notifications/tools/list_changed")
    event, _ = next_message(response)
    conn.close()  # the client goes away
    state = httpd.sessions.get(client.session_id)
    assert wait_for(lambda: not state.standalone.attached, 5)
    httpd.broadcast("notifications/prompts/list_changed")  # missed, kept in the history
    httpd.broadcast("notifications/resources/list_changed")
    conn, response = open_get(srv.port, srv.token, client.session_id, **{"Last-Event-ID": event["id"]})
    try:
        assert response.status == 200
        methods = [next_message(response)[1]["method"] for _ in range(2)]
        assert methods == ["notifications/prompts/list_changed", "notifications/resources/list_changed"]
        httpd.broadcast("notifications/tools/list_changed")  # and it goes on live
        assert next_message(response)[1]["method"] == "notifications/tools/list_changed"
    finally:
        conn.close()
        client.close()


def test_a_second_get_stream_replaces_the_first(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    c1, r1 = open_get(srv.port, srv.token, client.session_id)
    try:
        read_event(r1)
        c2, r2 = open_get(srv.port, srv.token, client.session_id)
        try:
            assert r2.status == 200
            assert read_event(r1) is None  # the first one's body ends cleanly
            srv._httpd.broadcast("notifications/tools/list_changed")
            assert next_message(r2)[1]["method"] == "notifications/tools/list_changed"
        finally:
            c2.close()
    finally:
        c1.close()
        client.close()


def test_get_needs_an_event_stream_accept(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request("GET", "/mcp", headers={"Authorization": f"Bearer {srv.token}", "Accept": "application/json",
                                             "Mcp-Session-Id": client.session_id})
        response = conn.getresponse()
        response.read()
        assert response.status == 406
    finally:
        conn.close()
        client.close()


def test_a_call_that_sends_nothing_first_answers_plain_json(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    try:
        status, head, body = client.post({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                                          "params": {"name": "slow_steps", "arguments": {}}})
        # No progressToken and no setLevel: nothing to stream, so plain JSON on keep-alive.
        assert status == 200 and head["content-type"] == "application/json"
        assert json.loads(body)["result"]["content"][0]["text"] == "done"
    finally:
        client.close()


def test_progress_and_logs_switch_the_response_to_sse(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    client.rpc("logging/setLevel", {"level": "info"})
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "slow_steps", "arguments": {"steps": 2}, "_meta": {"progressToken": "tok"}}}
    conn, response = start_post(srv.port, srv.token, client.session_id, call)
    try:
        assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
        events = []
        while (event := read_event(response)) is not None:
            events.append(event)
        assert events[0]["data"] == "" and events[0]["retry"] == "1500"
        messages = [e.message for e in events[1:]]
        assert [m.get("method") for m in messages] == [
            "notifications/progress", "notifications/message", "notifications/progress", "notifications/message", None]
        assert messages[0]["params"] == {"progressToken": "tok", "progress": 1, "total": 2, "message": "step 1"}
        assert messages[1]["params"] == {"level": "info", "data": {"step": 1}, "logger": "steps"}
        assert messages[-1]["id"] == 9 and messages[-1]["result"]["content"][0]["text"] == "done"
        ids = [e["id"] for e in events]
        assert len(set(ids)) == len(ids) and all(ids)
        # The chunked body ended and the connection is still good for the next request.
        conn.request("POST", "/mcp", b'{"jsonrpc":"2.0","id":10,"method":"ping"}', headers(srv.token, client.session_id))
        again = conn.getresponse()
        assert again.status == 200 and json.loads(again.read())["result"] == {}
    finally:
        conn.close()
        client.close()


def test_json_only_clients_get_json_and_no_notifications(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    client.rpc("logging/setLevel", {"level": "info"})
    try:
        status, head, body = client.post(
            {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
             "params": {"name": "slow_steps", "arguments": {}, "_meta": {"progressToken": 1}}},
            headers=client.headers(Accept="application/json"))
        assert status == 200 and head["content-type"] == "application/json"
        assert json.loads(body)["result"]["content"][0]["text"] == "done"
    finally:
        client.close()


def test_a_closed_call_stream_is_resumed_with_last_event_id(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    client.rpc("logging/setLevel", {"level": "info"})
    call = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "polled", "arguments": {}}}
    conn, response = start_post(srv.port, srv.token, client.session_id, call)
    try:
        priming = read_event(response)
        assert priming["data"] == "" and priming["retry"]
        event, message = next_message(response)
        assert message["params"]["data"] == "before"
        assert read_event(response) is None  # the server ended the response mid-call
    finally:
        conn.close()
    conn, response = open_get(srv.port, srv.token, client.session_id, **{"Last-Event-ID": event["id"]})
    try:
        assert response.status == 200
        assert next_message(response)[1]["params"]["data"] == "after"
        final = next_message(response)[1]
        assert final["id"] == 4 and final["result"]["content"][0]["text"] == "resumed"
        assert read_event(response) is None  # that stream is complete: the GET ends
    finally:
        conn.close()
        client.close()


def test_close_ends_an_open_get_stream_quickly(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    conn, response = open_get(srv.port, srv.token, client.session_id)
    try:
        read_event(response)
        started = time.monotonic()
        srv.close()
        assert time.monotonic() - started < 1.0
        # The body ends (terminal chunk or connection closed), never hangs.
        while read_event(response, 3) is not None:
            pass
        assert stream_threads(srv.port) == 0
    finally:
        conn.close()
        client.close()


def test_a_client_leaving_ends_its_stream_thread(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    head = (f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nAuthorization: Bearer {srv.token}\r\n"
            f"Accept: text/event-stream\r\nMcp-Session-Id: {client.session_id}\r\n\r\n")
    sock.sendall(head.encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK")
    before = stream_threads(srv.port)
    assert before >= 1
    sock.close()
    # Noticed within a keep-alive period or two (sse_keepalive=0.2 here).
    assert wait_for(lambda: stream_threads(srv.port) == before - 1, 3)
    state = srv._httpd.sessions.get(client.session_id)
    assert not state.standalone.attached
    client.close()


def test_streams_never_block_other_requests(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    streams = [open_get(srv.port, srv.token, session(srv).session_id) for _ in range(4)]
    try:
        started = time.monotonic()
        assert client.call_tool("add", {"a": 1})["result"]["content"][0]["text"] == "3"
        assert time.monotonic() - started < 1
    finally:
        for conn, _ in streams:
            conn.close()
        client.close()


def test_a_broadcast_does_not_wait_for_a_slow_reader() -> None:
    # A short history: the queue of a reader that is never read overflows however fast
    # its thread drains into the kernel's socket buffers (which hold all 400 messages).
    srv = loopback.start(0, registry=make_registry(), settings=loopback.Settings(sse_history=8))
    client = session(srv)
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    head = (f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nAuthorization: Bearer {srv.token}\r\n"
            f"Accept: text/event-stream\r\nMcp-Session-Id: {client.session_id}\r\n\r\n")
    sock.sendall(head.encode())
    try:
        sock.recv(100)
        started = time.monotonic()
        for _ in range(400):  # more than the history and the socket buffers hold; never read
            srv._httpd.broadcast("notifications/message", {"level": "info", "data": "x" * 2000})
        assert time.monotonic() - started < 1
        # The reader fell too far behind: its response ends, to be resumed by Last-Event-ID.
        state = srv._httpd.sessions.get(client.session_id)
        assert wait_for(lambda: not state.standalone.attached, 3)
    finally:
        sock.close()
        client.close()
        srv.close()


def test_a_stream_closed_on_purpose_ends_with_the_terminal_chunk_and_connection_close(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "polled", "arguments": {}}})
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        sock.sendall((f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nAuthorization: Bearer {srv.token}\r\n"
                      f"Content-Type: application/json\r\nAccept: text/event-stream, application/json\r\n"
                      f"Mcp-Session-Id: {client.session_id}\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
        raw = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            raw += data
        head, _, rest = raw.partition(b"\r\n\r\n")
        assert b"\r\nConnection: close" in head and b"\r\nTransfer-Encoding: chunked" in head
        assert rest.endswith(b"\r\n0\r\n\r\n")  # a complete chunked body, then the server's FIN
    finally:
        sock.close()
        client.close()


def test_a_subscribed_resource_update_reaches_the_subscriber_get_stream(srv: loopback.LoopbackServer) -> None:
    subscriber, other = session(srv), session(srv)
    assert subscriber.rpc("resources/subscribe", {"uri": "file:///watched.txt"})["result"] == {}
    c1, r1 = open_get(srv.port, srv.token, subscriber.session_id)
    c2, r2 = open_get(srv.port, srv.token, other.session_id, timeout=1)
    try:
        read_event(r1)
        read_event(r2)
        srv.registry.resources.notify_updated("file:///watched.txt")
        assert next_message(r1)[1] == {"jsonrpc": "2.0", "method": "notifications/resources/updated",
                                       "params": {"uri": "file:///watched.txt"}}
        assert read_event(r2, 1) == {"comments": ["keep-alive"]}  # not subscribed: only keep-alives
    finally:
        for c in (c1, c2, subscriber, other):
            c.close()
