"""The MCP 2026-07-28 revision ("modern", stateless): one request, one answer, no handshake.

Owns: which era a POST body belongs to, the per-request ``_meta`` envelope
(protocol version, client capabilities, client info, log level), the checks of the
``MCP-Protocol-Version``/``Mcp-Method``/``Mcp-Name``/``Mcp-Param-*`` headers against
the body, the version check (-32022 with the supported list), ``server/discover``,
the methods the revision removed, -32021 for an undeclared client capability,
input-required results (``InputRequired``, the retry's ``inputResponses`` and the
signed ``requestState``), what every result of that era carries (``resultType``,
cache hints, the ``serverInfo`` stamp), and the HTTP status each error of that era
gets (``http_status``), which the transport asks for.
Must not know: sockets, threads or how bytes arrive (no ``socket``/``threading``/
``http`` imports); the handlers themselves live in ``protocol`` and the modules it
registers (imported late: ``protocol`` imports this module).

Spec: modelcontextprotocol.io/specification/2026-07-28 — basic/index (``_meta``,
error codes), basic/versioning (dual-era servers), basic/transports/streamable-http
(request metadata headers, server validation, backward compatibility),
basic/patterns/mrtr (SEP-2322), server/discover.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import logging
import re
import secrets
from typing import TYPE_CHECKING, Any, Mapping, Optional

from . import jsonrpc
from .context import LOG_LEVELS, SessionState
from .jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, JsonRpcError

if TYPE_CHECKING:
    from .protocol import RequestContext

_log = logging.getLogger("loopback")

# Revisions that carry version and capabilities in every request's _meta, newest first.
MODERN_VERSIONS = ("2026-07-28",)

# Error codes the 2026-07-28 schema defines (basic/index "Error Codes").
HEADER_MISMATCH = -32020
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022
_RESOURCE_NOT_FOUND_2025 = -32002  # retired: 2026-07-28 "MUST NOT emit", uses -32602

META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"

# Methods of the handshake era that 2026-07-28 removed: -32601 (HTTP 404) in this era.
REMOVED_METHODS = frozenset({
    "initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe",
})
# Results that must carry ttlMs and cacheScope (SEP-2549).
CACHEABLE_METHODS = frozenset({
    "server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list",
    "resources/read",
})
# Method -> the params field its Mcp-Name header mirrors.
NAME_BEARING_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_ROUTING_HEADERS = ("MCP-Protocol-Version", "Mcp-Method", "Mcp-Name")
X_MCP_HEADER = "x-mcp-header"  # a tool parameter mirrored into an Mcp-Param-{Name} header
# ttlMs 0: tools may be (un)registered at any time. private: what a caller sees depends on its token.
_TTL_MS = 0
_CACHE_SCOPE = "private"

# The Base64 sentinel for header values that are not plain ASCII (streamable-http "Value Encoding").
_B64_SENTINEL = re.compile(r"=\?base64\?(.*)\?=", re.DOTALL)
_HEADER_SAFE = re.compile(r"[\x20-\x7e]*")

# SEP-2322 (multi round-trip requests): the methods whose result may ask the client for
# input first, and what each kind of input request needs the client to have declared.
INPUT_REQUIRED_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})
INPUT_REQUEST_CAPABILITIES = {
    "elicitation/create": "elicitation", "sampling/createMessage": "sampling", "roots/list": "roots",
}
# Signs the requestState we hand out, so a client cannot forge or alter it. Fresh per
# process: a state only has to survive until the client's retry.
_STATE_KEY = secrets.token_bytes(32)

# Capability -> the method that must answer for it to be advertised.
_CAPABILITY_METHODS = {
    "tools": "tools/list",
    "prompts": "prompts/list",
    "resources": "resources/list",
    "completions": "completion/complete",
}


class RequestSession(SessionState):
    """The state of one 2026-07-28 request: nothing outlives it.

    A transport that wants "closing the response stream cancels the request" builds
    one per modern POST, passes it as ``RequestContext.session`` and, when the client
    goes away, calls ``session.cancel(grant, request_id)``. Any other session passed
    in is left alone: the request gets a fresh one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.client_capabilities: dict[str, Any] = {}
        self.client_info: Optional[dict[str, Any]] = None
        self.protocol_version: Optional[str] = None
        # The retry of an input-required request: the client's answers, by key, and the
        # requestState we handed out (verified, unwrapped), or None on a first round.
        self.input_responses: dict[str, dict[str, Any]] = {}
        self.request_state: Optional[str] = None


