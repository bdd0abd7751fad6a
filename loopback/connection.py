"""One client connection: the loop that reads a request, asks the policy, reads the body,
dispatches, and writes the answer once.

Owns: ``Endpoint`` (everything one server's connections share, passed explicitly:
settings, tools, tokens, sessions, the per-grant client states, the disconnect
watcher, the set of idle connections the connection cap may close, the task pool
and task manager, the open ``subscriptions/listen`` requests, and where a task's
status notifications go) and
``Connection``: HTTP/1.1 keep-alive with each response built whole and written with
one send; the time limits (the idle limit as the kernel's socket timeouts, the head
and body deadlines as Python ones only while they run); reading the head
(``http11.head_end``) and the body (sliced off the buffer when it came whole with its
head, else fed to an ``http11`` receiver); the last POST head's bytes with their parse
and admission, reused when the next head repeats them byte for byte up to the same
blank line (its token's grant checked every time); the response head prefixes of this
Date second;
which ``ClientState``
serves a request (its session's, a fresh one per 2026-07-28 request, or its grant's
own); sessions made by ``initialize`` and ended by ``DELETE``; noting each request for
the call log (a ``calllog.Note``, only when ``Endpoint.calls.wanted()``: one check per
request when nothing wants records).
Must not know: the admission rules (``admission``), the head syntax (``http11``), MCP
methods (``protocol.plan`` says what the shell needs), or how streams are framed
(``streams``, ``sessions``).

A refusal given before an announced body was read closes the connection: those
unread bytes must never be parsed as the next request.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import struct
import threading
import time
from typing import Any, Callable, Optional, Union

from . import admission, calllog, eras, http11, jsonrpc, protocol, streams, subscriptions, tasks, workers
from .admission import SESSION_HEADER, Admission, Preflight
from .auth import Grant, TokenStore
from .callsinks import CallLog
from .context import ClientState, RequestContext, RequestState
from .errors import HttpError, ProtocolError
from .jsonrpc import JsonRpcError
from .sessions import Session, SessionTable
from .settings import Settings

_log = logging.getLogger("loopback")

_READ_CHUNK = 65536
# After a refusal that leaves bytes unread, the rest is read and dropped for a moment
# before closing: a close with unread data sends a reset, which can destroy the refusal
# before the client reads it (Apache's and nginx's "lingering close").
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1 << 20
_GATHER_OVER = 1 << 16  # a body larger than this is not copied behind its head to be sent
_HAS_SENDMSG = hasattr(socket.socket, "sendmsg")  # not on Windows
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = (None, "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_date(timestamp: float) -> str:
    """An IMF-fixdate (RFC 9110 5.6.7), English names whatever the locale."""
    t = time.gmtime(timestamp)
    return (f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


class _Memo:
    """A POST head's bytes and what was decided from them, kept for the next head that
    repeats them byte for byte."""

    __slots__ = ("raw", "head", "request_line", "admitted", "version_header", "close", "expects_continue")

    def __init__(self, raw: bytes, head: http11.RequestHead, request_line: str, admitted: Admission,
                 version_header: Optional[str]) -> None:
        self.raw = raw
        self.head = head
        self.request_line = request_line
        self.admitted = admitted
        self.version_header = version_header
        self.close = not head.keep_alive
        self.expects_continue = head.expects_continue


class _ClientLeft(Exception):
    """The client closed the connection (``timed_out`` False), or a head or body missed its deadline."""

    def __init__(self, timed_out: bool) -> None:
        super().__init__("timed out" if timed_out else "end of file")
        self.timed_out = timed_out


class Endpoint:
    """What every connection of one server shares. Built by the server, read by connections."""

    def __init__(self, *, port: int, settings: Settings, registry: Any, tokens: Optional[TokenStore],
                 version: str, extra_hosts: frozenset[str] = frozenset(), calls: Optional[CallLog] = None) -> None:
        self.port = port
        self.settings = settings
        self.registry = registry
        self.tokens = tokens
        self.version = version
        self.extra_hosts = extra_hosts
        self.sessions = SessionTable(settings)
        self.calls = calls if calls is not None else CallLog(settings)
        self.watcher = streams.DisconnectWatcher(f"loopback-mcp:{port}:watch")
        self.closing = False
        self.writing: set[socket.socket] = set()  # a response is being written to these now
        self.idle: dict[socket.socket, float] = {}  # waiting for a request: since when
        self._states: dict[Optional[Grant], ClientState] = {}  # requests outside a session, per grant
        self._states_lock = threading.Lock()
        self._date: tuple[int, str] = (-1, "")
        self.runner = workers.deadline_runner(settings.tool_timeout) if settings.tool_timeout is not None else None
        self.task_pool = workers.TaskPool(settings.task_workers, f"loopback-task:{port}")
        self.tasks = tasks.TaskManager(settings, self.task_pool.submit)
        self.listeners = subscriptions.Listeners()  # open subscriptions/listen requests (2026-07-28)
        self.tasks.on_status = self._task_status
        if tokens is not None:
            tokens.on_end(self.end_principal)

    def state_for(self, grant: Optional[Grant]) -> ClientState:
        """The state of ``grant``'s requests that name no session (one per grant, never shared)."""
        state = self._states.get(grant)
        if state is None:
            with self._states_lock:
                state = self._states.get(grant)
                if state is None:
                    state = self._states[grant] = ClientState(grant)
        return state

    def states(self) -> list[ClientState]:
        with self._states_lock:
            return list(self._states.values())

    def end_principal(self, grant: Grant) -> None:
        """A grant ended (revoked or expired): its sessions, streams and waiting requests end."""
        self.sessions.remove_principal(grant)
        self.tasks.end_owner(grant)
        with self._states_lock:
            state = self._states.pop(grant, None)
        if state is not None:
            state.end("the token was revoked")

    def date(self) -> str:
        """The Date header value, formatted once per second."""
        now = int(time.time())
        second, text = self._date
        if second != now:
            text = format_date(now)
            self._date = (now, text)  # one tuple: never a half-updated pair
        return text

    def _task_status(self, task: tasks.Task) -> None:
        """A task's new status: ``notifications/tasks/status`` on the creating session's
        standalone stream (2025-11-25), ``notifications/tasks`` on the owner's
        ``subscriptions/listen`` streams that named it (2026-07-28)."""
        if task.modern:
            self.listeners.deliver_task(task.owner, task.id, task.detailed())
            return
        send = task.state.standalone
        if send is not None:
            send(jsonrpc.notification("notifications/tasks/status", task.fields()))

    def broadcast(self, method: str, params: Optional[dict[str, Any]] = None, *, uri: Optional[str] = None) -> int:
        """Send a notification on every session's standalone stream (only the sessions
        subscribed to ``uri`` when given) and on every ``subscriptions/listen`` stream that
        asked for it; returns how many took it."""
        message = jsonrpc.notification(method, params)
        sent = self.listeners.deliver(method, params)
        for session in self.sessions.sessions():
            if uri is not None and uri not in session.state.subscriptions:
                continue
            sent += session.notify(message)
        return sent


