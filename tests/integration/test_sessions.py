"""Session rules of the Streamable HTTP transport: Mcp-Session-Id issued at initialize,
400 without one, 404 for an unknown, ended, expired or another token's one, DELETE,
the bounded table, and stateless mode. Real servers, real HTTP."""

from __future__ import annotations

import http.client
import json
import time

import pytest

import loopback
from conftest import PROTOCOL, Client, make_registry, wait_for
from sse_client import headers


def initialize(port: int, token: str) -> tuple[int, dict[str, str], dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        h = headers(token)
        del h["MCP-Protocol-Version"]
        conn.request("POST", "/mcp", json.dumps(body).encode(), h)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read())
    finally:
        conn.close()


def request(port: int, token: str, method: str, session_id: str | None, body: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        h = headers(token, session_id)
        if method != "POST":
            del h["Content-Type"]
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, "/mcp", data, h)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


PING = {"jsonrpc": "2.0", "id": 7, "method": "ping"}


def test_initialize_issues_a_fresh_visible_ascii_session_id(server: loopback.LoopbackServer) -> None:
    ids = set()
    for _ in range(3):
        status, head, answer = initialize(server.port, server.token)
        assert status == 200 and "result" in answer
        session_id = head["mcp-session-id"]
        assert len(session_id) >= 22 and all(0x21 <= ord(c) <= 0x7E for c in session_id)
        ids.add(session_id)
    assert len(ids) == 3


def test_a_request_without_a_session_id_is_400_when_required_and_an_unknown_one_404() -> None:
    with loopback.start(0, registry=make_registry(), settings=loopback.Settings(require_session=True)) as server:
        status, body = request(server.port, server.token, "POST", None, PING)
        assert status == 400 and b"Mcp-Session-Id" in body
        assert json.loads(body)["error"]["code"] == -32000
        assert request(server.port, server.token, "POST", "no-such-session", PING)[0] == 404
        session_id = initialize(server.port, server.token)[1]["mcp-session-id"]
        assert request(server.port, server.token, "POST", session_id, PING)[0] == 200


def test_by_default_a_request_without_a_session_id_is_served_outside_sessions(server: loopback.LoopbackServer) -> None:
    status, body = request(server.port, server.token, "POST", None, PING)
    assert status == 200 and json.loads(body)["result"] == {}
    # But an id the server does not know is refused, and GET/DELETE always need one.
    assert request(server.port, server.token, "POST", "no-such-session", PING)[0] == 404
    assert request(server.port, server.token, "GET", None)[0] == 400
    assert request(server.port, server.token, "GET", "no-such-session")[0] == 404
    assert request(server.port, server.token, "DELETE", None)[0] == 400
    assert request(server.port, server.token, "DELETE", "no-such-session")[0] == 404


def test_a_session_answers_until_deleted_then_404(server: loopback.LoopbackServer) -> None:
    _, head, _ = initialize(server.port, server.token)
    session_id = head["mcp-session-id"]
    status, body = request(server.port, server.token, "POST", session_id, PING)
    assert status == 200 and json.loads(body)["result"] == {}
    notified = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert request(server.port, server.token, "POST", session_id, notified)[0] == 202
    assert request(server.port, server.token, "DELETE", session_id)[0] == 204
    assert request(server.port, server.token, "POST", session_id, PING)[0] == 404
    assert request(server.port, server.token, "DELETE", session_id)[0] == 404
    assert request(server.port, server.token, "GET", session_id)[0] == 404