class InputRequired:
    """What a tool (or prompt, or resource) returns when it needs the client's input first.

    ``requests`` maps keys of your choosing to input requests, each
    ``{"method": "elicitation/create" | "sampling/createMessage" | "roots/list", "params": {...}}``;
    ``state`` is an optional string you get back on the retry (``ctx.request_state``),
    signed by the server so the client cannot alter it. The client answers with a retry
    of the same request carrying ``inputResponses`` (``ctx.input_responses``: key ->
    the client's result), and the function runs again from the start (SEP-2322).
    """

    __slots__ = ("requests", "state")

    def __init__(self, requests: Mapping[str, Mapping[str, Any]], state: Optional[str] = None) -> None:
        if state is not None and not isinstance(state, str):
            raise TypeError(f"state must be a string or None, not {type(state).__name__}")
        if not requests and state is None:
            raise ValueError("InputRequired needs at least one input request or a state")
        checked: dict[str, dict[str, Any]] = {}
        for key, request in requests.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"input request keys must be non-empty strings, not {key!r}")
            method = request.get("method") if isinstance(request, Mapping) else None
            if method not in INPUT_REQUEST_CAPABILITIES:
                raise ValueError(f"input request {key!r}: method must be one of {', '.join(INPUT_REQUEST_CAPABILITIES)}")
            params = request.get("params", {})
            if not isinstance(params, Mapping):
                raise ValueError(f"input request {key!r}: params must be an object")
            checked[key] = {"method": method, "params": dict(params)}
        self.requests = checked
        self.state = state

    def to_result(self) -> dict[str, Any]:
        """The ``InputRequiredResult`` (before the server signs its ``requestState``)."""
        result: dict[str, Any] = {"resultType": "input_required", "inputRequests": self.requests}
        if self.state is not None:
            result["requestState"] = self.state
        return result

    def __repr__(self) -> str:
        return f"InputRequired({sorted(self.requests)!r}, state={'set' if self.state is not None else None})"


class MissingClientCapability(JsonRpcError):
    """-32021: the request needs a client capability its ``_meta`` did not declare.

    Raised through a tool call (``tools.Tool.call`` must let it pass) it becomes the
    request's error answer, HTTP 400.
    """

    def __init__(self, *capabilities: str) -> None:
        super().__init__(
            MISSING_REQUIRED_CLIENT_CAPABILITY,
            f"Missing required client capability: {', '.join(capabilities)}",
            {"requiredCapabilities": {name: {} for name in capabilities}},
        )


def require_client_capability(session: Optional[SessionState], capability: str) -> None:
    """In a 2026-07-28 request, raise MissingClientCapability unless its ``_meta`` declared
    ``capability`` ("sampling", "elicitation", "roots"); in any other request, nothing."""
    if isinstance(session, RequestSession) and capability not in session.client_capabilities:
        raise MissingClientCapability(capability)


@dataclasses.dataclass(frozen=True)
class Envelope:
    """The protocol fields of one request's ``_meta``."""

    protocol_version: Any
    client_capabilities: dict[str, Any]
    client_info: Optional[dict[str, Any]] = None
    log_level: Optional[str] = None


def supported_versions() -> list[str]:
    """Every version this server speaks, newest first: the modern ones, then the handshake ones."""
    from .protocol import SUPPORTED_VERSIONS  # imported late: protocol imports this module

    return [*MODERN_VERSIONS, *SUPPORTED_VERSIONS]


def _meta_version(payload: Any) -> Any:
    """The body's ``_meta`` protocol version, or None when the body carries none."""
    if isinstance(payload, dict):
        params = payload.get("params")
        if isinstance(params, dict):
            meta = params.get("_meta")
            if isinstance(meta, dict):
                return meta.get(META_PROTOCOL_VERSION)
    return None


def is_modern(payload: Any, protocol_version_header: Optional[str]) -> bool:
    """Whether a POST belongs to the 2026-07-28 era, judged by how the client opens.

    Modern: the ``MCP-Protocol-Version`` header names a modern version; or the body's
    ``_meta`` names a protocol version and the header is absent or names no handshake
    version (those requests get -32020 or -32022 rather than a handshake-era answer).
    Everything else, ``initialize`` under a handshake-era header included, is legacy.
    """
    if protocol_version_header is not None:
        header = protocol_version_header.strip()
        if header in MODERN_VERSIONS:
            return True
        if _meta_version(payload) is None:  # the handshake era's usual case, decided cheaply
            return False
        from .protocol import SUPPORTED_VERSIONS

        return header not in SUPPORTED_VERSIONS
    return _meta_version(payload) is not None


