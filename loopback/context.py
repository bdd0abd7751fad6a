"""Request context: what one request's handler, and the tool it runs, may know and do.

Owns: ``RequestContext`` (what the shell tells dispatch about one request, as plain
data), the ``Context`` handed to tools and prompts that declare a parameter
annotated ``loopback.Context`` (headers, the caller's scope, session id, progress,
logging, cancellation, requests to the client: sampling, elicitation, roots), the
MCP log levels, and ``ClientState``: everything one client is owed or has promised
(log level, calls in flight, subscriptions, what it declared, the server's requests
waiting for its answers, its standalone stream), owned by exactly one principal.
Must not know: sockets, HTTP or how messages reach the client: the shell gives each
context a ``notify`` callable (the call's own stream), the state a ``standalone``
one (the client's GET stream), or none when there is no stream.
"""

from __future__ import annotations

import itertools
import logging
from concurrent.futures import Future
from concurrent.futures import TimeoutError as _FutureTimeout
from typing import Any, Callable, Iterator, Mapping, Optional

from .auth import OWNER, Grant
from .errors import LoopbackError
from .jsonrpc import MissingClientCapability
from .settings import Settings

_log = logging.getLogger("loopback")

# RFC 5424 severities, least severe first, as MCP's logging/setLevel names them.
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_LOG_RANK = {name: rank for rank, name in enumerate(LOG_LEVELS)}

Notify = Callable[[dict[str, Any]], None]

DEFAULT_CLIENT_REQUEST_TIMEOUT = 60.0