class Connection(socketserver.BaseRequestHandler, streams.Writer):
    """One connection, served on a thread of its own until the client or the server ends it."""

    request: socket.socket
    close_connection = True
    http10 = False
    _note: Optional[calllog.Note] = None  # the request being served, when the call log wants it

    def setup(self) -> None:
        self.endpoint: Endpoint = self.server.endpoint  # type: ignore[attr-defined]
        self.sock = self.request
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        # The idle limit is the kernel's (SO_RCVTIMEO/SO_SNDTIMEO on a blocking socket):
        # a Python-level socket timeout costs a poll() before every recv and send. Python
        # timeouts are used only while a deadline runs (a slow head or body).
        seconds = self.endpoint.settings.idle_timeout
        whole = int(seconds)
        self._kernel_timeout = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
        self._idle()
        self._buffer = b""
        self._seen_fields: dict[bytes, tuple[str, str]] = {}  # header lines of this connection
        self._cors: tuple[tuple[str, str], ...] = ()
        self._head_only = False
        self._request_line = ""
        self._blank = b""  # the blank line that ended the last head read
        self._linger = False  # a refusal left bytes unread: drain them before closing
        self._heads_date = ""
        self._heads: dict[tuple[Any, ...], bytes] = {}  # head prefixes of this Date second
        # The last request head's bytes and what was decided from them: a client repeats
        # its heads, so a repeat skips parsing and admission (its token still checked).
        self._memo: Optional[_Memo] = None
        self._memo_head = b""  # the memoised head's bytes with the blank line that ended them

    def _idle(self) -> None:
        """Back to the idle limit after a deadline: blocking I/O under the kernel's timeouts."""
        sock = self.sock
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self._kernel_timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self._kernel_timeout)

    def handle(self) -> None:
        endpoint = self.endpoint
        calls = endpoint.calls
        try:
            while not endpoint.closing:
                self.close_connection = True
                if calls.wanted():
                    self._serve_noted(calls)
                else:
                    self._serve_one()
                if self.close_connection:
                    break
        except (_ClientLeft, OSError) as exc:
            _log.debug("connection from %s ended: %s", self.client_address[0], type(exc).__name__)
        finally:
            endpoint.idle.pop(self.sock, None)
        if self._linger:
            self._lingering_close()

    def _lingering_close(self) -> None:
        """Send our FIN, then drop what the client still sends until its own FIN (bounded)."""
        sock = self.sock
        deadline = time.monotonic() + _LINGER_SECONDS
        dropped = 0
        try:
            sock.shutdown(socket.SHUT_WR)
            while dropped < _LINGER_BYTES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                sock.settimeout(remaining)
                data = sock.recv(_READ_CHUNK)
                if not data:
                    break
                dropped += len(data)
        except OSError:
            pass

    def _serve_noted(self, calls: CallLog) -> None:
        """``_serve_one`` with its request noted (from the end of its head) and recorded."""
        try:
            self._serve_one(calls)
        finally:
            note, self._note = self._note, None
            if note is not None:
                calls.finish(note)

    # -- reading -------------------------------------------------------------

    def _recv(self, deadline: Optional[float]) -> bytes:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _ClientLeft(timed_out=True)
            self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(_READ_CHUNK)
        except (socket.timeout, BlockingIOError):
            raise _ClientLeft(timed_out=True) from None
        if not data:
            raise _ClientLeft(timed_out=False)
        return data

    def _read_head(self) -> bytes:
        """The next request head (without its blank line); the rest stays buffered."""
        buffer = self._buffer
        if not buffer:
            idle = self.endpoint.idle
            idle[self.sock] = time.monotonic()  # the connection cap may close it now
            try:
                buffer = self._recv(None)  # waits up to idle_timeout (the kernel's)
            finally:
                idle.pop(self.sock, None)
        if buffer[:2] == b"\r\n":  # RFC 9112 2.2: ignore a stray CRLF before a request
            buffer = buffer[2:]
        elif buffer[:1] == b"\n":
            buffer = buffer[1:]
        repeat = self._memo_head
        if repeat and buffer.startswith(repeat):
            # The same head bytes and the same blank line after them: ``head_end`` would
            # find the same end (it looks no further than the first blank line, and the
            # checks it makes are of those bytes), so it is not run again.
            self._buffer = buffer[len(repeat):]
            memo = self._memo
            assert memo is not None
            return memo.raw
        deadline: Optional[float] = None
        try:
            while True:
                try:
                    found = http11.head_end(buffer)
                except HttpError:
                    self._buffer = b""
                    raise
                if found is not None:
                    end, body = found
                    self._buffer = buffer[body:]
                    self._blank = buffer[end:body]
                    return buffer[:end]
                # The first byte has come: the whole head gets body_timeout, in total, so
                # a client trickling one byte at a time cannot pin this thread.
                if deadline is None:
                    deadline = time.monotonic() + self.endpoint.settings.body_timeout
                buffer += self._recv(deadline)
        finally:
            if deadline is not None:
                self._idle()

    def _read_body(self, receiver: Union[http11.LengthReceiver, http11.ChunkedReceiver], expects_continue: bool) -> bytes:
        """Feed the receiver until the body is whole; the rest stays buffered."""
        self._buffer = receiver.feed(self._buffer)
        if receiver.done:
            return receiver.body()
        if expects_continue:
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        deadline = time.monotonic() + self.endpoint.settings.body_timeout
        try:
            while not receiver.done:
                try:
                    data = self._recv(deadline)
                except _ClientLeft as exc:
                    if exc.timed_out:
                        raise HttpError(408, "Request Timeout: the body did not arrive in time", close=True) from None
                    raise
                self._buffer = receiver.feed(data)
        finally:
            self._idle()
        return receiver.body()

    # -- writing -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        writing = self.endpoint.writing
        writing.add(self.sock)  # close() may cut a write a client stopped reading
        try:
            self.sock.sendall(data)
        finally:
            writing.discard(self.sock)

    def _write_both(self, head: bytes, body: bytes) -> None:
        """Head and a large body in one gathered write, without copying them together."""
        writing = self.endpoint.writing
        writing.add(self.sock)
        try:
            views = [memoryview(head), memoryview(body)]
            while views:
                sent = self.sock.sendmsg(views)
                while views and sent >= len(views[0]):
                    sent -= len(views[0])
                    views.pop(0)
                if views and sent:
                    views[0] = views[0][sent:]
        finally:
            writing.discard(self.sock)

    def _fields(self, content_type: Optional[str], headers: tuple[tuple[str, str], ...]) -> list[str]:
        fields = ["Server: loopback", f"Date: {self.endpoint.date()}"]
        if content_type:
            fields.append(f"Content-Type: {content_type}")
        fields.extend(f"{name}: {value}" for name, value in (*self._cors, *headers))
        return fields

    def _head_prefix(self, status: int, content_type: Optional[str], headers: tuple[tuple[str, str], ...]) -> bytes:
        """The head of a response up to its framing fields, built once per Date second
        for each kind of response this connection sends (a client repeats its requests)."""
        date = self.endpoint.date()
        if self._heads_date is not date:
            self._heads_date = date
            self._heads = {}
        key = (status, content_type, headers, self._cors)
        prefix = self._heads.get(key)
        if prefix is None:
            prefix = http11.head_prefix(status, self._fields(content_type, headers))
            if len(self._heads) < 16:
                self._heads[key] = prefix
        return prefix

    def send(self, status: int, body: bytes = b"", content_type: Optional[str] = "application/json",
             headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Write a whole response (head and body) with one send."""
        if self.endpoint.closing:
            self.close_connection = True
        head = (self._head_prefix(status, content_type if body else None, headers)
                + http11.head_suffix(status, len(body), self.close_connection))
        # A response to HEAD has no content (RFC 9110 9.3.2), only its Content-Length.
        if self._head_only:
            self.write(head)
        elif len(body) > _GATHER_OVER and _HAS_SENDMSG:
            self._write_both(head, body)
        else:
            self.write(head + body)
        note = self._note
        if note is not None:
            note.status = status
            note.bytes_out = len(body)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug('%s "%s" %d %d', self.client_address[0], self._request_line, status, len(body))

    def stream_head(self, fields: tuple[str, ...]) -> bytes:
        return http11.response_head(200, [*self._fields(None, ()), *fields])

    def end_response_early(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def refuse(self, error: ProtocolError, request_id: Any = None) -> None:
        """An error answer: its status, and a JSON-RPC error body that clients can show."""
        headers = error.headers if isinstance(error, HttpError) else ()
        if isinstance(error, HttpError) and error.close:
            self.close_connection = True
            self._linger = True
        if self._note is not None:
            self._note.error = error
        self.send(error.status, jsonrpc.encode(jsonrpc.error(request_id, error)), headers=headers)

    # -- one request -----------------------------------------------------------

    def _serve_one(self, calls: Optional[CallLog] = None) -> None:
        endpoint = self.endpoint
        self._cors = ()
        self._head_only = False
        self._request_line = ""
        try:
            raw = self._read_head()
            if calls is not None:
                self._note = calllog.Note(time.time(), time.perf_counter())
        except HttpError as exc:
            self.close_connection = self._linger = True
            self.refuse(exc)
            return
        memo = self._memo
        # A repeated head's token (the same bytes) must still have its grant: checked on
        # every request, revoked or expired sends it back through admission.
        if memo is not None and (raw is memo.raw or memo.raw == raw) and (
                endpoint.tokens is None or (memo.admitted.grant is not None
                                            and endpoint.tokens.still_live(memo.admitted.grant))):
            self._request_line = memo.request_line
            self.close_connection = memo.close
            admitted = memo.admitted
            self._cors = admitted.cors
            self._post(memo.head, admitted, memo.version_header, memo.expects_continue)
            return
        self._memo = None
        self._memo_head = b""
        try:
            line, field_lines = http11.split_head(raw)
            self._request_line = line[:200].rstrip(b"\r").decode("latin-1")
            head = http11.parse_head(line, field_lines, self._seen_fields)
        except HttpError as exc:
            self.close_connection = self._linger = True
            self.refuse(exc)
            return
        self.http10 = head.version < (1, 1)
        self.close_connection = not head.keep_alive
        self._head_only = head.method == "HEAD"
        version_header = head.headers.get("MCP-Protocol-Version")
        try:
            decision = admission.admit(
                head, port=endpoint.port, settings=endpoint.settings, tokens=endpoint.tokens,
                extra_hosts=endpoint.extra_hosts,
                modern_only=eras.is_modern_header(version_header))
        except HttpError as exc:
            if self._body_announced(head):
                self.close_connection = self._linger = True  # unread bytes must not be parsed as the next request
            self.refuse(exc)
            return
        if isinstance(decision, Admission) and decision.method == "POST" and not self.http10:
            self._memo = _Memo(raw, head, self._request_line, decision, version_header)
            self._memo_head = raw + self._blank
        if isinstance(decision, Preflight):
            self._note = None  # not an MCP request
            self.send(204, headers=decision.headers)
            return
        self._cors = decision.cors
        if decision.method == "POST":
            if self._note is not None:
                self._note.grant = decision.grant
            self._post(head, decision, version_header, head.expects_continue)
            return
        if self._body_announced(head):  # a body nobody reads must not be parsed as the next request
            self.close_connection = True
        self._note = None  # GET streams and DELETE are not recorded; only POSTed messages are
        session = self._session(decision)
        if session is None:
            return
        if decision.method == "GET":
            grant = decision.grant
            streams.serve_get(self, self.sock, session, head.headers.get("Last-Event-ID"), endpoint.settings,
                              lambda: endpoint.closing, grant.expires_at if grant is not None else None)
        else:
            endpoint.sessions.remove(session.id)
            self.send(204)

    @staticmethod
    def _body_announced(head: http11.RequestHead) -> bool:
        if head.headers.get("Transfer-Encoding"):
            return True
        return any(v.strip() not in ("0", "") for v in head.headers.get_all("Content-Length"))

    def _session(self, decision: Admission) -> Optional[Session]:
        """The live session a request names (bound to its grant), or None after refusing it."""
        session = self.endpoint.sessions.get(decision.session_id) if decision.session_id else None
        found = session is not None and session.principal is decision.grant
        refusal = admission.session_refusal(decision.session_id, found)
        if refusal is not None:
            self.refuse(refusal)
            return None
        return session

    def _post(self, head: http11.RequestHead, decision: Admission, version_header: Optional[str],
              expects_continue: bool) -> None:
        endpoint = self.endpoint
        settings = endpoint.settings
        buffer = self._buffer
        length = decision.length
        if not decision.chunked and len(buffer) >= length:  # the whole body came with its head
            body = buffer[:length]
            self._buffer = buffer[length:]
        else:
            receiver: Union[http11.LengthReceiver, http11.ChunkedReceiver] = (
                http11.ChunkedReceiver(settings.max_body_bytes) if decision.chunked
                else http11.LengthReceiver(length))
            try:
                body = self._read_body(receiver, expects_continue)
            except HttpError as exc:
                self.close_connection = True
                self.refuse(exc)
                return
        note = self._note
        if note is not None:
            note.bytes_in = len(body)
        try:
            payload = jsonrpc.decode(body)
        except JsonRpcError as exc:
            self.refuse(exc)
            return
        plan = protocol.plan(payload, version_header, endpoint.registry)
        if note is not None:  # what they say is read later, on the call log's thread
            note.payload, note.version_header, note.modern = payload, version_header, plan.modern
        grant = decision.grant
        session: Optional[Session] = None
        new_session: Optional[Session] = None
        if plan.modern:
            state: ClientState = RequestState(grant)  # nothing outlives a 2026-07-28 request
        elif settings.stateless:
            state = endpoint.state_for(grant)
        elif plan.opens_session:
            session = new_session = endpoint.sessions.create(grant)
            state = session.state
        elif decision.session_id is not None or settings.require_session:
            session = self._session(decision)
            if session is None:
                return
            state = session.state
        else:
            state = endpoint.state_for(grant)
        channel: Optional[streams.PostChannel] = None
        if decision.wants_sse and plan.may_stream:
            # Progress, log messages and requests to the client go on this response's
            # own SSE stream, which starts only when the first of them is sent.
            prime = session.primes if session is not None else (version_header or "") >= "2025-11-25"
            channel = streams.PostChannel(self, session, prime, settings)
        ctx = RequestContext(
            registry=endpoint.registry, settings=settings, protocol_version_header=version_header,
            headers=head.headers, server_version=endpoint.version, grant=grant, session=state,
            session_id=session.id if session is not None else None,
            notify=channel.notify if channel is not None else None,
            close_stream=channel.close if channel is not None else None, runner=endpoint.runner,
            tasks=endpoint.tasks, listeners=endpoint.listeners,
        )
        watched = plan.cancellable and endpoint.watcher.watch(
            self.sock, _canceller(state, plan.request_id))
        try:
            answer = protocol.handle_payload(payload, ctx, plan.modern)
        except ProtocolError as exc:
            refusal = jsonrpc.encode(jsonrpc.error(jsonrpc.request_id(payload), exc))
            if note is not None:
                note.error = exc
            if channel is not None and channel.stream is not None:
                _finish_stream(channel, refusal, note)
            else:
                self.send(exc.status, refusal)
            return
        finally:
            if watched:
                endpoint.watcher.unwatch(self.sock)
        if note is not None:
            note.answer = answer
        if answer is None:
            self.send(202)
            return
        headers: tuple[tuple[str, str], ...] = ()
        if new_session is not None and isinstance(answer, dict) and "result" in answer:
            try:
                endpoint.sessions.add(new_session)
            except HttpError as exc:
                self.refuse(exc, jsonrpc.request_id(payload))
                return
            headers = ((SESSION_HEADER, new_session.id),)
        try:
            encoded = jsonrpc.encode(answer)
        except (TypeError, ValueError):  # a tool's structuredContent that JSON cannot hold
            _log.warning("response could not be encoded as JSON")
            error = JsonRpcError(jsonrpc.INTERNAL_ERROR, "Internal error: the response could not be encoded as JSON")
            encoded = jsonrpc.encode(jsonrpc.error(jsonrpc.request_id(payload), error))
            if note is not None:
                note.error = error
        if channel is not None and channel.stream is not None:
            _finish_stream(channel, encoded, note)
        elif decision.wants_json:
            self.send(200, encoded, headers=headers)
        else:
            self.send(200, b"event: message\ndata: " + encoded + b"\n\n", "text/event-stream",
                      (("Cache-Control", "no-cache"), *headers))


def _finish_stream(channel: streams.PostChannel, data: bytes, note: Optional[calllog.Note]) -> None:
    """The answer as the last event of the call's stream (noted as a 200 of that size)."""
    if note is not None:
        note.status, note.bytes_out = 200, len(data)
    channel.finish(data)


def _canceller(state: ClientState, request_id: Any) -> Callable[[], None]:
    def cancel() -> None:
        state.cancel(request_id)
    return cancel
