"""Tool registry: plain Python functions described as MCP tools and called with JSON arguments.

Owns: the registry (add, remove, change listeners, the before-call hook, each tool's
task support, advertised as ``execution.taskSupport``), and one call from checked
arguments to a ``CallToolResult``: validation, the hook, the request context, running
it (directly, or through the shell's ``runner``, which enforces ``tool_timeout``), an
``InputRequired`` returned as is to a client that takes it or asked on the call's
stream and run again (handshake era), a ``tasks.Background`` handed back, and
checking structured output. Whether a call becomes a task is ``tasks``' to decide.
Schemas come from ``schema``, result content from ``content``.
Must not know: HTTP, sockets, threads (beyond the registry's lock), sessions or the
JSON-RPC envelope.
"""

from __future__ import annotations

import inspect
import logging
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterator, Mapping, Optional, TypeVar, overload

from ._compat import get_type_hints
from .errors import CallTimeout, LoopbackError
from .jsonrpc import JsonRpcError
from .content import CONTENT_TYPES, InputRequired, error_result, to_call_result
from .context import Context
from .prompts import PromptRegistry
from .catalog import Entries
from .resources import ResourceRegistry
from .tasks import BACKGROUND, Background
from .schema import Output, SchemaError, ToolArgumentError, check_value, checker, compile_output, compile_signature

__all__ = ["CallBlocked", "SchemaError", "Tool", "ToolArgumentError", "ToolRegistry", "check_value"]

_log = logging.getLogger("loopback")

F = TypeVar("F", bound=Callable[..., Any])

# MCP 2025-11-25 "Tool names": 1-128 characters from this set.
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")



def _describe(exc: BaseException) -> str:
    """``Type: message`` for an error result; an exception whose ``str()`` fails is still named."""
    try:
        text = str(exc)
    except Exception:
        text = "(its message could not be formatted)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

