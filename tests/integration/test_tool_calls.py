"""Tool calls end to end over real HTTP: result types, validation, context, scoped tokens,
the before-call hook, per-call timeouts and cancellation."""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import threading
from typing import Any, Iterator, Literal, Optional, TypedDict

import pytest

import loopback
from loopback import Audio, CallBlocked, Context, EmbeddedResource, Image, ResourceLink, Text
from loopback.tools import ToolRegistry

from conftest import Client, wait_for

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Box(TypedDict):
    label: str
    corners: list[Point]


def build_registry() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool
    def text() -> str:
        return "plain"

    @registry.tool
    def number() -> int:
        return 42

    @registry.tool
    def nothing() -> None:
        return None

    @registry.tool
    def mapping() -> dict[str, int]:
        return {"a": 1}

    @registry.tool
    def items() -> list[str]:
        return ["x", "y"]

    @registry.tool
    def point() -> Point:
        return Point(1, 2.5)

    @registry.tool
    def raw_bytes():  # unannotated: bytes become an embedded blob
        return b"\x00\x01"

    @registry.tool
    def picture() -> Image:
        return Image(PNG, "image/png")

    @registry.tool
    def sound() -> Audio:
        return Audio(b"RIFF", "audio/wav")

    @registry.tool
    def embedded() -> EmbeddedResource:
        return EmbeddedResource("file:///notes.txt", text="hello", mime_type="text/plain")

    @registry.tool
    def link() -> ResourceLink:
        return ResourceLink("file:///big.csv", "big.csv", mime_type="text/csv")

    @registry.tool
    def mixed() -> list[Any]:
        return [Text("caption"), Image(PNG, "image/png"), "more text"]

    @registry.tool
    def liar() -> int:
        return "not an int"  # type: ignore[return-value]

    @registry.tool
    def typed(color: Color, where: Point, box: Optional[Box] = None, mode: Literal["fast", "slow"] = "fast") -> str:
        """Describe the arguments as Python saw them.

        Args:
            color: which colour.
            where: a point.
        """
        assert isinstance(color, Color) and isinstance(where, Point)
        corners = [type(c).__name__ for c in box["corners"]] if box else []
        return f"{color.name} {where.x},{where.y} {corners} {mode}"

    @registry.tool
    def whoami(ctx: Context, note: str = "") -> dict[str, Any]:
        return {"scope": ctx.scope, "session": ctx.headers.get("x-session-key"),
                "authorization": "authorization" in ctx.headers, "tool": ctx.tool_name, "note": note}

    @registry.tool(owner_only=True, annotations={"destructiveHint": True})
    def wipe() -> str:
        return "wiped"

    return registry


@pytest.fixture
def tool_server() -> Iterator[loopback.LoopbackServer]:
    server = loopback.start(0, registry=build_registry())
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def owner(tool_server: loopback.LoopbackServer) -> Iterator[Client]:
    client = Client(tool_server.port, tool_server.token)
    yield client
    client.close()


