"""calllog, pure: records from notes, their forms, the scrubbing of secrets, the figures."""

from __future__ import annotations

import json
import math
import random
import time
from typing import Any

import pytest

from loopback import calllog
from loopback.auth import TokenStore
from loopback.calllog import CallRecord, Note, Stats
from loopback.errors import HttpError
from loopback.jsonrpc import JsonRpcError
from loopback.settings import Settings


def _record(**fields: Any) -> CallRecord:
    base: dict[str, Any] = dict(time=1764443534.123456, principal="run-1", method="tools/call", name="add",
                                outcome="ok", status=200, code=None, duration_ms=0.812, bytes_in=87,
                                bytes_out=120, era="2025-11-25")
    base.update(fields)
    return CallRecord(**base)


def test_the_json_line_is_as_dict_in_compact_json() -> None:
    for record in (_record(), _record(name=None, code=-32602, outcome="error", principal='qu"ote\\'),
                   _record(status=None, era=None, method="m\u00e9thode", arguments={"text": "[redacted]"})):
        line = calllog.to_json(record)
        assert line.endswith("}\n") and line.isascii()
        assert json.loads(line) == record.as_dict()
        assert line == json.dumps(record.as_dict(), separators=(",", ":")) + "\n"


def test_the_readable_line() -> None:
    assert calllog.format_line(_record(), "19:12:14") == (
        "19:12:14 run-1 tools/call add -> ok 0.81 ms 87 B in 120 B out 2025-11-25")
    assert "-> error -32601 " in calllog.format_line(_record(outcome="error", code=-32601, name=None))
    assert "-> refused 401 " in calllog.format_line(_record(outcome="refused", status=401, method=None, name=None))
    assert "-> tool error " in calllog.format_line(_record(outcome="tool_error"))


def test_client_chosen_text_cannot_reach_a_terminal_raw() -> None:
    method, name = calllog.describe({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                     "params": {"name": "\x1b[2J" + "x" * 500}})
    assert method == "tools/call" and name is not None
    assert "\x1b" not in name and len(name) <= 123
    assert calllog.describe({"jsonrpc": "2.0", "id": 1, "method": "a\nb"})[0] == "a\\nb"


@pytest.mark.parametrize("payload, header, modern, era", [
    ({"method": "tools/list"}, "2025-06-18", False, "2025-06-18"),
    ({"method": "tools/list"}, None, False, "2025-03-26"),
    ({"method": "tools/list"}, "bogus", False, None),
    ({"method": "initialize", "params": {"protocolVersion": "2024-11-05"}}, "2025-11-25", False, "2024-11-05"),
    ({"method": "tools/call"}, "2026-07-28", True, "2026-07-28"),
])
def test_the_era(payload: Any, header: Any, modern: bool, era: Any) -> None:
    assert calllog.era_of(payload, header, modern) == era


def test_outcomes_from_notes() -> None:
    note = Note(time.time(), time.perf_counter())
    assert calllog.outcome_of(note) == ("dropped", None)
    note.status = 200
    note.request({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t"}}, None, False)
    note.answered({"jsonrpc": "2.0", "id": 1, "result": {"content": [], "isError": True}})
    note.resolve()
    assert calllog.outcome_of(note) == ("tool_error", None) and note.name == "t"
    note.answered([{"id": 1, "result": {}}, {"id": 2, "error": {"code": -32601, "message": "x"}}])
    note.resolve()
    assert calllog.outcome_of(note) == ("error", -32601)
    note.error = JsonRpcError(-32700, "Parse error")
    assert calllog.outcome_of(note) == ("error", -32700)
    note.error = HttpError(413, "too large")
    assert calllog.outcome_of(note) == ("refused", None)


def test_secrets_of_the_grant_are_scrubbed_from_logged_arguments() -> None:
    grant = TokenStore().issue(headers={"X-Session-Key": "s-123"}, label="r")
    payload = {"method": "tools/call", "params": {"name": "t", "arguments": {
        "a": "plain", "b": f"x{grant.token}y", "c": ["s-123", {"s-123": 1}]}}}
    settings = Settings(log_arguments="values", redact_arguments=lambda tool, args: args)
    shown = calllog.logged_arguments(settings, "tools/call", "t", payload, grant)
    assert shown == {"a": "plain", "b": "[redacted]", "c": ["[redacted]", {"[redacted]": 1}]}
    names = calllog.logged_arguments(Settings(log_arguments="names"), "tools/call", "t", payload, grant,
                                     lambda tool: ("a", "b"))
    assert names == ["a", "b", "(1 undeclared)"]
    assert calllog.logged_arguments(Settings(), "tools/call", "t", payload, grant) is None


@pytest.mark.parametrize("options, message", [
    ({"log_arguments": "values"}, "needs redact_arguments"),
    ({"log_arguments": "all"}, "log_arguments must be"),
    ({"audit_max_bytes": 100}, "audit_max_bytes"),
    ({"audit_backups": 0}, "audit_backups"),
    ({"audit_path": ""}, "audit_path"),
    ({"stats": 1}, "stats must be"),
    ({"redact_arguments": "no"}, "redact_arguments must be"),
])
def test_settings_refuse_bad_call_log_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**options)


def test_percentiles_are_within_two_percent_of_the_exact_ones() -> None:
    rng = random.Random(16)
    stats = Stats(0.0)
    durations = [rng.lognormvariate(-7, 1.5) for _ in range(5000)]
    for seconds in durations:
        stats.add_call("p", "tools/call", "t", "ok", seconds)
    ordered = sorted(durations)
    figures = stats.snapshot()["tools"]["t"]
    for key, fraction in (("p50_ms", 0.5), ("p95_ms", 0.95)):
        exact = ordered[math.ceil(fraction * len(ordered)) - 1] * 1000
        assert abs(figures[key] - exact) <= 0.02 * exact + 0.001, (key, figures[key], exact)
    assert figures["calls"] == 5000 and figures["max_ms"] == round(max(durations) * 1000, 3)


def test_the_figures_stay_bounded_whatever_names_clients_send() -> None:
    stats = Stats(0.0)
    for number in range(2000):
        stats.add_call("p", f"m{number}", f"tool{number}", "error", 0.001)  # unknown methods and tools
    snapshot = stats.snapshot()
    assert len(snapshot["methods"]) == calllog.MAX_KEYS + 1 and snapshot["methods"][calllog.OTHER]["calls"] > 0
    assert snapshot["tools"] == {}  # no tool answered: no tool name is a key
    assert snapshot["calls"] == 2000 and snapshot["errors"] == 2000


def test_the_summary_table() -> None:
    stats = Stats(0.0)
    for outcome in ("ok", "ok", "tool_error"):
        stats.add_call("run", "tools/call", "add", outcome, 0.002)
    stats.add_call("run", "initialize", None, "ok", 0.001)
    text = calllog.format_summary(stats.snapshot(), 3.0)
    lines = text.splitlines()
    assert lines[0] == "loopback: 4 requests, 1 error in 3.0 s"
    assert lines[2].split()[:3] == ["add", "3", "1"]
    assert lines[3] == "  other requests: initialize 1"