class CallBlocked(LoopbackError):
    """Raised by a before-call hook to refuse a call; ``reason`` reaches the model."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


BeforeCall = Callable[[str, dict[str, Any], Context], Optional[Mapping[str, Any]]]
"""``hook(tool_name, arguments, context)``: None lets the call go ahead, a mapping
replaces the arguments (checked again), ``raise CallBlocked(reason)`` refuses it."""


Runner = Callable[[Callable[[], Any], Context], Any]
"""How a call is run: ``runner(call, context)`` returns ``call()``'s value or raises what it
raises, or ``errors.CallTimeout`` when it overran (the shell's ``workers.deadline_runner``)."""


def _context_param(func: Callable[..., Any]) -> Optional[str]:
    """The parameter annotated ``Context``, for tools whose input schema is hand-written."""
    try:
        hints = get_type_hints(func)  # as on 3.11+, also on 3.9 (``X | Y`` strings)
    except Exception:
        hints = {}
    for param in inspect.signature(func).parameters.values():
        if hints.get(param.name, param.annotation) in (Context, "Context", "loopback.Context"):
            return param.name
    return None


@dataclass(frozen=True)
class Tool:
    """One registered tool: its MCP description and the function behind it."""

    name: str
    func: Callable[..., Any] = field(repr=False)
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"}, repr=False)
    title: Optional[str] = None
    annotations: Optional[Mapping[str, Any]] = None
    owner_only: bool = False
    output: Optional[Output] = field(default=None, repr=False)
    context_param: Optional[str] = field(default=None, repr=False)
    convert: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = field(default=None, repr=False)
    task_support: str = "forbidden"  # "optional" | "required": may run as a task (``tasks``)
    on_request: bool = False  # a task tool that runs on the request and returns ``tasks.Background``

    @cached_property
    def _check_input(self) -> Callable[[Any, str], Any]:
        """The compiled check of the arguments (``schema.checker``), looked up once per tool."""
        return checker(self.input_schema)

    @cached_property
    def _check_output(self) -> Callable[[Any, str], Any]:
        assert self.output is not None
        return checker(self.output.schema)

    def definition(self) -> dict[str, Any]:
        """The ``Tool`` object of ``tools/list``."""
        tool: dict[str, Any] = {"name": self.name}
        if self.title:
            tool["title"] = self.title
        if self.description:
            tool["description"] = self.description
        tool["inputSchema"] = self.input_schema
        if self.output is not None:
            tool["outputSchema"] = self.output.schema
        if self.annotations:
            tool["annotations"] = dict(self.annotations)
        if self.task_support != "forbidden":
            tool["execution"] = {"taskSupport": self.task_support}
        return tool

    def call(
        self,
        arguments: Mapping[str, Any],
        context: Optional[Context] = None,
        *,
        before_call: Optional[BeforeCall] = None,
        runner: Optional[Runner] = None,
    ) -> dict[str, Any]:
        """Check the arguments, run the hook and the function, return a ``CallToolResult``.

        Never raises for anything the tool or the client did: every failure becomes a
        result with ``isError: true`` whose text says what went wrong.
        """
        try:
            checked = self._check_input(dict(arguments), "arguments")
        except ToolArgumentError as exc:
            return error_result(f"Invalid arguments for tool {self.name!r}: {exc}")
        except SchemaError as exc:  # a hand-written schema with a broken $ref or pattern
            _log.error("tool %r has an unusable input schema: %s", self.name, exc)
            return error_result(f"Tool {self.name!r} cannot be called: its input schema is invalid")
        if context is None:
            context = Context(tool_name=self.name)
        if before_call is not None:
            try:
                replaced = before_call(self.name, checked, context)
            except CallBlocked as exc:
                return error_result(f"Tool {self.name!r} was blocked: {exc.reason}")
            except Exception:
                _log.exception("before-call hook failed for tool %r; the call is refused", self.name)
                return error_result(f"Tool {self.name!r} was blocked: the before-call hook failed")
            if replaced is not None:
                try:
                    checked = check_value(dict(replaced), self.input_schema, "arguments")
                except (ToolArgumentError, TypeError, ValueError) as exc:
                    _log.error("before-call hook gave tool %r invalid arguments: %s", self.name, exc)
                    return error_result(f"Tool {self.name!r} was blocked: the before-call hook gave invalid arguments")
        kwargs = self.convert(checked) if self.convert is not None else checked
        if self.context_param is not None:
            kwargs = {**kwargs, self.context_param: context}  # the hook may hold on to ``checked``
        func = self.func
        return self.outcome(lambda: func(**kwargs), context, runner)

    def outcome(self, produce: Callable[[], Any], context: Context, runner: Optional[Runner] = None,
                rounds: int = 8) -> dict[str, Any]:
        """Run ``produce`` (the function, or a ``tasks.Background``'s work) and turn what it
        returns or raises into a ``CallToolResult``.

        An ``InputRequired`` goes back to a 2026-07-28 client as is; for a client of the
        handshake era its requests are sent on the call's stream (``Context.request``)
        and ``produce`` runs again with the answers, at most ``rounds`` times. A
        ``Background`` is returned as ``{"_loopback_background": work}`` for the caller.
        A ``JsonRpcError`` raised passes: it is the request's protocol error.
        """
        for _ in range(rounds):
            try:
                if runner is None:
                    value = produce()
                else:
                    value = runner(produce, context)
            except CallTimeout as exc:
                _log.warning("tool %r timed out after %g s", self.name, exc.seconds)
                return error_result(f"Tool {self.name!r} timed out after {exc.seconds:g} seconds")
            except JsonRpcError:
                raise  # a protocol error (-32021 for a capability, or the tool's own), not a tool error
            # SystemExit and KeyboardInterrupt too: raised by a tool, they would otherwise
            # unwind the connection thread and leave the client without an answer.
            except (Exception, SystemExit, KeyboardInterrupt) as exc:
                _log.warning("tool %r raised %s", self.name, type(exc).__name__)
                _log.debug("tool %r failed", self.name, exc_info=True)
                return error_result(f"Tool {self.name!r} failed: {_describe(exc)}")
            if isinstance(value, Background):
                return {BACKGROUND: value.work}
            if not isinstance(value, InputRequired):
                break
            if context.accepts_input_required:
                return value.to_result()  # eras.after checks and seals it; the client retries
            refusal = context.carry_out(value.requests, value.state)
            if refusal is not None:
                return error_result(f"Tool {self.name!r} needs input the client did not give: {refusal}")
        else:
            return error_result(f"Tool {self.name!r} asked for input more than {rounds} times")
        result = to_call_result(value, self.output)
        if self.output is not None and "structuredContent" in result:
            try:
                self._check_output(result["structuredContent"], "result")
            except ToolArgumentError as exc:
                _log.warning("tool %r returned a value that does not match its output schema: %s", self.name, exc)
                return error_result(f"Tool {self.name!r} returned a value that does not match its declared return type: {exc}")
        return result


class ToolRegistry:
    """A thread-safe, ordered set of tools. Reads take no lock (copy-on-write snapshot).

    What one server offers besides its tools hangs off it: ``resources`` (a
    ``ResourceRegistry``) and ``prompts`` (a ``PromptRegistry``).
    """

    def __init__(self) -> None:
        self._tools = Entries[str, Tool]("tool")
        self.before_call_hook: Optional[BeforeCall] = None
        self.resources = ResourceRegistry()
        self.prompts = PromptRegistry()

    def add(
        self,
        func: Callable[..., Any],
        *,
        name: Optional[str] = None,
        title: Optional[str] = None,
        description: Optional[str] = None,
        annotations: Optional[Mapping[str, Any]] = None,
        input_schema: Optional[Mapping[str, Any]] = None,
        output_schema: Optional[Mapping[str, Any]] = None,
        owner_only: bool = False,
        replace: bool = False,
        task: Optional[str] = None,
        on_request: bool = False,
    ) -> Tool:
        """Register ``func`` as a tool and return it.

        The name defaults to the function's name; the description to its docstring
        without the parameter section; the input and output schemas to those derived
        from its signature. ``input_schema``/``output_schema`` take hand-written JSON
        Schemas instead (type ``object``). ``owner_only`` hides the tool from tokens
        whose scope is not "owner". A name already taken raises ``ValueError`` unless
        ``replace=True``; an unsupported annotation raises ``SchemaError`` (a
        ``TypeError``) naming the function and parameter.

        ``task="optional"`` lets a client that can take a task (advertised as
        ``execution.taskSupport``) get one at once while the function runs on the
        server's task pool; ``task="required"`` refuses clients that cannot.
        ``on_request=True``: the function runs on the request first and returns
        ``loopback.Background(work)`` for the part that runs as the task.
        """
        task_support = "forbidden" if task is None else task
        if task_support not in ("forbidden", "optional", "required"):
            raise ValueError(f"tool {name or getattr(func, '__name__', '')!r}: task must be 'optional', 'required' or None, not {task!r}")
        if not callable(func):
            raise TypeError(f"a tool must be callable, not {type(func).__name__}")
        tool_name = name if name is not None else getattr(func, "__name__", "")
        if not isinstance(tool_name, str) or not _NAME_RE.match(tool_name):
            raise ValueError(f"invalid tool name {tool_name!r}: use 1-128 characters from A-Z a-z 0-9 _ - .")
        for label, schema in (("input_schema", input_schema), ("output_schema", output_schema)):
            if schema is not None and (not isinstance(schema, Mapping) or schema.get("type") != "object"):
                raise ValueError(f"tool {tool_name!r}: {label} must be a JSON Schema with type 'object'")
        if input_schema is None:
            signature = compile_signature(func, tool_name, context_types=(Context,), content_types=CONTENT_TYPES)
            schema, convert, context_param = signature.input_schema, signature.converter, signature.context_param
            derived_output, doc = signature.output, signature.description
        else:
            schema, convert, context_param = dict(input_schema), None, _context_param(func)
            derived_output = None if output_schema is not None else compile_output(
                func, tool_name, content_types=CONTENT_TYPES)
            doc = inspect.getdoc(func) or ""
        output = Output(schema=dict(output_schema), wrapped=False) if output_schema is not None else derived_output
        if description is None:
            description = doc
        tool = Tool(
            name=tool_name,
            func=func,
            description=description,
            input_schema=schema,
            title=title,
            annotations=dict(annotations) if annotations else None,
            owner_only=bool(owner_only),
            output=output,
            context_param=context_param,
            convert=convert,
            task_support=task_support,
            on_request=bool(on_request),
        )
        self._tools.add(tool_name, tool, replace=replace, taken=f"a tool named {tool_name!r} is already registered")
        return tool

    @overload
    def tool(self, func: F) -> F: ...

    @overload
    def tool(self, func: None = None, **options: Any) -> Callable[[F], F]: ...

    def tool(self, func: Optional[F] = None, **options: Any) -> Any:
        """Decorator: ``@registry.tool`` or ``@registry.tool(name=..., owner_only=True, ...)``.

        Takes the options of ``add``. Returns the function unchanged, so it stays
        callable as plain Python.
        """
        if func is not None:
            self.add(func, **options)
            return func

        def register(f: F) -> F:
            self.add(f, **options)
            return f

        return register

    def remove(self, name: str) -> bool:
        """Unregister a tool; True if it was there."""
        return self._tools.remove(name)

    def before_call(self, hook: Optional[BeforeCall]) -> Optional[BeforeCall]:
        """Set (or with None, clear) the hook run before every call; usable as a decorator.

        The hook gets ``(tool_name, arguments, context)`` with the arguments already
        checked against the input schema. It returns None to let the call go ahead or
        a mapping to replace the arguments, or raises ``CallBlocked(reason)`` to refuse
        the call; the model then sees the reason as a tool error. A hook that raises
        anything else refuses the call too (and the error is logged).
        """
        if hook is not None and not callable(hook):
            raise TypeError("the before-call hook must be callable")
        self.before_call_hook = hook
        return hook

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every add or remove; returns a function that unsubscribes.

        Servers use this to send ``notifications/tools/list_changed``. A listener must
        be quick and must not raise (errors are logged).
        """
        return self._tools.changed.add(listener)

    def get(self, name: str) -> Optional[Tool]:
        return self._tools.get(name)

    def tools(self) -> list[Tool]:
        """The registered tools in registration order (a snapshot)."""
        return self._tools.values()

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self.tools())
