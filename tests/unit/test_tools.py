"""Tool registry: schemas from signatures, registration rules, argument checks, results."""

import typing
from typing import Any, Dict, List, Optional, Union

import pytest

from loopback.tools import Tool, ToolArgumentError, ToolRegistry, check_value, error_result, to_call_result


def schema_of(func: Any, **options: Any) -> dict:
    return dict(ToolRegistry().add(func, **options).input_schema)


def props(func: Any) -> dict:
    return schema_of(func)["properties"]


# -- schemas from signatures ------------------------------------------------------------------


def test_scalar_types() -> None:
    def f(s: str, i: int, x: float, b: bool) -> None: ...

    assert schema_of(f) == {
        "type": "object",
        "properties": {"s": {"type": "string"}, "i": {"type": "integer"}, "x": {"type": "number"}, "b": {"type": "boolean"}},
        "required": ["s", "i", "x", "b"],
        "additionalProperties": False,
    }


def test_defaults_are_optional_and_documented() -> None:
    def f(a: int, b: int = 2, name: str = "x", flag: bool = False, ratio: float = 0.5, items: list = []) -> None: ...  # noqa: B006

    schema = schema_of(f)
    assert schema["required"] == ["a"]
    assert schema["properties"]["b"] == {"type": "integer", "default": 2}
    assert schema["properties"]["name"] == {"type": "string", "default": "x"}
    assert schema["properties"]["flag"] == {"type": "boolean", "default": False}
    assert schema["properties"]["ratio"] == {"type": "number", "default": 0.5}
    assert schema["properties"]["items"] == {"type": "array", "default": []}


def test_no_required_key_when_nothing_is_required() -> None:
    def f(a: int = 1) -> None: ...

    def g() -> None: ...

    assert "required" not in schema_of(f)
    assert schema_of(g) == {"type": "object", "properties": {}, "additionalProperties": False}


def test_optional_types() -> None:
    def f(a: Optional[str] = None, b: Union[int, None] = None, c: "float | None" = None,
          d: Optional[List[int]] = None) -> None: ...

    p = props(f)
    assert p["a"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert p["b"] == {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}
    assert p["c"] == {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None}
    assert p["d"] == {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}], "default": None}


