"""MCP dispatch: pure functions from (decoded payload, request context) to a response.

Owns: protocol version negotiation and the ``MCP-Protocol-Version`` header rules,
batch policy per version, ``initialize`` (recording what the client declared) and
the capabilities offered, ``ping``, notifications (cancellation), client responses
(handed to the server request waiting for them),
``logging/setLevel``, ``tools/list`` (cursor pagination, filtered by the caller's
grant) and ``tools/call`` (building the tool's ``Context``).
Must not know: sockets, threads, HTTP status codes or how bytes arrive; it never
imports ``socket``, ``threading`` or ``http``.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from . import jsonrpc, revision_2026
from ._compat import slotted
from .auth import OWNER, Grant
from .context import LOG_LEVELS, Context, Notify, SessionState, ToolHeaders
from .jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, JsonRpcError
from .settings import Settings
from .tools import Tool, ToolRegistry

_log = logging.getLogger("loopback")

# Newest first. The first is what a client asking for an unknown version is offered.
SUPPORTED_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
LATEST_VERSION = SUPPORTED_VERSIONS[0]
# Streamable HTTP: "If the server does not receive an MCP-Protocol-Version header ...
# the server SHOULD assume protocol version 2025-03-26."
HEADERLESS_VERSION = "2025-03-26"
# JSON-RPC batches were added in 2025-03-26 and removed in 2025-06-18.
BATCH_VERSIONS = frozenset({"2025-03-26"})


@slotted
@dataclass  # not frozen: a frozen dataclass's __init__ costs microseconds per request
class RequestContext:
    """What the transport knows about one HTTP request, as plain data."""

    registry: ToolRegistry
    settings: Settings = field(default_factory=Settings)
    protocol_version_header: Optional[str] = None
    headers: Mapping[str, str] = field(default_factory=dict)
    server_version: str = "0"
    grant: Optional[Grant] = None  # None: authentication is off, the caller is the owner
    session: SessionState = field(default_factory=SessionState)
    session_id: Optional[str] = None
    notify: Optional[Notify] = None  # sends a notification to the client; None: no stream open
    close_stream: Optional[Callable[[], None]] = None  # ends the call's SSE response early (polling)

    def context_for(self, name: str, request_id: Any, params: Mapping[str, Any]) -> Context:
        """The ``Context`` a function serving this request receives (a tool, or a prompt
        declaring one: ``tool_name`` then holds the prompt's name)."""
        meta = params.get("_meta")
        return Context(
            headers=ToolHeaders(self.headers, self.grant.headers if self.grant is not None else None),
            scope=self.grant.scope if self.grant is not None else OWNER,
            session_id=self.session_id,
            request_id=request_id,
            tool_name=name,
            progress_token=meta.get("progressToken") if isinstance(meta, dict) else None,
            notify=self.notify,
            session=self.session,
            request_timeout=self.settings.client_request_timeout,
            close_stream=self.close_stream,
        )

    def can_use(self, tool: Tool) -> bool:
        """Whether the caller's grant lets it see and call ``tool``."""
        if self.grant is None:
            return True
        return self.grant.allows(tool.name, tool.owner_only)


def negotiate_version(requested: Any) -> str:
    """The client's version when we support it, else the newest we support."""
    return requested if requested in SUPPORTED_VERSIONS else LATEST_VERSION


def header_version(value: Optional[str]) -> str:
    """The version a request's ``MCP-Protocol-Version`` header names; JsonRpcError if unsupported."""
    if value is None:
        return HEADERLESS_VERSION
    version = value.strip()
    if version not in SUPPORTED_VERSIONS:
        raise JsonRpcError(
            INVALID_REQUEST,
            f"Unsupported MCP-Protocol-Version: {version!r}",
            {"supported": list(SUPPORTED_VERSIONS)},
        )
    return version


def _is_initialize(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("method") == "initialize"


def handle_payload(payload: Any, ctx: RequestContext) -> Any:
    """Answer one decoded POST body: a response object, a list of them, or None.

    None means the body held only notifications and responses (HTTP 202).
    Raises JsonRpcError for a body that cannot be answered message by message
    (unsupported version header, a batch where the version has none, an empty
    batch, a single invalid message); the transport answers those with HTTP 400.
    """
    if revision_2026.is_modern(payload, ctx.protocol_version_header):
        return revision_2026.handle(payload, ctx)  # stateless: version and capabilities in _meta
    # initialize is where the version is chosen, so the header does not bind it.
    version = HEADERLESS_VERSION if _is_initialize(payload) else header_version(ctx.protocol_version_header)
    if isinstance(payload, list):
        if version not in BATCH_VERSIONS:
            raise JsonRpcError(INVALID_REQUEST, f"Invalid Request: protocol version {version} does not allow batches")
        if not payload:
            raise JsonRpcError(INVALID_REQUEST, "Invalid Request: empty batch")
        if any(_is_initialize(item) for item in payload):
            raise JsonRpcError(INVALID_REQUEST, "Invalid Request: initialize must not be part of a batch")
        answers = [answer for answer in (_answer(item, ctx) for item in payload) if answer is not None]
        return answers or None
    kind = jsonrpc.classify(payload)  # a lone invalid message is a bad request as a whole
    return _answer(payload, ctx, kind)


def _answer(message: Any, ctx: RequestContext, kind: Optional[str] = None) -> Optional[dict[str, Any]]:
    if kind is None:
        try:
            kind = jsonrpc.classify(message)
        except JsonRpcError as exc:
            return jsonrpc.error(jsonrpc.request_id(message), exc)
    if kind == jsonrpc.NOTIFICATION:
        if message["method"] == "notifications/cancelled":
            _cancelled(message.get("params"), ctx)
        return None  # notifications need no answer
    if kind != jsonrpc.REQUEST:
        # A client's answer to one of our requests: wake the tool waiting for it.
        if not ctx.session.resolve(message):
            _log.debug("dropped a response to no pending request (id %r)", message.get("id"))
        return None
    params = message.get("params") or {}
    handler = _METHODS.get(message["method"])
    try:
        if handler is None:
            raise JsonRpcError(METHOD_NOT_FOUND, f"Method not found: {message['method']}")
        return jsonrpc.result(message["id"], handler(params, ctx, message["id"]))
    except JsonRpcError as exc:
        return jsonrpc.error(message["id"], exc)
    except Exception:  # a bug of ours: answer it, never with the traceback
        _log.exception("internal error while handling %s", message["method"])
        return jsonrpc.error(message["id"], JsonRpcError(INTERNAL_ERROR, "Internal error"))


def _initialize(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    requested = params.get("protocolVersion")
    if not isinstance(requested, str):
        raise JsonRpcError(INVALID_PARAMS, "initialize: params.protocolVersion must be a string")
    for name in ("capabilities", "clientInfo"):
        if not isinstance(params.get(name), dict):
            raise JsonRpcError(INVALID_PARAMS, f"initialize: params.{name} must be an object")
    version = negotiate_version(requested)
    session = ctx.session
    session.client_capabilities = dict(params["capabilities"])
    session.client_info = dict(params["clientInfo"])
    session.protocol_version = version
    result: dict[str, Any] = {
        "protocolVersion": version,
        "capabilities": _capabilities(ctx),
        "serverInfo": {"name": ctx.settings.server_name, "version": ctx.server_version},
    }
    if ctx.settings.instructions:
        result["instructions"] = ctx.settings.instructions
    return result


def _capabilities(ctx: RequestContext) -> dict[str, Any]:
    """What this server offers: answered at initialize (and by 2026-07-28 server/discover)."""
    return {
        "tools": {"listChanged": True},
        "resources": {"subscribe": True, "listChanged": True},
        "prompts": {"listChanged": True},
        "completions": {},
        "logging": {},
    }


def _ping(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    return {}


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode()


def _decode_cursor(cursor: Any) -> int:
    if not isinstance(cursor, str):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: cursor must be a string")
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
        if text[:1] == "o" and text[1:].isdigit():
            return int(text[1:])
    except (binascii.Error, UnicodeError, ValueError):
        pass
    raise JsonRpcError(INVALID_PARAMS, "Invalid params: unknown cursor")


def _cancelled(params: Any, ctx: RequestContext) -> None:
    # Only the caller that made a request can cancel it: the key includes its grant.
    if isinstance(params, dict) and "requestId" in params:
        request_id = params["requestId"]
        if isinstance(request_id, (str, int)) and not isinstance(request_id, bool):
            ctx.session.cancel(ctx.grant, request_id)


def _set_level(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    level = params.get("level")
    if level not in LOG_LEVELS:
        raise JsonRpcError(INVALID_PARAMS, f"Invalid params: level must be one of {', '.join(LOG_LEVELS)}")
    ctx.session.log_level = level
    return {}


def _tools_list(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    start = _decode_cursor(params["cursor"]) if params.get("cursor") is not None else 0
    tools = ctx.registry.tools()
    if ctx.grant is not None and (not ctx.grant.is_owner or ctx.grant.tools is not None):
        tools = [tool for tool in tools if ctx.can_use(tool)]
    end = start + ctx.settings.page_size
    result: dict[str, Any] = {"tools": [tool.definition() for tool in tools[start:end]]}
    if end < len(tools):
        result["nextCursor"] = _encode_cursor(end)
    return result


def _tools_call(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    name = params.get("name")
    if not isinstance(name, str):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: tools/call needs a string 'name'")
    arguments = params.get("arguments")
    if arguments is None:
        arguments = {}
    elif not isinstance(arguments, dict):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: 'arguments' must be an object")
    tool = ctx.registry.get(name)
    if tool is None or not ctx.can_use(tool):  # a hidden tool is indistinguishable from none
        raise JsonRpcError(INVALID_PARAMS, f"Unknown tool: {name}")
    context = ctx.context_for(name, request_id, params)
    key = (ctx.grant, request_id)
    ctx.session.in_flight[key] = context
    try:
        return tool.call(arguments, context, before_call=ctx.registry.before_call_hook,
                         timeout=ctx.settings.tool_timeout)
    finally:
        if ctx.session.in_flight.get(key) is context:
            del ctx.session.in_flight[key]


_METHODS = {
    "initialize": _initialize,
    "ping": _ping,
    "tools/list": _tools_list,
    "tools/call": _tools_call,
    "logging/setLevel": _set_level,
}

# Resources, prompts and completion keep their handlers in their own modules.
from . import completions, prompts, resources  # noqa: E402  (they import nothing from here at load time)

_METHODS.update({**resources.HANDLERS, **prompts.HANDLERS, **completions.HANDLERS})
