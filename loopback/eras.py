"""Protocol eras: which era a request belongs to, and the steps each era adds around dispatch.

MCP has two eras. The handshake era (2024-11-05 … 2025-11-25) opens with
``initialize`` and carries the version in the ``MCP-Protocol-Version`` header; the
2026-07-28 revision ("modern", stateless) has no handshake: every request carries
its version, client capabilities, client info and log level in ``_meta``, one
request per POST, one answer.

Owns: the versions of both eras; which era a POST body belongs to (``is_modern``,
decided once per request); the modern era's step before dispatch (``before``: the
``_meta`` envelope, the ``MCP-Protocol-Version``/``Mcp-Method``/``Mcp-Name``
header checks, the version check, -32022 with the supported list, the retry's
``inputResponses`` and signed ``requestState``) and after it (``after``: sealing
input-required results, -32021 for an undeclared client capability, ``resultType``,
cache hints, the ``serverInfo`` stamp, the era's spelling of errors, and the HTTP
status of each answer); the ``Mcp-Param-*`` header check of a tool's arguments.
Must not know: sockets, threads, HTTP framing, or the method handlers (``protocol``
dispatches; it calls these steps).

Spec: modelcontextprotocol.io/specification/2026-07-28 — basic/index (``_meta``,
error codes), basic/versioning (dual-era servers), basic/transports/streamable-http
(request metadata headers, server validation, backward compatibility),
basic/patterns/mrtr (SEP-2322), server/discover.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
from typing import Any, Mapping, Optional

from . import jsonrpc
from .content import INPUT_REQUEST_CAPABILITIES, InputRequired
from .context import LOG_LEVELS, RequestContext, RequestState
from .jsonrpc import (HEADER_MISMATCH, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND,
                      MISSING_REQUIRED_CLIENT_CAPABILITY, UNSUPPORTED_PROTOCOL_VERSION, JsonRpcError,
                      MissingClientCapability)

_log = logging.getLogger("loopback")

# Revisions that carry version and capabilities in every request's _meta, newest first.
MODERN_VERSIONS = ("2026-07-28",)
# The handshake era, newest first. The first is what a client asking for an unknown version is offered.
SUPPORTED_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
LATEST_VERSION = SUPPORTED_VERSIONS[0]
# Streamable HTTP: "If the server does not receive an MCP-Protocol-Version header ...
# the server SHOULD assume protocol version 2025-03-26."
HEADERLESS_VERSION = "2025-03-26"
# JSON-RPC batches were added in 2025-03-26 and removed in 2025-06-18.
BATCH_VERSIONS = frozenset({"2025-03-26"})

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
NAME_BEARING_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri",
                        "tasks/get": "taskId", "tasks/update": "taskId", "tasks/cancel": "taskId"}
_ROUTING_HEADERS = ("MCP-Protocol-Version", "Mcp-Method", "Mcp-Name")
X_MCP_HEADER = "x-mcp-header"  # a tool parameter mirrored into an Mcp-Param-{Name} header
# ttlMs 0: tools may be (un)registered at any time. private: what a caller sees depends on its token.
_TTL_MS = 0
_CACHE_SCOPE = "private"

# The Base64 sentinel for header values that are not plain ASCII (streamable-http "Value Encoding").
_B64_SENTINEL = re.compile(r"=\?base64\?(.*)\?=", re.DOTALL)
_HEADER_SAFE = re.compile(r"[\x20-\x7e]*")

# SEP-2322 (multi round-trip requests): the methods whose result may ask the client for input first.
INPUT_REQUIRED_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})
# Signs the requestState we hand out, so a client cannot forge or alter it. Fresh per
# process: a state only has to survive until the client's retry.
_STATE_KEY = secrets.token_bytes(32)

class Envelope:
    """The protocol fields of one request's ``_meta``."""

    __slots__ = ("protocol_version", "client_capabilities", "client_info", "log_level")

    def __init__(self, protocol_version: Any, client_capabilities: dict[str, Any],
                 client_info: Optional[dict[str, Any]] = None, log_level: Optional[str] = None) -> None:
        self.protocol_version = protocol_version
        self.client_capabilities = client_capabilities
        self.client_info = client_info
        self.log_level = log_level