def test_containers() -> None:
    def f(xs: list[int], m: dict[str, int], tags: List[str], raw: list, obj: dict, nested: list[list[float]],
          counts: Dict[str, Optional[int]]) -> None: ...

    p = props(f)
    assert p["xs"] == {"type": "array", "items": {"type": "integer"}}
    assert p["m"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert p["tags"] == {"type": "array", "items": {"type": "string"}}
    assert p["raw"] == {"type": "array"}
    assert p["obj"] == {"type": "object"}
    assert p["nested"] == {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
    assert p["counts"] == {"type": "object", "additionalProperties": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}


def test_unannotated_and_any_accept_anything() -> None:
    def f(a, b: Any, c=3) -> None: ...  # noqa: ANN001

    p = props(f)
    assert p == {"a": {}, "b": {}, "c": {"default": 3}}


def test_string_annotations_are_resolved() -> None:
    def f(a: "int", b: "list[str]" = None) -> None: ...  # type: ignore[assignment]

    p = props(f)
    assert p["a"] == {"type": "integer"}
    assert p["b"]["type"] == "array"


RESULT_STRING = {"type": "object", "properties": {"result": {"type": "string"}}, "required": ["result"]}


def test_description_and_name_come_from_the_function() -> None:
    def greet(name: str) -> str:
        """Say hello.

        Details:
            indented.
        """
        return f"hello {name}"

    tool = ToolRegistry().add(greet)
    assert tool.name == "greet"
    assert tool.description == "Say hello.\n\nDetails:\n    indented."
    assert tool.definition() == {"name": "greet", "description": tool.description, "inputSchema": tool.input_schema,
                                 "outputSchema": RESULT_STRING}

    def bare(x: int):
        return x

    assert ToolRegistry().add(bare).definition() == {"name": "bare", "inputSchema": schema_of(bare)}


# -- registration errors ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 129, "ünï", "semi;colon", "<lambda>"])
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid tool name"):
        ToolRegistry().add(lambda: None, name=name)


@pytest.mark.parametrize("name", ["a", "x" * 128, "a.b-c_D9", "ns.tool", "UPPER"])
def test_good_names(name: str) -> None:
    assert ToolRegistry().add(lambda: None, name=name).name == name


def test_a_lambda_needs_a_name() -> None:
    with pytest.raises(ValueError, match="invalid tool name"):
        ToolRegistry().add(lambda: None)


def test_not_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        ToolRegistry().add("not a function", name="x")  # type: ignore[arg-type]


def test_duplicate_names() -> None:
    registry = ToolRegistry()

    def f() -> str:
        return "first"

    registry.add(f)
    with pytest.raises(ValueError, match="already registered"):
        registry.add(lambda: "second", name="f")
    assert registry.get("f").func is f  # type: ignore[union-attr]


def test_var_positional() -> None:
    def many(*args: int) -> None: ...

    with pytest.raises(TypeError) as info:
        ToolRegistry().add(many)
    assert "'many'" in str(info.value) and "'args'" in str(info.value)


def test_var_keyword() -> None:
    def loose(a: int, **kwargs: int) -> None: ...

    with pytest.raises(TypeError) as info:
        ToolRegistry().add(loose)
    assert "'loose'" in str(info.value) and "'kwargs'" in str(info.value) and "**kwargs" in str(info.value)


def test_positional_only() -> None:
    def pos(a: int, /) -> None: ...

    with pytest.raises(TypeError, match="keyword arguments only"):
        ToolRegistry().add(pos)


@pytest.mark.parametrize("annotation", [set, dict[int, str], bytes, list[set], object, typing.Callable[[], int]])
def test_unsupported_annotations_name_function_and_parameter(annotation: Any) -> None:
    def odd(fine: int, strange: int) -> None: ...

    odd.__annotations__["strange"] = annotation
    with pytest.raises(TypeError) as info:
        ToolRegistry().add(odd)
    message = str(info.value)
    assert "'odd'" in message and "'strange'" in message and "unsupported type annotation" in message


def test_unresolvable_string_annotation() -> None:
    def f(a: "NoSuchType") -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(TypeError, match="'f'"):
        ToolRegistry().add(f)


def test_a_default_json_cannot_hold() -> None:
    def f(a: Any = object()) -> None: ...

    with pytest.raises(TypeError) as info:
        ToolRegistry().add(f)
    assert "'f'" in str(info.value) and "'a'" in str(info.value) and "JSON" in str(info.value)


def test_a_failed_registration_registers_nothing() -> None:
    registry = ToolRegistry()

    def bad(x: set) -> None: ...

    with pytest.raises(TypeError):
        registry.add(bad)
    assert len(registry) == 0 and "bad" not in registry


# -- replace, remove, decorator, hand-written schema -------------------------------------------


def test_replace() -> None:
    registry = ToolRegistry()
    registry.add(lambda: "old", name="t")
    registry.add(lambda: None, name="other")
    new = registry.add(lambda x=1: "new", name="t", replace=True, description="New.")
    assert registry.get("t") is new
    assert [t.name for t in registry] == ["t", "other"]  # keeps its place
    assert registry.get("t").call({})["content"][0]["text"] == "new"  # type: ignore[union-attr]


def test_remove() -> None:
    registry = ToolRegistry()
    registry.add(lambda: None, name="t")
    snapshot = registry.tools()
    assert registry.remove("t") is True
    assert registry.remove("t") is False
    assert registry.get("t") is None and "t" not in registry and len(registry) == 0
    assert [t.name for t in snapshot] == ["t"]  # a snapshot is not changed afterwards
    registry.add(lambda: None, name="t")  # the name is free again


def test_decorator_bare() -> None:
    registry = ToolRegistry()

    @registry.tool
    def double(x: int) -> int:
        """Double it."""
        return 2 * x

    assert double(4) == 8  # still a plain function
    assert registry.get("double").description == "Double it."  # type: ignore[union-attr]


def test_decorator_with_options() -> None:
    registry = ToolRegistry()

    @registry.tool(name="math.triple", title="Triple", description="Multiply by three.",
                   annotations={"readOnlyHint": True})
    def triple(x: int) -> int:
        """Ignored docstring."""
        return 3 * x

    assert triple(2) == 6
    assert "triple" not in registry
    definition = registry.get("math.triple").definition()  # type: ignore[union-attr]
    assert definition == {
        "name": "math.triple",
        "title": "Triple",
        "description": "Multiply by three.",
        "inputSchema": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"],
                        "additionalProperties": False},
        "outputSchema": {"type": "object", "properties": {"result": {"type": "integer"}}, "required": ["result"]},
        "annotations": {"readOnlyHint": True},
    }


def test_hand_written_input_schema() -> None:
    registry = ToolRegistry()
    schema = {
        "type": "object",
        "properties": {"mode": {"enum": ["fast", "slow"]}, "n": {"type": "integer"}},
        "required": ["mode"],
        "additionalProperties": False,
    }

    def run(**options: Any) -> dict:  # **kwargs is fine when the schema is given
        return options

    tool = registry.add(run, input_schema=schema)
    assert tool.definition()["inputSchema"] == schema
    assert tool.call({"mode": "fast", "n": 2})["structuredContent"] == {"mode": "fast", "n": 2}
    for arguments, fragment in [({}, "missing required field(s): mode"), ({"mode": "medium"}, "must be one of"),
                                ({"mode": "fast", "n": "2"}, "arguments.n must be of type integer"),
                                ({"mode": "fast", "x": 1}, "unexpected field 'x'")]:
        result = tool.call(arguments)
        assert result["isError"] is True and fragment in result["content"][0]["text"], (arguments, result)


@pytest.mark.parametrize("schema", [{}, {"type": "array"}, {"properties": {}}, "object"])
def test_hand_written_schema_must_be_an_object_schema(schema: Any) -> None:
    with pytest.raises(ValueError, match="input_schema"):
        ToolRegistry().add(lambda: None, name="t", input_schema=schema)


def test_registry_order_and_snapshot() -> None:
    registry = ToolRegistry()
    for name in ("c", "a", "b"):
        registry.add(lambda: None, name=name)
    assert [t.name for t in registry.tools()] == ["c", "a", "b"]
    assert [t.name for t in registry] == ["c", "a", "b"]
    assert isinstance(registry.get("a"), Tool)


# -- calls and argument checks ------------------------------------------------------------------


def test_call_checks_and_coerces_arguments() -> None:
    def f(x: float, xs: list[float], m: dict[str, float]) -> dict:
        return {"types": [type(x).__name__, *(type(v).__name__ for v in xs), *(type(v).__name__ for v in m.values())]}

    tool = ToolRegistry().add(f)
    result = tool.call({"x": 1, "xs": [1, 2.5], "m": {"k": 3}})
    assert result["structuredContent"] == {"types": ["float", "float", "float", "float"]}


@pytest.mark.parametrize("arguments, fragment", [
    ({"xs": [1, "2"], "m": {}}, "arguments.xs[1] must be of type integer, got a string"),
    ({"xs": [1], "m": {"k": None}}, "arguments.m['k'] must be of type integer, got null"),
    ({"xs": {}, "m": {}}, "arguments.xs must be of type array, got an object"),
    ({"xs": [], "m": []}, "arguments.m must be of type object, got an array"),
    ({"xs": [True], "m": {}}, "arguments.xs[0] must be of type integer, got a boolean"),
])
def test_nested_argument_errors_name_the_path(arguments: dict, fragment: str) -> None:
    def f(xs: list[int], m: dict[str, int]) -> None: ...

    result = ToolRegistry().add(f).call(arguments)
    assert result["isError"] is True
    assert fragment in result["content"][0]["text"]


def test_check_value_directly() -> None:
    assert check_value(3, {"type": "number"}, "v") == 3.0 and isinstance(check_value(3, {"type": "number"}, "v"), float)
    assert check_value(None, {"anyOf": [{"type": "integer"}, {"type": "null"}]}, "v") is None
    assert check_value("x", {}, "v") == "x"
    with pytest.raises(ToolArgumentError, match="v must be of type integer or null"):
        check_value("x", {"type": ["integer", "null"]}, "v")
    with pytest.raises(ToolArgumentError, match="v must be one of"):
        check_value(3, {"enum": [1, 2]}, "v")


def test_tool_exceptions_become_error_results() -> None:
    def boom(reason: str) -> None:
        raise RuntimeError(reason)

    result = ToolRegistry().add(boom).call({"reason": "no disk"})
    assert result == {"content": [{"type": "text", "text": "Tool 'boom' failed: RuntimeError: no disk"}], "isError": True}


def test_result_helpers() -> None:
    assert to_call_result("x") == {"content": [{"type": "text", "text": "x"}], "isError": False}
    assert to_call_result(None) == {"content": [], "isError": False}
    assert to_call_result(7) == {"content": [{"type": "text", "text": "7"}], "isError": False}
    assert to_call_result([1, 2]) == {"content": [{"type": "text", "text": "[1, 2]"}], "isError": False}
    assert to_call_result({"a": "é"}) == {"content": [{"type": "text", "text": '{"a": "é"}'}], "isError": False,
                                          "structuredContent": {"a": "é"}}
    assert error_result("bad") == {"content": [{"type": "text", "text": "bad"}], "isError": True}
    assert to_call_result(float("nan"))["isError"] is True
