"""Resource and prompt functions get a ``Context`` as tools do, honour ``tool_timeout``, and
may return ``loopback.InputRequired`` to any client: a 2026-07-28 client gets the
input-required result, a handshake-era one is asked on the request's stream and the
function runs again with the answers. Real servers, real HTTP; the test plays the client."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any, Iterator

import pytest

import loopback
from conftest import Client, make_registry
from sse_client import next_message, start_post

ASK = {"method": "elicitation/create", "params": {
    "message": "Which colour?", "requestedSchema": {"type": "object", "properties": {"colour": {"type": "string"}}}}}


@pytest.fixture
def srv() -> Iterator[loopback.LoopbackServer]:
    registry = make_registry()
    resources, prompts = registry.resources, registry.prompts

    @resources.resource("memo://whoami")
    def whoami(ctx: loopback.Context) -> str:
        return json.dumps({"scope": ctx.scope, "request_id": ctx.request_id, "name": ctx.tool_name,
                           "agent": ctx.headers.get("x-agent")})

    @resources.resource("memo://notes/{day}")
    def notes(day: str, ctx: loopback.Context) -> str:
        return f"{day} read by request {ctx.request_id}"

    @resources.resource("memo://slow")
    def slow(ctx: loopback.Context) -> str:
        while not ctx.cancelled:  # stops once the deadline passed
            time.sleep(0.01)
        return "too late"

    @resources.resource("memo://colour")
    def colour(ctx: loopback.Context) -> Any:
        answer = ctx.input_responses.get("colour")
        if answer is None:
            return loopback.InputRequired({"colour": ASK})
        return f"colour {answer['content']['colour']}"

    @prompts.prompt()
    def greet(name: str, ctx: loopback.Context) -> str:
        return f"Hello {name}, from request {ctx.request_id} ({ctx.tool_name})"

    @prompts.prompt()
    def dawdle(ctx: loopback.Context) -> str:
        while not ctx.cancelled:
            time.sleep(0.01)
        return "too late"

    @prompts.prompt()
    def paint(ctx: loopback.Context) -> Any:
        answer = ctx.input_responses.get("colour")
        if answer is None:
            return loopback.InputRequired({"colour": ASK})
        return f"Paint it {answer['content']['colour']}"

    server = loopback.start(0, registry=registry, settings=loopback.Settings(tool_timeout=0.3))
    try:
        yield server
    finally:
        server.close()


def test_resource_functions_get_the_request_context(srv: loopback.LoopbackServer) -> None:
    client = Client(srv.port, srv.token)
    try:
        client.open_session()
        status, _, payload = client.post({"jsonrpc": "2.0", "id": 41, "method": "resources/read",
                                          "params": {"uri": "memo://whoami"}}, client.headers(**{"X-Agent": "t"}))
        seen = json.loads(json.loads(payload)["result"]["contents"][0]["text"])
        assert seen == {"scope": "owner", "request_id": 41, "name": "whoami", "agent": "t"}
        text = client.rpc("resources/read", {"uri": "memo://notes/monday"})["result"]["contents"][0]["text"]
        assert text.startswith("monday read by request ")
        listed = client.rpc("resources/templates/list")["result"]["resourceTemplates"]
        assert [t["uriTemplate"] for t in listed] == ["memo://notes/{day}"]  # ctx is no template variable
    finally:
        client.close()


def test_prompt_functions_get_the_request_context(srv: loopback.LoopbackServer) -> None:
    client = Client(srv.port, srv.token)
    try:
        answer = client.rpc("prompts/get", {"name": "greet", "arguments": {"name": "Ada"}})
        text = answer["result"]["messages"][0]["content"]["text"]
        assert text == f"Hello Ada, from request {answer['id']} (greet)"
        listed = {p["name"]: p for p in client.rpc("prompts/list")["result"]["prompts"]}
        assert [a["name"] for a in listed["greet"]["arguments"]] == ["name"]
    finally:
        client.close()


def test_tool_timeout_applies_to_resources_and_prompts(srv: loopback.LoopbackServer) -> None:
    client = Client(srv.port, srv.token)
    try:
        started = time.monotonic()
        error = client.rpc("resources/read", {"uri": "memo://slow"})["error"]
        assert error["code"] == -32603 and "timed out after 0.3 seconds" in error["message"]
        error = client.rpc("prompts/get", {"name": "dawdle"})["error"]
        assert error["code"] == -32603 and "timed out after 0.3 seconds" in error["message"]
        assert time.monotonic() - started < 3
    finally:
        client.close()


@pytest.mark.parametrize("method,params,expected", [
    ("resources/read", {"uri": "memo://colour"}, "colour teal"),
    ("prompts/get", {"name": "paint"}, "Paint it teal"),
])
def test_input_required_is_asked_on_the_stream_for_the_handshake_era(
        srv: loopback.LoopbackServer, method: str, params: dict[str, Any], expected: str) -> None:
    client = Client(srv.port, srv.token)
    try:
        client.initialize(capabilities={"elicitation": {}})
        conn, response = start_post(srv.port, srv.token, client.session_id,
                                    {"jsonrpc": "2.0", "id": 5, "method": method, "params": params})
        try:
            _, request = next_message(response)
            assert request["method"] == "elicitation/create" and request["params"] == ASK["params"]
            status, _, _ = client.post({"jsonrpc": "2.0", "id": request["id"],
                                        "result": {"action": "accept", "content": {"colour": "teal"}}})
            assert status == 202
            _, answer = next_message(response)
        finally:
            conn.close()
        assert answer["id"] == 5
        assert expected in json.dumps(answer["result"])
        # without the elicitation capability the client cannot be asked: an error, not a hang
        plain = Client(srv.port, srv.token)
        try:
            refused = plain.rpc(method, params)["error"]
            assert refused["code"] == -32603 and "elicitation" in refused["message"]
        finally:
            plain.close()
    finally:
        client.close()


def test_input_required_comes_back_as_a_result_in_2026(srv: loopback.LoopbackServer) -> None:
    for method, params in (("resources/read", {"uri": "memo://colour"}), ("prompts/get", {"name": "paint"})):
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}}}
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            conn.request("POST", "/mcp", json.dumps(body).encode(), {
                "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method,
                "Mcp-Name": params.get("uri", params.get("name")), "Authorization": f"Bearer {srv.token}"})
            result = json.loads(conn.getresponse().read())["result"]
        finally:
            conn.close()
        assert result["resultType"] == "input_required"
        assert result["inputRequests"] == {"colour": ASK}
