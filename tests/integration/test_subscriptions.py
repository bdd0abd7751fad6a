"""``subscriptions/listen`` (2026-07-28) over real HTTP: the acknowledgement first, then only
the notifications asked for, each stamped with the subscription id; resource updates for
the URIs named; ``notifications/tasks`` for the caller's own tasks; the client leaving
ends the subscription; ``close()`` ends it with the request's result."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any, Iterator, Optional

import pytest

import loopback
from conftest import make_registry, wait_for
from sse_client import next_message

EXTENSION = "io.modelcontextprotocol/tasks"
SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"


def post(port: int, token: str, method: str, params: dict[str, Any], request_id: Any = 1,
         capabilities: Optional[dict[str, Any]] = None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**params, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities or {}}}}
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method, "Authorization": f"Bearer {token}"}
    if "name" in params:
        headers["Mcp-Name"] = params["name"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/mcp", json.dumps(body).encode(), headers)
    return conn, conn.getresponse()


@pytest.fixture
def srv() -> Iterator[loopback.LoopbackServer]:
    registry = make_registry()

    @registry.resources.resource("memo://one")
    def one() -> str:
        return "one"

    release = threading.Event()

    @registry.tool(task="optional")
    def quick() -> str:
        release.wait(10)
        return "quick"

    server = loopback.start(0, registry=registry)
    server.release = release  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        release.set()
        server.close()


def listeners(server: loopback.LoopbackServer) -> int:
    return len(server._httpd.endpoint.listeners)  # type: ignore[attr-defined]


def test_listen_acknowledges_then_sends_only_what_was_asked(srv: loopback.LoopbackServer) -> None:
    conn, response = post(srv.port, srv.token, "subscriptions/listen", {"notifications": {
        "toolsListChanged": True, "resourceSubscriptions": ["memo://one"], "promptsListChanged": False}}, "sub-1")
    try:
        assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
        _, ack = next_message(response)
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        assert ack["params"] == {"notifications": {"toolsListChanged": True, "resourceSubscriptions": ["memo://one"]},
                                 "_meta": {SUBSCRIPTION_ID: "sub-1"}}
        srv.registry.prompts.add(lambda: "hi", name="not_asked_for")  # promptsListChanged was not asked for
        srv.registry.resources.notify_updated("memo://other")  # nor this URI
        srv.registry.add(lambda: "x", name="added")
        _, changed = next_message(response)
        assert changed == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
                           "params": {"_meta": {SUBSCRIPTION_ID: "sub-1"}}}
        srv.registry.resources.notify_updated("memo://one")
        _, updated = next_message(response)
        assert updated["method"] == "notifications/resources/updated"
        assert updated["params"] == {"uri": "memo://one", "_meta": {SUBSCRIPTION_ID: "sub-1"}}
    finally:
        conn.close()
    assert wait_for(lambda: listeners(srv) == 0)  # the client left: the subscription ended


def test_task_notifications_reach_only_the_owner_that_asked(srv: loopback.LoopbackServer) -> None:
    capabilities = {"extensions": {EXTENSION: {}}}
    conn, response = post(srv.port, srv.token, "tools/call", {"name": "quick", "arguments": {}},
                          capabilities=capabilities)
    created = json.loads(response.read())["result"]
    conn.close()
    task_id = created["taskId"]
    other = srv.issue_token().token
    conn2, refused = post(srv.port, srv.token, "subscriptions/listen", {"notifications": {"taskIds": [task_id]}})
    assert json.loads(refused.read())["error"]["code"] == -32021  # taskIds need the tasks extension
    conn2.close()
    conn3, theirs = post(srv.port, other, "subscriptions/listen", {"notifications": {"taskIds": [task_id]}},
                         capabilities=capabilities)
    conn4, mine = post(srv.port, srv.token, "subscriptions/listen", {"notifications": {"taskIds": [task_id]}},
                       capabilities=capabilities)
    try:
        _, their_ack = next_message(theirs)
        assert their_ack["params"]["notifications"] == {}  # not their task: nothing agreed
        _, my_ack = next_message(mine)
        assert my_ack["params"]["notifications"] == {"taskIds": [task_id]}
        srv.release.set()  # type: ignore[attr-defined]  # the task completes now
        _, note = next_message(mine)
        assert note["method"] == "notifications/tasks"
        assert note["params"]["taskId"] == task_id and note["params"]["status"] == "completed"
        assert note["params"]["result"]["content"] == [{"type": "text", "text": "quick"}]
        assert note["params"]["_meta"] == {SUBSCRIPTION_ID: 1}
    finally:
        conn3.close()
        conn4.close()


def test_close_ends_a_subscription_with_its_result() -> None:
    server = loopback.start(0, registry=make_registry())
    conn, response = post(server.port, server.token, "subscriptions/listen", {"notifications": {"toolsListChanged": True}}, 9)
    try:
        next_message(response)
        server.close()
        _, final = next_message(response)
        assert final == {"jsonrpc": "2.0", "id": 9, "result": {
            "resultType": "complete", "_meta": {SUBSCRIPTION_ID: 9,
                                                "io.modelcontextprotocol/serverInfo": final["result"]["_meta"][
                                                    "io.modelcontextprotocol/serverInfo"]}}}
    finally:
        conn.close()
        server.close()


def test_listen_refuses_a_bad_filter_and_the_handshake_era(srv: loopback.LoopbackServer) -> None:
    conn, response = post(srv.port, srv.token, "subscriptions/listen", {"notifications": {"toolsListChanged": "yes"}})
    assert json.loads(response.read())["error"]["code"] == -32602
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
                                             "params": {"notifications": {}}}).encode(),
                 {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                  "MCP-Protocol-Version": "2025-11-25", "Authorization": f"Bearer {srv.token}"})
    assert json.loads(conn.getresponse().read())["error"]["code"] == -32601
    conn.close()
