"""Property-based fuzzing (hypothesis, test-only) of one real server: raw request bytes
(mutations of valid requests: calls with and without the session, chunked bodies, batches,
CORS preflights, the session's GET event stream) against one module-scoped server: no 5xx
but 501/505, every response well framed (Content-Length, or chunked SSE), no traceback or
token, no logged crash, no hang, and a normal call still works afterwards.

The registry, strategies and settings come from ``tests/unit/test_fuzz.py`` (the pure
layers' fuzzing), which also says how the example count is set and a failure replayed.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from typing import Iterator

import pytest

hypothesis = pytest.importorskip("hypothesis")  # test-only dependency (tox deps)
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import loopback  # noqa: E402
from loopback import jsonrpc, protocol  # noqa: E402
from loopback.auth import Grant  # noqa: E402
from loopback.server import LoopbackServer  # noqa: E402
from loopback.settings import Settings  # noqa: E402

from conftest import Client, _loopback_threads, wait_for  # noqa: E402

from conftest import unit_module  # noqa: E402

_unit = unit_module("test_fuzz")
fuzz_registry = _unit.fuzz_registry
fuzz_settings = _unit.fuzz_settings
messages = _unit.messages
params_for = _unit.params_for

_OVERRIDE = int(os.environ.get("LOOPBACK_FUZZ_EXAMPLES", "0") or 0)


# -- a small registry ----------------------------------------------------------------------------


TOOL_NAMES = ["add", "echo", "mirror", "anything", "secret"]
ARGUMENT_NAMES = ["a", "b", "text", "data", "scale", "value", "ctx"]
REAL_METHODS = ["initialize", "ping", "tools/list", "tools/call", "logging/setLevel",
                "notifications/initialized", "notifications/cancelled", "notifications/progress",
                "resources/list", "prompts/list", "completion/complete", "tools/call/"]
VERSIONS = list(protocol.SUPPORTED_VERSIONS) + ["2099-01-01", "", " 2025-06-18 "]
GUEST = Grant(token="g" * 43, scope="guest", tools=frozenset({"add", "echo"}))

# Error codes a client's request may earn. -32603 (internal error) is a bug of ours: never here.
ANSWER_CODES = {jsonrpc.INVALID_REQUEST, jsonrpc.METHOD_NOT_FOUND, jsonrpc.INVALID_PARAMS}


# -- JSON strategies ---------------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)
ids = st.one_of(st.integers(), st.text(max_size=10), json_values)


payloads = st.one_of(messages(), st.lists(messages(), max_size=6), json_values)


# -- an independent reading of the rules, to check the answers against -------------------------------


REGISTRY = fuzz_registry()


# -- the pure layer --------------------------------------------------------------------------------


# -- raw requests against a real server -------------------------------------------------------------

# 5xx allowed for a client's bytes: 501 (a transfer coding we do not implement, RFC 9112 6.1)
# and 505 (an HTTP major version other than 1, RFC 9110 15.6.6). Any other 5xx is a bug.
ALLOWED_STATUSES = {100, 200, 202, 204, 400, 401, 403, 404, 405, 406, 408, 411, 413, 414, 415, 431, 501, 505}
PYTHON_PATH = re.compile(rb'\.py\b|File "[^"]*", line \d+')
# sse_keepalive: a GET stream notices its half-closed client at the next keep-alive.
RAW_SETTINGS = Settings(body_timeout=0.5, idle_timeout=1.0, sse_keepalive=0.05)
HEADER_NAMES = ["Host", "Authorization", "Content-Type", "Accept", "Content-Length", "Transfer-Encoding",
                "Origin", "MCP-Protocol-Version", "Connection", "Expect", "Mcp-Session-Id"]
HEADER_VALUES = ["", "0", "-1", "chunked", "identity", "chunked, gzip", "close", "keep-alive", "100-continue",
                 "application/json", "text/event-stream", "*/*", "null", "http://evil.example", "localhost",
                 "Bearer ", "bearer x", "2025-03-26", "99999999999999999999", " \t ", "a\x80\xff"]
METHODS = ["POST", "GET", "OPTIONS", "HEAD", "PUT", "DELETE", "PRI", "CONNECT", "post", "P\x00ST"]
TARGETS = ["/mcp", "/mcp/", "/", "*", "//mcp", "/mcp?x=1", "http://127.0.0.1/mcp", "/%00", "/mcp#x", ""]


def _template(kind: str, port: int, token: str, session_id: str) -> bytes:
    ping = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    call = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}'
    head = [f"POST /mcp HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Authorization: Bearer {token}",
            "Content-Type: application/json", "Accept: application/json, text/event-stream"]
    if kind == "call":
        body, framing = call, [f"Content-Length: {len(call)}", "MCP-Protocol-Version: 2025-11-25"]
    elif kind == "chunked":
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(ping), ping)
        framing = ["Transfer-Encoding: chunked"]
    elif kind == "session-call":  # inside the open session
        body, framing = call, [f"Content-Length: {len(call)}", "MCP-Protocol-Version: 2025-11-25",
                               f"Mcp-Session-Id: {session_id}"]
    elif kind == "stream":  # the session's standalone SSE stream
        head[0], head[3:] = "GET /mcp HTTP/1.1", ["Accept: text/event-stream"]
        body, framing = b"", [f"Mcp-Session-Id: {session_id}", "MCP-Protocol-Version: 2025-11-25"]
    elif kind == "batch":
        body = b"[" + ping + b"," + call + b"]"
        framing = [f"Content-Length: {len(body)}", "MCP-Protocol-Version: 2025-03-26"]
    else:  # a CORS preflight
        head[0] = "OPTIONS /mcp HTTP/1.1"
        body, framing = b"", ["Origin: http://localhost:5173", "Access-Control-Request-Method: POST"]
    return ("\r\n".join(head + framing) + "\r\n\r\n").encode("latin-1") + body


@st.composite
def mutated_requests(draw: st.DrawFn, port: int, token: str, session_id: str) -> bytes:
    """A valid request with 1-4 random edits to its bytes, header lines, method or target."""
    kinds = ["call", "chunked", "batch", "preflight", "session-call", "stream"]
    data = _template(draw(st.sampled_from(kinds)), port, token, session_id)
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["flip", "insert", "delete", "header", "method", "target"]))
        at = draw(st.integers(0, len(data)))
        if edit == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
        elif edit == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=8) | st.sampled_from([b"\r\n", b"\r\n\r\n", b":", b" ", b"\n"])) + data[at:]
        elif edit == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 16)):]
        elif edit == "header":
            name = draw(st.sampled_from(HEADER_NAMES) | st.text("abcXYZ-_!~:", min_size=0, max_size=8))
            value = draw(st.sampled_from(HEADER_VALUES) | st.text(st.characters(max_codepoint=255), max_size=12))
            line_end = data.find(b"\r\n") + 2 if b"\r\n" in data else 0
            data = data[:line_end] + f"{name}: {value}\r\n".encode("latin-1") + data[line_end:]
        else:
            parts = data.split(b" ", 2)
            if len(parts) == 3:
                if edit == "method":
                    parts[0] = draw(st.sampled_from(METHODS) | st.text("ABCPOST", min_size=1, max_size=7)).encode("latin-1")
                else:
                    parts[1] = draw(st.sampled_from(TARGETS) | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=10)).encode("latin-1")
                data = b" ".join(parts)
    return data


def exchange_raw(port: int, data: bytes) -> bytes:
    """Send, half-close (so no case waits on a timeout), read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                pytest.fail(f"the server neither answered nor closed within 5 s (a hang): {data[:300]!r}")
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def split_responses(raw: bytes, head_requests: bool) -> list[int]:
    """The statuses of the responses in ``raw``; fails on anything that is not well framed.

    ``head_requests``: some request was a HEAD, whose answer has a Content-Length but no body
    (RFC 9110 9.3.2), so a response directly followed by the next one (or the end) is fine.
    """
    statuses = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, f"a truncated response head: {raw[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        match = re.fullmatch(r"HTTP/1\.1 (\d{3}) [^\r\n]*", lines[0])
        assert match, f"not a status line: {lines[0]!r}"
        status = int(match.group(1))
        lengths = [line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("content-length:")]
        if any(line.lower().replace(" ", "") == "transfer-encoding:chunked" for line in lines[1:]):
            # Only an SSE stream is chunked; one the server ended because the client left
            # may stop after any whole chunk, but only at the end of what was received.
            assert status == 200 and not lengths and b"text/event-stream" in head.lower(), head
            statuses.append(status)
            raw = _after_chunked(rest)
            continue
        assert status == 204 or status < 200 or len(lengths) == 1, head
        length = 0 if status == 204 or status < 200 else int(lengths[0])
        if head_requests and (not rest or rest.startswith(b"HTTP/1.1 ")):
            length = 0
        assert len(rest) >= length, f"a body cut short: {head!r}"
        statuses.append(status)
        raw = rest[length:]
    return statuses


