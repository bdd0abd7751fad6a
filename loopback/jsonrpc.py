"""JSON-RPC 2.0 framing: decode a body, classify messages, build responses, encode.

Owns: the error codes, the shape rules of requests, notifications and responses,
and the one JSON encoding every response goes through.
Must not know: MCP methods, HTTP, sockets or threads.
"""

from __future__ import annotations

import json
from typing import Any, Union

from .errors import ProtocolError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Codes the MCP 2026-07-28 schema adds (basic/index "Error Codes").
HEADER_MISMATCH = -32020
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022

RequestId = Union[str, int]

# What a client may legally send: a request, a notification, or a response to one
# of our own requests.
REQUEST = "request"
NOTIFICATION = "notification"
RESPONSE = "response"


class JsonRpcError(ProtocolError):
    """An error that becomes a JSON-RPC error object (HTTP 400 when it refuses a whole body)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message, status=400, code=code, data=data)


class MissingClientCapability(JsonRpcError):
    """-32021: the request needs a client capability its ``_meta`` did not declare.

    Raised through a tool call (``tools.Tool.call`` lets it pass) it becomes the
    request's error answer, HTTP 400.
    """

    def __init__(self, *capabilities: str) -> None:
        super().__init__(
            MISSING_REQUIRED_CLIENT_CAPABILITY,
            f"Missing required client capability: {', '.join(capabilities)}",
            {"requiredCapabilities": {name: {} for name in capabilities}},
        )


def _reject_constant(name: str) -> None:
    # NaN and Infinity are not JSON (RFC 8259); Python accepts them by default.
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def decode(body: bytes) -> Any:
    """Parse a request body; raise JsonRpcError(PARSE_ERROR) on anything that is not JSON."""
    # Tolerate a BOM; reject invalid UTF-8. (Same as body.decode("utf-8-sig"), whose
    # codec is written in Python, at a fifth of the cost.)
    if body[:3] == b"\xef\xbb\xbf":
        body = body[3:]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonRpcError(PARSE_ERROR, "Parse error: body is not valid UTF-8") from None
    try:
        return _decoder.decode(text)
    except RecursionError:
        raise JsonRpcError(PARSE_ERROR, "Parse error: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, oversized integers, NaN/Infinity
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise JsonRpcError(PARSE_ERROR, f"Parse error: {reason}") from None


def _valid_id(value: Any) -> bool:
    # MCP narrows JSON-RPC: an id is a string or an integer, never null (bool is an int in Python).
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def classify(message: Any) -> str:
    """Return REQUEST, NOTIFICATION or RESPONSE; raise JsonRpcError(INVALID_REQUEST) otherwise."""
    if not isinstance(message, dict):
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: a message must be a JSON object")
    if message.get("jsonrpc") != "2.0":
        raise JsonRpcError(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"')
    if "method" in message:
        if not isinstance(message["method"], str):
            raise JsonRpcError(INVALID_REQUEST, 'Invalid Request: "method" must be a string')
        params = message.get("params")
        if params is not None and not isinstance(params, dict):
            raise JsonRpcError(INVALID_REQUEST, 'Invalid Request: "params" must be an object')
        if "id" not in message:
            return NOTIFICATION
        if not _valid_id(message["id"]):
            raise JsonRpcError(INVALID_REQUEST, 'Invalid Request: "id" must be a string or an integer')
        return REQUEST
    if ("result" in message) != ("error" in message) and "id" in message:
        return RESPONSE
    raise JsonRpcError(INVALID_REQUEST, "Invalid Request: neither a request, a notification nor a response")


def request_id(message: Any) -> RequestId | None:
    """The id to answer an invalid message with: its own when usable, else null."""
    value = message.get("id") if isinstance(message, dict) else None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return value
    return None


def result(id: RequestId | None, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "result": value}


def error(id: RequestId | None, exc: ProtocolError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "error": exc.to_object()}


def notification(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_ascii_encoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def encode(message: Any) -> bytes:
    """Compact UTF-8 JSON; raises TypeError/ValueError for what JSON cannot hold."""
    text = _encoder.encode(message)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (legal in a JSON string escape, e.g. an id "\ud800") has no
        # UTF-8 form: send it escaped, as it came.
        return _ascii_encoder.encode(message).encode("ascii")
