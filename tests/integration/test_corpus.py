"""The bad-input corpus: every file in ``tests/corpus/`` is one raw request and its exact answer.

Adding a case is adding a file (format: ``tests/corpus/README.md``). Each case runs on a
fresh connection to one module-scoped server, and after each one a normal ``tools/call``
on another fresh connection must still work; the last test repeats that after the whole
corpus. No answer may carry the token, a traceback or a Python file path, and the
server must log no unexpected exception (a handler that died without answering shows
up only there).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

import loopback
from loopback.server import LoopbackServer
from loopback.settings import Settings

from conftest import Client, _loopback_threads, make_registry, wait_for

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
SEPARATOR = b"\n%%\n"
# Short timeouts keep the slow cases (408, idle close) under a second each.
SETTINGS = Settings(body_timeout=0.5, idle_timeout=1.0)
READ_TIMEOUT = 5.0  # a case that gets no answer in this long is a hang
KEYS = {"status", "code", "message", "id", "result", "is-error", "batch-length", "batch-code",
        "header", "closes", "half-close", "next-status", "xfail", "session"}
PYTHON_PATH = re.compile(rb'\.py\b|File "[^"]*", line \d+')
_REPEAT = re.compile(rb'\{repeat (\d+) ("(?:[^"\\]|\\.)*")\}')


# -- case files ----------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    expect: dict[str, str]
    headers: list[tuple[str, str]]  # the `header:` lines, which may repeat
    template: bytes  # the raw request, placeholders unexpanded
    comment: str = ""


def expand_repeats(data: bytes) -> bytes:
    """``{repeat N "json string"}`` → the string N times (keeps huge cases small on disk)."""
    return _REPEAT.sub(lambda m: json.loads(m.group(2)).encode("utf-8") * int(m.group(1)), data)


def load_case(path: Path) -> Case:
    data = path.read_bytes()
    meta, sep, template = data.partition(SEPARATOR)
    if not sep:
        raise ValueError(f"{path.name}: no '%%' line between expectations and request")
    expect: dict[str, str] = {}
    headers: list[tuple[str, str]] = []
    comments = []
    for line in meta.decode("utf-8").splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            comments.append(line[1:].strip())
            continue
        key, colon, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not colon or key not in KEYS:
            raise ValueError(f"{path.name}: unknown expectation line {line!r}")
        if key == "header":
            name, _, header_value = value.partition(":")
            headers.append((name.strip().lower(), header_value.strip()))
        elif key in expect:
            raise ValueError(f"{path.name}: {key} given twice")
        else:
            expect[key] = value
    if "status" not in expect:
        raise ValueError(f"{path.name}: no status")
    return Case(path.stem, expect, headers, template, " ".join(comments))


def expand(template: bytes, srv: LoopbackServer, in_session: bool = True) -> bytes:
    """The request bytes: placeholders filled in, ``{length}`` last (it measures the result)."""
    data = expand_repeats(template)
    token = srv.token.encode()
    for placeholder, value in ((b"{token}", token), (b"{short_token}", token[: len(token) // 2]),
                               (b"{port}", str(srv.port).encode()), (b"{host}", b"127.0.0.1")):
        data = data.replace(placeholder, value)
    session_id = getattr(srv, "corpus_session", None)
    if in_session and session_id and b"mcp-session-id" not in data.lower():
        # Every case speaks inside one open session (a request without one is a 400 of
        # its own): its header goes right after the request line.
        end = data.find(b"\n")
        if end > 0:
            eol = b"\r\n" if data[end - 1 : end] == b"\r" else b"\n"
            data = data[: end + 1] + b"Mcp-Session-Id: " + session_id.encode() + eol + data[end + 1 :]
    if b"{length}" in data:
        ends = [i + len(s) for s, i in ((s, data.find(s)) for s in (b"\r\n\r\n", b"\n\n")) if i >= 0]
        body = data[min(ends):] if ends else b""
        data = data.replace(b"{length}", str(len(body)).encode(), 1)
    return data


def _params() -> list[Any]:
    params = []
    for path in sorted(CORPUS.glob("*.http")):
        case = load_case(path)
        # raises=AssertionError: only a wrong answer is the expected failure; a leak, a crash,
        # a hang or broken framing (reported with pytest.fail) still fails the case.
        marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=case.expect["xfail"])] if "xfail" in case.expect else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


CASES = _params()


# -- the server --------------------------------------------------------------------------------


class _Crashes(logging.Handler):
    """Records the server logged with an exception that is not a client hanging up."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and not isinstance(record.exc_info[1], OSError):
            self.records.append(record)