def _after_chunked(data: bytes) -> bytes:
    """What follows a chunked body (b"" when the stream was cut after a whole chunk)."""
    for _ in range(100_000):  # bounded: every pass consumes at least one chunk
        size_line, sep, data = data.partition(b"\r\n")
        if not sep:
            assert not size_line, f"a chunk-size line cut short: {size_line[:100]!r}"
            return b""
        assert re.fullmatch(rb"[0-9a-f]+", size_line), f"a bad chunk-size line: {size_line[:100]!r}"
        size = int(size_line, 16)
        if size == 0:
            assert data.startswith(b"\r\n"), f"no CRLF after the last chunk: {data[:100]!r}"
            return data[2:]
        assert len(data) >= size + 2 and data[size:size + 2] == b"\r\n", f"a chunk cut short: {data[:100]!r}"
        data = data[size + 2:]
    raise AssertionError("too many chunks")


class _Crashes(logging.Handler):
    """Records logged with an exception that is not a client hanging up."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and not isinstance(record.exc_info[1], OSError):
            self.records.append(record)


@pytest.fixture
def leak_exempt(request: pytest.FixtureRequest) -> set[int]:
    """The shared leak check (conftest) tolerates this module's server, checked at its teardown."""
    if "fuzz_server" in request.fixturenames:
        return {request.getfixturevalue("fuzz_server")[0].port}
    return set()


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[tuple[LoopbackServer, _Crashes]]:
    logger = logging.getLogger("loopback")
    crashes, level = _Crashes(), logger.level
    logger.addHandler(crashes)
    logger.setLevel(logging.DEBUG)  # an unexpected handler exception is logged at DEBUG only
    srv = LoopbackServer(0, registry=fuzz_registry(), settings=RAW_SETTINGS).start()
    opener = Client(srv.port, srv.token)
    try:
        srv.fuzz_session = opener.open_session()  # type: ignore[attr-defined]
        opener.close()
        yield srv, crashes
    finally:
        srv.close()
        logger.removeHandler(crashes)
        logger.setLevel(level)
        assert wait_for(lambda: not any(t.name.startswith(f"loopback-mcp:{srv.port}") for t in _loopback_threads()), 5)


