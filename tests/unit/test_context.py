"""Context: progress, logging, cancellation and the header view a tool gets."""

from __future__ import annotations

from typing import Any

import pytest

from loopback.context import LOG_LEVELS, Context, ClientState, ToolHeaders
from loopback.http11 import Headers


def collecting() -> tuple[list[dict[str, Any]], Any]:
    sent: list[dict[str, Any]] = []
    return sent, sent.append


def test_progress_is_sent_only_with_a_token_and_a_stream() -> None:
    sent, notify = collecting()
    Context(progress_token=None, notify=notify).progress(1, 2)
    Context(progress_token="p", notify=None).progress(1, 2)
    assert sent == []
    ctx = Context(progress_token="p", notify=notify)
    ctx.progress(1)
    ctx.progress(2, 4, "half")
    assert sent == [
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "p", "progress": 1}},
        {"jsonrpc": "2.0", "method": "notifications/progress",
         "params": {"progressToken": "p", "progress": 2, "total": 4, "message": "half"}},
    ]


def test_log_honours_the_level_the_client_set() -> None:
    sent, notify = collecting()
    session = ClientState()
    ctx = Context(notify=notify, session=session)
    ctx.log("error", "before any setLevel")
    assert sent == []  # the client never asked for logs
    session.log_level = "warning"
    ctx.log("info", "dropped")
    ctx.log("warning", "kept", logger="db")
    ctx.log("emergency", {"structured": True})
    assert [m["params"] for m in sent] == [
        {"level": "warning", "data": "kept", "logger": "db"},
        {"level": "emergency", "data": {"structured": True}},
    ]


def test_log_rejects_unknown_levels_even_without_a_stream() -> None:
    with pytest.raises(ValueError, match="unknown log level 'verbose'"):
        Context().log("verbose", "x")
    assert LOG_LEVELS[0] == "debug" and LOG_LEVELS[-1] == "emergency"


def test_a_failing_notify_never_fails_the_tool() -> None:
    def broken(message: dict[str, Any]) -> None:
        raise BrokenPipeError

    Context(progress_token=1, notify=broken).progress(1)


def test_state_cancel_flags_only_the_matching_id_of_its_own_calls() -> None:
    alice, bob = ClientState(), ClientState()
    ctx = Context(request_id=7)
    alice.in_flight[7] = ctx
    assert bob.cancel(7) is False  # another principal's state never holds alice's calls
    assert alice.cancel(8) is False
    assert ctx.cancelled is False
    assert alice.cancel(7) is True
    assert ctx.cancelled is True


def test_tool_headers_hide_authorization_and_prefer_bound_values() -> None:
    request = Headers([("Authorization", "Bearer secret"), ("X-Session-Key", "claimed"), ("X-Other", "o")])
    headers = ToolHeaders(request, {"x-session-key": "bound", "x-agent": "a1"})
    assert headers["X-Session-Key"] == "bound"
    assert headers["x-other"] == "o"
    assert "authorization" not in headers and headers.get("Authorization") is None
    assert sorted(headers) == ["x-agent", "x-other", "x-session-key"]
    assert len(headers) == 3
    assert "secret" not in repr(headers)


def test_context_repr_and_owner_flag() -> None:
    ctx = Context(tool_name="t", request_id=1, scope="guest")
    assert ctx.is_owner is False
    assert repr(ctx) == "Context(tool='t', request_id=1, scope='guest')"
