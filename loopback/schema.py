"""Tool signatures as JSON Schema: schemas from type hints and docstrings, argument checks and conversion.

Owns: turning a function's parameters, type hints and docstring into a tool's input
schema, description and output schema (JSON Schema 2020-12, everything inlined, no
``$ref``); checking JSON values against a schema, generated or hand-written (``checker``:
compiled once per schema, a flat scalar object schema in one loop); turning
checked JSON arguments into the Python values the annotations ask for (enum members,
dataclass instances, tuples, sets) and return values back into JSON data
(``to_jsonable``: the one converter every result goes through).
Must not know: HTTP, sockets, threads, MCP JSON-RPC.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import math
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Optional

from ._compat import UNION_ORIGINS, get_type_hints, is_qualifier
from .errors import LoopbackError

__all__ = [
    "Output",
    "SchemaError",
    "Signature",
    "ToolArgumentError",
    "check_value",
    "compile_signature",
    "to_jsonable",
]


class ToolArgumentError(LoopbackError, ValueError):
    """Arguments that do not match a tool's input schema; the message says what to fix."""


class SchemaError(LoopbackError, TypeError):
    """A signature that JSON Schema cannot describe, or a schema this module cannot use.

    Raised at registration; the message names the tool and the parameter.
    """


Converter = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class Output:
    """A tool's ``outputSchema`` and how return values fill it."""

    schema: dict[str, Any]  # always {"type": "object", ...}
    wrapped: bool  # True: the structured value is {"result": value}


@dataclasses.dataclass(frozen=True)
class Signature:
    """What a tool's function signature says, ready for ``tools/list`` and ``tools/call``."""

    input_schema: dict[str, Any]
    description: str  # the docstring without its parameter section
    context_param: Optional[str]  # receives the request context; not in the schema
    output: Optional[Output]  # None: the return value is content, not structured data
    # Only the parameters whose JSON value is not already the Python value.
    _converters: tuple[tuple[str, Converter], ...] = dataclasses.field(default=(), repr=False, compare=False)

    @property
    def converter(self) -> Optional[Callable[[dict[str, Any]], dict[str, Any]]]:
        """``convert``, or None when no parameter needs converting (a call then skips it)."""
        return self.convert if self._converters else None

    def convert(self, checked: dict[str, Any]) -> dict[str, Any]:
        """Checked JSON arguments as the Python values the annotations ask for.

        Returns ``checked`` itself when no parameter needs converting (all scalars).
        """
        if not self._converters:
            return checked
        arguments = dict(checked)
        for name, convert in self._converters:
            if name in arguments:
                arguments[name] = convert(arguments[name])
        return arguments


# -- schema generation ----------------------------------------------------------------------------

_NONE_TYPE = type(None)
# The JSON type of each type json.loads makes.
_JSON_TYPE_NAMES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                                     list: "array", dict: "object", _NONE_TYPE: "null"}
_SCALAR_SCHEMAS: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_EMPTY = inspect.Parameter.empty


@dataclasses.dataclass(frozen=True)
class _Node:
    """One compiled annotation."""

    schema: dict[str, Any]
    convert: Optional[Converter]  # None: the checked JSON value already is the Python value
    hashable: bool  # converted values can be set members


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


def _enum_schema(values: list[Any]) -> dict[str, Any]:
    """``{"enum": values}`` (JSON scalars), with the JSON type they share, if they share one."""
    json_types = {_JSON_TYPE_NAMES[type(value)] for value in values}
    if len(json_types) == 1:
        return {"type": json_types.pop(), "enum": values}
    return {"enum": values}


def _class_description(cls: type) -> Optional[str]:
    """The class's own docstring (not an inherited one, not the text ``@dataclass`` makes up)."""
    doc = cls.__dict__.get("__doc__")
    if not doc or (issubclass(cls, enum.Enum) and doc == "An enumeration."):  # made up by Enum before 3.11
        return None
    if dataclasses.is_dataclass(cls):
        try:
            signature = str(inspect.signature(cls)).replace(" -> None", "")
        except (TypeError, ValueError):  # @dataclass then leaves the signature out too
            signature = ""
        if doc == cls.__name__ + signature:
            return None
    return inspect.cleandoc(doc)


def _is_typeddict(annotation: Any) -> bool:
    # Duck-typed: typing.is_typeddict does not know typing_extensions.TypedDict on 3.11.
    return (
        isinstance(annotation, type)
        and issubclass(annotation, dict)
        and hasattr(annotation, "__required_keys__")
        and hasattr(annotation, "__total__")
    )


def _typeddict_key(cls: type, key: str, hint: Any) -> tuple[Any, bool]:
    """A TypedDict key's value type, and whether the key is required.

    An explicit Required/NotRequired wins over the class's totality; it is read from the
    hint because ``__required_keys__`` misses it when annotations are strings
    (``from __future__ import annotations``) before Python 3.12.
    """
    required = key in getattr(cls, "__required_keys__")
    while True:
        origin = typing.get_origin(hint)
        if is_qualifier(origin, "Required") or is_qualifier(origin, "NotRequired"):
            required = is_qualifier(origin, "Required")
        elif not is_qualifier(origin, "ReadOnly"):
            return hint, required
        hint = typing.get_args(hint)[0]


def _annotated_description(annotation: Any) -> Optional[str]:
    if typing.get_origin(annotation) is typing.Annotated:
        return next((m for m in annotation.__metadata__ if isinstance(m, str)), None)
    return None


