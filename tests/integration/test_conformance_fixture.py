"""The conformance fixture (tests/conformance/fixture.py) serves what the official suite's
server scenarios call, with authentication off: checked here over real HTTP without the
suite (which needs npm and Node 22; tests/conformance/run.py runs it)."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

import loopback

FIXTURE = Path(__file__).resolve().parents[1] / "conformance" / "fixture.py"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
ACCEPT = "application/json, text/event-stream"

# Names fixed by the suite's scenarios (src/scenarios/server/*.ts, release 0.1.16).
SUITE_TOOLS = {
    "test_simple_text", "test_image_content", "test_audio_content", "test_embedded_resource",
    "test_multiple_content_types", "test_tool_with_logging", "test_tool_with_progress", "test_error_handling",
    "test_sampling", "test_elicitation", "test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums",
    "json_schema_2020_12_tool", "test_reconnection",
}
STATELESS_ERA_TOOLS = {"test_logging_tool", "test_missing_capability", "test_trigger_tool_change",
                       "test_trigger_prompt_change"}
INPUT_REQUIRED_TOOLS = {
    "test_input_required_result_elicitation", "test_input_required_result_sampling",
    "test_input_required_result_list_roots", "test_input_required_result_request_state",
    "test_input_required_result_tampered_state", "test_input_required_result_multiple_inputs",
    "test_input_required_result_multi_round", "test_input_required_result_capabilities", "test_streaming_elicitation",
}
SUITE_RESOURCES = {"test://static-text", "test://static-binary", "test://watched-resource"}
SUITE_TEMPLATES = {"test://template/{id}/data"}
SUITE_PROMPTS = {"test_simple_prompt", "test_prompt_with_arguments", "test_prompt_with_embedded_resource",
                 "test_prompt_with_image"}


class Fixture:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, str(FIXTURE), "--port", "0", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT)
        self.url = line[0].strip() if line else ""
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0]) if self.url.startswith("http://127.0.0.1:") else 0
        self.session: Optional[str] = None
        self._ids = iter(range(1, 10_000))

    def stop(self) -> tuple[int, str]:
        """SIGTERM; the exit code and stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate(timeout=STOP_TIMEOUT)
            return -1, err
        return self.process.returncode, err

    def http(self, method: str, body: Optional[dict[str, Any]] = None,
             headers: Optional[dict[str, str]] = None) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            sent = {"Accept": ACCEPT, "Content-Type": "application/json", **(headers or {})}
            if self.session:
                sent["Mcp-Session-Id"] = self.session
            connection.request(method, "/mcp", json.dumps(body).encode() if body is not None else None, sent)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def rpc(self, method: str, params: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        status, headers, body = self.http("POST", message)
        assert status == 200, (method, status, body)
        answers = list(_messages(headers.get("content-type", ""), body))
        final = [m for m in answers if m.get("id") == request_id]
        assert len(final) == 1, (method, answers)
        assert "error" not in final[0], (method, final[0])
        return final[0]["result"]

    def initialize(self) -> dict[str, str]:
        status, headers, body = self.http("POST", {
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "fixture-test", "version": "1"}}})
        assert status == 200, body
        self.session = headers.get("mcp-session-id")
        status, _, body = self.http("POST", {"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert status == 202, body
        return headers


def _messages(content_type: str, body: bytes) -> Iterator[dict[str, Any]]:
    if content_type.startswith("application/json"):
        yield json.loads(body)
        return
    assert content_type.startswith("text/event-stream"), content_type
    for event in body.decode().split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in event.split("\n") if line.startswith("data:"))
        if data.strip():
            yield json.loads(data)


@pytest.fixture
def fixture() -> Iterator[Fixture]:
    served = Fixture()
    try:
        assert served.port, f"the fixture printed no URL: {served.stop()}"
        yield served
    finally:
        served.stop()


def test_fixture_serves_the_suites_tools_resources_and_prompts(fixture):
    fixture.initialize()
    assert fixture.session, "the stateful fixture issues a session id"

    tools = {tool["name"]: tool for tool in fixture.rpc("tools/list")["tools"]}
    expected = SUITE_TOOLS | STATELESS_ERA_TOOLS
    if hasattr(loopback, "InputRequired"):
        expected |= INPUT_REQUIRED_TOOLS
    assert expected <= set(tools), sorted(expected - set(tools))
    schema = tools["json_schema_2020_12_tool"]["inputSchema"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$defs"]["address"]["$anchor"] == "addressDef" and schema["additionalProperties"] is False
    assert {"allOf", "if", "then", "else"} <= set(schema)
    assert tools["test_sampling"]["inputSchema"]["required"] == ["prompt"]
    assert tools["test_elicitation"]["inputSchema"]["required"] == ["message"]

    text = fixture.rpc("tools/call", {"name": "test_simple_text", "arguments": {}})
    assert text["content"] == [{"type": "text", "text": "This is a simple text response for testing."}]
    mixed = fixture.rpc("tools/call", {"name": "test_multiple_content_types", "arguments": {}})
    assert [block["type"] for block in mixed["content"]] == ["text", "image", "resource"]
    failed = fixture.rpc("tools/call", {"name": "test_error_handling", "arguments": {}})
    assert failed["isError"] is True and failed["content"][0]["text"]

    def listed() -> set[str]:
        return {tool["name"] for tool in fixture.rpc("tools/list")["tools"]}

    fixture.rpc("tools/call", {"name": "test_trigger_tool_change", "arguments": {}})
    assert "test_dynamic_tool" in listed()
    fixture.rpc("tools/call", {"name": "test_trigger_tool_change", "arguments": {}})
    assert "test_dynamic_tool" not in listed()

    resources = {r["uri"] for r in fixture.rpc("resources/list")["resources"]}
    assert SUITE_RESOURCES <= resources, sorted(SUITE_RESOURCES - resources)
    templates = {t["uriTemplate"] for t in fixture.rpc("resources/templates/list")["resourceTemplates"]}
    assert SUITE_TEMPLATES <= templates
    read = fixture.rpc("resources/read", {"uri": "test://template/123/data"})["contents"]
    assert json.loads(read[0]["text"]) == {"id": "123", "templateTest": True, "data": "Data for ID: 123"}
    binary = fixture.rpc("resources/read", {"uri": "test://static-binary"})["contents"][0]
    assert binary["mimeType"] == "image/png" and binary["blob"].startswith("iVBORw0KGgo")

    prompts = {p["name"]: p for p in fixture.rpc("prompts/list")["prompts"]}
    assert SUITE_PROMPTS <= set(prompts), sorted(SUITE_PROMPTS - set(prompts))
    assert {a["name"] for a in prompts["test_prompt_with_arguments"]["arguments"]} == {"arg1", "arg2"}
    got = fixture.rpc("prompts/get", {"name": "test_prompt_with_arguments", "arguments": {"arg1": "a", "arg2": "b"}})
    assert got["messages"][0]["content"]["text"] == "Prompt with arguments: arg1='a', arg2='b'"
    embedded = fixture.rpc("prompts/get", {"name": "test_prompt_with_embedded_resource",
                                           "arguments": {"resourceUri": "test://x"}})
    assert embedded["messages"][0]["content"]["resource"]["uri"] == "test://x"

    completed = fixture.rpc("completion/complete", {"ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
                                                    "argument": {"name": "arg1", "value": "par"}})
    assert set(completed["completion"]["values"]) == {"paris", "park", "party"}

    code, err = fixture.stop()
    assert code == 0, err
    assert "authentication is switched off" in err


def test_stateless_fixture_issues_no_session_and_refuses_get():
    served = Fixture("--stateless")
    try:
        assert served.port, f"the fixture printed no URL: {served.stop()}"
        headers = served.initialize()
        assert "mcp-session-id" not in headers
        assert SUITE_TOOLS <= {tool["name"] for tool in served.rpc("tools/list")["tools"]}
        status, _, _ = served.http("GET", headers={"Accept": "text/event-stream"})
        assert status == 405
    finally:
        code, err = served.stop()
    assert code == 0, err
