"""MCP dispatch without sockets: ``handle_payload(payload, RequestContext(...))`` called directly."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest

import loopback
from loopback import protocol
from loopback.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, JsonRpcError
from loopback.protocol import RequestContext, handle_payload
from loopback.settings import Settings
from loopback.tools import ToolRegistry

from conftest import make_registry

VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]


def ctx(registry: Optional[ToolRegistry] = None, header: Optional[str] = "2025-11-25", **settings: Any) -> RequestContext:
    return RequestContext(
        registry=registry if registry is not None else make_registry(),
        settings=Settings(**settings),
        protocol_version_header=header,
        server_version=loopback.__version__,
    )


def request(method: str, params: Optional[dict[str, Any]] = None, id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def init_params(version: Any = "2025-11-25") -> dict[str, Any]:
    return {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}


def result_of(answer: Any) -> Any:
    assert answer["jsonrpc"] == "2.0" and "error" not in answer, answer
    return answer["result"]


def error_of(answer: Any) -> dict[str, Any]:
    assert answer["jsonrpc"] == "2.0" and "result" not in answer, answer
    return answer["error"]


def call(context: RequestContext, name: str, arguments: Any = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    return handle_payload(request("tools/call", params), context)


def text_of(result: dict[str, Any]) -> str:
    assert [block["type"] for block in result["content"]] == ["text"]
    return result["content"][0]["text"]


# -- initialize ------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_initialize_echoes_a_supported_version(version: str) -> None:
    # initialize chooses the version, so the request header does not bind it
    for header in (None, version, "1999-01-01"):
        result = result_of(handle_payload(request("initialize", init_params(version)), ctx(header=header)))
        assert result["protocolVersion"] == version


@pytest.mark.parametrize("version", ["2099-01-01", "1.0", ""])
def test_initialize_offers_the_latest_for_an_unknown_version(version: str) -> None:
    result = result_of(handle_payload(request("initialize", init_params(version)), ctx()))
    assert result["protocolVersion"] == "2025-11-25" == protocol.LATEST_VERSION


def test_initialize_describes_the_server() -> None:
    result = result_of(handle_payload(request("initialize", init_params()), ctx()))
    assert result["capabilities"] == {"tools": {"listChanged": True}, "resources": {"subscribe": True, "listChanged": True},
                                      "prompts": {"listChanged": True}, "completions": {}, "logging": {}}
    assert result["serverInfo"] == {"name": "loopback", "version": loopback.__version__}
    assert "instructions" not in result
    named = result_of(handle_payload(request("initialize", init_params()), ctx(server_name="gateway", instructions="Be nice.")))
    assert named["serverInfo"]["name"] == "gateway"
    assert named["instructions"] == "Be nice."


@pytest.mark.parametrize("params", [
    None,
    {},
    {"capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    {"protocolVersion": 20250618, "capabilities": {}, "clientInfo": {}},
    {"protocolVersion": "2025-06-18", "clientInfo": {"name": "t", "version": "1"}},
    {"protocolVersion": "2025-06-18", "capabilities": [], "clientInfo": {}},
    {"protocolVersion": "2025-06-18", "capabilities": {}},
], ids=["missing", "empty", "no-version", "version-not-string", "no-capabilities", "capabilities-list", "no-client-info"])
def test_initialize_with_bad_params_is_invalid_params(params: Any) -> None:
    answer = handle_payload(request("initialize", params, id="init"), ctx())
    assert answer["id"] == "init"
    assert error_of(answer)["code"] == INVALID_PARAMS


# -- ping, unknown methods, notifications, responses --------------------------------------


def test_ping() -> None:
    assert handle_payload(request("ping", id="p"), ctx()) == {"jsonrpc": "2.0", "id": "p", "result": {}}


def test_unknown_method() -> None:
    answer = handle_payload(request("no/such/method", id=4), ctx())
    assert answer["id"] == 4
    error = error_of(answer)
    assert error["code"] == METHOD_NOT_FOUND
    assert "no/such/method" in error["message"]


@pytest.mark.parametrize("message", [
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
    {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "fail"}},  # a notification runs nothing
    {"jsonrpc": "2.0", "method": "no/such/notification"},
])
def test_notifications_get_no_answer(message: dict[str, Any]) -> None:
    assert handle_payload(message, ctx()) is None


@pytest.mark.parametrize("message", [
    {"jsonrpc": "2.0", "id": 1, "result": {}},
    {"jsonrpc": "2.0", "id": "x", "error": {"code": -1, "message": "no"}},
    {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse"}},
])
def test_client_responses_get_no_answer(message: dict[str, Any]) -> None:
    assert handle_payload(message, ctx()) is None


@pytest.mark.parametrize("message", [
    [],
    "ping",
    {"jsonrpc": "1.0", "id": 1, "method": "ping"},
    {"jsonrpc": "2.0", "id": 1.5, "method": "ping"},
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]},
])
def test_a_lone_invalid_message_is_an_invalid_request(message: Any) -> None:
    with pytest.raises(JsonRpcError) as info:
        handle_payload(message, ctx(header="2025-03-26"))
    assert info.value.code == INVALID_REQUEST


def test_an_unsupported_version_header_is_refused() -> None:
    with pytest.raises(JsonRpcError) as info:
        handle_payload(request("ping"), ctx(header="1999-01-01"))
    assert info.value.code == INVALID_REQUEST
    assert info.value.data == {"supported": list(protocol.SUPPORTED_VERSIONS)}
    for version in VERSIONS:
        assert result_of(handle_payload(request("ping"), ctx(header=version))) == {}
        assert result_of(handle_payload(request("ping"), ctx(header=f" {version} "))) == {}


# -- batches ---------------------------------------------------------------------------


BATCH = [request("ping", id=1), {"jsonrpc": "2.0", "method": "notifications/progress"}, request("nope", id=2)]


@pytest.mark.parametrize("header", ["2025-03-26", None])
def test_batches_are_answered_under_2025_03_26(header: Optional[str]) -> None:
    answers = handle_payload(BATCH, ctx(header=header))
    assert [a["id"] for a in answers] == [1, 2]
    assert answers[0]["result"] == {}
    assert answers[1]["error"]["code"] == METHOD_NOT_FOUND


@pytest.mark.parametrize("header", ["2024-11-05", "2025-06-18", "2025-11-25"])
def test_batches_are_refused_by_other_versions(header: str) -> None:
    with pytest.raises(JsonRpcError) as info:
        handle_payload(BATCH, ctx(header=header))
    assert info.value.code == INVALID_REQUEST


def test_batch_rules() -> None:
    context = ctx(header="2025-03-26")
    for bad in ([], [request("initialize", init_params()), request("ping")]):
        with pytest.raises(JsonRpcError) as info:
            handle_payload(bad, context)
        assert info.value.code == INVALID_REQUEST
    assert handle_payload([{"jsonrpc": "2.0", "method": "a"}, {"jsonrpc": "2.0", "id": 1, "result": {}}], context) is None
    # invalid members are answered one by one, with their id when it is usable
    answers = handle_payload([1, {"jsonrpc": "2.0", "id": 5, "method": 3}, request("ping", id=6)], context)
    assert [(a["id"], a.get("error", {}).get("code")) for a in answers] == [(None, INVALID_REQUEST), (5, INVALID_REQUEST), (6, None)]


# -- tools/list --------------------------------------------------------------------------


def five_tools() -> ToolRegistry:
    registry = ToolRegistry()
    for i in range(5):
        registry.add(lambda: None, name=f"tool{i}", description=f"Tool number {i}")
    return registry


def test_tools_list_pages_chain_through_every_tool_once() -> None:
    context = ctx(five_tools(), page_size=2)
    seen: list[str] = []
    cursor = None
    pages = 0
    for _ in range(10):  # bounded
        params = {} if cursor is None else {"cursor": cursor}
        result = result_of(handle_payload(request("tools/list", params), context))
        pages += 1
        assert len(result["tools"]) <= 2
        seen += [tool["name"] for tool in result["tools"]]
        cursor = result.get("nextCursor")
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert pages == 3
    assert seen == [f"tool{i}" for i in range(5)]


def test_tools_list_definitions() -> None:
    result = result_of(handle_payload(request("tools/list"), ctx()))
    assert "nextCursor" not in result
    tools = {tool["name"]: tool for tool in result["tools"]}
    assert list(tools) == ["add", "echo", "fail"]
    assert tools["add"] == {
        "name": "add",
        "description": "Add two integers.",
        "inputSchema": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "default": 2}},
            "required": ["a"],
            "additionalProperties": False,
        },
        "outputSchema": {"type": "object", "properties": {"result": {"type": "integer"}}, "required": ["result"]},
    }
    json.dumps(result)  # everything is JSON


@pytest.mark.parametrize("cursor", ["not-a-cursor", "", 3, ["x"], "b2E=", "éé", "=="])
def test_tools_list_bad_cursor(cursor: Any) -> None:
    answer = handle_payload(request("tools/list", {"cursor": cursor}), ctx(five_tools(), page_size=2))
    assert error_of(answer)["code"] == INVALID_PARAMS


def test_internal_errors_are_answered_without_details() -> None:
    class BrokenRegistry(ToolRegistry):
        def tools(self) -> list:  # a bug of the server, not of a tool
            raise RuntimeError("secret internals")

    answer = handle_payload(request("tools/list", id=3), ctx(BrokenRegistry()))
    assert answer["id"] == 3
    error = error_of(answer)
    assert error["code"] == INTERNAL_ERROR
    assert "secret" not in json.dumps(answer)


# -- tools/call ------------------------------------------------------------------------------


def test_tools_call() -> None:
    result = result_of(call(ctx(), "add", {"a": 2, "b": 3}))
    assert result == {"content": [{"type": "text", "text": "5"}], "isError": False, "structuredContent": {"result": 5}}
    assert text_of(result_of(call(ctx(), "add", {"a": 2}))) == "4"  # default used


@pytest.mark.parametrize("params", [
    {"name": "nope"},
    {"name": "nope", "arguments": {}},
    {},
    {"name": 3},
    {"name": "add", "arguments": [1, 2]},
    {"name": "add", "arguments": "a=1"},
    {"name": "add", "arguments": 5},
], ids=["unknown", "unknown-with-arguments", "no-name", "name-not-string", "arguments-list",
        "arguments-string", "arguments-number"])
def test_tools_call_bad_params(params: dict[str, Any]) -> None:
    answer = handle_payload(request("tools/call", params, id=11), ctx())
    assert answer["id"] == 11
    assert error_of(answer)["code"] == INVALID_PARAMS


def test_tools_call_without_arguments() -> None:
    result = result_of(call(ctx(), "fail"))
    assert result["isError"] is True
    assert text_of(result) == "Tool 'fail' failed: RuntimeError: boom"


def test_a_tool_that_raises_is_an_error_result() -> None:
    result = result_of(call(ctx(), "fail", {"message": "the disk is on fire"}))
    assert result["isError"] is True
    text = text_of(result)
    assert "the disk is on fire" in text
    assert "Traceback" not in text and ".py" not in text


def test_one_broken_tool_does_not_break_the_others() -> None:
    registry = make_registry()

    @registry.tool
    def explode() -> str:
        raise KeyError("gone")

    @registry.tool
    def unsendable():
        return object()

    @registry.tool
    def exits() -> None:
        raise ValueError

    context = ctx(registry)
    listed = result_of(handle_payload(request("tools/list"), context))
    assert [t["name"] for t in listed["tools"]] == ["add", "echo", "fail", "explode", "unsendable", "exits"]
    for name in ("explode", "unsendable", "exits"):
        result = result_of(call(context, name, {}))
        assert result["isError"] is True, name
        assert name in text_of(result) or "JSON" in text_of(result)
    assert "KeyError" in text_of(result_of(call(context, "explode", {})))
    assert text_of(result_of(call(context, "echo", {"text": "still here"}))) == "still here"
    assert text_of(result_of(call(context, "add", {"a": 1, "b": 1}))) == "2"


@pytest.mark.parametrize("value, content, structured", [
    ("hello", [{"type": "text", "text": "hello"}], None),
    ("", [{"type": "text", "text": ""}], None),
    (None, [], None),
    (42, [{"type": "text", "text": "42"}], None),
    (1.5, [{"type": "text", "text": "1.5"}], None),
    (True, [{"type": "text", "text": "true"}], None),
    ({"a": 1, "b": ["x"]}, [{"type": "text", "text": '{"a": 1, "b": ["x"]}'}], {"a": 1, "b": ["x"]}),
    ([1, "two", None], [{"type": "text", "text": '[1, "two", null]'}], None),
    ("héllo ✓", [{"type": "text", "text": "héllo ✓"}], None),
])
def test_result_conversions(value: Any, content: list, structured: Any) -> None:
    registry = ToolRegistry()
    registry.add(lambda: value, name="give")
    result = result_of(call(ctx(registry), "give", {}))
    assert result["isError"] is False
    assert result["content"] == content
    if structured is None:
        assert "structuredContent" not in result
    else:
        assert result["structuredContent"] == structured
        assert json.loads(result["content"][0]["text"]) == structured


@pytest.mark.parametrize("value", [float("nan"), {"x": float("inf")}, {object()}, {("a", "b"): 1}])
def test_results_json_cannot_hold_are_error_results(value: Any) -> None:
    registry = ToolRegistry()
    registry.add(lambda: value, name="give")
    result = result_of(call(ctx(registry), "give", {}))
    assert result["isError"] is True
    assert "JSON" in text_of(result)


# -- argument validation ------------------------------------------------------------------


def scaled(x: float, times: int = 1, label: Optional[str] = None) -> str:
    """Scale x."""
    return f"{type(x).__name__}:{x * times}:{label}"


@pytest.mark.parametrize("arguments, fragment", [
    ({}, "missing required field(s): x"),
    ({"times": 2}, "missing required field(s): x"),
    ({"x": "1.0"}, "arguments.x must be of type number, got a string"),
    ({"x": True}, "arguments.x must be of type number, got a boolean"),
    ({"x": 1.0, "times": 1.5}, "arguments.times must be of type integer, got a number"),
    ({"x": 1.0, "times": False}, "arguments.times must be of type integer, got a boolean"),
    ({"x": 1.0, "label": 3}, "arguments.label must be a string or null, got an integer"),
    ({"x": 1.0, "colour": "red"}, "unexpected field 'colour'"),
])
def test_argument_errors_are_tool_results_naming_the_field(arguments: dict[str, Any], fragment: str) -> None:
    registry = ToolRegistry()
    registry.add(scaled)
    answer = call(ctx(registry), "scaled", arguments)
    result = result_of(answer)  # a tool result, not a JSON-RPC error: the model can fix it
    assert result["isError"] is True
    text = text_of(result)
    assert text.startswith("Invalid arguments for tool 'scaled': ")
    assert fragment in text, text


def test_an_int_is_accepted_for_a_float_parameter() -> None:
    registry = ToolRegistry()
    registry.add(scaled)
    assert text_of(result_of(call(ctx(registry), "scaled", {"x": 2, "times": 3}))) == "float:6.0:None"
    assert text_of(result_of(call(ctx(registry), "scaled", {"x": 2.5, "label": None}))) == "float:2.5:None"
    assert text_of(result_of(call(ctx(registry), "scaled", {"x": 2.5, "label": "L"}))) == "float:2.5:L"


def test_the_context_is_plain_data() -> None:
    context = RequestContext(registry=make_registry())
    assert context.protocol_version_header is None
    # no header: treated as 2025-03-26, where a batch is allowed
    assert handle_payload([request("ping")], context) == [{"jsonrpc": "2.0", "id": 1, "result": {}}]
    with pytest.raises(AttributeError):  # slots: a misspelt field cannot be set by accident
        context.setting = Settings()  # type: ignore[attr-defined]
