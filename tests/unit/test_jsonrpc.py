"""JSON-RPC 2.0 framing: decode, classify, build and encode, without any I/O."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from loopback import jsonrpc
from loopback.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    NOTIFICATION,
    PARSE_ERROR,
    REQUEST,
    RESPONSE,
    JsonRpcError,
)


def parse_error(body: bytes) -> JsonRpcError:
    with pytest.raises(JsonRpcError) as info:
        jsonrpc.decode(body)
    assert info.value.code == PARSE_ERROR
    assert info.value.message.startswith("Parse error")
    return info.value


# -- decode ------------------------------------------------------------------------------


def test_error_codes_are_the_standard_ones() -> None:
    assert (PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR) == (
        -32700, -32600, -32601, -32602, -32603)


def test_decode_valid_json() -> None:
    assert jsonrpc.decode(b'{"jsonrpc":"2.0","id":1,"method":"ping"}') == {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert jsonrpc.decode(b' [1, 2.5, "x", null, true] ') == [1, 2.5, "x", None, True]
    assert jsonrpc.decode('{"text":"héllo ✓"}'.encode()) == {"text": "héllo ✓"}
    assert jsonrpc.decode(b'"\\ud800"') == "\ud800"  # a lone surrogate escape is still JSON


def test_decode_tolerates_a_bom() -> None:
    assert jsonrpc.decode(b'\xef\xbb\xbf{"a":1}') == {"a": 1}


@pytest.mark.parametrize("body", [b'{"a":"\xff"}', b"\xff\xfe{\x00}\x00", b'"\xc3"', b'"\xed\xa0\x80"'],
                         ids=["invalid-byte", "utf-16", "truncated", "encoded-surrogate"])
def test_decode_rejects_invalid_utf8(body: bytes) -> None:
    assert "UTF-8" in parse_error(body).message


@pytest.mark.parametrize("body", [b"NaN", b"Infinity", b"-Infinity", b'{"x": NaN}', b"[1, Infinity]"])
def test_decode_rejects_nan_and_infinity(body: bytes) -> None:
    parse_error(body)


@pytest.mark.parametrize("body", [b"", b" ", b"{", b'{"a":1,}', b"{'a':1}", b"{}x", b"[1 2]", b"undefined", b'"\x01"'])
def test_decode_rejects_malformed_json(body: bytes) -> None:
    parse_error(body)


@pytest.mark.parametrize("depth", [10_000, 200_000])
def test_deep_nesting_is_a_parse_error_not_a_recursion_error(depth: int) -> None:
    parse_error(b"[" * depth + b"]" * depth)
    parse_error(b'{"a":' * depth + b"1" + b"}" * depth)


def test_moderate_nesting_is_fine() -> None:
    assert jsonrpc.decode(b"[" * 100 + b"]" * 100) is not None


def test_huge_integers_are_a_parse_error() -> None:
    limit = sys.get_int_max_str_digits() or 4300
    assert jsonrpc.decode(b"9" * limit) == int("9" * limit)
    parse_error(b"9" * (limit + 1))
    parse_error(b'{"jsonrpc":"2.0","id":' + b"1" * 5000 + b',"method":"ping"}')


# -- classify ------------------------------------------------------------------------------


@pytest.mark.parametrize("message, kind", [
    ({"jsonrpc": "2.0", "id": 1, "method": "ping"}, REQUEST),
    ({"jsonrpc": "2.0", "id": "abc", "method": "ping", "params": {}}, REQUEST),
    ({"jsonrpc": "2.0", "id": 0, "method": "ping", "params": None}, REQUEST),
    ({"jsonrpc": "2.0", "id": -5, "method": "x"}, REQUEST),
    ({"jsonrpc": "2.0", "id": "", "method": "x"}, REQUEST),
    ({"jsonrpc": "2.0", "method": "notifications/initialized"}, NOTIFICATION),
    ({"jsonrpc": "2.0", "method": "n", "params": {"a": 1}}, NOTIFICATION),
    ({"jsonrpc": "2.0", "id": 1, "result": {}}, RESPONSE),
    ({"jsonrpc": "2.0", "id": 1, "result": None}, RESPONSE),
    ({"jsonrpc": "2.0", "id": "x", "error": {"code": -1, "message": "no"}}, RESPONSE),
    ({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse"}}, RESPONSE),
])
def test_classify(message: dict[str, Any], kind: str) -> None:
    assert jsonrpc.classify(message) == kind


@pytest.mark.parametrize("message", [
    None, 1, "ping", [], [{"jsonrpc": "2.0", "method": "x"}],
    {},
    {"id": 1, "method": "ping"},
    {"jsonrpc": "1.0", "id": 1, "method": "ping"},
    {"jsonrpc": 2.0, "id": 1, "method": "ping"},
    {"jsonrpc": "2.0", "id": 1, "method": 5},
    {"jsonrpc": "2.0", "id": 1, "method": None},
    {"jsonrpc": "2.0", "id": 1, "method": "x", "params": [1, 2]},
    {"jsonrpc": "2.0", "id": 1, "method": "x", "params": "a"},
    {"jsonrpc": "2.0", "method": "x", "params": 3},
    {"jsonrpc": "2.0", "id": 1.5, "method": "ping"},
    {"jsonrpc": "2.0", "id": 1.0, "method": "ping"},
    {"jsonrpc": "2.0", "id": True, "method": "ping"},
    {"jsonrpc": "2.0", "id": False, "method": "ping"},
    {"jsonrpc": "2.0", "id": None, "method": "ping"},
    {"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"},
    {"jsonrpc": "2.0", "id": [1], "method": "ping"},
    {"jsonrpc": "2.0", "id": 1},
    {"jsonrpc": "2.0", "result": {}},
    {"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": 1, "message": "x"}},
], ids=lambda m: json.dumps(m, default=str)[:60])
def test_classify_rejects_invalid_messages(message: Any) -> None:
    with pytest.raises(JsonRpcError) as info:
        jsonrpc.classify(message)
    assert info.value.code == INVALID_REQUEST


@pytest.mark.parametrize("message, expected", [
    ({"id": 3}, 3), ({"id": "a"}, "a"), ({"id": 1.5}, None), ({"id": True}, None), ({"id": None}, None),
    ({}, None), ([{"id": 1}], None), ("x", None),
])
def test_request_id_is_only_a_usable_id(message: Any, expected: Any) -> None:
    assert jsonrpc.request_id(message) == expected


# -- build and encode ------------------------------------------------------------------


def test_builders() -> None:
    assert jsonrpc.result(1, {"a": 1}) == {"jsonrpc": "2.0", "id": 1, "result": {"a": 1}}
    assert jsonrpc.error(None, JsonRpcError(INVALID_REQUEST, "bad")) == {
        "jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "bad"}}
    assert jsonrpc.error("x", JsonRpcError(INVALID_PARAMS, "bad", {"field": "a"}))["error"] == {
        "code": -32602, "message": "bad", "data": {"field": "a"}}
    assert jsonrpc.notification("notifications/x") == {"jsonrpc": "2.0", "method": "notifications/x"}
    assert jsonrpc.notification("n", {"a": 1})["params"] == {"a": 1}
    exc = JsonRpcError(METHOD_NOT_FOUND, "Method not found: x")
    assert str(exc) == "Method not found: x" and exc.data is None


def test_encode_is_compact_utf8() -> None:
    encoded = jsonrpc.encode(jsonrpc.result(1, {"text": "héllo ✓", "n": [1, 2]}))
    assert encoded == '{"jsonrpc":"2.0","id":1,"result":{"text":"héllo ✓","n":[1,2]}}'.encode()
    assert json.loads(encoded) == jsonrpc.decode(encoded)


def test_encode_escapes_a_lone_surrogate() -> None:
    encoded = jsonrpc.encode(jsonrpc.result("\ud800", {"t": "a\udfffb"}))
    encoded.decode("utf-8")  # valid UTF-8
    assert jsonrpc.decode(encoded) == {"jsonrpc": "2.0", "id": "\ud800", "result": {"t": "a\udfffb"}}


@pytest.mark.parametrize("value, error", [
    (float("nan"), ValueError), (float("inf"), ValueError), (object(), TypeError), ({1, 2}, TypeError), (b"x", TypeError),
])
def test_encode_refuses_what_json_cannot_hold(value: Any, error: type) -> None:
    with pytest.raises(error):
        jsonrpc.encode(jsonrpc.result(1, value))


def test_round_trip() -> None:
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a", "arguments": {"x": [1, 2.5, None]}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
    ]
    for message in messages:
        assert jsonrpc.decode(jsonrpc.encode(message)) == message
