"""A connection that repeats its request head byte for byte skips parsing and admission
(connection.py keeps the last head and its decision), but never the token check: a token
revoked between two identical requests on one keep-alive connection is refused."""

from __future__ import annotations

import http.client
import json

import loopback
from conftest import Client, make_registry


def _call(conn: http.client.HTTPConnection, headers: dict[str, str]) -> tuple[int, bytes]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}).encode()
    conn.request("POST", "/mcp", body, headers)
    response = conn.getresponse()
    return response.status, response.read()


def test_revoked_token_refused_on_a_repeated_head() -> None:
    server = loopback.start(registry=make_registry(), port=0)
    try:
        grant_token = server.issue_token().token
        client = Client(server.port, grant_token)
        client.open_session()
        headers = client.headers()
        for _ in range(3):  # the same bytes each time: the memoised path
            status, payload = _call(client.conn, headers)
            assert status == 200, payload
            assert json.loads(payload)["result"]["structuredContent"] == {"result": 3}
        assert server.revoke_token(grant_token)
        status, payload = _call(client.conn, headers)
        assert status == 401, payload  # refused: the token no longer admits it
        client.close()
    finally:
        server.close()


def test_a_changed_head_is_parsed_again() -> None:
    server = loopback.start(registry=make_registry(), port=0)
    try:
        client = Client(server.port, server.token or None)
        client.open_session()
        headers = client.headers()
        assert _call(client.conn, headers)[0] == 200
        assert _call(client.conn, headers)[0] == 200
        # Same length, another Host port: the memo must not answer for it.
        bad = {**headers, "Host": f"127.0.0.1:{(server.port % 60000) + 1}"}
        status, _ = _call(client.conn, bad)
        assert status == 403
        client.close()
    finally:
        server.close()


def test_expired_token_refused_on_a_repeated_head() -> None:
    import time

    server = loopback.start(registry=make_registry(), port=0)
    try:
        grant = server.issue_token(ttl=1.0)
        client = Client(server.port, grant.token, auto_session=False)
        headers = client.headers()
        assert _call(client.conn, headers)[0] == 200  # the plain JSON path: no session
        assert _call(client.conn, headers)[0] == 200
        time.sleep(1.1)
        status, payload = _call(client.conn, headers)
        assert status == 401, payload
        client.close()
    finally:
        server.close()