def supported_versions() -> list[str]:
    """Every version this server speaks, newest first: the modern ones, then the handshake ones."""
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
    if META_PROTOCOL_VERSION not in meta or META_CLIENT_CAPABILITIES not in meta:
        missing = [key for key in (META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES) if key not in meta]
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


def _plain(value: str) -> bool:
    """Whether a header value ``decode_header_value`` gives back as it is: no Base64
    sentinel, only characters a header may carry, no space to strip at either end."""
    return not value.startswith("=?") and value.isascii() and value.isprintable() and value.strip() == value


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
    get_all = getattr(headers, "get_all", None)  # http11.Headers: each field's values, in order
    if get_all is not None:
        version, sent_method, sent_name = get_all("MCP-Protocol-Version"), get_all("Mcp-Method"), get_all("Mcp-Name")
    else:
        version, sent_method, sent_name = (_header_values(headers, name) for name in _ROUTING_HEADERS)
    if len(version) > 1 or len(sent_method) > 1 or len(sent_name) > 1:
        name = next(name for name, found in zip(_ROUTING_HEADERS, (version, sent_method, sent_name)) if len(found) > 1)
        return JsonRpcError(HEADER_MISMATCH, f"Header mismatch: {name} appears more than once")
    if not version:
        return JsonRpcError(HEADER_MISMATCH, "Header mismatch: MCP-Protocol-Version header is missing")
    if version[0].strip() != envelope_version:
        return JsonRpcError(
            HEADER_MISMATCH,
            f"Header mismatch: MCP-Protocol-Version header {version[0].strip()!r} does not match "
            f"_meta {META_PROTOCOL_VERSION} {envelope_version!r}",
        )
    method = payload.get("method")
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
        if body_value is None:
            if sent_name:  # names something the body does not: not from this request
                return JsonRpcError(HEADER_MISMATCH, f"Header mismatch: Mcp-Name header present but params.{key} is absent")
        elif not sent_name:
            return JsonRpcError(HEADER_MISMATCH, "Header mismatch: Mcp-Name header is missing")
        elif not (sent_name[0] == body_value and _plain(body_value)) and (
                decode_header_value(sent_name[0].strip()) != body_value):
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


_ANNOTATED: dict[int, tuple[Any, list[tuple[tuple[str, ...], str, dict[str, Any]]]]] = {}


def _annotated_params_of(schema: Any) -> list[tuple[tuple[str, ...], str, dict[str, Any]]]:
    """``_annotated_params`` of a tool's input schema, found once per schema object."""
    entry = _ANNOTATED.get(id(schema))
    if entry is not None and entry[0] is schema:
        return entry[1]
    found = _annotated_params(schema)
    if len(_ANNOTATED) >= 4096:
        _ANNOTATED.clear()
    _ANNOTATED[id(schema)] = (schema, found)  # the schema is held: its id stays its own
    return found


def check_param_headers(input_schema: Any, arguments: Any, headers: Mapping[str, str]) -> Optional[JsonRpcError]:
    """-32020 when a ``tools/call``'s ``Mcp-Param-{Name}`` headers disagree with the arguments
    their ``x-mcp-header`` annotations name: each header present exactly when its argument
    is, once, and equal to it (Base64 sentinel decoded, integers compared as numbers)."""
    for path, token, schema in _annotated_params_of(input_schema):
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


def check_version(version: Any) -> None:
    """Raise -32602 for a version that is not a string, -32022 for one this server does not speak."""
    if not isinstance(version, str):
        raise JsonRpcError(INVALID_PARAMS, f"Invalid params: {META_PROTOCOL_VERSION} must be a string")
    if version not in MODERN_VERSIONS:
        raise unsupported_version(version)


def server_info(ctx: RequestContext) -> dict[str, Any]:
    return {"name": ctx.settings.server_name, "version": ctx.server_version}


def modern_capabilities(offered: Mapping[str, Any]) -> dict[str, Any]:
    """What this server offers a 2026-07-28 client: the handshake era's capabilities (their
    ``listChanged`` and ``subscribe`` notifications come on ``subscriptions/listen``)."""
    return {name: (dict(value) if isinstance(value, dict) else value) for name, value in offered.items()}


