"""Resources: the registry (static resources, URI templates, listeners), what a resource
function's return value becomes, the resources/* handlers, and all of it over real HTTP."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any, Optional

import pytest

import loopback
from loopback import Audio, EmbeddedResource, Image, Text, protocol
from loopback.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS
from loopback.protocol import RequestContext
from loopback.resources import RESOURCE_NOT_FOUND, Resource, ResourceRegistry, ResourceTemplate
from loopback.settings import Settings
from loopback.tools import ToolRegistry


ROOT = Path(__file__).resolve().parents[2]
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


def conformance_registry() -> ToolRegistry:
    """The resources the conformance suite's resource scenarios read."""
    registry = ToolRegistry()
    resources = registry.resources

    @resources.resource("test://static-text", title="Static Text Resource", mime_type="text/plain")
    def static_text() -> str:
        """A static text resource for testing."""
        return "This is the content of the static text resource."

    @resources.resource("test://static-binary", mime_type="image/png")
    def static_binary() -> bytes:
        """A static binary resource (image) for testing."""
        return PNG

    @resources.resource("test://template/{id}/data", name="template", mime_type="application/json")
    def template_data(id: str) -> str:
        """A resource template with parameter substitution."""
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @resources.resource("test://broken")
    def broken() -> str:
        raise OSError("disk on fire")

    @resources.resource("test://missing/{key}")
    def maybe(key: str) -> Optional[str]:
        return {"a": "found a"}.get(key)

    return registry


# -- registry ---------------------------------------------------------------------------------------


def test_a_static_resource_takes_name_and_description_from_the_function() -> None:
    registry = ResourceRegistry()

    def notes() -> str:
        """Today's notes."""
        return "n"

    entry = registry.add(notes, "file:///notes.txt", mime_type="text/markdown")
    assert isinstance(entry, Resource)
    assert entry.definition() == {"uri": "file:///notes.txt", "name": "notes", "description": "Today's notes.",
                                  "mimeType": "text/markdown"}
    assert registry.resources() == [entry] and registry.templates() == []
    assert "file:///notes.txt" in registry and len(registry) == 1


def test_a_uri_with_variables_registers_a_template() -> None:
    registry = ResourceRegistry()
    entry = registry.add(lambda user, day: f"{user}@{day}", "logs://{user}/{day}.log", name="log", title="Logs")
    assert isinstance(entry, ResourceTemplate)
    assert entry.variables == ("user", "day")
    assert entry.definition() == {"uriTemplate": "logs://{user}/{day}.log", "name": "log", "title": "Logs"}
    assert registry.templates() == [entry] and registry.resources() == []
    assert entry.match("logs://ann/monday.log") == {"user": "ann", "day": "monday"}
    assert entry.match("logs://a%2Fb/x%20y.log") == {"user": "a/b", "day": "x y"}  # percent-decoded
    assert entry.match("logs://ann/monday.txt") is None
    assert entry.match("logs://ann/x/monday.log") is None  # a simple expansion never holds a raw '/'
    assert entry.match("logs:///monday.log") is None  # a variable is never empty