def test_a_failed_initialize_opens_no_session(server: loopback.LoopbackServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/mcp", b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}', headers(server.token))
        response = conn.getresponse()
        assert response.status == 200 and "error" in json.loads(response.read())
        assert response.getheader("Mcp-Session-Id") is None
    finally:
        conn.close()
    assert len(server._httpd.sessions) == 0


def test_a_session_is_bound_to_the_token_that_opened_it(server: loopback.LoopbackServer) -> None:
    other = server.issue_token()
    _, head, _ = initialize(server.port, server.token)
    session_id = head["mcp-session-id"]
    # Another valid token cannot use (or end) the session: indistinguishable from unknown.
    assert request(server.port, other.token, "POST", session_id, PING)[0] == 404
    assert request(server.port, other.token, "DELETE", session_id)[0] == 404
    assert request(server.port, other.token, "GET", session_id)[0] == 404
    assert request(server.port, server.token, "POST", session_id, PING)[0] == 200


def test_sessions_do_not_share_state() -> None:
    registry = make_registry()

    @registry.tool
    def level(ctx: loopback.Context) -> str:
        """The log level this session asked for."""
        return str(ctx._session.log_level)  # type: ignore[union-attr]

    with loopback.start(0, registry=registry) as srv:
        a, b = Client(srv.port, srv.token), Client(srv.port, srv.token)
        try:
            a.rpc("logging/setLevel", {"level": "error"})
            assert a.session_id != b.session_id
            assert a.call_tool("level")["result"]["content"][0]["text"] == "error"
            assert b.call_tool("level")["result"]["content"][0]["text"] == "None"
        finally:
            a.close()
            b.close()


def test_the_table_is_bounded_least_recently_used_goes_first() -> None:
    with loopback.start(0, registry=make_registry(), settings=loopback.Settings(max_sessions=2)) as srv:
        first = initialize(srv.port, srv.token)[1]["mcp-session-id"]
        second = initialize(srv.port, srv.token)[1]["mcp-session-id"]
        time.sleep(0.1)  # use is recorded at 50 ms granularity (sessions._TOUCH_INTERVAL)
        assert request(srv.port, srv.token, "POST", first, PING)[0] == 200  # first is now the most recent
        third = initialize(srv.port, srv.token)[1]["mcp-session-id"]
        assert len(srv._httpd.sessions) == 2
        assert request(srv.port, srv.token, "POST", second, PING)[0] == 404
        assert request(srv.port, srv.token, "POST", first, PING)[0] == 200
        assert request(srv.port, srv.token, "POST", third, PING)[0] == 200


def test_an_idle_session_expires() -> None:
    with loopback.start(0, registry=make_registry(), settings=loopback.Settings(session_idle_timeout=0.3)) as srv:
        kept = initialize(srv.port, srv.token)[1]["mcp-session-id"]
        idle = initialize(srv.port, srv.token)[1]["mcp-session-id"]
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:  # keep one busy, leave the other alone
            assert request(srv.port, srv.token, "POST", kept, PING)[0] == 200
            time.sleep(0.1)
        assert request(srv.port, srv.token, "POST", idle, PING)[0] == 404
        assert request(srv.port, srv.token, "POST", kept, PING)[0] == 200
        # Expired sessions are also swept when a new one is made, not only when named.
        initialize(srv.port, srv.token)
        assert wait_for(lambda: len(srv._httpd.sessions) == 2, 2)


def test_stateless_mode_has_no_sessions_and_no_get_stream() -> None:
    with loopback.start(0, registry=make_registry(), settings=loopback.Settings(stateless=True)) as srv:
        status, head, answer = initialize(srv.port, srv.token)
        assert status == 200 and "mcp-session-id" not in head
        assert answer["result"]["capabilities"]["tools"] == {"listChanged": True}
        status, body = request(srv.port, srv.token, "POST", None, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                                                   "params": {"name": "add", "arguments": {"a": 1}}})
        assert status == 200 and json.loads(body)["result"]["content"][0]["text"] == "3"
        for method in ("GET", "DELETE"):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            try:
                conn.request(method, "/mcp", headers={"Authorization": f"Bearer {srv.token}", "Accept": "text/event-stream"})
                response = conn.getresponse()
                response.read()
                assert response.status == 405 and response.getheader("Allow") == "POST, OPTIONS"
            finally:
                conn.close()


def test_auth_off_by_settings_needs_no_token_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="loopback"):
        srv = loopback.start(0, registry=make_registry(), settings=loopback.Settings(auth=False))
    try:
        assert srv.token == ""
        assert "authentication is switched off" in caplog.text
        client = Client(srv.port, None)
        try:
            assert client.call_tool("add", {"a": 2})["result"]["content"][0]["text"] == "4"
        finally:
            client.close()
        # Host checks stay on.
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            conn.request("POST", "/mcp", json.dumps(PING).encode(), {**headers(None), "Host": "evil.example"})
            response = conn.getresponse()
            response.read()
            assert response.status == 403
        finally:
            conn.close()
    finally:
        srv.close()


def test_options_and_405_name_the_methods_of_the_mode(server: loopback.LoopbackServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("PUT", "/mcp", b"{}", headers(server.token))
        response = conn.getresponse()
        response.read()
        assert response.status == 405 and response.getheader("Allow") == "GET, POST, DELETE, OPTIONS"
    finally:
        conn.close()
