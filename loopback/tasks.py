"""Tasks: long-running tool calls answered at once with a task the client polls.

Owns: the task records (id, owner, status, TTL, result or error, pending input
requests), their bounds (``Settings.max_tasks``, ``max_tasks_per_grant``,
``max_task_result_bytes``, ``task_ttl``: room is only ever made from the same owner's
finished tasks), who may see a task (only the grant that created it: any other gets
the same -32602 as for an unknown id), and the task methods of both eras:

* 2025-11-25 (core "tasks" utility): a ``tools/call`` carrying ``params.task``
  returns ``{"task": Task}``; ``tasks/get``, ``tasks/result`` (blocks until the task
  is terminal, then answers what the call would have), ``tasks/list``,
  ``tasks/cancel``; ``notifications/tasks/status`` on the session's stream.
* 2026-07-28 (extension ``io.modelcontextprotocol/tasks``, SEP-2663): task creation
  is server-directed when the request's ``_meta`` client capabilities declare the
  extension; the result is a flat ``CreateTaskResult`` (``resultType: "task"``);
  ``tasks/get`` inlines ``result``/``error``/``inputRequests``; ``tasks/update``
  delivers ``inputResponses``; ``tasks/cancel`` acks; the methods answer -32021
  without the extension.

A task's tool runs through ``TaskManager.submit`` (the shell's bounded pool,
``workers.TaskPool``). An ``InputRequired`` the tool returns parks the task in
``input_required`` (2026-07-28: the requests are shown on ``tasks/get`` and
answered with ``tasks/update``; 2025-era: they are sent to the client as requests
tagged ``related-task``, on the stream of a waiting ``tasks/result`` or else the
session's GET stream, ``Context.carry_out``), then the tool runs again with the
answers.
Must not know: sockets, HTTP, or how threads are made (the shell's ``submit``).
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as _FutureTimeout
from typing import Any, Callable, Mapping, Optional

from . import jsonrpc
from .catalog import page
from .context import ClientState, Context, RequestContext, RequestState
from .jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND, MISSING_REQUIRED_CLIENT_CAPABILITY, JsonRpcError
from .settings import Settings

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
TASK_SUPPORT = ("forbidden", "optional", "required")

WORKING = "working"
INPUT_REQUIRED = "input_required"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

RELATED_TASK = "io.modelcontextprotocol/related-task"

BACKGROUND = "_loopback_background"  # how tools.Tool.outcome hands a Background's work back

Submit = Callable[[Callable[[], None]], None]


class Background:
    """What a tool declared with ``task=`` and ``on_request=True`` returns to continue as a task.

    The function runs on the request thread first (so it can ask for input the
    usual way, ``loopback.InputRequired``); returning ``Background(work)`` turns the
    call into a task whose result is what ``work()`` returns, run on the task pool.
    A client that cannot take a task gets ``work()``'s result on the same request.
    """

    __slots__ = ("work",)

    def __init__(self, work: Callable[[], Any]) -> None:
        if not callable(work):
            raise TypeError("Background needs a callable")
        self.work = work


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + f".{int(timestamp * 1000) % 1000:03d}Z"


def missing_extension() -> JsonRpcError:
    """-32021 naming the tasks extension, shaped as the extension's example shows."""
    return JsonRpcError(MISSING_REQUIRED_CLIENT_CAPABILITY,
                        f"Missing required client capability: extensions/{TASKS_EXTENSION}",
                        {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}})


def declares_extension(state: ClientState) -> bool:
    """Whether the request (2026-07-28) or session declared the tasks extension."""
    extensions = state.client_capabilities.get("extensions") if isinstance(state.client_capabilities, dict) else None
    return isinstance(extensions, dict) and TASKS_EXTENSION in extensions