def decorate(method: str, result: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """A handler's result as 2026-07-28 sends it: ``resultType``, cache hints where the
    method is cacheable, and the server's identity in ``_meta``."""
    result = dict(result)
    result.setdefault("resultType", "complete")
    if method in CACHEABLE_METHODS:
        result.setdefault("ttlMs", _TTL_MS)
        result.setdefault("cacheScope", _CACHE_SCOPE)
    meta = result.get("_meta")
    if isinstance(meta, dict):
        meta = dict(meta)
        if META_SERVER_INFO not in meta:
            meta[META_SERVER_INFO] = server_info(ctx)
    else:
        meta = {META_SERVER_INFO: server_info(ctx)}
    result["_meta"] = meta
    return result


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


def read_input(method: str, params: Mapping[str, Any], session: RequestState) -> None:
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


def _seal_input_required(method: str, params: Mapping[str, Any], result: dict[str, Any],
                         session: RequestState) -> dict[str, Any]:
    """Check and seal an InputRequiredResult a handler gave: allowed method, declared capabilities, signed state."""
    if method not in INPUT_REQUIRED_METHODS:
        raise TypeError(f"{method} cannot answer with an input-required result")
    requests = result.get("inputRequests") or {}
    missing = sorted({INPUT_REQUEST_CAPABILITIES.get(request.get("method"), "") for request in requests.values()}
                     - set(session.client_capabilities))
    if missing:
        raise MissingClientCapability(*missing)
    result = dict(result)
    if isinstance(result.get("requestState"), str):
        result["requestState"] = sign_state(method, params, result["requestState"])
    return result


def translate_error(error: JsonRpcError) -> JsonRpcError:
    """A handler's error as this era spells it (-32002, resource not found, became -32602),
    carrying this era's HTTP status for it."""
    if error.code == _RESOURCE_NOT_FOUND_2025:
        error = JsonRpcError(INVALID_PARAMS, error.message, error.data)
    error.status = http_status(error.code)
    return error


def before(payload: Any, ctx: RequestContext) -> Optional[RequestContext]:
    """The 2026-07-28 step before dispatch: the request's context (with a ``RequestState``
    built from its ``_meta``), or None for a notification (accepted and dropped, HTTP 202).

    Raises JsonRpcError, with its HTTP status, for a body, envelope, header or version
    this era refuses.
    """
    try:
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
        session = ctx.session if isinstance(ctx.session, RequestState) else RequestState(ctx.grant)
        session.log_level = envelope.log_level  # absent: no notifications/message for this request
        session.client_capabilities = envelope.client_capabilities
        session.client_info = envelope.client_info
        session.protocol_version = envelope.protocol_version
        read_input(payload["method"], payload.get("params") or {}, session)
    except JsonRpcError as exc:
        raise translate_error(exc) from None
    return ctx.replace(session=session, session_id=None) if ctx.session is not session or ctx.session_id is not None else ctx


def after(payload: Mapping[str, Any], answer: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """The 2026-07-28 step after dispatch: the answer as this era sends it. An error
    answer is raised (JsonRpcError with its HTTP status); a result gets ``resultType``,
    cache hints and the ``serverInfo`` stamp, an input-required one is sealed."""
    error = answer.get("error")
    if error is not None:
        refusal = translate_error(JsonRpcError(error["code"], error["message"], error.get("data")))
        if refusal.status == 200:  # an internal error: answered as any result is
            return jsonrpc.error(answer["id"], refusal)
        raise refusal
    method = payload["method"]
    params = payload.get("params") or {}
    result = answer["result"]
    try:
        if isinstance(result, InputRequired):
            result = result.to_result()
        if result.get("resultType") == "input_required":
            assert isinstance(ctx.session, RequestState)
            result = _seal_input_required(method, params, result, ctx.session)
    except JsonRpcError as exc:
        raise translate_error(exc) from None
    except Exception:  # a bug of ours (or a handler's): answer it, never with the traceback
        _log.exception("internal error while answering %s", method)
        return jsonrpc.error(answer["id"], JsonRpcError(jsonrpc.INTERNAL_ERROR, "Internal error"))
    return jsonrpc.result(answer["id"], decorate(method, result, ctx))
