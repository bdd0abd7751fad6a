"""The same schemas and objects on every supported Python (3.9 to 3.13): loopback._compat.

Each test runs on every interpreter tox runs; the expected values are those of 3.11+,
where the standard library needs no help.
"""

from __future__ import annotations

import dataclasses
import sys
import types
from typing import Optional

import pytest

from loopback import Audio, Image, Message, Text
from loopback._compat import get_type_hints, is_qualifier, slotted
from loopback.schema import SchemaError, compile_signature

MODERN = '''
from __future__ import annotations
import dataclasses
from typing import Annotated, Literal, Optional, TypedDict

@dataclasses.dataclass
class Leaf:
    weight: float | None

@dataclasses.dataclass
class Node:
    name: str
    leaves: list["Leaf"] | None = None

class Options(TypedDict, total=False):
    depth: int | None

def search(text: str | None, limit: int = None, tags: list["Tag"] = (), mode: Literal["a|b", "c"] = "c",
           note: Annotated[str | None, "a | note"] = None, options: Optional[Options] = None) -> dict[str, int | str]:
    "Search."

Tag = Annotated[str, "a tag"]
'''


@pytest.fixture
def modern(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    module = types.ModuleType("modern_annotations")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # @dataclass looks its module up
    exec(compile(MODERN, "modern.py", "exec", dont_inherit=True), module.__dict__)
    return module.__dict__


def test_x_or_y_string_annotations_give_the_same_schema_everywhere(modern: dict[str, object]) -> None:
    """``int | None`` under ``from __future__ import annotations``: Python 3.9 cannot evaluate it itself."""
    schema = compile_signature(modern["search"], "search").input_schema  # type: ignore[arg-type]
    props = schema["properties"]
    assert props["text"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    # A None default does not make the type Optional (3.9 and 3.10's get_type_hints would).
    assert props["limit"] == {"type": "integer", "default": None}
    assert props["tags"]["items"] == {"type": "string", "description": "a tag"}
    assert props["mode"]["enum"] == ["a|b", "c"]  # a Literal's strings are values, not types
    assert props["note"]["description"] == "a | note"
    assert props["options"]["anyOf"][0]["properties"]["depth"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert schema["required"] == ["text"]


def test_dataclass_fields_with_x_or_y_and_nested_forward_references(modern: dict[str, object]) -> None:
    hints = get_type_hints(modern["Node"])
    assert hints["name"] is str
    assert hints["leaves"] == Optional[list[modern["Leaf"]]]  # type: ignore[misc]

    def walk(root: int) -> None: ...

    walk.__annotations__["root"] = modern["Node"]
    props = compile_signature(walk, "walk").input_schema["properties"]["root"]["properties"]
    assert props["name"] == {"type": "string"}
    leaf = {"type": "object", "properties": {"weight": {"anyOf": [{"type": "number"}, {"type": "null"}]}},
            "required": ["weight"], "additionalProperties": False}
    assert props["leaves"] == {"anyOf": [{"type": "array", "items": leaf}, {"type": "null"}], "default": None}


@dataclasses.dataclass
class Tree:
    children: list["Tree"]  # noqa: UP037 - the string inside the builtin generic is the point


def test_strings_inside_builtin_generics_are_resolved_everywhere() -> None:
    assert get_type_hints(Tree)["children"] == list[Tree]  # not list['Tree'], as 3.9 and 3.10 leave it

    def plant(tree: Tree) -> None: ...

    with pytest.raises(SchemaError, match="Tree contains itself; recursive types are not supported"):
        compile_signature(plant, "plant")


def test_content_arguments_after_the_first_are_keyword_only() -> None:
    assert Text("hi", annotations={"priority": 1}).annotations == {"priority": 1}
    with pytest.raises(TypeError):
        Text("hi", {"priority": 1})  # type: ignore[misc]
    image = Image(b"\x89PNG", "image/png", meta={"k": "v"})
    assert image.to_block()["_meta"] == {"k": "v"}
    with pytest.raises(TypeError):
        Audio(b"x", "audio/wav", None)  # type: ignore[misc]


def test_content_and_messages_are_slotted_and_frozen() -> None:
    for value in (Text("a"), Image(b"x", "image/png"), Message("user", "hi")):
        assert not hasattr(value, "__dict__")
        for name in ("text", "role", "data", "no_such_field"):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(value, name, "b")
            with pytest.raises(dataclasses.FrozenInstanceError):
                delattr(value, name)
    assert dataclasses.replace(Text("a", meta={"k": 1}), text="b") == Text("b", meta={"k": 1})


def test_slotted_keeps_defaults_and_refuses_a_class_with_slots() -> None:
    @slotted
    @dataclasses.dataclass
    class Point:
        x: int
        y: int = 0
        tags: list[str] = dataclasses.field(default_factory=list)

    point = Point(1)
    assert (point.x, point.y, point.tags) == (1, 0, [])
    assert Point.__slots__ == ("x", "y", "tags") and not hasattr(point, "__dict__")
    with pytest.raises(AttributeError):
        point.z = 3  # type: ignore[attr-defined]

    class Slots:
        __slots__ = ("a",)

    with pytest.raises(TypeError, match="already specifies __slots__"):
        slotted(dataclasses.dataclass(Slots))


def test_typeddict_qualifiers_of_typing_and_typing_extensions() -> None:
    import typing

    extensions = pytest.importorskip("typing_extensions")
    assert is_qualifier(typing.get_origin(extensions.NotRequired[int]), "NotRequired")
    assert not is_qualifier(typing.get_origin(extensions.NotRequired[int]), "Required")
    assert not is_qualifier(None, "Required")
    if sys.version_info >= (3, 11):
        assert is_qualifier(typing.get_origin(typing.Required[int]), "Required")
