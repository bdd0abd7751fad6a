"""Prompts: arguments from signatures, messages from return values, argument checks,
the prompts/* handlers, and the conformance suite's prompts over real HTTP."""

from __future__ import annotations

import base64
import json
from typing import Any, Literal, Optional

import pytest

import loopback
from loopback import EmbeddedResource, Image, Message, ResourceLink, Text, protocol
from loopback.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS
from loopback.prompts import Prompt, PromptArgumentError, PromptRegistry
from loopback.protocol import RequestContext
from loopback.schema import SchemaError
from loopback.settings import Settings
from loopback.tools import ToolRegistry


PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


def conformance_registry() -> ToolRegistry:
    """The prompts the conformance suite's prompt scenarios get."""
    registry = ToolRegistry()
    prompts = registry.prompts

    @prompts.prompt(title="Simple Test Prompt")
    def test_simple_prompt() -> str:
        """A simple prompt without arguments."""
        return "This is a simple prompt for testing."

    @prompts.prompt
    def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
        """A prompt with required arguments.

        Args:
            arg1: First test argument
            arg2: Second test argument
        """
        return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"

    @prompts.prompt
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
        """A prompt that includes an embedded resource.

        Args:
            resourceUri: URI of the resource to embed
        """
        return [
            Message("user", EmbeddedResource(resourceUri, text="Embedded resource content for testing.",
                                             mime_type="text/plain")),
            Message("user", "Please process the embedded resource above."),
        ]

    @prompts.prompt
    def test_prompt_with_image() -> list[Message]:
        """A prompt that includes image content."""
        return [Message("user", Image(PNG, "image/png")), Message("user", Text("Please analyze the image above."))]

    @prompts.prompt("broken", description="Always fails.")
    def broken() -> str:
        raise KeyError("template missing")

    return registry


# -- registry ---------------------------------------------------------------------------------------


def test_arguments_come_from_the_signature_and_docstring() -> None:
    registry = PromptRegistry()

    def review(code: str, language: Optional[str] = None, tone: Literal["kind", "blunt"] = "kind", notes="") -> str:
        """Review a piece of code.

        Args:
            code: the code to review
            tone: how to say it
        """
        return code

    prompt = registry.add(review, title="Code review")
    assert isinstance(prompt, Prompt)
    assert prompt.definition() == {
        "name": "review",
        "title": "Code review",
        "description": "Review a piece of code.",
        "arguments": [
            {"name": "code", "description": "the code to review", "required": True},
            {"name": "language", "required": False},
            {"name": "tone", "description": "how to say it", "required": False},
            {"name": "notes", "required": False},
        ],
    }
    assert registry.prompts() == [prompt] and "review" in registry and len(registry) == 1


def test_a_prompt_without_arguments_lists_none() -> None:
    prompt = PromptRegistry().add(lambda: "hi", name="hello", description="Say hi.")
    assert prompt.definition() == {"name": "hello", "description": "Say hi."}


@pytest.mark.parametrize("annotation", [int, list, dict, bool])
def test_non_string_parameters_are_refused(annotation: Any) -> None:
    def bad(x):  # type: ignore[no-untyped-def]
        return ""

    bad.__annotations__ = {"x": annotation}
    with pytest.raises(SchemaError, match="prompt 'bad', parameter 'x': prompt arguments are strings"):
        PromptRegistry().add(bad)


def test_schema_errors_speak_of_prompts() -> None:
    with pytest.raises(SchemaError, match=r"^prompt 'star'"):
        PromptRegistry().add(lambda *args: "", name="star")


def test_names_are_unique_unless_replaced() -> None:
    registry = PromptRegistry()
    registry.add(lambda: "one", name="p")
    with pytest.raises(ValueError, match="already registered"):
        registry.add(lambda: "two", name="p")
    registry.add(lambda: "two", name="p", replace=True)
    assert registry.get("p").render({})["messages"][0]["content"]["text"] == "two"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="invalid prompt name"):
        registry.add(lambda: "", name=" ")
    with pytest.raises(TypeError, match="callable"):
        registry.add(42)  # type: ignore[arg-type]
    assert registry.remove("p") and not registry.remove("p") and registry.get("p") is None


def test_return_values_become_messages() -> None:
    registry = PromptRegistry()
    link = ResourceLink("file:///a.txt", "a.txt")
    cases: list[tuple[Any, list[dict[str, Any]]]] = [
        ("hi", [{"role": "user", "content": {"type": "text", "text": "hi"}}]),
        (Message("assistant", "ok"), [{"role": "assistant", "content": {"type": "text", "text": "ok"}}]),
        (link, [{"role": "user", "content": link.to_block()}]),
        (["a", Message("assistant", Text("b")), Image(PNG, "image/png")], [
            {"role": "user", "content": {"type": "text", "text": "a"}},
            {"role": "assistant", "content": {"type": "text", "text": "b"}},
            {"role": "user", "content": {"type": "image", "data": base64.b64encode(PNG).decode(),
                                         "mimeType": "image/png"}},
        ]),
    ]
    for index, (value, expected) in enumerate(cases):
        prompt = registry.add(_returning(value), name=f"p{index}")
        assert prompt.render({}) == {"messages": expected}
    with pytest.raises(TypeError, match="not int"):
        registry.add(lambda: 3, name="number").render({})


