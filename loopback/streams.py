"""Event streams on connections: a POST response that turns into SSE, the standalone GET
stream, and the watch that tells when a client has left.

Owns: ``PostChannel`` (a call's response, held back until the call first sends a
message, then a chunked ``text/event-stream`` whose last event is the result; its
writes combined: a lone event is written at once by its sender, events that queue up
behind a write go out together in the next one), ``serve_get`` (the session's
standalone stream, or a resumption with ``Last-Event-ID``: queued writes, what queued
up written together, keep-alive comments, ended when the session, the grant or the
server ends), ``DisconnectWatcher`` (one thread and one ``selectors``
selector per server for every connection whose request the client's leaving
cancels) and ``client_left`` (a non-blocking peek: no ``select.select``, so any
descriptor number works).
Must not know: how heads and bodies are parsed, or what MCP messages mean; it writes
through a ``Writer`` (the connection) and numbers events through ``sessions``.
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import threading
import time
from typing import Any, Callable, Optional

from . import http11, sessions
from .sessions import EventStream, Session
from .settings import Settings

_log = logging.getLogger("loopback")

_SSE_FIELDS = ("Content-Type: text/event-stream", "Cache-Control: no-cache", "X-Accel-Buffering: no")


class Writer:
    """What a stream needs of its connection (``connection.Connection`` implements it)."""

    close_connection: bool
    http10: bool

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def stream_head(self, fields: tuple[str, ...]) -> bytes:
        """The head of a 200 ``text/event-stream`` response with these extra fields."""
        raise NotImplementedError

    def end_response_early(self) -> None:
        """Stop sending (shut the write side): the client sees the response end."""
        raise NotImplementedError


def client_left(sock: socket.socket) -> bool:
    """True when the client has closed its side (a read would return end of file)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def _sse_head(writer: Writer, extra: tuple[str, ...] = ()) -> tuple[bytes, bool]:
    """(head, chunked): HTTP/1.1 streams are chunked; an HTTP/1.0 one ends with the connection."""
    if writer.http10:
        writer.close_connection = True
        return writer.stream_head((*_SSE_FIELDS, *extra, "Connection: close")), False
    return writer.stream_head((*_SSE_FIELDS, *extra, "Transfer-Encoding: chunked")), True


# One lock for all channels, taken only to start a stream: most calls never do, and a
# lock of their own would cost every call.
_OPEN_LOCK = threading.Lock()
# Events a call's stream queues behind a write before its sender waits for the writer.
_MAX_QUEUED = 256


