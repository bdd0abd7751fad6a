"""Server-to-client requests from a tool (elicitation, sampling, roots): sent on the call's
SSE stream (or the GET stream), answered by the client on another POST, routed by id to
the waiting tool thread; timeouts, missing capabilities, error answers, cancellation and
close() while a tool waits. Real servers, real HTTP: the test plays the client."""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any, Iterator

import pytest

import loopback
from conftest import Client, make_registry, wait_for
from sse_client import next_message, open_get, read_event, start_post

CAPABILITIES = {"elicitation": {}, "sampling": {}, "roots": {"listChanged": True}}
SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "default": "Ada"},
                                           "colour": {"type": "string", "enum": ["red", "green"]}},
          "required": ["name"]}


@pytest.fixture
def srv() -> Iterator[loopback.LoopbackServer]:
    registry = make_registry()
    started = threading.Event()

    @registry.tool
    def ask(ctx: loopback.Context) -> dict:
        """Elicits a name from the user."""
        return ctx.elicit("Your name?", SCHEMA)

    @registry.tool
    def think(ctx: loopback.Context) -> dict:
        """Samples the client's model."""
        return ctx.sample("What is 2+2?", max_tokens=20, system_prompt="Be brief", temperature=0.1)

    @registry.tool
    def roots(ctx: loopback.Context) -> list:
        """Lists the client's roots."""
        return ctx.list_roots()

    @registry.tool
    def careful(ctx: loopback.Context, method: str = "elicit", timeout: float = 5.0) -> str:
        """Reports the ClientRequestError it gets instead of a result."""
        started.set()
        try:
            if method == "elicit":
                ctx.elicit("Anything?", {"type": "object", "properties": {}}, timeout=timeout)
            else:
                ctx.request(method, {}, timeout=timeout)
        except loopback.ClientRequestError as exc:
            return f"ClientRequestError({exc.code}): {exc}"
        return "answered"

    server = loopback.start(0, registry=registry, settings=loopback.Settings(client_request_timeout=5.0))
    server.started = started  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.close()


def session(server: loopback.LoopbackServer, capabilities: dict[str, Any] = CAPABILITIES) -> Client:
    client = Client(server.port, server.token)
    client.initialize(capabilities=capabilities)
    return client


def call(name: str, arguments: dict[str, Any] | None = None, id: int = 50) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments or {}}}


def answer(client: Client, request_id: Any, result: Any = None, error: Any = None) -> int:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
    if error is not None:
        message["error"] = error
    else:
        message["result"] = result
    status, _, body = client.post(message)
    assert body == b""
    return status


def result_text(message: dict[str, Any]) -> str:
    return message["result"]["content"][0]["text"]