class Task:
    """One task: plain data, changed only under its manager's lock."""

    __slots__ = ("id", "owner", "tool_name", "modern", "status", "status_message", "created", "updated",
                 "ttl", "poll_ms", "result", "error", "input_requests", "input_responses", "request_state",
                 "context", "done", "size", "run", "state")

    def __init__(self, task_id: str, owner: Any, tool_name: str, modern: bool, now: float, ttl: float,
                 poll_ms: int, context: Context, state: ClientState) -> None:
        self.id = task_id
        self.owner = owner
        self.tool_name = tool_name
        self.modern = modern
        self.status = WORKING
        self.status_message: Optional[str] = None
        self.created = now
        self.updated = now
        self.ttl = ttl  # seconds, from creation
        self.poll_ms = poll_ms
        self.result: Optional[dict[str, Any]] = None
        self.error: Optional[JsonRpcError] = None
        self.input_requests: dict[str, dict[str, Any]] = {}  # still unanswered (2026-07-28)
        self.input_responses: dict[str, dict[str, Any]] = {}  # answered so far
        self.request_state: Optional[str] = None
        self.context = context
        self.state = state
        self.done: "Future[None]" = Future()
        self.size = 0
        self.run: Optional[Callable[[], dict[str, Any]]] = None  # produces the tool's next outcome

    @property
    def ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def fields(self) -> dict[str, Any]:
        """The ``Task`` object of either era."""
        task: dict[str, Any] = {"taskId": self.id, "status": self.status,
                                "createdAt": _iso(self.created), "lastUpdatedAt": _iso(self.updated)}
        if self.status_message is not None:
            task["statusMessage"] = self.status_message
        if self.modern:
            task["ttlMs"] = self.ttl_ms
            task["pollIntervalMs"] = self.poll_ms
        else:
            task["ttl"] = self.ttl_ms
            task["pollInterval"] = self.poll_ms
        return task

    def detailed(self) -> dict[str, Any]:
        """2026-07-28 ``tasks/get``: the task with its result, error or input requests inlined."""
        task = self.fields()
        if self.status == COMPLETED and self.result is not None:
            task["result"] = self.result
        elif self.status == FAILED and self.error is not None:
            task["error"] = jsonrpc.error(None, self.error)["error"]
        elif self.status == INPUT_REQUIRED:
            task["inputRequests"] = dict(self.input_requests)
        return task


