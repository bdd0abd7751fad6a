"""Call records: what one MCP request did, as data, as a line and as JSON, and the figures
kept from them.

Owns: ``Note`` (what the shell jots down while it serves one request: times, the grant,
the decoded body, the answer or the error, the status and sizes), ``CallRecord`` (the
record made from a note: time, principal, method, tool/resource/prompt name, duration,
outcome, HTTP status, JSON-RPC code, bytes in and out, protocol era, and the arguments
only when the settings opt in), the readable line (``format_line``), the JSON Lines form
(``to_json``), the ``logging`` extras (``as_extra``), the scrubbing of every value bound
to the grant (its headers, its token) out of logged arguments, and ``Stats`` (calls,
errors and p50/p95 duration per tool, per principal and per method, in bounded memory).
Must not know: sockets, files, threads (beyond a lock that guards the figures), where
records go (``callsinks``), or how requests are served (``connection``).

Outcomes: ``ok``; ``tool_error`` (a ``tools/call`` answered with ``isError: true``);
``error`` (a JSON-RPC error answer: ``code`` says which); ``refused`` (an HTTP refusal
before dispatch, at admission, reading the body or naming a session: ``status`` says
which); ``dropped`` (the client left, or the connection broke, before an answer went out).
Arguments and results are never in a record unless ``Settings.log_arguments`` asks for
argument names, or values through ``Settings.redact_arguments``.
"""

from __future__ import annotations

import json
import math
import threading
import time as _time
from typing import Any, Callable, Collection, Mapping, Optional

from .auth import Grant
from .errors import HttpError, ProtocolError
from .settings import Settings

OK = "ok"
TOOL_ERROR = "tool_error"
ERROR = "error"
REFUSED = "refused"
DROPPED = "dropped"
OUTCOMES = (OK, TOOL_ERROR, ERROR, REFUSED, DROPPED)

ANONYMOUS = "anonymous"  # authentication is off
UNKNOWN = "-"  # refused before (or without) a principal being established

MODERN_ERA = "2026-07-28"
_HEADERLESS_ERA = "2025-03-26"
_KNOWN_ERAS = frozenset({"2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"})
# Which params field names the thing a method acts on.
_NAME_FIELDS = {
    "tools/call": "name", "prompts/get": "name", "resources/read": "uri",
    "resources/subscribe": "uri", "resources/unsubscribe": "uri",
}
_REDACTED = "[redacted]"
_encode_string = json.encoder.encode_basestring_ascii
_MAX_TEXT = 120  # a client-chosen method or name is cut to this many characters in a record


def principal_of(grant: Optional[Grant], authenticated: bool) -> str:
    """Who made a request, for people: the grant's label, else its scope (``owner`` for the
    owner token); never the token."""
    if grant is None:
        return UNKNOWN if authenticated else ANONYMOUS
    return grant.label if grant.label is not None else grant.scope


def _text(value: Any) -> Optional[str]:
    """A client-chosen string made safe to print: no control characters, bounded."""
    if not isinstance(value, str):
        return None
    text: str = value
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


class Note:
    """What the shell writes down while it serves one request; ``build`` makes the record.

    The defaults are class attributes: a note costs two attribute stores to make. The
    request's thread only keeps references (``request``, ``answered``); what they say is
    read by ``resolve``, on the thread that makes the records, in a batch."""

    grant: Optional[Grant] = None
    payload: Any = None  # the decoded body, once decoded
    method: Optional[str] = None
    name: Optional[str] = None
    era: Optional[str] = None
    bytes_in = 0
    status: Optional[int] = None  # None: nothing was answered
    bytes_out = 0
    error: Optional[ProtocolError] = None
    outcome = "ok"  # of the answer, once answered (an error or a refusal wins: ``outcome_of``)
    code: Optional[int] = None
    end = 0.0  # time.perf_counter() once the answer was sent
    version_header: Optional[str] = None
    modern = False
    answer: Any = None

    def __init__(self, wall: float, start: float) -> None:
        self.wall = wall  # time.time() when the head had arrived
        self.start = start  # time.perf_counter() then

    def request(self, payload: Any, version_header: Optional[str], modern: bool) -> None:
        """The decoded body, and how it was routed."""
        self.payload = payload
        self.version_header = version_header
        self.modern = modern

    def answered(self, answer: Any) -> None:
        """The dispatcher's answer (a response, a list of them, or None)."""
        self.answer = answer

    def resolve(self) -> None:
        """Read the method, name, era and the answer's outcome from what was kept."""
        payload = self.payload
        if payload is not None:
            self.method, self.name = describe(payload)
            self.era = era_of(payload, self.version_header, self.modern)
        if self.answer is not None:
            self.outcome, self.code = _answer_outcome(self.answer, self.method)
            self.answer = None


