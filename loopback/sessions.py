"""Sessions and event streams of the Streamable HTTP transport.

Owns: the session table (``Mcp-Session-Id`` values, the grant each is bound to and
its ``ClientState``; limits counted per grant and in total — ``max_sessions_per_grant``,
``max_sessions`` — where room is only ever made by ending an idle session of the same
grant; idle expiry; ending every session of a revoked grant), each session's event
streams (the standalone GET stream and the streams of POST requests that switched to
SSE), the SSE framing (event ids, the priming event, ``retry``, keep-alive comments)
and the bounded per-stream history that ``Last-Event-ID`` replays.
Must not know: sockets or HTTP requests (the shell hands each stream a *sink*, a
callable that delivers bytes or reports it cannot), or what MCP messages mean.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Optional

from . import jsonrpc
from .context import ClientState
from .errors import HttpError
from .settings import Settings

# A sink delivers one framed event (bytes) to a client, or ends its response when
# given None; it returns False when it cannot deliver (the client went away).
Sink = Callable[[Optional[bytes]], bool]

KEEPALIVE = b": keep-alive\n\n"
# Protocol versions whose clients understand an event with an empty data field (SEP-1699).
_PRIMING_SINCE = "2025-11-25"
_MAX_STREAMS_PER_SESSION = 16  # finished streams kept for a late Last-Event-ID
_TOUCH_INTERVAL = 0.05  # seconds: a session used more recently is not re-marked (keeps the hot path lock-free)


def frame(event_id: Optional[str], data: bytes, retry: Optional[int] = None) -> bytes:
    """One SSE event. ``data`` is compact JSON (no newline), or empty for a priming event."""
    parts = []
    if event_id is not None:
        parts.append(b"id: " + event_id.encode("ascii") + b"\n")
    if retry is not None:
        parts.append(b"retry: %d\n" % retry)
    if data:
        parts.append(b"event: message\ndata: " + data + b"\n\n")
    else:
        parts.append(b"data: \n\n")
    return b"".join(parts)


def parse_event_id(value: str) -> Optional[tuple[str, int]]:
    """``(stream id, sequence)`` of an event id this module made, else None."""
    stream_id, sep, seq = value.strip().rpartition("-")
    if not sep or not stream_id or not seq.isascii() or not seq.isdigit() or len(seq) > 12:
        return None
    return stream_id, int(seq)


class EventStream:
    """One SSE stream of a session: numbered events, a bounded history, at most one sink.

    Events sent while no sink is attached (the client went away, or the server closed
    the stream for polling) are kept in the history until a client resumes with
    ``Last-Event-ID``. ``finished`` is set once the last event is sent (a POST
    stream's response), after which the sink's response is ended.
    """

    def __init__(self, stream_id: str, history: int, retry: int, *, standalone: bool = False) -> None:
        self.id = stream_id
        self.standalone = standalone
        self.retry = retry
        self.finished = False
        self._seq = 0
        self._history: deque[tuple[int, bytes]] = deque(maxlen=history)
        self._sink: Optional[Sink] = None
        self._lock = threading.Lock()

    @property
    def attached(self) -> bool:
        return self._sink is not None

    def prime(self, sink: Sink, prime: bool) -> bool:
        """Attach ``sink`` to a new stream, sending it the priming event (id, empty data,
        ``retry``) when the client's protocol version knows it."""
        with self._lock:
            self._sink = sink
            if prime and not sink(frame(f"{self.id}-0", b"", self.retry)):
                self._sink = None
                return False
            return True

    def attach(self, sink: Sink, after: int) -> bool:
        """Resume: replay the events after sequence ``after``, then deliver live ones.

        A sink already attached is ended first (one reader per stream). Returns False
        if the replay could not be delivered. When the stream has finished, the sink's
        response is ended after the replay.
        """
        with self._lock:
            old, self._sink = self._sink, None
            if old is not None:
                old(None)
            for seq, data in self._history:
                if seq > after and not sink(data):
                    return False
            if self.finished:
                sink(None)
                return True
            self._sink = sink
            return True

    def detach(self, sink: Optional[Sink] = None, *, end: bool = False) -> None:
        """Stop delivering to ``sink`` (any sink when None); ``end`` ends its response."""
        with self._lock:
            current = self._sink
            if current is None or (sink is not None and current != sink):  # == : bound methods are remade
                return
            self._sink = None
        if end:
            current(None)

    def send(self, message: Any, *, last: bool = False) -> bool:
        """Number, frame, keep and deliver one message; True if a sink took it.

        ``last`` marks the final event (a POST stream's response): the sink's response
        is ended after it.
        """
        data = message if isinstance(message, bytes) else jsonrpc.encode(message)
        with self._lock:
            self._seq += 1
            event = frame(f"{self.id}-{self._seq}", data)
            self._history.append((self._seq, event))
            if last:
                self.finished = True
            sink = self._sink
            if sink is None:
                return False
            if not sink(event):
                self._sink = None
                return False
            if last:
                self._sink = None
                sink(None)
            return True

    def end(self) -> None:
        """Finish the stream: no more events; an attached sink's response is ended."""
        with self._lock:
            self.finished = True
            sink, self._sink = self._sink, None
        if sink is not None:
            sink(None)


class Session:
    """One MCP session: its id, the grant that opened it and its state and streams."""

    def __init__(self, session_id: str, principal: Any, settings: Settings) -> None:
        self.id = session_id
        self.principal = principal  # the Grant that initialized it (None: auth is off)
        self.state = ClientState(principal)
        self.last_used = time.monotonic()
        self.ended = False
        self._settings = settings
        self._streams: "OrderedDict[str, EventStream]" = OrderedDict()
        self._lock = threading.Lock()
        self._counter = 0
        self.standalone: Optional[EventStream] = None

    @property
    def primes(self) -> bool:
        """Whether this client gets priming events (its version is 2025-11-25 or newer)."""
        version = self.state.protocol_version
        return isinstance(version, str) and version >= _PRIMING_SINCE

    def new_stream(self, *, standalone: bool = False) -> EventStream:
        with self._lock:
            self._counter += 1
            stream = EventStream(f"{'g' if standalone else 'p'}{self._counter}", self._settings.sse_history,
                                 self._settings.sse_retry, standalone=standalone)
            self._streams[stream.id] = stream
            # Forget the oldest streams nobody reads, beyond a few kept for resumption.
            while len(self._streams) > _MAX_STREAMS_PER_SESSION:
                victim = next((s for s in self._streams.values() if not s.attached and s is not self.standalone), None)
                if victim is None:
                    break
                del self._streams[victim.id]
            if standalone:
                old, self.standalone = self.standalone, stream
            else:
                old = None
        if old is not None:
            old.end()
            with self._lock:
                self._streams.pop(old.id, None)
        if standalone:
            self.state.standalone = self._send_standalone
        return stream

    def stream(self, stream_id: str) -> Optional[EventStream]:
        with self._lock:
            return self._streams.get(stream_id)

    def drop_stream(self, stream: EventStream) -> None:
        with self._lock:
            if self._streams.get(stream.id) is stream and (stream.finished or not stream.attached):
                del self._streams[stream.id]
            if self.standalone is stream:
                self.standalone = None
                self.state.standalone = None

    def _send_standalone(self, message: dict[str, Any]) -> None:
        stream = self.standalone
        if stream is None or not stream.send(message):
            # Kept in the history for a reconnecting client, but the sender is told.
            raise ConnectionError("the client's standalone stream is not open")

    def notify(self, message: dict[str, Any]) -> bool:
        """Send a notification on the standalone stream; False if none is open."""
        stream = self.standalone
        return stream is not None and stream.send(message)

    @property
    def busy(self) -> bool:
        """A call in flight or a stream a client reads: never ended to make room."""
        if self.state.in_flight:
            return True
        with self._lock:
            return any(stream.attached for stream in self._streams.values())

    def end(self, *, cancel: bool = True, keep_calls: bool = False) -> None:
        """End the session: its streams end, waiting requests fail, calls are cancelled
        (``cancel``; not when the server closes, whose calls still get their answers).

        ``keep_calls`` (the server closing): the streams of calls still running stay
        open, so their results still reach the client; each ends with its answer.
        """
        self.ended = True
        with self._lock:
            streams = [s for s in self._streams.values() if not (keep_calls and not s.standalone and not s.finished)]
            for stream in streams:
                self._streams.pop(stream.id, None)
            self.standalone = None
        for stream in streams:
            stream.end()
        self.state.end(cancel=cancel)


class SessionTable:
    """The live sessions of one server, bounded per grant and in total, and in idle time."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._sessions: "OrderedDict[str, Session]" = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, principal: Any) -> Session:
        """A new session, not yet registered (``add`` it once ``initialize`` succeeded)."""
        return Session(secrets.token_urlsafe(24), principal, self._settings)

    def add(self, session: Session) -> None:
        """Register a session; HttpError(503) when its grant has no room and no idle session to end."""
        evicted: list[Session] = []
        try:
            with self._lock:
                evicted.extend(self._expired_locked())
                own = [s for s in self._sessions.values() if s.principal is session.principal]
                # Room is made only by ending this grant's own least recently used idle session.
                while len(own) >= self._settings.max_sessions_per_grant or (
                        len(self._sessions) >= self._settings.max_sessions):
                    victim = next((s for s in own if not s.busy), None)
                    if victim is None:
                        raise HttpError(503, "Service Unavailable: too many sessions; end one (DELETE) or retry later")
                    own.remove(victim)
                    del self._sessions[victim.id]
                    evicted.append(victim)
                self._sessions[session.id] = session
        finally:
            for old in evicted:
                old.end()

    def get(self, session_id: str) -> Optional[Session]:
        """The live session with this id (marked used), or None if unknown, ended or idle too long."""
        session = self._sessions.get(session_id)  # a lock-free read first: the common case
        if session is None:
            return None
        now = time.monotonic()
        idle = now - session.last_used
        if idle < _TOUCH_INTERVAL:  # used a moment ago: already (nearly) the most recent
            return session
        with self._lock:
            if self._sessions.get(session_id) is not session:
                return None
            if idle > self._settings.session_idle_timeout and not session.busy:
                del self._sessions[session_id]
            else:
                session.last_used = now
                self._sessions.move_to_end(session_id)
                return session
        session.end()
        return None

    def remove(self, session_id: str) -> Optional[Session]:
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is not None:
            session.end()
        return session

    def remove_principal(self, principal: Any) -> int:
        """End every session of one grant (revoked or expired); how many there were."""
        with self._lock:
            ended = [s for s in self._sessions.values() if s.principal is principal]
            for session in ended:
                del self._sessions[session.id]
        for session in ended:
            session.end()
        return len(ended)

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def close(self) -> None:
        """The server is closing: end every session, but leave the streams of calls still
        running open: each ends with its call's answer, which is still delivered."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.end(cancel=False, keep_calls=True)

    def _expired_locked(self) -> list[Session]:
        limit = time.monotonic() - self._settings.session_idle_timeout
        expired = [s for s in self._sessions.values() if s.last_used < limit and not s.busy]
        for session in expired:
            del self._sessions[session.id]
        return expired