def _returning(value: Any) -> Any:
    return lambda: value


def test_messages_check_their_role_and_content() -> None:
    with pytest.raises(ValueError, match="role"):
        Message("system", "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="content"):
        Message("user", 5)  # type: ignore[arg-type]


@pytest.mark.parametrize("arguments, fragment", [
    ({}, "missing required field(s): code"),
    ({"code": "x", "colour": "red"}, "unexpected field 'colour'"),
    ({"code": 1}, "must be of type string"),
    ({"code": "x", "tone": "rude"}, 'must be one of "kind", "blunt"'),
])
def test_arguments_that_do_not_fit_are_refused_clearly(arguments: dict[str, Any], fragment: str) -> None:
    prompt = PromptRegistry().add(_review, name="review")
    with pytest.raises(PromptArgumentError) as caught:
        prompt.render(arguments)
    assert str(caught.value).startswith("Invalid arguments for prompt 'review': ") and fragment in str(caught.value)


def _review(code: str, tone: Literal["kind", "blunt"] = "kind") -> str:
    return f"{tone}: {code}"


def test_change_listeners_fire_on_add_and_remove() -> None:
    registry = PromptRegistry()
    events: list[str] = []
    stop = registry.on_change(lambda: events.append("x"))
    registry.add(lambda: "", name="a")
    registry.remove("a")
    stop()
    registry.add(lambda: "", name="b")
    assert events == ["x", "x"]


def test_the_default_registry_decorator() -> None:
    prompts = loopback.default_registry().prompts
    events: list[str] = []
    stop = prompts.on_change(lambda: events.append("x"))
    try:
        @loopback.prompt
        def default_prompt_for_test(topic: str) -> str:
            """Talk about a topic."""
            return f"Tell me about {topic}"

        @loopback.prompt("named_prompt_for_test", title="Named")
        def other() -> str:
            return "named"

        assert prompts.get("default_prompt_for_test").render({"topic": "owls"})["messages"][0]["content"]["text"] \
            == "Tell me about owls"  # type: ignore[union-attr]
        assert prompts.get("named_prompt_for_test").title == "Named"  # type: ignore[union-attr]
        assert default_prompt_for_test("x") == "Tell me about x"
    finally:
        prompts.remove("default_prompt_for_test")
        prompts.remove("named_prompt_for_test")
        stop()
    assert events == ["x"] * 4


# -- handlers, without HTTP ---------------------------------------------------------------------


def _call(ctx: RequestContext, method: str, params: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 7, "method": method}
    if params is not None:
        message["params"] = params
    return protocol.handle_payload(message, ctx)


def test_get_errors_are_invalid_params_or_internal_errors() -> None:
    ctx = RequestContext(registry=conformance_registry(), protocol_version_header="2025-11-25")
    missing = _call(ctx, "prompts/get", {"name": "test_prompt_with_arguments", "arguments": {"arg1": "a"}})["error"]
    assert missing["code"] == INVALID_PARAMS
    assert missing["message"] == ("Invalid arguments for prompt 'test_prompt_with_arguments':"
                                  " arguments is missing required field(s): arg2")
    unknown = _call(ctx, "prompts/get", {"name": "nope"})["error"]
    assert unknown == {"code": INVALID_PARAMS, "message": "Unknown prompt: nope"}
    for params in ({}, {"name": 3}, {"name": "test_simple_prompt", "arguments": ["x"]}):
        assert _call(ctx, "prompts/get", params)["error"]["code"] == INVALID_PARAMS
    broken = _call(ctx, "prompts/get", {"name": "broken"})["error"]
    assert broken["code"] == INTERNAL_ERROR and "KeyError" in broken["message"]
    assert "Traceback" not in json.dumps(broken)


def test_prompt_list_is_paginated() -> None:
    registry = ToolRegistry()
    for index in range(5):
        registry.prompts.add(lambda: "", name=f"p{index}")
    ctx = RequestContext(registry=registry, settings=Settings(page_size=3), protocol_version_header="2025-11-25")
    first = _call(ctx, "prompts/list")["result"]
    second = _call(ctx, "prompts/list", {"cursor": first["nextCursor"]})["result"]
    assert [p["name"] for p in first["prompts"] + second["prompts"]] == [f"p{index}" for index in range(5)]
    assert "nextCursor" not in second


# -- over HTTP ------------------------------------------------------------------------------------


