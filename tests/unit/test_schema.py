"""Schemas from signatures, argument checks and conversion, results as JSON; agreement with
jsonschema (the reference validator) and with the official SDK's FastMCP (``MCPServer``).

The signature table below is the contract: each row gives a function, the exact input
schema we publish for it, and arguments that must be accepted and rejected. The same
rows are checked against ``jsonschema`` and, where the ``mcp`` package is installed,
against the schema FastMCP derives for the same function; every place the two disagree
is listed in ``FASTMCP_DIFFERENCES`` with its reason, and checked to still occur.
"""

import asyncio
import enum
import math
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Dict, List, Literal, NewType, Optional, TypedDict, Union

import pytest

from loopback.schema import (
    Output,
    SchemaError,
    Signature,
    ToolArgumentError,
    check_value,
    compile_signature,
    to_jsonable,
)

if sys.version_info >= (3, 11):
    from typing import NotRequired
else:  # the TypedDict key qualifiers came to typing in 3.11; before, from typing_extensions (tox deps)
    from typing_extensions import NotRequired

try:  # pydantic (so FastMCP) reads only this TypedDict before Python 3.12
    from typing_extensions import TypedDict as ExtTypedDict
except ImportError:  # pragma: no cover - typing_extensions comes with jsonschema and mcp
    ExtTypedDict = TypedDict  # type: ignore[misc]


# -- types used by the table --------------------------------------------------------------------


class Color(enum.Enum):
    """A paint colour."""

    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mixed(enum.Enum):
    ONE = 1
    TWO = "two"


@dataclass
class Point:
    """A point on the plane."""

    x: float
    y: float = 0.0


@dataclass
class Segment:
    start: Point
    end: Point
    label: Optional[str] = None


@dataclass(frozen=True)
class Tag:
    name: str


@dataclass
class Options:
    tags: list[str] = field(default_factory=list)
    verbose: bool = False
    level: Priority = Priority.LOW


class Movie(TypedDict):
    """A film."""

    title: str
    year: int


class MovieFilter(TypedDict, total=False):
    genre: str
    min_year: int


class Review(TypedDict):
    movie: Movie
    stars: NotRequired[int]


class Book(ExtTypedDict):
    title: str
    pages: NotRequired[int]


class Paint(TypedDict):
    color: Color
    coats: int


@dataclass
class Box:
    width: float
    area: float = field(init=False)

    def __post_init__(self) -> None:
        self.area = self.width ** 2


UserId = NewType("UserId", int)


class FakeContext:
    """Stands for the request context type the registry passes as ``context_types``."""


class FakeContent:
    """Stands for a content type (an image, say) the registry passes as ``content_types``."""


COMPILE_OPTIONS: dict[str, Any] = {"context_types": (FakeContext,), "content_types": (FakeContent,)}

COLOR = {"type": "string", "enum": ["red", "green", "blue"], "description": "A paint colour."}
PRIORITY = {"type": "integer", "enum": [1, 2]}
POINT = {
    "type": "object",
    "properties": {"x": {"type": "number"}, "y": {"type": "number", "default": 0.0}},
    "required": ["x"],
    "additionalProperties": False,
    "description": "A point on the plane.",
}
SEGMENT = {
    "type": "object",
    "properties": {"start": POINT, "end": POINT, "label": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}},
    "required": ["start", "end"],
    "additionalProperties": False,
}
MOVIE = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
    "required": ["title", "year"],
    "additionalProperties": False,
    "description": "A film.",
}


