"""``subscriptions/listen`` (2026-07-28): a long-lived request whose response stream carries
the change notifications the client opted in to.

Owns: the notification filter (``toolsListChanged``, ``promptsListChanged``,
``resourcesListChanged``, ``resourceSubscriptions``, and the tasks extension's
``taskIds``) and its validation, the acknowledgement
(``notifications/subscriptions/acknowledged``, first on the stream), the
``io.modelcontextprotocol/subscriptionId`` stamp on every message, which open
subscription gets which notification (``Listeners.deliver``; a task's status only to
the grant that owns it), and the graceful end (the request's result) when the server
closes. The client ends a subscription by closing the stream: the shell's disconnect
watcher cancels the request.
Must not know: sockets, threads or how the stream is framed (the request's ``notify``).
Spec: modelcontextprotocol.io/specification/2026-07-28/basic/patterns/subscriptions;
ext-tasks "Task Status Notifications".
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as _FutureTimeout
from typing import Any, Callable, Mapping, Optional

from . import jsonrpc
from .context import Context, RequestContext
from .jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, JsonRpcError
from .tasks import declares_extension, missing_extension

SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
_FLAGS = {
    "toolsListChanged": "notifications/tools/list_changed",
    "promptsListChanged": "notifications/prompts/list_changed",
    "resourcesListChanged": "notifications/resources/list_changed",
}
_POLL = 0.25  # seconds between looks at whether the client left


class Subscription:
    """One open ``subscriptions/listen`` request."""

    __slots__ = ("id", "owner", "flags", "uris", "task_ids", "send", "ended")

    def __init__(self, subscription_id: Any, owner: Any, flags: frozenset[str], uris: frozenset[str],
                 task_ids: frozenset[str], send: Callable[[dict[str, Any]], None]) -> None:
        self.id = subscription_id
        self.owner = owner
        self.flags = flags  # notification methods asked for
        self.uris = uris
        self.task_ids = task_ids
        self.send = send
        self.ended: "Future[None]" = Future()

    def honoured(self) -> dict[str, Any]:
        """The filter as acknowledged: what this server will send."""
        agreed: dict[str, Any] = {name: True for name, method in _FLAGS.items() if method in self.flags}
        if self.uris:
            agreed["resourceSubscriptions"] = sorted(self.uris)
        if self.task_ids:
            agreed["taskIds"] = sorted(self.task_ids)
        return agreed

    def wants(self, method: str, params: Optional[Mapping[str, Any]]) -> bool:
        if method in self.flags:
            return True
        if method == "notifications/resources/updated":
            return isinstance(params, Mapping) and params.get("uri") in self.uris
        return False

    def emit(self, method: str, params: Optional[Mapping[str, Any]]) -> bool:
        body = dict(params or {})
        body["_meta"] = {**(body.get("_meta") or {}), SUBSCRIPTION_ID: self.id}
        try:
            self.send(jsonrpc.notification(method, body))
        except Exception:  # the client left: the watcher ends the request
            return False
        return True


class Listeners:
    """The open subscriptions of one server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[Subscription] = set()
        self.closed = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def add(self, subscription: Subscription) -> None:
        with self._lock:
            if self.closed:
                raise JsonRpcError(INTERNAL_ERROR, "Internal error: the server is closing")
            self._open.add(subscription)

    def remove(self, subscription: Subscription) -> None:
        with self._lock:
            self._open.discard(subscription)

    def deliver(self, method: str, params: Optional[Mapping[str, Any]] = None) -> int:
        """Send a change notification to every subscription that asked for it; how many took it."""
        with self._lock:
            targets = [s for s in self._open if s.wants(method, params)]
        return sum(1 for s in targets if s.emit(method, params))

    def deliver_task(self, owner: Any, task_id: str, detailed: Mapping[str, Any]) -> int:
        """``notifications/tasks`` to the owner's subscriptions that named the task."""
        with self._lock:
            targets = [s for s in self._open if s.owner is owner and task_id in s.task_ids]
        return sum(1 for s in targets if s.emit("notifications/tasks", detailed))

    def close(self) -> None:
        """End every subscription gracefully (each request answers with its result)."""
        with self._lock:
            self.closed = True
            ending = list(self._open)
        for subscription in ending:
            if not subscription.ended.done():
                subscription.ended.set_result(None)


def _strings(value: Any, name: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise JsonRpcError(INVALID_PARAMS, f"Invalid params: notifications.{name} must be an array of strings")
    return frozenset(value)


def _listen(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    listeners: Optional[Listeners] = ctx.listeners
    if listeners is None or ctx.notify is None:
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: subscriptions/listen needs a response stream "
                                           "(Accept: text/event-stream)")
    wanted = params.get("notifications")
    if not isinstance(wanted, dict):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: subscriptions/listen needs a 'notifications' object")
    flags = set()
    for name, method in _FLAGS.items():
        value = wanted.get(name)
        if value is not None and not isinstance(value, bool):
            raise JsonRpcError(INVALID_PARAMS, f"Invalid params: notifications.{name} must be a boolean")
        if value:
            flags.add(method)
    uris = _strings(wanted.get("resourceSubscriptions"), "resourceSubscriptions")
    task_ids = _strings(wanted.get("taskIds"), "taskIds")
    if task_ids:
        if not declares_extension(ctx.session):
            raise missing_extension()
        manager = ctx.tasks
        owned = {task.id for task in manager.owned(ctx.grant)} if manager is not None else set()
        task_ids = frozenset(task_ids & owned)  # only the caller's own tasks are agreed to
    subscription = Subscription(request_id, ctx.grant, frozenset(flags), uris, task_ids, ctx.notify)
    # Registered before the acknowledgement: nothing that changes after the client is told is missed.
    listeners.add(subscription)
    watch = Context(request_id=request_id, tool_name="subscriptions/listen")
    in_flight = ctx.session.in_flight
    in_flight[request_id] = watch  # the client leaving (or notifications/cancelled) cancels it
    try:
        if not subscription.emit("notifications/subscriptions/acknowledged", {"notifications": subscription.honoured()}):
            raise JsonRpcError(INTERNAL_ERROR, "Internal error: the stream could not be written")
        while not watch.cancelled and not ctx.session.ended:
            try:
                subscription.ended.result(_POLL)
                break
            except _FutureTimeout:
                continue
    finally:
        listeners.remove(subscription)
        if in_flight.get(request_id) is watch:
            del in_flight[request_id]
    return {"_meta": {SUBSCRIPTION_ID: request_id}}


HANDLERS = {"subscriptions/listen": _listen}
MODERN_ONLY = frozenset(HANDLERS)