class CallRecord:
    """One request, as logged. ``grant`` is kept for filtering and never written out."""

    __slots__ = ("time", "principal", "method", "name", "outcome", "status", "code", "duration_ms",
                 "bytes_in", "bytes_out", "era", "arguments", "grant")

    FIELDS = ("time", "principal", "method", "name", "outcome", "status", "code", "duration_ms",
              "bytes_in", "bytes_out", "era")

    def __init__(self, time: float, principal: str, method: Optional[str], name: Optional[str],
                 outcome: str, status: Optional[int], code: Optional[int], duration_ms: float,
                 bytes_in: int, bytes_out: int, era: Optional[str], arguments: Any = None,
                 grant: Optional[Grant] = None) -> None:
        self.time = time  # seconds since the epoch, when the request's head had arrived
        self.principal = principal
        self.method = method
        self.name = name
        self.outcome = outcome
        self.status = status
        self.code = code
        self.duration_ms = duration_ms
        self.bytes_in = bytes_in
        self.bytes_out = bytes_out
        self.era = era
        self.arguments = arguments  # None unless opted in: a list of names or a redacted mapping
        self.grant = grant

    def as_dict(self) -> dict[str, Any]:
        """The fields, ``time`` as ISO 8601 UTC; ``arguments`` only when there are some."""
        data: dict[str, Any] = {field: getattr(self, field) for field in self.FIELDS}
        data["time"] = iso_time(self.time)
        if self.arguments is not None:
            data["arguments"] = self.arguments
        return data

    def __repr__(self) -> str:
        return f"<CallRecord {format_line(self)}>"


class IsoClock:
    """``iso_time`` with the date and second formatted once per second (not thread-safe:
    one per writer)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, timestamp: float) -> str:
        second = int(timestamp)
        if second != self._second:
            self._prefix = iso_time(second)[:-5]
            self._second = second
        return f"{self._prefix}.{int(timestamp * 1000) % 1000:03d}Z"


def iso_time(timestamp: float) -> str:
    """ISO 8601 in UTC to the millisecond: ``2026-11-29T19:12:14.123Z``."""
    t = _time.gmtime(timestamp)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}."
            f"{int(timestamp * 1000) % 1000:03d}Z")


def describe(payload: Any) -> tuple[Optional[str], Optional[str]]:
    """(method, name) of a decoded body: the tool, prompt or resource a request names.

    A batch is ``batch``; a client's answer to one of our requests is ``response``.
    """
    if isinstance(payload, list):
        return "batch", None
    if not isinstance(payload, dict):
        return None, None
    method = payload.get("method")
    if method is None:
        return ("response", None) if "id" in payload else (None, None)
    field = _NAME_FIELDS.get(method) if isinstance(method, str) else None
    name = None
    if field is not None:
        params = payload.get("params")
        if isinstance(params, dict):
            name = _text(params.get(field))
    return _text(method), name


def era_of(payload: Any, version_header: Optional[str], modern: bool) -> Optional[str]:
    """The protocol revision a request spoke: 2026-07-28, the header's, what an
    ``initialize`` asked for, or the headerless default; None for an unknown one."""
    if modern:
        return MODERN_ERA
    if isinstance(payload, dict) and payload.get("method") == "initialize":  # the header does not bind it
        params = payload.get("params")
        requested = params.get("protocolVersion") if isinstance(params, dict) else None
        if isinstance(requested, str) and requested in _KNOWN_ERAS:
            return requested
    if version_header is not None:
        version = version_header.strip()
        return version if version in _KNOWN_ERAS else None
    return _HEADERLESS_ERA


def _answer_outcome(answer: Any, method: Optional[str]) -> tuple[str, Optional[int]]:
    if isinstance(answer, list):
        outcome, code = OK, None
        for item in answer:
            item_outcome, item_code = _answer_outcome(item, None)
            if item_outcome == ERROR:
                return ERROR, item_code
            if item_outcome == TOOL_ERROR:
                outcome = TOOL_ERROR
        return outcome, code
    if not isinstance(answer, dict):
        return OK, None
    error = answer.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        return ERROR, code if isinstance(code, int) else None
    result = answer.get("result")
    if isinstance(result, dict) and result.get("isError") is True:
        return TOOL_ERROR, None
    return OK, None


def outcome_of(note: Note) -> tuple[str, Optional[int]]:
    """(outcome, JSON-RPC code) of a served request."""
    if note.status is None:
        return DROPPED, None
    error = note.error
    if error is not None:
        return (REFUSED, None) if isinstance(error, HttpError) else (ERROR, error.code)
    return note.outcome, note.code


def scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` with every string that holds one of ``secrets`` replaced by ``[redacted]``
    (in mappings, their keys too, and in sequences)."""
    if isinstance(value, str):
        return _REDACTED if any(secret in value for secret in secrets) else value
    if isinstance(value, Mapping):
        return {scrub(str(key), secrets): scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(item, secrets) for item in value]
    return value


