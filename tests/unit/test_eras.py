"""The 2026-07-28 revision beside the handshake era, the pure rules: ``eras`` and
``protocol.handle_payload`` called directly (routing headers, the ``_meta`` envelope,
per-request state, client capabilities, ``Mcp-Param-*`` headers). The same rules end to
end over real HTTP, and the official SDK's ``mode="auto"``, are in
``tests/integration/test_eras_http.py``.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Optional

import pytest

import loopback
from loopback import eras, http11, protocol
from loopback.context import ClientState, Context, RequestState, require_client_capability
from loopback.jsonrpc import MissingClientCapability
from loopback.jsonrpc import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, JsonRpcError
from loopback.protocol import RequestContext, handle_payload
from loopback.eras import (
    HEADER_MISMATCH,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    UNSUPPORTED_PROTOCOL_VERSION,

)
from loopback.settings import Settings
from loopback.tools import ToolRegistry

from conftest import make_registry

MODERN = "2026-07-28"
SERVER_INFO = "io.modelcontextprotocol/serverInfo"


def meta(version: Any = MODERN, *, drop: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    envelope.update(extra)
    for key in drop:
        envelope.pop(f"io.modelcontextprotocol/{key}")
    return envelope


def body(method: str, params: Optional[dict[str, Any]] = None, *, envelope: Optional[dict[str, Any]] = None,
         id: Any = 7) -> dict[str, Any]:
    params = dict(params or {})
    params["_meta"] = meta() if envelope is None else envelope
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params}


def headers_for(message: dict[str, Any], **override: Optional[str]) -> dict[str, str]:
    """The routing headers a conforming client sends for ``message`` (None in override: left out)."""
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": message["method"]}
    key = eras.NAME_BEARING_METHODS.get(message["method"])
    if key is not None and key in message.get("params", {}):
        headers["Mcp-Name"] = message["params"][key]
    for name, value in override.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return headers


def ctx_for(headers: dict[str, str], registry: Optional[ToolRegistry] = None, *,
            session: Optional[ClientState] = None, notify: Any = None, **settings: Any) -> RequestContext:
    return RequestContext(
        registry=registry if registry is not None else make_registry(),
        settings=Settings(**settings),
        protocol_version_header=next((v for k, v in headers.items() if k.lower() == "mcp-protocol-version"), None),
        headers=headers,
        server_version=loopback.__version__,
        session=session if session is not None else ClientState(),
        notify=notify,
    )


def answer(message: Any, registry: Optional[ToolRegistry] = None, **override: Optional[str]) -> Any:
    return handle_payload(message, ctx_for(headers_for(message, **override), registry))


def refusal(message: Any, headers: Optional[dict[str, str]] = None, **override: Optional[str]) -> JsonRpcError:
    with pytest.raises(JsonRpcError) as info:
        handle_payload(message, ctx_for(headers if headers is not None else headers_for(message, **override)))
    return info.value


# -- which era a request belongs to -----------------------------------------------------


@pytest.mark.parametrize(("payload", "header", "modern"), [
    (body("tools/list"), MODERN, True),
    ({"jsonrpc": "2.0", "id": 1, "method": "ping"}, MODERN, True),  # refused below, but in this era
    ({"jsonrpc": "2.0", "id": 1, "method": "initialize"}, MODERN, True),
    (body("tools/list"), None, True),  # _meta names a version: -32020 for the missing header
    (body("tools/list"), "2099-01-01", True),  # -32020 or -32022, not the handshake era's -32600
    (body("tools/list"), "2025-11-25", False),  # a handshake-era header wins over stray _meta
    ({"jsonrpc": "2.0", "id": 1, "method": "ping"}, None, False),
    ({"jsonrpc": "2.0", "id": 1, "method": "ping"}, "2099-01-01", False),
    ({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}, None, False),
    ([body("tools/list")], MODERN, True),
    ([body("tools/list")], "2025-03-26", False),
])
def test_the_era_is_chosen_by_how_the_client_opens(payload: Any, header: Optional[str], modern: bool) -> None:
    assert eras.is_modern(payload, header) is modern


def test_get_and_delete_are_refused_only_in_the_modern_era() -> None:
    assert eras.refuses_http_method("GET", MODERN)
    assert eras.refuses_http_method("DELETE", f" {MODERN} ")
    assert not eras.refuses_http_method("POST", MODERN)
    assert not eras.refuses_http_method("GET", "2025-11-25")
    assert not eras.refuses_http_method("GET", None)


@pytest.mark.parametrize(("code", "status"), [
    (None, 200), (-32603, 200), (-32000, 200), (METHOD_NOT_FOUND, 404), (INVALID_PARAMS, 400),
    (INVALID_REQUEST, 400), (-32700, 400), (HEADER_MISMATCH, 400), (MISSING_REQUIRED_CLIENT_CAPABILITY, 400),
    (UNSUPPORTED_PROTOCOL_VERSION, 400),
])
def test_http_status_of_each_error(code: Optional[int], status: int) -> None:
    assert eras.http_status(code) == status


# -- the per-request _meta envelope -----------------------------------------------------


def test_a_request_without_meta_is_invalid_params() -> None:
    message = {"jsonrpc": "2.0", "id": 101, "method": "server/discover", "params": {}}
    assert refusal(message).code == INVALID_PARAMS
    assert refusal({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).code == INVALID_PARAMS
    message = body("tools/list")
    message["params"]["_meta"] = "2026-07-28"
    assert refusal(message).code == INVALID_PARAMS


@pytest.mark.parametrize("missing", ["protocolVersion", "clientCapabilities"])
def test_a_required_envelope_field_missing_is_invalid_params(missing: str) -> None:
    error = refusal(body("server/discover", envelope=meta(drop=(missing,))))
    assert error.code == INVALID_PARAMS
    assert missing in error.message


def test_client_info_is_optional() -> None:
    result = answer(body("server/discover", envelope=meta(drop=("clientInfo",))))["result"]
    assert MODERN in result["supportedVersions"]


@pytest.mark.parametrize("envelope", [
    meta(**{"io.modelcontextprotocol/clientCapabilities": ["sampling"]}),
    meta(**{"io.modelcontextprotocol/clientInfo": "me"}),
    meta(**{"io.modelcontextprotocol/logLevel": "loud"}),
])
def test_malformed_envelope_fields_are_invalid_params(envelope: dict[str, Any]) -> None:
    assert refusal(body("tools/list", envelope=envelope)).code == INVALID_PARAMS


def test_a_version_that_is_not_a_string_is_invalid_params() -> None:
    message = body("tools/list", envelope=meta(version=20260728))
    assert refusal(message, headers={"Mcp-Method": "tools/list"}).code == HEADER_MISMATCH  # no header: mismatch first
    with pytest.raises(JsonRpcError) as info:
        eras.check_version(20260728)
    assert info.value.code == INVALID_PARAMS


# -- versions ---------------------------------------------------------------------------


def test_an_unsupported_version_gets_the_supported_list_and_the_request_echoed() -> None:
    message = body("server/discover", envelope=meta(version="v999.0.0"), id=301)
    error = refusal(message, MCP_Protocol_Version="v999.0.0")
    assert error.code == UNSUPPORTED_PROTOCOL_VERSION
    assert error.data == {"supported": eras.supported_versions(), "requested": "v999.0.0"}
    discovered = answer(body("server/discover"))["result"]["supportedVersions"]
    assert set(error.data["supported"]) <= set(discovered)


def test_supported_versions_name_both_eras_newest_first() -> None:
    assert eras.supported_versions() == [MODERN, *protocol.SUPPORTED_VERSIONS]


def test_a_header_that_disagrees_with_meta_is_a_header_mismatch_not_an_unsupported_version() -> None:
    message = body("server/discover", envelope=meta(version="v999.0.0"))
    assert refusal(message).code == HEADER_MISMATCH  # header says 2026-07-28


# -- Mcp-Method, Mcp-Name and MCP-Protocol-Version against the body ----------------------


@pytest.mark.parametrize(("message", "override"), [
    (body("tools/list"), {"MCP_Protocol_Version": None}),
    (body("tools/list"), {"Mcp_Method": None}),
    (body("tools/list"), {"Mcp_Method": "prompts/list"}),
    (body("tools/list"), {"Mcp_Method": "Tools/List"}),  # values are case-sensitive
    (body("tools/call", {"name": "add", "arguments": {"a": 1}}), {"Mcp_Name": None}),
    (body("tools/call", {"name": "add", "arguments": {"a": 1}}), {"Mcp_Name": "echo"}),
    (body("tools/call", {"arguments": {"a": 1}}), {"Mcp_Name": "add"}),  # names what the body does not
    (body("prompts/get", {"name": "greet"}), {"Mcp_Name": "other"}),
    (body("resources/read", {"uri": "file:///a.txt"}), {"Mcp_Name": "file:///b.txt"}),
    (body("tools/call", {"name": "add"}), {"Mcp_Name": "=?base64?not base64?="}),
    (body("tools/call", {"name": "add"}), {"Mcp_Name": "=?base64?YWRk?=x"}),  # not the sentinel: compared verbatim
])
def test_header_disagreements_are_header_mismatch(message: dict[str, Any], override: dict[str, Optional[str]]) -> None:
    assert refusal(message, **override).code == HEADER_MISMATCH


def test_mismatch_errors_name_the_header_and_both_values() -> None:
    error = refusal(body("tools/call", {"name": "bar"}), Mcp_Name="foo")
    assert error.code == HEADER_MISMATCH and "'foo'" in error.message and "'bar'" in error.message
    assert error.data is None


def test_header_names_are_case_insensitive_and_values_may_be_base64() -> None:
    message = body("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
    headers = {"mcp-protocol-version": MODERN, "MCP-METHOD": "tools/call", "mcp-name": "echo"}
    assert handle_payload(message, ctx_for(headers))["result"]["content"][0]["text"] == "hi"
    name = "wörd count"
    encoded = "=?base64?" + base64.b64encode(name.encode()).decode() + "?="
    assert eras.decode_header_value(encoded) == name
    assert eras.check_headers(
        {"MCP-Protocol-Version": MODERN, "Mcp-Method": "prompts/get", "Mcp-Name": encoded},
        {"method": "prompts/get", "params": {"name": name}}, MODERN) is None


def test_a_header_value_with_control_characters_never_matches() -> None:
    assert eras.decode_header_value("add\x7f") is None
    assert eras.decode_header_value("=?base64?YWRk?=") == "add"
    assert eras.decode_header_value("=?base64?YWR=?=") is None  # non-canonical: "ad" is YWQ=
    assert eras.decode_header_value("=?base64?YWRkZQ=?=") is None  # bad padding
    assert eras.decode_header_value("=?base64?/w==?=") is None  # not UTF-8


def test_a_routing_header_sent_twice_is_a_header_mismatch() -> None:
    message = body("tools/list")
    fields = [("MCP-Protocol-Version", MODERN), ("Mcp-Method", "tools/list"), ("mcp-method", "tools/list")]
    error = refusal(message, headers=http11.Headers(fields))  # type: ignore[arg-type]
    assert error.code == HEADER_MISMATCH and "more than once" in error.message


def test_mcp_name_is_ignored_on_methods_that_name_nothing() -> None:
    assert "tools" in answer(body("tools/list"), Mcp_Name="whatever")["result"]


# -- methods ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(eras.REMOVED_METHODS) + ["unknown/method"])
def test_removed_and_unknown_methods_are_method_not_found(method: str) -> None:
    error = refusal(body(method, id=500))
    assert error.code == METHOD_NOT_FOUND and method in error.message
    assert eras.http_status(error.code) == 404


def test_discover_advertises_versions_capabilities_identity_and_cache_hints() -> None:
    registry = make_registry()
    message = body("server/discover", id="discover-1")
    result = handle_payload(message, ctx_for(headers_for(message), registry, instructions="Use add."))["result"]
    assert result["supportedVersions"] == eras.supported_versions()
    assert result["resultType"] == "complete"
    assert result["ttlMs"] == 0 and result["cacheScope"] == "private"
    assert result["_meta"][SERVER_INFO] == {"name": "loopback", "version": loopback.__version__}
    assert "serverInfo" not in result
    assert result["instructions"] == "Use add."
    capabilities = result["capabilities"]
    assert "tools" in capabilities
    # delivered on subscriptions/listen in this era
    assert capabilities["tools"] == {"listChanged": True}
    assert capabilities["resources"] == {"subscribe": True, "listChanged": True}
    for name, method in (("prompts", "prompts/list"), ("resources", "resources/list"),
                         ("completions", "completion/complete")):
        assert (name in capabilities) == (method in protocol.METHODS)


def test_discover_omits_instructions_when_there_are_none() -> None:
    assert "instructions" not in answer(body("server/discover"))["result"]


def test_advertised_tools_answer() -> None:
    capabilities = answer(body("server/discover"))["result"]["capabilities"]
    listed = answer(body("tools/list"))["result"]
    assert "tools" in capabilities and {tool["name"] for tool in listed["tools"]} == {"add", "echo", "fail"}


@pytest.mark.parametrize("method", sorted(eras.CACHEABLE_METHODS))
def test_cacheable_results_carry_cache_hints(method: str) -> None:
    result = eras.decorate(method, {"x": 1}, ctx_for({}))
    assert result == {"x": 1, "resultType": "complete", "ttlMs": 0, "cacheScope": "private",
                      "_meta": {SERVER_INFO: {"name": "loopback", "version": loopback.__version__}}}


def test_a_result_keeps_its_own_meta_and_result_type() -> None:
    result = eras.decorate("tools/call", {"resultType": "input_required", "_meta": {"k": 1}}, ctx_for({}))
    assert result["resultType"] == "input_required" and "ttlMs" not in result and "cacheScope" not in result
    assert result["_meta"]["k"] == 1 and SERVER_INFO in result["_meta"]


def test_tool_calls_and_lists_answer_with_result_type() -> None:
    call = answer(body("tools/call", {"name": "add", "arguments": {"a": 40}}))
    assert call["id"] == 7
    result = call["result"]
    assert result["resultType"] == "complete" and result["structuredContent"] == {"result": 42}
    assert "ttlMs" not in result
    assert answer(body("tools/list"))["result"]["cacheScope"] == "private"


def test_handler_errors_keep_the_request_id_and_resource_not_found_is_invalid_params() -> None:
    error = refusal(body("tools/call", {"name": "nope"}))
    assert error.code == INVALID_PARAMS and "nope" in error.message
    translated = eras.translate_error(JsonRpcError(-32002, "Resource not found", {"uri": "x://y"}))
    assert (translated.code, translated.message, translated.data) == (INVALID_PARAMS, "Resource not found", {"uri": "x://y"})


def test_notifications_are_accepted_and_dropped() -> None:
    message = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1, "_meta": meta()}}
    assert handle_payload(message, ctx_for({"MCP-Protocol-Version": MODERN})) is None


@pytest.mark.parametrize(("payload", "code"), [
    ([body("tools/list")], INVALID_REQUEST),
    ([], INVALID_REQUEST),
    ({"jsonrpc": "2.0", "id": 1, "result": {}}, INVALID_REQUEST),
    ({"jsonrpc": "1.0", "id": 1, "method": "tools/list"}, INVALID_REQUEST),
])
def test_bodies_that_are_not_one_request_are_invalid(payload: Any, code: int) -> None:
    assert refusal(payload, headers={"MCP-Protocol-Version": MODERN}).code == code


# -- stateless ----------------------------------------------------------------------------


def _logging_registry(seen: list[Context]) -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool
    def chatty(ctx: loopback.Context) -> str:
        """Logs once."""
        seen.append(ctx)
        ctx.log("info", "hello")
        return "done"

    return registry


def test_log_messages_only_when_this_request_asks_for_them() -> None:
    seen: list[Context] = []
    sent: list[dict[str, Any]] = []
    registry = _logging_registry(seen)
    shared = ClientState()
    shared.log_level = "debug"  # a handshake-era session's level must not leak into the stateless era
    message = body("tools/call", {"name": "chatty"})
    handle_payload(message, ctx_for(headers_for(message), registry, session=shared, notify=sent.append))
    assert sent == []
    asking = body("tools/call", {"name": "chatty"}, envelope=meta(**{"io.modelcontextprotocol/logLevel": "info"}))
    handle_payload(asking, ctx_for(headers_for(asking), registry, session=shared, notify=sent.append))
    assert [m["method"] for m in sent] == ["notifications/message"] and sent[0]["params"]["data"] == "hello"
    picky = body("tools/call", {"name": "chatty"}, envelope=meta(**{"io.modelcontextprotocol/logLevel": "error"}))
    handle_payload(picky, ctx_for(headers_for(picky), registry, session=shared, notify=sent.append))
    assert len(sent) == 1
    assert shared.log_level == "debug" and not shared.in_flight
    assert all(c.session_id is None for c in seen)


def test_nothing_is_remembered_between_requests() -> None:
    seen: list[Context] = []
    registry = _logging_registry(seen)
    for _ in range(2):
        message = body("tools/call", {"name": "chatty"})
        handle_payload(message, ctx_for(headers_for(message), registry))
    sessions = [c._session for c in seen]
    assert isinstance(sessions[0], RequestState) and sessions[0] is not sessions[1]


def test_a_request_session_from_the_transport_is_used_so_closing_the_stream_can_cancel() -> None:
    session = RequestState()
    observed: list[bool] = []
    registry = ToolRegistry()

    @registry.tool
    def long(ctx: loopback.Context) -> str:
        """Sees itself in flight, is cancelled as a transport would cancel it."""
        assert session.cancel("call-1")  # what the transport does when the client goes away
        observed.append(ctx.cancelled)
        return "late"

    message = body("tools/call", {"name": "long"}, id="call-1",
                   envelope=meta(**{"io.modelcontextprotocol/clientCapabilities": {"sampling": {}}}))
    handle_payload(message, ctx_for(headers_for(message), registry, session=session))
    assert observed == [True]
    assert session.client_capabilities == {"sampling": {}} and session.protocol_version == MODERN
    assert not session.in_flight


# -- the handshake era is untouched ------------------------------------------------------


def test_handshake_era_requests_answer_as_before() -> None:
    legacy = {"MCP-Protocol-Version": "2025-11-25"}
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert handle_payload(ping, ctx_for(legacy)) == {"jsonrpc": "2.0", "id": 1, "result": {}}
    listed = handle_payload({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, ctx_for(legacy))["result"]
    assert "resultType" not in listed and "ttlMs" not in listed and "_meta" not in listed
    with pytest.raises(JsonRpcError) as info:
        handle_payload(ping, ctx_for({"MCP-Protocol-Version": "2099-01-01"}))
    assert info.value.code == INVALID_REQUEST


# -- end to end over HTTP -----------------------------------------------------------------


# -- the official Python SDK --------------------------------------------------------------


def test_a_missing_client_capability_names_it_as_an_object() -> None:
    declared = RequestState()
    declared.client_capabilities = {"elicitation": {}}
    require_client_capability(declared, "elicitation")
    with pytest.raises(MissingClientCapability) as info:
        require_client_capability(declared, "sampling")
    assert info.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY
    assert info.value.data == {"requiredCapabilities": {"sampling": {}}}
    assert eras.http_status(info.value.code) == 400
    require_client_capability(ClientState(), "sampling")  # handshake era: initialize decides


def test_a_missing_capability_raised_by_a_handler_is_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    def needs_sampling(params: Any, context: RequestContext, request_id: Any) -> dict[str, Any]:
        require_client_capability(context.session, "sampling")
        return {"ok": True}

    monkeypatch.setitem(protocol.METHODS, "test/needs-sampling", needs_sampling)
    message = body("test/needs-sampling", id=401)
    with pytest.raises(JsonRpcError) as info:
        handle_payload(message, ctx_for(headers_for(message)))
    assert info.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY
    declared = body("test/needs-sampling", envelope=meta(**{"io.modelcontextprotocol/clientCapabilities": {"sampling": {}}}))
    assert handle_payload(declared, ctx_for(headers_for(declared)))["result"]["ok"] is True


# -- input-required results (SEP-2322) ---------------------------------------------------

ELICIT = {"method": "elicitation/create", "params": {
    "message": "What is your name?",
    "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}
CAN_ELICIT = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}


@pytest.mark.parametrize(("requests", "state", "error"), [
    ({}, None, ValueError),
    ({"k": {"method": "tools/call", "params": {}}}, None, ValueError),
    ({"k": {"method": "roots/list", "params": []}}, None, ValueError),
    ({"": ELICIT}, None, ValueError),
    ({"k": "elicit"}, None, ValueError),
    ({"k": ELICIT}, {"round": 1}, TypeError),
])
def test_input_required_refuses_what_no_client_can_answer(requests: Any, state: Any, error: type) -> None:
    with pytest.raises(error):
        loopback.InputRequired(requests, state)


def test_input_required_result_shape() -> None:
    value = loopback.InputRequired({"client_roots": {"method": "roots/list"}}, state="s")
    assert value.to_result() == {"resultType": "input_required",
                                 "inputRequests": {"client_roots": {"method": "roots/list", "params": {}}},
                                 "requestState": "s"}
    assert loopback.InputRequired({}, state="only state").to_result()["requestState"] == "only state"


@pytest.fixture
def asking_tool(monkeypatch: pytest.MonkeyPatch) -> list[RequestState]:
    """``tools/call`` answered as a tool returning InputRequired would be (tools.py turns the
    value into its result); records the session each round saw."""
    seen: list[RequestState] = []

    def call(params: Any, context: RequestContext, request_id: Any) -> Any:
        session = context.session
        assert isinstance(session, RequestState)
        seen.append(session)
        answer = session.input_responses.get("user_name")
        if answer is None:
            return loopback.InputRequired({"user_name": ELICIT}, state=f"round-{len(seen)}")
        return {"content": [{"type": "text", "text": f"Hello, {answer['content']['name']}!"}], "isError": False}

    monkeypatch.setitem(protocol.METHODS, "tools/call", call)
    return seen


def _call(params: dict[str, Any], envelope: Optional[dict[str, Any]] = None, name: str = "ask") -> Any:
    message = body("tools/call", {"name": name, **params}, envelope=envelope or meta(**CAN_ELICIT))
    return handle_payload(message, ctx_for(headers_for(message)))


def test_a_round_trip_through_an_input_required_result(asking_tool: list[RequestState]) -> None:
    first = _call({"arguments": {}})["result"]
    assert first["resultType"] == "input_required" and first["inputRequests"] == {"user_name": ELICIT}
    assert first["requestState"] != "round-1" and "round-1" not in first["requestState"]  # sealed, opaque
    assert SERVER_INFO in first["_meta"] and "ttlMs" not in first and "content" not in first
    retry = {"arguments": {}, "inputResponses": {"user_name": {"action": "accept", "content": {"name": "Ada"}},
                                                 "extra": {"ignored": True}},
             "requestState": first["requestState"]}
    done = _call(retry)["result"]
    assert done["resultType"] == "complete" and done["content"][0]["text"] == "Hello, Ada!"
    assert asking_tool[1].request_state == "round-1"
    assert asking_tool[0].input_responses == {} and asking_tool[0].request_state is None


def test_wrong_answers_are_asked_again(asking_tool: list[RequestState]) -> None:
    again = _call({"inputResponses": {"wrong_key": {"action": "accept", "content": {}}}})["result"]
    assert again["resultType"] == "input_required"


@pytest.mark.parametrize("tamper", [
    lambda state: state + "-TAMPERED",
    lambda state: "x" + state,
    lambda state: "not a state",
    lambda state: 42,
])
def test_a_tampered_request_state_is_refused(asking_tool: list[RequestState], tamper: Any) -> None:
    state = _call({})["result"]["requestState"]
    with pytest.raises(JsonRpcError) as info:
        _call({"inputResponses": {"user_name": {"action": "accept", "content": {"name": "x"}}},
               "requestState": tamper(state)})
    assert info.value.code == INVALID_PARAMS and "requestState" in info.value.message
    assert len(asking_tool) == 1  # the tool never ran with it


def test_a_request_state_is_good_only_for_the_request_it_came_from(asking_tool: list[RequestState]) -> None:
    state = _call({}, name="ask")["result"]["requestState"]
    with pytest.raises(JsonRpcError) as info:
        _call({"requestState": state}, name="other")
    assert info.value.code == INVALID_PARAMS


@pytest.mark.parametrize("responses", [{"user_name": 12345}, None, [], "yes"])
def test_malformed_input_responses_are_invalid_params(asking_tool: list[RequestState], responses: Any) -> None:
    with pytest.raises(JsonRpcError) as info:
        _call({"inputResponses": responses})
    assert info.value.code == INVALID_PARAMS and not asking_tool


def test_input_requests_need_the_capability_declared_in_this_request(asking_tool: list[RequestState]) -> None:
    with pytest.raises(JsonRpcError) as info:
        _call({}, envelope=meta(**{"io.modelcontextprotocol/clientCapabilities": {"sampling": {}}}))
    assert info.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY
    assert info.value.data == {"requiredCapabilities": {"elicitation": {}}}


def test_only_calls_reads_and_prompts_may_ask_for_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(protocol.METHODS, "tools/list",
                        lambda params, context, request_id: loopback.InputRequired({"k": ELICIT}))
    answer_ = handle_payload(body("tools/list", envelope=meta(**CAN_ELICIT)),
                             ctx_for(headers_for(body("tools/list"))))
    assert answer_["error"]["code"] == -32603 and "result" not in answer_


def test_input_responses_on_other_methods_are_ignored() -> None:
    listed = answer(body("tools/list", {"inputResponses": 5, "requestState": "junk"}))
    assert "tools" in listed["result"]


# -- Mcp-Param-{Name} headers (x-mcp-header) ---------------------------------------------

SQL_SCHEMA = {
    "type": "object",
    "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "limit": {"type": "integer", "x-mcp-header": "Limit"},
        "dry": {"type": "boolean", "x-mcp-header": "Dry"},
        "target": {"type": "object", "properties": {"db": {"type": "string", "x-mcp-header": "Db"}}},
        "tags": {"type": "array", "items": {"type": "string", "x-mcp-header": "Tag"}},  # not reachable: ignored
        "query": {"type": "string"},
    },
    "required": ["query"],
}


def _sql_registry() -> ToolRegistry:
    registry = ToolRegistry()

    def execute_sql(**arguments: Any) -> str:
        return json.dumps(arguments, sort_keys=True)

    registry.add(execute_sql, name="execute_sql", description="Run SQL.", input_schema=SQL_SCHEMA)
    return registry


def _sql_call(arguments: dict[str, Any], **param_headers: str) -> Any:
    message = body("tools/call", {"name": "execute_sql", "arguments": arguments})
    headers = headers_for(message)
    headers.update({f"Mcp-Param-{k}": v for k, v in param_headers.items()})
    return handle_payload(message, ctx_for(headers, _sql_registry()))


@pytest.mark.parametrize(("arguments", "headers"), [
    ({"query": "q"}, {}),
    ({"query": "q", "region": "us-west1"}, {"Region": "us-west1"}),
    ({"query": "q", "region": "Hello, 世界"}, {"Region": "=?base64?SGVsbG8sIOS4lueVjA==?="}),
    ({"query": "q", "region": "SGVsbG8="}, {"Region": "SGVsbG8="}),  # no sentinel: a literal
    ({"query": "q", "region": "=?base64?SGVsbG8="}, {"Region": "=?base64?SGVsbG8="}),  # no suffix: a literal
    ({"query": "q", "limit": 42}, {"Limit": "42"}),
    ({"query": "q", "limit": 42}, {"Limit": "42.0"}),  # integers compare as numbers
    ({"query": "q", "dry": False}, {"Dry": "false"}),
    ({"query": "q", "target": {"db": "main"}}, {"Db": "main"}),
    ({"query": "q", "tags": ["a"]}, {}),
])
def test_matching_param_headers_are_accepted(arguments: dict[str, Any], headers: dict[str, str]) -> None:
    assert json.loads(_sql_call(arguments, **headers)["result"]["content"][0]["text"]) == arguments


@pytest.mark.parametrize(("arguments", "headers"), [
    ({"query": "q", "region": "us-west1"}, {}),  # value in the body, header omitted
    ({"query": "q"}, {"Region": "us-west1"}),  # header without the value
    ({"query": "q", "region": "us-west1"}, {"Region": "eu-west1"}),
    ({"query": "q", "region": "Hello"}, {"Region": "=?base64?SGVsbG8?="}),  # bad padding
    ({"query": "q", "region": "Hello"}, {"Region": "=?base64?SGVs!!!bG8=?="}),  # not the alphabet
    ({"query": "q", "limit": 42}, {"Limit": "43"}),
    ({"query": "q", "limit": 42}, {"Limit": "42.5"}),
    ({"query": "q", "dry": True}, {"Dry": "True"}),
    ({"query": "q", "target": {"db": "main"}}, {"Db": "other"}),
])
def test_disagreeing_param_headers_are_header_mismatch(arguments: dict[str, Any], headers: dict[str, str]) -> None:
    with pytest.raises(JsonRpcError) as info:
        _sql_call(arguments, **headers)
    assert info.value.code == HEADER_MISMATCH and "Mcp-Param-" in info.value.message


def test_a_null_argument_expects_no_param_header() -> None:
    assert eras.check_param_headers(SQL_SCHEMA, {"region": None}, {}) is None
    assert eras.check_param_headers(SQL_SCHEMA, {"region": None}, {"Mcp-Param-Region": "x"}) is not None


def test_a_param_header_sent_twice_is_header_mismatch() -> None:
    message = body("tools/call", {"name": "execute_sql", "arguments": {"query": "q", "region": "r"}})
    fields = [*headers_for(message).items(), ("Mcp-Param-Region", "r"), ("mcp-param-region", "r")]
    with pytest.raises(JsonRpcError) as info:
        handle_payload(message, ctx_for(http11.Headers(fields), _sql_registry()))  # type: ignore[arg-type]
    assert info.value.code == HEADER_MISMATCH


def test_param_headers_of_unknown_tools_are_not_judged() -> None:
    message = body("tools/call", {"name": "nope", "arguments": {"region": "r"}})
    with pytest.raises(JsonRpcError) as info:
        handle_payload(message, ctx_for(headers_for(message), _sql_registry()))
    assert info.value.code == INVALID_PARAMS  # Unknown tool, not a header mismatch


