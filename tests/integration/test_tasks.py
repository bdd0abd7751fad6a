"""Tools called as tasks, over real HTTP: a task outlives its request and is read back on
another connection (2025-11-25 session and 2026-07-28 requests alike); ``tasks/result``
blocks until the end; cancellation reaches the tool; another token gets the unknown-task
answer on every task method; the pool never runs more tools than ``task_workers``;
results expire with their TTL and are bounded in number and bytes; ``close()`` with tasks
running leaves no thread behind; an ``InputRequired`` is carried out for a handshake-era
client on the call's stream. The test plays the client."""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any, Iterator, Optional

import pytest

import loopback
from conftest import Client, make_registry, wait_for
from sse_client import next_message, open_get, read_event, start_post

EXTENSION = "io.modelcontextprotocol/tasks"
MODERN = "2026-07-28"


class Gate:
    """What the test tools wait on and report: how many run at once, who saw a cancel."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.started = 0
        self.cancelled: list[str] = []

    def enter(self) -> None:
        with self.lock:
            self.running += 1
            self.started += 1
            self.most = max(self.most, self.running)

    def leave(self) -> None:
        with self.lock:
            self.running -= 1


def make_server(**settings: Any) -> tuple[loopback.LoopbackServer, Gate]:
    registry = make_registry()
    gate = Gate()

    @registry.tool(task="optional")
    def wait(label: str, ctx: loopback.Context) -> str:
        """Waits until the test releases it, or until cancelled."""
        gate.enter()
        try:
            while not gate.release.wait(0.02):
                if ctx.cancelled:
                    with gate.lock:
                        gate.cancelled.append(label)
                    return "stopped"
            return f"done {label}"
        finally:
            gate.leave()

    @registry.tool(task="required")
    def big(size: int) -> str:
        """Returns ``size`` characters."""
        return "x" * size

    @registry.tool
    def confirm(ctx: loopback.Context) -> str:
        """Asks the user through loopback.InputRequired, whatever the client's era."""
        answer = ctx.input_responses.get("ok")
        if answer is None:
            return loopback.InputRequired({"ok": {"method": "elicitation/create", "params": {
                "message": "Go on?", "requestedSchema": {"type": "object", "properties": {"go": {"type": "boolean"}}}}}})
        return f"answered {answer.get('action')} {answer.get('content')}"

    registry.add(confirm, name="confirm_task", task="optional")

    @registry.tool(task="optional")
    def boom() -> str:
        """Fails (a tool error)."""
        raise RuntimeError("boom")

    server = loopback.start(0, registry=registry, settings=loopback.Settings(**settings))
    return server, gate


@pytest.fixture
def served() -> Iterator[tuple[loopback.LoopbackServer, Gate]]:
    server, gate = make_server(task_workers=2, close_timeout=5.0)
    try:
        yield server, gate
    finally:
        gate.release.set()
        server.close()


def modern(port: int, token: Optional[str], method: str, params: dict[str, Any],
           extension: bool = True, **declared: Any) -> tuple[int, dict[str, Any]]:
    """One 2026-07-28 request on a fresh connection: HTTP status and the JSON-RPC answer."""
    capabilities: dict[str, Any] = {"extensions": {EXTENSION: {}}} if extension else {}
    capabilities.update(declared)
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": capabilities}}}
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    name = params.get("taskId", params.get("name"))
    if name is not None:
        headers["Mcp-Name"] = name
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/mcp", json.dumps(body).encode(), headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def start_task(client: Client, name: str, arguments: dict[str, Any], ttl: Optional[int] = None) -> dict[str, Any]:
    task: dict[str, Any] = {} if ttl is None else {"ttl": ttl}
    answer = client.rpc("tools/call", {"name": name, "arguments": arguments, "task": task})
    assert "result" in answer, answer
    return answer["result"]["task"]  # type: ignore[no-any-return]


def poll(client: Client, task_id: str, until: tuple[str, ...] = ("completed", "failed", "cancelled"),
         timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.rpc("tasks/get", {"taskId": task_id})["result"]
        if task["status"] in until:
            return task  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError(f"task {task_id} is still {task['status']}")


def task_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("loopback-task")]