def result_of(client: Client, name: str, arguments: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    answer = client.call_tool(name, arguments)
    assert "result" in answer, answer
    return answer["result"]


# -- result types --------------------------------------------------------------

def test_text_result(owner: Client) -> None:
    assert result_of(owner, "text") == {"content": [{"type": "text", "text": "plain"}], "isError": False,
                                        "structuredContent": {"result": "plain"}}


def test_number_result_is_wrapped_for_structured_content(owner: Client) -> None:
    result = result_of(owner, "number")
    assert result["structuredContent"] == {"result": 42}
    assert result["content"] == [{"type": "text", "text": "42"}]


def test_none_result(owner: Client) -> None:
    result = result_of(owner, "nothing")
    assert result["content"] == [] and result["isError"] is False


def test_dict_result_is_structured_and_text(owner: Client) -> None:
    result = result_of(owner, "mapping")
    assert result["structuredContent"] == {"a": 1}
    assert json.loads(result["content"][0]["text"]) == {"a": 1}


def test_list_result(owner: Client) -> None:
    result = result_of(owner, "items")
    assert result["structuredContent"] == {"result": ["x", "y"]}
    assert json.loads(result["content"][0]["text"]) == ["x", "y"]


def test_dataclass_result(owner: Client) -> None:
    result = result_of(owner, "point")
    assert result["structuredContent"] == {"x": 1, "y": 2.5}


def test_bytes_result_is_a_blob(owner: Client) -> None:
    (block,) = result_of(owner, "raw_bytes")["content"]
    assert block["type"] == "resource"
    assert base64.b64decode(block["resource"]["blob"]) == b"\x00\x01"


def test_image_audio_embedded_and_link_results(owner: Client) -> None:
    (image,) = result_of(owner, "picture")["content"]
    assert image == {"type": "image", "data": base64.b64encode(PNG).decode(), "mimeType": "image/png"}
    (audio,) = result_of(owner, "sound")["content"]
    assert audio["type"] == "audio" and audio["mimeType"] == "audio/wav"
    (resource,) = result_of(owner, "embedded")["content"]
    assert resource == {"type": "resource", "resource": {"uri": "file:///notes.txt", "mimeType": "text/plain", "text": "hello"}}
    (link,) = result_of(owner, "link")["content"]
    assert link["type"] == "resource_link" and link["uri"] == "file:///big.csv" and link["name"] == "big.csv"


def test_mixed_content_list(owner: Client) -> None:
    content = result_of(owner, "mixed")["content"]
    assert [block["type"] for block in content] == ["text", "image", "text"]


def test_result_not_matching_return_type_is_a_tool_error(owner: Client) -> None:
    result = result_of(owner, "liar")
    assert result["isError"] is True
    assert "declared return type" in result["content"][0]["text"]


def test_tools_list_carries_output_schema_and_annotations(owner: Client) -> None:
    tools = {t["name"]: t for t in owner.rpc("tools/list")["result"]["tools"]}
    assert tools["number"]["outputSchema"] == {"type": "object", "properties": {"result": {"type": "integer"}},
                                               "required": ["result"]}
    assert "outputSchema" not in tools["picture"]
    assert tools["wipe"]["annotations"] == {"destructiveHint": True}
    assert tools["typed"]["inputSchema"]["properties"]["color"]["description"] == "which colour."
    assert "ctx" not in tools["whoami"]["inputSchema"]["properties"]


# -- arguments -------------------------------------------------------------------

def test_rich_arguments_arrive_as_python_values(owner: Client) -> None:
    box = {"label": "b", "corners": [{"x": 0, "y": 0}, {"x": 1, "y": 1}]}
    result = result_of(owner, "typed", {"color": "red", "where": {"x": 1, "y": 2}, "box": box, "mode": "slow"})
    assert result["content"][0]["text"] == "RED 1.0,2.0 ['Point', 'Point'] slow"


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"where": {"x": 1, "y": 2}}, "missing required field(s): color"),
        ({"color": "blue", "where": {"x": 1, "y": 2}}, "arguments.color must be one of"),
        ({"color": "red", "where": {"x": "1", "y": 2}}, "arguments.where.x must be of type number"),
        ({"color": "red", "where": {"x": 1, "y": 2}, "extra": 1}, "unexpected field 'extra'"),
        ({"color": "red", "where": {"x": 1, "y": 2}, "mode": "medium"}, "arguments.mode must be one of"),
    ],
)
def test_invalid_arguments_tell_the_model_what_to_fix(owner: Client, arguments: dict[str, Any], fragment: str) -> None:
    result = result_of(owner, "typed", arguments)
    assert result["isError"] is True
    assert fragment in result["content"][0]["text"], result["content"][0]["text"]


# -- context and scoped tokens ---------------------------------------------------

def test_context_sees_headers_but_never_the_token(tool_server: loopback.LoopbackServer, owner: Client) -> None:
    status, _, payload = owner.post(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}},
        owner.headers(**{"X-Session-Key": "run-7"}),
    )
    assert status == 200
    assert json.loads(payload)["result"]["structuredContent"] == {
        "scope": "owner", "session": "run-7", "authorization": False, "tool": "whoami", "note": ""}