def test_an_elicitation_answer_reaches_the_waiting_tool(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    conn, response = start_post(srv.port, srv.token, client.session_id, call("ask"))
    try:
        assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
        _, request = next_message(response)
        assert request["method"] == "elicitation/create"
        assert request["params"] == {"message": "Your name?", "requestedSchema": SCHEMA}  # passed through as given
        assert isinstance(request["id"], int)
        assert answer(client, request["id"], {"action": "accept", "content": {"name": "Grace"}}) == 202
        _, final = next_message(response)
        assert final["id"] == 50
        assert final["result"]["structuredContent"] == {"action": "accept", "content": {"name": "Grace"}}
        assert read_event(response) is None
    finally:
        conn.close()
        client.close()


def test_sampling_and_roots_round_trips(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    try:
        conn, response = start_post(srv.port, srv.token, client.session_id, call("think"))
        _, request = next_message(response)
        assert request["method"] == "sampling/createMessage"
        assert request["params"] == {
            "messages": [{"role": "user", "content": {"type": "text", "text": "What is 2+2?"}}],
            "maxTokens": 20, "systemPrompt": "Be brief", "temperature": 0.1}
        sampled = {"role": "assistant", "content": {"type": "text", "text": "4"}, "model": "m", "stopReason": "endTurn"}
        answer(client, request["id"], sampled)
        assert next_message(response)[1]["result"]["structuredContent"] == sampled
        conn.close()

        conn, response = start_post(srv.port, srv.token, client.session_id, call("roots", id=51))
        _, request = next_message(response)
        assert request["method"] == "roots/list" and "params" not in request
        answer(client, request["id"], {"roots": [{"uri": "file:///work", "name": "work"}]})
        final = next_message(response)[1]
        assert json.loads(result_text(final)) == [{"uri": "file:///work", "name": "work"}]
        conn.close()
    finally:
        client.close()


def test_a_client_error_answer_becomes_a_client_request_error(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    conn, response = start_post(srv.port, srv.token, client.session_id, call("careful"))
    try:
        _, request = next_message(response)
        answer(client, request["id"], error={"code": -1, "message": "User rejected"})
        assert result_text(next_message(response)[1]) == "ClientRequestError(-1): the client refused elicitation/create: User rejected"
    finally:
        conn.close()
        client.close()


def test_no_answer_in_time_is_a_timeout(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    conn, response = start_post(srv.port, srv.token, client.session_id, call("careful", {"timeout": 0.3}))
    try:
        next_message(response)
        started = time.monotonic()
        final = next_message(response)[1]
        assert result_text(final) == "ClientRequestError(None): the client did not answer elicitation/create within 0.3 s"
        assert time.monotonic() - started < 3
        assert srv._httpd.sessions.get(client.session_id).state.pending == {}
        # A late answer finds no waiter and is simply accepted.
        assert answer(client, 1, {"action": "cancel"}) == 202
    finally:
        conn.close()
        client.close()


def test_a_missing_capability_fails_at_once_without_sending(srv: loopback.LoopbackServer) -> None:
    client = session(srv, capabilities={"sampling": {}})
    try:
        status, head, body = client.post(call("careful"))
        assert status == 200 and head["content-type"] == "application/json"  # nothing was streamed
        assert result_text(json.loads(body)) == (
            "ClientRequestError(None): the client did not declare the 'elicitation' capability: cannot send elicitation/create")
        answer_ = client.call_tool("ask")["result"]
        assert answer_["isError"] is True and "elicitation" in answer_["content"][0]["text"]
    finally:
        client.close()


def test_json_only_calls_use_the_get_stream_or_fail_clearly(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    json_only = client.headers(Accept="application/json")
    try:
        status, _, body = client.post(call("careful"), headers=json_only)
        assert result_text(json.loads(body)) == (
            "ClientRequestError(None): cannot send elicitation/create to the client: no stream to it is open")
        conn, stream = open_get(srv.port, srv.token, client.session_id)
        read_event(stream)  # priming
        results: list[bytes] = []
        caller = Client(srv.port, srv.token)
        caller.session_id = client.session_id
        worker = threading.Thread(target=lambda: results.append(caller.post(call("ask"), headers=json_only)[2]))
        worker.start()
        try:
            _, request = next_message(stream)
            assert request["method"] == "elicitation/create"
            answer(client, request["id"], {"action": "decline"})
            worker.join(10)
            assert json.loads(results[0])["result"]["structuredContent"] == {"action": "decline"}
        finally:
            worker.join(10)
            caller.close()
            conn.close()
    finally:
        client.close()


def test_answers_are_routed_per_session(srv: loopback.LoopbackServer) -> None:
    a, b = session(srv), session(srv)
    conn, response = start_post(srv.port, srv.token, a.session_id, call("careful", {"timeout": 1.0}))
    try:
        _, request = next_message(response)
        assert answer(b, request["id"], {"action": "accept", "content": {}}) == 202  # wrong session: ignored
        assert "did not answer" in result_text(next_message(response)[1])
    finally:
        conn.close()
        a.close()
        b.close()


def test_cancelling_a_call_is_per_session(srv: loopback.LoopbackServer) -> None:
    registry = srv.registry
    seen: list[bool] = []
    release = threading.Event()

    @registry.tool
    def wait_for_cancel(ctx: loopback.Context) -> str:
        """Waits until cancelled (bounded)."""
        deadline = time.monotonic() + 5
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(ctx.cancelled)
        release.set()
        return "stopped"

    a, b = session(srv), session(srv)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        # Sent, not awaited: a call that streams nothing answers only when it ends.
        conn.request("POST", "/mcp", json.dumps(call("wait_for_cancel", id=77)).encode(), a.headers())
        assert wait_for(lambda: 77 in srv._httpd.sessions.get(a.session_id).state.in_flight, 5)
        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 77}}
        assert b.post(cancel)[0] == 202
        time.sleep(0.2)
        assert seen == []  # another session cannot cancel it
        assert a.post(cancel)[0] == 202
        assert release.wait(5) and seen == [True]
        conn.getresponse().read()
    finally:
        conn.close()
        a.close()
        b.close()


def test_close_while_a_tool_waits_for_the_client_is_quick(srv: loopback.LoopbackServer) -> None:
    client = session(srv)
    conn, response = start_post(srv.port, srv.token, client.session_id, call("careful", {"timeout": 30}))
    try:
        next_message(response)
        started = time.monotonic()
        srv.close()
        assert time.monotonic() - started < 2
    finally:
        conn.close()
        client.close()


def test_a_tool_thread_with_a_timeout_can_ask_too() -> None:
    registry = make_registry()

    @registry.tool
    def ask(ctx: loopback.Context) -> dict:
        """Elicits from a per-call thread."""
        return ctx.elicit("?", {"type": "object", "properties": {}})

    with loopback.start(0, registry=registry, settings=loopback.Settings(tool_timeout=5)) as srv:
        client = session(srv)
        conn, response = start_post(srv.port, srv.token, client.session_id, call("ask"))
        try:
            _, request = next_message(response)
            answer(client, request["id"], {"action": "accept", "content": {}})
            assert next_message(response)[1]["result"]["structuredContent"] == {"action": "accept", "content": {}}
        finally:
            conn.close()
            client.close()
        assert wait_for(lambda: True)