@pytest.mark.parametrize("uri, fragment", [
    ("logs://{+path}", "only simple"),
    ("logs://{?q}", "only simple"),
    ("logs://{a,b}", "only simple"),
    ("logs://{a:3}", "only simple"),
    ("logs://{a}/{a}", "twice"),
    ("logs://{a-b}", "identifier"),
    ("logs://{a", "unbalanced"),
    ("logs://a}", "unbalanced"),
    ("no-scheme/{a}", "scheme"),
    ("", "scheme"),
])
def test_bad_uris_are_refused_at_registration(uri: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        ResourceRegistry().add(lambda a=None, b=None: "", uri)


def test_the_function_must_take_exactly_the_template_variables() -> None:
    registry = ResourceRegistry()
    with pytest.raises(TypeError, match="no parameter for template variable"):
        registry.add(lambda: "", "x://{id}")
    with pytest.raises(TypeError, match="'other' is not a variable"):
        registry.add(lambda id, other: "", "x://{id}")
    with pytest.raises(TypeError, match="takes no arguments"):
        registry.add(lambda id: "", "x://static")
    with pytest.raises(TypeError, match="plain named parameter"):
        registry.add(lambda *ids: "", "x://{ids}")
    registry.add(lambda id, verbose=False: id, "x://{id}")  # extra parameters with defaults are fine
    assert registry.read("x://7") == [{"uri": "x://7", "mimeType": "text/plain", "text": "7"}]
    with pytest.raises(TypeError, match="callable"):
        registry.add("nope", "x://y")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mime_type"):
        registry.add(lambda: "", "x://z", mime_type="text")


def test_a_uri_is_registered_once_unless_replaced() -> None:
    registry = ResourceRegistry()
    registry.add(lambda: "one", "x://a")
    with pytest.raises(ValueError, match="already registered"):
        registry.add(lambda: "two", "x://a")
    registry.add(lambda: "two", "x://a", replace=True)
    assert registry.read("x://a")[0]["text"] == "two"  # type: ignore[index]
    assert registry.remove("x://a") and not registry.remove("x://a")
    assert registry.read("x://a") is None


def test_what_a_resource_function_returns_becomes_contents() -> None:
    registry = ResourceRegistry()
    registry.add(lambda: "hi", "x://text")
    registry.add(lambda: b"\x00\x01", "x://bytes")
    registry.add(lambda: "<b/>", "x://typed", mime_type="text/html")
    registry.add(lambda: Text("t", meta={"k": 1}), "x://Text")
    registry.add(lambda: Image(PNG, "image/png"), "x://image")
    registry.add(lambda: Audio(b"RIFF", "audio/wav"), "x://audio")
    registry.add(lambda: EmbeddedResource("x://part/1", text="{}", mime_type="application/json"), "x://embedded")
    registry.add(lambda: ["a", b"b", EmbeddedResource("x://p", blob=b"c")], "x://many")
    registry.add(lambda: [], "x://empty")
    assert registry.read("x://text") == [{"uri": "x://text", "mimeType": "text/plain", "text": "hi"}]
    assert registry.read("x://bytes") == [{"uri": "x://bytes", "mimeType": "application/octet-stream",
                                           "blob": "AAE="}]
    assert registry.read("x://typed") == [{"uri": "x://typed", "mimeType": "text/html", "text": "<b/>"}]
    assert registry.read("x://Text") == [{"uri": "x://Text", "mimeType": "text/plain", "text": "t", "_meta": {"k": 1}}]
    assert registry.read("x://image") == [{"uri": "x://image", "mimeType": "image/png",
                                           "blob": base64.b64encode(PNG).decode()}]
    assert registry.read("x://audio") == [{"uri": "x://audio", "mimeType": "audio/wav", "blob": "UklGRg=="}]
    assert registry.read("x://embedded") == [{"uri": "x://part/1", "mimeType": "application/json", "text": "{}"}]
    assert registry.read("x://many") == [
        {"uri": "x://many", "mimeType": "text/plain", "text": "a"},
        {"uri": "x://many", "mimeType": "application/octet-stream", "blob": "Yg=="},
        {"uri": "x://p", "blob": "Yw=="},
    ]
    assert registry.read("x://empty") == []
    registry.add(lambda: 42, "x://number")
    with pytest.raises(TypeError, match="not int"):
        registry.read("x://number")


def test_a_static_resource_wins_over_a_template_and_templates_match_in_order() -> None:
    registry = ResourceRegistry()
    registry.add(lambda id: f"first {id}", "x://item/{id}")
    registry.add(lambda name: f"second {name}", "x://{name}/x")
    registry.add(lambda: "static", "x://item/special")
    assert registry.read("x://item/special")[0]["text"] == "static"  # type: ignore[index]
    assert registry.read("x://item/x")[0]["text"] == "first x"  # type: ignore[index]
    assert registry.read("x://other/x")[0]["text"] == "second other"  # type: ignore[index]
    assert registry.find("x://nothing") is None and registry.read("x://nothing") is None


def test_change_and_update_listeners() -> None:
    registry = ResourceRegistry()
    changes: list[str] = []
    updates: list[str] = []

    def broken() -> None:
        raise RuntimeError("listener bug")

    registry.on_change(broken)  # a failing listener is logged, the others still run
    stop = registry.on_change(lambda: changes.append("changed"))
    registry.on_updated(updates.append)
    registry.add(lambda: "", "x://a")
    registry.add(lambda id: id, "x://t/{id}")
    registry.remove("x://t/{id}")
    registry.remove("x://never")  # nothing removed: no event
    assert changes == ["changed"] * 3
    stop()
    registry.add(lambda: "", "x://b")
    assert changes == ["changed"] * 3
    registry.notify_updated("x://a")
    assert updates == ["x://a"]
    with pytest.raises(ValueError):
        registry.notify_updated("not a uri")


def test_the_default_registry_decorators_fire_listeners() -> None:
    resources = loopback.default_registry().resources
    seen: list[str] = []
    stop_change = resources.on_change(lambda: seen.append("change"))
    stop_update = resources.on_updated(seen.append)
    try:
        @loopback.resource("test://default/{name}", description="d")
        def greeting(name: str) -> str:
            return f"hello {name}"

        loopback.notify_resource_updated("test://default/ann")
        assert resources.read("test://default/ann") == [
            {"uri": "test://default/ann", "mimeType": "text/plain", "text": "hello ann"}]
        assert greeting("bob") == "hello bob"  # the decorator returns the function unchanged
    finally:
        resources.remove("test://default/{name}")
        stop_change()
        stop_update()
    assert seen == ["change", "test://default/ann", "change"]


# -- handlers, without HTTP ---------------------------------------------------------------------


def _ctx(registry: ToolRegistry, **settings: Any) -> RequestContext:
    return RequestContext(registry=registry, settings=Settings(**settings), protocol_version_header="2025-11-25")


def _call(ctx: RequestContext, method: str, params: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        message["params"] = params
    answer = protocol.handle_payload(message, ctx)
    assert answer["id"] == 1
    return answer


def test_lists_are_paginated_with_the_page_size() -> None:
    registry = ToolRegistry()
    for index in range(5):
        registry.resources.add(lambda: "", f"x://r{index}", name=f"r{index}")
        registry.resources.add(lambda id: id, f"x://t{index}/{{id}}", name=f"t{index}")
    ctx = _ctx(registry, page_size=2)
    for method, key, prefix in (("resources/list", "resources", "r"), ("resources/templates/list",
                                                                         "resourceTemplates", "t")):
        names: list[str] = []
        params: dict[str, Any] = {}
        for _ in range(10):
            result = _call(ctx, method, params)["result"]
            assert len(result[key]) <= 2
            names += [item["name"] for item in result[key]]
            if "nextCursor" not in result:
                break
            params = {"cursor": result["nextCursor"]}
        assert names == [f"{prefix}{index}" for index in range(5)]
    assert _call(ctx, "resources/list", {"cursor": "garbage!"})["error"]["code"] == INVALID_PARAMS


def test_read_errors_are_json_rpc_errors_without_tracebacks() -> None:
    ctx = _ctx(conformance_registry())
    missing = _call(ctx, "resources/read", {"uri": "test://nonexistent"})["error"]
    assert missing == {"code": RESOURCE_NOT_FOUND, "message": "Resource not found",
                       "data": {"uri": "test://nonexistent"}}
    # A template that matches but whose function returns None: not found either.
    assert _call(ctx, "resources/read", {"uri": "test://missing/b"})["error"]["code"] == RESOURCE_NOT_FOUND
    assert _call(ctx, "resources/read", {"uri": "test://missing/a"})["result"]["contents"][0]["text"] == "found a"
    failed = _call(ctx, "resources/read", {"uri": "test://broken"})["error"]
    assert failed["code"] == INTERNAL_ERROR
    assert "OSError: disk on fire" in failed["message"] and "Traceback" not in json.dumps(failed)
    for params in ({}, {"uri": 5}, {"uri": ""}):
        assert _call(ctx, "resources/read", params)["error"]["code"] == INVALID_PARAMS


def test_subscriptions_are_recorded_on_the_session() -> None:
    ctx = _ctx(conformance_registry())
    assert _call(ctx, "resources/subscribe", {"uri": "test://static-text"})["result"] == {}
    assert _call(ctx, "resources/subscribe", {"uri": "test://template/9/data"})["result"] == {}
    assert ctx.session.subscriptions == {"test://static-text", "test://template/9/data"}
    assert _call(ctx, "resources/unsubscribe", {"uri": "test://static-text"})["result"] == {}
    assert _call(ctx, "resources/unsubscribe", {"uri": "test://never-subscribed"})["result"] == {}
    assert ctx.session.subscriptions == {"test://template/9/data"}
    assert _call(ctx, "resources/subscribe", {})["error"]["code"] == INVALID_PARAMS


# -- over HTTP ------------------------------------------------------------------------------------


def test_the_readme_resources_and_prompts_example_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "def release_notes(" in b]
    namespace: dict[str, Any] = {"__name__": "readme_resources_example"}
    exec(compile(block, "README.md", "exec", dont_inherit=True), namespace)  # asserts inside check it
    assert [r.uri for r in namespace["registry"].resources.resources()] == ["notes://today"]