def is_modern_header(protocol_version_header: Optional[str]) -> bool:
    """Whether a request without a body (GET, DELETE) speaks 2026-07-28: its header says so."""
    return protocol_version_header is not None and protocol_version_header.strip() in MODERN_VERSIONS


def refuses_http_method(http_method: str, protocol_version_header: Optional[str]) -> bool:
    """True when the request must get 405 (``Allow: POST``): 2026-07-28 has no GET stream
    and no sessions to DELETE (streamable-http "Earlier Streamable HTTP Revisions")."""
    return http_method in ("GET", "DELETE") and is_modern_header(protocol_version_header)


def http_status(code: Optional[int]) -> int:
    """The HTTP status of a 2026-07-28 answer whose error code is ``code`` (None: a result).

    400 for a malformed body or envelope, a header mismatch, a missing client
    capability and an unsupported version; 404 for an unknown method (so clients
    can tell a modern server from a legacy 404); 200 otherwise. For the handshake
    era's refusals (-32700, -32600) this is 400 too, as before.
    """
    if code == METHOD_NOT_FOUND:
        return 404
    if code in (jsonrpc.PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS, HEADER_MISMATCH,
                MISSING_REQUIRED_CLIENT_CAPABILITY, UNSUPPORTED_PROTOCOL_VERSION):
        return 400
    return 200


def unsupported_version(requested: Any) -> JsonRpcError:
    """-32022 naming what was asked for and what this server supports."""
    return JsonRpcError(
        UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        {"supported": supported_versions(), "requested": requested if isinstance(requested, str) else str(requested)},
    )


def read_envelope(payload: Mapping[str, Any]) -> Envelope:
    """The request's ``_meta`` protocol fields; JsonRpcError(-32602) when a required one is missing."""
    params = payload.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict):
        raise JsonRpcError(
            INVALID_PARAMS,
            f"Invalid params: params._meta must be an object carrying {META_PROTOCOL_VERSION!r} "
            f"and {META_CLIENT_CAPABILITIES!r}",
        )
    missing = [key for key in (META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES) if key not in meta]
    if missing:
        raise JsonRpcError(INVALID_PARAMS, f"Invalid params: params._meta is missing {', '.join(missing)}")
    capabilities = meta[META_CLIENT_CAPABILITIES]
    if not isinstance(capabilities, dict):
        raise JsonRpcError(INVALID_PARAMS, f"Invalid params: {META_CLIENT_CAPABILITIES} must be an object")
    client_info = meta.get(META_CLIENT_INFO)
    if client_info is not None and not isinstance(client_info, dict):
        raise JsonRpcError(INVALID_PARAMS, f"Invalid params: {META_CLIENT_INFO} must be an object")
    log_level = meta.get(META_LOG_LEVEL)
    if log_level is not None and log_level not in LOG_LEVELS:
        raise JsonRpcError(INVALID_PARAMS, f"Invalid params: {META_LOG_LEVEL} must be one of {', '.join(LOG_LEVELS)}")
    return Envelope(meta[META_PROTOCOL_VERSION], capabilities, client_info, log_level)


def decode_header_value(value: Optional[str]) -> Optional[str]:
    """A mirrored header value as the body holds it: ``=?base64?...?=`` decoded (UTF-8).

    None for an absent header, a malformed sentinel, or characters a header value
    may not carry, so such a header never matches a body value.
    """
    if value is None:
        return None
    match = _B64_SENTINEL.fullmatch(value)
    if match is None:
        return value if _HEADER_SAFE.fullmatch(value) else None
    payload = match.group(1)
    try:
        raw = base64.b64decode(payload, validate=True)
        if base64.b64encode(raw).decode("ascii") != payload:  # only the canonical form
            return None
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    get_all = getattr(headers, "get_all", None)
    if get_all is not None:
        return list(get_all(name))
    lowered = name.lower()
    return [value for key, value in headers.items() if key.lower() == lowered]


