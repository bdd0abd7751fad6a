"""The benchmarks' lean throughput client (benchmarks/lean_client.py) against real servers
on 127.0.0.1: it counts right answers as calls, wrong ones, closes and resets as errors or
closes, reads Content-Length, chunked and close-framed answers, and stays in its bounds."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

import loopback
from conftest import make_registry

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import lean_client  # noqa: E402

CALL = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}'
INIT = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                   "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                              "clientInfo": {"name": "lean", "version": "1"}}}).encode()
INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
RIGHT = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"3"}],"isError":false}}'
WRONG = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"4"}],"isError":false}}'


def check(body: bytes) -> bool:
    message = json.loads(body)
    result = message.get("result")
    return (message.get("id") == 1 and isinstance(result, dict) and result.get("isError") is False
            and result["content"][0]["text"] == "3")


def headers(token: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {token}", "MCP-Protocol-Version": "2025-11-25"}


class Canned:
    """A raw server on 127.0.0.1 answering every request with ``answer`` (then closing
    the connection when ``close``)."""

    def __init__(self, answer: bytes, close: bool = False) -> None:
        self.answer, self.close_after = answer, close
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.accepting = threading.Thread(target=self._accept, name="test-canned")
        self.accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), name="test-canned-conn")
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                conn.sendall(self.answer)
                if self.close_after:
                    return
        except OSError:
            return
        finally:
            conn.close()

    def stop(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept (a close alone does not)
        except OSError:
            pass
        self.sock.close()
        self.accepting.join(5)
        for t in self.threads:
            t.join(5)


def response(body: bytes, *extra: str) -> bytes:
    fields = "".join(f"{line}\r\n" for line in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{fields}".encode() + \
        (f"Content-Length: {len(body)}\r\n\r\n".encode() + body if "Transfer-Encoding: chunked" not in extra
         else b"\r\n" + b"%x\r\n" % 10 + body[:10] + b"\r\n" + b"%x\r\n" % (len(body) - 10) + body[10:] + b"\r\n0\r\n\r\n")


def load(port: int, token: str = "t" * 43, *, n: int = 4, per: int = 50, seconds: float = 10.0,
         handshake: bool = False, timeout: float = 10.0) -> tuple[dict[str, int], list[int], int]:
    client = lean_client.LeanLoad(port, headers(token), CALL, n, handshake=handshake, init_body=INIT,
                                  initialized_body=INITIALIZED, check=check, timeout=timeout)
    latencies: list[int] = []
    try:
        result = client.run(per, time.perf_counter_ns() + int(seconds * 1e9), latencies)
    finally:
        client.close()
    return result, latencies, client.handshake_errors


@pytest.fixture
def server() -> Iterator[loopback.LoopbackServer]:
    srv = loopback.start(0, registry=make_registry())
    try:
        yield srv
    finally:
        srv.close()


def test_parse_reads_each_framing() -> None:
    whole = response(RIGHT)
    answer = lean_client.parse(whole + b"HTTP/1.1")
    assert answer is not None and answer.status == 200 and answer.body == RIGHT and answer.size == len(whole)
    assert not answer.close
    assert lean_client.parse(whole[:-1]) is None and lean_client.parse(whole[:20]) is None
    chunked = response(RIGHT, "Transfer-Encoding: chunked")
    answer = lean_client.parse(chunked)
    assert answer is not None and answer.body == RIGHT and answer.size == len(chunked)
    assert lean_client.parse(chunked[:-2]) is None
    framed = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + RIGHT
    assert lean_client.parse(framed) is None
    answer = lean_client.parse(framed, eof=True)
    assert answer is not None and answer.body == RIGHT and answer.close
    answer = lean_client.parse(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    assert answer is not None and answer.status == 202 and answer.close and answer.body == b""
    with pytest.raises(ValueError):
        lean_client.parse(b"SSH-2.0-OpenSSH\r\n\r\n")


def test_a_real_server_every_answer_right_and_the_counts_bounded(server: loopback.LoopbackServer) -> None:
    for handshake in (False, True):
        result, latencies, handshake_errors = load(server.port, server.token, n=4, per=50, handshake=handshake)
        assert handshake_errors == 0
        assert result == {**result, "calls": 200, "errors": 0, "closes": 0}
        assert len(latencies) == 200 and all(x > 0 for x in latencies)


def test_a_load_runs_again_on_its_connections(server: loopback.LoopbackServer) -> None:
    # The latency runs drive one connection in blocks: each run makes its own count of calls.
    client = lean_client.LeanLoad(server.port, headers(server.token), CALL, 1, handshake=True, init_body=INIT,
                                  initialized_body=INITIALIZED, check=check, timeout=10.0)
    try:
        for _ in range(3):
            latencies: list[int] = []
            result = client.run(20, time.perf_counter_ns() + 10 * 10**9, latencies)
            assert result == {**result, "calls": 20, "errors": 0, "closes": 0} and len(latencies) == 20
    finally:
        client.close()


def test_the_deadline_bounds_the_load(server: loopback.LoopbackServer) -> None:
    started = time.monotonic()
    result, _, _ = load(server.port, server.token, n=2, per=10**9, seconds=0.3)
    assert time.monotonic() - started < 5
    assert result["calls"] > 0 and result["errors"] == 0


def test_a_wrong_token_is_an_error_on_every_call(server: loopback.LoopbackServer) -> None:
    result, _, _ = load(server.port, "x" * 43, n=2, per=10)
    assert result["calls"] == 20 and result["errors"] == 20


def test_wrong_answers_are_errors_even_when_repeated() -> None:
    canned = Canned(response(WRONG))
    try:
        result, _, _ = load(canned.port, n=3, per=20)
        assert result["calls"] == 60 and result["errors"] == 60
    finally:
        canned.stop()


def test_chunked_answers_are_read_and_closes_counted() -> None:
    chunked = Canned(response(RIGHT, "Transfer-Encoding: chunked"))
    closing = Canned(response(RIGHT, "Connection: close"), close=True)
    try:
        result, _, _ = load(chunked.port, n=2, per=20)
        assert result["calls"] == 40 and result["errors"] == 0 and result["closes"] == 0
        result, _, _ = load(closing.port, n=2, per=20)
        assert result["calls"] == 40 and result["errors"] == 0 and result["closes"] == 40
    finally:
        chunked.stop()
        closing.stop()


def test_a_server_that_never_answers_is_an_error_within_the_timeout() -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never reads, never answers
    try:
        started = time.monotonic()
        result, _, _ = load(silent.getsockname()[1], n=1, per=1, timeout=0.5)
        assert result["calls"] == 1 and result["errors"] >= 1
        assert time.monotonic() - started < 5
    finally:
        silent.close()