class PostChannel:
    """The SSE stream a POST response turns into when its call sends something first.

    Until then nothing is written; the first message writes the head, the priming
    event and the message in one send. The call's result is the last event, then the
    chunked body ends and the connection stays open for the next request. When the
    client goes away the events are kept (``sessions.EventStream``) for a ``GET`` with
    ``Last-Event-ID``; ``close`` ends the response early on purpose (SSE polling).

    Writes are combined: the stream hands each framed event to ``_sink``, which only
    queues it; the sender then writes what is queued unless another thread is writing
    right now, in which case that thread writes it too when its write returns (it looks
    again after each). So a lone event leaves at once on its sender's thread, and events
    that queue up behind a write (several senders, a client reading slowly, the result
    behind the last notifications) go out together in the next one, as one chunk. No
    timer: nothing waits for company. The order is the stream's (events are queued under
    its lock, numbered); a sender that finds ``_MAX_QUEUED`` events waiting waits for
    the writer, as it would have waited for the socket.
    """

    __slots__ = ("_writer", "_session", "_prime", "_settings", "stream", "_started", "_ended", "_dead",
                 "_chunked", "_closing", "_queued", "_head", "_writing")

    def __init__(self, writer: Writer, session: Optional[Session], prime: bool, settings: Settings) -> None:
        self._writer = writer
        self._session = session
        self._prime = prime
        self._settings = settings
        self.stream: Optional[EventStream] = None
        self._started = self._ended = self._dead = False
        self._chunked = True
        self._closing = False  # close() came first: the head says Connection: close
        # Framed events not yet written, in stream order; None: end the response after them.
        # Only the holder of _writing takes from the front; senders append at the end.
        self._queued: list[Optional[bytes]] = []
        self._head: Optional[bytes] = None  # the response head, until the first write takes it
        self._writing = threading.Lock()

    def _open(self) -> EventStream:
        stream = self.stream
        if stream is not None:
            return stream
        with _OPEN_LOCK:
            stream = self.stream
            if stream is None:
                if self._session is not None:
                    stream = self._session.new_stream()
                else:
                    stream = EventStream("s1", self._settings.sse_history, self._settings.sse_retry)
                stream.prime(self._sink, self._prime)
                self.stream = stream
            return stream

    def notify(self, message: dict[str, Any]) -> None:
        (self.stream or self._open()).send(message)
        writing = self._writing
        if writing.acquire(False):  # nobody is writing: the usual case, this event alone
            try:
                self._write_queued()
            finally:
                writing.release()
            if not self._queued:
                return
        self._flush(len(self._queued) >= _MAX_QUEUED)

    def close(self) -> None:
        """End the HTTP response now (the call goes on); only when the client can resume."""
        if not self._prime or self._session is None:
            return
        # The connection cannot serve another request until the call returns: a head not
        # yet sent says so, so the client does not queue its reconnection behind it.
        self._closing = True
        stream = self._open()
        stream.detach(self._sink, end=True)  # written (the end too) before it returns
        self._writer.close_connection = True  # its thread is busy with the call until it returns
        self._writer.end_response_early()

    def finish(self, encoded: bytes) -> None:
        """Send the call's response as the last event (kept for a resume if nobody reads)."""
        stream = self.stream
        assert stream is not None
        delivered = stream.send(encoded, last=True)  # written, with all queued before it, when it returns
        self._flush(True)
        if not self._ended:
            self._writer.close_connection = True  # the response did not end cleanly
        if delivered and not self._dead and self._session is not None:
            self._session.drop_stream(stream)  # read to the end: nothing left to resume

    def _sink(self, data: Optional[bytes]) -> bool:
        """Queue one framed event (None: end the response), in the stream's order; False
        once the client is gone. Ending also writes everything queued, the end included."""
        if self._dead:
            return False
        if data is None:
            if self._started and not self._ended:
                self._ended = True
                self._queued.append(None)
                self._flush(True)
            return True
        if self._ended:
            return False
        if not self._started:
            self._started = True
            writer = self._writer
            if self._closing:
                writer.close_connection = True
            self._head, self._chunked = _sse_head(writer, ("Connection: close",) if self._closing else ())
        self._queued.append(data)
        return True

    def _flush(self, wait: bool) -> None:
        """Write what is queued, unless another thread is writing (it takes this too:
        it looks again after releasing). ``wait``: wait for that thread, then write the
        rest, so everything queued before this call is written when it returns."""
        writing = self._writing
        while self._queued:
            if not writing.acquire(wait):
                return
            try:
                self._write_queued()
            finally:
                writing.release()

    def _write_queued(self) -> None:
        """One write of everything queued now (holding ``_writing``)."""
        queued = self._queued
        count = len(queued)
        if count == 1:
            first = queued.pop(0)  # senders only append: the first is still this one
            end = first is None
            events = b"" if first is None else first
        else:
            batch = queued[:count]
            del queued[:count]
            end = None in batch
            if end:
                batch = batch[:batch.index(None)]  # nothing is queued after the end
            events = b"".join(batch)  # type: ignore[arg-type]
        if self._dead or not count:
            return
        if self._chunked:
            out = http11.chunk(events) if events else b""
            if end:
                out += http11.LAST_CHUNK
        else:
            out = events
        head = self._head
        if head is not None:  # set before the first event was queued, so seen once that is
            self._head = None
            out = head + out
        try:
            if out:
                self._writer.write(out)
        except OSError:
            self._dead = True
            queued.clear()
            self._writer.close_connection = True