def check_headers(headers: Mapping[str, str], payload: Mapping[str, Any], envelope_version: Any) -> Optional[JsonRpcError]:
    """-32020 (HeaderMismatch) when the routing headers disagree with the body, else None.

    ``MCP-Protocol-Version`` must equal the ``_meta`` version, ``Mcp-Method`` the
    method, and for ``tools/call``/``prompts/get``/``resources/read`` ``Mcp-Name``
    (Base64 sentinel decoded) the name or uri. Each is required; each may appear once.
    """
    values = {name: _header_values(headers, name) for name in _ROUTING_HEADERS}
    for name, found in values.items():
        if len(found) > 1:
            return JsonRpcError(HEADER_MISMATCH, f"Header mismatch: {name} appears more than once")
    version = values["MCP-Protocol-Version"]
    if not version:
        return JsonRpcError(HEADER_MISMATCH, "Header mismatch: MCP-Protocol-Version header is missing")
    if version[0].strip() != envelope_version:
        return JsonRpcError(
            HEADER_MISMATCH,
            f"Header mismatch: MCP-Protocol-Version header {version[0].strip()!r} does not match "
            f"_meta {META_PROTOCOL_VERSION} {envelope_version!r}",
        )
    method = payload.get("method")
    sent_method = values["Mcp-Method"]
    if not sent_method:
        return JsonRpcError(HEADER_MISMATCH, "Header mismatch: Mcp-Method header is missing")
    if sent_method[0].strip() != method:
        return JsonRpcError(
            HEADER_MISMATCH,
            f"Header mismatch: Mcp-Method header value {sent_method[0].strip()!r} does not match body value {method!r}",
        )
    key = NAME_BEARING_METHODS.get(method)
    if key is not None:
        params = payload.get("params")
        body_value = params.get(key) if isinstance(params, dict) else None
        sent_name = values["Mcp-Name"]
        if body_value is None:
            if sent_name:  # names something the body does not: not from this request
                return JsonRpcError(HEADER_MISMATCH, f"Header mismatch: Mcp-Name header present but params.{key} is absent")
        elif not sent_name:
            return JsonRpcError(HEADER_MISMATCH, "Header mismatch: Mcp-Name header is missing")
        elif decode_header_value(sent_name[0].strip()) != body_value:
            return JsonRpcError(
                HEADER_MISMATCH,
                f"Header mismatch: Mcp-Name header value {sent_name[0].strip()!r} does not match body value {body_value!r}",
            )
    return None


def _annotated_params(schema: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str, dict[str, Any]]]:
    """(property path, header token, property schema) of each ``x-mcp-header`` annotation
    reachable from the root through ``properties`` alone (the only place the spec allows one)."""
    found: list[tuple[tuple[str, ...], str, dict[str, Any]]] = []
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if isinstance(properties, dict):
        for name, sub in properties.items():
            if not isinstance(sub, dict):
                continue
            token = sub.get(X_MCP_HEADER)
            if isinstance(token, str) and token and sub.get("type") in ("string", "integer", "boolean"):
                found.append(((*path, name), token, sub))
            found.extend(_annotated_params(sub, (*path, name)))
    return found


def _render_param(value: Any) -> Optional[str]:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def check_param_headers(input_schema: Any, arguments: Any, headers: Mapping[str, str]) -> Optional[JsonRpcError]:
    """-32020 when a ``tools/call``'s ``Mcp-Param-{Name}`` headers disagree with the arguments
    their ``x-mcp-header`` annotations name: each header present exactly when its argument
    is, once, and equal to it (Base64 sentinel decoded, integers compared as numbers)."""
    for path, token, schema in _annotated_params(input_schema):
        header = f"Mcp-Param-{token}"
        sent = _header_values(headers, header)
        value: Any = arguments
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if len(sent) > 1:
            return JsonRpcError(HEADER_MISMATCH, f"Header mismatch: {header} appears more than once")
        rendered = _render_param(value)
        if value is None or rendered is None:
            if sent:
                return JsonRpcError(HEADER_MISMATCH, f"Header mismatch: {header} header present but arguments.{'.'.join(path)} is not")
            continue
        if not sent:
            return JsonRpcError(HEADER_MISMATCH, f"Header mismatch: {header} header is missing for arguments.{'.'.join(path)}")
        decoded = decode_header_value(sent[0].strip())
        if schema.get("type") == "integer" and decoded is not None and re.fullmatch(r"-?[0-9]+(\.0+)?", decoded):
            decoded = decoded.split(".")[0]
        if decoded != rendered:
            return JsonRpcError(
                HEADER_MISMATCH,
                f"Header mismatch: {header} header value {sent[0].strip()!r} does not match arguments.{'.'.join(path)}",
            )
    return None