def assert_serves(srv: LoopbackServer) -> None:
    client = Client(srv.port, srv.token)
    try:
        assert client.call_tool("add", {"a": 2, "b": 3})["result"]["content"] == [{"type": "text", "text": "5"}]
    finally:
        client.close()


def test_mutated_raw_requests_never_break_the_server(fuzz_server: tuple[LoopbackServer, _Crashes]) -> None:
    srv, crashes = fuzz_server
    token = srv.token.encode()
    package_dir = os.path.dirname(loopback.__file__).encode()

    # Inner @given: the server and the final check wrap the whole run, not each example.
    @fuzz_settings(300)
    @given(data=mutated_requests(srv.port, srv.token, srv.fuzz_session))  # type: ignore[attr-defined]
    def one_request(data: bytes) -> None:
        crashes.records.clear()
        raw = exchange_raw(srv.port, data)
        assert token not in raw, "the token is in a response"
        assert b"Traceback" not in raw and package_dir not in raw
        assert not PYTHON_PATH.search(raw), raw[:300]
        head_requests = bool(re.search(rb"(^|\n)HEAD ", data))
        for status in split_responses(raw, head_requests):
            assert status in ALLOWED_STATUSES, (status, raw[:300])
        assert not crashes.records, [r.getMessage() for r in crashes.records]

    one_request()
    assert srv.serving
    assert_serves(srv)


def test_the_server_still_serves_after_the_fuzzing(fuzz_server: tuple[LoopbackServer, _Crashes]) -> None:
    srv, crashes = fuzz_server
    assert_serves(srv)
    assert not crashes.records