class TaskManager:
    """Every task of one server, by id. Thread-safe; ``submit`` runs work on the shell's pool."""

    def __init__(self, settings: Settings, submit: Submit, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._submit = submit
        self._clock = clock
        self._lock = threading.Lock()
        self._tasks: dict[str, Task] = {}  # in creation order
        self._bytes = 0
        self.closed = False
        self.on_status: Optional[Callable[[Task], None]] = None  # the shell's status notifications

    # -- bookkeeping ---------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return len(self._tasks)

    def _expire(self, now: float) -> list[Task]:
        """Drop tasks past their TTL (caller holds the lock); the running ones among them are returned to cancel."""
        gone = [task for task in self._tasks.values() if now >= task.created + task.ttl]
        for task in gone:
            self._drop(task)
        return [task for task in gone if task.status not in TERMINAL]

    def _drop(self, task: Task) -> None:
        del self._tasks[task.id]
        self._bytes -= task.size

    def _cancel_running(self, tasks: list[Task]) -> None:
        for task in tasks:
            task.context.cancel()
            if not task.done.done():
                task.done.set_result(None)

    def create(self, owner: Any, tool_name: str, modern: bool, context: Context, state: ClientState,
               ttl: Optional[float] = None) -> Task:
        """A new task in ``working``, kept for ``ttl`` seconds (at most ``Settings.task_ttl``).

        Past ``max_tasks_per_grant`` (this owner's) or ``max_tasks`` (all owners'), the
        owner's oldest finished task is dropped for room, never another owner's; when the
        owner has none finished the call is refused (-32603, "too many tasks").
        """
        settings = self.settings
        ttl = settings.task_ttl if ttl is None else min(ttl, settings.task_ttl)
        now = self._clock()
        with self._lock:
            if self.closed:
                raise JsonRpcError(INTERNAL_ERROR, "Internal error: the server is closing")
            expired = self._expire(now)
            mine = [t for t in self._tasks.values() if t.owner is owner]  # oldest first
            while len(mine) >= settings.max_tasks_per_grant or len(self._tasks) >= settings.max_tasks:
                finished = next((t for t in mine if t.status in TERMINAL), None)
                if finished is None:
                    break
                self._drop(finished)
                mine.remove(finished)
            if len(mine) >= settings.max_tasks_per_grant or len(self._tasks) >= settings.max_tasks:
                self._cancel_running(expired)
                if len(mine) >= settings.max_tasks_per_grant:
                    detail = f"this token has {settings.max_tasks_per_grant} unfinished"
                else:
                    detail = f"{settings.max_tasks} are kept"
                raise JsonRpcError(INTERNAL_ERROR, f"Too many tasks: {detail}; try again later")
            task = Task(secrets.token_urlsafe(16), owner, tool_name, modern, now, ttl,
                        max(1, int(settings.task_poll_interval * 1000)), context, state)
            self._tasks[task.id] = task
        self._cancel_running(expired)
        return task

    def find(self, owner: Any, task_id: Any) -> Task:
        """The caller's task ``task_id``; -32602 for an unknown, expired or someone else's task."""
        if not isinstance(task_id, str):
            raise JsonRpcError(INVALID_PARAMS, "Invalid params: taskId must be a string")
        with self._lock:
            expired = self._expire(self._clock())
            task = self._tasks.get(task_id)
        self._cancel_running(expired)
        if task is None or task.owner is not owner:  # another token's task is indistinguishable from none
            raise JsonRpcError(INVALID_PARAMS, f"Invalid params: unknown task {task_id!r}")
        return task

    def owned(self, owner: Any) -> list[Task]:
        with self._lock:
            expired = self._expire(self._clock())
            tasks = [task for task in self._tasks.values() if task.owner is owner]
        self._cancel_running(expired)
        return tasks

    def _set(self, task: Task, status: str, *, result: Optional[dict[str, Any]] = None,
             error: Optional[JsonRpcError] = None, message: Optional[str] = None) -> bool:
        """Move ``task`` to ``status`` unless it is already terminal; True when it moved."""
        size = 0
        if result is not None:
            size = len(jsonrpc.encode(result))
            if size > self.settings.max_task_result_bytes:
                result = {"content": [{"type": "text", "text": (
                    f"Tool {task.tool_name!r} returned {size} bytes, more than a task keeps "
                    f"({self.settings.max_task_result_bytes}, Settings.max_task_result_bytes)")}], "isError": True}
                size = len(jsonrpc.encode(result))
        with self._lock:
            if task.status in TERMINAL:
                return False
            task.status = status
            task.status_message = message
            task.updated = max(self._clock(), task.updated)
            if result is not None:
                task.result = result
            if error is not None:
                task.error = error
            if task.id in self._tasks:
                self._bytes += size - task.size
                task.size = size
                # Room for this result: drop the owner's oldest finished tasks until the
                # results fit (never another owner's: past the bound, this one is kept).
                for other in list(self._tasks.values()):
                    if self._bytes <= self.settings.max_task_result_bytes:
                        break
                    if other is not task and other.owner is task.owner and other.status in TERMINAL:
                        self._drop(other)
        if status in TERMINAL and not task.done.done():
            task.done.set_result(None)
        self._notify(task)
        return True

    def _notify(self, task: Task) -> None:
        listener = self.on_status
        if listener is not None:
            try:
                listener(task)
            except Exception:  # a client gone must not fail the task
                pass

    def cancel(self, task: Task) -> bool:
        """Cancel a task that is not terminal: its tool sees ``ctx.cancelled``; its result is dropped."""
        moved = self._set(task, CANCELLED, message="cancelled by the client")
        if moved:
            task.context.cancel()
        return moved

    def end_owner(self, owner: Any) -> None:
        """A grant ended (revoked, expired): its tasks are cancelled and forgotten."""
        with self._lock:
            mine = [task for task in self._tasks.values() if task.owner is owner]
        for task in mine:
            self.cancel(task)
            with self._lock:
                if task.id in self._tasks:
                    self._drop(task)

    def close(self) -> None:
        """Cancel every running task; the shell then stops its pool."""
        with self._lock:
            self.closed = True
            running = [task for task in self._tasks.values() if task.status not in TERMINAL]
        for task in running:
            self._set(task, CANCELLED, message="the server closed")
            task.context.cancel()

    # -- running ---------------------------------------------------------------

    def start(self, task: Task, run: Callable[[], dict[str, Any]]) -> None:
        """Run ``run()`` (it returns a ``CallToolResult``, or an input-required one) on the pool."""

        def work() -> None:
            if task.status in TERMINAL:
                return
            try:
                result = run()
            except JsonRpcError as exc:  # the protocol error of the call: the task failed
                self._set(task, FAILED, error=exc)
                return
            except BaseException as exc:  # a bug of ours: the task fails, the worker lives on
                self._set(task, FAILED, error=JsonRpcError(INTERNAL_ERROR, f"Internal error: {type(exc).__name__}"))
                return
            if task.context.cancelled or task.status in TERMINAL:
                return
            if result.get("resultType") == "input_required":
                self._ask(task, result)
                return
            if not task.modern and result.get("isError") is True:
                # 2025-11-25: a tool result with isError fails the task (tasks/result still
                # answers the result); the 2026-07-28 extension keeps "failed" for protocol errors.
                self._set(task, FAILED, result=result, message="the tool reported an error")
                return
            self._set(task, COMPLETED, result=result)

        task.run = run
        try:
            self._submit(work)
        except Exception:
            self._set(task, FAILED, error=JsonRpcError(INTERNAL_ERROR, "Internal error: the task could not be started"))

    def _ask(self, task: Task, result: dict[str, Any]) -> None:
        """The tool needs input: show its requests on ``tasks/get`` (``input_required``)."""
        requests = result.get("inputRequests") or {}
        state = result.get("requestState")
        with self._lock:
            task.request_state = state if isinstance(state, str) else None
            pending = {key: dict(request) for key, request in requests.items() if key not in task.input_responses}
            task.input_requests = pending
        if not pending:  # asked only for what it has: run again with it
            self._rerun(task)
            return
        self._set(task, INPUT_REQUIRED, message="waiting for the client's input")
        if task.modern:
            return  # shown on tasks/get, answered with tasks/update
        # Handshake era: sent as requests to the client (on a waiting tasks/result's stream,
        # else the session's standalone stream), tagged with the task, from this worker.
        related = {RELATED_TASK: {"taskId": task.id}}
        tagged = {key: {"method": request.get("method"),
                        "params": {**(request.get("params") or {}),
                                   "_meta": {**((request.get("params") or {}).get("_meta") or {}), **related}}}
                  for key, request in pending.items()}
        deadline = time.monotonic() + self.settings.client_request_timeout
        while not task.context.has_stream and task.status not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.02)  # until the client calls tasks/result (or opens its GET stream)
        if task.status in TERMINAL:
            return
        refusal = task.context.carry_out(tagged, task.request_state)
        if task.status in TERMINAL:
            return
        if refusal is not None:
            self._set(task, COMPLETED, result={"content": [{"type": "text", "text": (
                f"Tool {task.tool_name!r} needed input the client did not give: {refusal}")}], "isError": True})
            return
        with self._lock:
            task.input_responses.update(task.context.input_responses)
            task.input_requests = {}
        if self._set(task, WORKING):
            self._rerun(task)

    def _rerun(self, task: Task) -> None:
        task.context.set_input(task.input_responses, task.request_state)
        assert task.run is not None
        self.start(task, task.run)

    def update(self, task: Task, responses: Mapping[str, Any]) -> None:
        """2026-07-28 ``tasks/update``: record answers; once none is pending, run the tool again."""
        with self._lock:
            if task.status != INPUT_REQUIRED:
                return
            for key, value in responses.items():
                if key in task.input_requests and isinstance(value, dict):
                    del task.input_requests[key]
                    task.input_responses[key] = value
            resume = not task.input_requests
        if resume and self._set(task, WORKING):
            self._rerun(task)


