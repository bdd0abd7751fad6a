"""MCP dispatch: one dispatcher for both protocol eras, from a decoded payload to an answer.

Owns: the method table (its own handlers — ``initialize``, ``ping``,
``logging/setLevel``, ``tools/list``, ``tools/call`` (a task when ``tasks`` says
so), ``server/discover`` — and those that ``resources``, ``prompts``,
``completions``, ``tasks`` and ``subscriptions`` export as ``HANDLERS``), which
methods each era offers, the handshake era's version negotiation, header version
rules and batch policy, notifications (cancellation), client responses (handed to the
state that sent the request), the capabilities offered, and ``plan``: what the
shell needs to know about a request before dispatching it (its era, whether it opens
a session, may stream, or is cancelled by the client leaving) without knowing MCP
methods. The 2026-07-28 era's own steps run before and after the same dispatch
(``eras.before``/``eras.after``).
Must not know: sockets, threads, HTTP framing or how bytes arrive. Errors that refuse
a whole body are raised as ``JsonRpcError`` carrying their HTTP status.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional

from . import completions, eras, jsonrpc, prompts, resources, subscriptions, tasks
from .catalog import page
from .context import LOG_LEVELS, RequestContext
from .eras import BATCH_VERSIONS, HEADERLESS_VERSION, LATEST_VERSION, SUPPORTED_VERSIONS
from .jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, JsonRpcError

__all__ = ["SUPPORTED_VERSIONS", "LATEST_VERSION", "HEADERLESS_VERSION", "Plan", "RequestContext",
           "handle_payload", "header_version", "negotiate_version", "plan"]

_log = logging.getLogger("loopback")

Handler = Callable[[Mapping[str, Any], RequestContext, Any], Any]

# Methods of the handshake era that 2026-07-28 removed: -32601 (HTTP 404) in that era.
HANDSHAKE_ONLY = frozenset({"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe",
                            *tasks.HANDSHAKE_ONLY})
MODERN_ONLY = frozenset({"server/discover", *tasks.MODERN_ONLY, *subscriptions.MODERN_ONLY})
# Requests that may send messages before their answer (an SSE response), and that the client
# leaving cancels in 2026-07-28.
_STREAMING = frozenset({"tools/call", "subscriptions/listen", "prompts/get", "resources/read", "tasks/result"})


class Plan:
    """What the shell must know about a request before dispatch, decided once."""

    __slots__ = ("modern", "opens_session", "may_stream", "cancellable", "request_id")

    def __init__(self, modern: bool, opens_session: bool, may_stream: bool, cancellable: bool,
                 request_id: Any) -> None:
        self.modern = modern  # 2026-07-28: no session, per-request state
        self.opens_session = opens_session  # an initialize: a session is made if it succeeds
        self.may_stream = may_stream  # a call that may send messages before its answer (SSE)
        self.cancellable = cancellable  # the client leaving cancels it (2026-07-28)
        self.request_id = request_id


def plan(payload: Any, protocol_version_header: Optional[str], registry: Any = None) -> Plan:
    """The era and the shell's concerns of one decoded POST body.

    With the ``registry`` given, a 2026-07-28 call is cancellable (watched for the client
    leaving) only when something could see it cancelled: a tool that takes a ``Context``,
    or a before-call hook (which is handed one).
    """
    modern = eras.is_modern(payload, protocol_version_header)
    method = payload.get("method") if isinstance(payload, dict) else None
    request_id = payload.get("id") if isinstance(payload, dict) else None
    has_id = request_id is not None
    call = has_id and method in _STREAMING
    cancellable = modern and call
    if cancellable and method == "tools/call" and registry is not None and registry.before_call_hook is None:
        # A tool that takes no Context cannot see a cancel: the client leaving need not be watched.
        params = payload.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        tool = registry.get(name) if isinstance(name, str) else None
        cancellable = tool is None or tool.context_param is not None
    return Plan(modern, not modern and has_id and method == "initialize", call, cancellable, request_id)


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


def handle_payload(payload: Any, ctx: RequestContext, modern: Optional[bool] = None) -> Any:
    """Answer one decoded POST body: a response object, a list of them, or None.

    None means the body held only notifications and responses (HTTP 202).
    ``modern`` is the era when the caller has decided it (``plan``). Raises
    JsonRpcError, with its HTTP status, for a body that cannot be answered message by
    message: in the handshake era an unsupported version header, a batch where the
    version has none, an empty batch, a single invalid message (400); in 2026-07-28
    every error answer (400, 404, or 200 for an internal error).
    """
    if modern is None:
        modern = eras.is_modern(payload, ctx.protocol_version_header)
    if modern:
        request_ctx = eras.before(payload, ctx)
        if request_ctx is None:
            return None
        answer = _answer(payload, request_ctx, jsonrpc.REQUEST, True)
        assert answer is not None
        return eras.after(payload, answer, request_ctx)
    # initialize is where the version is chosen, so the header does not bind it.
    if isinstance(payload, dict):  # one message, the usual body
        if payload.get("method") != "initialize":
            header_version(ctx.protocol_version_header)
        return _answer(payload, ctx, jsonrpc.classify(payload), False)  # a lone invalid message: 400 as a whole
    version = HEADERLESS_VERSION if _is_initialize(payload) else header_version(ctx.protocol_version_header)
    if isinstance(payload, list):
        if version not in BATCH_VERSIONS:
            raise JsonRpcError(INVALID_REQUEST, f"Invalid Request: protocol version {version} does not allow batches")
        if not payload:
            raise JsonRpcError(INVALID_REQUEST, "Invalid Request: empty batch")
        if any(_is_initialize(item) for item in payload):
            raise JsonRpcError(INVALID_REQUEST, "Invalid Request: initialize must not be part of a batch")
        answers = [answer for answer in (_answer(item, ctx, None, False) for item in payload) if answer is not None]
        return answers or None
    kind = jsonrpc.classify(payload)  # a lone invalid message is a bad request as a whole
    return _answer(payload, ctx, kind, False)


def _answer(message: Any, ctx: RequestContext, kind: Optional[str], modern: bool) -> Optional[dict[str, Any]]:
    """The dispatcher: one message of either era to its answer (None for what needs none)."""
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
        # A client's answer to one of our requests: wake the tool waiting for it. The
        # state is the caller's own, so only a request sent to this token is completed.
        if not ctx.session.resolve(message):
            _log.debug("dropped a response to no pending request (id %r)", message.get("id"))
        return None
    method = message["method"]
    params = message.get("params") or {}
    handler = METHODS.get(method)
    if method in (HANDSHAKE_ONLY if modern else MODERN_ONLY):
        handler = None
    try:
        if handler is None:
            raise JsonRpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
        return jsonrpc.result(message["id"], handler(params, ctx, message["id"]))
    except JsonRpcError as exc:
        return jsonrpc.error(message["id"], exc)
    except Exception:  # a bug of ours: answer it, never with the traceback
        _log.exception("internal error while handling %s", method)
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
        "capabilities": capabilities(ctx.tasks is not None, ctx.settings.auth),
        "serverInfo": {"name": ctx.settings.server_name, "version": ctx.server_version},
    }
    if ctx.settings.instructions:
        result["instructions"] = ctx.settings.instructions
    return result


def capabilities(with_tasks: bool = False, auth: bool = True) -> dict[str, Any]:
    """What this server offers (at initialize; ``server/discover`` in 2026-07-28 form)."""
    offered = {
        "tools": {"listChanged": True},
        "resources": {"subscribe": True, "listChanged": True},
        "prompts": {"listChanged": True},
        "completions": {},
        "logging": {},
    }
    if with_tasks:
        offered["tasks"] = tasks.capabilities(can_list=auth)
    return offered


def _discover(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "supportedVersions": eras.supported_versions(),
        "capabilities": eras.modern_capabilities(capabilities()),
    }
    if ctx.tasks is not None:  # 2026-07-28: tasks are an extension
        offered = result["capabilities"]
        offered["extensions"] = {**offered.get("extensions", {}), tasks.TASKS_EXTENSION: {}}
    if ctx.settings.instructions:
        result["instructions"] = ctx.settings.instructions
    return result


def _ping(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    return {}


def _cancelled(params: Any, ctx: RequestContext) -> None:
    # Only the caller that made a request can cancel it: the state is the caller's own.
    if isinstance(params, dict) and "requestId" in params:
        request_id = params["requestId"]
        if isinstance(request_id, (str, int)) and not isinstance(request_id, bool):
            ctx.session.cancel(request_id)


def _set_level(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    level = params.get("level")
    if level not in LOG_LEVELS:
        raise JsonRpcError(INVALID_PARAMS, f"Invalid params: level must be one of {', '.join(LOG_LEVELS)}")
    ctx.session.log_level = level
    return {}


def _tools_list(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    tools = ctx.registry.tools()
    if ctx.grant is not None and (not ctx.grant.is_owner or ctx.grant.tools is not None):
        tools = [tool for tool in tools if ctx.can_use(tool)]
    return page(tools, params, ctx.settings.page_size, "tools")


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
    if ctx.session.modern:  # 2026-07-28: arguments mirrored into Mcp-Param-* headers must agree
        mismatch = eras.check_param_headers(tool.input_schema, arguments, ctx.headers)
        if mismatch is not None:
            raise mismatch
    context = ctx.context_for(name, request_id, params)
    hook = ctx.registry.before_call_hook
    if not tool.on_request and tasks.wants_task(tool, params, ctx):  # the whole call runs as a task
        return tasks.create_for_call(tool, params, ctx, context,
                                     lambda task_context: tool.call(arguments, task_context, before_call=hook))
    in_flight = ctx.session.in_flight
    in_flight[request_id] = context
    try:
        result: dict[str, Any] = tool.call(arguments, context, before_call=hook, runner=ctx.runner)
    finally:
        if in_flight.get(request_id) is context:
            del in_flight[request_id]
    work = result.get(tasks.BACKGROUND)
    if work is None:
        return result
    # The function ran on the request and hands its long part over: a task when the client takes one.
    if tasks.wants_task(tool, params, ctx):
        return tasks.create_for_call(tool, params, ctx, context,
                                     lambda task_context: tool.outcome(work, task_context))
    finished: dict[str, Any] = tool.outcome(work, context, ctx.runner)
    return finished


METHODS: dict[str, Handler] = {
    "initialize": _initialize,
    "ping": _ping,
    "server/discover": _discover,
    "tools/list": _tools_list,
    "tools/call": _tools_call,
    "logging/setLevel": _set_level,
    **resources.HANDLERS,
    **prompts.HANDLERS,
    **completions.HANDLERS,
    **tasks.HANDLERS,
    **subscriptions.HANDLERS,
}