@pytest.fixture(scope="module")
def corpus_server() -> Iterator[tuple[LoopbackServer, _Crashes]]:
    logger = logging.getLogger("loopback")
    crashes = _Crashes()
    level = logger.level
    logger.addHandler(crashes)
    logger.setLevel(logging.DEBUG)  # handle_error logs an unexpected exception at DEBUG only
    srv = LoopbackServer(0, registry=make_registry(), settings=SETTINGS).start()
    opener = Client(srv.port, srv.token)
    srv.corpus_session = opener.open_session()  # type: ignore[attr-defined]
    opener.close()
    try:
        yield srv, crashes
    finally:
        srv.close()
        logger.removeHandler(crashes)
        logger.setLevel(level)
        assert wait_for(lambda: not any(t.name.startswith(f"loopback-mcp:{srv.port}") for t in _loopback_threads()), 5)


@pytest.fixture
def leak_exempt(request: pytest.FixtureRequest) -> set[int]:
    """The shared leak check (conftest) tolerates this module's server, checked at its teardown."""
    if "corpus_server" in request.fixturenames:
        return {request.getfixturevalue("corpus_server")[0].port}
    return set()


# -- reading answers -------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]  # lower-cased names, in order
    body: bytes

    def header(self, name: str) -> Optional[str]:
        values = [v for n, v in self.headers if n == name]
        return values[-1] if values else None

    @property
    def closes(self) -> bool:
        return (self.header("connection") or "").lower() == "close"

    def json(self) -> Any:
        if (self.header("content-type") or "").startswith("text/event-stream"):
            data = [line[6:] for line in self.body.split(b"\n") if line.startswith(b"data: ")]
            assert len(data) == 1, self.body[:200]
            return json.loads(data[0])
        return json.loads(self.body)


@dataclass
class Reader:
    """Reads responses one by one from a socket, keeping every byte received."""

    sock: socket.socket
    buf: bytes = b""
    raw: bytes = b""
    eof: bool = False
    responses: list[Response] = field(default_factory=list)

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:  # a refusal that left request bytes unread ends in RST
            chunk = b""
        except socket.timeout:
            pytest.fail(f"no answer within {READ_TIMEOUT} s (a hang); got {self.raw[:200]!r}")
        if not chunk:
            self.eof = True
        self.buf += chunk
        self.raw += chunk

    def next(self) -> Optional[Response]:
        """The next final response, or None if the server closed first."""
        while True:
            while b"\r\n\r\n" not in self.buf:
                if self.eof:
                    require(not self.buf, f"connection closed mid-response: {self.buf[:200]!r}")
                    return None
                self._fill()
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            status_line, *lines = head.decode("latin-1").split("\r\n")
            version, status_text, _ = (status_line + " ").split(" ", 2)
            require(version == "HTTP/1.1" and status_text.isdigit(), f"bad status line {status_line!r}")
            status = int(status_text)
            headers = [(n.strip().lower(), v.strip()) for n, _, v in (line.partition(":") for line in lines)]
            if 100 <= status < 200:
                continue  # an interim 100 Continue
            lengths = [v for n, v in headers if n == "content-length"]
            if status == 204:
                require(not lengths, "RFC 9110 8.6: no Content-Length on a 204")
            else:
                require(len(lengths) == 1, f"every response needs one Content-Length: {head!r}")
            length = int(lengths[0]) if lengths else 0
            while len(self.buf) < length:
                require(not self.eof, f"closed after {len(self.buf)} of {length} body bytes")
                self._fill()
            body, self.buf = self.buf[:length], self.buf[length:]
            response = Response(status, headers, body)
            self.responses.append(response)
            return response

    def drain(self) -> bytes:
        """What arrives before the server closes (after a Connection: close it must close)."""
        before = len(self.raw)
        while not self.eof:
            self._fill()
        return self.raw[before:]


