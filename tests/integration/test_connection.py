"""Transport: every security and HTTP answer proven with a real request over a real socket.

Two module-scoped servers (closing a server costs its poll interval, so a server per
case would be slow): ``main`` with default settings and ``tight`` with small limits.
They are built with ``LoopbackServer`` directly, so they are never the process-wide
active runtime; this module's ``no_leaks`` keeps the shared leak check but tolerates
their serving threads, and the module teardown proves they leave nothing behind.

After every refusal the same server must still answer a normal ``tools/call``: on the
same connection when the server kept it open (so an unread body cannot desynchronise
the next request), and always on a fresh connection.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import pytest

import loopback
from loopback.server import LoopbackServer
from loopback.settings import Settings

from conftest import Client, _loopback_threads, make_registry, raw_request, session_of, status_of, wait_for

SOCKET_TIMEOUT = 5.0
PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
CALL_ADD = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}'
TIGHT = Settings(max_body_bytes=1024, body_timeout=0.5, allowed_origins=("https://app.example",))


# -- servers ---------------------------------------------------------------------


_module_servers: list[LoopbackServer] = []
_SESSIONS: dict[int, str] = {}  # port of a module server -> the session its raw requests use


def _module_server(settings: Optional[Settings] = None) -> Iterator[LoopbackServer]:
    srv = LoopbackServer(0, registry=make_registry(), settings=settings).start()
    _SESSIONS[srv.port] = session_of(srv)  # raw requests (build) speak inside this session
    _module_servers.append(srv)
    try:
        yield srv
    finally:
        srv.close()
        _module_servers.remove(srv)
        assert srv.closed
        assert wait_for(lambda: not any(t.name.startswith(f"loopback-mcp:{srv.port}") for t in _loopback_threads()), 5)


@pytest.fixture(scope="module")
def main() -> Iterator[LoopbackServer]:
    yield from _module_server()


@pytest.fixture(scope="module")
def tight() -> Iterator[LoopbackServer]:
    yield from _module_server(TIGHT)


@pytest.fixture
def leak_exempt() -> set[int]:
    """The shared leak check (conftest), minus this module's own shared servers."""
    return {s.port for s in _module_servers}


