"""The lean client of the throughput runs: raw sockets, one thread, every answer checked.

``http.client`` costs ~150-250 us of CPU per request, so at 16 connections on a 2-core
machine the client process, not the server, was the limit: the raw-socket floor
(~25 us of server CPU per call) reached only ~1.2-1.8x the stdlib floor's throughput.
This client costs a small fraction of that:

- each connection's request is built once, as bytes (the ``Mcp-Session-Id`` a server
  gave at ``initialize`` included), and sent with one ``send``;
- one thread drives every connection through one ``selectors`` selector (epoll here):
  each keep-alive connection has exactly one request in flight, as a thread per
  connection would, without 16 threads taking turns at one GIL;
- an answer is read by its ``Content-Length``; a chunked one is decoded; one framed by
  closing the connection (no length) is read to its end and counted as a close;
- every answer is checked: an answer equal, byte for byte (head and body), to a
  whole keep-alive answer already found correct is correct; any other is parsed and
  must have status 200 and a body equal to one already found correct by the full check
  (``check``: the JSON-RPC id, ``isError`` false, the text "3") or pass that check
  itself; a wrong one is an error;
- an exception, a connection the server closed or reset, or an answer that takes
  longer than ``timeout`` is an error: the connection is replaced (a new handshake,
  whose errors count too) and the load goes on;
- bounded: each connection stops after ``per_connection`` requests, no request is sent
  after ``deadline_ns``, and those in flight then get ``timeout`` more seconds.

Loopback only: every socket goes to 127.0.0.1. Stdlib only.
"""

from __future__ import annotations

import json
import selectors
import socket
import time
from typing import Any, Callable, Optional

HOST = "127.0.0.1"
PATH = "/mcp"
_RECV = 262144
_MAX_HEAD = 65536
_MAX_GOOD = 16  # distinct correct bodies remembered for the byte compare
_MAX_KNOWN = 256  # whole correct answers remembered (their Date changes every second)


