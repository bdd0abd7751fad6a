"""The call log over real HTTP: a record per request with the right fields for every outcome,
no secret (token, bound header value) and by default no argument value in any sink, an
audit file that keeps every line whole under 16 concurrent connections and through
rotation, a run's own audit file, and ``serve``'s lines and ``run``'s summary."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

import loopback
from conftest import Client, make_registry, raw_request, status_of, wait_for
from loopback import calllog, cli
from loopback.callsinks import CALLS_LOGGER, StreamSink
from loopback.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent
MODERN = "2026-07-28"


class Sinks:
    """Every sink a server has, attached to one server; ``everything()`` is all their bytes."""

    def __init__(self, server: loopback.LoopbackServer, audit: Path) -> None:
        self.records: list[calllog.CallRecord] = []
        self.stream = io.StringIO()
        self.logged = io.StringIO()
        self.audit = audit
        server.add_call_sink(self.records.append)
        server.add_call_sink(StreamSink(self.stream))
        handler = logging.StreamHandler(self.logged)

        class Everything(logging.Formatter):  # the message and every extra field
            def format(self, record: logging.LogRecord) -> str:
                return json.dumps(record.__dict__, default=repr)

        handler.setFormatter(Everything())
        self._logger = logging.getLogger(CALLS_LOGGER)
        self._level = self._logger.level
        self._logger.addHandler(handler)
        self._logger.setLevel(logging.INFO)
        self._handler = handler

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._level)

    def everything(self) -> bytes:
        return b"\n".join([
            repr([record.as_dict() for record in self.records]).encode(),
            repr(self.records).encode(),
            self.stream.getvalue().encode(),
            self.logged.getvalue().encode(),
            self.audit.read_bytes() if self.audit.exists() else b"",
        ])

    def wait(self, count: int) -> list[calllog.CallRecord]:
        """The records, once there are ``count`` (each is made after its answer is sent)."""
        assert wait_for(lambda: len(self.records) >= count, 10), self.records
        assert len(self.records) == count, self.records
        return self.records


@pytest.fixture
def logged(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[loopback.LoopbackServer, Sinks]]:
    options = getattr(request, "param", {})
    audit = tmp_path / "audit.jsonl"
    server = loopback.start(0, registry=make_registry(), settings=Settings(audit_path=str(audit), stats=True, **options))
    sinks = Sinks(server, audit)
    try:
        yield server, sinks
    finally:
        sinks.close()
        server.close()


def _modern(port: int, token: str, message: dict[str, Any]) -> tuple[int, bytes]:
    client = Client(port, token, protocol=None, auto_session=False)
    headers = client.headers(**{"MCP-Protocol-Version": MODERN, "Mcp-Method": message["method"],
                                "Mcp-Name": message["params"]["name"]})
    try:
        status, _, payload = client.post(message, headers)
    finally:
        client.close()
    return status, payload


def test_a_record_for_each_outcome_with_its_fields(logged: tuple[loopback.LoopbackServer, Sinks]) -> None:
    server, sinks = logged
    grant = server.issue_token(label="run-7")
    client = Client(server.port, grant.token)
    before = time.time()
    sent: list[tuple[int, int]] = []  # (bytes in, bytes out) of each request, as the client saw them

    def post(body: Any, headers: Optional[dict[str, str]] = None) -> tuple[int, bytes]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()  # what Client sends
        status, _, payload = client.post(body, headers)
        sent.append((len(data), len(payload)))
        return status, payload

    try:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        assert post(init)[0] == 200
        client.protocol = "2025-06-18"
        assert post({"jsonrpc": "2.0", "method": "notifications/initialized"})[0] == 202
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}
        assert post(call)[0] == 200
        fail = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "fail", "arguments": {}}}
        assert json.loads(post(fail)[1])["result"]["isError"] is True
        unknown_tool = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "nope"}}
        assert json.loads(post(unknown_tool)[1])["error"]["code"] == -32602
        assert json.loads(post({"jsonrpc": "2.0", "id": 5, "method": "no/such"})[1])["error"]["code"] == -32601
        assert post(b'{"jsonrpc": "2.0", ')[0] == 400
        assert post({"jsonrpc": "2.0", "id": 6, "method": "ping"}, client.headers(**{"Mcp-Session-Id": "ended"}))[0] == 404
    finally:
        client.close()
    records = sinks.wait(8)
    # Refused at admission: a wrong token, a foreign Host.
    stranger = Client(server.port, "x" * 43, auto_session=False)
    try:
        assert stranger.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})[0] == 401
    finally:
        stranger.close()
    assert status_of(raw_request(server.port, b"POST /mcp HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\n\r\n")) == 403
    # The 2026-07-28 era, with the owner token.
    modern = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "echo", "arguments": {"text": "hi"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {},
                  "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}}}}
    assert _modern(server.port, server.token, modern)[0] == 200
    # Dropped: the client leaves in the middle of its body.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {server.token}\r\n"
                     "Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"".encode())
    records = sinks.wait(12)
    after = time.time()

    expected = [
        ("run-7", "initialize", None, "ok", 200, None, "2025-06-18"),
        ("run-7", "notifications/initialized", None, "ok", 202, None, "2025-06-18"),
        ("run-7", "tools/call", "add", "ok", 200, None, "2025-06-18"),
        ("run-7", "tools/call", "fail", "tool_error", 200, None, "2025-06-18"),
        ("run-7", "tools/call", "nope", "error", 200, -32602, "2025-06-18"),
        ("run-7", "no/such", None, "error", 200, -32601, "2025-06-18"),
        ("run-7", None, None, "error", 400, -32700, None),
        ("run-7", "ping", None, "refused", 404, None, "2025-06-18"),  # an ended session
        ("-", None, None, "refused", 401, None, None),
        ("-", None, None, "refused", 403, None, None),
        ("owner", "tools/call", "echo", "ok", 200, None, MODERN),
        ("owner", None, None, "dropped", None, None, None),
    ]
    got = [(r.principal, r.method, r.name, r.outcome, r.status, r.code, r.era) for r in records]
    assert got == expected
    for record in records:
        assert before <= record.time <= after
        assert 0 < record.duration_ms < 10_000
    for record, (bytes_in, bytes_out) in zip(records[:8], sent):
        assert (record.bytes_in, record.bytes_out) == (bytes_in, bytes_out)
    assert records[8].bytes_in == 0 and records[8].bytes_out > 0  # refused before the body
    assert records[11].bytes_in == 0 and records[11].bytes_out == 0
    assert all(r.grant is grant for r in records[:8])
    # Every sink got the same records: the audit file as JSON lines, the stream as lines, the logger.
    # The sinks are handed a batch one after the other (the logger last): wait for each.
    assert wait_for(lambda: len(sinks.audit.read_text().splitlines()) == len(records), 5)
    assert wait_for(lambda: len(sinks.stream.getvalue().splitlines()) == len(records), 5)
    assert wait_for(lambda: len(sinks.logged.getvalue().splitlines()) == len(records), 5)
    lines = sinks.audit.read_text().splitlines()
    assert sorted(lines) == sorted(calllog.to_json(r).rstrip("\n") for r in records)
    assert json.loads(lines[2]) == {
        "time": calllog.iso_time(records[2].time), "principal": "run-7", "method": "tools/call", "name": "add",
        "outcome": "ok", "status": 200, "code": None, "duration_ms": records[2].duration_ms,
        "bytes_in": sent[2][0], "bytes_out": sent[2][1], "era": "2025-06-18"}
    stream_lines = sinks.stream.getvalue().splitlines()
    assert len(stream_lines) == 12
    assert any(" run-7 tools/call add -> ok " in line and line.endswith(" 2025-06-18") for line in stream_lines)
    assert any(" run-7 tools/call fail -> tool error " in line for line in stream_lines)
    assert any(" - - -> refused 401 " in line for line in stream_lines)
    logged_lines = [json.loads(line) for line in sinks.logged.getvalue().splitlines()]
    assert [(e["call_principal"], e["call_method"], e["call_name"], e["call_outcome"], e["call_status"],
             e["call_code"], e["call_era"]) for e in logged_lines] == expected
    assert all(e["levelname"] == "INFO" and e["name"] == CALLS_LOGGER for e in logged_lines)
    # The figures.
    stats = server.stats()
    assert stats["calls"] == 12 and stats["errors"] == 8
    assert stats["tools"].keys() == {"add", "fail", "echo"}  # an unknown tool's name is no key
    assert stats["tools"]["fail"]["errors"] == 1 and stats["tools"]["add"]["errors"] == 0
    assert stats["principals"]["run-7"]["calls"] == 8 and stats["principals"]["-"]["calls"] == 2
    assert stats["methods"]["tools/call"]["calls"] == 4


def test_an_unauthenticated_server_records_anonymous_callers(tmp_path: Path) -> None:
    records: list[calllog.CallRecord] = []
    server = loopback.start(0, registry=make_registry(), settings=Settings(auth=False))
    try:
        server.add_call_sink(records.append)
        client = Client(server.port, None)
        try:
            client.call_tool("add", {"a": 1})
        finally:
            client.close()
        assert wait_for(lambda: len(records) == 3)
        assert {r.principal for r in records} == {"anonymous"}
    finally:
        server.close()


CANARY = "canary-" + secrets.token_hex(8)


def _secret_calls(server: loopback.LoopbackServer) -> tuple[loopback.Grant, str, str]:
    """Calls carrying a canary argument value, the token and a bound header value as arguments,
    and a refused attempt with another token; (the grant, its bound value, the refused token)."""
    bound = "session-" + secrets.token_hex(8)
    grant = server.issue_token(label="agent", headers={"X-Session-Key": bound})
    client = Client(server.port, grant.token)
    try:
        client.call_tool("echo", {"text": CANARY})
        client.call_tool("echo", {"text": f"my token is {grant.token}"})
        client.call_tool("echo", {"text": bound})
        client.call_tool("add", {"a": CANARY})  # invalid: a tool error whose message names the value
        client.post({"jsonrpc": "2.0", "id": 77, "method": "tools/call",
                     "params": {"name": "echo", "arguments": {CANARY: 1}}})
    finally:
        client.close()
    wrong = secrets.token_urlsafe(32)
    stranger = Client(server.port, wrong, auto_session=False)
    try:
        assert stranger.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                              "params": {"name": "echo", "arguments": {"text": CANARY}}})[0] == 401
    finally:
        stranger.close()
    return grant, bound, wrong


def test_no_token_and_no_argument_value_in_any_sink_by_default(logged: tuple[loopback.LoopbackServer, Sinks]) -> None:
    server, sinks = logged
    grant, bound, wrong = _secret_calls(server)
    sinks.wait(8)  # initialize, initialized, five calls, one refusal
    data = sinks.everything()
    assert b"tools/call echo" in data  # the sinks did get the calls
    for secret in (CANARY, grant.token, bound, wrong, server.token):
        assert secret.encode() not in data, secret


@pytest.mark.parametrize("logged", [{"log_arguments": "names"}], indirect=True)
def test_argument_names_when_asked_and_still_no_value(logged: tuple[loopback.LoopbackServer, Sinks]) -> None:
    server, sinks = logged
    grant, bound, wrong = _secret_calls(server)
    records = sinks.wait(8)
    assert records[2].arguments == ["text"]
    assert records[6].arguments == ["(1 undeclared)"]  # a key is the client's: it could be any value
    data = sinks.everything()
    assert b'"arguments": ["text"]' in data or b'"arguments":["text"]' in data
    for secret in (grant.token, bound, wrong, server.token):
        assert secret.encode() not in data, secret


def _keep_all(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return arguments


@pytest.mark.parametrize("logged", [{"log_arguments": "values", "redact_arguments": _keep_all}], indirect=True)
def test_values_through_the_redaction_hook_never_show_what_is_bound_to_the_grant(
        logged: tuple[loopback.LoopbackServer, Sinks]) -> None:
    server, sinks = logged
    grant, bound, wrong = _secret_calls(server)
    records = sinks.wait(8)
    data = sinks.everything()
    assert CANARY.encode() in data  # the hook let values through: the search above would find one
    assert records[2].arguments == {"text": CANARY}
    assert records[3].arguments == {"text": "[redacted]"}  # held the token
    assert records[4].arguments == {"text": "[redacted]"}  # the bound header value
    for secret in (grant.token, bound, wrong, server.token):
        assert secret.encode() not in data, secret


def test_a_failing_redaction_hook_logs_no_value(tmp_path: Path) -> None:
    def broken(tool: str, arguments: dict[str, Any]) -> Any:
        raise RuntimeError(str(arguments))

    records: list[calllog.CallRecord] = []
    server = loopback.start(0, registry=make_registry(),
                            settings=Settings(log_arguments="values", redact_arguments=broken))
    try:
        server.add_call_sink(records.append)
        client = Client(server.port, server.token)
        try:
            assert client.call_tool("echo", {"text": CANARY})["result"]["content"][0]["text"] == CANARY
        finally:
            client.close()
        assert wait_for(lambda: len(records) == 3)
        assert records[2].arguments == {"error": "redact_arguments raised RuntimeError"}
    finally:
        server.close()


CONNECTIONS = 16
CALLS_EACH = 30


@pytest.mark.parametrize("max_bytes", [10 * 1024 * 1024, 4096], ids=["one-file", "rotated"])
def test_the_audit_file_keeps_every_line_whole_under_16_connections(tmp_path: Path, max_bytes: int) -> None:
    audit = tmp_path / "audit.jsonl"
    server = loopback.start(0, registry=make_registry(),
                            settings=Settings(audit_path=str(audit), audit_max_bytes=max_bytes, audit_backups=1000))
    records: list[calllog.CallRecord] = []
    server.add_call_sink(records.append)
    errors: list[BaseException] = []
    barrier = threading.Barrier(CONNECTIONS)

    def load(number: int) -> None:
        client = Client(server.port, server.token)
        try:
            client.initialize()
            barrier.wait(10)
            for call in range(CALLS_EACH):
                text = f"c{number}-{call}-" + "x" * (number * 7)  # lines of many lengths
                assert client.call_tool("echo", {"text": text})["result"]["content"][0]["text"] == text
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=load, args=(n,)) for n in range(CONNECTIONS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors[:3]
        total = CONNECTIONS * (2 + CALLS_EACH)
        assert wait_for(lambda: len(records) == total, 10), len(records)
    finally:
        server.close()
    files = [audit] + sorted(tmp_path.glob("audit.jsonl.*"), key=lambda p: int(p.suffix[1:]))
    if max_bytes == 4096:
        assert len(files) > 5  # rotated many times, while the calls went on
    else:
        assert len(files) == 1
    lines: list[str] = []
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text(encoding="ascii")
        assert text.endswith("\n")
        assert path.stat().st_size <= max_bytes
        lines += text.splitlines()
    parsed = [json.loads(line) for line in lines]  # a torn line would not parse
    assert len(parsed) == total
    assert sorted(lines) == sorted(calllog.to_json(r).rstrip("\n") for r in records)  # none lost, none doubled
    assert sum(1 for p in parsed if p["method"] == "tools/call" and p["outcome"] == "ok") == CONNECTIONS * CALLS_EACH


def test_an_existing_audit_file_is_appended_to_and_made_private(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_text('{"earlier": true}\n')
    audit.chmod(0o644)
    server = loopback.start(0, registry=make_registry(), settings=Settings(audit_path=audit))
    try:
        assert stat.S_IMODE(audit.stat().st_mode) == 0o600
        client = Client(server.port, server.token)
        try:
            client.call_tool("add", {"a": 1})
        finally:
            client.close()
    finally:
        server.close()
    lines = audit.read_text().splitlines()
    assert lines[0] == '{"earlier": true}' and len(lines) == 4


def test_an_audit_file_that_cannot_be_opened_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(loopback.StartError, match="cannot open the audit file"):
        loopback.start(0, settings=Settings(audit_path=str(tmp_path / "missing" / "audit.jsonl")))


def test_a_run_audit_file_gets_that_run_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPBACK_RUNTIME_DIR", str(tmp_path / "runtime"))
    audit = tmp_path / "run.jsonl"
    registry = make_registry()
    with loopback.prepare_agent_run(registry=registry, label="nightly", audit=str(audit)) as run:
        assert run.enabled and run.grant is not None
        server = loopback.ensure()
        owner = Client(server.port, server.token)
        agent = Client(server.port, run.grant.token)
        try:
            owner.call_tool("add", {"a": 1})
            agent.call_tool("echo", {"text": "from the run"})
        finally:
            owner.close()
            agent.close()
        assert wait_for(lambda: len(audit.read_text().splitlines()) == 3)
        token = run.grant.token
    late = Client(server.port, token, auto_session=False)  # the run ended: its token is refused
    try:
        assert late.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})[0] == 401
    finally:
        late.close()
    loopback.close()
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["principal"], r["method"], r["name"]) for r in records] == [
        ("nightly", "initialize", None), ("nightly", "notifications/initialized", None),
        ("nightly", "tools/call", "echo")]
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600


# --- the command line ----------------------------------------------------------------------


def _serve(*args: str, env: Optional[dict[str, str]] = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "loopback", "serve", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def _banner(proc: subprocess.Popen[str]) -> tuple[int, str]:
    assert proc.stdout is not None
    port = token = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line or line.startswith("Press Ctrl-C"):
            break
        if line.startswith("loopback ") and "/mcp" in line:
            port = int(line.rsplit(":", 1)[1].split("/")[0])
        if line.startswith("token: "):
            token = line.split(": ", 1)[1].strip()
    assert port and token
    return port, token


@pytest.mark.parametrize("quiet", [False, True], ids=["lines", "quiet"])
def test_serve_prints_a_line_per_call_and_writes_its_audit_file(tmp_path: Path, quiet: bool) -> None:
    audit = tmp_path / "serve.jsonl"
    proc = _serve("--audit", str(audit), *(["--quiet"] if quiet else []),
                  env={"LOOPBACK_RUNTIME_DIR": str(tmp_path / "runtime")})
    try:
        port, token = _banner(proc)
        client = Client(port, token)
        try:
            client.call_tool("add", {"a": 2, "b": 3})
            client.rpc("tools/call", {"name": "missing"})
        finally:
            client.close()
        assert wait_for(lambda: audit.exists() and len(audit.read_text().splitlines()) == 4)
        proc.send_signal(2)
        assert proc.wait(20) == 0
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    call_lines = [line for line in err.splitlines() if " -> " in line]
    if quiet:
        assert call_lines == []
    else:
        assert [line.split(" ", 1)[1].split(" -> ")[0] for line in call_lines] == [
            "owner initialize", "owner notifications/initialized", "owner tools/call add", "owner tools/call missing"]
        assert " -> ok " in call_lines[2] and " -> error -32602 " in call_lines[3]
    assert token not in err and token not in audit.read_text()
    assert err.rstrip().endswith("stopped")


def test_run_prints_a_summary_when_the_agent_exits(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPBACK_RUNTIME_DIR", str(tmp_path / "runtime"))
    agent = tmp_path / "agent.py"
    agent.write_text(
        "import json, sys, urllib.request\n"
        "config = json.load(open(sys.argv[1]))\n"
        "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
        "headers = {**config['headers'], 'Content-Type': 'application/json',\n"
        "           'Accept': 'application/json', 'MCP-Protocol-Version': '2025-11-25'}\n"
        "import os, re\n"
        "headers = {k: re.sub(r'\\$\\{(\\w+)\\}', lambda m: os.environ[m.group(1)], v) for k, v in headers.items()}\n"
        "for n, args in enumerate([{'a': 1, 'b': 2}, {'a': 3, 'b': 4}, {'a': 'x', 'b': 1}]):\n"
        "    body = json.dumps({'jsonrpc': '2.0', 'id': n, 'method': 'tools/call', 'params': {'name': 'add', 'arguments': args}})\n"
        "    opener.open(urllib.request.Request(config['url'], body.encode(), headers), timeout=10).read()\n"
    )
    assert cli.main(["run", "--", sys.executable, str(agent), "{mcp_config}"]) == 0
    err = capfd.readouterr().err
    assert "loopback: 3 requests, 1 error in " in err, err
    summary = err[err.index("loopback: 3 requests, "):].splitlines()
    assert summary[1].split() == ["tool", "calls", "errors", "p50", "ms", "p95", "ms"]
    assert summary[2].split()[:3] == ["add", "3", "1"]
    assert cli.main(["run", "--no-summary", "--", sys.executable, str(agent), "{mcp_config}"]) == 0
    assert "requests," not in capfd.readouterr().err


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The 'What did the agent do?' block, with one call made while it runs."""
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "add_call_sink(" in b]
    monkeypatch.chdir(tmp_path)
    registry = make_registry()
    calls_level = logging.getLogger(CALLS_LOGGER).level
    real_start = loopback.start

    def start(*args: Any, **kwargs: Any) -> loopback.LoopbackServer:  # the example's server, with our tools
        server = real_start(*args, registry=registry, **kwargs)
        client = Client(server.port, server.token)

        def call_after_sink(record_sink: Any, **options: Any) -> Any:
            stop = add_call_sink(record_sink, **options)
            try:
                client.call_tool("add", {"a": 2, "b": 3})
            finally:
                client.close()
            # its record is queued just after the answer is sent
            assert wait_for(lambda: server.stats()["calls"] == 3)
            return stop
        add_call_sink = server.add_call_sink
        server.add_call_sink = call_after_sink  # type: ignore[method-assign]
        return server

    monkeypatch.setattr(loopback, "start", start)
    try:
        exec(compile(block, "README.md", "exec", dont_inherit=True), {"__name__": "readme_calls"})
    finally:
        logging.getLogger(CALLS_LOGGER).setLevel(calls_level)
    out = capsys.readouterr().out
    assert "owner tools/call add ok" in out
    assert "'add': {'calls': 1, 'errors': 0" in out
    audit = tmp_path / "calls.jsonl"
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600 and len(audit.read_text().splitlines()) == 3