class _Compiler:
    """Compiles the annotation of one parameter (or of the return value) into a ``_Node``.

    ``where`` starts every error message ("tool 'f', parameter 'x'"). ``for_output``
    describes values going out: a dataclass then shows every field, including those
    ``__init__`` does not take, since ``to_jsonable`` sends them all.
    """

    def __init__(self, where: str, top: Any, *, for_output: bool = False) -> None:
        self.where = where
        self.top = top
        self.for_output = for_output
        self.open_classes: list[type] = []  # dataclasses and TypedDicts being compiled

    def unsupported(self, annotation: Any, why: str = "") -> SchemaError:
        message = f"{self.where}: unsupported type annotation {_type_name(annotation)}"
        if annotation is not self.top:
            message += f" (in {_type_name(self.top)})"
        return SchemaError(message + (f": {why}" if why else ""))

    def compile(self, annotation: Any) -> _Node:
        if annotation is Any or annotation is _EMPTY:
            return _Node({}, None, False)
        if annotation is None or annotation is _NONE_TYPE:
            return _Node({"type": "null"}, None, True)
        if isinstance(annotation, type) and annotation in _SCALAR_SCHEMAS:
            return _Node({"type": _SCALAR_SCHEMAS[annotation]}, None, True)
        if hasattr(annotation, "__supertype__"):  # typing.NewType (a function before Python 3.10)
            return self.compile(annotation.__supertype__)
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            inner = self.compile(args[0])
            description = _annotated_description(annotation)
            if description is None:
                return inner
            return _Node({**inner.schema, "description": description}, inner.convert, inner.hashable)
        if origin in UNION_ORIGINS:
            return self.compile_union(args)
        if origin is typing.Literal:
            return self.compile_literal(annotation, args)
        if annotation in (list, Sequence) or origin in (list, Sequence):
            return self.compile_list(args)
        if annotation in (tuple, typing.Tuple) or origin is tuple:
            return self.compile_tuple(annotation, args)
        if annotation in (set, frozenset) or origin in (set, frozenset):
            return self.compile_set(annotation, origin or annotation, args)
        if annotation in (dict, Mapping) or origin in (dict, Mapping):
            return self.compile_dict(annotation, args)
        if origin is None and isinstance(annotation, type):
            if issubclass(annotation, enum.Enum):
                return self.compile_enum(annotation)
            if _is_typeddict(annotation):
                return self.compile_typeddict(annotation)
            if dataclasses.is_dataclass(annotation):
                return self.compile_dataclass(annotation)
        raise self.unsupported(annotation)

    def compile_union(self, members: tuple[Any, ...]) -> _Node:
        nodes = [self.compile(member) for member in members]
        hashable = all(node.hashable for node in nodes)
        non_null = [node for member, node in zip(members, nodes) if member is not _NONE_TYPE]
        if len(nodes) == 2 and len(non_null) == 1:  # Optional[T]
            inner = non_null[0]
            convert = None if inner.convert is None else _none_or(inner.convert)
            return _Node(_optional_schema(inner.schema), convert, hashable)
        # Any among the members accepts every value: an anyOf holding {} says no more than {}.
        schema = {} if any(not node.schema for node in nodes) else {"anyOf": [node.schema for node in nodes]}
        if all(node.convert is None for node in nodes):
            return _Node(schema, None, hashable)
        return _Node(schema, _first_fitting([(node.schema, node.convert) for node in nodes]), hashable)

    def compile_literal(self, annotation: Any, values: tuple[Any, ...]) -> _Node:
        members: dict[Any, enum.Enum] = {}
        json_values = []
        for value in values:
            if isinstance(value, enum.Enum):
                members[value.value] = value
                value = value.value
            if value is not None and type(value) not in _SCALAR_SCHEMAS:
                raise self.unsupported(annotation, f"literal {value!r} is not a JSON string, number, boolean or null")
            json_values.append(value)
        convert = (lambda value: members.get(value, value)) if members else None
        return _Node(_enum_schema(json_values), convert, True)

    def compile_list(self, args: tuple[Any, ...]) -> _Node:
        item = self.compile(args[0]) if args else _Node({}, None, False)
        schema: dict[str, Any] = {"type": "array"}
        if item.schema:
            schema["items"] = item.schema
        convert_item = item.convert
        if convert_item is None:
            return _Node(schema, None, False)
        return _Node(schema, lambda value: [convert_item(x) for x in value], False)

    def compile_tuple(self, annotation: Any, args: tuple[Any, ...]) -> _Node:
        if annotation in (tuple, typing.Tuple):  # bare: any length, any items
            return _Node({"type": "array"}, tuple, False)
        if not args:  # tuple[()]
            return _Node({"type": "array", "maxItems": 0}, tuple, True)
        if len(args) == 2 and args[1] is Ellipsis:
            item = self.compile(args[0])
            schema: dict[str, Any] = {"type": "array"}
            if item.schema:
                schema["items"] = item.schema
            convert_item = item.convert
            if convert_item is None:
                return _Node(schema, tuple, item.hashable)
            return _Node(schema, lambda value: tuple(map(convert_item, value)), item.hashable)
        if Ellipsis in args:
            raise self.unsupported(annotation)
        items = [self.compile(arg) for arg in args]
        schema = {
            "type": "array",
            "prefixItems": [item.schema for item in items],
            "items": False,
            "minItems": len(items),
            "maxItems": len(items),
        }
        hashable = all(item.hashable for item in items)
        converters = [item.convert for item in items]
        if all(convert is None for convert in converters):
            return _Node(schema, tuple, hashable)

        def convert(value: list[Any]) -> tuple[Any, ...]:
            return tuple(x if c is None else c(x) for c, x in zip(converters, value))

        return _Node(schema, convert, hashable)

    def compile_set(self, annotation: Any, kind: type, args: tuple[Any, ...]) -> _Node:
        item = self.compile(args[0]) if args else _Node({}, None, False)
        if not item.hashable:
            raise self.unsupported(
                annotation, "set items must be hashable: str, int, float, bool, an Enum, a Literal, a tuple "
                "of those or a frozen dataclass (e.g. set[str])")
        schema: dict[str, Any] = {"type": "array", "items": item.schema, "uniqueItems": True}
        convert_item = item.convert
        if convert_item is None:
            return _Node(schema, kind, kind is frozenset)
        return _Node(schema, lambda value: kind(map(convert_item, value)), kind is frozenset)

    def compile_dict(self, annotation: Any, args: tuple[Any, ...]) -> _Node:
        schema: dict[str, Any] = {"type": "object"}
        if not args:
            return _Node(schema, None, False)
        if args[0] is not str:
            raise self.unsupported(annotation, "JSON object keys are strings, so the key type must be str")
        value = self.compile(args[1])
        if value.schema:
            schema["additionalProperties"] = value.schema
        convert_value = value.convert
        if convert_value is None:
            return _Node(schema, None, False)
        return _Node(schema, lambda obj: {k: convert_value(v) for k, v in obj.items()}, False)

    def compile_enum(self, cls: type[enum.Enum]) -> _Node:
        members = {member.value: member for member in cls}
        for value in members:
            if value is not None and type(value) not in _SCALAR_SCHEMAS:
                raise self.unsupported(cls, f"value {value!r} is not a JSON string, number, boolean or null")
        schema = _enum_schema(list(members))
        description = _class_description(cls)
        if description:
            schema["description"] = description
        return _Node(schema, members.__getitem__, True)

    def _type_hints(self, cls: type) -> dict[str, Any]:
        if cls in self.open_classes:
            raise SchemaError(f"{self.where}: {cls.__qualname__} contains itself; recursive types are not supported")
        try:
            return get_type_hints(cls)
        except Exception as exc:  # unresolvable string annotations
            raise SchemaError(f"{self.where}: cannot resolve the type hints of {cls.__qualname__}: {exc}") from None

    def compile_typeddict(self, cls: type) -> _Node:
        hints = self._type_hints(cls)
        keys = {key: _typeddict_key(cls, key, hint) for key, hint in hints.items()}
        self.open_classes.append(cls)
        try:
            fields = {key: self.compile(value_type) for key, (value_type, _) in keys.items()}
        finally:
            self.open_classes.pop()
        schema = _object_schema(
            {key: node.schema for key, node in fields.items()},
            [key for key, (_, required) in keys.items() if required],
            _class_description(cls),
        )
        converters = {key: node.convert for key, node in fields.items() if node.convert is not None}
        if not converters:
            return _Node(schema, None, False)

        def convert(value: dict[str, Any]) -> dict[str, Any]:
            return {key: (converters[key](x) if key in converters else x) for key, x in value.items()}

        return _Node(schema, convert, False)

    def compile_dataclass(self, cls: type) -> _Node:
        hints = self._type_hints(cls)
        fields = [f for f in dataclasses.fields(cls) if f.init or self.for_output]
        self.open_classes.append(cls)
        try:
            nodes = {f.name: self.compile(hints[f.name]) for f in fields}
        finally:
            self.open_classes.pop()
        properties: dict[str, Any] = {}
        required: list[str] = []
        for f in fields:
            if f.default is not dataclasses.MISSING:
                what = f"the default of field {f.name!r} of {cls.__qualname__}"
                properties[f.name] = {**nodes[f.name].schema, "default": self.json_default(f.default, what)}
            else:
                properties[f.name] = nodes[f.name].schema
                if f.default_factory is dataclasses.MISSING:
                    required.append(f.name)
        schema = _object_schema(properties, required, _class_description(cls))
        converters = {name: node.convert for name, node in nodes.items() if node.convert is not None}
        hashable = getattr(cls, "__hash__", None) is not None and all(node.hashable for node in nodes.values())

        def convert(value: dict[str, Any]) -> Any:
            if converters:
                value = {name: (converters[name](x) if name in converters else x) for name, x in value.items()}
            return cls(**value)

        return _Node(schema, convert, hashable)

    def json_default(self, default: Any, what: str) -> Any:
        try:
            value = to_jsonable(default)
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise SchemaError(f"{self.where}: {what} {default!r} is not JSON-serialisable") from None
        return value