def build_request(port: int, headers: dict[str, str], body: bytes) -> bytes:
    """A POST of ``body`` to /mcp with ``headers``, as http.client would send it."""
    lines = [f"POST {PATH} HTTP/1.1", f"Host: {HOST}:{port}", "Accept-Encoding: identity",
             f"Content-Length: {len(body)}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Answer:
    """One parsed response: its size in the buffer, status, body and whether it closes."""

    __slots__ = ("size", "status", "body", "close", "session")

    def __init__(self, size: int, status: int, body: bytes, close: bool, session: Optional[str]) -> None:
        self.size, self.status, self.body, self.close, self.session = size, status, body, close, session


def _field(low: bytes, name: bytes) -> Optional[bytes]:
    """The value of header ``name`` (lowercase, with its colon) in a lowercased head."""
    i = low.find(b"\r\n" + name)
    if i < 0:
        return None
    i += 2 + len(name)
    j = low.find(b"\r\n", i)
    return low[i:j if j >= 0 else len(low)].strip()


def parse(buf: bytes, eof: bool = False) -> Optional[Answer]:
    """The first whole response in ``buf``; None if more bytes are needed. ``eof``: the
    server has closed, so a body framed by the close is complete. Raises ValueError on
    a malformed response."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > _MAX_HEAD:
            raise ValueError("response head too long")
        return None
    head = buf[:end]
    if head[:9] not in (b"HTTP/1.1 ", b"HTTP/1.0 "):
        raise ValueError(f"not an HTTP response: {head[:40]!r}")
    status = int(head[9:12])
    low = head.lower()
    close = head[:9] == b"HTTP/1.0 "
    connection = _field(low, b"connection:")
    if connection is not None:
        close = b"close" in connection or (close and b"keep-alive" not in connection)
    start = end + 4
    length = _field(low, b"content-length:")
    encoding = _field(low, b"transfer-encoding:")
    if encoding is not None and b"chunked" in encoding:
        body, size = _chunked(buf, start)
        if size < 0:
            return None
    elif length is not None:
        n = int(length)
        if n < 0:
            raise ValueError("negative Content-Length")
        if len(buf) < start + n:
            return None
        body, size = buf[start:start + n], start + n
    elif status in (204, 304) or 100 <= status < 200:
        body, size = b"", start
    else:  # framed by the close of the connection
        if not eof:
            return None
        body, size, close = buf[start:], len(buf), True
    session = None
    if b"mcp-session-id:" in low:
        i = low.find(b"\r\nmcp-session-id:") + 17
        j = head.find(b"\r\n", i)
        session = head[i:j if j >= 0 else len(head)].strip().decode("latin-1")
    return Answer(size, status, body, close, session)


def _chunked(buf: bytes, pos: int) -> tuple[bytes, int]:
    """(body, end) of the chunked body at ``pos``; end -1 when incomplete."""
    parts = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return b"", -1
        size = int(buf[pos:eol].split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:  # trailers, then a blank line
            end = buf.find(b"\r\n\r\n", pos - 2)
            if end < 0:
                return b"", -1
            return b"".join(parts), end + 4
        if len(buf) < pos + size + 2:
            return b"", -1
        parts.append(buf[pos:pos + size])
        pos += size + 2


def exchange(sock: socket.socket, request: bytes, timeout: float) -> Answer:
    """Send one request on a blocking socket and read its whole answer."""
    sock.sendall(request)
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        answer = parse(buf)
        if answer is not None:
            return answer
        if time.monotonic() > deadline:
            raise TimeoutError("no answer in time")
        data = sock.recv(_RECV)
        if not data:
            answer = parse(buf, eof=True)
            if answer is None:
                raise ConnectionError("the server closed the connection mid-answer")
            return answer
        buf += data


class _Conn:
    __slots__ = ("sock", "request", "buf", "sent", "calls", "busy")

    def __init__(self, sock: socket.socket, request: bytes) -> None:
        self.sock, self.request, self.buf, self.sent, self.calls, self.busy = sock, request, b"", 0, 0, False


class LeanLoad:
    """``n`` keep-alive connections to one server, each ready to send ``body``.

    ``handshake`` does ``initialize`` and ``notifications/initialized`` on each (with
    the ``init_body`` and ``initialized_body`` given) and keeps the session id a server
    gives; ``check(body) -> bool`` is the full check of an answer.
    """

    def __init__(self, port: int, headers: dict[str, str], body: bytes, n: int, *, handshake: bool,
                 init_body: bytes, initialized_body: bytes, check: Callable[[bytes], bool],
                 timeout: float = 10.0) -> None:
        self.port, self.headers, self.body, self.handshake = port, headers, body, handshake
        self.init_body, self.initialized_body, self.check, self.timeout = init_body, initialized_body, check, timeout
        self.handshake_errors = 0
        self.good: set[bytes] = set()
        self.conns = [self._connect() for _ in range(n)]

    def _connect(self) -> _Conn:
        """A connected socket, after the handshake when asked; its request prebuilt."""
        sock = socket.create_connection((HOST, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        headers = self.headers
        if self.handshake:
            try:
                answer = exchange(sock, build_request(self.port, headers, self.init_body), self.timeout)
                if answer.status != 200 or "result" not in json.loads(answer.body):
                    self.handshake_errors += 1
                if answer.session:
                    headers = {**headers, "Mcp-Session-Id": answer.session}
                answer = exchange(sock, build_request(self.port, headers, self.initialized_body), self.timeout)
                if answer.status not in (200, 202):
                    self.handshake_errors += 1
                if answer.close:
                    raise ConnectionError("the server closed after the handshake")
            except Exception:
                self.handshake_errors += 1
                sock.close()
                sock = socket.create_connection((HOST, self.port), timeout=self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return _Conn(sock, build_request(self.port, headers, self.body))

    def _ok(self, answer: Answer) -> bool:
        if answer.status != 200:
            return False
        body = answer.body
        if body in self.good:
            return True
        try:
            ok = bool(self.check(body))
        except Exception:
            ok = False
        if ok and len(self.good) < _MAX_GOOD:
            self.good.add(body)
        return ok

    def run(self, per_connection: int, deadline_ns: int, latencies: list[int]) -> dict[str, int]:
        """Load until every connection has made ``per_connection`` requests or
        ``deadline_ns`` (``time.perf_counter_ns``) has passed; then wait (up to ``timeout``)
        for the answers in flight. Appends each request's latency (ns) to ``latencies``.
        Returns calls, errors, closes and ``end_ns`` (when the last answer came)."""
        perf = time.perf_counter_ns
        append = latencies.append
        timeout_ns = int(self.timeout * 1e9)
        # Whole answers (head and body) already parsed and found correct, keep-alive: the
        # same bytes again are the same answer. The Date field makes them change once a
        # second, so the set is emptied when it grows.
        known: set[bytes] = set()
        stats = {"calls": 0, "errors": 0, "closes": 0, "busy": 0}
        selector = selectors.DefaultSelector()
        last = perf()

        def send(c: _Conn) -> bool:
            """Send c's request; False if the connection failed (then it was replaced and
            the request counted as a call with an error)."""
            c.sent = perf()
            try:
                sent = c.sock.send(c.request)
                if sent != len(c.request):  # a request is a few hundred bytes: rare
                    c.sock.setblocking(True)
                    c.sock.sendall(c.request[sent:])
                    c.sock.setblocking(False)
            except OSError:
                stats["errors"] += 1
                stats["calls"] += 1
                c.calls += 1
                replace(c)
                return False
            c.busy = True
            stats["busy"] += 1
            return True

        def done(c: _Conn, now: int, ok: bool) -> None:
            """The request in flight on c is over (answered, or failed if not ``ok``)."""
            append(now - c.sent)
            stats["calls"] += 1
            c.calls += 1
            if c.busy:
                c.busy = False
                stats["busy"] -= 1
            if not ok:
                stats["errors"] += 1

        def replace(c: _Conn) -> None:
            """Close c's socket and connect again (its handshake errors counted)."""
            try:
                selector.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.sock.close()
            if c.busy:
                c.busy = False
                stats["busy"] -= 1
            c.buf = b""
            try:
                fresh = self._connect()
            except OSError:
                stats["errors"] += 1
                c.calls = per_connection  # the server is gone: this connection stops
                return
            c.sock, c.request = fresh.sock, fresh.request
            selector.register(c.sock, selectors.EVENT_READ, c)

        def next_request(c: _Conn) -> None:
            while c.calls < per_connection and perf() < deadline_ns and not send(c):
                pass

        for c in self.conns:
            c.calls = 0  # per run: a load may run again (the latency runs' blocks)
            selector.register(c.sock, selectors.EVENT_READ, c)
        try:
            for c in self.conns:
                next_request(c)
            sweep = perf() + 100_000_000
            while stats["busy"]:
                events = selector.select(0.1)
                now = perf()
                if now >= sweep:  # answers that never came: errors, their connections replaced
                    sweep = now + 100_000_000
                    for c in self.conns:
                        if c.busy and now - c.sent > timeout_ns:
                            done(c, now, False)
                            replace(c)
                            next_request(c)
                for key, _ in events:
                    c = key.data
                    try:
                        data = c.sock.recv(_RECV)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = None
                    now = perf()
                    if not c.buf and data in known:  # the very bytes of an answer found correct
                        done(c, now, True)
                        last = now
                        next_request(c)
                        continue
                    if not data:  # closed or reset: the answer in flight is lost (or framed by the close)
                        answer = None
                        if data is not None and c.buf:
                            try:
                                answer = parse(c.buf, eof=True)
                            except ValueError:
                                answer = None
                        ok = answer is not None and self._ok(answer)
                        done(c, now, ok)
                        if ok:
                            stats["closes"] += 1
                        last = now
                        replace(c)
                        next_request(c)
                        continue
                    c.buf += data
                    try:
                        answer = parse(c.buf)
                    except ValueError:
                        done(c, now, False)
                        replace(c)
                        next_request(c)
                        continue
                    if answer is None:
                        continue
                    last = now
                    ok = self._ok(answer)
                    done(c, now, ok)
                    if len(c.buf) > answer.size:  # more than one answer to one request
                        stats["errors"] += 1
                        replace(c)
                    elif answer.close:
                        stats["closes"] += 1
                        replace(c)
                    else:
                        if ok:
                            if len(known) >= _MAX_KNOWN:
                                known.clear()
                            known.add(c.buf)
                        c.buf = b""
                    next_request(c)
        finally:
            selector.close()
        return {"calls": stats["calls"], "errors": stats["errors"], "closes": stats["closes"], "end_ns": last}

    def close(self) -> None:
        for c in self.conns:
            c.sock.close()
