"""Property-based fuzzing (hypothesis, test-only) of the pure layers:

- ``protocol.handle_payload`` over random JSON values and JSON-RPC-shaped messages: it raises
  nothing but ``JsonRpcError``, and every answer is encodable, says ``"jsonrpc": "2.0"``,
  echoes the right id and uses only error codes a client mistake may earn.
- ``jsonrpc.decode`` over random bytes: nothing but ``JsonRpcError(-32700)``; and what
  ``encode`` writes, ``decode`` reads back.

The registry, strategies and settings here are shared with the raw-request fuzzing of a real
server (``tests/integration/test_fuzz_http.py``). Bounded for CI: ``LOOPBACK_FUZZ_EXAMPLES=N``
sets every test's example count for long runs; with ``CI`` set the runs are derandomized
(reproducible); otherwise a failure prints the ``@reproduce_failure`` blob, and
``pytest --hypothesis-seed=N`` replays a run. Hypothesis keeps its example database in
``.hypothesis/``, which it git-ignores itself.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Optional

import pytest

hypothesis = pytest.importorskip("hypothesis")  # test-only dependency (tox deps)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import loopback  # noqa: E402
from loopback import jsonrpc, protocol  # noqa: E402
from loopback.auth import Grant  # noqa: E402
from loopback.context import LOG_LEVELS, ClientState  # noqa: E402
from loopback.jsonrpc import JsonRpcError  # noqa: E402
from loopback.settings import Settings  # noqa: E402
from loopback.tools import ToolRegistry  # noqa: E402


_OVERRIDE = int(os.environ.get("LOOPBACK_FUZZ_EXAMPLES", "0") or 0)


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=_OVERRIDE or examples,
        deadline=None,  # a 2-core CI box has slow outliers; the example count bounds the time
        derandomize=bool(os.environ.get("CI")),
        print_blob=True,
        # Fixtures here (the leak check, the shared server) are meant per test, not per example.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# -- a small registry ----------------------------------------------------------------------------


def fuzz_registry() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool
    def add(a: int, b: int = 2) -> int:
        """Add two integers."""
        return a + b

    @registry.tool
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    @registry.tool
    def mirror(data: dict, scale: float = 1.0) -> dict:  # type: ignore[type-arg]
        """Return the object (structured content of any shape)."""
        return {"data": data, "scale": scale}

    @registry.tool
    def anything(ctx: loopback.Context, value: Any = None) -> Any:
        """Return any JSON value; takes the request context too."""
        return value

    @registry.tool(owner_only=True)
    def secret() -> str:
        """Owner only."""
        return "s"

    return registry


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


@st.composite
def params_for(draw: st.DrawFn, method: str) -> Any:
    """Mostly plausible params for the real methods, sometimes anything at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.none() | json_values)
    if method == "tools/call":
        arguments = draw(st.dictionaries(st.sampled_from(ARGUMENT_NAMES) | st.text(max_size=5), json_values, max_size=4)
                         | json_values)
        extra = draw(st.fixed_dictionaries({}, optional={
            "arguments": st.just(arguments), "_meta": st.dictionaries(st.just("progressToken"), ids) | json_values}))
        return {"name": draw(st.sampled_from(TOOL_NAMES) | json_values), **extra}
    if method == "initialize":
        return draw(st.fixed_dictionaries({}, optional={
            "protocolVersion": st.sampled_from(VERSIONS) | json_values,
            "capabilities": st.just({}) | json_values,
            "clientInfo": st.just({"name": "f", "version": "1"}) | json_values}))
    if method == "logging/setLevel":
        return {"level": draw(st.sampled_from(LOG_LEVELS) | json_values)}
    if method == "tools/list":
        return draw(st.fixed_dictionaries({}, optional={"cursor": st.sampled_from(["bzE=", "bzA=", "x"]) | json_values}))
    if method == "notifications/cancelled":
        return {"requestId": draw(ids), "reason": draw(st.text(max_size=5))}
    return draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4))


@st.composite
def messages(draw: st.DrawFn) -> Any:
    """JSON-RPC-shaped objects: usually nearly valid, each part sometimes wrong or missing."""
    message: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        message["jsonrpc"] = "2.0" if draw(st.integers(0, 5)) else draw(json_values)
    kind = draw(st.sampled_from(["request", "request", "request", "notification", "response"]))
    if kind == "response":
        message["id"] = draw(ids)
        for key in draw(st.sampled_from([["result"], ["error"], ["result", "error"], []])):
            message[key] = draw(json_values)
        return message
    method = draw(st.sampled_from(REAL_METHODS) | st.text(max_size=12) | json_values)
    if draw(st.integers(0, 9)):
        message["method"] = method
    if kind == "request":
        message["id"] = draw(st.integers(-(2**63), 2**63) | st.text(max_size=8)) if draw(st.integers(0, 4)) else draw(ids)
    if draw(st.booleans()):
        message["params"] = draw(params_for(method if isinstance(method, str) else ""))
    return message