def test_non_owner_token_cannot_list_or_call_owner_tools(tool_server: loopback.LoopbackServer) -> None:
    guest = tool_server.issue_token(scope="guest")
    client = Client(tool_server.port, guest.token)
    try:
        names = {t["name"] for t in client.rpc("tools/list")["result"]["tools"]}
        assert "wipe" not in names and "text" in names
        answer = client.call_tool("wipe")
        assert answer["error"]["message"] == "Unknown tool: wipe"  # same as a tool that does not exist
        assert result_of(client, "whoami")["structuredContent"]["scope"] == "guest"
    finally:
        client.close()
    assert result_of(Client(tool_server.port, tool_server.token), "wipe")["content"][0]["text"] == "wiped"


def test_bound_headers_override_what_the_request_claims(tool_server: loopback.LoopbackServer) -> None:
    grant = tool_server.issue_token(scope="agent", headers={"X-Session-Key": "bound"}, tools=["whoami"])
    client = Client(tool_server.port, grant.token)
    try:
        status, _, payload = client.post(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}},
            client.headers(**{"X-Session-Key": "someone-else"}),
        )
        assert json.loads(payload)["result"]["structuredContent"]["session"] == "bound"
        assert [t["name"] for t in client.rpc("tools/list")["result"]["tools"]] == ["whoami"]
        assert client.call_tool("text")["error"]["message"] == "Unknown tool: text"
    finally:
        client.close()


def test_revoked_and_expired_tokens_are_refused(tool_server: loopback.LoopbackServer) -> None:
    grant = tool_server.issue_token(scope="guest")
    short = tool_server.issue_token(scope="guest", ttl=0.05)
    assert {g.token for g in tool_server.runtime().grants} >= {grant.token, tool_server.token}
    assert tool_server.revoke_token(grant.token) is True
    for token in (grant.token, short.token):
        wait_for(lambda: short.expired(), 2)
        client = Client(tool_server.port, token)
        status, _, _ = client.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
        client.close()
        assert status == 401
    assert short.token not in tool_server.runtime().tokens


# -- the before-call hook ----------------------------------------------------------

def test_hook_blocks_with_a_reason(tool_server: loopback.LoopbackServer, owner: Client) -> None:
    seen: list[tuple[str, dict[str, Any], str]] = []

    def hook(name: str, arguments: dict[str, Any], ctx: Context) -> None:
        seen.append((name, arguments, ctx.scope))
        if name == "wipe":
            raise CallBlocked("wiping needs a human")

    tool_server.registry.before_call(hook)
    result = result_of(owner, "wipe")
    assert result == {"content": [{"type": "text", "text": "Tool 'wipe' was blocked: wiping needs a human"}], "isError": True}
    assert result_of(owner, "whoami", {"note": "n"})["isError"] is False
    assert seen == [("wipe", {}, "owner"), ("whoami", {"note": "n"}, "owner")]


def test_hook_rewrites_arguments_which_are_checked_again(tool_server: loopback.LoopbackServer, owner: Client) -> None:
    tool_server.registry.before_call(lambda name, arguments, ctx: {**arguments, "note": "rewritten"})
    assert result_of(owner, "whoami", {"note": "original"})["structuredContent"]["note"] == "rewritten"
    tool_server.registry.before_call(lambda name, arguments, ctx: {"note": 5})
    result = result_of(owner, "whoami")
    assert result["isError"] is True and "invalid arguments" in result["content"][0]["text"]


def test_a_failing_hook_blocks_the_call(tool_server: loopback.LoopbackServer, owner: Client) -> None:
    def hook(name: str, arguments: dict[str, Any], ctx: Context) -> None:
        raise RuntimeError("secret detail")

    tool_server.registry.before_call(hook)
    result = result_of(owner, "text")
    assert result["isError"] is True and "secret detail" not in result["content"][0]["text"]
    tool_server.registry.before_call(None)
    assert result_of(owner, "text")["isError"] is False


# -- registration while serving ----------------------------------------------------

def test_tools_registered_after_start_are_listed_and_callable(tool_server: loopback.LoopbackServer, owner: Client) -> None:
    changes: list[int] = []
    unsubscribe = tool_server.registry.on_change(lambda: changes.append(1))

    @tool_server.registry.tool
    def late(n: int) -> int:
        return n * 2

    assert "late" in {t["name"] for t in owner.rpc("tools/list")["result"]["tools"]}
    assert result_of(owner, "late", {"n": 4})["structuredContent"] == {"result": 8}
    tool_server.registry.remove("late")
    unsubscribe()
    tool_server.registry.remove("text")
    assert changes == [1, 1]


