"""Resources: the registry (static resources, URI templates, listeners), what a resource
function's return value becomes, the resources/* handlers, and all of it over real HTTP."""

from __future__ import annotations

import base64
import http.client
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import loopback
from loopback.resources import RESOURCE_NOT_FOUND

from conftest import Client

from conftest import unit_module  # noqa: E402

_unit = unit_module("test_resources")
conformance_registry = _unit.conformance_registry

ROOT = Path(__file__).resolve().parents[2]
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


# -- registry ---------------------------------------------------------------------------------------


def test_registering_resources_prompts_and_completions_loads_no_server_machinery() -> None:
    code = (
        "import sys, threading, loopback\n"
        "@loopback.resource('test://a/{x}')\n"
        "def r(x: str) -> str:\n"
        "    return x\n"
        "@loopback.prompt\n"
        "def p(topic: str) -> str:\n"
        "    return topic\n"
        "@loopback.completion(prompt='p', argument='topic')\n"
        "def c(value, arguments):\n"
        "    return [value]\n"
        "loopback.notify_resource_updated('test://a/1')\n"
        "heavy = [m for m in ('http.server', 'http.client', 'socketserver', 'ssl', 'email', 'loopback.server',"
        " 'loopback.transport', 'loopback.protocol') if m in sys.modules]\n"
        "print(heavy, threading.active_count())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] 1"


# -- handlers, without HTTP ---------------------------------------------------------------------


# -- over HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def resource_server() -> Iterator[loopback.LoopbackServer]:
    server = loopback.start(0, registry=conformance_registry())
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def owner(resource_server: loopback.LoopbackServer) -> Iterator[Client]:
    client = Client(resource_server.port, resource_server.token)
    yield client
    client.close()


def test_initialize_offers_resources_with_subscriptions(owner: Client) -> None:
    capabilities = owner.initialize()["capabilities"]
    assert capabilities["resources"] == {"subscribe": True, "listChanged": True}


def test_the_conformance_resources_over_http(owner: Client) -> None:
    listed = owner.rpc("resources/list")["result"]["resources"]
    assert [item["uri"] for item in listed] == ["test://static-text", "test://static-binary", "test://broken"]
    assert listed[0] == {"uri": "test://static-text", "name": "static_text", "title": "Static Text Resource",
                         "description": "A static text resource for testing.", "mimeType": "text/plain"}
    templates = owner.rpc("resources/templates/list")["result"]["resourceTemplates"]
    assert [item["uriTemplate"] for item in templates] == ["test://template/{id}/data", "test://missing/{key}"]
    text = owner.rpc("resources/read", {"uri": "test://static-text"})["result"]
    assert text == {"contents": [{"uri": "test://static-text", "mimeType": "text/plain",
                                  "text": "This is the content of the static text resource."}]}
    binary = owner.rpc("resources/read", {"uri": "test://static-binary"})["result"]["contents"]
    assert binary[0]["mimeType"] == "image/png" and base64.b64decode(binary[0]["blob"]) == PNG
    templated = owner.rpc("resources/read", {"uri": "test://template/123/data"})["result"]["contents"]
    assert templated[0]["uri"] == "test://template/123/data"
    assert json.loads(templated[0]["text"]) == {"id": "123", "templateTest": True, "data": "Data for ID: 123"}
    missing = owner.rpc("resources/read", {"uri": "test://nonexistent-resource-for-conformance-testing"})
    assert missing["error"]["code"] == RESOURCE_NOT_FOUND
    assert missing["error"]["data"] == {"uri": "test://nonexistent-resource-for-conformance-testing"}
    assert owner.rpc("resources/subscribe", {"uri": "test://watched-resource"})["result"] == {}
    assert owner.rpc("resources/unsubscribe", {"uri": "test://watched-resource"})["result"] == {}


def test_resources_are_visible_to_every_token(resource_server: loopback.LoopbackServer) -> None:
    token = resource_server.issue_token(scope="agent", tools=[]).token
    client = Client(resource_server.port, token)
    try:
        assert len(client.rpc("resources/list")["result"]["resources"]) == 3
        assert "result" in client.rpc("resources/read", {"uri": "test://template/1/data"})
    finally:
        client.close()


def _read_sse_until(conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                    method: str, deadline: float) -> list[dict[str, Any]]:
    """The JSON messages of an open SSE response up to the first with ``method`` (bounded)."""
    messages: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        line = response.fp.readline()
        if not line:
            break
        match = re.match(rb"data: ?(.*)", line.rstrip(b"\r\n"))
        if match and match.group(1):
            messages.append(json.loads(match.group(1)))
            if messages[-1].get("method") == method:
                return messages
    raise AssertionError(f"no {method} on the stream; got {messages}")


def test_subscribed_sessions_hear_of_updates_on_their_get_stream(resource_server: loopback.LoopbackServer,
                                                                 owner: Client) -> None:
    owner.open_session()
    stream = http.client.HTTPConnection("127.0.0.1", resource_server.port, timeout=5)
    try:
        stream.request("GET", "/mcp", headers={**owner.headers(Accept="text/event-stream")})
        response = stream.getresponse()
        assert response.status == 200 and response.getheader("Content-Type", "").startswith("text/event-stream")
        assert owner.rpc("resources/subscribe", {"uri": "test://static-text"})["result"] == {}
        resource_server.registry.resources.notify_updated("test://not-subscribed")  # not for this session
        resource_server.registry.resources.notify_updated("test://static-text")
        messages = _read_sse_until(stream, response, "notifications/resources/updated", time.monotonic() + 5)
        assert messages[-1]["params"] == {"uri": "test://static-text"}
        assert all(m.get("params", {}).get("uri") != "test://not-subscribed" for m in messages)
        resource_server.registry.resources.add(lambda: "new", "test://new")
        messages = _read_sse_until(stream, response, "notifications/resources/list_changed", time.monotonic() + 5)
        assert "test://new" in [r["uri"] for r in owner.rpc("resources/list")["result"]["resources"]]
    finally:
        stream.close()


