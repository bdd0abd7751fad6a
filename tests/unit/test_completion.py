"""completion/complete: completers for prompt arguments and resource template variables,
the 100-value cap, errors, and the conformance suite's request over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

import loopback
from loopback import protocol
from loopback.completions import MAX_VALUES, complete
from loopback.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS
from loopback.protocol import RequestContext
from loopback.tools import ToolRegistry


CITIES = ["paris", "park city", "parma", "berlin", "bern"]


def build_registry() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.prompts.prompt
    def trip(city: str, country: str = "") -> str:
        """Plan a trip."""
        return f"Plan a trip to {city} {country}"

    @registry.prompts.prompt
    def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
        """A prompt with required arguments."""
        return f"{arg1} {arg2}"

    def cities(value: str, arguments: dict[str, str]) -> list[str]:
        found = [city for city in CITIES if city.startswith(value)]
        if arguments.get("country") == "de":
            found = [city for city in found if city.startswith("b")]
        return found

    registry.prompts.add_completer("trip", "city", cities)

    @registry.resources.resource("weather://{city}/{day}")
    def weather(city: str, day: str) -> str:
        return f"sunny in {city} on {day}"

    registry.resources.add_completer("weather://{city}/{day}", "day",
                                     lambda value, arguments: [f"{arguments.get('city', '?')}:{d}"
                                                               for d in ("mon", "tue") if d.startswith(value)])
    registry.resources.add_completer("weather://{city}/{day}", "city", lambda value, arguments: [str(n) for n in range(250)])
    registry.prompts.add_completer("test_prompt_with_arguments", "arg2", lambda value, arguments: 7)  # type: ignore
    registry.prompts.add_completer("test_prompt_with_arguments", "arg1",
                                   lambda value, arguments: (_ for _ in ()).throw(RuntimeError("no index")))
    return registry


def _call(ctx: RequestContext, params: Any) -> dict[str, Any]:
    return protocol.handle_payload({"jsonrpc": "2.0", "id": 3, "method": "completion/complete", "params": params}, ctx)


@pytest.fixture
def ctx() -> RequestContext:
    return RequestContext(registry=build_registry(), protocol_version_header="2025-11-25")


def test_complete_shapes_the_values() -> None:
    assert complete(None, "x", {}) == {"values": [], "total": 0, "hasMore": False}
    assert complete(lambda value, arguments: [value + "!"], "x", {}) == {"values": ["x!"], "total": 1, "hasMore": False}
    many = complete(lambda value, arguments: [str(n) for n in range(101)], "", {})
    assert len(many["values"]) == MAX_VALUES == 100 and many["total"] == 101 and many["hasMore"] is True
    for bad in ("abc", ["a", 1], {"a": 1}, None):
        with pytest.raises(TypeError, match="list of str"):
            complete(lambda value, arguments, bad=bad: bad, "", {})


def test_prompt_argument_completion_sees_the_other_arguments(ctx: RequestContext) -> None:
    ref = {"type": "ref/prompt", "name": "trip"}
    answer = _call(ctx, {"ref": ref, "argument": {"name": "city", "value": "par"}})
    assert answer["result"] == {"completion": {"values": ["paris", "park city", "parma"], "total": 3, "hasMore": False}}
    answer = _call(ctx, {"ref": ref, "argument": {"name": "city", "value": "b"},
                         "context": {"arguments": {"country": "de"}}})
    assert answer["result"]["completion"]["values"] == ["berlin", "bern"]
    # An argument without a completer has no suggestions.
    answer = _call(ctx, {"ref": ref, "argument": {"name": "country", "value": "f"}})
    assert answer["result"] == {"completion": {"values": [], "total": 0, "hasMore": False}}


def test_resource_template_completion(ctx: RequestContext) -> None:
    ref = {"type": "ref/resource", "uri": "weather://{city}/{day}"}
    answer = _call(ctx, {"ref": ref, "argument": {"name": "day", "value": "t"},
                         "context": {"arguments": {"city": "oslo"}}})
    assert answer["result"]["completion"]["values"] == ["oslo:tue"]
    capped = _call(ctx, {"ref": ref, "argument": {"name": "city", "value": ""}})["result"]["completion"]
    assert len(capped["values"]) == 100 and capped["total"] == 250 and capped["hasMore"] is True


@pytest.mark.parametrize("params, fragment", [
    ({"ref": {"type": "ref/prompt", "name": "nope"}, "argument": {"name": "a", "value": ""}}, "Unknown prompt: nope"),
    ({"ref": {"type": "ref/resource", "uri": "weather://x/y"}, "argument": {"name": "a", "value": ""}},
     "Unknown resource template"),
    ({"ref": {"type": "ref/tool", "name": "x"}, "argument": {"name": "a", "value": ""}}, "unknown ref type"),
    ({"ref": {"type": "ref/prompt"}, "argument": {"name": "a", "value": ""}}, "string 'name'"),
    ({"ref": {"type": "ref/resource"}, "argument": {"name": "a", "value": ""}}, "string 'uri'"),
    ({"argument": {"name": "a", "value": ""}}, "'ref' object"),
    ({"ref": {"type": "ref/prompt", "name": "trip"}}, "'argument' must be an object"),
    ({"ref": {"type": "ref/prompt", "name": "trip"}, "argument": {"name": "city", "value": 3}}, "'argument'"),
    ({"ref": {"type": "ref/prompt", "name": "trip"}, "argument": {"name": "city", "value": ""}, "context": []},
     "'context'"),
    ({"ref": {"type": "ref/prompt", "name": "trip"}, "argument": {"name": "city", "value": ""},
      "context": {"arguments": {"country": 1}}}, "context.arguments"),
])
def test_bad_requests_are_invalid_params(ctx: RequestContext, params: dict[str, Any], fragment: str) -> None:
    error = _call(ctx, params)["error"]
    assert error["code"] == INVALID_PARAMS and fragment in error["message"]


def test_a_failing_completer_is_an_internal_error_without_traceback(ctx: RequestContext) -> None:
    ref = {"type": "ref/prompt", "name": "test_prompt_with_arguments"}
    for argument, fragment in (("arg1", "RuntimeError: no index"), ("arg2", "list of str")):
        error = _call(ctx, {"ref": ref, "argument": {"name": argument, "value": ""}})["error"]
        assert error["code"] == INTERNAL_ERROR and fragment in error["message"]
        assert "Traceback" not in json.dumps(error)


def test_completers_for_unknown_arguments_are_refused_when_the_target_is_known() -> None:
    registry = build_registry()
    with pytest.raises(ValueError, match="no argument 'town'"):
        registry.prompts.add_completer("trip", "town", lambda value, arguments: [])
    with pytest.raises(ValueError, match="no variable 'hour'"):
        registry.resources.add_completer("weather://{city}/{day}", "hour", lambda value, arguments: [])
    with pytest.raises(TypeError, match="callable"):
        registry.prompts.add_completer("trip", "city", "paris")  # type: ignore[arg-type]
    # A completer may come before its prompt (decorators in any order).
    registry.prompts.add_completer("later", "topic", lambda value, arguments: ["owls"])
    registry.prompts.add(lambda topic: topic, name="later")
    ctx = RequestContext(registry=registry, protocol_version_header="2025-11-25")
    answer = _call(ctx, {"ref": {"type": "ref/prompt", "name": "later"}, "argument": {"name": "topic", "value": ""}})
    assert answer["result"]["completion"]["values"] == ["owls"]


def test_the_default_registry_decorator() -> None:
    registry = loopback.default_registry()
    saved = (registry.prompts._completers, registry.resources._completers)  # restored: the registry is shared

    @loopback.prompt
    def completion_test_prompt(language: str) -> str:
        return language

    try:
        @loopback.completion(prompt="completion_test_prompt", argument="language")
        def languages(value: str, arguments: dict[str, str]) -> list[str]:
            return [name for name in ("python", "perl", "go") if name.startswith(value)]

        assert registry.prompts.completer("completion_test_prompt", "language") is languages
        with pytest.raises(TypeError, match="exactly one"):
            loopback.completion(argument="x")
        with pytest.raises(TypeError, match="exactly one"):
            loopback.completion(prompt="a", resource="b://c", argument="x")

        @loopback.completion(resource="completion-test://{item}", argument="item")
        def items(value: str, arguments: dict[str, str]) -> list[str]:
            return ["one"]

        assert registry.resources.completer("completion-test://{item}", "item") is items
    finally:
        registry.prompts.remove("completion_test_prompt")
        registry.prompts._completers, registry.resources._completers = saved


# -- over HTTP ------------------------------------------------------------------------------------