class ClientRequestError(LoopbackError):
    """A request from a tool to the client (``Context.sample``, ``elicit``, ``list_roots``,
    ``request``) failed: the client answered with an error, did not answer in time, did
    not declare the capability at ``initialize``, or no stream to it was open.

    ``code`` and ``data`` are the client's JSON-RPC error fields when it sent one.
    """

    def __init__(self, message: str, code: Optional[int] = None, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class ToolHeaders(Mapping[str, str]):
    """Request headers as a tool sees them: names lower-cased, ``Authorization`` left out,
    and the values bound to the caller's token in place of what the request claimed."""

    __slots__ = ("_request", "_bound")

    def __init__(self, request: Mapping[str, str], bound: Optional[Mapping[str, str]] = None) -> None:
        self._request = request
        self._bound = bound or {}

    def __getitem__(self, name: str) -> str:
        key = name.lower()
        if key in self._bound:
            return self._bound[key]
        if key == "authorization":
            raise KeyError(name)
        return self._request[key]

    def _names(self) -> dict[str, None]:
        names = dict.fromkeys(k.lower() for k in self._request if k.lower() != "authorization")
        names.update(dict.fromkeys(self._bound))
        return names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return f"ToolHeaders({dict(self)!r})"


class ClientState:
    """What one client is owed or has promised: its log level, its calls in flight,
    its resource subscriptions, what it declared, and the server's requests waiting
    for its answers. Owned by exactly one principal (``principal``: the grant, None
    when authentication is off): the shell keeps one per MCP session and one per
    grant for requests outside any session, so an answer can only ever complete a
    request that was sent to the same token.

    Mutated from request threads with single dict/set operations and attribute
    stores, atomic in CPython.
    """

    modern = False  # a 2026-07-28 request's own state (``RequestState``)

    def __init__(self, principal: Optional[Grant] = None) -> None:
        self.principal = principal
        self.log_level: Optional[str] = None  # None: the client has not asked for logs
        self.in_flight: dict[object, "Context"] = {}  # by JSON-RPC request id
        self.subscriptions: set[str] = set()  # resource URIs (resources/subscribe)
        self.client_capabilities: dict[str, Any] = {}
        self.client_info: Optional[dict[str, Any]] = None
        self.protocol_version: Optional[str] = None  # negotiated at initialize
        self.pending: dict[object, "Future[dict[str, Any]]"] = {}  # our requests, by id
        self._request_ids = itertools.count(1)
        # Sends a message on the client's standalone (GET) stream; None while none is open.
        self.standalone: Optional[Notify] = None
        self.ended = False

    def expect_response(self) -> tuple[int, "Future[dict[str, Any]]"]:
        """A fresh id for a server-to-client request and the future its answer will fill."""
        request_id = next(self._request_ids)
        future: "Future[dict[str, Any]]" = Future()
        self.pending[request_id] = future
        return request_id, future

    def resolve(self, response: Mapping[str, Any]) -> bool:
        """Hand a client's response to the request waiting for it; False if none waits."""
        future = self.pending.pop(response.get("id"), None)
        if future is None:
            return False
        try:
            future.set_result(dict(response))
        except Exception:  # already settled (an abandoned wait): nothing to hand over
            return False
        return True

    def end(self, reason: str = "the session ended", *, cancel: bool = True) -> None:
        """Fail every request still waiting for the client and, with ``cancel``, flag the
        calls in flight as cancelled (their tools should stop)."""
        self.ended = True
        for request_id in list(self.pending):
            future = self.pending.pop(request_id, None)
            if future is not None and not future.done():
                try:
                    future.set_exception(ClientRequestError(reason))
                except Exception:
                    pass
        if cancel:
            for context in list(self.in_flight.values()):
                context.cancel()
        self.standalone = None

    def cancel(self, request_id: object) -> bool:
        """Flag the call ``request_id`` as cancelled; True if it was running."""
        context = self.in_flight.get(request_id)
        if context is None:
            return False
        context.cancel()
        return True


class RequestState(ClientState):
    """The state of one 2026-07-28 request: nothing outlives it.

    That era declares capabilities, client info and log level in every request's
    ``_meta``; a retry of an input-required request carries the client's answers
    (``input_responses``) and the ``requestState`` handed out (verified, unwrapped).
    """

    modern = True

    def __init__(self, principal: Optional[Grant] = None) -> None:
        super().__init__(principal)
        self.input_responses: dict[str, dict[str, Any]] = {}
        self.request_state: Optional[str] = None


def require_client_capability(state: Optional[ClientState], capability: str) -> None:
    """In a 2026-07-28 request, raise MissingClientCapability (-32021, the request's own
    error) unless its ``_meta`` declared ``capability``; in any other request, nothing."""
    if state is not None and state.modern and capability not in state.client_capabilities:
        raise MissingClientCapability(capability)


class RequestContext:
    """What the shell knows about one HTTP request, as plain data."""

    __slots__ = ("registry", "settings", "protocol_version_header", "headers", "server_version", "grant",
                 "session", "session_id", "notify", "close_stream", "runner")

    def __init__(
        self,
        registry: Any,  # a tools.ToolRegistry (which imports this module)
        settings: Optional[Settings] = None,
        protocol_version_header: Optional[str] = None,
        headers: Mapping[str, str] = {},
        server_version: str = "0",
        grant: Optional[Grant] = None,
        session: Optional[ClientState] = None,
        session_id: Optional[str] = None,
        notify: Optional[Notify] = None,
        close_stream: Optional[Callable[[], None]] = None,
        runner: Optional[Callable[[Callable[[], Any], "Context"], Any]] = None,
    ) -> None:
        self.registry = registry
        self.settings = settings if settings is not None else Settings()
        self.protocol_version_header = protocol_version_header
        self.headers = headers
        self.server_version = server_version
        self.grant = grant  # None: authentication is off, the caller is the owner
        self.session = session if session is not None else ClientState(grant)
        self.session_id = session_id
        self.notify = notify  # sends a notification to the client; None: no stream open
        self.close_stream = close_stream  # ends the call's SSE response early (polling)
        self.runner = runner  # runs host functions (tools.Runner); None: on this thread, no deadline

    def replace(self, **changes: Any) -> "RequestContext":
        """A copy with some fields changed."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return RequestContext(**fields)

    def context_for(self, name: str, request_id: Any, params: Mapping[str, Any]) -> "Context":
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

    def can_use(self, tool: Any) -> bool:
        """Whether the caller's grant lets it see and call ``tool``."""
        if self.grant is None:
            return True
        return self.grant.allows(tool.name, tool.owner_only)


class Context:
    """The request behind one tool call. Declare ``ctx: loopback.Context`` to receive it.

    Attributes:
        headers: the HTTP request headers, names lower-cased, without ``Authorization``;
            values bound to the caller's token replace what the request claimed.
        scope: the scope of the bearer token that authenticated the call ("owner" when
            authentication is off).
        session_id: the MCP session id, or None outside a session.
        request_id: the JSON-RPC id of the ``tools/call`` request.
        tool_name: the name of the tool being called.
    """

    __slots__ = ("headers", "scope", "session_id", "request_id", "tool_name",
                 "_progress_token", "_notify", "_session", "_cancelled", "_request_timeout", "_close_stream")

    def __init__(
        self,
        *,
        headers: Mapping[str, str] = {},
        scope: str = OWNER,
        session_id: Optional[str] = None,
        request_id: Any = None,
        tool_name: str = "",
        progress_token: Any = None,
        notify: Optional[Notify] = None,
        session: Optional[ClientState] = None,
        request_timeout: float = DEFAULT_CLIENT_REQUEST_TIMEOUT,
        close_stream: Optional[Callable[[], None]] = None,
    ) -> None:
        self.headers = headers
        self.scope = scope
        self.session_id = session_id
        self.request_id = request_id
        self.tool_name = tool_name
        self._progress_token = progress_token
        self._notify = notify
        self._session = session
        self._cancelled = False
        self._request_timeout = request_timeout
        self._close_stream = close_stream

    def cancel(self) -> None:
        """Mark this call cancelled: the client cancelled it, it timed out, or its session ended."""
        self._cancelled = True

    @property
    def accepts_input_required(self) -> bool:
        """Whether the call may answer with ``loopback.InputRequired`` (a 2026-07-28 request)."""
        return self._session is not None and self._session.modern

    @property
    def input_responses(self) -> dict[str, Any]:
        """The client's answers to this call's input requests (a 2026-07-28 retry), by key; else {}."""
        return getattr(self._session, "input_responses", None) or {}

    @property
    def request_state(self) -> Optional[str]:
        """The ``state`` of the ``InputRequired`` this call returned last round (verified); else None."""
        return getattr(self._session, "request_state", None)

    @property
    def client_capabilities(self) -> dict[str, Any]:
        """What the client declared it can do (at initialize, or in this request's _meta)."""
        return dict(getattr(self._session, "client_capabilities", None) or {})

    @property
    def is_owner(self) -> bool:
        return self.scope == OWNER

    @property
    def cancelled(self) -> bool:
        """True once the client cancelled this call (``notifications/cancelled``) or it timed out.

        A long tool should look at it between steps and stop early; what it returns
        after cancellation is discarded.
        """
        return self._cancelled

    def progress(self, done: float, total: Optional[float] = None, message: Optional[str] = None) -> None:
        """Report progress: sent as ``notifications/progress`` when the client asked for
        progress (gave a ``progressToken``) and a stream to it is open; otherwise nothing
        happens. ``done`` should grow with each call."""
        if self._progress_token is None or self._notify is None:
            return
        params: dict[str, Any] = {"progressToken": self._progress_token, "progress": done}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        self._send("notifications/progress", params)

    def log(self, level: str, message: Any, *, logger: Optional[str] = None) -> None:
        """Send a log message (``notifications/message``) to the client when it asked for
        logs at ``level`` or a less severe one (``logging/setLevel``) and a stream to it
        is open; otherwise nothing happens. ``message`` is any JSON value."""
        rank = _LOG_RANK.get(level)
        if rank is None:
            raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LOG_LEVELS)}")
        if self._notify is None or self._session is None or self._session.log_level is None:
            return
        if rank < _LOG_RANK[self._session.log_level]:
            return
        params: dict[str, Any] = {"level": level, "data": message}
        if logger is not None:
            params["logger"] = logger
        self._send("notifications/message", params)

    # -- requests to the client ------------------------------------------------

    def request(self, method: str, params: Optional[Mapping[str, Any]] = None,
                timeout: Optional[float] = None) -> dict[str, Any]:
        """Send a JSON-RPC request to the client and wait for its result.

        Sent on this call's own event stream, or on the client's standalone (GET)
        stream when the call has none. Waits at most ``timeout`` seconds (default:
        ``Settings.client_request_timeout``). Raises ``ClientRequestError`` when no
        stream is open, the client answers with an error, or no answer comes in time.
        """
        session = self._session
        if session is not None and session.modern:  # 2026-07-28: no requests on the stream
            raise ClientRequestError(f"cannot send {method}: in MCP 2026-07-28 a tool asks for input by returning loopback.InputRequired")
        send = self._notify or (session.standalone if session is not None else None)
        if session is None or send is None:
            raise ClientRequestError(f"cannot send {method} to the client: no stream to it is open")
        request_id, future = session.expect_response()
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = dict(params)
        wait = self._request_timeout if timeout is None else timeout
        try:
            try:
                send(message)
            except Exception as exc:
                raise ClientRequestError(f"cannot send {method} to the client: {exc}") from None
            try:
                response = future.result(wait)
            except _FutureTimeout:
                raise ClientRequestError(f"the client did not answer {method} within {wait:g} s") from None
        finally:
            session.pending.pop(request_id, None)
        error = response.get("error")
        if error is not None:
            if isinstance(error, dict):
                raise ClientRequestError(f"the client refused {method}: {error.get('message', error)}",
                                         error.get("code"), error.get("data"))
            raise ClientRequestError(f"the client refused {method}: {error!r}")
        result = response.get("result")
        if not isinstance(result, dict):
            raise ClientRequestError(f"the client answered {method} with a result that is not an object")
        return result

    def _require(self, capability: str, method: str) -> None:
        session = self._session
        if session is None or not isinstance(session.client_capabilities, dict) \
                or capability not in session.client_capabilities:
            require_client_capability(session, capability)
            raise ClientRequestError(f"the client did not declare the {capability!r} capability: cannot send {method}")

    def sample(self, messages: Any, *, max_tokens: int, system_prompt: Optional[str] = None,
               timeout: Optional[float] = None, **params: Any) -> dict[str, Any]:
        """Ask the client's model for a completion (``sampling/createMessage``).

        ``messages``: a list of ``{"role", "content"}`` objects, or one string sent as
        a user text message. Other keyword arguments (``temperature``,
        ``modelPreferences``, ``stopSequences``, ...) go into the request as given.
        Returns the client's result (``role``, ``content``, ``model``, ``stopReason``).
        """
        self._require("sampling", "sampling/createMessage")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": {"type": "text", "text": messages}}]
        request: dict[str, Any] = {"messages": list(messages), "maxTokens": max_tokens}
        if system_prompt is not None:
            request["systemPrompt"] = system_prompt
        request.update(params)
        return self.request("sampling/createMessage", request, timeout)

    def elicit(self, message: str, requested_schema: Mapping[str, Any], *,
               timeout: Optional[float] = None) -> dict[str, Any]:
        """Ask the user for input through the client (``elicitation/create``, form mode).

        ``requested_schema`` is a flat JSON Schema object (string, number, boolean and
        enum properties, with ``default`` values where wanted), sent as given. Returns
        the client's result: ``{"action": "accept" | "decline" | "cancel", "content": {...}}``.
        """
        self._require("elicitation", "elicitation/create")
        return self.request("elicitation/create",
                            {"message": message, "requestedSchema": dict(requested_schema)}, timeout)

    def list_roots(self, *, timeout: Optional[float] = None) -> list[dict[str, Any]]:
        """The client's roots (``roots/list``): a list of ``{"uri", "name"}`` objects."""
        self._require("roots", "roots/list")
        roots = self.request("roots/list", None, timeout).get("roots")
        if not isinstance(roots, list):
            raise ClientRequestError("the client answered roots/list without a list of roots")
        return roots

    def close_stream(self) -> None:
        """End this call's event stream now; the client reconnects (``GET`` with
        ``Last-Event-ID``) to receive what follows, the result included. Does nothing
        when the call has no stream. Meant for long calls (SSE polling, SEP-1699)."""
        if self._close_stream is not None:
            self._close_stream()

    def _send(self, method: str, params: dict[str, Any]) -> None:
        assert self._notify is not None
        try:
            self._notify({"jsonrpc": "2.0", "method": method, "params": params})
        except Exception:  # a client gone mid-call must not fail the tool
            _log.debug("could not send %s", method, exc_info=True)

    def __repr__(self) -> str:
        return f"Context(tool={self.tool_name!r}, request_id={self.request_id!r}, scope={self.scope!r})"