def test_tools_list_advertises_task_support(served: tuple[loopback.LoopbackServer, Gate]) -> None:
    server, _ = served
    client = Client(server.port, server.token)
    try:
        init = client.initialize()
        assert init["capabilities"]["tasks"] == {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
        tools = {tool["name"]: tool for tool in client.rpc("tools/list")["result"]["tools"]}
        assert tools["wait"]["execution"] == {"taskSupport": "optional"}
        assert tools["big"]["execution"] == {"taskSupport": "required"}
        assert "execution" not in tools["add"]
        # required without params.task: -32601 (2025-11-25); optional without it: a plain call
        assert client.rpc("tools/call", {"name": "big", "arguments": {"size": 1}})["error"]["code"] == -32601
        assert client.call_tool("add", {"a": 1})["result"]["structuredContent"] == {"result": 3}
        # forbidden (not declared) with params.task: -32601 as well
        refused = client.rpc("tools/call", {"name": "add", "arguments": {"a": 1}, "task": {}})
        assert refused["error"]["code"] == -32601
    finally:
        client.close()


def test_a_tool_error_fails_a_handshake_era_task_and_completes_a_modern_one(
        served: tuple[loopback.LoopbackServer, Gate]) -> None:
    server, _ = served
    client = Client(server.port, server.token)
    try:
        task = start_task(client, "boom", {})
        done = poll(client, task["taskId"])
        assert done["status"] == "failed" and done["statusMessage"] == "the tool reported an error"
        result = client.rpc("tasks/result", {"taskId": task["taskId"]})["result"]  # what the call would answer
        assert result["isError"] is True and "RuntimeError: boom" in result["content"][0]["text"]
    finally:
        client.close()
    status, created = modern(server.port, server.token, "tools/call", {"name": "boom", "arguments": {}})
    task_id = created["result"]["taskId"]
    assert wait_for(lambda: modern(server.port, server.token, "tasks/get", {"taskId": task_id})[1]["result"]["status"]
                    != "working")
    status, got = modern(server.port, server.token, "tasks/get", {"taskId": task_id})
    assert got["result"]["status"] == "completed" and got["result"]["result"]["isError"] is True


def test_without_authentication_tasks_are_not_listed() -> None:
    server, gate = make_server(auth=False)
    client = Client(server.port, None)
    try:
        assert "list" not in client.initialize()["capabilities"]["tasks"]
        assert client.rpc("tasks/list")["error"]["code"] == -32601
    finally:
        client.close()
        server.close()


def test_a_task_outlives_its_request_and_is_read_after_a_reconnect(served: tuple[loopback.LoopbackServer, Gate]) -> None:
    server, gate = served
    first = Client(server.port, server.token)
    task = start_task(first, "wait", {"label": "a"})
    assert task["status"] == "working" and task["ttl"] > 0 and task["pollInterval"] > 0
    session_id = first.session_id
    first.close()  # the client goes away while the tool runs
    assert wait_for(lambda: gate.running == 1)
    gate.release.set()
    again = Client(server.port, server.token)
    again.session_id = session_id  # reconnects to its session
    try:
        done = poll(again, task["taskId"])
        assert done["status"] == "completed"
        result = again.rpc("tasks/result", {"taskId": task["taskId"]})["result"]
        assert result["content"] == [{"type": "text", "text": "done a"}]
        assert result["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task["taskId"]}
        listed = again.rpc("tasks/list")["result"]["tasks"]
        assert [t["taskId"] for t in listed] == [task["taskId"]]
    finally:
        again.close()
    # Tasks belong to the token, not the session: a 2026-07-28 request reads it back too.
    status, answer = modern(server.port, server.token, "tasks/get", {"taskId": task["taskId"]})
    assert status == 200, answer
    assert answer["result"]["status"] == "completed"
    assert answer["result"]["result"]["content"] == [{"type": "text", "text": "done a"}]


def test_tasks_result_blocks_until_the_task_ends(served: tuple[loopback.LoopbackServer, Gate]) -> None:
    server, gate = served
    client = Client(server.port, server.token)
    try:
        task = start_task(client, "wait", {"label": "b"})
        got: list[dict[str, Any]] = []
        reader = Client(server.port, server.token)
        reader.session_id = client.session_id
        waiter = threading.Thread(target=lambda: got.append(reader.rpc("tasks/result", {"taskId": task["taskId"]})))
        waiter.start()
        time.sleep(0.3)
        assert not got and waiter.is_alive()  # still waiting: the tool has not finished
        gate.release.set()
        waiter.join(5)
        reader.close()
        assert got and got[0]["result"]["content"][0]["text"] == "done b"
    finally:
        client.close()


def test_cancellation_reaches_the_tool(served: tuple[loopback.LoopbackServer, Gate]) -> None:
    server, gate = served
    client = Client(server.port, server.token)
    try:
        task = start_task(client, "wait", {"label": "c"})
        assert wait_for(lambda: gate.running == 1)
        cancelled = client.rpc("tasks/cancel", {"taskId": task["taskId"]})["result"]
        assert cancelled["status"] == "cancelled"
        assert wait_for(lambda: gate.cancelled == ["c"])  # the tool saw ctx.cancelled and stopped
        assert poll(client, task["taskId"])["status"] == "cancelled"
        again = client.rpc("tasks/cancel", {"taskId": task["taskId"]})
        assert again["error"]["code"] == -32602  # 2025-11-25: a terminal task cannot be cancelled
        # 2026-07-28: an ack, and the status on the next tasks/get
        status, created = modern(server.port, server.token, "tools/call", {"name": "wait", "arguments": {"label": "d"}})
        assert created["result"]["resultType"] == "task"
        task_id = created["result"]["taskId"]
        status, ack = modern(server.port, server.token, "tasks/cancel", {"taskId": task_id})
        assert status == 200 and set(ack["result"]) <= {"resultType", "_meta"} and ack["result"]["resultType"] == "complete"
        status, got = modern(server.port, server.token, "tasks/get", {"taskId": task_id})
        assert got["result"]["status"] == "cancelled"
        assert wait_for(lambda: "d" in gate.cancelled)
    finally:
        client.close()


def test_another_token_is_refused_on_every_task_method(served: tuple[loopback.LoopbackServer, Gate]) -> None:
    server, gate = served
    owner = Client(server.port, server.token)
    other_token = server.issue_token().token
    other = Client(server.port, other_token)
    try:
        task = start_task(owner, "wait", {"label": "e"})
        task_id = task["taskId"]
        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            theirs = other.rpc(method, {"taskId": task_id})["error"]
            unknown = other.rpc(method, {"taskId": "no-such-task"})["error"]
            assert theirs["code"] == unknown["code"] == -32602, method
            assert theirs["message"].replace(task_id, "ID") == unknown["message"].replace("no-such-task", "ID")
        assert other.rpc("tasks/list")["result"]["tasks"] == []
        for method, params in (("tasks/get", {}), ("tasks/cancel", {}), ("tasks/update", {"inputResponses": {}})):
            theirs_status, theirs = modern(server.port, other_token, method, {"taskId": task_id, **params})
            unknown_status, unknown = modern(server.port, other_token, method, {"taskId": "no-such-task", **params})
            assert theirs_status == unknown_status and theirs["error"]["code"] == unknown["error"]["code"] == -32602
        # the task is untouched by all that: still the owner's, still running
        assert owner.rpc("tasks/get", {"taskId": task_id})["result"]["status"] == "working"
        gate.release.set()
        assert poll(owner, task_id)["status"] == "completed"
    finally:
        owner.close()
        other.close()


def test_the_pool_runs_at_most_task_workers_tools(served: tuple[loopback.LoopbackServer, Gate]) -> None:
    server, gate = served  # task_workers=2
    client = Client(server.port, server.token)
    try:
        ids = [start_task(client, "wait", {"label": f"p{i}"})["taskId"] for i in range(5)]
        assert wait_for(lambda: gate.running == 2)
        time.sleep(0.3)
        assert gate.running == 2 and gate.started == 2  # the others wait their turn
        assert len(task_threads()) == 2
        assert all(client.rpc("tasks/get", {"taskId": i})["result"]["status"] == "working" for i in ids)
        gate.release.set()
        assert [poll(client, i)["status"] for i in ids] == ["completed"] * 5
        assert gate.most == 2 and gate.started == 5
    finally:
        client.close()


def test_results_expire_with_their_ttl() -> None:
    server, gate = make_server(task_ttl=0.5)
    client = Client(server.port, server.token)
    try:
        gate.release.set()
        task = start_task(client, "wait", {"label": "t"})
        assert task["ttl"] == 500
        assert poll(client, task["taskId"])["status"] == "completed"
        time.sleep(0.6)
        assert client.rpc("tasks/get", {"taskId": task["taskId"]})["error"]["code"] == -32602
        shorter = start_task(client, "wait", {"label": "u"}, ttl=100)  # a client may ask for less
        assert shorter["ttl"] == 100
    finally:
        client.close()
        server.close()


def test_results_are_bounded_in_number_and_bytes() -> None:
    server, gate = make_server(max_tasks=2, max_task_result_bytes=3000)
    client = Client(server.port, server.token)
    try:
        first = start_task(client, "big", {"size": 1000})
        assert poll(client, first["taskId"])["status"] == "completed"
        second = start_task(client, "big", {"size": 1000})
        assert poll(client, second["taskId"])["status"] == "completed"
        third = start_task(client, "big", {"size": 1500})  # room for two results of this size only
        assert poll(client, third["taskId"])["status"] == "completed"
        assert client.rpc("tasks/get", {"taskId": first["taskId"]})["error"]["code"] == -32602  # the oldest went
        assert len(client.rpc("tasks/list")["result"]["tasks"]) == 2
        huge = start_task(client, "big", {"size": 5000})  # larger than every result together may be
        poll(client, huge["taskId"])
        result = client.rpc("tasks/result", {"taskId": huge["taskId"]})["result"]
        assert result["isError"] is True and "max_task_result_bytes" in result["content"][0]["text"]
        # two tasks running: a third is refused, not queued without bound
        running = [start_task(client, "wait", {"label": f"r{i}"}) for i in range(2)]
        refused = client.rpc("tools/call", {"name": "wait", "arguments": {"label": "r2"}, "task": {}})
        assert refused["error"]["code"] == -32603 and "Too many tasks" in refused["error"]["message"]
        gate.release.set()
        assert [poll(client, t["taskId"])["status"] for t in running] == ["completed"] * 2
    finally:
        client.close()
        server.close()


def test_close_with_tasks_running_leaves_no_thread_behind() -> None:
    server, gate = make_server(task_workers=3)
    client = Client(server.port, server.token)
    try:
        for i in range(5):
            start_task(client, "wait", {"label": f"z{i}"})
        assert wait_for(lambda: gate.running == 3)
        assert len(task_threads()) == 3
    finally:
        client.close()
        server.close()
    assert task_threads() == []  # close() returned only after joining every task thread
    assert sorted(gate.cancelled) == ["z0", "z1", "z2"]  # the running ones saw ctx.cancelled
    assert gate.started == 3  # the queued ones never started


def test_input_required_is_carried_out_for_a_handshake_era_client(served: tuple[loopback.LoopbackServer, Gate]) -> None:
    server, _ = served
    client = Client(server.port, server.token)
    try:
        client.initialize(capabilities={"elicitation": {}})
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "confirm", "arguments": {}}}
        conn, response = start_post(server.port, server.token, client.session_id, call)
        try:
            _, request = next_message(response)
            assert request["method"] == "elicitation/create" and request["params"]["message"] == "Go on?"
            status, _, _ = client.post({"jsonrpc": "2.0", "id": request["id"],
                                        "result": {"action": "accept", "content": {"go": True}}})
            assert status == 202
            _, answer = next_message(response)
        finally:
            conn.close()
        assert answer["id"] == 7
        assert answer["result"]["content"][0]["text"] == "answered accept {'go': True}"
        # A 2026-07-28 client gets the input-required result itself, as before.
        status, modern_answer = modern(server.port, server.token, "tools/call", {"name": "confirm", "arguments": {}},
                                       elicitation={})
        assert modern_answer["result"]["resultType"] == "input_required"
    finally:
        client.close()