def _object_schema(properties: dict[str, Any], required: list[str], description: Optional[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    return schema


def _optional_schema(inner: dict[str, Any]) -> dict[str, Any]:
    if not inner:  # Optional[Any]
        return {}
    # anyOf even for a plain scalar: clients that map schemas to a one-type dialect
    # (Gemini's function declarations, the Inspector warns) reject "type": [T, "null"].
    return {"anyOf": [inner, {"type": "null"}]}


def _none_or(convert: Converter) -> Converter:
    return lambda value: None if value is None else convert(value)


def _first_fitting(options: list[tuple[dict[str, Any], Optional[Converter]]]) -> Converter:
    """A Union's converter: the first member whose schema the value fits converts it.

    The value was checked against the whole union, so when no other member fits,
    the last one does and needs no second check.
    """
    *earlier, (_, convert_last) = options

    def convert(value: Any) -> Any:
        for schema, convert_option in earlier:
            try:
                fitted = check_value(value, schema, "")
            except ToolArgumentError:
                continue
            return fitted if convert_option is None else convert_option(fitted)
        return value if convert_last is None else convert_last(value)

    return convert


def _is_context(annotation: Any, context_types: tuple[type, ...]) -> bool:
    """Whether ``annotation`` is a context type, possibly Annotated or Optional."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    if origin in UNION_ORIGINS:
        members = [m for m in typing.get_args(annotation) if m is not _NONE_TYPE]
        return len(members) == 1 and _is_context(members[0], context_types)
    return isinstance(annotation, type) and issubclass(annotation, context_types)


def _involves(annotation: Any, content_types: tuple[type, ...]) -> bool:
    """Whether a return annotation declares content: a content type, bare or inside a list, tuple or union."""
    origin = typing.get_origin(annotation)
    if origin is None:
        return isinstance(annotation, type) and issubclass(annotation, content_types)
    if origin in (typing.Annotated, *UNION_ORIGINS, list, tuple, Sequence):
        return any(_involves(arg, content_types) for arg in typing.get_args(annotation))
    return False


def _output(annotation: Any, tool_name: str, content_types: tuple[type, ...]) -> Optional[Output]:
    """The output schema for a return annotation, after the official SDK's FastMCP convention.

    Nothing for no annotation, None, Any or content; an object-like type (dict,
    TypedDict, dataclass) as it is; anything else wrapped as ``{"result": ...}``.
    """
    if annotation is _EMPTY or annotation is None or annotation is _NONE_TYPE or annotation is Any:
        return None
    if content_types and _involves(annotation, content_types):
        return None
    compiler = _Compiler(f"tool {tool_name!r}, return annotation", annotation, for_output=True)
    schema = compiler.compile(annotation).schema
    if schema.get("type") == "object":
        return Output(schema, wrapped=False)
    return Output({"type": "object", "properties": {"result": schema}, "required": ["result"]}, wrapped=True)


def compile_output(func: Callable[..., Any], tool_name: str, *, content_types: tuple[type, ...] = ()) -> Optional[Output]:
    """Only the output schema of ``func``: for tools whose input schema is hand-written."""
    try:
        hints = get_type_hints(func)
    except Exception as exc:
        raise SchemaError(f"tool {tool_name!r}: cannot resolve type hints: {exc}") from None
    return _output(hints.get("return", _EMPTY), tool_name, content_types)


def compile_signature(
    func: Callable[..., Any],
    tool_name: str,
    *,
    context_types: tuple[type, ...] = (),
    content_types: tuple[type, ...] = (),
) -> Signature:
    """Describe ``func`` as a tool: input schema, description, context parameter, output schema.

    Raises SchemaError (naming the tool and parameter) for what JSON Schema cannot
    describe: positional-only parameters, ``*args``, ``**kwargs``, unsupported or
    recursive types, defaults JSON cannot hold, unresolvable string annotations.
    """
    try:
        hints = get_type_hints(func)
    except Exception as exc:  # unresolvable string annotations, or not a function
        raise SchemaError(f"tool {tool_name!r}: cannot resolve type hints: {exc}") from None
    description, param_docs = _parse_docstring(inspect.getdoc(func) or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    converters: list[tuple[str, Converter]] = []
    context_param: Optional[str] = None
    for param in inspect.signature(func).parameters.values():
        where = f"tool {tool_name!r}, parameter {param.name!r}"
        if param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
            raise SchemaError(f"{where}: tools take keyword arguments only")
        if param.kind is param.VAR_KEYWORD:
            raise SchemaError(f"{where}: **kwargs cannot be described by a schema; list the parameters")
        hint = hints.get(param.name, _EMPTY)
        if context_types and _is_context(hint, context_types):
            if context_param is not None:
                raise SchemaError(f"{where}: only one parameter may take the context, and {context_param!r} does")
            context_param = param.name
            continue
        compiler = _Compiler(where, hint)
        node = compiler.compile(hint)
        schema = dict(node.schema)
        if param.name in param_docs and _annotated_description(hint) is None:
            schema["description"] = param_docs[param.name]
        if param.default is _EMPTY:
            required.append(param.name)
        else:
            schema["default"] = compiler.json_default(param.default, "default")
        properties[param.name] = schema
        if node.convert is not None:
            converters.append((param.name, node.convert))
    input_schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        input_schema["required"] = required
    input_schema["additionalProperties"] = False
    return Signature(
        input_schema=input_schema,
        description=description,
        context_param=context_param,
        output=_output(hints.get("return", _EMPTY), tool_name, content_types),
        _converters=tuple(converters),
    )


# -- docstrings -----------------------------------------------------------------------------------

_GOOGLE_HEADER = re.compile(r"(?:Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments)\s*:")
_GOOGLE_ENTRY = re.compile(r"\*{0,2}(?P<name>\w+)\s*(?:\([^)]*\))?\s*:(?P<text>.*)")
_NUMPY_HEADER = re.compile(r"(?:Parameters|Other Parameters)")
_NUMPY_UNDERLINE = re.compile(r"-{3,}")
_NUMPY_ANY_HEADER = re.compile(r"\w[\w ]*")  # the section after the parameters: "Returns", "See Also"...
_NUMPY_ENTRY = re.compile(r"(?P<names>\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?::.*)?")
_REST_FIELD = re.compile(
    r":(?:(?:param|parameter|arg|argument|key|keyword)\s+(?:[^:]+?\s+)?\*{0,2}(?P<name>\w+)"
    r"|type\s+\*{0,2}\w+)\s*:(?P<text>.*)"
)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _join(lines: list[str]) -> str:
    """Lines of text as paragraphs: lines joined by spaces, paragraphs by a blank line."""
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            paragraphs[-1].append(line.strip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return "\n\n".join(" ".join(p) for p in paragraphs if p)


def _collect_entries(lines: list[str], start: int, end: int, entry: re.Pattern[str],
                     params: dict[str, str]) -> None:
    """Parameter entries in lines[start:end]: an entry line at the block's own indent, then deeper lines.

    ``entry`` matches an entry line; its group "name" (or "names", comma-separated)
    and optional group "text" (the start of the description) are used.
    """
    body = [i for i in range(start, end) if lines[i].strip()]
    if not body:
        return
    base = _indent(lines[body[0]])
    names: list[str] = []
    text: list[str] = []

    def flush() -> None:
        description = _join(text)
        if description:
            for name in names:
                params.setdefault(name, description)

    for i in range(start, end):
        line = lines[i]
        match = entry.fullmatch(line.strip()) if line.strip() and _indent(line) == base else None
        if match:
            flush()
            found = match.groupdict()
            names = [n.strip().lstrip("*") for n in (found.get("names") or found["name"]).split(",")]
            text = [found.get("text") or ""]
        else:
            text.append(line)
    flush()


def _google_sections(lines: list[str], keep: list[bool], params: dict[str, str]) -> None:
    i = 0
    while i < len(lines):
        if not _GOOGLE_HEADER.fullmatch(lines[i].strip()):
            i += 1
            continue
        header_indent = _indent(lines[i])
        end = i + 1
        while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > header_indent):
            end += 1
        _collect_entries(lines, i + 1, end, _GOOGLE_ENTRY, params)
        keep[i:end] = [False] * (end - i)
        i = end


def _is_numpy_header(lines: list[str], i: int, pattern: re.Pattern[str]) -> bool:
    return (i + 1 < len(lines) and bool(pattern.fullmatch(lines[i].strip()))
            and bool(_NUMPY_UNDERLINE.fullmatch(lines[i + 1].strip())))


def _numpy_sections(lines: list[str], keep: list[bool], params: dict[str, str]) -> None:
    i = 0
    while i < len(lines):
        if not _is_numpy_header(lines, i, _NUMPY_HEADER):
            i += 1
            continue
        end = i + 2
        while end < len(lines) and not _is_numpy_header(lines, end, _NUMPY_ANY_HEADER):
            end += 1
        _collect_entries(lines, i + 2, end, _NUMPY_ENTRY, params)
        keep[i:end] = [False] * (end - i)
        i = end


def _rest_fields(lines: list[str], keep: list[bool], params: dict[str, str]) -> None:
    i = 0
    while i < len(lines):
        match = _REST_FIELD.fullmatch(lines[i].strip())
        if not match:
            i += 1
            continue
        field_indent = _indent(lines[i])
        end = i + 1
        while end < len(lines) and lines[end].strip() and _indent(lines[end]) > field_indent:
            end += 1
        if match["name"]:
            description = _join([match["text"], *lines[i + 1:end]])
            if description:
                params.setdefault(match["name"], description)
        keep[i:end] = [False] * (end - i)
        i = end


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a cleaned docstring into the description and per-parameter texts.

    Parameter sections in Google (``Args:``), NumPy (``Parameters`` underlined) and
    reST (``:param x:``, ``:type x:``) style are read and left out of the description.
    """
    lines = doc.splitlines()
    keep = [True] * len(lines)
    params: dict[str, str] = {}
    for read_sections in (_google_sections, _numpy_sections, _rest_fields):
        read_sections(lines, keep, params)
    described: list[str] = []
    after_removed = False
    for line, kept in zip(lines, keep):
        if not kept:
            after_removed = True
        elif line.strip():
            described.append(line)
            after_removed = False
        elif not (after_removed and (not described or not described[-1].strip())):
            described.append(line)  # a blank line, unless one already stands where a section was
    return "\n".join(described).strip(), params


# -- validation -----------------------------------------------------------------------------------

_A_JSON_TYPE = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean",
                "array": "an array", "object": "an object", "null": "null"}

# The JSON types of each type json.loads makes (bool before int, for the isinstance fallback).
_JSON_TYPES_OF: dict[type, frozenset[str]] = {
    str: frozenset({"string"}), bool: frozenset({"boolean"}), int: frozenset({"integer", "number"}),
    float: frozenset({"number"}), list: frozenset({"array"}), dict: frozenset({"object"}),
    _NONE_TYPE: frozenset({"null"}),
}
_INTEGRAL_FLOAT_TYPES = frozenset({"integer", "number"})  # JSON Schema: 1.0 is an integer
# Keywords that never reject a value: a schema of "type" and these needs only a type check.
_TYPE_AND_ANNOTATIONS = frozenset({"type", "description", "default", "title", "examples", "deprecated",
                                   "readOnly", "writeOnly", "$comment"})


def _json_types_of(value: Any) -> frozenset[str]:
    json_types = _JSON_TYPES_OF.get(type(value))
    if json_types is None:  # a subclass, from Python code rather than JSON
        json_types = next((t for kind, t in _JSON_TYPES_OF.items() if isinstance(value, kind)), frozenset())
    if type(value) is float and value.is_integer():
        return _INTEGRAL_FLOAT_TYPES
    return json_types


def _describe(value: Any) -> str:
    """The JSON type of a value, as a message says it: "a string", "null"."""
    json_type = _JSON_TYPE_NAMES.get(type(value))
    return type(value).__name__ if json_type is None else _A_JSON_TYPE[json_type]


def _show(value: Any) -> str:
    """A JSON value for an error message, cut short if long."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _json_key(value: Any) -> Any:
    """A hashable key equal for equal JSON values: 1 and 1.0 alike, true and 1 not."""
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, list):
        return ("array", tuple(map(_json_key, value)))
    if isinstance(value, dict):
        return ("object", frozenset((k, _json_key(v)) for k, v in value.items()))
    return (type(value).__name__, value)


def _resolve(ref: str, root: Any) -> Any:
    """The subschema a local ``$ref`` ("#", "#/$defs/Name", any JSON pointer) names in ``root``."""
    if not ref.startswith("#"):
        raise SchemaError(f"cannot resolve $ref {ref!r}: only references into the same schema (#/...) are supported")
    target = root
    try:
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            target = target[int(part)] if isinstance(target, list) else target[part]
    except (KeyError, IndexError, ValueError, TypeError):
        raise SchemaError(f"cannot resolve $ref {ref!r}: the schema has nothing there") from None
    return target


def check_value(value: Any, schema: Mapping[str, Any], path: str) -> Any:
    """Check ``value`` against a JSON Schema; return it, losslessly coerced.

    An integer where only "number" is declared becomes a float, an integral float
    where only "integer" is declared becomes an int. Raises ToolArgumentError naming
    the path and what was expected; SchemaError for a schema it cannot use (a
    ``$ref`` outside the schema, an invalid ``pattern``).
    """
    return _check(value, schema, path, schema)


_FLAT_OBJECT_KEYS = _TYPE_AND_ANNOTATIONS | {"properties", "required", "additionalProperties"}
_FLAT_TYPES = {"string": str, "integer": int, "number": float, "boolean": bool}
_checkers: dict[int, tuple[Mapping[str, Any], Callable[[Any, str], Any]]] = {}


def checker(schema: Mapping[str, Any]) -> Callable[[Any, str], Any]:
    """``check(value, path)``, the same as ``check_value(value, schema, path)``, compiled
    once per schema object: an object of flat scalar properties (the usual tool) is
    checked in one loop; anything it does not pass goes the general way, which gives the
    same value or the same error. Other schemas are checked the general way."""
    entry = _checkers.get(id(schema))
    if entry is not None and entry[0] is schema:
        return entry[1]
    check = _compile_flat(schema) or (lambda value, path: _check(value, schema, path, schema))
    if len(_checkers) >= 4096:
        _checkers.clear()
    _checkers[id(schema)] = (schema, check)  # the schema is held: its id stays its own
    return check


def _compile_flat(schema: Mapping[str, Any]) -> Optional[Callable[[Any, str], Any]]:
    if not isinstance(schema, dict) or schema.get("type") != "object" or not schema.keys() <= _FLAT_OBJECT_KEYS:
        return None
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(properties, dict) or not isinstance(required, list) or extra not in (True, False):
        return None
    kinds: dict[str, type] = {}
    for name, sub in properties.items():
        if not isinstance(sub, dict) or not sub.keys() <= _TYPE_AND_ANNOTATIONS or sub.get("type") not in _FLAT_TYPES:
            return None
        kinds[name] = _FLAT_TYPES[sub["type"]]
    if extra is True and not kinds:
        return None
    needed = frozenset(required)
    closed = extra is False
    finite = math.isfinite

    def check(value: Any, path: str) -> Any:
        if type(value) is dict and needed <= value.keys():
            checked = {}
            for key, item in value.items():
                kind = kinds.get(key)
                if kind is None:
                    if closed:
                        break
                    checked[key] = item  # additionalProperties: true, anything goes
                elif type(item) is kind and (kind is not float or finite(item)):  # type: ignore[arg-type]
                    checked[key] = item
                elif kind is float and type(item) is int and -(2 ** 53) <= item <= 2 ** 53:
                    checked[key] = float(item)
                else:
                    break
            else:
                return checked
        return _check(value, schema, path, schema)

    return check


def _check(value: Any, schema: Any, path: str, root: Any) -> Any:
    if schema is True:
        return value
    if schema is False:
        raise ToolArgumentError(f"{path} is not allowed")
    if schema.keys() <= _TYPE_AND_ANNOTATIONS:  # the common case, made quick
        declared = schema.get("type")
        return value if declared is None else _check_type(value, declared, path)
    if "$ref" in schema:
        value = _check(value, _resolve(schema["$ref"], root), path, root)
    declared = schema.get("type")
    if declared is not None:
        value = _check_type(value, declared, path)
    if "enum" in schema:
        _check_enum(value, schema["enum"], path)
    if "const" in schema and _json_key(value) != _json_key(schema["const"]):
        raise ToolArgumentError(f"{path} must be {_show(schema['const'])}, not {_show(value)}")
    if "anyOf" in schema:
        value = _check_any_of(value, schema["anyOf"], path, root)
    if "oneOf" in schema:
        value = _check_one_of(value, schema["oneOf"], path, root)
    if "allOf" in schema:
        for option in schema["allOf"]:
            value = _check(value, option, path, root)
    if isinstance(value, str):
        _check_string(value, schema, path)
    elif isinstance(value, bool):
        pass
    elif isinstance(value, (int, float)):
        _check_number(value, schema, path)
    elif isinstance(value, list):
        value = _check_array(value, schema, path, root)
    elif isinstance(value, dict):
        value = _check_object(value, schema, path, root)
    return value


def _not_finite(path: str) -> ToolArgumentError:
    # JSON has no infinity or NaN: 1e400 parses as a float infinity, which no tool can be
    # handed as a number and no answer could carry back.
    return ToolArgumentError(f"{path} must be a finite number (JSON numbers such as 1e400 overflow to infinity)")


def _check_type(value: Any, declared: Any, path: str) -> Any:
    if type(value) is float and not math.isfinite(value):
        raise _not_finite(path)
    json_types = (declared,) if isinstance(declared, str) else declared
    if _json_types_of(value).isdisjoint(json_types):
        raise ToolArgumentError(f"{path} must be of type {' or '.join(json_types)}, got {_describe(value)}")
    if type(value) is int and "integer" not in json_types:
        try:
            return float(value)
        except OverflowError:
            raise ToolArgumentError(f"{path} is too large a number") from None
    if type(value) is float and "number" not in json_types:
        return int(value)
    return value


def _check_enum(value: Any, options: list[Any], path: str) -> None:
    if type(value) is str:  # a string equals only a string: plain membership is exact
        if value in options:
            return
    else:
        key = _json_key(value)
        if any(_json_key(option) == key for option in options):
            return
    allowed = ", ".join(_show(option) for option in options)
    raise ToolArgumentError(f"{path} must be one of {allowed}, not {_show(value)}")


def _brief(schema: Any, root: Any) -> str:
    """A few words for what a schema accepts, to list alternatives in a message."""
    if not isinstance(schema, Mapping):
        return "anything" if schema else "nothing"
    if "$ref" in schema:
        return _brief(_resolve(schema["$ref"], root), root)
    if "const" in schema:
        return _show(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(_show(option) for option in schema["enum"])
    declared = schema.get("type")
    if declared is not None:
        json_types = [declared] if isinstance(declared, str) else declared
        return " or ".join(_A_JSON_TYPE.get(t, t) for t in json_types)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return " or ".join(_brief(option, root) for option in options)
    return "a value matching its schema"


def _type_fits(value: Any, schema: Any, root: Any) -> bool:
    """Whether the value has a type the schema declares: a near miss, whose own error says most."""
    while isinstance(schema, Mapping) and "$ref" in schema and "type" not in schema:
        schema = _resolve(schema["$ref"], root)
    declared = schema.get("type") if isinstance(schema, Mapping) else None
    if declared is None:
        return False
    return not _json_types_of(value).isdisjoint((declared,) if isinstance(declared, str) else declared)


def _no_alternative(value: Any, failures: list[tuple[Any, ToolArgumentError]], path: str,
                    root: Any) -> ToolArgumentError:
    near_misses = [error for option, error in failures if _type_fits(value, option, root)]
    if len(near_misses) == 1:
        return near_misses[0]
    alternatives = " or ".join(_brief(option, root) for option, _ in failures)
    return ToolArgumentError(f"{path} must be {alternatives}, got {_describe(value)}")


def _check_any_of(value: Any, options: list[Any], path: str, root: Any) -> Any:
    failures = []
    for option in options:
        try:
            return _check(value, option, path, root)
        except ToolArgumentError as exc:
            failures.append((option, exc))
    raise _no_alternative(value, failures, path, root)


def _check_one_of(value: Any, options: list[Any], path: str, root: Any) -> Any:
    fitted: list[Any] = []
    failures = []
    for option in options:
        try:
            fitted.append(_check(value, option, path, root))
        except ToolArgumentError as exc:
            failures.append((option, exc))
    if len(fitted) == 1:
        return fitted[0]
    if not fitted:
        raise _no_alternative(value, failures, path, root)
    raise ToolArgumentError(f"{path} fits {len(fitted)} of its alternatives "
                            f"({_brief({'oneOf': options}, root)}) but must fit exactly one")


def _search(pattern: str, text: str, path: str) -> bool:
    try:
        return re.search(pattern, text) is not None  # re caches compiled patterns
    except re.error as exc:
        raise SchemaError(f"invalid pattern {pattern!r} in the schema of {path}: {exc}") from None


def _check_string(value: str, schema: Mapping[str, Any], path: str) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise ToolArgumentError(f"{path} must be at least {schema['minLength']} character(s) long, got {len(value)}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise ToolArgumentError(f"{path} must be at most {schema['maxLength']} character(s) long, got {len(value)}")
    if "pattern" in schema:
        if not _search(schema["pattern"], value, path):
            raise ToolArgumentError(f"{path} must match the pattern {schema['pattern']}, got {_show(value)}")


def _check_number(value: float, schema: Mapping[str, Any], path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise _not_finite(path)
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    above, below = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(above, bool):  # draft 4: a flag that makes "minimum" exclusive
        minimum, above = (None, minimum) if above else (minimum, None)
    if isinstance(below, bool):
        maximum, below = (None, maximum) if below else (maximum, None)
    if minimum is not None and value < minimum:
        raise ToolArgumentError(f"{path} must be >= {minimum}, got {value}")
    if above is not None and value <= above:
        raise ToolArgumentError(f"{path} must be > {above}, got {value}")
    if maximum is not None and value > maximum:
        raise ToolArgumentError(f"{path} must be <= {maximum}, got {value}")
    if below is not None and value >= below:
        raise ToolArgumentError(f"{path} must be < {below}, got {value}")
    step = schema.get("multipleOf")
    if step is not None and not _is_multiple(value, step):
        raise ToolArgumentError(f"{path} must be a multiple of {step}, got {value}")


def _is_multiple(value: float, step: float) -> bool:
    # As the jsonschema package does, so that the two agree: a float step divides in
    # floating point (0.3 is not a multiple of 0.1), an integer step takes a remainder.
    if not isinstance(step, float):
        return value % step == 0
    try:
        return (value / step).is_integer()
    except OverflowError:  # an integer too large for a float: exact arithmetic
        from fractions import Fraction  # here, not at the top: rarely needed, and it imports decimal

        return Fraction(value) % Fraction(step) == 0


_PYTHON_TYPE_OF = {"string": str, "integer": int, "number": float, "boolean": bool, "null": _NONE_TYPE}


def _exactly_typed(values: Iterable[Any], schema: Any) -> bool:
    """Whether a schema is just a scalar type and every value has exactly its Python type.

    Such values need neither a check nor a coercion: one pass over a long list of
    strings or numbers instead of one ``_check`` (and one path string) per item.
    """
    if not isinstance(schema, Mapping) or not schema.keys() <= _TYPE_AND_ANNOTATIONS:
        return False
    declared = schema.get("type")
    kind = _PYTHON_TYPE_OF.get(declared) if isinstance(declared, str) else None
    return kind is not None and all(type(value) is kind for value in values)


def _check_array(value: list[Any], schema: Mapping[str, Any], path: str, root: Any) -> list[Any]:
    count = len(value)
    if "minItems" in schema and count < schema["minItems"]:
        raise ToolArgumentError(f"{path} must have at least {schema['minItems']} item(s), got {count}")
    if "maxItems" in schema and count > schema["maxItems"]:
        raise ToolArgumentError(f"{path} must have at most {schema['maxItems']} item(s), got {count}")
    prefix = schema.get("prefixItems", ())
    rest = schema.get("items", True)
    if isinstance(rest, list):  # draft 4-2019 tuple form
        prefix, rest = rest, schema.get("additionalItems", True)
    if rest is False and count > len(prefix):
        raise ToolArgumentError(f"{path} must have at most {len(prefix)} item(s), got {count}")
    if prefix or (rest is not True and rest != {} and not _exactly_typed(value, rest)):
        value = [
            _check(item, prefix[i] if i < len(prefix) else rest, f"{path}[{i}]", root)
            for i, item in enumerate(value)
        ]
    if schema.get("uniqueItems"):
        seen: dict[Any, int] = {}
        for i, item in enumerate(value):
            first = seen.setdefault(_json_key(item), i)
            if first != i:
                raise ToolArgumentError(f"{path} must not repeat items: {path}[{i}] repeats {path}[{first}]")
    return value


def _check_object(value: dict[str, Any], schema: Mapping[str, Any], path: str, root: Any) -> dict[str, Any]:
    required = schema.get("required")
    if required:
        missing = [name for name in required if name not in value]
        if missing:
            raise ToolArgumentError(f"{path} is missing required field(s): {', '.join(missing)}")
    properties: Mapping[str, Any] = schema.get("properties", {})
    patterns: Mapping[str, Any] = schema.get("patternProperties", {})
    extra = schema.get("additionalProperties", True)
    if not properties and not patterns and (extra is True or extra == {} or _exactly_typed(value.values(), extra)):
        return value
    checked: dict[str, Any] = {}
    for key, item in value.items():
        if key in properties:
            checked[key] = _check(item, properties[key], f"{path}.{key}", root)
            continue
        matching = [sub for pattern, sub in patterns.items() if _search(pattern, key, path)]
        if matching:
            for sub in matching:
                item = _check(item, sub, f"{path}[{key!r}]", root)
            checked[key] = item
        elif extra is False:
            known = ", ".join(properties) or "none"
            raise ToolArgumentError(f"{path} has unexpected field {key!r} (allowed: {known})")
        else:
            checked[key] = _check(item, extra, f"{path}[{key!r}]", root)
    return checked


# -- results --------------------------------------------------------------------------------------

_JSON_SCALAR_TYPES = frozenset({str, int, float, bool, _NONE_TYPE})


def to_jsonable(value: Any) -> Any:
    """``value`` as JSON data: what the schemas above describe, the way back. The one
    converter every result goes through.

    Dataclass instances become objects (every field), Enum members their value,
    tuples lists, sets lists (sorted when their items can be), mappings and lists are
    converted throughout. Raises TypeError for anything else, ValueError for a cycle.
    """
    if type(value) in _JSON_SCALAR_TYPES:
        return value
    return _jsonable(value, set())


def _jsonable(value: Any, open_containers: set[int]) -> Any:
    kind = type(value)
    if kind in _JSON_SCALAR_TYPES:
        return value
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, open_containers)
    if isinstance(value, (str, int, float)):  # subclasses of the JSON scalars
        return value
    is_dataclass = dataclasses.is_dataclass(value) and not isinstance(value, type)
    if not (is_dataclass or isinstance(value, (Mapping, list, tuple, set, frozenset))):
        raise TypeError(f"a value of type {kind.__qualname__} cannot be sent as JSON")
    marker = id(value)
    if marker in open_containers:
        raise ValueError("Circular reference detected")
    open_containers.add(marker)
    # Scalars are tested inline below: a call per item would double the cost of a flat dict.
    try:
        if is_dataclass:
            return {f.name: _jsonable(getattr(value, f.name), open_containers) for f in dataclasses.fields(value)}
        if isinstance(value, Mapping):
            return {_jsonable_key(k): v if type(v) in _JSON_SCALAR_TYPES else _jsonable(v, open_containers)
                    for k, v in value.items()}
        items = [item if type(item) in _JSON_SCALAR_TYPES else _jsonable(item, open_containers) for item in value]
        if isinstance(value, (set, frozenset)):
            try:
                return sorted(items)  # a stable order for the same set
            except TypeError:  # items of mixed types
                return items
        return items
    finally:
        open_containers.discard(marker)


def _jsonable_key(key: Any) -> Any:
    if isinstance(key, enum.Enum):
        key = key.value
    if key is None or isinstance(key, (str, int, float)):  # json writes non-string keys as strings
        return key
    raise TypeError(f"a dict key of type {type(key).__qualname__} cannot be sent as JSON")