# -- a raw HTTP/1.1 connection ---------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names; the last value of repeated names
    header_list: list[tuple[str, str]]
    body: bytes
    head: bytes = b""

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Conn:
    """One socket, read with a buffer so pipelined responses stay apart."""

    port: int
    timeout: float = SOCKET_TIMEOUT
    sock: socket.socket = field(init=False)
    buf: bytes = b""

    def __post_init__(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed; got {self.buf!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head

    def read_response(self, head_request: bool = False) -> Response:
        head = self.read_head()
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        header_list = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            header_list.append((name.strip(), value.strip()))
        headers = {name.lower(): value for name, value in header_list}
        if head_request or status < 200 or status in (204, 304):
            return Response(status, headers, header_list, b"", head)
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(self.buf) < length:
                if not self._fill():
                    raise EOFError("connection closed mid-body")
            body, self.buf = self.buf[:length], self.buf[length:]
        else:  # no framing: the body runs to the end of the connection
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        return Response(status, headers, header_list, body, head)

    def at_eof(self) -> bool:
        """True when the server closed the connection (bounded by the socket timeout)."""
        try:
            return not self.buf and not self._fill()
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def build(
    port: int,
    token: str,
    method: str = "POST",
    path: str = "/mcp",
    headers: Optional[dict[str, Optional[str]]] = None,
    body: bytes = PING,
    extra: tuple[tuple[str, str], ...] = (),
    version: str = "HTTP/1.1",
) -> bytes:
    """A raw request: default headers of a good client, then ``headers`` (None removes one)."""
    fields: dict[str, Optional[str]] = {
        "Host": "127.0.0.1:{port}",
        "Authorization": "Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
        "Mcp-Session-Id": _SESSIONS.get(port),
        "Content-Length": str(len(body)),
    }
    fields.update(headers or {})
    lines = [f"{method} {path} {version}"]
    for name, value in [*fields.items(), *extra]:
        if value is not None:
            lines.append(f"{name}: {value.format(port=port, token=token, other=(port % 60000) + 1)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def good_call(port: int, token: str) -> bytes:
    return build(port, token, body=CALL_ADD)


def assert_good_call(response: Response) -> None:
    assert response.status == 200, response
    answer = response.json()
    assert answer["id"] == 7
    assert answer["result"]["content"] == [{"type": "text", "text": "5"}]
    assert answer["result"]["isError"] is False


def assert_still_serves(srv: LoopbackServer, conn: Conn, response: Response) -> None:
    """After any answer: the same connection (if kept open) and a fresh one both serve a call."""
    if response.closes:
        assert conn.at_eof(), "the server said Connection: close but kept the connection"
    else:
        conn.send(good_call(srv.port, srv.token))
        assert_good_call(conn.read_response())
    fresh = Conn(srv.port)
    try:
        fresh.send(good_call(srv.port, srv.token))
        assert_good_call(fresh.read_response())
    finally:
        fresh.close()


def exchange(srv: LoopbackServer, data: bytes, head_request: bool = False) -> Response:
    """Send one raw request, read its answer, then prove the server still serves."""
    conn = Conn(srv.port)
    try:
        conn.send(data)
        response = conn.read_response(head_request)
        assert_still_serves(srv, conn, response)
        return response
    finally:
        conn.close()


def rpc_error_code(response: Response) -> int:
    body = response.json()
    assert body["jsonrpc"] == "2.0"
    return body["error"]["code"]


# -- the table ---------------------------------------------------------------------------

BATCH2 = b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]'
NOTES = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
INIT = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}'
NO_AUTH: dict[str, Optional[str]] = {"Authorization": None}
V0326 = {"MCP-Protocol-Version": "2025-03-26"}


def case(name: str, status: int, code: Optional[int] = None, *, expect: Optional[dict[str, str]] = None,
         check: Any = None, **request: Any) -> Any:
    return pytest.param(request, status, code, expect or {}, check, id=name)


def _is_batch_of_two(body: Any) -> None:
    assert isinstance(body, list) and [a["id"] for a in body] == [1, 2]
    assert body[0]["result"] == {} and "tools" in body[1]["result"]


def _is_ping_answer(body: Any) -> None:
    assert body == {"jsonrpc": "2.0", "id": 1, "result": {}}


BEARER = {"www-authenticate": 'Bearer realm="loopback"'}
ALLOW = {"allow": "GET, POST, DELETE, OPTIONS"}

TABLE = [
    # 401: bearer token
    case("no-token", 401, -32000, expect=BEARER, headers=NO_AUTH),
    case("wrong-token", 401, -32000, expect=BEARER, headers={"Authorization": "Bearer not-the-token"}),
    case("token-prefix", 401, -32000, expect=BEARER, headers={"Authorization": "Bearer {token}x"}),
    case("basic-scheme", 401, -32000, expect=BEARER, headers={"Authorization": "Basic dXNlcjpwYXNz"}),
    case("token-without-scheme", 401, -32000, expect=BEARER, headers={"Authorization": "{token}"}),
    case("empty-bearer", 401, -32000, expect=BEARER, headers={"Authorization": "Bearer "}),
    case("bearer-lowercase", 200, check=_is_ping_answer, headers={"Authorization": "bearer {token}"}),
    case("bearer-uppercase", 200, check=_is_ping_answer, headers={"Authorization": "BEARER {token}"}),
    # 403: Host (DNS rebinding)
    case("host-evil", 403, -32000, headers={"Host": "evil.example:{port}"}),
    case("host-evil-no-token", 403, -32000, headers={"Host": "evil.example:{port}", "Authorization": None}),
    case("host-other-port", 403, -32000, headers={"Host": "127.0.0.1:{other}"}),
    case("host-without-port", 403, -32000, headers={"Host": "127.0.0.1"}),
    case("host-missing", 400, -32000, headers={"Host": None}),  # RFC 9112 3.2
    case("host-malformed", 400, -32000, headers={"Host": "127.0.0.1:{port}:1"}),
    case("host-localhost", 200, check=_is_ping_answer, headers={"Host": "localhost:{port}"}),
    case("host-127", 200, check=_is_ping_answer, headers={"Host": "127.0.0.1:{port}"}),
    case("host-ipv6-loopback", 200, check=_is_ping_answer, headers={"Host": "[::1]:{port}"}),
    # 403: Origin, before authentication
    case("origin-cross-site-no-token", 403, -32000, headers={"Origin": "https://evil.example", **NO_AUTH}),
    case("origin-cross-site", 403, -32000, headers={"Origin": "https://evil.example"}),
    case("origin-null-no-token", 403, -32000, headers={"Origin": "null", **NO_AUTH}),
    case("origin-lookalike", 403, -32000, headers={"Origin": "http://127.0.0.1.evil.example"}),
    case("origin-loopback", 200, check=_is_ping_answer, headers={"Origin": "http://localhost:5173"},
         expect={"access-control-allow-origin": "http://localhost:5173", "vary": "Origin"}),
    case("origin-loopback-ip", 200, check=_is_ping_answer, headers={"Origin": "http://127.0.0.1:8080"},
         expect={"access-control-allow-origin": "http://127.0.0.1:8080"}),
    # 204: CORS preflight, no token needed
    case("preflight", 204, method="OPTIONS", body=b"",
         headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
                  "Access-Control-Request-Headers": "authorization, content-type", "Content-Type": None,
                  **NO_AUTH},
         expect={"access-control-allow-origin": "http://localhost:5173",
                 "access-control-allow-methods": "GET, POST, DELETE, OPTIONS"}),
    case("preflight-without-origin", 204, method="OPTIONS", body=b"", headers=NO_AUTH,
         expect={"access-control-allow-methods": "GET, POST, DELETE, OPTIONS"}),
    case("preflight-cross-site", 403, -32000, method="OPTIONS", body=b"",
         headers={"Origin": "https://evil.example", **NO_AUTH}),
    # 404: other paths, even without a token
    case("path-root", 404, -32000, path="/", headers=NO_AUTH),
    case("path-trailing-slash", 404, -32000, path="/mcp/", headers=NO_AUTH),
    case("path-uppercase", 404, -32000, path="/MCP", headers=NO_AUTH),
    case("path-double-slash", 404, -32000, path="//mcp", headers=NO_AUTH),
    case("path-double-slash-with-token", 404, -32000, path="//mcp"),
    case("path-percent-encoded", 404, -32000, path="/%6Dcp", headers=NO_AUTH),
    case("path-protected-resource", 404, -32000, method="GET", path="/.well-known/oauth-protected-resource",
         body=b"", headers={"Content-Length": None, **NO_AUTH}),
    case("path-authorization-server", 404, -32000, method="GET", path="/.well-known/oauth-authorization-server",
         body=b"", headers={"Content-Length": None, **NO_AUTH}),
    case("path-with-query", 200, check=_is_ping_answer, path="/mcp?x=1"),
    # 405: other methods, after authentication (GET and DELETE need a session: tests/integration/test_sessions.py)
    case("get-without-session", 400, -32000, method="GET", body=b"", headers={"Content-Length": None, "Mcp-Session-Id": None}),
    case("get-json-only", 406, -32000, method="GET", body=b"", headers={"Content-Length": None, "Accept": "application/json"}),
    case("delete-unknown-session", 404, -32000, method="DELETE", body=b"",
         headers={"Content-Length": None, "Mcp-Session-Id": "no-such-session"}),
    case("post-without-session", 200, check=_is_ping_answer, headers={"Mcp-Session-Id": None}),
    case("post-unknown-session", 404, -32000, headers={"Mcp-Session-Id": "no-such-session"}),
    case("put", 405, -32000, expect=ALLOW, method="PUT"),
    case("get-no-token", 401, -32000, expect=BEARER, method="GET", body=b"", headers={"Content-Length": None, **NO_AUTH}),
    # 415 / 406
    case("content-type-text", 415, -32000, headers={"Content-Type": "text/plain"}),
    case("content-type-missing", 415, -32000, headers={"Content-Type": None}),
    case("content-type-charset", 200, check=_is_ping_answer, headers={"Content-Type": "application/json; charset=utf-8"}),
    case("accept-html", 406, -32000, headers={"Accept": "text/html"}),
    case("accept-json-refused", 406, -32000, headers={"Accept": "application/json;q=0"}),
    case("accept-missing", 200, check=_is_ping_answer, headers={"Accept": None},
         expect={"content-type": "application/json"}),
    case("accept-empty", 200, check=_is_ping_answer, headers={"Accept": ""},
         expect={"content-type": "application/json"}),
    case("accept-wildcard", 200, check=_is_ping_answer, headers={"Accept": "*/*"},
         expect={"content-type": "application/json"}),
    case("accept-json", 200, check=_is_ping_answer, headers={"Accept": "application/json"}),
    case("415-before-406", 415, -32000, headers={"Content-Type": "text/plain", "Accept": "text/html"}),
    # 411 / 400 / framing
    case("no-length", 411, -32000, body=b"", headers={"Content-Length": None}),
    case("406-before-411", 406, -32000, body=b"", headers={"Content-Length": None, "Accept": "text/html"}),
    case("length-negative", 400, -32000, body=b"", headers={"Content-Length": "-1"}),
    case("length-not-a-number", 400, -32000, body=b"", headers={"Content-Length": "abc"}),
    case("length-hex", 400, -32000, body=b"", headers={"Content-Length": "0x10"}),
    case("length-two-values", 400, -32000, headers={"Content-Length": None},
         extra=(("Content-Length", str(len(PING))), ("Content-Length", str(len(PING) + 1)))),
    case("length-list-differs", 400, -32000, headers={"Content-Length": f"{len(PING)}, {len(PING) + 1}"}),
    case("length-repeated-same", 200, check=_is_ping_answer, headers={"Content-Length": None},
         extra=(("Content-Length", str(len(PING))), ("Content-Length", str(len(PING))))),
    case("length-and-chunked", 400, -32000, headers={"Transfer-Encoding": "chunked"}),
    case("chunked", 200, check=_is_ping_answer, body=b"5\r\n" + PING[:5] + b"\r\n" + b"%x\r\n" % (len(PING) - 5)
         + PING[5:] + b"\r\n0\r\n\r\n", headers={"Content-Length": None, "Transfer-Encoding": "chunked"}),
    case("chunked-extension-and-trailer", 200, check=_is_ping_answer,
         body=b"%X;name=value\r\n" % len(PING) + PING + b"\r\n0\r\nX-Trailer: 1\r\n\r\n",
         headers={"Content-Length": None, "Transfer-Encoding": "chunked"}),
    case("chunked-bad-size", 400, -32000, body=b"zz\r\n" + PING + b"\r\n0\r\n\r\n",
         headers={"Content-Length": None, "Transfer-Encoding": "chunked"}),
    # JSON and JSON-RPC
    case("malformed-json", 400, -32700, body=b'{"jsonrpc": "2.0", "id": 1,'),
    case("empty-body", 400, -32700, body=b""),
    case("invalid-request", 400, -32600, body=b'{"jsonrpc":"1.0","id":1,"method":"ping"}'),
    case("empty-batch-0326", 400, -32600, body=b"[]", headers=V0326),
    case("batch-0618", 400, -32600, body=BATCH2, headers={"MCP-Protocol-Version": "2025-06-18"}),
    case("batch-1125", 400, -32600, body=BATCH2, headers={"MCP-Protocol-Version": "2025-11-25"}),
    case("batch-0326", 200, check=_is_batch_of_two, body=BATCH2, headers=V0326),
    case("batch-no-version-header", 200, check=_is_batch_of_two, body=BATCH2, headers={"MCP-Protocol-Version": None}),
    case("batch-with-initialize", 400, -32600, body=b"[" + INIT + b"," + PING + b"]", headers=V0326),
    case("only-notifications", 202, expect={"content-length": "0"}, body=NOTES),
    case("only-notifications-batch", 202, expect={"content-length": "0"}, body=b"[" + NOTES + b"," + NOTES + b"]",
         headers=V0326),
    case("client-response", 202, expect={"content-length": "0"}, body=b'{"jsonrpc":"2.0","id":5,"result":{}}'),
    case("unsupported-version", 400, -32600, headers={"MCP-Protocol-Version": "1999-01-01"}),
    case("no-version-header", 200, check=_is_ping_answer, headers={"MCP-Protocol-Version": None}),
    case("unknown-method", 200, check=lambda b: b["error"]["code"] == -32601,
         body=b'{"jsonrpc":"2.0","id":3,"method":"nope"}'),
    case("lone-surrogate-id", 200, check=lambda b: b["id"] == "\ud800" and b["result"] == {},
         body=b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}'),
]


