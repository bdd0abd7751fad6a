"""Prompts: arguments from signatures, messages from return values, argument checks,
the prompts/* handlers, and the conformance suite's prompts over real HTTP."""

from __future__ import annotations

import base64
from typing import Iterator

import pytest

import loopback
from loopback.jsonrpc import INVALID_PARAMS
from loopback.tools import ToolRegistry

from conftest import Client

from conftest import unit_module  # noqa: E402

_unit = unit_module("test_prompts")
conformance_registry = _unit.conformance_registry

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


# -- registry ---------------------------------------------------------------------------------------


# -- handlers, without HTTP ---------------------------------------------------------------------


# -- over HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def owner() -> Iterator[Client]:
    server = loopback.start(0, registry=conformance_registry())
    client = Client(server.port, server.token)
    try:
        yield client
    finally:
        client.close()
        server.close()


def test_initialize_offers_prompts(owner: Client) -> None:
    assert owner.initialize()["capabilities"]["prompts"] == {"listChanged": True}


def test_the_conformance_prompts_over_http(owner: Client) -> None:
    listed = owner.rpc("prompts/list")["result"]["prompts"]
    assert [p["name"] for p in listed] == ["test_simple_prompt", "test_prompt_with_arguments",
                                           "test_prompt_with_embedded_resource", "test_prompt_with_image", "broken"]
    assert all(p["description"] for p in listed)
    assert listed[1]["arguments"] == [{"name": "arg1", "description": "First test argument", "required": True},
                                      {"name": "arg2", "description": "Second test argument", "required": True}]
    simple = owner.rpc("prompts/get", {"name": "test_simple_prompt"})["result"]
    assert simple == {"description": "A simple prompt without arguments.", "messages": [
        {"role": "user", "content": {"type": "text", "text": "This is a simple prompt for testing."}}]}
    with_args = owner.rpc("prompts/get", {"name": "test_prompt_with_arguments",
                                          "arguments": {"arg1": "testValue1", "arg2": "testValue2"}})["result"]
    assert with_args["messages"][0]["content"]["text"] == "Prompt with arguments: arg1='testValue1', arg2='testValue2'"
    embedded = owner.rpc("prompts/get", {"name": "test_prompt_with_embedded_resource",
                                         "arguments": {"resourceUri": "test://example-resource"}})["result"]
    assert embedded["messages"][0]["content"] == {"type": "resource", "resource": {
        "uri": "test://example-resource", "mimeType": "text/plain", "text": "Embedded resource content for testing."}}
    image = owner.rpc("prompts/get", {"name": "test_prompt_with_image"})["result"]["messages"]
    assert image[0]["content"]["type"] == "image" and base64.b64decode(image[0]["content"]["data"]) == PNG
    assert owner.rpc("prompts/get", {"name": "test_prompt_with_arguments"})["error"]["code"] == INVALID_PARAMS


def test_a_context_parameter_receives_the_request_and_is_no_argument() -> None:
    registry = ToolRegistry()

    @registry.prompts.prompt
    def whoami(topic: str, ctx: loopback.Context) -> str:
        """Who is asking."""
        return f"{topic} for {ctx.scope} via {ctx.headers.get('x-agent')} ({ctx.tool_name}, auth hidden:" \
               f" {'authorization' not in ctx.headers})"

    assert registry.prompts.get("whoami").definition()["arguments"] == [  # type: ignore[union-attr]
        {"name": "topic", "required": True}]
    assert registry.prompts.get("whoami").render({"topic": "t"})["messages"][0]["content"]["text"] \
        == "t for owner via None (whoami, auth hidden: True)"  # type: ignore[union-attr]
    with loopback.start(0, registry=registry) as server:
        guest = server.issue_token(scope="guest", headers={"x-agent": "bound"})
        client = Client(server.port, guest.token)
        try:
            answer = client.rpc("prompts/get", {"name": "whoami", "arguments": {"topic": "t"}})
            assert answer["result"]["messages"][0]["content"]["text"] == "t for guest via bound (whoami, auth hidden: True)"
            refused = client.rpc("prompts/get", {"name": "whoami", "arguments": {"topic": "t", "ctx": "x"}})
            assert refused["error"]["code"] == INVALID_PARAMS
        finally:
            client.close()
