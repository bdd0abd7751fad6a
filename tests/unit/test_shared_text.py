"""jsonrpc.encode escapes a large text that a result holds twice (content and
structuredContent, one object) once: the bytes are those of the plain encoding."""

from __future__ import annotations

import json

from loopback import jsonrpc


def _message(text: str) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": text}], "isError": False,
                                                    "structuredContent": {"result": text}}}


def test_shared_text_bytes_are_the_plain_encoding() -> None:
    for text in ("x" * jsonrpc.SHARED_TEXT_MIN, 'é"\\\n\u2028\x00' * 10_000, "short"):
        message = _message(text)
        assert jsonrpc.encode(message) == jsonrpc._encode(message)
        assert json.loads(jsonrpc.encode(message)) == message


def test_lone_surrogate_still_valid_json() -> None:
    text = "\ud800" + "a" * jsonrpc.SHARED_TEXT_MIN
    encoded = jsonrpc.encode(_message(text))
    assert json.loads(encoded)["result"]["structuredContent"]["result"] == text


def test_equal_but_distinct_strings_and_the_placeholder_itself() -> None:
    text = "y" * jsonrpc.SHARED_TEXT_MIN
    other = "".join(["y"] * jsonrpc.SHARED_TEXT_MIN)  # equal, not the same object
    message = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": text}],
                                                     "structuredContent": {"result": other}}}
    assert jsonrpc.encode(message) == jsonrpc._encode(message)
    # A result that happens to contain the placeholder text gets the plain encoding.
    sneaky = _message("z" * jsonrpc.SHARED_TEXT_MIN)
    sneaky["result"]["structuredContent"]["other"] = jsonrpc._PLACEHOLDER  # type: ignore[index]
    assert json.loads(jsonrpc.encode(sneaky)) == sneaky
