"""JSON-RPC 2.0 framing: decode a body, classify messages, build responses, encode.

Owns: the error codes, the shape rules of requests, notifications and responses,
and the one JSON encoding every response goes through (a large text a result holds
twice, as content and structuredContent, escaped once).
Must not know: MCP methods, HTTP, sockets or threads.
"""

from __future__ import annotations

import json
import os
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
_scan: Any = getattr(_decoder, "scan_once")  # noqa: B009 (typeshed does not declare it)


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
    # The usual body, one JSON value from its first character to its last, straight
    # through the scanner; anything else (whitespace around it, an error) the general
    # way, which gives the same value or raises the same error.
    try:
        value, end = _scan(text, 0)
    except (StopIteration, ValueError, RecursionError):
        pass
    else:
        if end == len(text):
            return value
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
        request_id = message["id"]  # MCP narrows JSON-RPC: a string or an integer, never null or a bool
        if type(request_id) is not str and type(request_id) is not int and not _valid_id(request_id):
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
    """Compact UTF-8 JSON; raises TypeError/ValueError for what JSON cannot hold.

    A large string that a result holds twice, as one object (a tool's text that is both
    its content and its ``structuredContent``), is escaped once and its bytes placed at
    both places.
    """
    if type(message) is dict:
        result = message.get("result")
        if type(result) is dict:
            shared = _shared_text(result)
            if shared is not None:
                return _encode_shared(message, result, shared)
    return _encode(message)


# The C encoder ``_encoder.encode`` builds for every call, built once: no circular
# check (it needs a fresh dict each time); a cycle then hits the recursion limit, and
# anything that does goes again the checked way, which raises what it always raised.
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_c_encode: Any = None if _c_make_encoder is None else _c_make_encoder(
    None, _encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)


def _encode(message: Any) -> bytes:
    if _c_encode is None:
        text = _encoder.encode(message)
    else:
        try:
            text = "".join(_c_encode(message, 0))
        except RecursionError:
            text = _encoder.encode(message)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (legal in a JSON string escape, e.g. an id "\ud800") has no
        # UTF-8 form: send it escaped, as it came.
        return _ascii_encoder.encode(message).encode("ascii")


SHARED_TEXT_MIN = 1 << 15  # shorter strings cost less to escape twice than to share
_PLACEHOLDER = "\x00loopback-shared-text-" + os.urandom(8).hex()  # no client sends this
_PLACEHOLDER_JSON = _encode(_PLACEHOLDER)


def _shared_text(result: dict[str, Any]) -> Any:
    """The large str that is both a text block of ``content`` and a value of
    ``structuredContent`` (the same object), or None."""
    structured = result.get("structuredContent")
    content = result.get("content")
    if type(structured) is not dict or type(content) is not list:
        return None
    for value in structured.values():
        if type(value) is str and len(value) >= SHARED_TEXT_MIN:
            for block in content:
                if type(block) is dict and block.get("text") is value:
                    return value
    return None


def _encode_shared(message: dict[str, Any], result: dict[str, Any], shared: str) -> bytes:
    placeholder = _PLACEHOLDER
    content = [{**block, "text": placeholder} if type(block) is dict and block.get("text") is shared else block
               for block in result["content"]]
    structured = {key: placeholder if value is shared else value for key, value in result["structuredContent"].items()}
    skeleton = _encode({**message, "result": {**result, "content": content, "structuredContent": structured}})
    parts = skeleton.split(_PLACEHOLDER_JSON)
    expected = sum(block is not old for block, old in zip(content, result["content"])) + sum(
        value is shared for value in result["structuredContent"].values())
    if len(parts) != expected + 1:
        return _encode(message)  # the placeholder met elsewhere: the plain way
    return _encode(shared).join(parts)