def _check_tool_params(payload: Mapping[str, Any], ctx: "RequestContext") -> Optional[JsonRpcError]:
    params = payload.get("params")
    name = params.get("name") if isinstance(params, dict) else None
    tool = ctx.registry.get(name) if isinstance(name, str) else None
    if tool is None or not ctx.can_use(tool):
        return None  # the call itself says "Unknown tool"
    return check_param_headers(tool.input_schema, params.get("arguments"), ctx.headers)  # type: ignore[union-attr]


def check_version(version: Any) -> None:
    """Raise -32602 for a version that is not a string, -32022 for one this server does not speak."""
    if not isinstance(version, str):
        raise JsonRpcError(INVALID_PARAMS, f"Invalid params: {META_PROTOCOL_VERSION} must be a string")
    if version not in MODERN_VERSIONS:
        raise unsupported_version(version)


def server_info(ctx: "RequestContext") -> dict[str, Any]:
    return {"name": ctx.settings.server_name, "version": ctx.server_version}


def capabilities(ctx: "RequestContext") -> dict[str, Any]:
    """What this server offers a 2026-07-28 client: the handshake era's capabilities, less
    what this era would deliver on ``subscriptions/listen`` (not implemented), and only
    for methods that answer."""
    from . import protocol

    offered: dict[str, Any] = {}
    for name, value in protocol._capabilities(ctx).items():
        method = _CAPABILITY_METHODS.get(name)
        if method is not None and method not in protocol._METHODS:
            continue
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in ("listChanged", "subscribe")}
        offered[name] = value
    return offered


def _discover(params: Mapping[str, Any], ctx: "RequestContext", request_id: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "supportedVersions": supported_versions(),
        "capabilities": capabilities(ctx),
    }
    if ctx.settings.instructions:
        result["instructions"] = ctx.settings.instructions
    return result


def _handler(method: str) -> Any:
    from . import protocol

    if method == "server/discover":
        return _discover
    if method in REMOVED_METHODS:
        return None
    return protocol._METHODS.get(method)


