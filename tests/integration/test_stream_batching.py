"""Events that queue behind a write go out together in the next one; a lone event leaves
at once. Real servers, raw sockets reading the chunked ``text/event-stream`` bodies: the
server writes each batch as one chunk (the response head with the first), so the chunks a
client reads are the writes the server made."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any, Iterator, Optional

import pytest

import loopback
from conftest import Client, make_registry

BIG = 8 * 1024 * 1024  # more than the kernel's socket buffers hold: a write of it waits for the reader
SMALL = 50


class ChunkReader:
    """Reads an HTTP/1.1 response with a chunked body from a raw socket, chunk by chunk."""

    def __init__(self, sock: socket.socket, deadline: float = 20.0) -> None:
        self.sock = sock
        self.buf = b""
        self.end = time.monotonic() + deadline

    def _fill(self, need: int) -> None:
        while len(self.buf) < need:
            assert time.monotonic() < self.end, "the response did not arrive in time"
            data = self.sock.recv(1 << 20)
            assert data, "the server closed the connection"
            self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill(len(self.buf) + 1)
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            self._fill(len(self.buf) + 1)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert b"\r\nTransfer-Encoding: chunked" in head, head
        return head

    def chunk(self) -> Optional[bytes]:
        """The next chunk's data; None for the terminal chunk."""
        size = int(self._line(), 16)
        self._fill(size + 2)
        data, self.buf = self.buf[:size], self.buf[size + 2:]
        return data if size else None


def events_of(data: bytes) -> list[dict[str, Any]]:
    """The SSE events in ``data`` (whole events only), each as {'id': .., 'message': ..}."""
    out = []
    for block in data.split(b"\n\n"):
        if not block:
            continue
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
        raw = fields.get(b"data", b"").strip()
        out.append({"id": fields.get(b"id", b"").decode(), "message": json.loads(raw) if raw else None})
    return out


def post(port: int, token: str, message: dict[str, Any], session_id: Optional[str] = None) -> socket.socket:
    """A raw POST of ``message`` on a fresh connection whose receive buffer is small."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(20)
    sock.connect(("127.0.0.1", port))
    body = json.dumps(message).encode()
    extra = f"Mcp-Session-Id: {session_id}\r\n" if session_id else ""
    sock.sendall((f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                  f"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
                  f"MCP-Protocol-Version: 2025-11-25\r\n{extra}Content-Length: {len(body)}\r\n\r\n").encode() + body)
    return sock


def call(name: str, arguments: dict[str, Any], request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": {"progressToken": "p"}}}


class Flood:
    """What the ``flood`` tool's second thread did: set when all its sends had returned."""

    def __init__(self) -> None:
        self.sending = threading.Event()   # the tool is about to send its big notification
        self.others_done = threading.Event()


@pytest.fixture
def flood() -> Flood:
    return Flood()


@pytest.fixture
def srv(flood: Flood) -> Iterator[loopback.LoopbackServer]:
    registry = make_registry()

    @registry.tool
    def big_then_many(ctx: loopback.Context) -> str:
        """One notification too big for the socket buffers, then SMALL more from another
        thread while the first is still being written (the client is not reading)."""
        def others() -> None:
            flood.sending.wait(10)
            time.sleep(0.3)  # the big one is queued and its write under way by now
            for i in range(SMALL):
                ctx.progress(i + 2, SMALL + 1, "small")
            flood.others_done.set()

        helper = threading.Thread(target=others, name="test-flood-sender")
        helper.start()
        flood.sending.set()
        ctx.progress(1, SMALL + 1, "x" * BIG)
        helper.join(20)
        return "done"

    @registry.tool
    def one_step_at_a_time(ctx: loopback.Context, steps: int) -> str:
        """A notification per step; the next only once the client has acknowledged it."""
        for step in range(1, steps + 1):
            ctx.progress(step, steps, f"step {step}")
            if not acked[step].wait(10):
                return f"step {step} was not seen while the tool waited"
        return "done"

    @registry.tool
    def many_threads(ctx: loopback.Context, threads: int, each: int) -> str:
        """``each`` notifications from each of ``threads`` threads started together."""
        gate = threading.Barrier(threads)

        def run(k: int) -> None:
            gate.wait(10)
            for i in range(each):
                ctx.progress(i + 1, each, f"t{k}")

        workers = [threading.Thread(target=run, args=(k,), name=f"test-sender-{k}") for k in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(20)
        return "done"

    acked = {step: threading.Event() for step in range(1, 4)}
    server = loopback.start(0, registry=registry)
    server.acked = acked  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        for event in acked.values():
            event.set()
        server.close()


def test_notifications_queued_behind_a_write_go_out_in_one_write(srv: loopback.LoopbackServer, flood: Flood) -> None:
    sock = post(srv.port, srv.token, call("big_then_many", {}))
    try:
        # The client reads nothing yet: the big notification's write cannot finish, and the
        # other thread's notifications must still return at once (queued, not blocked).
        assert flood.others_done.wait(10), "senders waited for a write the client does not read"
        reader = ChunkReader(sock)
        reader.head()
        chunks = []
        while (data := reader.chunk()) is not None:
            chunks.append(data)
        # The priming event and the big one (one write), the SMALL queued behind it (one
        # write, written by the big one's thread when its write returned), the result and
        # the end of the body (one write).
        assert len(chunks) == 3, [len(c) for c in chunks]
        first, second, third = (events_of(c) for c in chunks)
        assert [e["message"] for e in first][0] is None and len(first) == 2
        assert len(first[1]["message"]["params"]["message"]) == BIG
        assert [e["message"]["params"]["progress"] for e in second] == list(range(2, SMALL + 2))
        assert third[0]["message"]["id"] == 1 and third[0]["message"]["result"]["content"][0]["text"] == "done"
        ids = [e["id"] for e in first + second + third]
        assert ids == [f"s1-{i}" for i in range(SMALL + 3)]  # numbered in order, none lost
        # The body ended cleanly: the connection serves the next request.
        sock.sendall((f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nAuthorization: Bearer {srv.token}\r\n"
                      f"Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: 40\r\n\r\n"
                      '{"jsonrpc":"2.0","id":7,"method":"ping"}').encode())
        reply = b""
        while not reply.endswith(b"}"):
            data = sock.recv(65536)
            assert data
            reply += data
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b'{"jsonrpc":"2.0","id":7,"result":{}}')
    finally:
        sock.close()