@pytest.mark.parametrize("request_, status, code, expect, check", TABLE)
def test_answer(main: LoopbackServer, request_: dict[str, Any], status: int, code: Optional[int],
                expect: dict[str, str], check: Any) -> None:
    method = request_.get("method", "POST")
    response = exchange(main, build(main.port, main.token, **request_), head_request=method == "HEAD")
    assert response.status == status, response
    if status == 204:  # RFC 9110 8.6: a 204 must not carry Content-Length
        assert "content-length" not in response.headers, response.head
    else:
        assert "content-length" in response.headers, response.head
        assert int(response.headers["content-length"]) == len(response.body)
    for name, value in expect.items():
        assert response.headers.get(name) == value, (name, response.headers)
    if code is not None:
        assert rpc_error_code(response) == code
        assert response.headers["content-type"] == "application/json"
    if check is not None:
        result = check(response.json())
        assert result is None or result is True
    assert main.token.encode() not in response.body


def test_preflight_lists_allowed_headers(main: LoopbackServer) -> None:
    response = exchange(main, build(main.port, main.token, "OPTIONS", body=b"",
                                    headers={"Origin": "http://localhost:5173", **NO_AUTH}))
    assert response.status == 204
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "accept", "mcp-protocol-version"} <= allowed
    assert response.body == b""