def test_settings_validate_the_task_bounds() -> None:
    for name, bad in (("task_workers", 0), ("max_tasks", -1), ("max_task_result_bytes", 0), ("task_ttl", 0),
                      ("task_poll_interval", float("inf")), ("task_workers", True)):
        with pytest.raises(ValueError, match=name):
            loopback.Settings(**{name: bad})
    with pytest.raises(ValueError, match="task must be"):
        loopback.ToolRegistry().add(lambda: None, name="x", task="sometimes")


def test_a_tasks_input_requests_reach_a_handshake_era_client_on_tasks_result(
        served: tuple[loopback.LoopbackServer, Gate]) -> None:
    server, _ = served
    client = Client(server.port, server.token)
    try:
        client.initialize(capabilities={"elicitation": {}})
        task = start_task(client, "confirm_task", {})
        assert poll(client, task["taskId"], ("input_required",))["status"] == "input_required"
        call = {"jsonrpc": "2.0", "id": 8, "method": "tasks/result", "params": {"taskId": task["taskId"]}}
        conn, response = start_post(server.port, server.token, client.session_id, call)
        try:
            _, request = next_message(response)  # sent on the waiting tasks/result's stream
            assert request["method"] == "elicitation/create"
            assert request["params"]["_meta"] == {"io.modelcontextprotocol/related-task": {"taskId": task["taskId"]}}
            status, _, _ = client.post({"jsonrpc": "2.0", "id": request["id"],
                                        "result": {"action": "accept", "content": {"go": True}}})
            assert status == 202
            _, answer = next_message(response)
        finally:
            conn.close()
        assert answer["id"] == 8
        assert answer["result"]["content"][0]["text"] == "answered accept {'go': True}"
        assert client.rpc("tasks/get", {"taskId": task["taskId"]})["result"]["status"] == "completed"
    finally:
        client.close()


def test_status_notifications_reach_the_sessions_get_stream(served: tuple[loopback.LoopbackServer, Gate]) -> None:
    server, gate = served
    client = Client(server.port, server.token)
    try:
        client.open_session()
        conn, stream = open_get(server.port, server.token, client.session_id)
        try:
            assert stream.status == 200
            assert read_event(stream) is not None  # the priming event: the stream is open
            task = start_task(client, "wait", {"label": "n"})
            gate.release.set()
            _, note = next_message(stream)
            assert note["method"] == "notifications/tasks/status"
            assert note["params"]["taskId"] == task["taskId"] and note["params"]["status"] == "completed"
            assert "io.modelcontextprotocol/related-task" not in note["params"].get("_meta", {})
        finally:
            conn.close()
    finally:
        client.close()