def decorate(method: str, result: dict[str, Any], ctx: "RequestContext") -> dict[str, Any]:
    """A handler's result as 2026-07-28 sends it: ``resultType``, cache hints where the
    method is cacheable, and the server's identity in ``_meta``."""
    result = dict(result)
    result.setdefault("resultType", "complete")
    if method in CACHEABLE_METHODS:
        result.setdefault("ttlMs", _TTL_MS)
        result.setdefault("cacheScope", _CACHE_SCOPE)
    meta = result.get("_meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta.setdefault(META_SERVER_INFO, server_info(ctx))
    result["_meta"] = meta
    return result


def translate_error(error: JsonRpcError) -> JsonRpcError:
    """A handler's error as this era spells it: -32002 (resource not found) became -32602."""
    if error.code == _RESOURCE_NOT_FOUND_2025:
        return JsonRpcError(INVALID_PARAMS, error.message, error.data)
    return error


def _state_mac(method: str, subject: Any, body: str) -> str:
    # Bound to the method and the tool/prompt/resource: a state is no good anywhere else.
    message = json.dumps([method, subject, body], separators=(",", ":")).encode()
    return hmac.new(_STATE_KEY, message, hashlib.sha256).hexdigest()


def _subject(method: str, params: Mapping[str, Any]) -> Any:
    key = NAME_BEARING_METHODS.get(method)
    return params.get(key) if key is not None else None


def sign_state(method: str, params: Mapping[str, Any], state: str) -> str:
    """The ``requestState`` handed to the client: the state, and a MAC over it and the request."""
    body = base64.urlsafe_b64encode(state.encode("utf-8")).decode("ascii")
    return f"{body}.{_state_mac(method, _subject(method, params), body)}"


def verify_state(method: str, params: Mapping[str, Any], token: Any) -> str:
    """The state inside a ``requestState`` we signed; -32602 for anything else."""
    if isinstance(token, str) and token.count(".") == 1:
        body, mac = token.split(".")
        if hmac.compare_digest(mac, _state_mac(method, _subject(method, params), body)):
            try:
                return base64.urlsafe_b64decode(body.encode("ascii")).decode("utf-8")
            except (binascii.Error, UnicodeError, ValueError):
                pass
    raise JsonRpcError(INVALID_PARAMS, "Invalid params: requestState failed its integrity check")


def read_input(method: str, params: Mapping[str, Any], session: RequestSession) -> None:
    """Put a retry's ``inputResponses`` and (verified) ``requestState`` on the session; -32602 when malformed."""
    if method not in INPUT_REQUIRED_METHODS:
        return  # other methods never ask for input: extra params are ignored, as any others
    if "inputResponses" in params:
        responses = params["inputResponses"]
        if not isinstance(responses, dict) or not all(isinstance(v, dict) for v in responses.values()):
            raise JsonRpcError(INVALID_PARAMS, "Invalid params: inputResponses must map each key to the client's result object")
        session.input_responses = responses
    if params.get("requestState") is not None:
        session.request_state = verify_state(method, params, params["requestState"])


def _input_required(method: str, params: Mapping[str, Any], result: dict[str, Any],
                    envelope: Envelope) -> dict[str, Any]:
    """Check and seal an InputRequiredResult a handler gave: allowed method, declared capabilities, signed state."""
    if method not in INPUT_REQUIRED_METHODS:
        raise TypeError(f"{method} cannot answer with an input-required result")
    requests = result.get("inputRequests") or {}
    missing = sorted({INPUT_REQUEST_CAPABILITIES.get(request.get("method"), "") for request in requests.values()}
                     - set(envelope.client_capabilities))
    if missing:
        raise MissingClientCapability(*missing)
    result = dict(result)
    if isinstance(result.get("requestState"), str):
        result["requestState"] = sign_state(method, params, result["requestState"])
    return result


def _session_for(ctx: "RequestContext", envelope: Envelope) -> RequestSession:
    session = ctx.session if isinstance(ctx.session, RequestSession) else RequestSession()
    session.log_level = envelope.log_level  # absent: no notifications/message for this request
    session.client_capabilities = envelope.client_capabilities
    session.client_info = envelope.client_info
    session.protocol_version = envelope.protocol_version
    return session


def handle(payload: Any, ctx: "RequestContext") -> Optional[dict[str, Any]]:
    """Answer one 2026-07-28 POST body: a response object, or None for a notification (HTTP 202).

    Raises JsonRpcError for every error answer, so the transport can give each its
    status (``http_status``): the body is the error with the request's id.
    """
    if not isinstance(payload, dict):
        raise JsonRpcError(
            INVALID_REQUEST,
            "Invalid Request: protocol version 2026-07-28 takes one JSON-RPC request or notification per POST",
        )
    kind = jsonrpc.classify(payload)
    if kind == jsonrpc.RESPONSE:
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: protocol version 2026-07-28 clients send no responses")
    if kind == jsonrpc.NOTIFICATION:
        # The revision defines no client notifications over HTTP (cancelling is closing
        # the stream): accepted and dropped, as long as the version is one we speak.
        header = ctx.protocol_version_header
        if header is not None and header.strip() not in MODERN_VERSIONS:
            raise unsupported_version(header.strip())
        return None
    envelope = read_envelope(payload)
    mismatch = check_headers(ctx.headers, payload, envelope.protocol_version)
    if mismatch is not None:
        raise mismatch
    check_version(envelope.protocol_version)
    method = payload["method"]
    if method == "tools/call":
        mismatch = _check_tool_params(payload, ctx)
        if mismatch is not None:
            raise mismatch
    handler = _handler(method)
    if handler is None:
        raise JsonRpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
    session = _session_for(ctx, envelope)
    params = payload.get("params") or {}
    read_input(method, params, session)
    request_ctx = dataclasses.replace(ctx, session=session, session_id=None)
    request_id = payload["id"]
    try:
        result = handler(params, request_ctx, request_id)
        if isinstance(result, InputRequired):
            result = result.to_result()
        if result.get("resultType") == "input_required":
            result = _input_required(method, params, result, envelope)
    except JsonRpcError as exc:
        raise translate_error(exc) from None
    except Exception:  # a bug of ours: answer it, never with the traceback
        _log.exception("internal error while handling %s", method)
        return jsonrpc.error(request_id, JsonRpcError(INTERNAL_ERROR, "Internal error"))
    return jsonrpc.result(request_id, decorate(method, result, ctx))