def params(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    """An input schema, spelled the way ``compile_signature`` builds it."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    schema["additionalProperties"] = False
    return schema


# -- the signatures -----------------------------------------------------------------------------


def scalars(s: str, i: int, x: float, b: bool) -> None: ...


def defaults(a: int, b: int = 2, name: str = "x", flag: bool = False, ratio: float = 0.5,
             tags: tuple[str, ...] = ("a", "b")) -> None: ...


def unannotated(a, b=3):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    ...


def any_value(a: Any, b: Optional[Any] = None) -> None: ...


def optionals(a: Optional[str] = None, b: "int | None" = None, c: Union[float, None] = None,  # a string: 3.9 cannot evaluate X | Y itself
              d: Optional[list[int]] = None) -> None: ...


def nullable_required(a: Optional[int]) -> None: ...


def lists(xs: list[int], tags: List[str], raw: list, nested: list[list[float]]) -> None: ...  # type: ignore[type-arg]


def dicts(m: dict[str, int], obj: dict, counts: Dict[str, Optional[int]],  # type: ignore[type-arg]
          anything: dict[str, Any]) -> None: ...


def tuple_pair(pair: tuple[int, str]) -> None: ...


def tuple_var(values: tuple[float, ...]) -> None: ...


def sets(tags: set[str], ids: frozenset[int]) -> None: ...


def union(v: Union[int, str]) -> None: ...


def union_optional(v: Union[int, str, list[int], None] = None) -> None: ...


def literal_str(mode: Literal["fast", "slow"] = "fast") -> None: ...


def literal_mixed(v: Literal["auto", 0, True]) -> None: ...


def literal_int(level: Literal[1, 2, 3]) -> None: ...


def literal_enum(color: Literal[Color.RED, Color.GREEN]) -> None: ...


def enum_str(color: Color) -> None: ...


def enum_int(priority: Priority = Priority.HIGH) -> None: ...


def enum_mixed(m: Mixed) -> None: ...


def enum_optional(color: Optional[Color] = None) -> None: ...


def annotated(query: Annotated[str, "What to search for"], limit: Annotated[int, "Max results"] = 10) -> None: ...


def annotated_metadata(delay: Annotated[float, ("unit", "ms")]) -> None: ...


def dataclass_param(p: Point) -> None: ...


def dataclass_nested(s: Segment) -> None: ...


def dataclass_list(points: list[Point]) -> None: ...


def dataclass_optional(p: Optional[Point] = None) -> None: ...


def dataclass_defaults(o: Options) -> None: ...


def dataclass_union(shape: Union[Point, Segment]) -> None: ...


def frozen_tags(tags: frozenset[Tag]) -> None: ...


def typeddict_param(movie: Movie) -> None: ...


def typeddict_partial(f: MovieFilter) -> None: ...


def typeddict_nested(review: Review) -> None: ...


def typeddict_ext(book: Book) -> None: ...


def google_doc(path: str, depth: int = 1, follow: bool = False) -> None:
    """List a directory.

    Args:
        path (str): The directory to list,
            relative to the workspace.
        depth: How deep to go.
        follow: Whether to follow
            symbolic links.

    Returns:
        Nothing; the listing is printed.
    """


def numpy_doc(values: list[float], scale: float = 1.0) -> float:
    """Sum scaled values.

    Parameters
    ----------
    values : list of float
        The numbers to add.
    scale : float, optional
        Factor applied to
        every value.

    Returns
    -------
    float
        The scaled sum.
    """
    return 0.0


def rest_doc(name: str, greeting: str = "Hello") -> str:
    """Greet someone.

    :param name: Who to greet.
    :type name: str
    :param str greeting: The word to use,
        e.g. "Hi".
    :returns: The greeting.
    """
    return ""


def doc_and_annotated(limit: Annotated[int, "From Annotated"] = 5, offset: int = 0) -> None:
    """Page through results.

    Args:
        limit: From the docstring.
        offset: Rows to skip.
    """


def keyword_only(*, a: int, b: str = "x") -> None: ...


def nested_combo(groups: dict[str, list[tuple[int, Optional[Color]]]]) -> None: ...


def string_annotations(a: "int", points: "Optional[list[Point]]" = None) -> None: ...


def newtype_param(user: UserId) -> None: ...


def abstract_containers(xs: Sequence[int], m: Mapping[str, float]) -> None: ...


def no_params() -> None: ...


def complex_defaults(origin: Point = Point(0.0, 0.0), color: Color = Color.RED,
                     window: tuple[int, int] = (0, 10)) -> None: ...


def with_context(query: str, ctx: FakeContext) -> None: ...


@dataclass(frozen=True)
class Row:
    func: Callable[..., Any]
    schema: dict[str, Any]
    valid: list[dict[str, Any]]
    invalid: list[dict[str, Any]]
    description: str = ""

    @property
    def id(self) -> str:
        return self.func.__name__


PAIR = {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False,
        "minItems": 2, "maxItems": 2}

ROWS = [
    Row(scalars,
        params({"s": {"type": "string"}, "i": {"type": "integer"}, "x": {"type": "number"}, "b": {"type": "boolean"}},
               "s", "i", "x", "b"),
        valid=[{"s": "a", "i": 1, "x": 1.5, "b": True}, {"s": "", "i": -3, "x": 2, "b": False},
               {"s": "a", "i": 2.0, "x": 0, "b": True}],
        invalid=[{"s": "a", "i": True, "x": 1, "b": True}, {"s": 1, "i": 1, "x": 1, "b": True},
                 {"s": "a", "i": 1.5, "x": 1, "b": True}, {"s": "a", "i": 1, "x": "1", "b": True},
                 {"s": "a", "i": 1, "x": 1, "b": 1}, {"s": "a"}, {"s": "a", "i": 1, "x": 1.5, "b": True, "extra": 1}]),
    Row(defaults,
        params({"a": {"type": "integer"}, "b": {"type": "integer", "default": 2},
                "name": {"type": "string", "default": "x"}, "flag": {"type": "boolean", "default": False},
                "ratio": {"type": "number", "default": 0.5},
                "tags": {"type": "array", "items": {"type": "string"}, "default": ["a", "b"]}}, "a"),
        valid=[{"a": 1}, {"a": 1, "b": 3, "name": "y", "flag": True, "ratio": 1, "tags": []}],
        invalid=[{"b": 2}, {"a": 1, "tags": "a"}, {"a": 1, "ratio": None}]),
    Row(unannotated, params({"a": {}, "b": {"default": 3}}, "a"),
        valid=[{"a": "x"}, {"a": 1}, {"a": None, "b": [1]}],
        invalid=[{}, {"b": 1}]),
    Row(any_value, params({"a": {}, "b": {"default": None}}, "a"),
        valid=[{"a": [1, {"x": None}]}, {"a": None, "b": "x"}],
        invalid=[{"b": 1}]),
    Row(optionals,
        params({"a": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}, "b": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
                "c": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None},
                "d": {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}], "default": None}}),
        valid=[{}, {"a": None, "b": None, "c": None, "d": None}, {"a": "x", "b": 1, "c": 1, "d": [1]}],
        invalid=[{"a": 1}, {"d": [None]}, {"b": "1"}, {"c": True}]),
    Row(nullable_required, params({"a": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}, "a"),
        valid=[{"a": None}, {"a": 3}],
        invalid=[{}, {"a": "3"}]),
    Row(lists,
        params({"xs": {"type": "array", "items": {"type": "integer"}},
                "tags": {"type": "array", "items": {"type": "string"}}, "raw": {"type": "array"},
                "nested": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}},
               "xs", "tags", "raw", "nested"),
        valid=[{"xs": [], "tags": ["a"], "raw": [1, "a", None], "nested": [[1, 2.5], []]}],
        invalid=[{"xs": [1, "2"], "tags": [], "raw": [], "nested": []},
                 {"xs": [], "tags": [], "raw": [], "nested": [[None]]},
                 {"xs": [], "tags": [], "raw": {}, "nested": []}]),
    Row(dicts,
        params({"m": {"type": "object", "additionalProperties": {"type": "integer"}}, "obj": {"type": "object"},
                "counts": {"type": "object", "additionalProperties": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
                "anything": {"type": "object"}}, "m", "obj", "counts", "anything"),
        valid=[{"m": {"a": 1}, "obj": {}, "counts": {"x": None, "y": 2}, "anything": {"k": [1]}}],
        invalid=[{"m": {"a": "1"}, "obj": {}, "counts": {}, "anything": {}},
                 {"m": {}, "obj": [], "counts": {}, "anything": {}},
                 {"m": {}, "obj": {}, "counts": {"x": "1"}, "anything": {}}]),
    Row(tuple_pair, params({"pair": PAIR}, "pair"),
        valid=[{"pair": [1, "a"]}],
        invalid=[{"pair": [1]}, {"pair": [1, "a", 2]}, {"pair": ["a", 1]}]),
    Row(tuple_var, params({"values": {"type": "array", "items": {"type": "number"}}}, "values"),
        valid=[{"values": []}, {"values": [1, 2.5]}],
        invalid=[{"values": ["x"]}, {"values": 1}]),
    Row(sets,
        params({"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                "ids": {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}}, "tags", "ids"),
        valid=[{"tags": ["a", "b"], "ids": []}, {"tags": [], "ids": [1, 2]}],
        invalid=[{"tags": ["a", "a"], "ids": []}, {"tags": [], "ids": [1, 1.0]}, {"tags": [], "ids": [True]}]),
    Row(union, params({"v": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}, "v"),
        valid=[{"v": 1}, {"v": "a"}],
        invalid=[{"v": None}, {"v": 1.5}, {"v": []}]),
    Row(union_optional,
        params({"v": {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "array", "items": {"type": "integer"}},
                                {"type": "null"}], "default": None}}),
        valid=[{}, {"v": [1]}, {"v": None}, {"v": "x"}],
        invalid=[{"v": ["a"]}, {"v": {}}]),
    Row(literal_str, params({"mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"}}),
        valid=[{}, {"mode": "slow"}],
        invalid=[{"mode": "medium"}, {"mode": None}]),
    Row(literal_mixed, params({"v": {"enum": ["auto", 0, True]}}, "v"),
        valid=[{"v": "auto"}, {"v": 0}, {"v": True}, {"v": 0.0}],
        invalid=[{"v": False}, {"v": 1}, {"v": "AUTO"}]),
    Row(literal_int, params({"level": {"type": "integer", "enum": [1, 2, 3]}}, "level"),
        valid=[{"level": 1}, {"level": 3.0}],
        invalid=[{"level": 4}, {"level": True}, {"level": "1"}]),
    Row(literal_enum, params({"color": {"type": "string", "enum": ["red", "green"]}}, "color"),
        valid=[{"color": "green"}],
        invalid=[{"color": "blue"}, {"color": "RED"}]),
    Row(enum_str, params({"color": COLOR}, "color"),
        valid=[{"color": "red"}],
        invalid=[{"color": "RED"}, {"color": 1}]),
    Row(enum_int, params({"priority": {**PRIORITY, "default": 2}}),
        valid=[{}, {"priority": 1}],
        invalid=[{"priority": 3}, {"priority": "1"}, {"priority": True}]),
    Row(enum_mixed, params({"m": {"enum": [1, "two"]}}, "m"),
        valid=[{"m": 1}, {"m": "two"}],
        invalid=[{"m": 2}, {"m": "one"}]),
    Row(enum_optional, params({"color": {"anyOf": [COLOR, {"type": "null"}], "default": None}}),
        valid=[{}, {"color": None}, {"color": "blue"}],
        invalid=[{"color": "pink"}]),
    Row(annotated,
        params({"query": {"type": "string", "description": "What to search for"},
                "limit": {"type": "integer", "description": "Max results", "default": 10}}, "query"),
        valid=[{"query": "x"}, {"query": "x", "limit": 3}],
        invalid=[{"limit": 3}, {"query": "x", "limit": "3"}]),
    Row(annotated_metadata, params({"delay": {"type": "number"}}, "delay"),
        valid=[{"delay": 1}],
        invalid=[{"delay": "1"}]),
    Row(dataclass_param, params({"p": POINT}, "p"),
        valid=[{"p": {"x": 1}}, {"p": {"x": 1.5, "y": -2}}],
        invalid=[{"p": {}}, {"p": {"x": "1"}}, {"p": [1, 2]}, {"p": {"x": 1, "z": 0}}]),
    Row(dataclass_nested, params({"s": SEGMENT}, "s"),
        valid=[{"s": {"start": {"x": 1}, "end": {"x": 2, "y": 2}}},
               {"s": {"start": {"x": 1}, "end": {"x": 2}, "label": "a"}}],
        invalid=[{"s": {"start": {"x": 1}, "end": {}}}, {"s": {"start": {"x": 1}}},
                 {"s": {"start": {"x": 1}, "end": {"x": 2}, "label": 3}}]),
    Row(dataclass_list, params({"points": {"type": "array", "items": POINT}}, "points"),
        valid=[{"points": []}, {"points": [{"x": 1}, {"x": 2, "y": 3}]}],
        invalid=[{"points": [{"y": 1}]}, {"points": [None]}]),
    Row(dataclass_optional, params({"p": {"anyOf": [POINT, {"type": "null"}], "default": None}}),
        valid=[{}, {"p": None}, {"p": {"x": 1}}],
        invalid=[{"p": {"y": 1}}, {"p": 1}]),
    Row(dataclass_defaults,
        params({"o": {"type": "object",
                      "properties": {"tags": {"type": "array", "items": {"type": "string"}},
                                     "verbose": {"type": "boolean", "default": False},
                                     "level": {**PRIORITY, "default": 1}},
                      "additionalProperties": False}}, "o"),
        valid=[{"o": {}}, {"o": {"tags": ["a"], "level": 2}}],
        invalid=[{"o": {"level": 3}}, {"o": {"verbose": "yes"}}]),
    Row(dataclass_union, params({"shape": {"anyOf": [POINT, SEGMENT]}}, "shape"),
        valid=[{"shape": {"x": 1}}, {"shape": {"start": {"x": 1}, "end": {"x": 2}}}],
        invalid=[{"shape": {}}, {"shape": {"start": {"x": 1}}}]),
    Row(frozen_tags,
        params({"tags": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}},
                                                    "required": ["name"], "additionalProperties": False},
                         "uniqueItems": True}}, "tags"),
        valid=[{"tags": [{"name": "a"}, {"name": "b"}]}],
        invalid=[{"tags": [{"name": "a"}, {"name": "a"}]}, {"tags": [{}]}]),
    Row(typeddict_param, params({"movie": MOVIE}, "movie"),
        valid=[{"movie": {"title": "Alien", "year": 1979}}],
        invalid=[{"movie": {"title": "Alien"}}, {"movie": {"title": "Alien", "year": "1979"}}]),
    Row(typeddict_partial,
        params({"f": {"type": "object", "properties": {"genre": {"type": "string"}, "min_year": {"type": "integer"}},
                      "additionalProperties": False}}, "f"),
        valid=[{"f": {}}, {"f": {"genre": "drama"}}],
        invalid=[{"f": {"min_year": "1990"}}]),
    Row(typeddict_nested,
        params({"review": {"type": "object", "properties": {"movie": MOVIE, "stars": {"type": "integer"}},
                           "required": ["movie"], "additionalProperties": False}}, "review"),
        valid=[{"review": {"movie": {"title": "Alien", "year": 1979}}},
               {"review": {"movie": {"title": "Alien", "year": 1979}, "stars": 5}}],
        invalid=[{"review": {"stars": 5}}, {"review": {"movie": {"title": "Alien"}}}]),
    Row(typeddict_ext,
        params({"book": {"type": "object", "properties": {"title": {"type": "string"}, "pages": {"type": "integer"}},
                         "required": ["title"], "additionalProperties": False}}, "book"),
        valid=[{"book": {"title": "Dune"}}, {"book": {"title": "Dune", "pages": 412}}],
        invalid=[{"book": {}}, {"book": {"title": "Dune", "isbn": "x"}}]),
    Row(google_doc,
        params({"path": {"type": "string", "description": "The directory to list, relative to the workspace."},
                "depth": {"type": "integer", "description": "How deep to go.", "default": 1},
                "follow": {"type": "boolean", "description": "Whether to follow symbolic links.", "default": False}},
               "path"),
        valid=[{"path": "."}],
        invalid=[{"depth": 2}],
        description="List a directory.\n\nReturns:\n    Nothing; the listing is printed."),
    Row(numpy_doc,
        params({"values": {"type": "array", "items": {"type": "number"}, "description": "The numbers to add."},
                "scale": {"type": "number", "description": "Factor applied to every value.", "default": 1.0}},
               "values"),
        valid=[{"values": [1, 2]}],
        invalid=[{"values": [1], "scale": "2"}],
        description="Sum scaled values.\n\nReturns\n-------\nfloat\n    The scaled sum."),
    Row(rest_doc,
        params({"name": {"type": "string", "description": "Who to greet."},
                "greeting": {"type": "string", "description": 'The word to use, e.g. "Hi".', "default": "Hello"}},
               "name"),
        valid=[{"name": "Ada"}],
        invalid=[{"greeting": "Hi"}],
        description="Greet someone.\n\n:returns: The greeting."),
    Row(doc_and_annotated,
        params({"limit": {"type": "integer", "description": "From Annotated", "default": 5},
                "offset": {"type": "integer", "description": "Rows to skip.", "default": 0}}),
        valid=[{}, {"limit": 1, "offset": 2}],
        invalid=[{"offset": -0.5}],
        description="Page through results."),
    Row(keyword_only, params({"a": {"type": "integer"}, "b": {"type": "string", "default": "x"}}, "a"),
        valid=[{"a": 1}],
        invalid=[{"b": "y"}]),
    Row(nested_combo,
        params({"groups": {"type": "object", "additionalProperties": {
            "type": "array",
            "items": {"type": "array", "prefixItems": [{"type": "integer"}, {"anyOf": [COLOR, {"type": "null"}]}],
                      "items": False, "minItems": 2, "maxItems": 2}}}}, "groups"),
        valid=[{"groups": {}}, {"groups": {"a": [[1, "red"], [2, None]], "b": []}}],
        invalid=[{"groups": {"a": [[1, "pink"]]}}, {"groups": {"a": [[1]]}}, {"groups": {"a": [1]}}]),
    Row(string_annotations,
        params({"a": {"type": "integer"},
                "points": {"anyOf": [{"type": "array", "items": POINT}, {"type": "null"}], "default": None}}, "a"),
        valid=[{"a": 1}, {"a": 1, "points": [{"x": 0}]}],
        invalid=[{"a": "1"}, {"a": 1, "points": [{}]}]),
    Row(newtype_param, params({"user": {"type": "integer"}}, "user"),
        valid=[{"user": 7}],
        invalid=[{"user": "7"}]),
    Row(abstract_containers,
        params({"xs": {"type": "array", "items": {"type": "integer"}},
                "m": {"type": "object", "additionalProperties": {"type": "number"}}}, "xs", "m"),
        valid=[{"xs": [1], "m": {"a": 1.5}}],
        invalid=[{"xs": "12", "m": {}}, {"xs": [], "m": {"a": "x"}}]),
    Row(no_params, params({}), valid=[{}], invalid=[]),
    Row(complex_defaults,
        params({"origin": {**POINT, "default": {"x": 0.0, "y": 0.0}}, "color": {**COLOR, "default": "red"},
                "window": {**PAIR, "prefixItems": [{"type": "integer"}, {"type": "integer"}], "default": [0, 10]}}),
        valid=[{}, {"origin": {"x": 1}, "color": "blue", "window": [1, 2]}],
        invalid=[{"window": [1]}, {"color": "pink"}]),
    Row(with_context, params({"query": {"type": "string"}}, "query"),
        valid=[{"query": "x"}],
        invalid=[{}]),
]


def wrapped(result: dict[str, Any]) -> Output:
    return Output({"type": "object", "properties": {"result": result}, "required": ["result"]}, wrapped=True)


@dataclass(frozen=True)
class OutputRow:
    id: str
    annotation: Any
    output: Optional[Output]
    returned: tuple[Any, ...] = ()  # values the function might return: they must fit the schema


OUTPUT_ROWS = [
    OutputRow("str", str, wrapped({"type": "string"}), ("hi",)),
    OutputRow("int", int, wrapped({"type": "integer"}), (3,)),
    OutputRow("list_of_dataclass", list[Point], wrapped({"type": "array", "items": POINT}), ([Point(1.0, 2.0)], [])),
    OutputRow("dataclass", Point, Output(POINT, wrapped=False), (Point(1.0),)),
    OutputRow("typeddict", Movie, Output(MOVIE, wrapped=False), ({"title": "Alien", "year": 1979},)),
    OutputRow("dict_of_int", dict[str, int],
              Output({"type": "object", "additionalProperties": {"type": "integer"}}, wrapped=False), ({"a": 1},)),
    OutputRow("bare_dict", dict, Output({"type": "object"}, wrapped=False), ({"a": [1]},)),
    OutputRow("optional_dataclass", Optional[Point], wrapped({"anyOf": [POINT, {"type": "null"}]}), (None, Point(0.5))),
    OutputRow("tuple", tuple[int, str], wrapped(PAIR), ((1, "a"),)),
    OutputRow("enum", Color, wrapped(COLOR), (Color.GREEN,)),
    OutputRow("literal", Literal["ok", "error"], wrapped({"type": "string", "enum": ["ok", "error"]}), ("ok",)),
    OutputRow("set", set[str], wrapped({"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
              ({"b", "a"},)),
    OutputRow("none", None, None),
    OutputRow("any", Any, None),
    OutputRow("content", FakeContent, None),
    OutputRow("content_list", list[FakeContent], None),
    OutputRow("content_union", Union[str, FakeContent], None),
]


def returning(annotation: Any) -> Callable[..., Any]:
    def tool(x: int):  # type: ignore[no-untyped-def]  # noqa: ANN202
        ...

    tool.__annotations__["return"] = annotation
    return tool


def compiled(row: Row) -> Signature:
    return compile_signature(row.func, row.id, **COMPILE_OPTIONS)


def accepts(schema: Mapping[str, Any], arguments: dict[str, Any]) -> bool:
    try:
        check_value(arguments, schema, "arguments")
    except ToolArgumentError:
        return False
    return True


# -- the table: exact schemas, and our verdicts match jsonschema's --------------------------------


def test_the_table_is_large_enough() -> None:
    assert len(ROWS) >= 35
    assert len({row.id for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_input_schema(row: Row) -> None:
    signature = compiled(row)
    assert signature.input_schema == row.schema
    assert signature.description == row.description


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_examples_are_judged_as_intended(row: Row) -> None:
    signature = compiled(row)
    for arguments in row.valid:
        checked = check_value(arguments, signature.input_schema, "arguments")
        signature.convert(checked)  # converting what was accepted never fails
    for arguments in row.invalid:
        with pytest.raises(ToolArgumentError):
            check_value(arguments, signature.input_schema, "arguments")


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_schema_is_valid_2020_12_and_jsonschema_agrees(row: Row) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = compiled(row).input_schema
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for arguments in row.valid + row.invalid:
        assert accepts(schema, arguments) == validator.is_valid(arguments), arguments


@pytest.mark.parametrize("row", OUTPUT_ROWS, ids=lambda row: row.id)
def test_output_schema(row: OutputRow) -> None:
    output = compile_signature(returning(row.annotation), "t", **COMPILE_OPTIONS).output
    assert output == row.output
    if output is None:
        return
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(output.schema)
    for value in row.returned:
        structured = {"result": to_jsonable(value)} if output.wrapped else to_jsonable(value)
        check_value(structured, output.schema, "result")
        jsonschema.validate(structured, output.schema, cls=jsonschema.Draft202012Validator)


def test_missing_return_annotation_has_no_output() -> None:
    def tool(x: int):  # type: ignore[no-untyped-def]  # noqa: ANN202
        ...

    assert compile_signature(tool, "t").output is None


POSTPONED_ANNOTATIONS = '''
from __future__ import annotations
from dataclasses import dataclass
from typing import Optional, TypedDict
try:
    from typing import NotRequired, Required
except ImportError:  # Python 3.9 and 3.10
    from typing_extensions import NotRequired, Required

class Query(TypedDict, total=False):
    text: Required[str]
    limit: int
    page: NotRequired[Optional[Cursor]]

@dataclass
class Cursor:
    after: str

def search(query: Query, cursor: Cursor | None = None) -> list[Cursor]: ...
'''


def test_postponed_annotations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before 3.12, a TypedDict whose annotations are strings gets __required_keys__ wrong."""
    module = types.ModuleType("postponed_annotations")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # @dataclass looks its module up
    exec(POSTPONED_ANNOTATIONS, module.__dict__)
    namespace = module.__dict__
    signature = compile_signature(namespace["search"], "search")
    cursor = {"type": "object", "properties": {"after": {"type": "string"}}, "required": ["after"],
              "additionalProperties": False}
    assert signature.input_schema == params({
        "query": {"type": "object",
                  "properties": {"text": {"type": "string"}, "limit": {"type": "integer"},
                                 "page": {"anyOf": [cursor, {"type": "null"}]}},
                  "required": ["text"], "additionalProperties": False},
        "cursor": {"anyOf": [cursor, {"type": "null"}], "default": None}}, "query")
    assert signature.output == wrapped({"type": "array", "items": cursor})
    converted = signature.convert({"query": {"text": "x", "page": {"after": "c"}}, "cursor": {"after": "d"}})
    assert converted == {"query": {"text": "x", "page": namespace["Cursor"]("c")}, "cursor": namespace["Cursor"]("d")}


def test_output_dataclass_shows_fields_init_does_not_take() -> None:
    def area(width: float) -> Box:
        return Box(width)

    output = compile_signature(area, "area").output
    assert output is not None and not output.wrapped
    assert output.schema["properties"] == {"width": {"type": "number"}, "area": {"type": "number"}}
    check_value(to_jsonable(area(2.0)), output.schema, "result")

    def measure(box: Box) -> None: ...

    assert compile_signature(measure, "measure").input_schema["properties"]["box"]["properties"] == {
        "width": {"type": "number"}}


# -- agreement with the official SDK's FastMCP ----------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """How FastMCP's schema for a table row differs from ours, and why."""

    reason: str
    disagreeing: tuple[dict[str, Any], ...] = ()  # examples one schema accepts and the other rejects
    described_only_here: tuple[str, ...] = ()  # parameters only our schema describes
    fastmcp_refuses: bool = False  # FastMCP cannot register the function at all


_UNKNOWN_KEYS = ("Unknown fields are rejected here (\"additionalProperties\": false), so a misspelt name is "
                 "reported to the model; FastMCP's schemas allow them and pydantic silently drops them.")
_DOCSTRING = ("Parameter descriptions are read from the docstring here; FastMCP publishes none "
              "(pydantic reads only Field(description=...)).")
_STDLIB_TYPEDDICT = ("FastMCP refuses a typing.TypedDict parameter before Python 3.12 (pydantic asks for "
                     "typing_extensions.TypedDict); both are accepted here.")

FASTMCP_DIFFERENCES: dict[str, Difference] = {
    "scalars": Difference(_UNKNOWN_KEYS, disagreeing=({"s": "a", "i": 1, "x": 1.5, "b": True, "extra": 1},)),
    "dataclass_param": Difference(_UNKNOWN_KEYS + " The same holds inside a dataclass.",
                                  disagreeing=({"p": {"x": 1, "z": 0}},)),
    "typeddict_ext": Difference(_UNKNOWN_KEYS + " The same holds inside a TypedDict.",
                                disagreeing=({"book": {"title": "Dune", "isbn": "x"}},)),
    "unannotated": Difference(
        "A parameter without an annotation accepts any JSON value here ({}); FastMCP declares it a string "
        "(though pydantic then accepts anything).",
        disagreeing=({"a": 1}, {"a": None, "b": [1]})),
    "annotated": Difference(
        "Plain-string Annotated metadata becomes the parameter's description here; pydantic ignores it.",
        described_only_here=("query", "limit")),
    "google_doc": Difference(_DOCSTRING, described_only_here=("path", "depth", "follow")),
    "numpy_doc": Difference(_DOCSTRING, described_only_here=("values", "scale")),
    "rest_doc": Difference(_DOCSTRING, described_only_here=("name", "greeting")),
    "doc_and_annotated": Difference(_DOCSTRING + " (Annotated wins over the docstring.)",
                                    described_only_here=("limit", "offset")),
    "with_context": Difference(
        "The context parameter: FastMCP recognises only its own Context class, and pydantic cannot describe "
        "another class, so it refuses the function.", fastmcp_refuses=True),
    **{row_id: Difference(_STDLIB_TYPEDDICT, fastmcp_refuses=sys.version_info < (3, 12))
       for row_id in ("typeddict_param", "typeddict_partial", "typeddict_nested")},
}

FASTMCP_OUTPUT_DIFFERENCES: dict[str, str] = {
    "none": "A function annotated to return None has no outputSchema here (it returns nothing to "
            "structure); FastMCP publishes {\"result\": null}.",
    "enum": "An Enum return is wrapped as {\"result\": value} here; FastMCP, finding no type hints on the "
            "Enum class, publishes no outputSchema.",
    "bare_dict": "A bare dict return is an object schema here; FastMCP, finding no type hints on dict, "
            "publishes no outputSchema.",
}
if sys.version_info < (3, 11):  # the SDK's behaviour, not ours, changes with the interpreter
    FASTMCP_OUTPUT_DIFFERENCES["any"] = ("A function annotated to return Any has no outputSchema here; FastMCP "
                                         "publishes {\"result\": {}} on Python 3.10 (and none from 3.11).")


def fastmcp_tool(func: Callable[..., Any]) -> Any:
    """FastMCP's ``tools/list`` entry for ``func``, registered on a fresh ``MCPServer``."""
    mcpserver = pytest.importorskip("mcp.server.mcpserver")
    server = mcpserver.MCPServer("compare")
    server.add_tool(func)
    (tool,) = asyncio.run(server.list_tools())
    return tool


def _description(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Optional[str]:
    """A property's description, following a ``$ref`` the way a client reads it."""
    if "description" in schema:
        return typing.cast(Optional[str], schema["description"])
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return typing.cast(Optional[str], defs[ref.removeprefix("#/$defs/")].get("description"))
    return None


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_meaning_matches_fastmcp(row: Row) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("mcp.server.mcpserver")
    difference = FASTMCP_DIFFERENCES.get(row.id, Difference(""))
    if difference.fastmcp_refuses:
        with pytest.raises(Exception):
            fastmcp_tool(row.func)
        return
    theirs = fastmcp_tool(row.func).input_schema
    ours = compiled(row).input_schema
    validator = jsonschema.Draft202012Validator(theirs)
    disagreeing = [a for a in row.valid + row.invalid if validator.is_valid(a) != accepts(ours, a)]
    assert disagreeing == list(difference.disagreeing)
    assert set(theirs.get("required", [])) == set(ours.get("required", []))
    defs = theirs.get("$defs", {})
    described_only_here = []
    for name, prop in ours["properties"].items():
        their_description = _description(theirs["properties"][name], defs)
        if their_description is None and "description" in prop:
            described_only_here.append(name)
        else:
            assert prop.get("description") == their_description, name
    assert described_only_here == list(difference.described_only_here)


def test_every_listed_difference_names_a_row() -> None:
    assert set(FASTMCP_DIFFERENCES) <= {row.id for row in ROWS}
    assert all(difference.reason for difference in FASTMCP_DIFFERENCES.values())


@pytest.mark.parametrize("row", OUTPUT_ROWS, ids=lambda row: row.id)
def test_output_matches_fastmcp(row: OutputRow) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("mcp.server.mcpserver")
    if row.id.startswith("content"):
        pytest.skip("content types are each library's own")
    theirs = fastmcp_tool(returning(row.annotation)).output_schema
    if row.id in FASTMCP_OUTPUT_DIFFERENCES:
        assert (theirs is None) != (row.output is None)
        return
    if row.output is None:
        assert theirs is None
        return
    their_wrapping = set(theirs.get("properties", {})) == {"result"} and theirs.get("required") == ["result"]
    assert their_wrapping == row.output.wrapped
    for value in row.returned:
        structured = {"result": to_jsonable(value)} if row.output.wrapped else to_jsonable(value)
        jsonschema.validate(structured, theirs, cls=jsonschema.Draft202012Validator)


def test_every_listed_output_difference_names_a_row() -> None:
    assert set(FASTMCP_OUTPUT_DIFFERENCES) <= {row.id for row in OUTPUT_ROWS}


# -- what cannot be described -------------------------------------------------------------------


class Opaque:
    pass


@dataclass
class Tree:
    children: list["Tree"]


class Chain(TypedDict):
    next: Optional["Chain"]


class Pairs(enum.Enum):
    A = (1, 2)


@dataclass
class BadDefault:
    when: Any = Opaque()


@dataclass
class Unresolvable:
    when: "NoSuchType"  # type: ignore[name-defined]  # noqa: F821


@pytest.mark.parametrize("annotation, fragment", [
    (bytes, "unsupported type annotation bytes"),
    (Opaque, "unsupported type annotation Opaque"),
    (Callable[[int], str], "unsupported type annotation Callable[[int], str]"),
    (dict[int, str], "key type must be str"),
    (list[bytes], "unsupported type annotation bytes (in list[bytes])"),
    (Optional[complex], "unsupported type annotation complex"),
    (set, "set items must be hashable"),
    (set[list[int]], "set items must be hashable"),
    (frozenset[Point], "set items must be hashable"),  # Point is not frozen
    (Literal[b"raw"], "is not a JSON string, number, boolean or null"),
    (Pairs, "value (1, 2) is not a JSON string"),
    (Tree, "Tree contains itself; recursive types are not supported"),
    (Chain, "Chain contains itself; recursive types are not supported"),
    (BadDefault, "the default of field 'when' of BadDefault"),
    (typing.TypeVar("T"), "unsupported type annotation ~T"),
    (tuple[int, ..., str], "unsupported type annotation tuple[int, ..., str]"),
    (Unresolvable, "cannot resolve the type hints of Unresolvable: name 'NoSuchType' is not defined"),
])
def test_unsupported_annotations_name_tool_and_parameter(annotation: Any, fragment: str) -> None:
    def odd(fine: int, strange: int) -> None: ...

    odd.__annotations__["strange"] = annotation
    with pytest.raises(SchemaError) as info:
        compile_signature(odd, "odd")
    message = str(info.value)
    assert message.startswith("tool 'odd', parameter 'strange': ")
    assert fragment in message
    assert isinstance(info.value, TypeError)  # what callers of the old registry caught


@pytest.mark.parametrize("signature, fragment", [
    ("def f(a: int, /): ...", "parameter 'a': tools take keyword arguments only"),
    ("def f(*args: int): ...", "parameter 'args': tools take keyword arguments only"),
    ("def f(a: int, **kwargs: int): ...", "parameter 'kwargs': **kwargs cannot be described by a schema"),
    ("def f(a: 'NoSuchType'): ...", "tool 'f': cannot resolve type hints"),
    ("def f(a: float = float('nan')): ...", "parameter 'a': default nan is not JSON-serialisable"),
    ("def f(a: Any = object()): ...", "is not JSON-serialisable"),
    ("def f() -> bytes: ...", "tool 'f', return annotation: unsupported type annotation bytes"),
    ("def f(a: FakeContext, b: Optional[FakeContext]): ...", "parameter 'b': only one parameter may take the context"),
])
def test_signature_errors(signature: str, fragment: str) -> None:
    namespace: dict[str, Any] = {"Any": Any, "Optional": Optional, "FakeContext": FakeContext}
    exec(signature, namespace)
    with pytest.raises(SchemaError) as info:
        compile_signature(namespace["f"], "f", context_types=(FakeContext,))
    assert fragment in str(info.value)


def test_a_context_parameter_is_found_and_left_out() -> None:
    signature = compile_signature(with_context, "with_context", **COMPILE_OPTIONS)
    assert signature.context_param == "ctx"
    assert "ctx" not in signature.input_schema["properties"]

    def optional_context(ctx: Optional[FakeContext] = None, *, n: int) -> None: ...

    assert compile_signature(optional_context, "o", context_types=(FakeContext,)).context_param == "ctx"
    assert compile_signature(scalars, "scalars", context_types=(FakeContext,)).context_param is None
    # Without context types the parameter is just an unsupported class.
    with pytest.raises(SchemaError, match="unsupported type annotation FakeContext"):
        compile_signature(with_context, "with_context")


# -- conversion -----------------------------------------------------------------------------------


def convert(func: Callable[..., Any], arguments: dict[str, Any]) -> dict[str, Any]:
    signature = compile_signature(func, func.__name__, **COMPILE_OPTIONS)
    return signature.convert(check_value(arguments, signature.input_schema, "arguments"))


def test_convert_enums_literals_and_scalars() -> None:
    assert convert(enum_str, {"color": "green"}) == {"color": Color.GREEN}
    assert convert(enum_int, {"priority": 1}) == {"priority": Priority.LOW}
    assert convert(enum_int, {"priority": 2.0})["priority"] is Priority.HIGH
    assert convert(enum_mixed, {"m": "two"}) == {"m": Mixed.TWO}
    assert convert(enum_optional, {"color": None}) == {"color": None}
    assert convert(literal_enum, {"color": "red"}) == {"color": Color.RED}
    assert convert(literal_str, {"mode": "slow"}) == {"mode": "slow"}
    converted = convert(scalars, {"s": "a", "i": 2.0, "x": 3, "b": True})
    assert converted == {"s": "a", "i": 2, "x": 3.0, "b": True}
    assert type(converted["i"]) is int and type(converted["x"]) is float


def test_convert_dataclasses() -> None:
    assert convert(dataclass_param, {"p": {"x": 1}}) == {"p": Point(1.0, 0.0)}
    assert convert(dataclass_nested, {"s": {"start": {"x": 1}, "end": {"x": 2, "y": 3}}}) == {
        "s": Segment(Point(1.0), Point(2.0, 3.0))}
    assert convert(dataclass_list, {"points": [{"x": 1}, {"x": 2}]}) == {"points": [Point(1.0), Point(2.0)]}
    assert convert(dataclass_optional, {"p": None}) == {"p": None}
    assert convert(dataclass_optional, {"p": {"x": 5}}) == {"p": Point(5.0)}
    assert convert(dataclass_defaults, {"o": {"level": 2}}) == {"o": Options(level=Priority.HIGH)}
    assert convert(frozen_tags, {"tags": [{"name": "a"}]}) == {"tags": frozenset({Tag("a")})}


def test_convert_unions_take_the_first_member_that_fits() -> None:
    assert convert(dataclass_union, {"shape": {"x": 1}}) == {"shape": Point(1.0)}
    assert convert(dataclass_union, {"shape": {"start": {"x": 1}, "end": {"x": 2}}}) == {
        "shape": Segment(Point(1.0), Point(2.0))}

    def either(v: Union[Color, int, Point]) -> None: ...

    assert convert(either, {"v": "red"}) == {"v": Color.RED}
    assert convert(either, {"v": 4}) == {"v": 4}
    assert convert(either, {"v": {"x": 4}}) == {"v": Point(4.0)}


def test_tuple_forms() -> None:
    def shapes(anything: tuple, empty: tuple[()], colors: tuple[Color, ...],  # type: ignore[type-arg]
               loose: tuple[Any, ...]) -> None: ...

    signature = compile_signature(shapes, "shapes")
    assert signature.input_schema["properties"] == {
        "anything": {"type": "array"},
        "empty": {"type": "array", "maxItems": 0},
        "colors": {"type": "array", "items": COLOR},
        "loose": {"type": "array"},
    }
    arguments = {"anything": [1, "a"], "empty": [], "colors": ["red", "blue"], "loose": [None]}
    assert signature.convert(check_value(arguments, signature.input_schema, "arguments")) == {
        "anything": (1, "a"), "empty": (), "colors": (Color.RED, Color.BLUE), "loose": (None,)}


def test_convert_containers() -> None:
    assert convert(tuple_pair, {"pair": [1, "a"]}) == {"pair": (1, "a")}
    assert convert(tuple_var, {"values": [1, 2]}) == {"values": (1.0, 2.0)}
    assert convert(sets, {"tags": ["a", "b"], "ids": [3]}) == {"tags": {"a", "b"}, "ids": frozenset({3})}
    assert type(convert(sets, {"tags": [], "ids": []})["ids"]) is frozenset
    groups = convert(nested_combo, {"groups": {"g": [[1, "red"], [2, None]]}})
    assert groups == {"groups": {"g": [(1, Color.RED), (2, None)]}}
    assert convert(typeddict_nested, {"review": {"movie": {"title": "A", "year": 1}}}) == {
        "review": {"movie": {"title": "A", "year": 1}}}

    def paint(job: Paint) -> None: ...

    assert convert(paint, {"job": {"color": "blue", "coats": 2}}) == {"job": {"color": Color.BLUE, "coats": 2}}


def test_plain_arguments_are_not_copied() -> None:
    for func in (scalars, lists, dicts, optionals, typeddict_nested):
        assert compile_signature(func, "t")._converters == ()
    signature = compile_signature(scalars, "scalars")
    checked = {"s": "a", "i": 1, "x": 1.0, "b": True}
    assert signature.convert(checked) is checked
    mixed = compile_signature(complex_defaults, "complex_defaults")
    assert [name for name, _ in mixed._converters] == ["origin", "color", "window"]
    assert mixed.convert({}) == {}  # a parameter left out keeps its Python default


# -- docstrings -----------------------------------------------------------------------------------


def described(doc: str) -> tuple[str, dict[str, Optional[str]]]:
    def tool(a: int, b: int = 0, c: int = 0) -> None: ...

    tool.__doc__ = doc
    signature = compile_signature(tool, "tool")
    return signature.description, {
        name: prop.get("description") for name, prop in signature.input_schema["properties"].items()}


def test_google_sections() -> None:
    doc = """Summary line.

    More detail.

    Arguments:
        a (int): First,
            continued.

            Second paragraph.
        *b: Starred name.
        c (Optional[dict[str, int]], optional): Third.

    Raises:
        ValueError: never.
    """
    assert described(doc) == (
        "Summary line.\n\nMore detail.\n\nRaises:\n    ValueError: never.",
        {"a": "First, continued.\n\nSecond paragraph.", "b": "Starred name.", "c": "Third."})
    assert described("Do.\n\nParameters:\n    a: x\n") == ("Do.", {"a": "x", "b": None, "c": None})
    assert described("Args:\n    a: only this\nAfter.") == ("After.", {"a": "only this", "b": None, "c": None})


def test_numpy_sections() -> None:
    doc = """Summary.

    Parameters
    ----------
    a : int
        First.
    b, c : int, optional
        Shared.

    Other Parameters
    ----------------
    d : str
        Not a parameter of the tool.

    Notes
    -----
    Kept.
    """
    assert described(doc) == ("Summary.\n\nNotes\n-----\nKept.", {"a": "First.", "b": "Shared.", "c": "Shared."})
    assert described("Summary.\n\nParameters\n----------\na\n    Untyped.")[1]["a"] == "Untyped."


def test_rest_fields() -> None:
    doc = """Summary.

    :param a: First,
        continued.
    :type a: int
    :parameter int b: Second.
    :arg c: Third.
    :returns: Something.
    :rtype: int

    Trailing text.
    """
    assert described(doc) == ("Summary.\n\n:returns: Something.\n:rtype: int\n\nTrailing text.",
                              {"a": "First, continued.", "b": "Second.", "c": "Third."})


def test_description_without_docstring_or_parameter_section() -> None:
    assert described("") == ("", {"a": None, "b": None, "c": None})
    assert described("Just a summary.\n\nExample::\n\n    code()\n") == ("Just a summary.\n\nExample::\n\n    code()",
                                                                          {"a": None, "b": None, "c": None})
    assert described("\n    Args:\n        a: the a\n    ") == ("", {"a": "the a", "b": None, "c": None})
    assert described("Summary.\n\nArgs:\n    a:\n    b: -\n") == ("Summary.", {"a": None, "b": "-", "c": None})
    assert described("Summary.\n\nArgs:\n\nMore.") == ("Summary.\n\nMore.", {"a": None, "b": None, "c": None})
    assert described("Summary.\n\n:param a:\n:param b: B.\n\nMore.") == ("Summary.\n\nMore.",
                                                                          {"a": None, "b": "B.", "c": None})


def test_class_docstrings_describe_nested_types_but_parameters_win() -> None:
    def paint(color: Color, shade: Color) -> None:
        """Paint.

        Args:
            shade: The second coat.
        """

    properties = compile_signature(paint, "paint").input_schema["properties"]
    assert properties["color"]["description"] == "A paint colour."
    assert properties["shade"]["description"] == "The second coat."
    assert "description" not in compile_signature(dataclass_nested, "d").input_schema["properties"]["s"]


# -- check_value on hand-written schemas ----------------------------------------------------------

TREE = {
    "$defs": {"node": {"type": "object", "properties": {"value": {"type": "integer"},
                                                        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                       "required": ["value"]}},
    "$ref": "#/$defs/node",
}
HAND_WRITTEN = [
    # (schema, values accepted, values rejected)
    (TREE, [{"value": 1}, {"value": 1, "children": [{"value": 2, "children": []}]}],
     [{"value": 1, "children": [{}]}, {"value": "1"}]),
    ({"definitions": {"id": {"type": "string", "pattern": "^[a-z]+-[0-9]+$"}},
      "type": "object", "properties": {"id": {"$ref": "#/definitions/id"}}},
     [{"id": "ab-12"}, {}], [{"id": "AB-12"}, {"id": "ab-"}]),
    ({"type": "string", "minLength": 2, "maxLength": 3}, ["ab", "abc", "ée"], ["a", "abcd"]),
    ({"type": "string", "pattern": "[0-9]"}, ["a1b"], ["abc"]),
    ({"type": "number", "minimum": 0, "exclusiveMaximum": 10}, [0, 9.5], [-1, 10, 11]),
    ({"type": "integer", "exclusiveMinimum": 0, "maximum": 10}, [1, 10], [0, 11]),
    ({"type": "number", "multipleOf": 0.5}, [1, 1.5, 0], [0.3, 1.25]),
    ({"type": "integer", "multipleOf": 3}, [0, 9, -3], [4]),
    ({"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 5}]}, [1, 5.5], [5, 4.5, "x"]),
    ({"allOf": [{"type": "string"}, {"minLength": 2}, {"pattern": "^a"}]}, ["ab"], ["a", "ba", 1]),
    ({"const": {"a": [1, True]}}, [{"a": [1.0, True]}], [{"a": [1, 1]}, {"a": [True, True]}]),
    ({"enum": [1, "1", None, [1]]}, [1, "1", None, [1.0]], [True, [True], 2]),
    ({"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "integer"}},
     [["a"], ["a", 1, 2], []], [[1], ["a", "b"]]),
    ({"type": "array", "prefixItems": [{"type": "string"}], "items": False}, [["a"], []], [["a", 1]]),
    ({"type": "array", "uniqueItems": True}, [[1, "1", True, [1], {"a": 1}, {"a": 2}]],
     [[1, 1.0], [{"a": 1, "b": 2}, {"b": 2, "a": 1}], [[1], [1]]]),
    ({"type": "array", "minItems": 1, "maxItems": 2}, [[1], [1, 2]], [[], [1, 2, 3]]),
    ({"type": "object", "patternProperties": {"^x-": {"type": "integer"}}, "additionalProperties": False},
     [{"x-a": 1}, {}], [{"x-a": "1"}, {"y": 1}]),
    ({"type": "object", "additionalProperties": {"type": "string"}, "properties": {"n": {"type": "integer"}}},
     [{"n": 1, "a": "b"}], [{"n": 1, "a": 2}]),
    ({"type": "object", "properties": {"never": False, "always": True}}, [{"always": [1]}, {}], [{"never": 1}]),
    ({"anyOf": [{"type": "string", "maxLength": 1}, {"type": "integer"}], "x-unknown-keyword": 1},
     ["a", 1], ["ab", None]),
    ({"type": ["integer", "string"]}, [1, "a", 2.0], [1.5, None]),
]


@pytest.mark.parametrize("schema, accepted, rejected", HAND_WRITTEN, ids=lambda v: None)
def test_hand_written_schemas_agree_with_jsonschema(schema: dict[str, Any], accepted: list[Any],
                                                   rejected: list[Any]) -> None:
    for value in accepted:
        check_value(value, schema, "v")
    for value in rejected:
        with pytest.raises(ToolArgumentError):
            check_value(value, schema, "v")
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert [validator.is_valid(v) for v in accepted + rejected] == [True] * len(accepted) + [False] * len(rejected)


def test_older_drafts_are_read_as_they_meant() -> None:
    draft4_exclusive = {"type": "number", "minimum": 0, "exclusiveMinimum": True,
                        "maximum": 1, "exclusiveMaximum": False}
    assert check_value(1, draft4_exclusive, "v") == 1.0
    with pytest.raises(ToolArgumentError, match="v must be > 0, got 0"):
        check_value(0, draft4_exclusive, "v")
    tuple_items = {"type": "array", "items": [{"type": "string"}], "additionalItems": False}
    assert check_value(["a"], tuple_items, "v") == ["a"]
    with pytest.raises(ToolArgumentError, match="at most 1 item"):
        check_value(["a", "b"], tuple_items, "v")


@pytest.mark.parametrize("value, schema, message", [
    ({"count": "3"}, {"properties": {"count": {"type": "integer"}}},
     "arguments.count must be of type integer, got a string"),
    ({}, {"required": ["a", "b"]}, "arguments is missing required field(s): a, b"),
    ({"a": 1, "x": 2}, {"properties": {"a": {}, "b": {}}, "additionalProperties": False},
     "arguments has unexpected field 'x' (allowed: a, b)"),
    ({"x": 1}, {"properties": {}, "additionalProperties": False}, "arguments has unexpected field 'x' (allowed: none)"),
    ({"color": "blue"}, {"properties": {"color": {"enum": ["red", "green"]}}},
     'arguments.color must be one of "red", "green", not "blue"'),
    ({"items": [{}, {}, {"name": 1}]},
     {"properties": {"items": {"items": {"properties": {"name": {"type": "string"}}}}}},
     "arguments.items[2].name must be of type string, got an integer"),
    ({"m": {"k": None}}, {"properties": {"m": {"additionalProperties": {"type": "integer"}}}},
     "arguments.m['k'] must be of type integer, got null"),
    ("x", {"anyOf": [{"type": "integer"}, {"type": "null"}]}, "arguments must be an integer or null, got a string"),
    ("x", {"anyOf": [{"enum": [1, 2]}, {"const": None}, {"type": "array"}]},
     "arguments must be one of 1, 2 or null or an array, got a string"),
    ({"x": "1"}, {"anyOf": [{"type": "object", "properties": {"x": {"type": "integer"}}}, {"type": "null"}]},
     "arguments.x must be of type integer, got a string"),
    ("pink", {"anyOf": [{"$ref": "#/$defs/c"}, {"type": "null"}], "$defs": {"c": {"type": "string", "enum": ["red"]}}},
     'arguments must be one of "red", not "pink"'),
    (5, {"oneOf": [{"type": "integer"}, {"type": "number"}]},
     "arguments fits 2 of its alternatives (an integer or a number) but must fit exactly one"),
    ("abc", {"pattern": "^[0-9]+$"}, 'arguments must match the pattern ^[0-9]+$, got "abc"'),
    ("a" * 100, {"maxLength": 3}, "arguments must be at most 3 character(s) long, got 100"),
    (-1, {"minimum": 0}, "arguments must be >= 0, got -1"),
    (7, {"multipleOf": 2}, "arguments must be a multiple of 2, got 7"),
    ([1, 2, 1], {"uniqueItems": True}, "arguments must not repeat items: arguments[2] repeats arguments[0]"),
    ([], {"minItems": 1}, "arguments must have at least 1 item(s), got 0"),
    (2, {"const": "two"}, 'arguments must be "two", not 2'),
    (1, {"allOf": [True, False]}, "arguments is not allowed"),
    ("x" * 100, {"enum": ["a"]}, 'arguments must be one of "a", not "' + "x" * 76 + "..."),
    (None, {"anyOf": [{"$ref": "#/$defs/n"}, False, {"allOf": [{"type": "string"}]}],
            "$defs": {"n": {"type": "integer"}}},
     "arguments must be an integer or nothing or a value matching its schema, got null"),
    ([], {"anyOf": [{"oneOf": [{"type": "string"}, {"const": 0}]}, {"type": "object"}]},
     "arguments must be a string or 0 or an object, got an array"),
])
def test_messages_say_where_what_was_expected_and_what_came(value: Any, schema: dict[str, Any], message: str) -> None:
    with pytest.raises(ToolArgumentError) as info:
        check_value(value, schema, "arguments")
    assert str(info.value) == message


def test_numbers_are_coerced_losslessly() -> None:
    assert type(check_value(3, {"type": "number"}, "v")) is float
    assert type(check_value(3, {"type": ["integer", "number"]}, "v")) is int
    assert type(check_value(3.0, {"type": "integer"}, "v")) is int
    assert type(check_value(3.0, {"type": ["integer", "number"]}, "v")) is float
    assert check_value({"xs": [1, 2.5]}, {"properties": {"xs": {"items": {"type": "number"}}}}, "v") == {"xs": [1.0, 2.5]}
    with pytest.raises(ToolArgumentError, match="too large"):
        check_value(10 ** 400, {"type": "number"}, "v")
    assert check_value(10 ** 400, {"type": "integer", "multipleOf": 0.5}, "v") == 10 ** 400


def test_values_from_python_code_are_checked_by_their_json_type() -> None:
    """Output checks see what tools return: subclasses of the JSON types, not only what json.loads makes."""

    class Name(str):
        pass

    assert check_value(Name("x"), {"type": "string", "minLength": 1}, "v") == "x"
    assert check_value(Priority.HIGH, {"type": "integer", "enum": [1, 2]}, "v") == 2
    with pytest.raises(ToolArgumentError, match="v must be of type string, got tuple"):
        check_value((1,), {"type": "string"}, "v")


def test_schema_mistakes_are_schema_errors() -> None:
    with pytest.raises(SchemaError, match="cannot resolve \\$ref '#/\\$defs/missing'"):
        check_value(1, {"$ref": "#/$defs/missing"}, "v")
    with pytest.raises(SchemaError, match="only references into the same schema"):
        check_value(1, {"$ref": "https://example.com/schema"}, "v")
    with pytest.raises(SchemaError, match="invalid pattern"):
        check_value("a", {"pattern": "("}, "v")


# -- to_jsonable ----------------------------------------------------------------------------------


def test_to_jsonable() -> None:
    class Shade(str, enum.Enum):
        DARK = "dark"

    class Name(str):
        pass

    assert to_jsonable(None) is None
    assert to_jsonable("é") == "é"
    assert to_jsonable(Color.RED) == "red"
    assert to_jsonable(Shade.DARK) == "dark" and type(to_jsonable(Shade.DARK)) is str
    assert to_jsonable(Priority.HIGH) == 2 and type(to_jsonable(Priority.HIGH)) is int
    assert to_jsonable((1, (2, 3))) == [1, [2, 3]]
    assert to_jsonable({"b", "a", "c"}) == ["a", "b", "c"]
    assert sorted(to_jsonable(frozenset({1, "a"})), key=str) == [1, "a"]
    assert to_jsonable(Segment(Point(1.0), Point(2.0, 3.0), "s")) == {
        "start": {"x": 1.0, "y": 0.0}, "end": {"x": 2.0, "y": 3.0}, "label": "s"}
    assert to_jsonable({"k": [Options()], Color.RED: 1, 2: None}) == {
        "k": [{"tags": [], "verbose": False, "level": 1}], "red": 1, 2: None}
    assert to_jsonable(Name("n")) == "n" and type(to_jsonable(Name("n"))) is Name  # the encoder writes it as a str
    assert to_jsonable(math.inf) == math.inf  # a float; whether to allow it is the encoder's call
    for bad in (b"bytes", Opaque(), Point, {(1, 2): "tuple key"}, [object()]):
        with pytest.raises(TypeError):
            to_jsonable(bad)


def test_defaults_are_published_as_json() -> None:
    def tool(when: tuple[int, ...] = (1, 2), colors: frozenset[Color] = frozenset({Color.RED, Color.BLUE}),
             p: Optional[Point] = Point(1.0)) -> None: ...

    properties = compile_signature(tool, "tool").input_schema["properties"]
    assert properties["when"]["default"] == [1, 2]
    assert properties["colors"]["default"] == ["blue", "red"]
    assert properties["p"]["default"] == {"x": 1.0, "y": 0.0}


def test_compiled_schemas_are_independent_copies() -> None:
    first = compile_signature(dataclass_param, "a").input_schema
    first["properties"]["p"]["description"] = "changed"
    assert compile_signature(dataclass_param, "a").input_schema["properties"]["p"]["description"] == "A point on the plane."
