"""Tool registry: plain Python functions described as MCP tools and called with JSON arguments.

Owns: turning a function's signature into an input JSON Schema, checking arguments
against that schema before a call, and turning return values or exceptions into
MCP ``CallToolResult`` objects.
Must not know: HTTP, sockets, sessions or the JSON-RPC envelope.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import threading
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, TypeVar, Union, overload

_log = logging.getLogger("loopback")

F = TypeVar("F", bound=Callable[..., Any])

# MCP 2025-11-25 "Tool names": 1-128 characters from this set.
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")

_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_NONE_TYPES = (type(None), None)


class ToolArgumentError(ValueError):
    """Arguments that do not match a tool's input schema; the message says what to fix."""


def _schema_for(annotation: Any, where: str) -> dict[str, Any]:
    """JSON Schema for one annotation; TypeError naming ``where`` for what is not supported."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    if annotation in _NONE_TYPES:
        return {"type": "null"}
    if annotation is list:
        return {"type": "array"}
    if annotation is dict:
        return {"type": "object"}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list and len(args) == 1:
        return {"type": "array", "items": _schema_for(args[0], where)}
    if origin is dict and len(args) == 2 and args[0] is str:
        return {"type": "object", "additionalProperties": _schema_for(args[1], where)}
    if origin is Union or type(annotation).__name__ == "UnionType":
        members = [a for a in args if a is not type(None)]
        if len(members) == 1 and len(args) == 2:  # Optional[T]
            inner = _schema_for(members[0], where)
            if set(inner) == {"type"} and isinstance(inner["type"], str):
                return {"type": [inner["type"], "null"]}
            return {"anyOf": [inner, {"type": "null"}]}
    raise TypeError(f"{where}: unsupported type annotation {annotation!r}")


def _json_type_ok(value: Any, json_type: str) -> bool:
    if json_type == "string":
        return isinstance(value, str)
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if json_type == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if json_type == "boolean":
        return isinstance(value, bool)
    if json_type == "array":
        return isinstance(value, list)
    if json_type == "object":
        return isinstance(value, dict)
    if json_type == "null":
        return value is None
    return False


def _describe(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
             list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def check_value(value: Any, schema: Mapping[str, Any], path: str) -> Any:
    """Check ``value`` against the schema subset this module emits; return it, losslessly coerced.

    Raises ToolArgumentError with a message that names the path and what was expected.
    """
    if "anyOf" in schema:
        problems = []
        for option in schema["anyOf"]:
            try:
                return check_value(value, option, path)
            except ToolArgumentError as exc:
                problems.append(str(exc))
        raise ToolArgumentError(" or ".join(problems))
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(v) for v in schema["enum"])
        raise ToolArgumentError(f"{path} must be one of {allowed}, not {json.dumps(value)}")
    declared = schema.get("type")
    if declared is None:
        return value
    types = [declared] if isinstance(declared, str) else list(declared)
    if not any(_json_type_ok(value, t) for t in types):
        expected = " or ".join(types)
        raise ToolArgumentError(f"{path} must be of type {expected}, got {_describe(value)}")
    if isinstance(value, int) and not isinstance(value, bool) and "number" in types and "integer" not in types:
        return float(value)  # lossless: an integer where a float is declared
    if isinstance(value, list) and "items" in schema:
        return [check_value(item, schema["items"], f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return _check_object(value, schema, path)
    return value


def _check_object(value: dict[str, Any], schema: Mapping[str, Any], path: str) -> dict[str, Any]:
    properties: Mapping[str, Any] = schema.get("properties", {})
    missing = [name for name in schema.get("required", ()) if name not in value]
    if missing:
        raise ToolArgumentError(f"{path} is missing required field(s): {', '.join(missing)}")
    extra = schema.get("additionalProperties", True)
    checked: dict[str, Any] = {}
    for key, item in value.items():
        if key in properties:
            checked[key] = check_value(item, properties[key], f"{path}.{key}")
        elif extra is False:
            known = ", ".join(properties) or "none"
            raise ToolArgumentError(f"{path} has unexpected field {key!r} (allowed: {known})")
        elif isinstance(extra, dict):
            checked[key] = check_value(item, extra, f"{path}[{key!r}]")
        else:
            checked[key] = item
    return checked


def _input_schema(func: Callable[..., Any], name: str) -> dict[str, Any]:
    """The input schema of ``func``: one property per keyword parameter, no others allowed."""
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:  # unresolvable string annotations
        raise TypeError(f"tool {name!r}: cannot resolve type hints: {exc}") from None
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(func).parameters.values():
        where = f"tool {name!r}, parameter {param.name!r}"
        if param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
            raise TypeError(f"{where}: tools take keyword arguments only")
        if param.kind is param.VAR_KEYWORD:
            raise TypeError(f"{where}: **kwargs cannot be described by a schema; list the parameters")
        schema = _schema_for(hints.get(param.name, inspect.Parameter.empty), where)
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
        else:
            try:
                json.dumps(param.default)
            except (TypeError, ValueError):
                raise TypeError(f"{where}: default {param.default!r} is not JSON-serialisable") from None
            schema = {**schema, "default": param.default}
        properties[param.name] = schema
    result: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        result["required"] = required
    result["additionalProperties"] = False
    return result


# One encoder for every result: json.dumps with options builds a new one per call.
_to_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def to_call_result(value: Any) -> dict[str, Any]:
    """A tool's return value as a ``CallToolResult``.

    ``str`` → one text block; ``None`` → no content; numbers, booleans, lists → their
    JSON as text; ``dict`` → its JSON as text and as ``structuredContent``.
    """
    if isinstance(value, str):
        return {"content": [_text(value)], "isError": False}
    if value is None:
        return {"content": [], "isError": False}
    try:
        text = _to_json(value)
    except (TypeError, ValueError) as exc:
        return error_result(f"the tool returned a value that cannot be sent as JSON: {exc}")
    result: dict[str, Any] = {"content": [_text(text)], "isError": False}
    if isinstance(value, dict):
        result["structuredContent"] = value
    return result


def error_result(message: str) -> dict[str, Any]:
    """A tool execution error: reaches the model, which may correct itself."""
    return {"content": [_text(message)], "isError": True}


@dataclass(frozen=True)
class Tool:
    """One registered tool: its MCP description and the function behind it."""

    name: str
    func: Callable[..., Any] = field(repr=False)
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"}, repr=False)
    title: Optional[str] = None
    annotations: Optional[Mapping[str, Any]] = None

    def definition(self) -> dict[str, Any]:
        """The ``Tool`` object of ``tools/list``."""
        tool: dict[str, Any] = {"name": self.name}
        if self.title:
            tool["title"] = self.title
        if self.description:
            tool["description"] = self.description
        tool["inputSchema"] = self.input_schema
        if self.annotations:
            tool["annotations"] = dict(self.annotations)
        return tool

    def call(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Check the arguments, run the function, return a ``CallToolResult``; never raises."""
        try:
            checked = check_value(dict(arguments), self.input_schema, "arguments")
        except ToolArgumentError as exc:
            return error_result(f"Invalid arguments for tool {self.name!r}: {exc}")
        try:
            value = self.func(**checked)
        except Exception as exc:
            _log.warning("tool %r raised %s", self.name, type(exc).__name__)
            _log.debug("tool %r failed", self.name, exc_info=True)
            return error_result(f"Tool {self.name!r} failed: {type(exc).__name__}: {exc}")
        return to_call_result(value)