payloads = st.one_of(messages(), st.lists(messages(), max_size=6), json_values)


# -- an independent reading of the rules, to check the answers against -------------------------------


def _valid_id(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _kind(message: Any) -> str:
    """"request", "notification", "response" or "invalid" (JSON-RPC 2.0 as narrowed by MCP)."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return "invalid"
    if "method" in message:
        if not isinstance(message["method"], str) or not (message.get("params") is None or isinstance(message["params"], dict)):
            return "invalid"
        if "id" not in message:
            return "notification"
        return "request" if _valid_id(message["id"]) else "invalid"
    if "id" in message and (("result" in message) != ("error" in message)):
        return "response"
    return "invalid"


def _check_response(answer: Any, message: Any, kind: str) -> None:
    assert isinstance(answer, dict) and answer.get("jsonrpc") == "2.0", answer
    assert set(answer) in ({"jsonrpc", "id", "result"}, {"jsonrpc", "id", "error"}), answer
    if kind == "request":
        assert answer["id"] == message["id"] and type(answer["id"]) is type(message["id"])
        if message["method"] not in protocol.METHODS:
            assert answer["error"]["code"] == jsonrpc.METHOD_NOT_FOUND
    else:
        assert kind == "invalid"
        assert answer["error"]["code"] == jsonrpc.INVALID_REQUEST
        usable = message.get("id") if isinstance(message, dict) else None
        assert answer["id"] == (usable if _valid_id(usable) else None)
    if "error" in answer:
        error = answer["error"]
        assert error["code"] in ANSWER_CODES, error
        assert isinstance(error["message"], str) and error["message"]
    else:
        result = answer["result"]
        assert isinstance(result, dict)
        if message["method"] == "tools/call":
            assert isinstance(result.get("isError"), bool) and isinstance(result.get("content"), list)


REGISTRY = fuzz_registry()


# -- the pure layer --------------------------------------------------------------------------------


@fuzz_settings(400)
@given(payload=payloads, header=st.sampled_from([None, *VERSIONS]), grant=st.sampled_from([None, GUEST]))
def test_handle_payload_answers_every_payload_by_the_rules(payload: Any, header: Optional[str], grant: Optional[Grant]) -> None:
    ctx = protocol.RequestContext(registry=REGISTRY, protocol_version_header=header, grant=grant, session=ClientState())
    initialize = isinstance(payload, dict) and payload.get("method") == "initialize"
    version = protocol.HEADERLESS_VERSION if header is None or initialize else header.strip()
    try:
        answer = protocol.handle_payload(payload, ctx)
    except JsonRpcError as exc:
        # A body refused as a whole: a bad version header, a batch where none are allowed,
        # an empty batch, initialize in a batch, or a lone invalid message.
        assert exc.code == jsonrpc.INVALID_REQUEST, (exc.code, exc.message)
        batch_refused = isinstance(payload, list) and (
            version not in protocol.BATCH_VERSIONS or not payload
            or any(isinstance(m, dict) and m.get("method") == "initialize" for m in payload))
        assert version not in protocol.SUPPORTED_VERSIONS or batch_refused or (
            not isinstance(payload, list) and _kind(payload) == "invalid"), exc.message
        jsonrpc.encode(jsonrpc.error(jsonrpc.request_id(payload), exc))  # what the transport sends
        return
    assert version in protocol.SUPPORTED_VERSIONS
    if isinstance(payload, list):
        answered = [m for m in payload if _kind(m) in ("request", "invalid")]
        if not answered:
            assert answer is None
        else:
            assert isinstance(answer, list) and len(answer) == len(answered)
            for item, message in zip(answer, answered):
                _check_response(item, message, _kind(message))
    else:
        kind = _kind(payload)
        assert kind in ("request", "notification", "response")
        if kind == "request":
            _check_response(answer, payload, kind)
        else:
            assert answer is None
    encoded = jsonrpc.encode(answer) if answer is not None else None
    if encoded is not None:
        assert jsonrpc.decode(encoded) == answer


@fuzz_settings(500)
@given(body=st.binary(max_size=200)
       | st.text(max_size=50).map(lambda s: s.encode("utf-8", "surrogatepass"))
       | json_values.map(lambda v: jsonrpc.encode(v)).flatmap(
           lambda b: st.tuples(st.integers(0, len(b)), st.binary(max_size=3)).map(lambda t: b[:t[0]] + t[1] + b[t[0] + 1:])))
def test_decode_raises_only_parse_errors(body: bytes) -> None:
    try:
        jsonrpc.decode(body)
    except JsonRpcError as exc:
        assert exc.code == jsonrpc.PARSE_ERROR
        assert exc.message.startswith("Parse error")


@fuzz_settings(200)
@given(value=json_values)
def test_decode_reads_back_what_encode_writes(value: Any) -> None:
    assert jsonrpc.decode(jsonrpc.encode(value)) == value


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


class _Crashes(logging.Handler):
    """Records logged with an exception that is not a client hanging up."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and not isinstance(record.exc_info[1], OSError):
            self.records.append(record)