# -- timeouts and cancellation -----------------------------------------------------

def test_per_call_timeout_turns_a_stuck_tool_into_an_error() -> None:
    registry = ToolRegistry()
    release = threading.Event()
    contexts: list[Context] = []

    @registry.tool
    def stuck(ctx: Context) -> str:
        contexts.append(ctx)
        release.wait(10)
        return "late"

    @registry.tool
    def quick() -> str:
        return "quick"

    with loopback.start(0, registry=registry, settings=loopback.Settings(tool_timeout=0.2)) as server:
        client = Client(server.port, server.token)
        try:
            result = result_of(client, "stuck")
            assert result == {"content": [{"type": "text", "text": "Tool 'stuck' timed out after 0.2 seconds"}], "isError": True}
            assert contexts[0].cancelled is True
            assert result_of(client, "quick")["content"][0]["text"] == "quick"  # the connection still serves
        finally:
            release.set()
            client.close()


def test_a_tool_raising_timeout_error_is_not_reported_as_a_timeout() -> None:
    registry = ToolRegistry()

    @registry.tool
    def flaky() -> str:
        raise TimeoutError("upstream slow")

    with loopback.start(0, registry=registry, settings=loopback.Settings(tool_timeout=5)) as server:
        client = Client(server.port, server.token)
        text = result_of(client, "flaky")["content"][0]["text"]
        client.close()
    assert text == "Tool 'flaky' failed: TimeoutError: upstream slow"


def test_notifications_cancelled_sets_the_flag_of_the_running_call() -> None:
    registry = ToolRegistry()
    started, finished = threading.Event(), threading.Event()
    flags: list[bool] = []

    @registry.tool
    def long(ctx: Context) -> str:
        started.set()
        wait_for(lambda: ctx.cancelled, 10)
        flags.append(ctx.cancelled)
        finished.set()
        return "stopped"

    with loopback.start(0, registry=registry) as server:
        caller, canceller = Client(server.port, server.token), Client(server.port, server.token)
        canceller.session_id = caller.open_session()  # cancellation is per session: the caller's
        try:
            thread = threading.Thread(target=lambda: caller.post(
                {"jsonrpc": "2.0", "id": "call-1", "method": "tools/call", "params": {"name": "long", "arguments": {}}}))
            thread.start()
            assert started.wait(10)
            other = server.issue_token(scope="owner")
            intruder = Client(server.port, other.token)  # another principal cannot cancel it
            assert intruder.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                  "params": {"requestId": "call-1"}})[0] == 202
            intruder.close()
            assert not finished.wait(0.2)
            status, _, _ = canceller.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                           "params": {"requestId": "call-1", "reason": "user"}})
            assert status == 202
            assert finished.wait(10) and flags == [True]
            thread.join(10)
        finally:
            caller.close()
            canceller.close()


def test_logging_set_level_is_accepted_and_validated(owner: Client) -> None:
    assert owner.rpc("logging/setLevel", {"level": "warning"})["result"] == {}
    assert owner.rpc("logging/setLevel", {"level": "loud"})["error"]["code"] == -32602
    capabilities = owner.initialize()["capabilities"]
    assert capabilities["logging"] == {}


def test_a_tool_declared_to_return_a_set_answers_with_a_list() -> None:
    """The result converter and the output schema agree: ``-> set[int]`` advertises an
    array and answers one (two converters once disagreed, and every call failed)."""
    registry = loopback.ToolRegistry()

    @registry.tool
    def primes() -> "set[int]":
        """The primes below ten."""
        return {7, 2, 5, 3}

    server = loopback.start(0, registry=registry)
    client = Client(server.port, server.token)
    try:
        listed = client.rpc("tools/list")["result"]["tools"][0]
        assert listed["outputSchema"]["properties"]["result"]["type"] == "array"
        result = client.call_tool("primes")["result"]
        assert result["isError"] is False, result
        assert result["structuredContent"] == {"result": [2, 3, 5, 7]}
    finally:
        client.close()
        server.close()