def _grant_secrets(grant: Optional[Grant]) -> tuple[str, ...]:
    if grant is None:
        return ()
    return tuple(value for value in (grant.token, *grant.headers.values()) if value)


Declared = Callable[[str], Collection[str]]  # a tool's name -> the argument names its schema declares


def logged_arguments(settings: Settings, method: Optional[str], name: Optional[str], payload: Any,
                     grant: Optional[Grant], declared: Optional[Declared] = None) -> Any:
    """What a record shows of a ``tools/call``'s arguments: None (the default), their names,
    or what ``settings.redact_arguments`` returns; never a value bound to the grant.

    Names are the client's keys: only those the tool's schema declares (``declared``) are
    shown, the others counted (``"(2 undeclared)"``), since a key can carry any value."""
    mode = settings.log_arguments
    if mode is None or method != "tools/call" or not isinstance(payload, dict):
        return None
    params = payload.get("params")
    arguments = params.get("arguments") if isinstance(params, dict) else None
    if not isinstance(arguments, dict):
        return None
    if mode == "names":
        known = declared(name or "") if declared is not None else ()
        shown: Any = sorted(key for key in arguments if key in known)
        others = len(arguments) - len(shown)
        if others:
            shown.append(f"({others} undeclared)")
    else:
        hook = settings.redact_arguments
        assert hook is not None  # Settings checks it
        try:
            shown = hook(name or "", dict(arguments))
        except Exception as exc:  # a hook that fails logs no value at all
            return {"error": f"redact_arguments raised {type(exc).__name__}"}
        shown = json.loads(json.dumps(shown, default=repr))  # JSON-able, and a copy
    return scrub(shown, _grant_secrets(grant))


def build(note: Note, end: float, settings: Settings, declared: Optional[Declared] = None) -> CallRecord:
    """The record of a served request; ``end`` is ``time.perf_counter()`` after its answer."""
    note.resolve()
    outcome, code = outcome_of(note)
    method, name = note.method, note.name
    return CallRecord(
        note.wall, principal_of(note.grant, settings.auth), method, name, outcome, note.status, code,
        round((end - note.start) * 1000.0, 3), note.bytes_in, note.bytes_out, note.era,
        logged_arguments(settings, method, name, note.payload, note.grant, declared)
        if settings.log_arguments else None,
        note.grant,
    )


# --- forms ---------------------------------------------------------------------------------


def _outcome_text(record: CallRecord) -> str:
    if record.outcome == ERROR:
        return f"error {record.code}" if record.code is not None else "error"
    if record.outcome == REFUSED:
        return f"refused {record.status}"
    if record.outcome == TOOL_ERROR:
        return "tool error"
    return record.outcome


def format_line(record: CallRecord, clock: Optional[str] = None) -> str:
    """One readable line, as an access log shows it::

        19:12:14 claude#1 tools/call add -> ok 0.81 ms 87 B in 120 B out 2025-11-25

    ``clock`` replaces the time of day (the caller may format it in local time).
    """
    when = clock if clock is not None else iso_time(record.time)[11:19]
    what = record.method or "-"
    if record.name is not None:
        what = f"{what} {record.name}"
    line = (f"{when} {record.principal} {what} -> {_outcome_text(record)} {record.duration_ms:.2f} ms "
            f"{record.bytes_in} B in {record.bytes_out} B out")
    if record.era is not None:
        line += f" {record.era}"
    if record.arguments is not None:
        line += " args=" + json.dumps(record.arguments, separators=(",", ":"), sort_keys=True)
    return line