def test_a_failing_sink_breaks_neither_the_call_nor_the_other_sinks(caplog: pytest.LogCaptureFixture) -> None:
    records: list[calllog.CallRecord] = []
    server = loopback.start(0, registry=make_registry())
    try:
        def broken(record: calllog.CallRecord) -> None:
            raise RuntimeError("sink down")

        seen: list[calllog.CallRecord] = []
        server.add_call_sink(broken)
        server.add_call_sink(seen.append)
        stop = server.add_call_sink(records.append)
        client = Client(server.port, server.token)
        try:
            assert client.call_tool("add", {"a": 1})["result"]["structuredContent"] == {"result": 3}
        finally:
            client.close()
        assert wait_for(lambda: len(records) == 3)
        assert "a call-record sink failed" in caplog.text
        stop()
        client = Client(server.port, server.token)
        try:
            client.call_tool("add", {"a": 1})
        finally:
            client.close()
        assert wait_for(lambda: len(seen) == 6)  # the second call's records were handed out
        assert len(records) == 3  # but not to the sink that was stopped
    finally:
        server.close()


def test_the_call_log_benchmark_runs(tmp_path: Path) -> None:
    """benchmarks/calllog_bench.py keeps working (no timing asserted: figures live in
    benchmarks/README.md)."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "calllog_bench.py"), "--rounds", "2",
                           "--calls", "20", "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(results["cpu_us"]) == {"off", "stats", "line", "audit"}
    assert all(len(values) == 2 and all(v > 0 for v in values) for values in results["cpu_us"].values())
    assert "median of per-round ratios to off" in proc.stdout