# -- tools/call ------------------------------------------------------------------


def _task_param_ttl(params: Mapping[str, Any]) -> Optional[float]:
    task = params.get("task")
    ttl = task.get("ttl") if isinstance(task, dict) else None
    if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and ttl > 0:
        return ttl / 1000.0
    return None


def wants_task(tool: Any, params: Mapping[str, Any], ctx: RequestContext) -> bool:
    """Whether this ``tools/call`` runs as a task; raises when the tool needs one the client cannot take."""
    support = getattr(tool, "task_support", "forbidden")
    state = ctx.session
    if ctx.tasks is None:
        return False
    if support == "forbidden":
        if not state.modern and isinstance(params.get("task"), dict):  # 2025-11-25: SHOULD be -32601
            raise JsonRpcError(METHOD_NOT_FOUND, f"Tool {tool.name!r} does not run as a task")
        return False
    if state.modern:
        if declares_extension(state):
            return True
        if support == "required":
            raise missing_extension()
        return False
    if isinstance(params.get("task"), dict):
        return True
    if support == "required":
        raise JsonRpcError(METHOD_NOT_FOUND, f"Tool {tool.name!r} must be called as a task (params.task)")
    return False


def create_for_call(tool: Any, params: Mapping[str, Any], ctx: RequestContext, context: Context,
                    run: Callable[[Context], dict[str, Any]]) -> dict[str, Any]:
    """Make and start the task of a ``tools/call``; the era's ``CreateTaskResult``.

    ``run(task_context)`` produces the call's result; the task's context has no stream
    of its own (the request has been answered) and, in 2026-07-28, a state holding
    what the creating request declared.
    """
    manager: TaskManager = ctx.tasks
    state = ctx.session
    if state.modern:
        task_state: ClientState = RequestState(ctx.grant)
        task_state.client_capabilities = dict(state.client_capabilities)
        task_state.client_info = state.client_info
        task_state.protocol_version = state.protocol_version
    else:
        task_state = state
    task_context = Context(headers=context.headers, scope=context.scope, session_id=context.session_id,
                           request_id=context.request_id, tool_name=context.tool_name, notify=None,
                           session=task_state, request_timeout=ctx.settings.client_request_timeout)
    task_context.defer_input()  # its InputRequired reaches the task: asked the way its era allows
    if context.input_responses or context.request_state is not None:  # gathered before the task
        task_context.set_input(context.input_responses, context.request_state)
    task = manager.create(ctx.grant, tool.name, state.modern, task_context, task_state, _task_param_ttl(params))
    manager.start(task, lambda: run(task_context))
    if state.modern:
        return {**task.fields(), "resultType": "task"}
    return {"task": task.fields()}


