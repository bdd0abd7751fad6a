"""schema.checker: the compiled check gives what check_value gives, value for value and
error for error, on flat scalar object schemas (its fast loop) and on others."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopback.schema import ToolArgumentError, check_value, checker

FLAT = {"type": "object", "properties": {"a": {"type": "integer"}, "x": {"type": "number", "description": "x"},
                                          "s": {"type": "string"}, "f": {"type": "boolean"}},
        "required": ["a"], "additionalProperties": False}
OPEN = {**FLAT, "additionalProperties": True}
NESTED = {"type": "object", "properties": {"p": {"type": "array", "items": {"type": "integer"}}}}

scalars = st.one_of(st.integers(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70), st.floats(),
                    st.text(max_size=3), st.booleans(), st.none())
values = st.one_of(scalars, st.dictionaries(st.sampled_from(["a", "x", "s", "f", "p", "zz"]),
                                            st.one_of(scalars, st.lists(st.integers(), max_size=2)), max_size=5))


def _outcome(check: Any, value: Any) -> Any:
    try:
        result = check(value)
    except ToolArgumentError as exc:
        return ("error", str(exc))
    if isinstance(result, dict):
        return ("ok", [(k, type(v).__name__, repr(v)) for k, v in result.items()])
    return ("ok", type(result).__name__, repr(result))


@pytest.mark.parametrize("schema", [FLAT, OPEN, NESTED, {"type": "object"}], ids=["flat", "open", "nested", "any"])
@settings(max_examples=300, deadline=None)
@given(value=values)
def test_checker_agrees_with_check_value(schema: dict[str, Any], value: Any) -> None:
    compiled = checker(schema)
    assert _outcome(lambda v: compiled(v, "arguments"), value) == _outcome(
        lambda v: check_value(v, schema, "arguments"), value)


def test_coercions_of_the_fast_loop() -> None:
    check = checker(FLAT)
    out = check({"a": 1, "x": 2}, "arguments")
    assert out == {"a": 1, "x": 2.0} and type(out["x"]) is float
    assert type(check({"a": 3.0}, "arguments")["a"]) is int  # an integral float, the general way
    with pytest.raises(ToolArgumentError, match="unexpected field"):
        check({"a": 1, "zz": 1}, "arguments")
    with pytest.raises(ToolArgumentError, match="finite"):
        check({"a": 1, "x": math.inf}, "arguments")


def test_checker_compiled_once_per_schema() -> None:
    assert checker(FLAT) is checker(FLAT)