def _json_text(value: Optional[str]) -> str:
    return "null" if value is None else _encode_string(value)


def _json_int(value: Optional[int]) -> str:
    return "null" if value is None else str(int(value))


def to_json(record: CallRecord, stamp: Optional[Callable[[float], str]] = None) -> str:
    """One JSON Lines line (with its newline), ASCII only: ``as_dict()`` as compact JSON, its
    keys in ``FIELDS`` order (written by hand: a third of ``json.dumps``'s cost). ``stamp``
    formats the time as ``iso_time`` does (a caller may cache the second)."""
    line = (f'{{"time":"{(stamp or iso_time)(record.time)}","principal":{_encode_string(record.principal)},'
            f'"method":{_json_text(record.method)},"name":{_json_text(record.name)},'
            f'"outcome":"{record.outcome}","status":{_json_int(record.status)},"code":{_json_int(record.code)},'
            f'"duration_ms":{float(record.duration_ms)!r},"bytes_in":{int(record.bytes_in)},'
            f'"bytes_out":{int(record.bytes_out)},"era":{_json_text(record.era)}')
    if record.arguments is not None:
        line += ',"arguments":' + json.dumps(record.arguments, separators=(",", ":"))
    return line + "}\n"


def as_extra(record: CallRecord) -> dict[str, Any]:
    """``logging`` extras: every field as ``call_<field>`` (``name`` is taken by LogRecord)
    and the record itself as ``call``."""
    extra: dict[str, Any] = {f"call_{field}": getattr(record, field) for field in CallRecord.FIELDS}
    extra["call_arguments"] = record.arguments
    extra["call"] = record
    return extra


# --- figures -------------------------------------------------------------------------------

_SUB_BUCKETS = 32  # per power of two: a duration is known to within 1/64 (about 1.6 %)
MAX_KEYS = 256  # names per table; more (client-chosen methods, say) are counted under OTHER
OTHER = "(other)"


def _bucket(seconds: float) -> int:
    if seconds <= 0:
        return -(1 << 30)
    mantissa, exponent = math.frexp(seconds)  # seconds = mantissa * 2**exponent, 0.5 <= mantissa < 1
    return exponent * _SUB_BUCKETS + int((mantissa - 0.5) * 2 * _SUB_BUCKETS)


def _bucket_value(bucket: int) -> float:
    """The middle of a bucket, in seconds."""
    if bucket == -(1 << 30):
        return 0.0
    exponent, sub = divmod(bucket, _SUB_BUCKETS)
    return math.ldexp(0.5 + (sub + 0.5) / (2 * _SUB_BUCKETS), exponent)


class _Figures:
    __slots__ = ("calls", "errors", "total", "max", "histogram")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.total = 0.0
        self.max = 0.0
        self.histogram: dict[int, int] = {}

    def add(self, seconds: float, failed: bool, bucket: int) -> None:
        self.calls += 1
        self.errors += failed
        self.total += seconds
        if seconds > self.max:
            self.max = seconds
        histogram = self.histogram
        histogram[bucket] = histogram.get(bucket, 0) + 1

    def percentile(self, fraction: float) -> float:
        """By nearest rank, in seconds (the middle of its bucket, never above the maximum)."""
        rank = max(1, math.ceil(fraction * self.calls))
        seen = 0
        for bucket in sorted(self.histogram):
            seen += self.histogram[bucket]
            if seen >= rank:
                return min(_bucket_value(bucket), self.max)
        return self.max

    def summary(self) -> dict[str, Any]:
        return {"calls": self.calls, "errors": self.errors,
                "p50_ms": round(self.percentile(0.50) * 1000, 3),
                "p95_ms": round(self.percentile(0.95) * 1000, 3),
                "max_ms": round(self.max * 1000, 3),
                "mean_ms": round(self.total / self.calls * 1000, 3) if self.calls else 0.0}