def test_a_lone_notification_leaves_at_once_while_the_tool_runs(srv: loopback.LoopbackServer) -> None:
    acked = srv.acked  # type: ignore[attr-defined]
    sock = post(srv.port, srv.token, call("one_step_at_a_time", {"steps": 3}))
    try:
        reader = ChunkReader(sock)
        reader.head()
        seen: list[dict[str, Any]] = []
        for step in range(1, 4):
            # The tool waits for this acknowledgement before it sends anything else: the
            # notification must arrive on its own, while the call is still running.
            started = time.monotonic()
            while not any(e["message"] and e["message"].get("params", {}).get("progress") == step for e in seen):
                data = reader.chunk()
                assert data is not None, "the stream ended early"
                seen.extend(events_of(data))
            assert time.monotonic() - started < 5
            acked[step].set()
        rest = []
        while (data := reader.chunk()) is not None:
            rest.extend(events_of(data))
        assert rest[-1]["message"]["result"]["content"][0]["text"] == "done"
        assert [e["id"] for e in seen + rest] == [f"s1-{i}" for i in range(5)]
    finally:
        sock.close()


def test_many_senders_at_once_lose_nothing_and_keep_each_ones_order(srv: loopback.LoopbackServer) -> None:
    threads, each = 4, 100
    sock = post(srv.port, srv.token, call("many_threads", {"threads": threads, "each": each}))
    try:
        reader = ChunkReader(sock)
        reader.head()
        chunks = []
        while (data := reader.chunk()) is not None:
            chunks.append(data)
        events = [e for c in chunks for e in events_of(c)]
        assert [e["id"] for e in events] == [f"s1-{i}" for i in range(threads * each + 2)]
        progress: dict[str, list[float]] = {}
        for e in events[1:-1]:
            params = e["message"]["params"]
            progress.setdefault(params["message"], []).append(params["progress"])
        assert progress == {f"t{k}": list(range(1, each + 1)) for k in range(threads)}
        assert events[-1]["message"]["result"]["content"][0]["text"] == "done"
        assert len(chunks) <= len(events)  # never more writes than events
    finally:
        sock.close()


def test_get_stream_writes_what_queued_behind_a_write_together(srv: loopback.LoopbackServer) -> None:
    client = Client(srv.port, srv.token)
    session_id = client.open_session()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(20)
    try:
        sock.connect(("127.0.0.1", srv.port))
        sock.sendall((f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nAuthorization: Bearer {srv.token}\r\n"
                      f"Accept: text/event-stream\r\nMcp-Session-Id: {session_id}\r\n\r\n").encode())
        reader = ChunkReader(sock)
        reader.head()
        priming = events_of(reader.chunk() or b"")
        assert priming[0]["message"] is None
        # One message too big for the socket buffers (the stream's thread is writing it,
        # the client reading nothing), then SMALL more queued behind it.
        assert srv._httpd.broadcast("notifications/message", {"level": "info", "data": "x" * BIG}) == 1
        time.sleep(0.3)
        for i in range(SMALL):
            assert srv._httpd.broadcast("notifications/message", {"level": "info", "data": i}) == 1
        big = events_of(reader.chunk() or b"")
        assert len(big) == 1 and len(big[0]["message"]["params"]["data"]) == BIG
        rest = events_of(reader.chunk() or b"")  # every queued one, in one write
        assert [e["message"]["params"]["data"] for e in rest] == list(range(SMALL))
        stream = priming[0]["id"].rsplit("-", 1)[0]
        assert [e["id"] for e in priming + big + rest] == [f"{stream}-{i}" for i in range(SMALL + 2)]
    finally:
        sock.close()
        client.close()