def test_head_is_refused_without_a_body(main: LoopbackServer) -> None:
    """A HEAD answer carries no content (RFC 9110), else a keep-alive peer reads it as the next response."""
    conn = Conn(main.port)
    try:
        conn.send(build(main.port, main.token, "HEAD", body=b"", headers={"Content-Length": None}))
        response = conn.read_response(head_request=True)
        assert response.status == 405
        assert response.headers["allow"] == "GET, POST, DELETE, OPTIONS"
        assert_still_serves(main, conn, response)  # the next bytes on the wire are the next response
    finally:
        conn.close()


def test_allowed_origin_setting(tight: LoopbackServer) -> None:
    accepted = exchange(tight, build(tight.port, tight.token, headers={"Origin": "https://app.example"}))
    assert accepted.status == 200
    assert accepted.headers["access-control-allow-origin"] == "https://app.example"
    refused = exchange(tight, build(tight.port, tight.token, headers={"Origin": "https://other.example"}))
    assert refused.status == 403


def test_malformed_request_lines_are_refused(main: LoopbackServer) -> None:
    for data, status in [
        (b"NONSENSE\r\n\r\n", 400),
        (b"POST /mcp HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
        (b"POST /mcp HTTP/9.9\r\n\r\n", 505),
        (b"POST /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"POST /mcp HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    ]:
        response = exchange(main, data)
        assert response.status == status, (data[:40], response)
        assert response.closes
        assert rpc_error_code(response) == -32000


# -- event stream -----------------------------------------------------------------------


def test_event_stream_only_accept_gets_an_sse_event(main: LoopbackServer) -> None:
    response = exchange(main, build(main.port, main.token, body=CALL_ADD, headers={"Accept": "text/event-stream"}))
    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["content-length"] == str(len(response.body))
    assert response.body.startswith(b"event: message\n")
    data_lines = [line for line in response.body.split(b"\n") if line.startswith(b"data: ")]
    assert len(data_lines) == 1
    answer = json.loads(data_lines[0][len(b"data: "):])
    assert answer["id"] == 7 and answer["result"]["content"][0]["text"] == "5"
    assert response.body.endswith(b"\n\n")


# -- body limits -------------------------------------------------------------------------


def test_oversized_content_length_is_refused_without_reading_the_body(tight: LoopbackServer) -> None:
    conn = Conn(tight.port, timeout=SOCKET_TIMEOUT)
    try:
        # Headers only: a server that waited for the 5000 bytes would time out this recv.
        conn.send(build(tight.port, tight.token, body=b"", headers={"Content-Length": "5000"}))
        response = conn.read_response()
        assert response.status == 413
        assert rpc_error_code(response) == -32000
        assert response.closes
        assert_still_serves(tight, conn, response)  # proves the close too
    finally:
        conn.close()


def test_body_at_the_limit_is_accepted(tight: LoopbackServer) -> None:
    body = PING[:-1] + b',"pad":""}'
    body = body[:-2] + b"x" * (1024 - len(body)) + b'"}'
    assert len(body) == 1024
    response = exchange(tight, build(tight.port, tight.token, body=body))
    assert response.status == 200 and response.json()["result"] == {}
    response = exchange(tight, build(tight.port, tight.token, body=body + b" "))
    assert response.status == 413


def test_oversized_chunked_body_is_refused(tight: LoopbackServer) -> None:
    # One chunk that announces more than the limit: refused on its size line.
    response = exchange(tight, build(tight.port, tight.token, body=b"800\r\n" + b"x" * 10,
                                     headers={"Content-Length": None, "Transfer-Encoding": "chunked"}))
    assert response.status == 413
    assert response.closes
    # Chunks each under the limit whose sum is over it.
    conn = Conn(tight.port)
    try:
        conn.send(build(tight.port, tight.token, body=b"258\r\n" + b" " * 600 + b"\r\n258\r\n",
                        headers={"Content-Length": None, "Transfer-Encoding": "chunked"}))
        response = conn.read_response()
        assert response.status == 413
        assert rpc_error_code(response) == -32000
        assert_still_serves(tight, conn, response)
    finally:
        conn.close()


def test_trickling_body_times_out_while_others_are_served(tight: LoopbackServer) -> None:
    conn = Conn(tight.port)
    answer = b""
    try:
        conn.send(build(tight.port, tight.token, body=PING[:10], headers={"Content-Length": str(len(PING) + 100)}))
        other = Client(tight.port, tight.token)
        try:  # another client is served while the body trickles
            assert other.call_tool("add", {"a": 1, "b": 1})["result"]["content"][0]["text"] == "2"
        finally:
            other.close()
        started = time.monotonic()
        for _ in range(25):  # 1 byte per 0.2 s, at most 5 s: the body can never complete
            readable, _, _ = select.select([conn.sock], [], [], 0.2)
            if readable:
                break
            try:
                conn.sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            pytest.fail("the server neither answered nor closed a body that trickled in for 5 s")
        try:
            while True:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        elapsed = time.monotonic() - started
    finally:
        conn.close()
    assert answer == b"" or status_of(answer) == 408, answer
    if answer:
        assert b"Connection: close" in answer
    assert elapsed < 5
    fresh = Conn(tight.port)
    try:
        fresh.send(good_call(tight.port, tight.token))
        assert_good_call(fresh.read_response())
    finally:
        fresh.close()


def test_expect_100_continue(tight: LoopbackServer) -> None:
    conn = Conn(tight.port)
    try:
        request = build(tight.port, tight.token, body=CALL_ADD, extra=(("Expect", "100-continue"),))
        head, body = request.split(b"\r\n\r\n", 1)
        conn.send(head + b"\r\n\r\n")
        interim = conn.read_response()
        assert interim.status == 100
        assert interim.head.startswith(b"HTTP/1.1 100 Continue")
        conn.send(body)
        response = conn.read_response()
        assert_good_call(response)
        assert_still_serves(tight, conn, response)
    finally:
        conn.close()


def test_expect_100_continue_over_the_limit_gets_413_only(tight: LoopbackServer) -> None:
    conn = Conn(tight.port)
    try:
        conn.send(build(tight.port, tight.token, body=b"",
                        headers={"Content-Length": "2000"}, extra=(("Expect", "100-continue"),)))
        response = conn.read_response()
        assert response.status == 413
        assert b"100 Continue" not in response.head + response.body + conn.buf
        assert response.closes and conn.at_eof()
    finally:
        conn.close()


def test_expect_100_continue_refused_before_the_body(main: LoopbackServer) -> None:
    """A refusal (401) sends no 100 Continue, so a waiting client never sends its body."""
    conn = Conn(main.port)
    try:
        request = build(main.port, main.token, headers=NO_AUTH, extra=(("Expect", "100-continue"),))
        conn.send(request.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
        response = conn.read_response()
        assert response.status == 401
        assert b"100 Continue" not in response.head
        assert_still_serves(main, conn, response)
    finally:
        conn.close()


# -- keep-alive, Nagle, one connection -------------------------------------------------------


def test_refusal_with_an_unread_body_does_not_desynchronise_keep_alive(main: LoopbackServer) -> None:
    """A body the server refused unread must not be parsed as the next request on the connection."""
    client = Client(main.port, "wrong-token", auto_session=False)
    try:
        status, headers, _ = client.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert status == 401
        client.token = main.token
        client.auto_session = True
        assert client.call_tool("add", {"a": 2, "b": 3})["result"]["content"][0]["text"] == "5"
    finally:
        client.close()


def test_a_refused_body_cannot_smuggle_a_request_past_the_host_check(main: LoopbackServer) -> None:
    """The body of a 403 request, if parsed as the next request, would skip the Host/Origin checks."""
    inner = build(main.port, main.token, body=b'{"jsonrpc":"2.0","id":9,"method":"tools/call",'
                                              b'"params":{"name":"echo","arguments":{"text":"smuggled"}}}')
    outer = build(main.port, main.token, body=inner,
                  headers={"Host": "evil.example:{port}", "Origin": "http://evil.example", "Content-Type": "text/plain"})
    raw = raw_request(main.port, outer, timeout=SOCKET_TIMEOUT)
    assert status_of(raw) == 403
    assert b"smuggled" not in raw
    assert raw.count(b"HTTP/1.1 ") == 1


def test_keep_alive_serves_100_calls_on_one_connection(main: LoopbackServer) -> None:
    client = Client(main.port, main.token)
    try:
        client.initialize()
        local = client.conn.sock.getsockname()
        for i in range(100):
            answer = client.call_tool("add", {"a": i, "b": 1})
            assert answer["result"]["content"][0]["text"] == str(i + 1)
        assert client.conn.sock is not None and client.conn.sock.getsockname() == local
    finally:
        client.close()


def test_responses_are_not_stalled_by_nagle(main: LoopbackServer) -> None:
    client = Client(main.port, main.token)
    try:
        client.rpc("ping")
        started = time.monotonic()
        for _ in range(200):
            client.rpc("ping")
        elapsed = time.monotonic() - started
    finally:
        client.close()
    # 200 × ~40 ms (Nagle + delayed ACK) would be ~8 s; a sound server takes well under 1 s.
    assert elapsed < 6, elapsed


def test_every_response_carries_content_length(main: LoopbackServer, tight: LoopbackServer) -> None:
    requests = [
        (main, build(main.port, main.token)),
        (main, build(main.port, main.token, headers=NO_AUTH)),
        (main, build(main.port, main.token, headers={"Host": "evil.example"})),
        (main, build(main.port, main.token, path="/x")),
        (main, build(main.port, main.token, method="PUT", body=b"", headers={"Content-Length": None})),
        (main, build(main.port, main.token, method="GET", body=b"", headers={"Content-Length": None, "Mcp-Session-Id": None})),
        (main, build(main.port, main.token, headers={"Content-Type": "text/plain"})),
        (main, build(main.port, main.token, headers={"Accept": "text/html"})),
        (main, build(main.port, main.token, body=b"", headers={"Content-Length": None})),
        (main, build(main.port, main.token, body=b"{")),
        (main, build(main.port, main.token, body=NOTES)),
        (main, build(main.port, main.token, headers={"Accept": "text/event-stream"})),
        (tight, build(tight.port, tight.token, body=b"", headers={"Content-Length": "4096"})),
    ]
    seen = set()
    for srv, data in requests:
        raw = raw_request(srv.port, data, timeout=SOCKET_TIMEOUT)
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert b"\r\nContent-Length: " in head, head
        seen.add(status_of(raw))
    assert seen == {200, 202, 400, 401, 403, 404, 405, 406, 411, 413, 415}


def test_http_1_0_without_host_is_served_and_closed(main: LoopbackServer) -> None:
    conn = Conn(main.port)
    try:
        conn.send(build(main.port, main.token, body=CALL_ADD, headers={"Host": None}, version="HTTP/1.0"))
        response = conn.read_response()
        assert_good_call(response)
        assert response.closes
        assert conn.at_eof()
    finally:
        conn.close()


# -- no tracebacks, no token leaks ---------------------------------------------------------


def test_tool_errors_and_logs_leak_no_traceback_and_no_token(main: LoopbackServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="loopback")
    package_dir = os.path.dirname(os.path.abspath(loopback.__file__))
    token = main.token
    bodies = []
    client = Client(main.port, token)
    try:
        client.initialize()
        bodies.append(json.dumps(client.rpc("tools/list")))
        failed = client.call_tool("fail", {"message": "the disk is on fire"})
        assert failed["result"]["isError"] is True
        assert "the disk is on fire" in failed["result"]["content"][0]["text"]
        bodies.append(json.dumps(failed))
        bodies.append(json.dumps(client.call_tool("add", {"a": "x"})))
        for raw in (b"{", b'{"jsonrpc":"2.0","id":1,"method":"nope"}'):
            bodies.append(client.post(raw)[2].decode())
        for auth in ("Bearer wrong", f"Basic {token}", f"Bearer {token[:-1]}"):
            status, _, body = client.post({"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                          headers=client.headers(Authorization=auth))
            assert status == 401
            bodies.append(body.decode())
    finally:
        client.close()
    for body in bodies:
        assert "Traceback" not in body
        assert package_dir not in body and ".py" not in body
        assert token not in body
    assert wait_for(lambda: "tool 'fail' raised RuntimeError" in caplog.text, 2)  # logging did happen
    assert "POST /mcp" in caplog.text
    assert token not in caplog.text
    assert token[:16] not in caplog.text


def test_a_preflight_then_a_call_on_one_keep_alive_connection(main: LoopbackServer) -> None:
    """A 204 is framed by its status alone: the connection carries the next request."""
    client = Client(main.port, main.token)
    try:
        client.conn.request("OPTIONS", "/mcp", headers={"Origin": "http://localhost:5173"})
        preflight = client.conn.getresponse()
        assert preflight.status == 204 and preflight.read() == b""
        assert preflight.getheader("Content-Length") is None
        assert client.call_tool("add", {"a": 40})["result"]["content"][0]["text"] == "42"
    finally:
        client.close()