def exchange(case: Case, srv: LoopbackServer) -> Reader:
    data = expand(case.template, srv, case.expect.get("session") != "none")
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=READ_TIMEOUT)
    reader = Reader(sock)
    try:
        try:
            sock.sendall(data)
            if case.expect.get("half-close") == "yes":
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early (413, 431, ...): the answer is already on its way
        first = reader.next()
        if first is not None and "next-status" in case.expect:
            reader.next()
        if first is not None and first.closes:
            leftover = reader.drain()
            require(bool(case.expect.get("next-status")) or not leftover, f"bytes after Connection: close: {leftover[:200]!r}")
    finally:
        sock.close()
    return reader


# -- checks ----------------------------------------------------------------------------------------


def check_answer(case: Case, reader: Reader) -> None:
    expect = case.expect
    first = reader.responses[0] if reader.responses else None
    if expect["status"] == "none":
        assert first is None, f"expected a silent close, got {first}"
        return
    assert first is not None, "the server closed without answering"
    assert first.status == int(expect["status"]), (first.status, first.body[:300])
    for name, value in case.headers:
        assert first.header(name) == value, (name, first.headers)
    if "closes" in expect:
        assert first.closes == (expect["closes"] == "yes"), first.headers
    if "next-status" in expect:
        assert len(reader.responses) == 2, "no second response"
        assert reader.responses[1].status == int(expect["next-status"])
    body = first.json() if first.body else None
    if {"code", "message", "id", "result", "is-error"} & expect.keys():
        assert isinstance(body, dict) and body.get("jsonrpc") == "2.0", first.body[:300]
    if "id" in expect:
        assert body["id"] == json.loads(expand_repeats(expect["id"].encode())), str(body.get("id"))[:100]
    if "code" in expect:
        assert "result" not in body
        assert body["error"]["code"] == int(expect["code"]), body
        assert first.header("content-type") == "application/json"
    if "message" in expect:
        assert expect["message"] in body["error"]["message"], body["error"]
    if "result" in expect:
        assert "error" not in body, body
        assert body["result"] == json.loads(expand_repeats(expect["result"].encode())), str(body)[:300]
    if "is-error" in expect:
        assert "error" not in body, body
        assert body["result"]["isError"] is (expect["is-error"] == "true"), body["result"]
    if "batch-length" in expect:
        assert isinstance(body, list) and len(body) == int(expect["batch-length"]), str(body)[:300]
        assert all(isinstance(a, dict) and a.get("jsonrpc") == "2.0" for a in body)
    if "batch-code" in expect:
        assert all(a["error"]["code"] == int(expect["batch-code"]) for a in body), str(body)[:300]


def require(condition: bool, message: str) -> None:
    """Fail even an xfail case: these are never the expected failure."""
    if not condition:
        pytest.fail(message, pytrace=False)


def require_nothing_leaks(raw: bytes, token: str) -> None:
    require(token.encode() not in raw, "the token is in a response")
    require(b"Traceback" not in raw, "a traceback is in a response")
    match = PYTHON_PATH.search(raw)
    require(match is None, f"a Python file path is in a response: {raw[max(0, match.start() - 80):match.end() + 20]!r}"
            if match else "")
    require(os.path.dirname(loopback.__file__).encode() not in raw, "the package directory is in a response")


def require_serves(srv: LoopbackServer) -> None:
    client = Client(srv.port, srv.token)
    try:
        answer = client.call_tool("add", {"a": 2, "b": 3})
    except Exception as exc:  # noqa: BLE001 - any failure here means the server stopped serving
        pytest.fail(f"the server no longer serves a normal tools/call: {exc!r}", pytrace=False)
    finally:
        client.close()
    require(answer["result"]["content"] == [{"type": "text", "text": "5"}], f"wrong answer {answer}")


# -- tests -----------------------------------------------------------------------------------------


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 45


@pytest.mark.parametrize("case", CASES)
def test_corpus_case(case: Case, corpus_server: tuple[LoopbackServer, _Crashes]) -> None:
    srv, crashes = corpus_server
    crashes.records.clear()
    reader = exchange(case, srv)
    require_nothing_leaks(reader.raw, srv.token)
    require(not crashes.records, f"the server logged an exception: {[r.getMessage() for r in crashes.records]}")
    require_serves(srv)
    check_answer(case, reader)  # last: its AssertionError is what an xfail case expects


def test_the_server_still_serves_after_the_whole_corpus(corpus_server: tuple[LoopbackServer, _Crashes]) -> None:
    srv, crashes = corpus_server
    assert srv.serving
    require_serves(srv)
    assert not crashes.records
