"""Request context: what a running tool may know about, and do for, the request that called it.

Owns: the ``Context`` object handed to tools that declare a parameter annotated
``loopback.Context`` (headers, the caller's scope, session id, progress, logging,
cancellation), the MCP log levels, and the per-session state those need.
Must not know: sockets, HTTP or how notifications reach the client: the transport
gives each context a ``notify`` callable, or none when there is no stream to send on.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Mapping, Optional

from .auth import OWNER

_log = logging.getLogger("loopback")

# RFC 5424 severities, least severe first, as MCP's logging/setLevel names them.
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_LOG_RANK = {name: rank for rank, name in enumerate(LOG_LEVELS)}

Notify = Callable[[dict[str, Any]], None]


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


class SessionState:
    """What one client's requests share: its log level and its requests in flight.

    Until sessions exist there is one per server. Mutated from request threads with
    single dict operations and attribute stores, which are atomic in CPython.
    """

    def __init__(self) -> None:
        self.log_level: Optional[str] = None  # None: the client has not asked for logs
        self.in_flight: dict[tuple[object, object], "Context"] = {}

    def cancel(self, principal: object, request_id: object) -> bool:
        """Flag the call ``request_id`` of ``principal`` as cancelled; True if it was running."""
        context = self.in_flight.get((principal, request_id))
        if context is None:
            return False
        context._cancelled = True
        return True


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
                 "_progress_token", "_notify", "_session", "_cancelled")

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
        session: Optional[SessionState] = None,
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

    def _send(self, method: str, params: dict[str, Any]) -> None:
        assert self._notify is not None
        try:
            self._notify({"jsonrpc": "2.0", "method": method, "params": params})
        except Exception:  # a client gone mid-call must not fail the tool
            _log.debug("could not send %s", method, exc_info=True)

    def __repr__(self) -> str:
        return f"Context(tool={self.tool_name!r}, request_id={self.request_id!r}, scope={self.scope!r})"