def _figures(table: dict[str, _Figures], key: str) -> _Figures:
    figures = table.get(key)
    if figures is None:
        if len(table) >= MAX_KEYS:
            key = OTHER
            figures = table.get(key)
        if figures is None:
            figures = table[key] = _Figures()
    return figures


class Stats:
    """Figures since start, per tool (``tools/call`` by tool name), per principal and per
    method: calls, errors (every outcome but ``ok``), p50/p95/max/mean duration. Memory is
    bounded: a histogram of 32 buckets per octave per name, at most ``MAX_KEYS`` names per
    table (the rest under ``(other)``), and a tool is named only once a call of it has been
    answered (an unknown tool's name is never a key)."""

    def __init__(self, since: float) -> None:
        self.since = since
        self._lock = threading.Lock()
        self._tools: dict[str, _Figures] = {}
        self._principals: dict[str, _Figures] = {}
        self._methods: dict[str, _Figures] = {}

    def add(self, record: CallRecord) -> None:
        self.add_call(record.principal, record.method, record.name, record.outcome, record.duration_ms / 1000.0)

    def add_note(self, note: Note, end: float, authenticated: bool = True) -> None:
        """What ``add(build(note, end, ...))`` adds, without making the record."""
        note.resolve()
        self.add_call(principal_of(note.grant, authenticated), note.method, note.name, outcome_of(note)[0],
                      end - note.start)

    def add_call(self, principal: str, method: Optional[str], name: Optional[str], outcome: str,
                 seconds: float) -> None:
        failed = outcome != OK
        bucket = _bucket(seconds)
        method = method or "-"
        with self._lock:  # the totals are the methods' sum (every record has one method key)
            _figures(self._principals, principal).add(seconds, failed, bucket)
            _figures(self._methods, method).add(seconds, failed, bucket)
            if method == "tools/call" and name is not None and (outcome in (OK, TOOL_ERROR) or name in self._tools):
                # only a tool that answered is a key: an unknown tool's name is the client's
                _figures(self._tools, name).add(seconds, failed, bucket)

    def snapshot(self) -> dict[str, Any]:
        """``{"since", "calls", "errors", "tools": {name: figures}, "principals": {...},
        "methods": {...}}``; figures are ``calls``, ``errors``, ``p50_ms``, ``p95_ms``,
        ``max_ms`` and ``mean_ms``."""
        with self._lock:
            total = _Figures()
            for figures in self._methods.values():
                total.calls += figures.calls
                total.errors += figures.errors
                total.total += figures.total
                total.max = max(total.max, figures.max)
                for bucket, count in figures.histogram.items():
                    total.histogram[bucket] = total.histogram.get(bucket, 0) + count
            total_summary = total.summary()
            return {
                "since": iso_time(self.since), "calls": total_summary["calls"], "errors": total_summary["errors"],
                "p50_ms": total_summary["p50_ms"], "p95_ms": total_summary["p95_ms"],
                "tools": {key: figures.summary() for key, figures in sorted(self._tools.items())},
                "principals": {key: figures.summary() for key, figures in sorted(self._principals.items())},
                "methods": {key: figures.summary() for key, figures in sorted(self._methods.items())},
            }


def format_summary(stats: Mapping[str, Any], seconds: Optional[float] = None) -> str:
    """A short table of ``Stats.snapshot()``: a total line, one row per tool, and one line
    for the other methods."""
    calls, errors = stats["calls"], stats["errors"]
    head = f"loopback: {calls} request{'s' if calls != 1 else ''}, {errors} error{'s' if errors != 1 else ''}"
    if seconds is not None:
        head += f" in {seconds:.1f} s"
    lines = [head]
    tools = stats["tools"]
    if tools:
        width = max(12, *(len(name) for name in tools))
        lines.append(f"  {'tool':<{width}} {'calls':>6} {'errors':>6} {'p50 ms':>9} {'p95 ms':>9}")
        for name, figures in tools.items():
            lines.append(f"  {name:<{width}} {figures['calls']:>6} {figures['errors']:>6} "
                         f"{figures['p50_ms']:>9.2f} {figures['p95_ms']:>9.2f}")
    else:
        lines.append("  no tool was called")
    others = [f"{method} {figures['calls']}" for method, figures in stats["methods"].items()
              if method != "tools/call"]
    if others:
        lines.append("  other requests: " + ", ".join(others))
    return "\n".join(lines)