# -- methods -----------------------------------------------------------------------


def _manager(ctx: RequestContext) -> TaskManager:
    manager = ctx.tasks
    if manager is None:
        raise JsonRpcError(METHOD_NOT_FOUND, "Method not found: tasks are not enabled")
    if ctx.session.modern and not declares_extension(ctx.session):
        raise missing_extension()
    return manager  # type: ignore[no-any-return]


def _get(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    task = _manager(ctx).find(ctx.grant, params.get("taskId"))
    return task.detailed() if task.modern or ctx.session.modern else task.fields()


def _cancel(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    manager = _manager(ctx)
    task = manager.find(ctx.grant, params.get("taskId"))
    if ctx.session.modern:
        manager.cancel(task)
        return {}  # an ack; the status shows on the next tasks/get
    if not manager.cancel(task):
        raise JsonRpcError(INVALID_PARAMS, f"Invalid params: task {task.id!r} is already {task.status}")
    return task.fields()


def _update(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    manager = _manager(ctx)
    task = manager.find(ctx.grant, params.get("taskId"))
    responses = params.get("inputResponses")
    if not isinstance(responses, dict):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: inputResponses must be an object")
    manager.update(task, responses)
    return {}


def _result(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    """2025-11-25 ``tasks/result``: wait until the task is terminal, then answer as the call would have."""
    manager = _manager(ctx)
    task = manager.find(ctx.grant, params.get("taskId"))
    if ctx.notify is not None:  # the task's requests to the client go on this response meanwhile
        task.context.use_stream(ctx.notify)
    try:
        while not task.done.done():
            if ctx.session.ended or manager.closed:
                raise JsonRpcError(INTERNAL_ERROR, "Internal error: the server is closing")
            try:
                task.done.result(1.0)
            except _FutureTimeout:
                continue
    finally:
        if ctx.notify is not None:
            task.context.use_stream(None)
    meta = {RELATED_TASK: {"taskId": task.id}}
    if task.status == FAILED and task.error is not None:
        raise JsonRpcError(task.error.code, task.error.message, task.error.data)
    if task.status == CANCELLED or task.result is None:
        return {"content": [{"type": "text", "text": f"Task {task.id} was cancelled"}], "isError": True, "_meta": meta}
    result = dict(task.result)
    result["_meta"] = {**(result.get("_meta") or {}), **meta}
    return result


def _list(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    manager = _manager(ctx)
    if not ctx.settings.auth:  # requestors cannot be told apart: not offered (see capabilities)
        raise JsonRpcError(METHOD_NOT_FOUND, "Method not found: tasks/list needs authentication")
    tasks = manager.owned(ctx.grant)
    return page([_Listed(task.fields()) for task in tasks], params, ctx.settings.page_size, "tasks")


class _Listed:
    """A task as ``catalog.page`` lists it."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields

    def definition(self) -> dict[str, Any]:
        return self._fields


HANDLERS = {
    "tasks/get": _get,
    "tasks/cancel": _cancel,
    "tasks/update": _update,
    "tasks/result": _result,
    "tasks/list": _list,
}
HANDSHAKE_ONLY = frozenset({"tasks/result", "tasks/list"})  # removed by the 2026-07-28 extension
MODERN_ONLY = frozenset({"tasks/update"})


def capabilities(can_list: bool = True) -> dict[str, Any]:
    """The 2025-11-25 ``tasks`` server capability. ``tasks.list`` only when requestors are told
    apart (authentication on): otherwise a list would show every task to anyone."""
    offered: dict[str, Any] = {"cancel": {}, "requests": {"tools": {"call": {}}}}
    if can_list:
        offered = {"list": {}, **offered}
    return offered