def _description_of(func: Callable[..., Any]) -> str:
    doc = inspect.getdoc(func)
    return doc or ""


class ToolRegistry:
    """A thread-safe, ordered set of tools. Reads take no lock (copy-on-write snapshot)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tools: dict[str, Tool] = {}

    def add(
        self,
        func: Callable[..., Any],
        *,
        name: Optional[str] = None,
        title: Optional[str] = None,
        description: Optional[str] = None,
        annotations: Optional[Mapping[str, Any]] = None,
        input_schema: Optional[Mapping[str, Any]] = None,
        replace: bool = False,
    ) -> Tool:
        """Register ``func`` as a tool and return it.

        The name defaults to the function's name, the description to its docstring,
        the input schema to one derived from its signature. A name already taken raises
        ``ValueError`` unless ``replace=True``. An unsupported annotation raises
        ``TypeError`` naming the function and parameter.
        """
        if not callable(func):
            raise TypeError(f"a tool must be callable, not {type(func).__name__}")
        tool_name = name if name is not None else getattr(func, "__name__", "")
        if not isinstance(tool_name, str) or not _NAME_RE.match(tool_name):
            raise ValueError(f"invalid tool name {tool_name!r}: use 1-128 characters from A-Z a-z 0-9 _ - .")
        if input_schema is None:
            schema = _input_schema(func, tool_name)
        else:
            if not isinstance(input_schema, Mapping) or input_schema.get("type") != "object":
                raise ValueError(f"tool {tool_name!r}: input_schema must be a JSON Schema with type 'object'")
            schema = dict(input_schema)
        tool = Tool(
            name=tool_name,
            func=func,
            description=_description_of(func) if description is None else description,
            input_schema=schema,
            title=title,
            annotations=dict(annotations) if annotations else None,
        )
        with self._lock:
            if tool_name in self._tools and not replace:
                raise ValueError(f"a tool named {tool_name!r} is already registered")
            tools = dict(self._tools)
            tools[tool_name] = tool
            self._tools = tools  # swapped whole: readers never see a dict being changed
        return tool

    @overload
    def tool(self, func: F) -> F: ...

    @overload
    def tool(self, func: None = None, **options: Any) -> Callable[[F], F]: ...

    def tool(self, func: Optional[F] = None, **options: Any) -> Any:
        """Decorator: ``@registry.tool`` or ``@registry.tool(name=..., description=...)``.

        Returns the function unchanged, so it stays callable as plain Python.
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
        with self._lock:
            if name not in self._tools:
                return False
            tools = dict(self._tools)
            del tools[name]
            self._tools = tools
            return True

    def get(self, name: str) -> Optional[Tool]:
        return self._tools.get(name)

    def tools(self) -> list[Tool]:
        """The registered tools in registration order (a snapshot)."""
        return list(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self.tools())