def serve_get(writer: Writer, sock: socket.socket, session: Session, last_event_id: Optional[str],
              settings: Settings, closing: Callable[[], bool], expires_at: Optional[float]) -> None:
    """Serve the standalone SSE stream of a session, or resume one (``Last-Event-ID``).

    Returns when the stream ends: the session or grant ended (``expires_at``, a
    ``time.monotonic()`` deadline, ends it too), a newer GET replaced it, the client
    left or fell a whole history behind, or the server is closing.
    """
    stream: Optional[EventStream] = None
    after = 0
    if last_event_id:
        parsed = sessions.parse_event_id(last_event_id)
        if parsed is not None:
            stream = session.stream(parsed[0])
            after = parsed[1]
    items: "queue.SimpleQueue[Optional[bytes]]" = queue.SimpleQueue()
    alive = True
    backlog = settings.sse_history

    # Whoever sends (a tool's thread, a registry change) only queues: a slow client
    # holds up this connection's thread, never theirs. One that falls more than a
    # history behind is cut off; it resumes from the history (Last-Event-ID). What
    # queued up while this thread wrote goes out in its next write, as one chunk.
    def sink(data: Optional[bytes]) -> bool:
        nonlocal alive
        if not alive:
            return False
        if data is not None and items.qsize() >= backlog:
            alive = False
            items.put(None)
            return False
        items.put(data)
        return True

    # Attached before the head goes out: what is sent from then on is queued for it.
    if stream is None:
        stream = session.new_stream(standalone=True)
        stream.prime(sink, session.primes)
    else:
        stream.attach(sink, after)
    head, chunked = _sse_head(writer)
    try:
        writer.write(head)
    except OSError:
        stream.detach(sink)
        writer.close_connection = True
        return
    keepalive = settings.sse_keepalive
    try:
        while not closing():
            wait = keepalive
            if expires_at is not None:
                wait = min(wait, expires_at - time.monotonic())
                if wait <= 0:  # the grant expired: its stream ends with it
                    item: Optional[bytes] = None
                    break
            try:
                item = items.get(timeout=wait)
            except queue.Empty:
                if expires_at is not None and time.monotonic() >= expires_at:
                    item = None
                    break
                if client_left(sock):
                    writer.close_connection = True
                    return
                item = sessions.KEEPALIVE
            if item is None:  # the stream ended (server closing, session ended, replaced)
                break
            ended = False
            if items.qsize():  # more queued behind it: one write for all of them
                batch = [item]
                while len(batch) < _MAX_QUEUED:
                    try:
                        more = items.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        ended = True
                        break
                    batch.append(more)
                item = b"".join(batch)
            writer.write(http11.chunk(item) if chunked else item)
            if ended:
                break
        else:
            writer.close_connection = True
            return
        if chunked:
            writer.write(http11.LAST_CHUNK)
        else:
            writer.close_connection = True
    except OSError:
        writer.close_connection = True
    finally:
        alive = False
        stream.detach(sink)
        if stream.finished:
            session.drop_stream(stream)


class DisconnectWatcher:
    """Runs a callback when the client of a watched connection leaves.

    One daemon thread and one selector per server, started on first use; watching a
    connection costs a register and an unregister, not a thread. Data arriving instead
    (a pipelined request) ends the watch and is left for the connection to read.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._selector: Optional[selectors.BaseSelector] = None
        self._wake_reader: Optional[socket.socket] = None
        self._wake_writer: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        # epoll and kqueue see a registration made while another thread waits; poll does not.
        self._needs_wake = False

    def _start_locked(self) -> selectors.BaseSelector:
        selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        selector.register(self._wake_reader, selectors.EVENT_READ, None)
        self._needs_wake = not isinstance(selector, (getattr(selectors, "EpollSelector", ()),
                                                     getattr(selectors, "KqueueSelector", ())))
        self._selector = selector
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return selector

    def watch(self, sock: socket.socket, on_leave: Callable[[], None]) -> bool:
        """Watch ``sock`` until ``unwatch``; False when the watcher is closed."""
        with self._lock:
            if self._closed:
                return False
            selector = self._selector or self._start_locked()
            try:
                selector.register(sock, selectors.EVENT_READ, on_leave)
            except (KeyError, ValueError, OSError):
                return False
        if self._needs_wake:
            self._wake()
        return True

    def unwatch(self, sock: socket.socket) -> None:
        with self._lock:
            if self._selector is not None:
                try:
                    self._selector.unregister(sock)
                except (KeyError, ValueError, OSError):
                    pass

    def _wake(self) -> None:
        try:
            assert self._wake_writer is not None
            self._wake_writer.send(b"\0")
        except OSError:
            pass

    def _run(self) -> None:
        selector = self._selector
        assert selector is not None and self._wake_reader is not None
        while not self._closed:
            try:
                events = selector.select()
            except OSError:
                return
            for key, _ in events:
                if key.data is None:  # the wake socket
                    try:
                        self._wake_reader.recv(4096)
                    except OSError:
                        pass
                    continue
                sock = key.fileobj
                left = client_left(sock)  # type: ignore[arg-type]
                self.unwatch(sock)  # type: ignore[arg-type]
                if left:
                    try:
                        key.data()
                    except Exception:
                        _log.exception("disconnect callback failed")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread, selector = self._thread, self._selector
        if thread is None:
            return
        self._wake()
        thread.join(5.0)
        with self._lock:
            if selector is not None:
                selector.close()
            for sock in (self._wake_reader, self._wake_writer):
                if sock is not None:
                    sock.close()
            self._selector = None
